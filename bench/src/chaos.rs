//! The `chaos` drill: a whole boxoffice of its own (the four services from the release
//! build, a tansu broker in memory, a scratch database on the stack's Postgres server),
//! driven with bookings, cancellations and reads while faults are injected at random:
//! a service killed (SIGKILL) and restarted, the broker killed and restarted empty (its
//! memory storage is lost), a few Postgres backends of the drill's database terminated.
//! Then the load stops, the system is left to settle, and the drill checks what a
//! customer, an accountant and an operator would: no accepted command lost, no seat
//! oversold, every booking final after its hold, no payment held for a booking that is
//! not live, read models equal to a fresh rebuild, no effect done twice. It prints the
//! faults it injected and each check, and exits 1 on any violation.
//!
//! Everything listens on 127.0.0.1, is bounded in count and time, and stops by itself;
//! the scratch database is dropped unless a check failed (or `--keep`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use platform::auth::{Jwt, Role};
use platform::kafka::TopicSpec;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::bookings::Customers;
use crate::scratch::Scratch;

/// Options of the drill.
#[derive(clap::Args)]
pub struct Args {
    /// Minutes of load and faults (then the drill settles and checks).
    #[arg(long, default_value_t = 5)]
    minutes: u64,
    /// A database URL of the stack's Postgres server, as a user who may create
    /// databases (`.local/env`'s `DATABASE_URL`): the drill makes a scratch database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Concurrent customers' clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seats held for a payment that does not answer (short, so that the check of
    /// bookings left pending after their hold fits in the drill).
    #[arg(long, default_value_t = 15)]
    hold_ttl_secs: u64,
    /// Seconds between faults, at least and at most.
    #[arg(long, default_value_t = 5)]
    fault_every_min: u64,
    #[arg(long, default_value_t = 15)]
    fault_every_max: u64,
    /// The random seed (printed; a run can be repeated with it).
    #[arg(long)]
    seed: Option<u64>,
    /// Keep the scratch database even when every check passes.
    #[arg(long)]
    keep: bool,
}

/// A tiny deterministic generator (xorshift64*): enough for picking faults and
/// operations, and repeatable from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// In `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// What the drill can break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fault {
    Kill(Svc),
    Broker,
    PostgresBackends,
}

impl Fault {
    const ALL: [Fault; 6] = [
        Fault::Kill(Svc::Command),
        Fault::Kill(Svc::Projector),
        Fault::Kill(Svc::Query),
        Fault::Kill(Svc::Gateway),
        Fault::Broker,
        Fault::PostgresBackends,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::Kill(svc) => svc.kill_name(),
            Fault::Broker => "broker killed, restarted empty",
            Fault::PostgresBackends => "Postgres backends terminated",
        }
    }
}

/// The processes of the drill's system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Svc {
    Broker,
    Gateway,
    Command,
    Query,
    Projector,
}

impl Svc {
    fn binary(self) -> &'static str {
        match self {
            Svc::Broker => "tansu",
            Svc::Gateway => "payment-gateway",
            Svc::Command => "command-api",
            Svc::Query => "query-api",
            Svc::Projector => "projector",
        }
    }

    fn kill_name(self) -> &'static str {
        match self {
            Svc::Broker => "broker killed",
            Svc::Gateway => "payment-gateway killed",
            Svc::Command => "command-api killed",
            Svc::Query => "query-api killed",
            Svc::Projector => "projector killed",
        }
    }
}

/// One process of the system: how to start it, and the running child.
struct Process {
    svc: Svc,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    async fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.program.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.answers().await {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "{} exited at start-up ({status}); see {}",
                    self.svc.binary(),
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "{} did not come up within 60 s; see {}",
            self.svc.binary(),
            self.log.display()
        )
    }

    /// Whether it answers: the broker's port takes connections; a service's liveness
    /// probe says 200.
    async fn answers(&self) -> bool {
        let addr = format!("127.0.0.1:{}", self.port);
        if self.svc == Svc::Broker {
            return tokio::net::TcpStream::connect(&addr).await.is_ok();
        }
        let probe = async {
            let mut stream = tokio::net::TcpStream::connect(&addr).await.ok()?;
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            stream
                .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut head = [0u8; 12];
            stream.read_exact(&mut head).await.ok()?;
            Some(head.ends_with(b"200"))
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), probe).await,
            Ok(Some(true))
        )
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// A free port on loopback (bound, then let go: the drill's processes take it next).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Where the release binaries are: beside this one.
fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let here = std::env::current_exe()?;
    let path = here.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} is missing: build the services first (cargo build --release --workspace)",
            path.display()
        );
    }
    Ok(path)
}

