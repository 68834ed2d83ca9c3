//! query-api configuration, from the environment (see `.env.example`).

use std::net::SocketAddr;
use std::time::Duration;

use platform::config::{parse_or, required, var_or};

/// What query-api reads from its environment.
#[derive(Clone)]
pub struct Config {
    /// `DATABASE_URL`: the event store (read-only: projection status, audit).
    pub database_url: String,
    /// `READ_DATABASE_URL` (default `DATABASE_URL`): the read models.
    pub read_database_url: String,
    /// `BOXOFFICE_JWT_SECRET`, required. Never logged.
    pub jwt_secret: String,
    /// `QUERY_API_ADDR` (default `127.0.0.1:8081`).
    pub addr: SocketAddr,
    /// `BOXOFFICE_IDEMPOTENCY_TTL_HOURS` (default 24, as in command-api): how long the
    /// `Idempotency-Key` of a rebuild request is remembered.
    pub idempotency_ttl: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &"<redacted>")
            .field("read_database_url", &"<redacted>")
            .field("jwt_secret", &"<redacted>")
            .field("addr", &self.addr)
            .field("idempotency_ttl", &self.idempotency_ttl)
            .finish()
    }
}

impl Config {
    /// Reads the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let database_url = required("DATABASE_URL")?;
        Ok(Self {
            read_database_url: var_or("READ_DATABASE_URL", &database_url),
            database_url,
            jwt_secret: required("BOXOFFICE_JWT_SECRET")?,
            addr: parse_or("QUERY_API_ADDR", SocketAddr::from(([127, 0, 0, 1], 8081)))?,
            idempotency_ttl: Duration::from_secs(
                3600 * parse_or::<u64>("BOXOFFICE_IDEMPOTENCY_TTL_HOURS", 24)?,
            ),
        })
    }
}
