//! Building and running command-api: `Application::build(config)` connects and
//! migrates; `run(listener, shutdown)` serves HTTP and runs the workers until the token
//! is cancelled. Tests use the same two calls on port 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::FromRef;
use domain::booking::Booking;
use domain::event::Event;
use domain::location::Location;
use domain::user::UserData;
use platform::auth::Jwt;
use platform::http::ReadinessCheck;
use platform::kafka::BrokerWatch;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::append::Appender;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::payment::GatewayClient;
use crate::reconcile::Reconciler;
use crate::relay::{notify_after_commits, Relay};
use crate::routes;
use crate::saga::SagaRunner;
use crate::store::AggregateStore;

/// How often the broker's health is checked (in the background: probes read it).
const BROKER_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Everything a request handler may need.
pub struct App {
    /// The event store's pool.
    pub pool: PgPool,
    /// Verifies tokens.
    pub jwt: Jwt,
    /// The metrics.
    pub metrics: Metrics,
    /// Locations.
    pub locations: AggregateStore<Location>,
    /// Events.
    pub events: AggregateStore<Event>,
    /// Bookings.
    pub bookings: AggregateStore<Booking>,
    /// Users (the erasure of their personal data).
    pub users: AggregateStore<UserData>,
    /// The payment gateway's client.
    pub gateway: GatewayClient,
    /// What request fingerprints are stored under.
    pub fingerprints: platform::http::FingerprintKey,
    /// The per-customer command rate limit.
    pub limiter: Arc<crate::fairness::CommandLimiter>,
    /// The most seats one customer may hold of an event at once (`None`: no cap).
    pub max_held_seats: Option<u32>,
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

/// A built command-api, ready to run.
pub struct Application {
    state: AppState,
    config: Config,
    registry: Arc<Registry>,
    appended: watch::Sender<u64>,
}

impl Application {
    /// Connects to the database (waiting for it at start-up) and applies the event-store
    /// migrations. The broker is not needed to start: commands work without it.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // A bad secret stops the service before it touches the database.
        let jwt = Jwt::for_service(&config.jwt_secret, config.jwt_rules.clone())?;
        let pool = platform::db::connect(&config.database_url, config.db_max_connections).await?;
        platform::db::migrate_event_store(&pool).await?;

        // Who this store is, for the payment gateway's books (see the reconciliation).
        let store: uuid::Uuid = sqlx::query_scalar!("SELECT id FROM store_identity")
            .fetch_one(&pool)
            .await
            .context("cannot read the store's identity")?;
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        platform::metrics::register_pools(&mut registry, vec![("event_store", pool.clone())]);
        let (appended, _) = watch::channel(0u64);
        let appender = Appender::start(
            pool.clone(),
            config.append_writers,
            config.append_queue,
            metrics.clone(),
        );
        let app = App {
            gateway: GatewayClient::new(&config.payment, store, metrics.clone())?,
            jwt,
            fingerprints: platform::http::FingerprintKey::derive(&config.jwt_secret),
            limiter: crate::fairness::CommandLimiter::new(&config.fairness),
            max_held_seats: Some(config.fairness.max_held_seats_per_user).filter(|m| *m > 0),
            locations: AggregateStore::new(
                pool.clone(),
                appender.clone(),
                (),
                appended.clone(),
                metrics.clone(),
            ),
            events: AggregateStore::new(
                pool.clone(),
                appender.clone(),
                (),
                appended.clone(),
                metrics.clone(),
            ),
            bookings: AggregateStore::new(
                pool.clone(),
                appender.clone(),
                (),
                appended.clone(),
                metrics.clone(),
            ),
            users: AggregateStore::new(
                pool.clone(),
                appender,
                (),
                appended.clone(),
                metrics.clone(),
            ),
            metrics,
            pool,
        };
        Ok(Self {
            state: AppState(Arc::new(app)),
            config,
            registry: Arc::new(registry),
            appended,
        })
    }

    /// The shared state, for tests that drive the stores directly.
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` is cancelled: stops accepting, lets in-flight requests
    /// finish, stops the relay after its current batch, returns.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let pool = self.state.pool.clone();
        let mut workers = JoinSet::new();
        workers.spawn(notify_after_commits(
            pool.clone(),
            self.appended.subscribe(),
            shutdown.clone(),
        ));
        if self.config.relay.enabled {
            let relay = Relay::new(
                pool.clone(),
                self.config.kafka_brokers.clone(),
                self.config.kafka_security.clone(),
                self.config.topic.clone(),
                self.config.relay.clone(),
                self.state.metrics.clone(),
            );
            workers.spawn(relay.run(shutdown.clone()));
        }
        if self.config.saga.enabled {
            let runner = SagaRunner::new(
                pool.clone(),
                self.state.events.clone(),
                self.state.bookings.clone(),
                self.state.gateway.clone(),
                self.config.saga.clone(),
                self.state.metrics.clone(),
            );
            workers.spawn(Arc::new(runner).run(self.appended.subscribe(), shutdown.clone()));
            let reconciler = Reconciler::new(
                pool.clone(),
                self.state.bookings.clone(),
                self.state.gateway.clone(),
                self.config.payment.clone(),
                self.state.metrics.clone(),
            );
            workers.spawn(reconciler.run(shutdown.clone()));
        }
        let limiter = self.state.limiter.clone();
        let stop = shutdown.clone();
        workers.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = every.tick() => limiter.forget_quiet(),
                }
            }
        });
        workers.spawn(expire_idempotency_keys(
            pool.clone(),
            self.config.idempotency_ttl,
            shutdown.clone(),
        ));

        let broker = BrokerWatch::start(
            &self.config.kafka_brokers,
            &self.config.kafka_security,
            &self.config.topic.name,
            BROKER_CHECK_EVERY,
            self.state.metrics.broker_up.clone(),
            shutdown.clone(),
        )?;
        let router = routes::router(
            self.state.clone(),
            self.registry.clone(),
            self.readiness(&broker),
            &self.config.http,
        );
        tracing::info!(addr = %listener.local_addr()?, "command-api listening");
        let served =
            platform::server::serve(listener, router, &self.config.http, shutdown.clone()).await;
        // However serving ended, the workers end with it.
        shutdown.cancel();
        while workers.join_next().await.is_some() {}
        tracing::info!("command-api stopped");
        served.context("HTTP server failed")
    }

    /// Ready when it can append (the database); the broker is shown beside it without
    /// deciding it: while the broker is away the outbox keeps what is to be published,
    /// and taking the write API out of a load balancer would defeat that.
    fn readiness(&self, broker: &BrokerWatch) -> Vec<ReadinessCheck> {
        vec![
            ReadinessCheck::database("database", self.state.pool.clone()),
            broker.readiness(false),
        ]
    }
}

/// Forgets old idempotency keys, hourly.
async fn expire_idempotency_keys(pool: PgPool, ttl: Duration, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match crate::idempotency::expire(&pool, ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "forgot old idempotency keys"),
            Err(err) => tracing::warn!(cause = %err, "cannot expire idempotency keys"),
        }
    }
}
