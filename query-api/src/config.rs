//! query-api configuration, from the environment (see `.env.example`).

use std::net::SocketAddr;
use std::time::Duration;

use platform::auth::JwtRules;
use platform::config::{parse_or, required, var_or};
use platform::server::ServerLimits;

/// What query-api reads from its environment.
#[derive(Clone)]
pub struct Config {
    /// `DATABASE_URL`: the event store (read-only: projection status, audit).
    pub database_url: String,
    /// `READ_DATABASE_URL` (default `DATABASE_URL`): the read models.
    pub read_database_url: String,
    /// `BOXOFFICE_JWT_SECRET`, required, at least 32 bytes. Never logged.
    pub jwt_secret: String,
    /// `BOXOFFICE_JWT_ISSUER`, `BOXOFFICE_JWT_AUDIENCE`, `BOXOFFICE_JWT_MAX_TTL_SECS`.
    pub jwt_rules: JwtRules,
    /// `QUERY_API_ADDR` (default `127.0.0.1:8081`).
    pub addr: SocketAddr,
    /// The HTTP server's bounds (`HTTP_*`, see `platform::server`).
    pub http: ServerLimits,
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
            .field("jwt_rules", &self.jwt_rules)
            .field("addr", &self.addr)
            .field("http", &self.http)
            .field("idempotency_ttl", &self.idempotency_ttl)
            .finish()
    }
}

impl Config {
    /// The defaults (what an empty environment gives) for the store at `database_url`
    /// (read models there too), verifying tokens signed with `jwt_secret`. Tests start
    /// from this and change what they need.
    pub fn new(database_url: &str, jwt_secret: &str) -> Self {
        Self {
            database_url: database_url.to_owned(),
            read_database_url: database_url.to_owned(),
            jwt_secret: jwt_secret.to_owned(),
            jwt_rules: JwtRules::default(),
            addr: SocketAddr::from(([127, 0, 0, 1], 8081)),
            http: ServerLimits::default(),
            idempotency_ttl: Duration::from_secs(24 * 3600),
        }
    }

    /// Reads the environment (unset variables keep the defaults of [`Config::new`]).
    pub fn from_env() -> anyhow::Result<Self> {
        let database_url = required("DATABASE_URL")?;
        let d = Self::new(&database_url, &required("BOXOFFICE_JWT_SECRET")?);
        Ok(Self {
            read_database_url: var_or("READ_DATABASE_URL", &database_url),
            jwt_rules: JwtRules::from_env()?,
            addr: parse_or("QUERY_API_ADDR", d.addr)?,
            http: ServerLimits::from_env()?,
            idempotency_ttl: Duration::from_secs(
                3600 * parse_or::<u64>(
                    "BOXOFFICE_IDEMPOTENCY_TTL_HOURS",
                    d.idempotency_ttl.as_secs() / 3600,
                )?,
            ),
            ..d
        })
    }
}
