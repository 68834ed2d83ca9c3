//! query-api: serves the read models over HTTP.
//!
//! For now a service shell: configuration, health, metrics, graceful shutdown. The
//! queries come with the read side.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use platform::config::{parse_or, required, var_or};
use platform::http::{health_router, method_not_allowed, route_not_found, ReadinessCheck};
use platform::metrics::metrics_router;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What query-api reads from its environment.
#[derive(Clone)]
pub struct Config {
    /// `DATABASE_URL`: the event store (read-only, for audit).
    pub database_url: String,
    /// `READ_DATABASE_URL` (default `DATABASE_URL`): the read models.
    pub read_database_url: String,
    /// `BOXOFFICE_JWT_SECRET`, required. Never logged.
    pub jwt_secret: String,
    /// `QUERY_API_ADDR` (default `127.0.0.1:8081`).
    pub addr: SocketAddr,
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
        })
    }
}

/// A built query-api.
pub struct Application {
    read_pool: PgPool,
}

impl Application {
    /// Connects to the read-model database.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let read_pool = platform::db::connect_read_models(&config.read_database_url, 16).await?;
        Ok(Self { read_pool })
    }

    /// Serves until `shutdown`.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let database = ReadinessCheck::database("read_database", self.read_pool.clone());
        let router = health_router(vec![database])
            .merge(metrics_router(Arc::new(Registry::default())))
            .fallback(route_not_found)
            .method_not_allowed_fallback(method_not_allowed);
        tracing::info!(addr = %listener.local_addr()?, "query-api listening");
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .context("HTTP server failed")
    }
}