fn tansu() -> anyhow::Result<PathBuf> {
    if let Ok(bin) = std::env::var("BOXOFFICE_TANSU_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    for candidate in [
        home.join("bin/tansu"),
        PathBuf::from("/usr/local/bin/tansu"),
    ] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    bail!("tansu is not installed (scripts/up installs it)")
}

/// What the load was answered.
#[derive(Default)]
struct Ledger {
    /// Bookings answered 202: id, event, customer token.
    bookings: Vec<(String, String, String)>,
    /// Cancellations answered 202.
    cancellations: Vec<String>,
    /// Answers by kind (`202 booking`, `503 overloaded`, `connection refused`, ...).
    answers: HashMap<String, u64>,
}

impl Ledger {
    fn count(&mut self, kind: String) {
        *self.answers.entry(kind).or_default() += 1;
    }
}

const TOPIC: &str = "boxoffice.chaos";
const EVENTS: usize = 4;
/// The `application_name` of the drill's own database sessions.
const DRILL_APP: &str = "boxoffice-chaos-drill";
const CAPACITY: u32 = 120;
const NEW_EVENT_EVERY: Duration = Duration::from_secs(10);

/// Runs the drill.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1
    });
    println!(
        "boxoffice bench: chaos, {} minutes, seed {seed}",
        args.minutes
    );
    let scratch = Scratch::create(&args.database_url, "chaos").await?;
    println!(
        "  scratch database: {}",
        scratch.url.rsplit('/').next().unwrap_or_default()
    );
    let logs = PathBuf::from(".local/chaos").join(Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&logs)?;
    println!("  service logs: {}", logs.display());

    let outcome = drill(&args, seed, &scratch.url, &logs).await;
    match outcome {
        Ok(true) if !args.keep => {
            scratch.drop().await?;
            Ok(())
        }
        Ok(true) => Ok(()),
        Ok(false) => {
            println!("  kept the scratch database for inspection");
            std::process::exit(1);
        }
        Err(err) => {
            println!("  the drill itself failed: {err:#}");
            println!("  kept the scratch database and the logs for inspection");
            std::process::exit(2);
        }
    }
}

