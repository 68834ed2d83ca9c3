//! projector: consumes the events topic and maintains the read models.
//!
//! For now a service shell: configuration, health, metrics, graceful shutdown. The
//! consumer, the read models and rebuilds come with the read side.

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

/// What projector reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`: the event store (the truth, for gaps and rebuilds).
    pub database_url: String,
    /// `READ_DATABASE_URL` (default `DATABASE_URL`): where the read models live.
    pub read_database_url: String,
    /// `KAFKA_BROKERS` (default `127.0.0.1:9092`).
    pub kafka_brokers: String,
    /// `KAFKA_TOPIC` (default `boxoffice.events`).
    pub topic: String,
    /// `PROJECTOR_ADDR` (default `127.0.0.1:8082`): health and metrics.
    pub addr: SocketAddr,
}

impl Config {
    /// Reads the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let database_url = required("DATABASE_URL")?;
        Ok(Self {
            read_database_url: var_or("READ_DATABASE_URL", &database_url),
            database_url,
            kafka_brokers: var_or("KAFKA_BROKERS", "127.0.0.1:9092"),
            topic: var_or("KAFKA_TOPIC", "boxoffice.events"),
            addr: parse_or("PROJECTOR_ADDR", SocketAddr::from(([127, 0, 0, 1], 8082)))?,
        })
    }
}

/// A built projector.
pub struct Application {
    read_pool: PgPool,
}

impl Application {
    /// Connects to the read-model database.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let read_pool = platform::db::connect_read_models(&config.read_database_url, 8).await?;
        Ok(Self { read_pool })
    }

    /// Serves health and metrics until `shutdown`.
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
        tracing::info!(addr = %listener.local_addr()?, "projector listening");
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .context("HTTP server failed")
    }
}
