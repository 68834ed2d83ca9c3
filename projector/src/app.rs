//! Building and running the projector service: `Application::build(config)` connects
//! and migrates; `run(listener, shutdown)` consumes, sweeps, runs requested rebuilds and
//! serves health and metrics until the token is cancelled.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use platform::http::{health_router, method_not_allowed, route_not_found, ReadinessCheck};
use platform::kafka::{ensure_topic, BrokerWatch};
use platform::metrics::metrics_router;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::{Metrics, ProjectionLabel};
use crate::{consumer, parked, rebuild, status, sweep};
use read_model::store::EventStore;
use read_model::Projection;

/// What the projector's tasks share.
pub struct Context {
    /// The read models.
    pub read: PgPool,
    /// The event store, read-only.
    pub store: EventStore,
    /// The metrics.
    pub metrics: Metrics,
    /// The configuration.
    pub config: Config,
    /// Told by the sweep when it found events the read models lacked: if Kafka has
    /// delivered nothing for a while, the consumer is stuck and starts afresh.
    pub kafka_behind: tokio::sync::Notify,
}

/// A built projector.
pub struct Application {
    ctx: Arc<Context>,
    registry: Arc<Registry>,
}

impl Application {
    /// Connects to both databases (waiting for them at start-up) and applies the
    /// read-model migrations.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let ctx = connect(config).await?;
        let mut registry = Registry::default();
        platform::metrics::register_pools(
            &mut registry,
            vec![
                ("read_models", ctx.read.clone()),
                ("event_store", ctx.store.pool().clone()),
            ],
        );
        let ctx = Context {
            metrics: Metrics::new(&mut registry),
            ..ctx
        };
        Ok(Self {
            ctx: Arc::new(ctx),
            registry: Arc::new(registry),
        })
    }

    /// The shared context, for tests and the CLI.
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
        if let Err(err) = ensure_topic(
            &ctx.config.kafka_brokers,
            &ctx.config.kafka_security,
            &ctx.config.topic,
        )
        .await
        {
            // The consumer waits for it; command-api creates it too.
            tracing::warn!(
                cause = format!("{err:#}"),
                "cannot make sure the topic exists yet"
            );
        }
        let mut tasks = JoinSet::new();
        tasks.spawn(consumer::run(ctx.clone(), shutdown.clone()));
        if !ctx.config.sweep_interval.is_zero() {
            tasks.spawn(sweep::run(
                ctx.clone(),
                ctx.config.sweep_interval,
                shutdown.clone(),
            ));
        }
        tasks.spawn(rebuild_worker(ctx.clone(), shutdown.clone()));
        tasks.spawn(parked::run(
            ctx.clone(),
            ctx.config.parked_retry,
            shutdown.clone(),
        ));
        tasks.spawn(refresh_status(ctx.clone(), shutdown.clone()));

        let broker = BrokerWatch::start(
            &ctx.config.kafka_brokers,
            &ctx.config.kafka_security,
            &ctx.config.topic.name,
            Duration::from_secs(5),
            ctx.metrics.broker_up.clone(),
            shutdown.clone(),
        )?;
        let readiness = vec![
            ReadinessCheck::database("read_database", ctx.read.clone()),
            ReadinessCheck::database("event_store", ctx.store.pool().clone()),
            // The projector's work is the topic: without the broker it is not ready.
            broker.readiness(true),
        ];
        let router = health_router(readiness)
            .merge(metrics_router(self.registry.clone()))
            .fallback(route_not_found)
            .method_not_allowed_fallback(method_not_allowed);
        tracing::info!(addr = %listener.local_addr()?, "projector listening");
        let served =
            platform::server::serve(listener, router, &ctx.config.http, shutdown.clone()).await;
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
        tracing::info!("projector stopped");
        served.context("HTTP server failed")
    }
}

/// The group role the projector's database user belongs to.
pub const PROJECTOR_ROLE: &str = "boxoffice_projector";

/// The databases, migrated, without metrics (the CLI's needs).
pub async fn connect(config: Config) -> anyhow::Result<Context> {
    // The projector's sessions act as the projector role: the tables a rebuild makes
    // belong to it (see the read models' migration 0004).
    let read =
        platform::db::connect_read_models_as(&config.read_database_url, 8, PROJECTOR_ROLE).await?;
    platform::db::migrate_read_models(&read).await?;
    let mut store = EventStore::new(platform::db::connect(&config.database_url, 8).await?);
    store.reads = config.reads;
    Ok(Context {
        read,
        store,
        metrics: Metrics::new(&mut Registry::default()),
        config,
        kafka_behind: tokio::sync::Notify::new(),
    })
}

/// Runs the rebuilds asked for through the query API.
async fn rebuild_worker(ctx: Arc<Context>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if let Err(err) = rebuild::fail_abandoned(&ctx.read).await {
            tracing::warn!(cause = %err, "cannot check for abandoned rebuilds");
        }
        let next = sqlx::query!(
            "SELECT id, projection FROM projection_rebuilds WHERE status = 'requested' ORDER BY id LIMIT 1",
        )
        .fetch_optional(&ctx.read)
        .await;
        let Ok(Some(next)) = next else { continue };
        let (id, name) = (next.id, next.projection);
        let Ok(projection) = name.parse::<Projection>() else {
            // Only query-api asks, for a name it parsed; a row from a newer build.
            tracing::error!(
                rebuild = id,
                projection = name,
                "a rebuild of an unknown projection is asked for; left alone"
            );
            continue;
        };
        let label = ProjectionLabel::from(projection);
        let gauge = ctx.metrics.rebuild_progress.get_or_create(&label).clone();
        let progress = move |p: rebuild::Progress| {
            gauge.set(if p.total == 0 {
                0.0
            } else {
                p.done as f64 / p.total as f64
            });
        };
        match rebuild::run(&ctx.read, &ctx.store, projection, Some(id), &progress).await {
            Ok(_) | Err(rebuild::RebuildError::Busy(_)) => {}
            Err(err) => tracing::error!(rebuild = id, cause = %err, "requested rebuild failed"),
        }
        ctx.metrics.rebuild_progress.get_or_create(&label).set(0.0);
    }
}

/// Keeps the lag gauges current.
async fn refresh_status(ctx: Arc<Context>, shutdown: CancellationToken) {
    loop {
        match status::all(&ctx.read, &ctx.store).await {
            Ok(statuses) => {
                for s in statuses {
                    let label = ProjectionLabel::from(s.name);
                    ctx.metrics.lag_events.get_or_create(&label).set(s.lag);
                    ctx.metrics
                        .lag_seconds
                        .get_or_create(&label)
                        .set(s.lag_seconds);
                }
            }
            Err(err) => tracing::warn!(
                cause = format!("{err:#}"),
                "cannot compute the projections' lag"
            ),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