/// The system, the load, the faults, the checks. `Ok(true)` when every check passed.
async fn drill(args: &Args, seed: u64, url: &str, logs: &Path) -> anyhow::Result<bool> {
    let secret = format!(
        "{:032x}{:032x}",
        Uuid::new_v4().as_u128(),
        Uuid::new_v4().as_u128()
    );
    let jwt = Jwt::new(&secret);
    let mut system = System::new(url, &secret, logs, args.hold_ttl_secs)?;
    system.start_all().await?;
    let command = format!("http://127.0.0.1:{}", system.port(Svc::Command));
    let query = format!("http://127.0.0.1:{}", system.port(Svc::Query));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    // The drill's own sessions carry a name of their own, so that the fault that
    // terminates backends leaves them alone (they are the observer, not the system).
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    let db = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.application_name(DRILL_APP))
        .await?;

    let admin = jwt.issue("chaos-admin", Role::Admin, Duration::from_secs(24 * 3600));
    let location = setup(&http, &command, &admin).await?;
    let mut first = Vec::new();
    for _ in 0..EVENTS {
        first.push(new_event(&http, &command, &admin, &location).await?);
    }
    // On sale: the newest few. A new event goes on sale every NEW_EVENT_EVERY, so that
    // seats keep selling (and payments keep moving) rather than every request meeting
    // a sold-out hall after the first seconds.
    let events = Arc::new(Mutex::new(first));
    println!(
        "  {EVENTS} events of {CAPACITY} seats on sale, a new one every {} s; {} clients; a fault every {}-{} s\n",
        NEW_EVENT_EVERY.as_secs(),
        args.clients,
        args.fault_every_min,
        args.fault_every_max
    );

    // The load.
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for client in 0..args.clients {
        let (http, command, query, events, ledger, stop, sent, jwt) = (
            http.clone(),
            command.clone(),
            query.clone(),
            events.clone(),
            ledger.clone(),
            stop.clone(),
            sent.clone(),
            jwt.clone(),
        );
        let mut rng = Rng(seed ^ (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        clients.push(tokio::spawn(async move {
            let mut customers = Customers::new(&jwt, format!("chaos-{client}"), false);
            while !stop.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                let roll = rng.between(0, 99);
                let event = {
                    let events = events.lock().unwrap_or_else(|e| e.into_inner());
                    let newest = &events[events.len().saturating_sub(EVENTS)..];
                    newest[rng.between(0, newest.len() as u64 - 1) as usize].clone()
                };
                let kind = if roll < 70 {
                    let token = customers.next().to_owned();
                    book(&http, &command, &event, &token, rng.between(1, 3), &ledger).await
                } else if roll < 85 {
                    cancel_one(&http, &command, &query, &mut rng, &ledger).await
                } else {
                    read(&http, &query, &event, &admin_token(&jwt)).await
                };
                ledger.lock().unwrap_or_else(|e| e.into_inner()).count(kind);
                tokio::time::sleep(Duration::from_millis(rng.between(5, 40))).await;
            }
        }));
    }

    let on_sale = {
        let (http, command, admin, events, stop) = (
            http.clone(),
            command.clone(),
            admin.clone(),
            events.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(NEW_EVENT_EVERY).await;
                // command-api may be down this moment: the next round tries again.
                if let Ok(event) = new_event(&http, &command, &admin, &location).await {
                    events.lock().unwrap_or_else(|e| e.into_inner()).push(event);
                }
            }
        })
    };

    // The faults.
    let mut rng = Rng(seed);
    let mut injected: HashMap<Fault, u64> = HashMap::new();
    let end = Instant::now() + Duration::from_secs(args.minutes * 60);
    let started = Instant::now();
    loop {
        let pause = Duration::from_secs(rng.between(args.fault_every_min, args.fault_every_max));
        if Instant::now() + pause >= end {
            tokio::time::sleep(end.saturating_duration_since(Instant::now())).await;
            break;
        }
        tokio::time::sleep(pause).await;
        let fault = Fault::ALL[rng.between(0, Fault::ALL.len() as u64 - 1) as usize];
        let down_for = Duration::from_millis(rng.between(500, 3000));
        match fault {
            Fault::Kill(svc) => {
                system.kill(svc).await;
                tokio::time::sleep(down_for).await;
                system.start(svc).await?;
            }
            Fault::Broker => {
                system.kill(Svc::Broker).await;
                tokio::time::sleep(down_for).await;
                system.start(Svc::Broker).await?;
                // An operator recreates the topic of a broker that lost everything (the
                // relay and the projector would too, on their next error).
                let _ = platform::kafka::ensure_topic(
                    &system.brokers(),
                    &platform::kafka::KafkaSecurity::PLAINTEXT,
                    &topic(),
                )
                .await;
            }
            Fault::PostgresBackends => {
                let terminated: i64 = sqlx::query_scalar(
                    "SELECT count(pg_terminate_backend(pid)) FROM (
                         SELECT pid FROM pg_stat_activity
                          WHERE datname = current_database() AND pid <> pg_backend_pid()
                            AND backend_type = 'client backend'
                            AND application_name <> $1
                          ORDER BY random() LIMIT 3) t",
                )
                .bind(DRILL_APP)
                .fetch_one(&db)
                .await
                .unwrap_or(0);
                let _ = terminated;
            }
        }
        *injected.entry(fault).or_default() += 1;
        println!(
            "  {:>6.1} s  {}",
            started.elapsed().as_secs_f64(),
            fault.name()
        );
    }
    stop.store(true, Ordering::Relaxed);
    on_sale.abort();
    for client in clients {
        let _ = client.await;
    }
    // Everything up for the end, whatever the last fault was.
    system.ensure_all().await?;

    println!("\n  load stopped; letting the system settle");
    let settled = settle(&db, args.hold_ttl_secs).await?;
    println!("  settled in {:.1} s", settled.as_secs_f64());

    let ledger = std::mem::take(&mut *ledger.lock().unwrap_or_else(|e| e.into_inner()));
    let mut checks = check(&db, &ledger, args.hold_ttl_secs).await?;
    // A fault is answered 503 (or not at all, when the process is gone), never 500.
    let errors: u64 = ledger
        .answers
        .iter()
        .filter(|(kind, _)| kind.contains(": 500"))
        .map(|(_, n)| n)
        .sum();
    checks.push(("answers 500", i64::try_from(errors).unwrap_or(i64::MAX)));
    // The read models against a fresh rebuild, with the projector stopped.
    system.kill(Svc::Projector).await;
    let rebuilt = rebuild_matches(url).await?;
    system.stop_all().await;

    println!("\nfaults injected");
    let mut total = 0;
    for fault in Fault::ALL {
        let n = injected.get(&fault).copied().unwrap_or(0);
        total += n;
        println!("  {:<34} {n:>5}", fault.name());
    }
    println!("  {:<34} {total:>5}", "in all");
    println!("\nload ({} requests)", sent.load(Ordering::Relaxed));
    let mut answers: Vec<_> = ledger.answers.iter().collect();
    answers.sort_by(|a, b| b.1.cmp(a.1));
    for (kind, n) in answers {
        println!("  {kind:<34} {n:>7}");
    }
    println!("\nchecks");
    let mut ok = true;
    for (name, violations) in &checks {
        ok &= *violations == 0;
        println!(
            "  {name:<48} {violations:>5}{}",
            if *violations == 0 { "" } else { "  VIOLATION" }
        );
    }
    ok &= rebuilt;
    println!(
        "  {:<48} {:>5}{}",
        "read models equal to a fresh rebuild",
        if rebuilt { "yes" } else { "no" },
        if rebuilt { "" } else { "  VIOLATION" }
    );
    println!("\n{}", if ok { "PASSED" } else { "FAILED" });
    Ok(ok)
}

