//! Building and running query-api: `Application::build(config)` connects (and applies
//! the read-model migrations, so it can start before the projector);
//! `run(listener, shutdown)` serves until the token is cancelled.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::FromRef;
use platform::auth::Jwt;
use platform::http::ReadinessCheck;
use projector::store::EventStore;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::routes;

/// Everything a handler may need.
pub struct App {
    /// The read models.
    pub read: PgPool,
    /// The event store, read-only.
    pub store: EventStore,
    /// Verifies tokens.
    pub jwt: Jwt,
    /// The metrics.
    pub metrics: Metrics,
    /// How long a rebuild request's `Idempotency-Key` is remembered.
    pub idempotency_ttl: Duration,
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

impl FromRef<AppState> for Jwt {
    fn from_ref(state: &AppState) -> Jwt {
        state.jwt.clone()
    }
}

/// A built query-api.
pub struct Application {
    state: AppState,
    registry: Arc<Registry>,
}

impl Application {
    /// Connects to both databases, waiting for them at start-up.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let read = platform::db::connect_read_models(&config.read_database_url, 16).await?;
        platform::db::migrate_read_models(&read).await?;
        let store = EventStore::new(platform::db::connect(&config.database_url, 4).await?);
        let mut registry = Registry::default();
        let app = App {
            read,
            store,
            jwt: Jwt::for_service(&config.jwt_secret, config.jwt_rules.clone())?,
            metrics: Metrics::new(&mut registry),
            idempotency_ttl: config.idempotency_ttl,
        };
        Ok(Self {
            state: AppState(Arc::new(app)),
            registry: Arc::new(registry),
        })
    }

    /// Serves until `shutdown`.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let readiness = vec![
            ReadinessCheck::database("read_database", self.state.read.clone()),
            ReadinessCheck::database("event_store", self.state.store.pool().clone()),
        ];
        let router = routes::router(self.state.clone(), self.registry.clone(), readiness);
        tracing::info!(addr = %listener.local_addr()?, "query-api listening");
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .context("HTTP server failed")?;
        tracing::info!("query-api stopped");
        Ok(())
    }
}
