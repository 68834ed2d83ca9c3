//! Building and running the notifier: `Application::build(config)` connects (the store,
//! and its own schema) and makes sure the sent log knows from which fact on it mails;
//! `run(listener, shutdown)` consumes, sweeps and sends, and serves health and metrics,
//! until the token is cancelled.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use platform::http::{health_router, method_not_allowed, route_not_found, ReadinessCheck};
use platform::kafka::{ensure_topic, BrokerWatch};
use platform::metrics::metrics_router;
use prometheus_client::registry::Registry;
use read_model::store::EventStore;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::smtp::{self, Mailer};
use crate::{consumer, log, sender, sweep};

/// What the notifier's tasks share.
pub struct Context {
    /// The notifier's own schema: the sent log, the streams, the progress row.
    pub log: PgPool,
    /// The event store, read-only.
    pub store: EventStore,
    /// Sends the mail (connections kept open, each exchange bounded).
    pub mailer: Mailer,
    /// The metrics.
    pub metrics: Metrics,
    /// The configuration.
    pub config: Config,
    /// Which facts were recorded before the notifier first ran: history, never mailed.
    pub since: Since,
    /// The domain of `MAIL_FROM`: the right-hand side of every Message-ID.
    pub mail_domain: String,
    /// Told when notifications were recorded: the sender looks at once.
    pub wake: tokio::sync::Notify,
    /// Told by the sweep when it found facts Kafka had not brought.
    pub kafka_behind: tokio::sync::Notify,
}

/// Where history ends and news begins (see the `progress` table).
#[derive(Debug, Clone)]
pub struct Since {
    /// The newest committed position at the first start.
    pub position: i64,
    /// The store's snapshot at the first start (`pg_snapshot` as text): a fact whose
    /// transaction it does not see committed is news.
    pub snapshot: String,
}

/// A built notifier.
pub struct Application {
    ctx: Arc<Context>,
    registry: Arc<Registry>,
}

impl Application {
    /// Connects (waiting for the database at start-up) and checks the migrations.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let mut registry = Registry::default();
        let ctx = connect(config, Metrics::new(&mut registry)).await?;
        platform::metrics::register_pools(
            &mut registry,
            vec![
                ("event_store", ctx.store.pool().clone()),
                ("notifier", ctx.log.clone()),
            ],
        );
        Ok(Self {
            ctx: Arc::new(ctx),
            registry: Arc::new(registry),
        })
    }

    /// The shared context, for tests and the benchmark.
    pub fn context(&self) -> Arc<Context> {
        self.ctx.clone()
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let ctx = self.ctx.clone();
        let config = &ctx.config;
        if let Err(err) =
            ensure_topic(&config.kafka_brokers, &config.kafka_security, &config.topic).await
        {
            tracing::warn!(
                cause = format!("{err:#}"),
                "cannot make sure the topic exists yet"
            );
        }
        let mut tasks = JoinSet::new();
        tasks.spawn(consumer::run(ctx.clone(), shutdown.clone()));
        if !config.sweep_interval.is_zero() {
            tasks.spawn(sweep::run(
                ctx.clone(),
                config.sweep_interval,
                shutdown.clone(),
            ));
        }
        tasks.spawn(sender::run(ctx.clone(), shutdown.clone()));
        tasks.spawn(refresh_gauges(ctx.clone(), shutdown.clone()));
        let broker = BrokerWatch::start(
            &config.kafka_brokers,
            &config.kafka_security,
            &config.topic.name,
            Duration::from_secs(5),
            ctx.metrics.broker_up.clone(),
            shutdown.clone(),
        )?;
        let readiness = vec![
            ReadinessCheck::database("notifier_database", ctx.log.clone()),
            ReadinessCheck::database("event_store", ctx.store.pool().clone()),
            // The sweep keeps it going without the broker: not required.
            broker.readiness(false),
        ];
        let router = health_router(readiness)
            .merge(metrics_router(self.registry.clone()))
            .fallback(route_not_found)
            .method_not_allowed_fallback(method_not_allowed);
        tracing::info!(addr = %listener.local_addr()?, "notifier listening");
        let served =
            platform::server::serve(listener, router, &config.http, shutdown.clone()).await;
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
        tracing::info!("notifier stopped");
        served.context("HTTP server failed")
    }
}

/// The group role the notifier's database user belongs to.
pub const NOTIFIER_ROLE: &str = "boxoffice_notifier";

/// Connects to the store and the notifier's schema (migrated), and records, on the
/// first run, from which fact on the notifier mails.
pub async fn connect(config: Config, metrics: Metrics) -> anyhow::Result<Context> {
    let log =
        platform::db::connect_in_schema(&config.database_url, platform::db::NOTIFIER_SCHEMA, 8)
            .await?;
    platform::db::migrate_notifier(&log).await?;
    let store = EventStore::new(platform::db::connect(&config.database_url, 8).await?);
    let since = since(&log, store.pool()).await?;
    let mailer = smtp::Mailer::new(&config.smtp.url, config.smtp.timeout, config.smtp.pool_size)?;
    let mail_domain = config.mail_from.email.domain().to_owned();
    Ok(Context {
        log,
        store,
        mailer,
        metrics,
        config,
        since,
        mail_domain,
        wake: tokio::sync::Notify::new(),
        kafka_behind: tokio::sync::Notify::new(),
    })
}

/// From which fact on facts are news (see the `progress` table): set on the first run,
/// from one snapshot of the store, and read back on every later one.
async fn since(log: &PgPool, store: &PgPool) -> anyhow::Result<Since> {
    let (position, oldest, snapshot): (i64, i64, String) = sqlx::query_as(
        "SELECT (SELECT coalesce(max(position), 0) FROM events),
                (pg_snapshot_xmin(s)::text)::bigint, s::text
           FROM pg_current_snapshot() s",
    )
    .fetch_one(store)
    .await?;
    sqlx::query(
        "INSERT INTO progress (since_position, since_snapshot, transaction_id, position)
         VALUES ($1, $2::pg_snapshot, $3, 0) ON CONFLICT DO NOTHING",
    )
    .bind(position)
    .bind(snapshot)
    .bind(oldest)
    .execute(log)
    .await?;
    let (position, snapshot) =
        sqlx::query_as("SELECT since_position, since_snapshot::text FROM progress")
            .fetch_one(log)
            .await?;
    Ok(Since { position, snapshot })
}

/// Keeps the pending and parked gauges current.
async fn refresh_gauges(ctx: Arc<Context>, shutdown: CancellationToken) {
    loop {
        match log::gauges(&ctx.log).await {
            Ok((pending, parked, oldest)) => {
                ctx.metrics.pending.set(pending);
                ctx.metrics.parked.set(parked);
                ctx.metrics.oldest_pending_age.set(oldest);
            }
            Err(err) => tracing::warn!(cause = %err, "cannot count the sent log"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