fn topic() -> TopicSpec {
    TopicSpec {
        name: TOPIC.into(),
        partitions: 3,
        replication: 1,
    }
}

fn admin_token(jwt: &Jwt) -> String {
    jwt.issue("chaos-reader", Role::Admin, Duration::from_secs(600))
}

/// The processes, their ports and settings.
struct System {
    processes: Vec<Process>,
}

impl System {
    fn new(url: &str, secret: &str, logs: &Path, hold_ttl_secs: u64) -> anyhow::Result<Self> {
        let ports: HashMap<Svc, u16> = [
            Svc::Broker,
            Svc::Gateway,
            Svc::Command,
            Svc::Query,
            Svc::Projector,
        ]
        .into_iter()
        .map(|svc| free_port().map(|p| (svc, p)))
        .collect::<anyhow::Result<_>>()?;
        let brokers = format!("127.0.0.1:{}", ports[&Svc::Broker]);
        let addr = |svc: Svc| format!("127.0.0.1:{}", ports[&svc]);
        let common = |extra: &[(&str, String)]| -> Vec<(String, String)> {
            let mut env = vec![
                ("RUST_LOG".to_owned(), "warn".to_owned()),
                ("LOG_FORMAT".to_owned(), "json".to_owned()),
            ];
            env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
            env
        };
        let log = |svc: Svc| logs.join(format!("{}.log", svc.binary()));
        let processes = vec![
            Process {
                svc: Svc::Broker,
                program: tansu()?,
                args: vec![
                    "broker".into(),
                    "--listener-url".into(),
                    format!("tcp://{brokers}"),
                    "--advertised-listener-url".into(),
                    format!("tcp://{brokers}"),
                    "--storage-engine".into(),
                    "memory://tansu/".into(),
                ],
                env: common(&[]),
                port: ports[&Svc::Broker],
                log: log(Svc::Broker),
                child: None,
            },
            Process {
                svc: Svc::Gateway,
                program: binary("payment-gateway")?,
                args: vec![],
                env: common(&[
                    ("PAYMENT_DATABASE_URL", url.to_owned()),
                    ("PAYMENT_GATEWAY_ADDR", addr(Svc::Gateway)),
                ]),
                port: ports[&Svc::Gateway],
                log: log(Svc::Gateway),
                child: None,
            },
            Process {
                svc: Svc::Command,
                program: binary("command-api")?,
                args: vec![],
                env: common(&[
                    ("DATABASE_URL", url.to_owned()),
                    ("BOXOFFICE_JWT_SECRET", secret.to_owned()),
                    ("COMMAND_API_ADDR", addr(Svc::Command)),
                    ("KAFKA_BROKERS", brokers.clone()),
                    ("KAFKA_TOPIC", TOPIC.to_owned()),
                    ("KAFKA_TOPIC_PARTITIONS", "3".to_owned()),
                    (
                        "PAYMENT_GATEWAY_URL",
                        format!("http://{}", addr(Svc::Gateway)),
                    ),
                    ("PAYMENT_TIMEOUT_MS", "1000".to_owned()),
                    ("PAYMENT_CIRCUIT_OPEN_MS", "2000".to_owned()),
                    ("BOXOFFICE_HOLD_TTL_SECS", hold_ttl_secs.to_string()),
                    ("BOXOFFICE_RECONCILE_EVERY_SECS", "5".to_owned()),
                    ("BOXOFFICE_RECONCILE_AFTER_SECS", "10".to_owned()),
                    ("BOXOFFICE_RELAY_POLL_MS", "200".to_owned()),
                ]),
                port: ports[&Svc::Command],
                log: log(Svc::Command),
                child: None,
            },
            Process {
                svc: Svc::Query,
                program: binary("query-api")?,
                args: vec![],
                env: common(&[
                    ("DATABASE_URL", url.to_owned()),
                    ("BOXOFFICE_JWT_SECRET", secret.to_owned()),
                    ("QUERY_API_ADDR", addr(Svc::Query)),
                ]),
                port: ports[&Svc::Query],
                log: log(Svc::Query),
                child: None,
            },
            Process {
                svc: Svc::Projector,
                program: binary("projector")?,
                args: vec![],
                env: common(&[
                    ("DATABASE_URL", url.to_owned()),
                    ("KAFKA_BROKERS", brokers.clone()),
                    ("KAFKA_TOPIC", TOPIC.to_owned()),
                    ("KAFKA_TOPIC_PARTITIONS", "3".to_owned()),
                    ("PROJECTOR_ADDR", addr(Svc::Projector)),
                    ("PROJECTOR_GROUP", "chaos-projector".to_owned()),
                    ("PROJECTOR_SWEEP_MS", "1000".to_owned()),
                    ("PROJECTOR_PARKED_RETRY_MS", "5000".to_owned()),
                ]),
                port: ports[&Svc::Projector],
                log: log(Svc::Projector),
                child: None,
            },
        ];
        Ok(Self { processes })
    }

