# shellcheck shell=bash
# Shared helpers for scripts/up, scripts/down, scripts/test and .ci/run.
#
# Source it, do not run it:   source scripts/lib.sh && start_infra
#
# Every public function runs its body in a subshell with `set -euo pipefail`, so
# it fails as a whole on the first error, and sourcing this file into an
# interactive shell cannot make that shell exit when something goes wrong. The
# price: functions cannot set variables for their caller (none needs to).
#
# Local infrastructure (all bound to 127.0.0.1 only):
#   Postgres 15, a private cluster in $STATE_DIR/$PG_NAME   port $PG_PORT (25432; the
#     tests use another one, pg-test on 25434, so that their throw-away logins can never
#     reach the databases of a running stack)
#   tansu, a Kafka-compatible broker, in memory        port $KAFKA_PORT (29092)
#   an SMTP sink (scripts/smtp-sink.py, aiosmtpd)        port $SMTP_PORT (2525): every
#     message it accepts lands in $STATE_DIR/mail as an .eml file; nothing is relayed
# Everything it writes goes under $STATE_DIR (default: <repo>/.local, git-ignored),
# except the aiosmtpd venv, always <repo>/.local/aiosmtpd (the tests look for it there).
#
# Fixed ports stay below the kernel's ephemeral range (32768-60999 here, see
# /proc/sys/net/ipv4/ip_local_port_range): an outgoing connection, or a test that
# binds port 0, can be given any port in that range, and a listener then cannot bind
# it (a CI run lost its fuzz broker that way, with the port taken by a client socket).

# Strict mode for the scripts that source this file; not in an interactive
# shell, where `set -e` would close the terminal on the first failing command.
[[ $- == *i* ]] || set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
STATE_DIR="${BOXOFFICE_STATE_DIR:-$REPO/.local}"
# pg_ctl and the services run from other directories: keep the path absolute.
[[ $STATE_DIR == /* ]] || STATE_DIR="$PWD/$STATE_DIR"
PG_PORT="${PG_PORT:-${BOXOFFICE_PG_PORT:-25432}}"
PG_NAME="${PG_NAME:-pg}"
KAFKA_PORT="${BOXOFFICE_KAFKA_PORT:-29092}"
KAFKA_TOPIC_DEFAULT="boxoffice.events"
SMTP_PORT="${SMTP_PORT:-${BOXOFFICE_SMTP_PORT:-2525}}"
AIOSMTPD_VERSION=1.4.6
# Not under $STATE_DIR: scratch stacks (scripts/test's, in .local/fuzz) share it, and
# testkit::smtp falls back to this path when BOXOFFICE_SMTP_PYTHON is not set.
AIOSMTPD_VENV="$REPO/.local/aiosmtpd/venv"

# cargo-installed tools (tansu, cargo-nextest) live here.
CARGO_BIN_DIR="${CARGO_HOME:-$HOME/.cargo}/bin"
case ":$PATH:" in
    *":$CARGO_BIN_DIR:"*) ;;
    *) PATH="$CARGO_BIN_DIR:$PATH" ;;
esac
export PATH

# --- small helpers --------------------------------------------------------------

say() { printf '==> %s\n' "$*"; }
warn() { printf '==> WARNING: %s\n' "$*" >&2; }
die() {
    printf '==> ERROR: %s\n' "$*" >&2
    exit 1
}

# Print the last lines of a log file to stderr (used when something fails).
show_log_tail() { # FILE [LINES]
    local file="$1" lines="${2:-30}"
    if [[ -r $file ]]; then
        printf -- '--- last %s lines of %s ---\n' "$lines" "$file" >&2
        tail -n "$lines" "$file" >&2 || true
        printf -- '--- end of %s ---\n' "$file" >&2
    else
        printf '(no log at %s)\n' "$file" >&2
    fi
}

# Whether something accepts TCP connections on 127.0.0.1:PORT. `timeout` because
# a connect to a filtered port could otherwise hang.
port_open() { # PORT
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Whether PID is a live process. A zombie counts as gone: `kill -0` succeeds on
# one, and in a container whose init does not reap, it would look alive forever.
proc_running() { # PID
    local state
    kill -0 "$1" 2>/dev/null || return 1
    # The state follows the command name, which is in parentheses and may hold spaces.
    state="$(sed 's/.*) //; s/ .*//' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ $state != Z ]]
}

# The pid stored in PIDFILE, if that process is alive and its command line
# contains PATTERN (guards against a stale pid file whose pid was reused).
pid_alive() { # PIDFILE PATTERN
    local pidfile="$1" pattern="$2" pid cmdline
    [[ -s $pidfile ]] || return 1
    pid="$(<"$pidfile")"
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    proc_running "$pid" || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ $cmdline == *"$pattern"* ]] || return 1
    printf '%s\n' "$pid"
}

