//! payment-gateway configuration: [`Settings`], each an option with its environment
//! variable (see `payment-gateway --help` and `.env.example`), become a [`Config`].

use std::net::SocketAddr;
use std::time::Duration;

use platform::config::{empty_is_unset, first_set, required, set};
use platform::server::{HttpSettings, ServerLimits};
use platform::telemetry::LogSettings;

use crate::faults::MAX_LATENCY_MS;

/// What the gateway reads from its environment.
#[derive(Clone)]
pub struct Config {
    /// `PAYMENT_GATEWAY_ADDR` (default `127.0.0.1:8083`).
    pub addr: SocketAddr,
    /// `PAYMENT_DATABASE_URL`, required. The books live in its `payment_gateway` schema.
    /// Never logged.
    pub database_url: String,
    /// `PAYMENT_GATEWAY_KEY`: when set, every `/v1` and `/admin` request must carry
    /// `Authorization: Bearer <key>`. Never logged.
    pub api_key: Option<String>,
    /// `PAYMENT_LATENCY_MS` (default 0, at most 600 000): the simulated latency the
    /// gateway starts with (`PUT /admin/faults` changes it at run time).
    pub latency: Duration,
    /// `PAYMENT_DB_MAX_CONNECTIONS` (default 16).
    pub db_max_connections: u32,
    /// `PAYMENT_CAPACITY` (default 0: no bound): the `/v1` requests the gateway works on
    /// at once, as a provider's capacity; the others queue, in order, and their wait
    /// is part of their latency. For load tests and drills.
    pub capacity: usize,
    /// The HTTP server's bounds (`HTTP_*`, see `platform::server`). A request the
    /// faults leave hanging ends at the request timeout (503), or at shutdown.
    pub http: ServerLimits,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("addr", &self.addr)
            .field("database_url", &"<redacted>")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("latency", &self.latency)
            .field("db_max_connections", &self.db_max_connections)
            .field("capacity", &self.capacity)
            .field("http", &self.http)
            .finish()
    }
}

impl Config {
    /// The defaults (what an empty environment gives) for the database at
    /// `database_url`: no API key, no latency. Tests start from this and change what
    /// they need.
    pub fn new(database_url: &str) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8083)),
            database_url: database_url.to_owned(),
            api_key: None,
            latency: Duration::ZERO,
            db_max_connections: 16,
            capacity: 0,
            http: ServerLimits::default(),
        }
    }

    /// Reads the environment (unset variables keep the defaults of [`Config::new`]);
    /// errors name the variable at fault.
    pub fn from_env() -> anyhow::Result<Self> {
        platform::config::from_env::<Settings>("payment-gateway")?.try_into()
    }
}

/// Everything the gateway reads, each an option with its environment variable:
/// `payment-gateway --help` lists them with their defaults (see also `.env.example`).
#[derive(Clone, clap::Args)]
#[command(next_help_heading = "Service")]
pub struct Settings {
    /// The gateway's books (required): it keeps them in the `payment_gateway` schema of
    /// this database. Hidden here: it holds a password.
    #[arg(long, env = "PAYMENT_DATABASE_URL", hide_env_values = true, value_parser = empty_is_unset::<String>())]
    pub payment_database_url: Option<String>,
    /// For `migrate`: the gateway's database as the owner of its schema; defaults to
    /// PAYMENT_DATABASE_URL. Hidden here: it holds a password.
    #[arg(long, env = "MIGRATION_PAYMENT_DATABASE_URL", hide_env_values = true, value_parser = empty_is_unset::<String>())]
    pub migration_payment_database_url: Option<String>,
    /// The gateway's secret key: when set, every /v1 and /admin request needs it as a
    /// bearer token (command-api sends PAYMENT_GATEWAY_KEY). Hidden here, never logged.
    #[arg(long, env = "PAYMENT_GATEWAY_KEY", hide_env_values = true, value_parser = empty_is_unset::<String>())]
    pub payment_gateway_key: Option<String>,
    /// Where the gateway listens.
    #[arg(long, env = "PAYMENT_GATEWAY_ADDR", default_value = "127.0.0.1:8083", value_parser = empty_is_unset::<SocketAddr>())]
    pub payment_gateway_addr: SocketAddr,
    /// The simulated latency of every payment call the gateway starts with, in
    /// milliseconds, at most 600000 (the admin switch PUT /admin/faults changes it, and
    /// fails or hangs calls, at run time).
    #[arg(long, env = "PAYMENT_LATENCY_MS", default_value_t = 0, value_parser = empty_is_unset::<u64>())]
    pub payment_latency_ms: u64,
    /// The pool size of the gateway's database.
    #[arg(long, env = "PAYMENT_DB_MAX_CONNECTIONS", default_value_t = 16, value_parser = empty_is_unset::<u32>())]
    pub payment_db_max_connections: u32,
    /// The /v1 requests worked on at once (0: no bound); the others queue, their wait
    /// part of their latency, as at a provider at its capacity.
    #[arg(long, env = "PAYMENT_CAPACITY", default_value_t = 0, value_parser = empty_is_unset::<usize>())]
    pub payment_capacity: usize,
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub log: LogSettings,
}