    fn process(&mut self, svc: Svc) -> &mut Process {
        self.processes
            .iter_mut()
            .find(|p| p.svc == svc)
            .expect("every service has a process")
    }

    fn port(&self, svc: Svc) -> u16 {
        self.processes
            .iter()
            .find(|p| p.svc == svc)
            .map_or(0, |p| p.port)
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port(Svc::Broker))
    }

    async fn start(&mut self, svc: Svc) -> anyhow::Result<()> {
        self.process(svc).start().await
    }

    async fn kill(&mut self, svc: Svc) {
        self.process(svc).kill().await;
    }

    /// In dependency order: the broker and the gateway first, command-api (it migrates
    /// the store) before query-api and the projector.
    async fn start_all(&mut self) -> anyhow::Result<()> {
        for process in &mut self.processes {
            process.start().await?;
        }
        Ok(())
    }

    /// Starts whatever is not running.
    async fn ensure_all(&mut self) -> anyhow::Result<()> {
        for process in &mut self.processes {
            let running = process
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
            if !running {
                process.kill().await;
                process.start().await?;
            }
        }
        Ok(())
    }

    async fn stop_all(&mut self) {
        for process in self.processes.iter_mut().rev() {
            process.kill().await;
        }
    }
}

/// A location with one hall; its id.
async fn setup(http: &reqwest::Client, command: &str, admin: &str) -> anyhow::Result<String> {
    crate::bookings::post(
        http,
        &format!("{command}/v1/locations"),
        admin,
        &json!({"name": "Chaos Hall", "address": "1 Fault Line", "country": "FR",
                "halls": [{"name": "Main", "capacity": CAPACITY}]}),
    )
    .await
}

