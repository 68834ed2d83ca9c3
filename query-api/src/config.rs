//! query-api configuration: [`Settings`], each an option with its environment variable
//! (see `query-api --help` and `.env.example`), become a [`Config`].

use std::net::SocketAddr;
use std::time::Duration;

use platform::auth::{JwtRules, JwtSettings};
use platform::config::empty_is_unset;
use platform::db::ReadSideUrls;
use platform::server::{HttpSettings, ServerLimits};
use platform::telemetry::LogSettings;

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

    /// Reads the environment (unset variables keep the defaults of [`Config::new`]);
    /// errors name the variable at fault.
    pub fn from_env() -> anyhow::Result<Self> {
        platform::config::from_env::<Settings>("query-api")?.try_into()
    }
}

/// Everything query-api reads, each an option with its environment variable:
/// `query-api --help` lists them with their defaults (see also `.env.example`).
#[derive(Clone, clap::Args)]
#[command(next_help_heading = "Service")]
pub struct Settings {
    /// Where query-api listens.
    #[arg(long, env = "QUERY_API_ADDR", default_value = "127.0.0.1:8081", value_parser = empty_is_unset::<SocketAddr>())]
    pub query_api_addr: SocketAddr,
    /// How long the Idempotency-Key of a rebuild request is remembered, in hours.
    #[arg(long, env = "BOXOFFICE_IDEMPOTENCY_TTL_HOURS", default_value_t = 24, value_parser = empty_is_unset::<u64>())]
    pub idempotency_ttl_hours: u64,
    #[command(flatten)]
    pub urls: ReadSideUrls,
    #[command(flatten)]
    pub jwt: JwtSettings,
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub log: LogSettings,
}

impl TryFrom<Settings> for Config {
    type Error = anyhow::Error;

    /// The configuration the settings give; errors name the variable at fault.
    fn try_from(s: Settings) -> anyhow::Result<Self> {
        let database_url = s.urls.database_url()?;
        let d = Self::new(&database_url, &s.jwt.secret()?);
        Ok(Self {
            read_database_url: s.urls.read_database_url()?,
            jwt_rules: s.jwt.rules(),
            addr: s.query_api_addr,
            http: ServerLimits::try_from(&s.http)?,
            idempotency_ttl: Duration::from_secs(s.idempotency_ttl_hours.saturating_mul(3600)),
            ..d
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn config(args: &[&str]) -> anyhow::Result<Config> {
        platform::config::from_args::<Settings>(args)?.try_into()
    }

    #[test]
    fn the_settings_default_to_the_defaults_of_new() {
        let config = config(&["--database-url", "postgres://db", "--jwt-secret", SECRET]).unwrap();
        assert_eq!(
            format!("{config:?}"),
            format!("{:?}", Config::new("postgres://db", SECRET))
        );
        assert_eq!(config.database_url, "postgres://db");
        assert_eq!(config.read_database_url, "postgres://db");
        assert_eq!(config.jwt_secret, SECRET);
    }

    #[test]
    fn the_database_and_the_secret_are_required() {
        let err = config(&["--jwt-secret", SECRET]).unwrap_err();
        assert_eq!(err.to_string(), "DATABASE_URL must be set");
        let err = config(&["--database-url", "postgres://db"]).unwrap_err();
        assert_eq!(err.to_string(), "BOXOFFICE_JWT_SECRET must be set");
    }

    #[test]
    fn the_read_models_may_live_elsewhere() {
        let config = config(&[
            "--database-url",
            "postgres://db",
            "--read-database-url",
            "postgres://read",
            "--jwt-secret",
            SECRET,
        ])
        .unwrap();
        assert_eq!(config.read_database_url, "postgres://read");
    }
}
