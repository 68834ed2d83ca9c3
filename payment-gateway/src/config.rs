//! payment-gateway configuration, from the environment.

use std::net::SocketAddr;
use std::time::Duration;

use platform::config::{parse_or, required, var_or};
use platform::server::ServerLimits;

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
            http: ServerLimits::default(),
        }
    }

    /// Reads the environment (unset variables keep the defaults of [`Config::new`]);
    /// errors name the variable at fault.
    pub fn from_env() -> anyhow::Result<Self> {
        let d = Self::new(&required("PAYMENT_DATABASE_URL")?);
        let latency_ms = parse_or("PAYMENT_LATENCY_MS", 0u64)?;
        anyhow::ensure!(
            latency_ms <= MAX_LATENCY_MS,
            "PAYMENT_LATENCY_MS must be at most {MAX_LATENCY_MS}"
        );
        let api_key = var_or("PAYMENT_GATEWAY_KEY", "");
        Ok(Self {
            addr: parse_or("PAYMENT_GATEWAY_ADDR", d.addr)?,
            api_key: (!api_key.is_empty()).then_some(api_key),
            latency: Duration::from_millis(latency_ms),
            db_max_connections: parse_or("PAYMENT_DB_MAX_CONNECTIONS", d.db_max_connections)?,
            http: ServerLimits::from_env()?,
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
}
