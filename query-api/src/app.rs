//! Building and running query-api: `Application::build(config)` connects (and applies
//! the read-model migrations, so it can start before the projector);
//! `run(listener, shutdown)` serves until the token is cancelled.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::FromRef;
use platform::auth::Jwt;
use platform::http::ReadinessCheck;
use prometheus_client::registry::Registry;
use read_model::store::EventStore;
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
    /// Wakes read-your-writes waits.
    pub watcher: Arc<crate::watcher::Watcher>,
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
    http: platform::server::ServerLimits,
}

impl Application {
    /// Connects to both databases, waiting for them at start-up.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // A bad secret stops the service before it touches the database.
        let jwt = Jwt::for_service(&config.jwt_secret, config.jwt_rules.clone())?;
        let read = platform::db::connect_read_models(&config.read_database_url, 16).await?;
        platform::db::migrate_read_models(&read).await?;
        let store = EventStore::new(platform::db::connect(&config.database_url, 4).await?);
        let mut registry = Registry::default();
        platform::metrics::register_pools(
            &mut registry,
            vec![
                ("read_models", read.clone()),
                ("event_store", store.pool().clone()),
            ],
        );
        let watcher = crate::watcher::Watcher::new();
        registry.register(
            "boxoffice_consistency_checks",
            "Queries the read-your-writes watcher ran (one per projection with waiters)",
            watcher.checks.clone(),
        );
        registry.register(
            "boxoffice_consistency_waiting",
            "Requests waiting for their write to reach the read models",
            watcher.waiting.clone(),
        );
        let app = App {
            read,
            store,
            jwt,
            metrics: Metrics::new(&mut registry),
            idempotency_ttl: config.idempotency_ttl,
            watcher,
        };
        Ok(Self {
            state: AppState(Arc::new(app)),
            registry: Arc::new(registry),
            http: config.http,
        })
    }

    /// The state the handlers share (tests read its metrics and watcher).
    pub fn state(&self) -> AppState {
        self.state.clone()
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
        let router = routes::router(
            self.state.clone(),
            self.registry.clone(),
            readiness,
            &self.http,
        );
        let stop_watching = shutdown.child_token();
        let watching = tokio::spawn(
            self.state
                .watcher
                .clone()
                .run(self.state.read.clone(), stop_watching.clone()),
        );
        tracing::info!(addr = %listener.local_addr()?, "query-api listening");
        platform::server::serve(listener, router, &self.http, shutdown)
            .await
            .context("HTTP server failed")?;
        stop_watching.cancel();
        let _ = watching.await;
        tracing::info!("query-api stopped");
        Ok(())
    }
}
