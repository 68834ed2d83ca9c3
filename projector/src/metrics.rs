//! projector's metrics.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use platform::metrics::latency_histogram;
use read_model::engine::Applied;
use read_model::Projection;

/// Labels naming a projection.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectionLabel {
    /// Its name: `locations`, `events`, `bookings` or `users`.
    pub projection: &'static str,
}

impl From<Projection> for ProjectionLabel {
    fn from(projection: Projection) -> Self {
        Self {
            projection: projection.name(),
        }
    }
}

/// Labels naming where a batch came from.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Source {
    /// `kafka`, `sweep` or `rebuild`.
    pub source: &'static str,
}

/// Every metric projector exports.
#[derive(Clone)]
pub struct Metrics {
    /// Events applied, per projection.
    pub applied: Family<ProjectionLabel, Counter>,
    /// Gaps in a stream filled from the event store.
    pub gaps: Family<ProjectionLabel, Counter>,
    /// Events that could not be applied and were parked (each attempt counts).
    pub apply_errors: Family<ProjectionLabel, Counter>,
    /// Events in the store not yet applied.
    pub lag_events: Family<ProjectionLabel, Gauge>,
    /// Seconds the projection is behind (0 when caught up).
    pub lag_seconds: Family<ProjectionLabel, Gauge<f64, AtomicU64>>,
    /// Share of a running rebuild done, 0 to 1 (0 when none runs).
    pub rebuild_progress: Family<ProjectionLabel, Gauge<f64, AtomicU64>>,
    /// Time to apply one batch and commit it.
    pub apply_seconds: Family<Source, Histogram>,
    /// Kafka messages consumed.
    pub consumed: Counter,
    /// Partitions of the topic this process is assigned in its consumer group.
    pub assigned_partitions: Gauge,
    /// 1 while the broker answers (checked every few seconds), 0 otherwise.
    pub broker_up: Gauge,
    /// Events parked (could not be applied; their stream waits), per projection.
    pub parked: Family<ProjectionLabel, Gauge>,
}

impl Metrics {
    /// Fresh metrics, registered in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            applied: Family::default(),
            gaps: Family::default(),
            apply_errors: Family::default(),
            lag_events: Family::default(),
            lag_seconds: Family::default(),
            rebuild_progress: Family::default(),
            apply_seconds: Family::new_with_constructor(latency_histogram),
            consumed: Counter::default(),
            assigned_partitions: Gauge::default(),
            broker_up: Gauge::default(),
            parked: Family::default(),
        };
        registry.register(
            "boxoffice_projector_broker_up",
            "1 while the Kafka broker answers, 0 otherwise (checked every few seconds)",
            metrics.broker_up.clone(),
        );
        registry.register(
            "boxoffice_projector_assigned_partitions",
            "Partitions of the topic this process is assigned in its consumer group",
            metrics.assigned_partitions.clone(),
        );
        registry.register(
            "boxoffice_projector_parked_events",
            "Events parked because they could not be applied; their stream waits",
            metrics.parked.clone(),
        );
        registry.register(
            "boxoffice_projector_events_applied",
            "Events applied to a projection",
            metrics.applied.clone(),
        );
        registry.register(
            "boxoffice_projector_gaps_filled",
            "Gaps in a stream filled from the event store",
            metrics.gaps.clone(),
        );
        registry.register(
            "boxoffice_projector_apply_errors",
            "Events that could not be applied and were parked (each attempt counts)",
            metrics.apply_errors.clone(),
        );
        registry.register(
            "boxoffice_projector_lag_events",
            "Events in the store not yet applied",
            metrics.lag_events.clone(),
        );
        registry.register(
            "boxoffice_projector_lag_seconds",
            "Seconds behind the event store (0 when caught up)",
            metrics.lag_seconds.clone(),
        );
        registry.register(
            "boxoffice_projector_rebuild_progress",
            "Share of a running rebuild done, 0 to 1",
            metrics.rebuild_progress.clone(),
        );
        registry.register(
            "boxoffice_projector_apply_duration_seconds",
            "Seconds to apply and commit one batch",
            metrics.apply_seconds.clone(),
        );
        registry.register(
            "boxoffice_projector_messages_consumed",
            "Kafka messages consumed",
            metrics.consumed.clone(),
        );
        metrics
    }

    /// Records what a batch did.
    pub fn record(&self, applied: &[(Projection, Applied)]) {
        for (projection, outcome) in applied {
            let label = ProjectionLabel::from(*projection);
            self.applied.get_or_create(&label).inc_by(outcome.events);
            self.gaps.get_or_create(&label).inc_by(outcome.gaps);
            self.apply_errors
                .get_or_create(&label)
                .inc_by(outcome.errors);
        }
    }
}