# SIGTERM the process in PIDFILE, wait up to TIMEOUT seconds for it to exit, then
# SIGKILL it. Tolerates a missing pid file or a process that is already gone.
stop_pidfile() { # NAME PIDFILE PATTERN [TIMEOUT_SECS=15]
    local name="$1" pidfile="$2" pattern="$3" timeout="${4:-15}" pid deadline
    if ! pid="$(pid_alive "$pidfile" "$pattern")"; then
        say "$name is not running"
        rm -f "$pidfile"
        return 0
    fi
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + timeout))
    while proc_running "$pid" && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if proc_running "$pid"; then
        warn "$name (pid $pid) did not exit within ${timeout}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 5))
        while proc_running "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        ! proc_running "$pid" || die "$name (pid $pid) survived SIGKILL"
    fi
    rm -f "$pidfile"
}

# Run a command as the owner of the Postgres cluster. Postgres refuses to run as
# root, so as root we switch to the `postgres` user (created by the Debian
# package); as any other user we run it directly.
as_pg_owner() {
    if ((EUID == 0)); then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# The PostgreSQL bin dir containing initdb: 15 when present, else the newest.
# Prints nothing when none is installed.
find_pg_bindir() {
    local dir
    if [[ -x /usr/lib/postgresql/15/bin/initdb ]]; then
        echo /usr/lib/postgresql/15/bin
        return 0
    fi
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
        if [[ -x $dir/initdb ]]; then
            echo "$dir"
            return 0
        fi
    done
}

pg_bindir() {
    local dir
    dir="$(find_pg_bindir)"
    [[ -n $dir ]] || die "PostgreSQL is not installed (run ensure_postgres_installed)"
    echo "$dir"
}

# psql as the cluster's superuser `boxoffice`, over TCP (the cluster has no unix
# socket). Extra arguments go to psql; the database defaults to `postgres`.
pg_psql() {
    PGPASSWORD=boxoffice PGCONNECT_TIMEOUT=5 "$(pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$PG_PORT" -U boxoffice "$@"
}

# Where the cluster lives: $STATE_DIR/$PG_NAME, or the directory that symlink points to.
pg_cluster_dir() {
    if [[ -e $STATE_DIR/$PG_NAME ]]; then
        readlink -f "$STATE_DIR/$PG_NAME"
    else
        echo "$STATE_DIR/$PG_NAME"
    fi
}

# Whether the cluster in DATA runs. `pg_ctl status` alone is not enough: it
# tests the pid in postmaster.pid with kill(pid, 0), which succeeds on a zombie,
# and a killed postmaster stays one for a while where init reaps slowly (as in
# this kind of VM). The server would then also refuse to start ("lock file
# already exists"), so a postmaster.pid naming a dead or zombie pid is removed.
pg_server_running() { # BIN DATA
    local bin="$1" data="$2" pid
    as_pg_owner "$bin/pg_ctl" status -D "$data" >/dev/null 2>&1 || return 1
    pid="$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)"
    if [[ $pid =~ ^[0-9]+$ ]] && ! proc_running "$pid"; then
        say "removing a stale postmaster.pid (pid $pid is dead: the server was killed)"
        rm -f "$data/postmaster.pid"
        return 1
    fi
    return 0
}

tansu_bin() { command -v tansu; }

# The python of the aiosmtpd venv (ensure_aiosmtpd_installed makes it).
smtp_python() { echo "$AIOSMTPD_VENV/bin/python"; }

# --- installation ---------------------------------------------------------------

# Install Debian packages (as root, or through sudo), updating the package lists first.
apt_install() ( # PACKAGE...
    set -euo pipefail
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    say "installing Debian's $* with apt-get"
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
        install -y -qq --no-install-recommends "$@"
)

ensure_postgres_installed() (
    set -euo pipefail
    local dir
    dir="$(find_pg_bindir)"
    if [[ -z $dir ]]; then
        say "PostgreSQL not found; installing it with apt-get"
        local sudo=()
        ((EUID == 0)) || sudo=(sudo)
        "${sudo[@]}" apt-get update
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
        dir="$(find_pg_bindir)"
        [[ -n $dir ]] || die "apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb was found"
    fi
    say "PostgreSQL binaries: $dir ($("$dir/postgres" --version))"
)

ensure_tansu_installed() (
    set -euo pipefail
    if ! tansu --version >/dev/null 2>&1; then
        say "tansu not found; installing it with cargo install (this takes about 10 minutes)"
        cargo install tansu --locked --version 0.6.0 --features dynostore
        tansu --version >/dev/null 2>&1 || die "cargo install tansu finished but 'tansu --version' still fails"
    fi
    say "tansu: $(tansu_bin) ($(tansu --version))"
)

# aiosmtpd (PyPI), pinned, in a venv of its own: the SMTP sink of the local stack and
# of the tests (testkit::smtp). The marker .installed holds what was installed; a venv
# without it (an install that failed half-way) or with another version is made anew.
ensure_aiosmtpd_installed() (
    set -euo pipefail
    local venv="$AIOSMTPD_VENV" want="aiosmtpd==$AIOSMTPD_VERSION"
    if [[ $(cat "$venv/.installed" 2>/dev/null) != "$want" ]] ||
        ! "$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
        command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
        say "installing $want from PyPI into ${venv#"$REPO"/} (once)"
        rm -rf "$venv"
        mkdir -p "$(dirname "$venv")"
        # Debian's python3 makes venvs (their pip) only with python3-venv installed.
        if ! python3 -m venv "$venv" >/dev/null 2>&1; then
            apt_install python3-venv
            rm -rf "$venv"
            python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
        fi
        "$venv/bin/pip" install --quiet --disable-pip-version-check --progress-bar off "$want" ||
            die "pip could not install $want into $venv"
        "$venv/bin/python" -c 'import aiosmtpd' || die "$want was installed but does not import"
        echo "$want" >"$venv/.installed"
    fi
    say "aiosmtpd: $(smtp_python) ($want)"
)

# --- Postgres -------------------------------------------------------------------

start_postgres() (
    set -euo pipefail
    local bin link cluster data log pwfile
    bin="$(pg_bindir)"
    mkdir -p "$STATE_DIR"
    link="$STATE_DIR/$PG_NAME"

    # The cluster's files must belong to (and be reachable by) the postgres
    # user. A repo under /root (mode 700) is not reachable, so the cluster then
    # lives under /var/tmp, with $STATE_DIR/$PG_NAME a symlink to it. The hash keeps
    # two checkouts (or state dirs) apart.
    if [[ -L $link ]]; then
        cluster="$(readlink -f "$link")" || die "cannot resolve $link"
    elif ((EUID != 0)) || as_pg_owner test -x "$STATE_DIR"; then
        cluster="$link"
    elif [[ -e $link ]]; then
        die "user postgres cannot reach $STATE_DIR, where $link already exists; move it away (or run scripts/down --purge)"
    else
        local tag="$STATE_DIR"
        [[ $PG_NAME == pg ]] || tag="$STATE_DIR/$PG_NAME"
        cluster="/var/tmp/boxoffice-pg-$(printf '%s' "$tag" | sha256sum | cut -c1-12)"
        say "user postgres cannot reach $STATE_DIR; the cluster goes to $cluster ($link links to it)"
        ln -sfn "$cluster" "$link"
    fi
    data="$cluster/data"
    log="$cluster/postgres.log"
    mkdir -p "$cluster"
    if ((EUID == 0)); then
        chown postgres:postgres "$cluster"
        chmod 700 "$cluster"
    fi

    if pg_server_running "$bin" "$data"; then
        local running_port
        running_port="$(sed -n 4p "$data/postmaster.pid" 2>/dev/null || true)"
        if [[ -n $running_port && $running_port != "$PG_PORT" ]]; then
            die "the cluster in $data already runs on port $running_port, not $PG_PORT (scripts/down first to change ports)"
        fi
        say "postgres already running on 127.0.0.1:$PG_PORT"
    elif port_open "$PG_PORT"; then
        # Another checkout's cluster (CI runs a fresh clone on the machine where a
        # developer's may still run): tests only need a server where boxoffice
        # is a superuser, so share it rather than fail.
        if pg_psql -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; then
            say "port $PG_PORT already has a Postgres accepting boxoffice/boxoffice (from another checkout or state dir?): using it; scripts/down here will not stop it"
        else
            die "port $PG_PORT is already taken by another process (set BOXOFFICE_PG_PORT to use another one)"
        fi
    else
        if [[ ! -f $data/PG_VERSION ]]; then
            say "creating a Postgres cluster in $data"
            # The superuser's password goes through a file, not the command line.
            pwfile="$(mktemp "$cluster/pwfile.XXXXXX")"
            printf 'boxoffice\n' >"$pwfile"
            ((EUID != 0)) || chown postgres:postgres "$pwfile"
            if ! as_pg_owner "$bin/initdb" -D "$data" --username=boxoffice --auth=scram-sha-256 \
                --pwfile="$pwfile" --encoding=UTF8 --locale=C >"$cluster/initdb.log" 2>&1; then
                rm -f "$pwfile"
                show_log_tail "$cluster/initdb.log"
                die "initdb failed (its output is above)"
            fi
            rm -f "$pwfile"
        fi
        say "starting postgres on 127.0.0.1:$PG_PORT (log: $log)"
        # unix_socket_directories='' : no socket file, so nothing to clash with a
        # system cluster and no permission questions; clients must use TCP.
        # pg_ctl hands -o to a shell, hence the inner quotes.
        # A postmaster.pid left by a killed server is handled by pg_server_running
        # (zombie) or by the server itself (dead pid); if not, the log says why.
        if ! as_pg_owner "$bin/pg_ctl" start -w -t 60 -D "$data" -l "$log" \
            -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=500 -c shared_buffers=256MB" \
            >/dev/null; then
            show_log_tail "$log"
            die "postgres did not start (the end of its log is above)"
        fi
    fi

    # The event store and read models, and the payment gateway's books (a database of
    # its own, as a provider's would be).
    local db
    for db in boxoffice boxoffice_payments; do
        if [[ "$(pg_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]]; then
            say "creating database $db"
            pg_psql -d postgres -c "CREATE DATABASE $db"
        fi
    done
)

stop_postgres() (
    set -euo pipefail
    local cluster data bin
    cluster="$(pg_cluster_dir)"
    data="$cluster/data"
    if [[ ! -f $data/PG_VERSION ]]; then
        say "postgres: no cluster in $data, nothing to stop"
        return 0
    fi
    bin="$(find_pg_bindir)"
    if [[ -z $bin ]]; then
        warn "postgres binaries not found; cannot stop the cluster in $data"
        return 0
    fi
    if ! pg_server_running "$bin" "$data"; then
        say "postgres is not running"
        return 0
    fi
    say "stopping postgres ($data)"
    if ! as_pg_owner "$bin/pg_ctl" stop -m fast -w -t 60 -D "$data" >/dev/null; then
        show_log_tail "$cluster/postgres.log"
        die "pg_ctl stop failed"
    fi
)

# --- tansu (Kafka-compatible broker) ----------------------------------------------

# BROKER_NAME (default tansu) names its pid and log files, so a second broker (the
# test suite's, on another KAFKA_PORT) can run beside the stack's.
start_broker() (
    set -euo pipefail
    local name="${BROKER_NAME:-tansu}"
    local pidfile="$STATE_DIR/$name.pid" log="$STATE_DIR/$name.log" tansu pid deadline
    tansu="$(tansu_bin)" || die "tansu is not installed (run ensure_tansu_installed)"
    mkdir -p "$STATE_DIR"

    if pid="$(pid_alive "$pidfile" tansu)"; then
        if port_open "$KAFKA_PORT"; then
            say "broker already running on 127.0.0.1:$KAFKA_PORT (pid $pid)"
            return 0
        fi
        # Alive but not listening: hung or listening elsewhere. Start afresh.
        warn "tansu (pid $pid) is alive but 127.0.0.1:$KAFKA_PORT does not answer; restarting it"
        stop_pidfile tansu "$pidfile" tansu 10
    fi
    # tansu 0.6.0 does not fail when its port is taken: it logs the error and
    # exits with status 0. So check first. A broker that answers is shared, as
    # in start_postgres (topics are per test anyway).
    if port_open "$KAFKA_PORT"; then
        if timeout 10 "$tansu" topic list --broker "tcp://127.0.0.1:$KAFKA_PORT" >/dev/null 2>&1; then
            say "port $KAFKA_PORT already has a Kafka broker (from another checkout or state dir?): using it; scripts/down here will not stop it"
            return 0
        fi
        die "port $KAFKA_PORT is already taken by another process (set BOXOFFICE_KAFKA_PORT to use another one)"
    fi

    say "starting tansu on 127.0.0.1:$KAFKA_PORT (log: $log)"
    rm -f "$pidfile" # a stale one would be mistaken for the new process below
    # setsid: own session, so it survives this script and its terminal. The pid
    # is written by the process itself (bash, then exec): `$!` would be wrong
    # whenever setsid has to fork.
    # shellcheck disable=SC2016 # $$ and $1 are for the inner bash
    setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" \
        "$tansu" broker \
        --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        --storage-engine memory://tansu/ \
        >"$log" 2>&1 </dev/null &

    deadline=$((SECONDS + 30))
    until port_open "$KAFKA_PORT"; do
        if ((SECONDS >= deadline)); then
            show_log_tail "$log"
            die "tansu did not accept connections on 127.0.0.1:$KAFKA_PORT within 30s"
        fi
        # Fail fast when it died (the pid file may not be written yet at first).
        if [[ -s $pidfile ]] && ! proc_running "$(<"$pidfile")"; then
            show_log_tail "$log"
            die "tansu exited during start-up (the end of its log is above)"
        fi
        sleep 0.2
    done
    pid_alive "$pidfile" tansu >/dev/null || {
        show_log_tail "$log"
        die "the port answers but our tansu is not running"
    }
)

stop_broker() (
    set -euo pipefail
    stop_pidfile tansu "$STATE_DIR/${BROKER_NAME:-tansu}.pid" tansu 15
)

# Create a topic; an existing topic is fine. The broker keeps topics in memory,
# so they are gone after a restart: call this after every start_broker.
create_topic() ( # NAME [PARTITIONS=6]
    set -euo pipefail
    local name="$1" partitions="${2:-6}" broker="tcp://127.0.0.1:$KAFKA_PORT" out
    # `timeout`: a tansu client talking to a broker that is shutting down hangs.
    if out="$(timeout 30 tansu topic create --broker "$broker" --partitions "$partitions" "$name" 2>&1)"; then
        say "created topic $name ($partitions partitions)"
        return 0
    fi
    # It exits 1 with "Topic with this name already exists." in that case.
    if timeout 30 tansu topic list --broker "$broker" 2>/dev/null | grep -qF "\"name\":\"$name\""; then
        say "topic $name already exists"
        return 0
    fi
    printf '%s\n' "$out" >&2
    die "could not create topic $name on $broker"
)

# --- the SMTP sink (aiosmtpd) -------------------------------------------------------

# scripts/smtp-sink.py on 127.0.0.1:$SMTP_PORT: accepts every message (no relaying, no
# authentication needed) and writes it to $STATE_DIR/mail as an .eml file, with
# Return-Path and Delivered-To prepended. Recipients whose local part starts with
# `reject` get 550, with `defer` 451. Idempotent.
start_smtp() (
    set -euo pipefail
    local pidfile="$STATE_DIR/run/smtp.pid" log="$STATE_DIR/smtp.log" dir="$STATE_DIR/mail"
    local python pid deadline
    python="$(smtp_python)"
    [[ -x $python ]] || die "aiosmtpd is not installed (run ensure_aiosmtpd_installed)"
    mkdir -p "$STATE_DIR/run" "$dir"

    if pid="$(pid_alive "$pidfile" smtp-sink)"; then
        if port_open "$SMTP_PORT"; then
            say "SMTP sink already running on 127.0.0.1:$SMTP_PORT (pid $pid)"
            return 0
        fi
        # Alive but not listening: hung, or on another port. Start afresh.
        warn "the SMTP sink (pid $pid) is alive but 127.0.0.1:$SMTP_PORT does not answer; restarting it"
        stop_pidfile "SMTP sink" "$pidfile" smtp-sink 10
    fi
    # Not shared like the broker: another sink would put the messages in another folder.
    ! port_open "$SMTP_PORT" ||
        die "port $SMTP_PORT is already taken by another process (set BOXOFFICE_SMTP_PORT to use another one)"

    say "starting the SMTP sink on 127.0.0.1:$SMTP_PORT (messages: $dir, log: $log)"
    rm -f "$pidfile"
    # Detached in its own session, writing its own pid, as tansu in start_broker.
    # shellcheck disable=SC2016 # $$ and $1 are for the inner bash
    setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" \
        "$python" "$REPO/scripts/smtp-sink.py" --host 127.0.0.1 --port "$SMTP_PORT" --dir "$dir" \
        >"$log" 2>&1 </dev/null &

    deadline=$((SECONDS + 20))
    until port_open "$SMTP_PORT"; do
        if ((SECONDS >= deadline)); then
            show_log_tail "$log"
            die "the SMTP sink did not accept connections on 127.0.0.1:$SMTP_PORT within 20s"
        fi
        if [[ -s $pidfile ]] && ! proc_running "$(<"$pidfile")"; then
            show_log_tail "$log"
            die "the SMTP sink exited during start-up (the end of its log is above)"
        fi
        sleep 0.1
    done
    pid_alive "$pidfile" smtp-sink >/dev/null || {
        show_log_tail "$log"
        die "the port answers but our SMTP sink is not running"
    }
)

stop_smtp() (
    set -euo pipefail
    stop_pidfile "SMTP sink" "$STATE_DIR/run/smtp.pid" smtp-sink 10
)

# Poll URL until it answers 200. With PID, give up as soon as that process is
# gone (no point waiting 60s for a service that crashed at start-up).
wait_http() ( # URL TIMEOUT_SECS [PID]
    set -euo pipefail
    local url="$1" timeout="$2" pid="${3:-}" code deadline
    deadline=$((SECONDS + timeout))
    while :; do
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" 2>/dev/null || true)"
        [[ $code == 200 ]] && return 0
        if [[ -n $pid ]] && ! proc_running "$pid"; then
            die "$url: the process (pid $pid) exited before answering 200"
        fi
        if ((SECONDS >= deadline)); then
            die "$url did not answer 200 within ${timeout}s (last status: ${code:-none})"
        fi
        sleep 0.3
    done
)

# --- the front door (nginx) ---------------------------------------------------------

# One address for clients: ops/nginx/boxoffice.conf.template routes commands to
# command-api and reads to query-api and bounds size and rate at the edge.
#   BOXOFFICE_GATEWAY_PORT (8000)        its plain-HTTP port on 127.0.0.1
#   BOXOFFICE_GATEWAY_RATE (200)         requests/s per client address, sustained
#   BOXOFFICE_GATEWAY_BURST (400)        requests a client may run ahead of that
#   BOXOFFICE_GATEWAY_TLS_CERT, _KEY     PEM files: with both set, it also serves TLS on
#   BOXOFFICE_GATEWAY_TLS_PORT (8443)
GATEWAY_PORT="${BOXOFFICE_GATEWAY_PORT:-8000}"
GATEWAY_TLS_PORT="${BOXOFFICE_GATEWAY_TLS_PORT:-8443}"

# Where Debian's libnginx-mod-stream puts the stream module.
NGINX_STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so

nginx_bin() {
    command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; }
}

ensure_nginx_installed() (
    set -euo pipefail
    # nginx, its stream module (the tests' TLS proxy in front of a broker, see
    # testkit::tls_broker) and the openssl tool (the tests' certificates).
    local missing=()
    [[ -n $(nginx_bin) ]] || missing+=(nginx)
    [[ -e $NGINX_STREAM_MODULE ]] || missing+=(libnginx-mod-stream)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    if ((${#missing[@]} > 0)); then
        say "installing ${missing[*]} (Debian) with apt-get"
        local sudo=()
        ((EUID == 0)) || sudo=(sudo)
        "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 update
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
            install -y --no-install-recommends "${missing[@]}"
        [[ -n $(nginx_bin) ]] || die "apt-get installed nginx but no nginx binary was found"
    fi
    say "nginx: $(nginx_bin) ($("$(nginx_bin)" -v 2>&1))"
)

# Write DIR/nginx.conf from the template. Our instance runs with this file alone
# (never /etc/nginx), with its pid, logs and temporary files in DIR.
render_gateway_conf() ( # DIR LISTEN COMMAND_API QUERY_API [LOGS=DIR] [OUT=DIR/nginx.conf]
    set -euo pipefail
    local dir="$1" listen="$2" command="$3" query="$4" logs="${5:-$1}" out="${6:-$1/nginx.conf}" tls=""
    local cert="${BOXOFFICE_GATEWAY_TLS_CERT:-}" key="${BOXOFFICE_GATEWAY_TLS_KEY:-}"
    if [[ -n $cert || -n $key ]]; then
        [[ -r $cert && -r $key ]] || die "BOXOFFICE_GATEWAY_TLS_CERT and _KEY must both name readable PEM files"
        tls="listen 127.0.0.1:$GATEWAY_TLS_PORT ssl; ssl_certificate $cert; ssl_certificate_key $key; ssl_protocols TLSv1.2 TLSv1.3;"
    fi
    sed -e "s|@@DIR@@|$dir|g" -e "s|@@LOGS@@|$logs|g" -e "s|@@LISTEN@@|$listen|g" -e "s|@@TLS@@|$tls|g" \
        -e "s|@@COMMAND_API@@|$command|g" -e "s|@@QUERY_API@@|$query|g" \
        -e "s|@@RATE@@|${BOXOFFICE_GATEWAY_RATE:-200}|g" \
        -e "s|@@BURST@@|${BOXOFFICE_GATEWAY_BURST:-400}|g" \
        "$REPO/ops/nginx/boxoffice.conf.template" >"$out.new"
    ! grep -n '@@[A-Z_]*@@' "$out.new" || die "a placeholder of the gateway's template was left unreplaced"
    mv -f "$out.new" "$out"
)

# Start the gateway in front of COMMAND_API and QUERY_API (host:port each), or
# reload it with a freshly rendered configuration when it runs. Idempotent.
start_gateway() ( # COMMAND_API QUERY_API
    set -euo pipefail
    local dir="$STATE_DIR/gateway" nginx pid listen="127.0.0.1:$GATEWAY_PORT"
    nginx="$(nginx_bin)" || die "nginx is not installed (run ensure_nginx_installed)"
    mkdir -p "$dir"
    render_gateway_conf "$dir" "$listen" "$1" "$2"
    local args=(-p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log")
    "$nginx" -t -q "${args[@]}" || die "nginx refuses $dir/nginx.conf (above)"
    if pid="$(pid_alive "$dir/nginx.pid" nginx)"; then
        say "gateway already running (pid $pid): reloading its configuration"
        kill -HUP "$pid"
    else
        port_open "$GATEWAY_PORT" &&
            die "port $GATEWAY_PORT is already taken by another process (set BOXOFFICE_GATEWAY_PORT to use another one)"
        say "starting the gateway (nginx) on $listen (log: $dir/access.log)"
        rm -f "$dir/nginx.pid"
        setsid nohup "$nginx" "${args[@]}" >"$dir/nginx.out" 2>&1 </dev/null &
    fi
    wait_http "http://$listen/health" 30 || {
        show_log_tail "$dir/error.log"
        die "the gateway did not answer on $listen"
    }
)

stop_gateway() (
    set -euo pipefail
    # nginx's master leaves on SIGTERM after its workers (fast shutdown).
    stop_pidfile gateway "$STATE_DIR/gateway/nginx.pid" nginx 15
)

# --- environment for the services -----------------------------------------------

# Two files, both private to this user:
#   $STATE_DIR/env.common  what every service needs: the broker, the JWT secret, the
#                          addresses; no database credentials
#   $STATE_DIR/env         env.common and the owner's database URLs: for migrations
#                          and for the operator's commands (tokens, bench, the audit
#                          CLI), never for a running service
# Each service gets $STATE_DIR/env.<service> from ensure_service_logins.
write_env_file() (
    set -euo pipefail
    local secret_file="$STATE_DIR/jwt-secret" common="$STATE_DIR/env.common" env_file="$STATE_DIR/env" secret tmp
    mkdir -p "$STATE_DIR"
    umask 077 # the secret and the env files holding it stay private
    if [[ ! -s $secret_file ]]; then
        od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$secret_file"
    fi
    secret="$(<"$secret_file")"
    tmp="$(mktemp "$common.XXXXXX")"
    {
        echo "# Written by scripts/lib.sh (write_env_file); regenerated on every start."
        # The front door: the one address clients use (scripts/up prints it).
        printf 'export BOXOFFICE_URL=%q\n' "http://127.0.0.1:$GATEWAY_PORT"
        printf 'export KAFKA_BROKERS=%q\n' "127.0.0.1:$KAFKA_PORT"
        printf 'export KAFKA_TOPIC=%q\n' "$KAFKA_TOPIC_DEFAULT"
        printf 'export BOXOFFICE_JWT_SECRET=%q\n' "$secret"
        printf 'export COMMAND_API_ADDR=%q\n' "${COMMAND_API_ADDR:-127.0.0.1:${BOXOFFICE_COMMAND_PORT:-8080}}"
        printf 'export QUERY_API_ADDR=%q\n' "${QUERY_API_ADDR:-127.0.0.1:${BOXOFFICE_QUERY_PORT:-8081}}"
        printf 'export PROJECTOR_ADDR=%q\n' "${PROJECTOR_ADDR:-127.0.0.1:${BOXOFFICE_PROJECTOR_PORT:-8082}}"
        local payments="${PAYMENT_GATEWAY_ADDR:-127.0.0.1:${BOXOFFICE_PAYMENTS_PORT:-8083}}"
        printf 'export PAYMENT_GATEWAY_ADDR=%q\n' "$payments"
        printf 'export PAYMENT_GATEWAY_URL=%q\n' "http://$payments"
        printf 'export NOTIFIER_ADDR=%q\n' "${NOTIFIER_ADDR:-127.0.0.1:${BOXOFFICE_NOTIFIER_PORT:-8084}}"
        # The SMTP sink of start_smtp: the messages land in $STATE_DIR/mail.
        printf 'export SMTP_URL=%q\n' "smtp://127.0.0.1:$SMTP_PORT"
        printf 'export MAIL_FROM=%q\n' "boxoffice <tickets@boxoffice.test>"
    } >"$tmp"
    mv -f "$tmp" "$common"
    tmp="$(mktemp "$env_file.XXXXXX")"
    {
        echo "# Written by scripts/lib.sh (write_env_file): the owner's URLs, for migrations and"
        echo "# the operator's commands. The services run with env.<service> instead."
        printf 'source %q\n' "$common"
        printf 'export DATABASE_URL=%q\n' "postgres://boxoffice:boxoffice@127.0.0.1:$PG_PORT/boxoffice"
        printf 'export PAYMENT_DATABASE_URL=%q\n' "postgres://boxoffice:boxoffice@127.0.0.1:$PG_PORT/boxoffice_payments"
    } >"$tmp"
    mv -f "$tmp" "$env_file"
    say "wrote $common and $env_file"
)

# --- the services' database users -------------------------------------------------

# Each service connects as a login user of its own, in the group role its migrations
# grant rights to (migrations/event_store/0011, read_models/0004, payment_gateway/0003),
# with a password of its own (made once per state directory, in db-password-<login>):
# one service's credentials are no use for another's rights. Run after the migrations
# (they create the groups). Writes $STATE_DIR/env.<service>: env.common and that
# service's URLs, nothing else.
ensure_service_logins() (
    set -euo pipefail
    local pwfile password spec login group service db
    umask 077
    for spec in command-api:bx_command:boxoffice_command:boxoffice \
        projector:bx_projector:boxoffice_projector:boxoffice \
        query-api:bx_query:boxoffice_query:boxoffice \
        payment-gateway:bx_payments:boxoffice_payments:boxoffice_payments \
        notifier:bx_notifier:boxoffice_notifier:boxoffice; do
        IFS=: read -r service login group db <<<"$spec"
        # A service whose migrations have not run (not built yet, as a new service
        # while it is written) has no group role to put its login in.
        if [[ "$(pg_psql -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$group'")" != 1 ]]; then
            say "no group role $group (yet): no database user for $service"
            continue
        fi
        pwfile="$STATE_DIR/db-password-$login"
        [[ -s $pwfile ]] || od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$pwfile"
        password="$(<"$pwfile")"
        if [[ "$(pg_psql -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$login'")" != 1 ]]; then
            say "creating database user $login (in $group)"
            pg_psql -d postgres -c "CREATE ROLE $login LOGIN IN ROLE $group"
        fi
        # Through stdin, not the command line (which `ps` shows).
        printf "ALTER ROLE %s PASSWORD '%s'\n" "$login" "$password" | pg_psql -d postgres -q >/dev/null
        local url="postgres://$login:$password@127.0.0.1:$PG_PORT/$db"
        {
            printf 'source %q\n' "$STATE_DIR/env.common"
            case "$service" in
                payment-gateway) printf 'export PAYMENT_DATABASE_URL=%q\n' "$url" ;;
                *) printf 'export DATABASE_URL=%q\nexport READ_DATABASE_URL=%q\n' "$url" "$url" ;;
            esac
        } >"$STATE_DIR/env.$service"
    done
    rm -f "$STATE_DIR/db-password" # the one shared password of earlier versions
)

# Postgres, the broker, the topic, the SMTP sink and the env file. Idempotent.
start_infra() (
    set -euo pipefail
    ensure_postgres_installed
    ensure_tansu_installed
    ensure_aiosmtpd_installed
    start_postgres
    start_broker
    create_topic "$KAFKA_TOPIC_DEFAULT"
    start_smtp
    write_env_file
)
