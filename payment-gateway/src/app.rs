//! Building and running the gateway: `Application::build(config)` connects and applies
//! the migrations; `run(listener, shutdown)` serves until the token is cancelled.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use platform::db::PAYMENT_GATEWAY_SCHEMA;
use platform::http::ReadinessCheck;
use platform::server::ServerLimits;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::ApiKey;
use crate::config::Config;
use crate::faults::FaultSwitch;
use crate::metrics::Metrics;
use crate::routes;

/// Everything a handler may need.
pub struct App {
    /// The books (schema `payment_gateway`).
    pub pool: PgPool,
    /// The faults in force.
    pub faults: FaultSwitch,
    /// The `/v1` requests worked on at once (`PAYMENT_CAPACITY`), when bounded.
    pub capacity: Option<Semaphore>,
    /// The metrics.
    pub metrics: Metrics,
    /// The API key, when one is required.
    pub api_key: Option<ApiKey>,
    /// Cancelled at shutdown: requests left hanging end then.
    pub shutdown: CancellationToken,
}

/// The state handed to axum: cheap to clone.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

/// A built gateway.
pub struct Application {
    pool: PgPool,
    registry: Arc<Registry>,
    metrics: Metrics,
    api_key: Option<ApiKey>,
    latency: Duration,
    capacity: usize,
    http: ServerLimits,
}

impl Application {
    /// Connects to the database (waiting for it at start-up), creates the
    /// `payment_gateway` schema when missing and applies its migrations.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = platform::db::connect_in_schema(
            &config.database_url,
            PAYMENT_GATEWAY_SCHEMA,
            config.db_max_connections,
        )
        .await?;
        platform::db::migrate_payment_gateway(&pool).await?;
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        platform::metrics::register_pools(&mut registry, vec![("payments", pool.clone())]);
        Ok(Self {
            pool,
            registry: Arc::new(registry),
            metrics,
            api_key: config.api_key.as_deref().map(ApiKey::new),
            latency: config.latency,
            capacity: config.capacity,
            http: config.http,
        })
    }

    /// The pool on the gateway's schema.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves until `shutdown`. Requests left hanging (fault modes, `tok_timeout`) end
    /// then, without an answer, so this returns once the requests in progress finished.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let state = AppState(Arc::new(App {
            pool: self.pool.clone(),
            faults: FaultSwitch::new(self.latency),
            capacity: (self.capacity > 0).then(|| Semaphore::new(self.capacity)),
            metrics: self.metrics,
            api_key: self.api_key,
            shutdown: shutdown.clone(),
        }));
        let readiness = vec![ReadinessCheck::database("database", self.pool)];
        let router = routes::router(state, self.registry, readiness, &self.http);
        tracing::info!(addr = %listener.local_addr()?, "payment-gateway listening");
        platform::server::serve(listener, router, &self.http, shutdown)
            .await
            .context("HTTP server failed")?;
        tracing::info!("payment-gateway stopped");
        Ok(())
    }
}
