//! Postgres: pools and migrations.
//!
//! The event store (`events`, `snapshots`, `outbox`, `idempotency_keys`) lives in the
//! default schema of `DATABASE_URL` and its migrations are applied by command-api. The
//! read models live in their own schema, [`READ_MODEL_SCHEMA`], reached through a pool
//! whose `search_path` is that schema, so they can move to another database by pointing
//! `READ_DATABASE_URL` elsewhere. Each part has its own `_sqlx_migrations` table (in its
//! own schema), so the two migration sets never trip over each other. sqlx takes an
//! advisory lock while migrating, so replicas may start together.
//!
//! The payment gateway keeps its books the same way, in [`PAYMENT_GATEWAY_SCHEMA`] of
//! `PAYMENT_DATABASE_URL` ([`connect_in_schema`], [`migrate_payment_gateway`]), and the
//! notifier its sent log in [`NOTIFIER_SCHEMA`] of `DATABASE_URL` ([`migrate_notifier`]).

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::{empty_is_unset, first_set, required};

/// The schema of the read models.
pub const READ_MODEL_SCHEMA: &str = "read_models";

/// The schema of the payment gateway's books.
pub const PAYMENT_GATEWAY_SCHEMA: &str = "payment_gateway";

/// The schema of the notifier's own tables (its sent log, its place in the store).
pub const NOTIFIER_SCHEMA: &str = "notifier";

/// How long start-up waits for the database before giving up.
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);

/// A pool on `url`, waiting up to a minute for the server at start-up (compose starts
/// everything at once).
/// Whether a database failure is the moment's, not the request's: the connection was
/// lost or refused, the server is shutting down or terminated the session (an
/// operator's `pg_terminate_backend`, a failover), or no connection was free in time.
/// Such a request is answered 503 with `Retry-After`, not 500.
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08: connection exception; 57P01..57P03: admin or crash shutdown,
            // cannot connect now; 53300: too many connections.
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }),
        _ => false,
    }
}

/// [`is_transient`] for the first database error in an error's chain of sources.
pub fn error_is_transient(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(db) = err.downcast_ref::<sqlx::Error>() {
            return is_transient(db);
        }
        if let Some(db) = err.downcast_ref::<std::sync::Arc<sqlx::Error>>() {
            return is_transient(db);
        }
        next = err.source();
    }
    false
}

pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url.parse().context("DATABASE_URL is not a Postgres URL")?;
    connect_with(options, max_connections).await
}

/// A pool on the read-model schema of `url`; creates the schema when missing.
pub async fn connect_read_models(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url
        .parse()
        .context("READ_DATABASE_URL is not a Postgres URL")?;
    let pool = connect_with(
        options.options([("search_path", READ_MODEL_SCHEMA)]),
        max_connections,
    )
    .await?;
    create_schema(&pool, READ_MODEL_SCHEMA)
        .await
        .context("cannot create the read-model schema")?;
    Ok(pool)
}

/// A pool on `schema` of `url` (its `search_path` is that schema alone, so unqualified
/// tables and sqlx's `_sqlx_migrations` live there); creates the schema when missing.
/// `schema` is a plain identifier: lowercase ASCII letters, digits and `_`.
pub async fn connect_in_schema(
    url: &str,
    schema: &str,
    max_connections: u32,
) -> anyhow::Result<PgPool> {
    anyhow::ensure!(
        is_plain_identifier(schema),
        "{schema:?} is not a plain schema name (lowercase letters, digits, _)"
    );
    let options: PgConnectOptions = url
        .parse()
        .with_context(|| format!("the database URL for schema {schema} is not a Postgres URL"))?;
    let pool = connect_with(options.options([("search_path", schema)]), max_connections).await?;
    create_schema(&pool, schema)
        .await
        .with_context(|| format!("cannot create the schema {schema}"))?;
    Ok(pool)
}

/// Whether `name` can go into SQL unquoted: it is formatted into `CREATE SCHEMA`, where
/// no bind parameter is allowed.
fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

