#!/usr/bin/env bash
# The migration Job's last step (compose.yaml's db-users service): a login user per
# service, in the group role its migrations made (boxoffice_command, boxoffice_projector,
# boxoffice_query, boxoffice_payments, boxoffice_notifier), with the password of the
# service's own database URL. Each URL is read from that service's Secret, so a
# password is written in one place only. Run as the owner (MIGRATION_DATABASE_URL,
# MIGRATION_PAYMENT_DATABASE_URL), after the migrations; idempotent: a login that exists
# keeps its rights and gets its group and its password (again).
#
# Environment:
#   MIGRATION_DATABASE_URL          the event store as its owner (who may create roles)
#   MIGRATION_PAYMENT_DATABASE_URL  the gateway's books as their owner
#   COMMAND_DATABASE_URL, PROJECTOR_DATABASE_URL, QUERY_DATABASE_URL,
#   NOTIFIER_DATABASE_URL,
#   PAYMENT_DATABASE_URL            each service's own URL (DATABASE_URL, and
#                                   PAYMENT_DATABASE_URL for the gateway)
#   BOXOFFICE_MANAGE_DB_USERS       `false`: do nothing (the logins are managed elsewhere,
#                                   e.g. by the Postgres operator's managed roles)
#
# Needs psql 15 or later (\getenv): the postgres:15 image. Never prints a password: it
# reaches psql through the environment, not its command line.
set -euo pipefail

if [[ ${BOXOFFICE_MANAGE_DB_USERS:-true} == false ]]; then
    echo "db-users: BOXOFFICE_MANAGE_DB_USERS=false, the logins are managed elsewhere"
    exit 0
fi

# Percent-decoding of a URL's user or password part, as the services' driver reads it.
urldecode() {
    local s="${1//\\/\\\\}"
    printf '%b' "${s//%/\\x}"
}

# ensure_login SERVICE OWNER_URL SERVICE_URL GROUP
ensure_login() {
    local service="$1" owner="$2" url="$3" group="$4"
    if [[ ! $url =~ ^postgres(ql)?://([^:@/?#]+):([^@/?#]+)@ ]]; then
        echo "db-users: $service's database URL has no user:password@ part" >&2
        return 1
    fi
    local login
    login="$(urldecode "${BASH_REMATCH[2]}")"
    BOXOFFICE_LOGIN="$login" BOXOFFICE_GROUP="$group" \
        BOXOFFICE_PASSWORD="$(urldecode "${BASH_REMATCH[3]}")" \
        psql "$owner" --no-psqlrc -v ON_ERROR_STOP=1 -q <<'SQL'
\getenv login BOXOFFICE_LOGIN
\getenv group BOXOFFICE_GROUP
\getenv password BOXOFFICE_PASSWORD
SET boxoffice.login_role TO :'login';
SET boxoffice.group_role TO :'group';
SET boxoffice.login_password TO :'password';
DO $$
DECLARE
    login text := current_setting('boxoffice.login_role');
    grp text := current_setting('boxoffice.group_role');
    found_role pg_roles%ROWTYPE;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = grp) THEN
        RAISE EXCEPTION 'db-users: the group role % is missing: run the migrations first', grp;
    END IF;
    SELECT * INTO found_role FROM pg_roles WHERE rolname = login;
    IF NOT FOUND THEN
        EXECUTE format('CREATE ROLE %I LOGIN', login);
    ELSIF found_role.rolsuper OR found_role.rolcreaterole OR found_role.rolcreatedb
          OR login = current_user THEN
        RAISE EXCEPTION 'db-users: % may create roles or databases, or runs this step: '
                        'a service must connect as a login of its own', login;
    END IF;
    IF NOT pg_has_role(login, grp, 'MEMBER') THEN
        EXECUTE format('GRANT %I TO %I', grp, login);
    END IF;
    EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L', login,
                   current_setting('boxoffice.login_password'));
    RAISE NOTICE 'db-users: % is a login in %', login, grp;
END
$$;
RESET boxoffice.login_password;
SQL
}

: "${MIGRATION_DATABASE_URL:?is required: the URL of the event store as its owner}"
: "${MIGRATION_PAYMENT_DATABASE_URL:?is required: the URL of the payment books as their owner}"
ensure_login command-api "$MIGRATION_DATABASE_URL" "${COMMAND_DATABASE_URL:?}" boxoffice_command
ensure_login projector "$MIGRATION_DATABASE_URL" "${PROJECTOR_DATABASE_URL:?}" boxoffice_projector
ensure_login query-api "$MIGRATION_DATABASE_URL" "${QUERY_DATABASE_URL:?}" boxoffice_query
ensure_login notifier "$MIGRATION_DATABASE_URL" "${NOTIFIER_DATABASE_URL:?}" boxoffice_notifier
ensure_login payment-gateway "$MIGRATION_PAYMENT_DATABASE_URL" "${PAYMENT_DATABASE_URL:?}" boxoffice_payments