impl Settings {
    /// The URL `migrate` applies the gateway's migrations with:
    /// `MIGRATION_PAYMENT_DATABASE_URL`, else `PAYMENT_DATABASE_URL`.
    pub fn migration_url(&self) -> anyhow::Result<String> {
        first_set(&[
            (
                "MIGRATION_PAYMENT_DATABASE_URL",
                &self.migration_payment_database_url,
            ),
            ("PAYMENT_DATABASE_URL", &self.payment_database_url),
        ])
    }
}

impl TryFrom<Settings> for Config {
    type Error = anyhow::Error;

    /// The configuration the settings give; errors name the variable at fault.
    fn try_from(s: Settings) -> anyhow::Result<Self> {
        let d = Self::new(&required("PAYMENT_DATABASE_URL", &s.payment_database_url)?);
        anyhow::ensure!(
            s.payment_latency_ms <= MAX_LATENCY_MS,
            "PAYMENT_LATENCY_MS must be at most {MAX_LATENCY_MS}"
        );
        anyhow::ensure!(
            s.payment_capacity <= 100_000,
            "PAYMENT_CAPACITY must be at most 100000 (0: no bound)"
        );
        Ok(Self {
            addr: s.payment_gateway_addr,
            api_key: set(&s.payment_gateway_key).map(str::to_owned),
            latency: Duration::from_millis(s.payment_latency_ms),
            db_max_connections: s.payment_db_max_connections,
            capacity: s.payment_capacity,
            http: ServerLimits::try_from(&s.http)?,
            ..d
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_url_and_the_key() {
        let mut config = Config::new("postgres://user:hunter2@db/pay");
        config.api_key = Some("sk_live_secret".into());
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("sk_live_secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    fn settings(args: &[&str]) -> Settings {
        platform::config::from_args(args).unwrap()
    }

    #[test]
    fn the_settings_default_to_the_defaults_of_new() {
        let config =
            Config::try_from(settings(&["--payment-database-url", "postgres://pay"])).unwrap();
        assert_eq!(
            format!("{config:?}"),
            format!("{:?}", Config::new("postgres://pay"))
        );
        assert_eq!(config.database_url, "postgres://pay");
        assert_eq!(
            Config::try_from(settings(&[])).unwrap_err().to_string(),
            "PAYMENT_DATABASE_URL must be set"
        );
    }

    #[test]
    fn the_latency_and_capacity_are_bounded_and_an_empty_key_is_none() {
        let err = Config::try_from(settings(&[
            "--payment-database-url",
            "postgres://pay",
            "--payment-latency-ms",
            "600001",
        ]))
        .unwrap_err();
        assert_eq!(err.to_string(), "PAYMENT_LATENCY_MS must be at most 600000");
        let err = Config::try_from(settings(&[
            "--payment-database-url",
            "postgres://pay",
            "--payment-capacity",
            "100001",
        ]))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "PAYMENT_CAPACITY must be at most 100000 (0: no bound)"
        );
        let config = Config::try_from(settings(&[
            "--payment-database-url",
            "postgres://pay",
            "--payment-gateway-key",
            "",
        ]))
        .unwrap();
        assert_eq!(config.api_key, None);
    }

    #[test]
    fn migrations_use_the_owners_url_else_the_gateways() {
        let own = settings(&["--payment-database-url", "postgres://own"]);
        assert_eq!(own.migration_url().unwrap(), "postgres://own");
        assert_eq!(
            settings(&[]).migration_url().unwrap_err().to_string(),
            "none of MIGRATION_PAYMENT_DATABASE_URL, PAYMENT_DATABASE_URL is set"
        );
    }
}