/// `CREATE SCHEMA IF NOT EXISTS` is not safe against itself: two sessions that both find
/// the schema missing both create it, and the second fails on `pg_namespace`'s unique
/// index (projector and query-api starting together on a fresh database did). So it is
/// done under a transaction-scoped advisory lock, which serializes the two. `schema`
/// must be a plain identifier.
///
/// A schema that exists is left alone without asking for the right to create one: a
/// service's own login user has no such right (migrations make the schema as the owner).
async fn create_schema(pool: &PgPool, schema: &str) -> sqlx::Result<()> {
    /// "bxschema" in ASCII.
    const SCHEMA_LOCK: i64 = 0x6278_7363_6865_6d61;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(pool)
            .await?;
    if exists {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// A pool on the read-model schema of `url` whose sessions act as the group role
/// `role` when their login user is a member of it (see [`act_as`]).
pub async fn connect_read_models_as(
    url: &str,
    max_connections: u32,
    role: &'static str,
) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url
        .parse()
        .context("READ_DATABASE_URL is not a Postgres URL")?;
    let pool = connect_with_role(
        options.options([("search_path", READ_MODEL_SCHEMA)]),
        max_connections,
        Some(role),
    )
    .await?;
    create_schema(&pool, READ_MODEL_SCHEMA)
        .await
        .context("cannot create the read-model schema")?;
    Ok(pool)
}

/// Makes a session act as `role` (`SET ROLE`) when its login user is a member of it,
/// so that what the session creates belongs to the role, not to one login (a login
/// that is no member, such as the owner's, acts as itself).
async fn act_as(conn: &mut sqlx::PgConnection, role: &str) -> sqlx::Result<()> {
    let member: bool = sqlx::query_scalar(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)
                     THEN pg_has_role(current_user, $1, 'MEMBER')
                          AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                     ELSE false END",
    )
    .bind(role)
    .fetch_one(&mut *conn)
    .await?;
    if member {
        // A role name cannot be a bind parameter; ours are plain identifiers.
        sqlx::query(&format!("SET ROLE {role}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn connect_with(options: PgConnectOptions, max_connections: u32) -> anyhow::Result<PgPool> {
    connect_with_role(options, max_connections, None).await
}

async fn connect_with_role(
    options: PgConnectOptions,
    max_connections: u32,
    role: Option<&'static str>,
) -> anyhow::Result<PgPool> {
    let mut pool_options = PgPoolOptions::new()
        .max_connections(max_connections)
        // sqlx pings every connection it hands out by default: a round trip per query.
        // A broken connection shows up as the query's error anyway, and is replaced.
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(10));
    if let Some(role) = role {
        pool_options = pool_options
            .after_connect(move |conn, _| Box::pin(async move { act_as(conn, role).await }));
    }
    let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
    loop {
        match pool_options.clone().connect_with(options.clone()).await {
            Ok(pool) => return Ok(pool),
            Err(err) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(cause = %err, "database not reachable yet, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => return Err(err).context("cannot connect to the database"),
        }
    }
}

/// Applies the event-store migrations that are not applied yet (none: nothing is
/// asked of the database, so a service's own login user, which may not alter tables,
/// starts on a migrated store).
pub async fn migrate_event_store(pool: &PgPool) -> anyhow::Result<()> {
    migrate(
        pool,
        &sqlx::migrate!("../migrations/event_store"),
        "event-store",
        "command-api migrate",
    )
    .await
}

/// Applies the read-model migrations not applied yet (into the read-model schema:
/// `pool` must come from [`connect_read_models`]).
pub async fn migrate_read_models(pool: &PgPool) -> anyhow::Result<()> {
    migrate(
        pool,
        &sqlx::migrate!("../migrations/read_models"),
        "read-model",
        "projector migrate",
    )
    .await
}

/// Applies the payment gateway's migrations not applied yet (into
/// [`PAYMENT_GATEWAY_SCHEMA`]: `pool` must come from [`connect_in_schema`] with that
/// schema).
pub async fn migrate_payment_gateway(pool: &PgPool) -> anyhow::Result<()> {
    migrate(
        pool,
        &sqlx::migrate!("../migrations/payment_gateway"),
        "payment gateway",
        "payment-gateway migrate",
    )
    .await
}

/// Applies the notifier's migrations not applied yet (into [`NOTIFIER_SCHEMA`]: `pool`
/// must come from [`connect_in_schema`] with that schema). The event store must be
/// migrated first: the notifier reads it.
pub async fn migrate_notifier(pool: &PgPool) -> anyhow::Result<()> {
    migrate(
        pool,
        &sqlx::migrate!("../migrations/notifier"),
        "notifier",
        "notifier migrate",
    )
    .await
}

/// What a `migrate` subcommand migrates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    /// The event store (`command-api migrate`).
    EventStore,
    /// The read models (`projector migrate`, `query-api migrate`).
    ReadModels,
    /// The payment gateway's books (`payment-gateway migrate`).
    PaymentGateway,
    /// The notifier's sent log (`notifier migrate`).
    Notifier,
}

impl Migrations {
    /// Applies what is pending, connecting to `url` (the owner's: the `MIGRATION_*`
    /// setting of the database, else the service's own URL, as each service's settings
    /// choose): the body of each service's `migrate` subcommand.
    pub async fn run(self, url: &str) -> anyhow::Result<()> {
        match self {
            Self::EventStore => migrate_event_store(&connect(url, 2).await?).await?,
            Self::ReadModels => migrate_read_models(&connect_read_models(url, 2).await?).await?,
            Self::PaymentGateway => {
                let pool = connect_in_schema(url, PAYMENT_GATEWAY_SCHEMA, 2).await?;
                migrate_payment_gateway(&pool).await?;
            }
            Self::Notifier => {
                let pool = connect_in_schema(url, NOTIFIER_SCHEMA, 2).await?;
                migrate_notifier(&pool).await?;
            }
        }
        println!("{self:?} migrated");
        Ok(())
    }
}

/// Where the event store and the read models are, for the read side (projector,
/// query-api). Database URLs hold passwords: `--help` never shows their values.
#[derive(Clone, clap::Args)]
#[command(next_help_heading = "Databases")]
pub struct ReadSideUrls {
    /// The event store (required), as this service's own database user. Hidden here:
    /// it holds a password.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = empty_is_unset::<String>())]
    pub database_url: Option<String>,
    /// The read models, in the `read_models` schema of this database; defaults to
    /// DATABASE_URL. Hidden here: it holds a password.
    #[arg(long, env = "READ_DATABASE_URL", hide_env_values = true, value_parser = empty_is_unset::<String>())]
    pub read_database_url: Option<String>,
    /// For `migrate`: the read models' database as the owner of their tables; defaults
    /// to READ_DATABASE_URL, else DATABASE_URL. Hidden here: it holds a password.
    #[arg(long, env = "MIGRATION_READ_DATABASE_URL", hide_env_values = true, value_parser = empty_is_unset::<String>())]
    pub migration_read_database_url: Option<String>,
}

impl ReadSideUrls {
    /// `DATABASE_URL`; an error when it is unset.
    pub fn database_url(&self) -> anyhow::Result<String> {
        required("DATABASE_URL", &self.database_url)
    }

    /// `READ_DATABASE_URL`, else `DATABASE_URL`.
    pub fn read_database_url(&self) -> anyhow::Result<String> {
        first_set(&[
            ("READ_DATABASE_URL", &self.read_database_url),
            ("DATABASE_URL", &self.database_url),
        ])
    }

    /// The URL `migrate` applies the read models' migrations with:
    /// `MIGRATION_READ_DATABASE_URL`, else `READ_DATABASE_URL`, else `DATABASE_URL`.
    pub fn migration_url(&self) -> anyhow::Result<String> {
        first_set(&[
            (
                "MIGRATION_READ_DATABASE_URL",
                &self.migration_read_database_url,
            ),
            ("READ_DATABASE_URL", &self.read_database_url),
            ("DATABASE_URL", &self.database_url),
        ])
    }
}

/// Runs what of `migrator` is pending on `pool`; nothing when nothing is.
async fn migrate(
    pool: &PgPool,
    migrator: &sqlx::migrate::Migrator,
    what: &str,
    command: &str,
) -> anyhow::Result<()> {
    // No table yet (or not readable): everything is pending.
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    let pending = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .count();
    if pending == 0 {
        return Ok(());
    }
    migrator.run(pool).await.with_context(|| {
        format!(
            "applying {pending} pending {what} migrations failed; when this service's database \
             user may not alter the schema (as it should not), run `{command}` with the owner's \
             URL in its MIGRATION_*_URL variable first (see the README)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_identifiers_go_into_sql() {
        assert!(is_plain_identifier("payment_gateway"));
        assert!(is_plain_identifier("read_models2"));
        assert!(!is_plain_identifier(""));
        assert!(!is_plain_identifier("2x"));
        assert!(!is_plain_identifier("Payments"));
        assert!(!is_plain_identifier("x; DROP TABLE events"));
        assert!(!is_plain_identifier(&"a".repeat(64)));
    }
}
