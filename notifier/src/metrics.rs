//! The notifier's metrics.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use platform::metrics::latency_histogram;

/// How a notification ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `booking_confirmed`, `booking_rejected`, `booking_cancelled`, `event_cancelled`.
    pub kind: &'static str,
    /// `sent`, `parked`, `no_contact` or `erased`.
    pub outcome: &'static str,
}

/// How one SMTP attempt ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// `accepted`, `temporary` or `permanent`.
    pub result: &'static str,
}

/// Where booking facts were taken in from.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// `kafka` or `sweep`.
    pub source: &'static str,
}

/// Every metric the notifier exports.
#[derive(Clone)]
pub struct Metrics {
    /// Notifications that reached an end, by kind and outcome.
    pub notifications: Family<OutcomeLabels, Counter>,
    /// SMTP attempts, by result.
    pub attempts: Family<AttemptLabels, Counter>,
    /// Seconds one SMTP send took.
    pub send_seconds: Histogram,
    /// Notifications waiting to be sent.
    pub pending: Gauge,
    /// Notifications parked for an operator.
    pub parked: Gauge,
    /// Age of the oldest notification waiting, in seconds (0 when none waits).
    pub oldest_pending_age: Gauge<f64, AtomicU64>,
    /// Booking facts taken in (new ones only), by source.
    pub facts: Family<SourceLabels, Counter>,
    /// 1 while the broker answers.
    pub broker_up: Gauge,
}

impl Metrics {
    /// Fresh metrics, registered in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            notifications: Family::default(),
            attempts: Family::default(),
            send_seconds: latency_histogram(),
            pending: Gauge::default(),
            parked: Gauge::default(),
            oldest_pending_age: Gauge::default(),
            facts: Family::default(),
            broker_up: Gauge::default(),
        };
        registry.register(
            "boxoffice_notifier_notifications",
            "Notifications that reached an end, by kind and outcome (sent, parked, no_contact, erased)",
            metrics.notifications.clone(),
        );
        registry.register(
            "boxoffice_notifier_send_attempts",
            "SMTP attempts, by result (accepted, temporary, permanent)",
            metrics.attempts.clone(),
        );
        registry.register(
            "boxoffice_notifier_send_seconds",
            "Seconds one SMTP send took",
            metrics.send_seconds.clone(),
        );
        registry.register(
            "boxoffice_notifier_pending",
            "Notifications waiting to be sent",
            metrics.pending.clone(),
        );
        registry.register(
            "boxoffice_notifier_parked",
            "Notifications parked for an operator (notifier status, notifier retry)",
            metrics.parked.clone(),
        );
        registry.register(
            "boxoffice_notifier_oldest_pending_age_seconds",
            "Age of the oldest notification waiting to be sent (0 when none waits)",
            metrics.oldest_pending_age.clone(),
        );
        registry.register(
            "boxoffice_notifier_facts",
            "New booking facts taken in, by source (kafka, sweep)",
            metrics.facts.clone(),
        );
        registry.register(
            "boxoffice_notifier_broker_up",
            "1 while the Kafka broker answers, 0 otherwise",
            metrics.broker_up.clone(),
        );
        // Every series from the start, at 0: a rate over them is defined before the
        // first mail, and a dashboard shows 0, not "No data".
        for kind in crate::mail::Kind::ALL {
            for outcome in ["sent", "parked", "no_contact", "erased"] {
                metrics
                    .notifications
                    .get_or_create(&OutcomeLabels {
                        kind: kind.as_str(),
                        outcome,
                    })
                    .inc_by(0);
            }
        }
        for result in ["accepted", "temporary", "permanent"] {
            metrics
                .attempts
                .get_or_create(&AttemptLabels { result })
                .inc_by(0);
        }
        for source in ["kafka", "sweep"] {
            metrics
                .facts
                .get_or_create(&SourceLabels { source })
                .inc_by(0);
        }
        metrics
    }

    /// Counts a notification's end.
    pub fn ended(&self, kind: &'static str, outcome: &'static str) {
        self.notifications
            .get_or_create(&OutcomeLabels { kind, outcome })
            .inc();
    }
}