/// A new event in the hall, a month ahead; its id.
async fn new_event(
    http: &reqwest::Client,
    command: &str,
    admin: &str,
    location: &str,
) -> anyhow::Result<String> {
    let starts = chrono::Utc::now() + chrono::Duration::days(30);
    crate::bookings::post(
        http,
        &format!("{command}/v1/events"),
        admin,
        &json!({"name": "Chaos night", "location_id": location, "hall": "Main",
                "starts_at": starts.to_rfc3339(),
                "ends_at": (starts + chrono::Duration::hours(3)).to_rfc3339(),
                "price_cents": 2500, "currency": "EUR"}),
    )
    .await
}

/// How an answer is counted: its status and code, or the transport error's kind.
fn kind(what: &str, answer: Result<(reqwest::StatusCode, Value), reqwest::Error>) -> String {
    match answer {
        Ok((status, body)) => match body["error"]["code"].as_str() {
            Some(code) => format!("{what}: {} {code}", status.as_u16()),
            None => format!("{what}: {}", status.as_u16()),
        },
        Err(err) if err.is_timeout() => format!("{what}: timed out"),
        Err(err) if err.is_connect() => format!("{what}: not reached"),
        Err(_) => format!("{what}: connection lost"),
    }
}

async fn send(
    request: reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, Value), reqwest::Error> {
    let response = request.send().await?;
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

async fn book(
    http: &reqwest::Client,
    command: &str,
    event: &str,
    token: &str,
    seats: u64,
    ledger: &Mutex<Ledger>,
) -> String {
    let answer = send(
        http.post(format!("{command}/v1/events/{event}/bookings"))
            .bearer_auth(token)
            .json(&json!({"seats": seats, "card_token": "tok_visa"})),
    )
    .await;
    if let Ok((reqwest::StatusCode::ACCEPTED, body)) = &answer {
        if let Some(id) = body["id"].as_str() {
            ledger
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .bookings
                .push((id.to_owned(), event.to_owned(), token.to_owned()));
        }
    }
    kind("booking", answer)
}

/// Cancels one of the bookings made so far, when the query side shows it confirmed.
async fn cancel_one(
    http: &reqwest::Client,
    command: &str,
    query: &str,
    rng: &mut Rng,
    ledger: &Mutex<Ledger>,
) -> String {
    let picked = {
        let ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
        if ledger.bookings.is_empty() {
            None
        } else {
            let i = rng.between(0, ledger.bookings.len() as u64 - 1) as usize;
            Some(ledger.bookings[i].clone())
        }
    };
    let Some((id, _, token)) = picked else {
        return "cancel: nothing booked yet".into();
    };
    match send(
        http.get(format!("{query}/v1/bookings/{id}"))
            .bearer_auth(&token),
    )
    .await
    {
        Ok((reqwest::StatusCode::OK, body)) if body["status"] == "confirmed" => {}
        Ok(_) => return "cancel: not confirmed (skipped)".into(),
        Err(err) => return kind("cancel's read", Err(err)),
    }
    let answer = send(
        http.post(format!("{command}/v1/bookings/{id}/cancel"))
            .bearer_auth(&token)
            .json(&json!({})),
    )
    .await;
    if let Ok((reqwest::StatusCode::ACCEPTED, _)) = &answer {
        ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cancellations
            .push(id);
    }
    kind("cancel", answer)
}

async fn read(http: &reqwest::Client, query: &str, event: &str, token: &str) -> String {
    kind(
        "read",
        send(
            http.get(format!("{query}/v1/events/{event}"))
                .bearer_auth(token),
        )
        .await,
    )
}

/// Waits until nothing moves: the outbox empty, every saga finished (or parked, which
/// a check reports), the read models at the store's head. Gives up after the hold TTL
/// and three minutes more.
async fn settle(db: &PgPool, hold_ttl_secs: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(hold_ttl_secs + 180);
    loop {
        let query = sqlx::query_as(
            "SELECT (SELECT count(*) FROM outbox),
                    (SELECT count(*) FROM booking_sagas WHERE step <> 'done' AND parked_at IS NULL)
                  + (SELECT count(*) FROM event_cancellation_sagas WHERE NOT done AND parked_at IS NULL),
                    (SELECT count(*) FROM (
                        SELECT aggregate_type, aggregate_id, max(sequence) AS head FROM events
                         WHERE aggregate_type IN ('location', 'event', 'booking')
                         GROUP BY 1, 2) s
                       LEFT JOIN (
                        SELECT 'location' AS kind, id::text AS id, last_sequence FROM read_models.location_view
                        UNION ALL SELECT 'event', id::text, last_sequence FROM read_models.event_view
                        UNION ALL SELECT 'booking', id::text, last_sequence FROM read_models.booking_view) v
                         ON v.kind = s.aggregate_type AND v.id = s.aggregate_id
                      WHERE s.head > coalesce(v.last_sequence, 0))",
        )
        .fetch_one(db);
        // Bounded, so that the deadline holds whatever the database does.
        let (outbox, sagas, behind): (i64, i64, i64) =
            match tokio::time::timeout(Duration::from_secs(20), query).await {
                Ok(Ok(row)) => row,
                _ => (-1, -1, -1),
            };
        if (outbox, sagas, behind) == (0, 0, 0) {
            // The reconciliation sweep's pass over the gateway's books, once more.
            tokio::time::sleep(Duration::from_secs(12)).await;
            return Ok(started.elapsed());
        }
        if Instant::now() > deadline {
            println!("  still moving after {:.0} s: outbox {outbox}, sagas {sagas}, streams behind {behind}", started.elapsed().as_secs_f64());
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every check but the rebuild: (what, violations).
async fn check(
    db: &PgPool,
    ledger: &Ledger,
    hold_ttl_secs: u64,
) -> anyhow::Result<Vec<(&'static str, i64)>> {
    let accepted: Vec<String> = ledger
        .bookings
        .iter()
        .map(|(id, _, _)| id.clone())
        .collect();
    let lost_bookings: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM unnest($1::text[]) AS a(id)
          WHERE NOT EXISTS (SELECT FROM events e WHERE e.aggregate_type = 'booking'
                               AND e.aggregate_id = a.id AND e.event_type = 'BookingRequested')",
    )
    .bind(&accepted)
    .fetch_one(db)
    .await?;
    let lost_cancellations: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM unnest($1::text[]) AS a(id)
          WHERE NOT EXISTS (SELECT FROM events e WHERE e.aggregate_type = 'booking'
                               AND e.aggregate_id = a.id AND e.event_type = 'BookingCancelled')",
    )
    .bind(&ledger.cancellations)
    .fetch_one(db)
    .await?;
    // Each booking's fate, from the store (the truth).
    let fates = format!(
        "WITH fate AS (
        SELECT e.aggregate_id AS id,
               min((e.payload -> 'BookingRequested' ->> 'event_id')) AS event_id,
               max((e.payload -> 'BookingRequested' ->> 'seats')::int) AS seats,
               min((e.metadata ->> '{recorded_at}')::timestamptz) AS requested_at,
               bool_or(e.event_type = 'BookingConfirmed') AS confirmed,
               bool_or(e.event_type = 'BookingRejected') AS rejected,
               bool_or(e.event_type = 'BookingCancelled') AS cancelled
          FROM events e WHERE e.aggregate_type = 'booking' GROUP BY 1)",
        recorded_at = domain::metadata::key::RECORDED_AT
    );
    let oversold: i64 = sqlx::query_scalar(&format!(
        "{fates} SELECT count(*) FROM (
             SELECT event_id, sum(seats) AS sold FROM fate
              WHERE confirmed AND NOT cancelled GROUP BY 1) s
          WHERE s.sold > $1"
    ))
    .bind(i64::from(CAPACITY))
    .fetch_one(db)
    .await?;
    let not_final: i64 = sqlx::query_scalar(&format!(
        "{fates} SELECT count(*) FROM fate
          WHERE NOT confirmed AND NOT rejected
            AND requested_at < now() - make_interval(secs => $1)"
    ))
    .bind(hold_ttl_secs as f64)
    .fetch_one(db)
    .await?;
    let held: i64 = sqlx::query_scalar(&format!(
        "{fates} SELECT count(*) FROM payment_gateway.payment_intents p
          LEFT JOIN fate f ON f.id = p.idempotency_key
          WHERE p.status = 'authorized'
            AND (f.id IS NULL OR f.rejected OR f.cancelled OR f.confirmed)"
    ))
    .fetch_one(db)
    .await?;
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM (
                    SELECT payload -> event_type ->> 'booking_id', event_type FROM events
                     WHERE aggregate_type = 'event'
                       AND event_type IN ('SeatsReserved', 'SeatsSold', 'SeatsReleased')
                     GROUP BY 1, 2 HAVING count(*) > 1) l)
              + (SELECT count(*) FROM (
                    SELECT aggregate_id, event_type FROM events
                     WHERE aggregate_type = 'booking'
                       AND event_type IN ('BookingRequested', 'BookingConfirmed', 'BookingRejected',
                                          'BookingCancelled', 'BookingRefunded')
                     GROUP BY 1, 2 HAVING count(*) > 1) b)",
    )
    .fetch_one(db)
    .await?;
    let parked: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM booking_sagas WHERE parked_at IS NOT NULL)
              + (SELECT count(*) FROM read_models.parked_events)",
    )
    .fetch_one(db)
    .await?;
    println!(
        "\n  {} bookings and {} cancellations were accepted",
        accepted.len(),
        ledger.cancellations.len()
    );
    Ok(vec![
        ("accepted bookings lost", lost_bookings),
        ("accepted cancellations lost", lost_cancellations),
        ("events oversold", oversold),
        ("bookings not final after the hold TTL", not_final),
        ("payments held without a live booking", held),
        ("duplicate effects", duplicates),
        ("sagas or events parked", parked),
    ])
}

/// Whether each read model equals what a fresh rebuild from the store makes.
async fn rebuild_matches(url: &str) -> anyhow::Result<bool> {
    let read = platform::db::connect_read_models_as(url, 4, projector::app::PROJECTOR_ROLE).await?;
    let store = projector::store::EventStore::new(platform::db::connect(url, 4).await?);
    let tables = ["location_view", "event_view", "booking_view", "user_view"];
    let checksum = |table: &'static str| {
        let read = read.clone();
        async move {
            sqlx::query_scalar::<_, String>(&format!(
                "SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t.id)), '') FROM read_models.{table} t"
            ))
            .fetch_one(&read)
            .await
        }
    };
    let mut before = Vec::new();
    for table in tables {
        before.push(checksum(table).await?);
    }
    for projection in projector::Projection::ALL {
        projector::rebuild::run(&read, &store, projection, None, &|_| {})
            .await
            .map_err(|e| anyhow::anyhow!("the rebuild of {projection} failed: {e}"))?;
    }
    let mut same = true;
    for (table, was) in tables.into_iter().zip(before) {
        let now = checksum(table).await?;
        if now != was {
            println!("  {table} differs from its rebuild");
            same = false;
        }
    }
    Ok(same)
}
