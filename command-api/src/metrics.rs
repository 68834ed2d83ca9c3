//! command-api's metrics. Names start with `boxoffice_`; see the README for the list.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use platform::metrics::latency_histogram;

/// Labels of a command: which one, and how it ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// For example `request_booking`.
    pub command: &'static str,
    /// `accepted`, `replayed`, `refused`, `conflict` or `error`.
    pub outcome: &'static str,
}

/// Labels naming a command.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandName {
    /// For example `request_booking`.
    pub command: &'static str,
}

/// Labels of an appended event.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// `location`, `event` or `booking`.
    pub aggregate_type: &'static str,
    /// For example `SeatsReserved`.
    pub event_type: String,
}

/// Labels of a saga step.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// `reserve`, `authorize`, `confirm`, `release`, `refund`, `cancel_event`.
    pub step: &'static str,
    /// `advanced` (the saga moved on), `retried` (same step later) or `failed` (an
    /// error; retried later).
    pub outcome: &'static str,
}

/// Labels naming a reason.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// For example `payment_declined`.
    pub reason: &'static str,
}

/// Labels naming a booking status.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// `confirmed`, `rejected` or `cancelled`.
    pub status: &'static str,
}

/// A call to the payment gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentOperation {
    /// Exchange a card token for a payment method.
    Tokenize,
    /// Create (authorize) a payment intent.
    Authorize,
    /// Capture an intent.
    Capture,
    /// Void an intent.
    Void,
    /// Void whatever a key holds, now and later.
    VoidKey,
    /// Refund an intent.
    Refund,
    /// Look an intent up by key.
    Find,
    /// List intents (reconciliation).
    List,
}

impl PaymentOperation {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tokenize => "tokenize",
            Self::Authorize => "authorize",
            Self::Capture => "capture",
            Self::Void => "void",
            Self::VoidKey => "void_key",
            Self::Refund => "refund",
            Self::Find => "find",
            Self::List => "list",
        }
    }
}

/// Labels of a payment gateway call attempt.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PaymentCallLabels {
    /// `tokenize`, `authorize`, `capture`, `void`, `void_key`, `refund`, `find` or
    /// `list`.
    pub operation: &'static str,
    /// `ok`, `refused` (a 4xx or a malformed answer), `unavailable` (not reached, 5xx),
    /// `timeout` or `circuit_open` (not sent).
    pub outcome: &'static str,
}

/// Labels naming a payment gateway operation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PaymentOperationLabel {
    /// As in [`PaymentCallLabels`].
    pub operation: &'static str,
}

impl PaymentCallLabels {
    /// The label naming `operation` alone.
    pub fn name(operation: PaymentOperation) -> PaymentOperationLabel {
        PaymentOperationLabel {
            operation: operation.as_str(),
        }
    }
}

/// Labels of the circuit breaker's state.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CircuitLabel {
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
}

/// Labels of a reconciliation finding.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabel {
    /// `captured` (a confirmed booking's payment left uncaptured), `voided` (an
    /// authorization held for a booking that did not happen) or `orphaned` (an
    /// authorization for no booking of ours, voided).
    pub finding: &'static str,
}

/// Every metric command-api exports.
#[derive(Clone)]
pub struct Metrics {
    /// Answers by method, route, status and error code (the access-log layer counts).
    pub http: platform::access_log::HttpMetrics,
    /// Commands by name and outcome.
    pub commands: Family<CommandLabels, Counter>,
    /// Command latency, from the request parsed to the answer ready.
    pub command_seconds: Family<CommandName, Histogram>,
    /// Optimistic-concurrency conflicts met (each is retried, up to a bound).
    pub conflicts: Family<CommandName, Counter>,
    /// Events appended to the store.
    pub events_appended: Family<EventLabels, Counter>,
    /// Commands appended together in one statement (see the store's combining).
    pub append_batch: Histogram,
    /// Appends of different aggregates written in one statement (group commit).
    pub append_statement_aggregates: Histogram,
    /// Rows waiting in the outbox, as last seen by the relay leader.
    pub outbox_backlog: Gauge,
    /// Seconds since the oldest row still in the outbox was appended (0: empty).
    pub outbox_oldest_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Events published to the topic (acknowledged by the broker).
    pub outbox_published: Counter,
    /// Time from an event's append to the broker's acknowledgement.
    pub publish_seconds: Histogram,
    /// Deliveries the broker refused or that failed (each row is retried).
    pub publish_failures: Counter,
    /// Rows per relay batch.
    pub relay_batch: Histogram,
    /// Time from producing a batch to the broker's last acknowledgement.
    pub relay_ack_seconds: Histogram,
    /// 1 while this process leads the relay.
    pub relay_leader: Gauge,
    /// 1 while the broker answers (checked every few seconds), 0 otherwise.
    pub broker_up: Gauge,
    /// Saga steps carried out, by step and outcome.
    pub saga_steps: Family<StepLabels, Counter>,
    /// Sagas not finished (in the whole store, as last counted).
    pub sagas_in_flight: Gauge,
    /// Sagas parked after failing the same way too often (in the whole store).
    pub sagas_parked: Gauge,
    /// Commands refused 429 by the per-customer rate limit.
    pub rate_limited: Counter,
    /// Compensations started, by reason (`cancelled` for refunds).
    pub compensations: Family<ReasonLabel, Counter>,
    /// Hold deadlines that passed before the payment was settled.
    pub deadlines_fired: Counter,
    /// Bookings that reached a final status through this process's sagas.
    pub bookings_final: Family<StatusLabel, Counter>,
    /// Attempts of payment gateway calls, by operation and outcome.
    pub payment_calls: Family<PaymentCallLabels, Counter>,
    /// Payment gateway calls' latency (with their retries), by operation.
    pub payment_call_seconds: Family<PaymentOperationLabel, Histogram>,
    /// 1 for the circuit breaker's current state, 0 for the others.
    pub payment_circuit_state: Family<CircuitLabel, Gauge>,
    /// Times the circuit breaker opened.
    pub payment_circuit_opened: Counter,
    /// Payment gateway calls waiting for their turn (`PAYMENT_MAX_IN_FLIGHT` are out).
    pub payment_calls_waiting: Gauge,
    /// What the reconciliation sweep found and mended, by finding.
    pub reconciliation_findings: Family<FindingLabel, Counter>,
    /// Reconciliation passes completed.
    pub reconciliation_passes: Counter,
    /// Confirmed bookings whose payment could not be taken (the card declined when
    /// asked at capture): for people to settle.
    pub payments_uncollectable: Counter,
}

impl Metrics {
    /// Fresh metrics, registered in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            http: platform::access_log::HttpMetrics::new(registry),
            commands: Family::default(),
            command_seconds: Family::new_with_constructor(latency_histogram),
            conflicts: Family::default(),
            events_appended: Family::default(),
            append_batch: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 10),
            ),
            append_statement_aggregates: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 10),
            ),
            outbox_backlog: Gauge::default(),
            outbox_oldest_age: Gauge::default(),
            outbox_published: Counter::default(),
            publish_seconds: latency_histogram(),
            publish_failures: Counter::default(),
            relay_batch: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 10),
            ),
            relay_ack_seconds: latency_histogram(),
            relay_leader: Gauge::default(),
            broker_up: Gauge::default(),
            saga_steps: Family::default(),
            sagas_in_flight: Gauge::default(),
            sagas_parked: Gauge::default(),
            rate_limited: Counter::default(),
            compensations: Family::default(),
            deadlines_fired: Counter::default(),
            bookings_final: Family::default(),
            payment_calls: Family::default(),
            payment_call_seconds: Family::new_with_constructor(latency_histogram),
            payment_circuit_state: Family::default(),
            payment_circuit_opened: Counter::default(),
            payment_calls_waiting: Gauge::default(),
            reconciliation_findings: Family::default(),
            reconciliation_passes: Counter::default(),
            payments_uncollectable: Counter::default(),
        };
        registry.register(
            "boxoffice_commands",
            "Commands handled, by command and outcome",
            metrics.commands.clone(),
        );
        registry.register(
            "boxoffice_command_duration_seconds",
            "Command latency in seconds",
            metrics.command_seconds.clone(),
        );
        registry.register(
            "boxoffice_command_conflicts",
            "Optimistic-concurrency conflicts met and retried",
            metrics.conflicts.clone(),
        );
        registry.register(
            "boxoffice_events_appended",
            "Events appended to the event store",
            metrics.events_appended.clone(),
        );
        registry.register(
            "boxoffice_append_batch_commands",
            "Commands on one aggregate appended together in one statement",
            metrics.append_batch.clone(),
        );
        registry.register(
            "boxoffice_append_statement_aggregates",
            "Appends of different aggregates written together in one statement",
            metrics.append_statement_aggregates.clone(),
        );
        registry.register(
            "boxoffice_outbox_backlog",
            "Outbox rows not yet published",
            metrics.outbox_backlog.clone(),
        );
        registry.register_with_unit(
            "boxoffice_outbox_oldest_age",
            "How long the oldest row still in the outbox has waited (0: the outbox is empty)",
            prometheus_client::registry::Unit::Seconds,
            metrics.outbox_oldest_age.clone(),
        );
        registry.register(
            "boxoffice_outbox_published",
            "Events published to Kafka and acknowledged",
            metrics.outbox_published.clone(),
        );
        registry.register(
            "boxoffice_outbox_publish_latency_seconds",
            "Seconds from append to broker acknowledgement",
            metrics.publish_seconds.clone(),
        );
        registry.register(
            "boxoffice_outbox_publish_failures",
            "Failed deliveries (retried)",
            metrics.publish_failures.clone(),
        );
        registry.register(
            "boxoffice_outbox_batch_rows",
            "Rows per relay batch",
            metrics.relay_batch.clone(),
        );
        registry.register(
            "boxoffice_outbox_ack_seconds",
            "Seconds from producing a batch to its last acknowledgement",
            metrics.relay_ack_seconds.clone(),
        );
        registry.register(
            "boxoffice_outbox_relay_leader",
            "1 while this process leads the outbox relay",
            metrics.relay_leader.clone(),
        );
        registry.register(
            "boxoffice_sagas_parked",
            "Sagas parked after failing the same way too often, waiting for an operator",
            metrics.sagas_parked.clone(),
        );
        registry.register(
            "boxoffice_commands_rate_limited",
            "Commands refused 429 by the per-customer rate limit",
            metrics.rate_limited.clone(),
        );
        registry.register(
            "boxoffice_broker_up",
            "1 while the Kafka broker answers, 0 otherwise (checked every few seconds)",
            metrics.broker_up.clone(),
        );
        registry.register(
            "boxoffice_saga_steps",
            "Saga steps carried out, by step and outcome",
            metrics.saga_steps.clone(),
        );
        registry.register(
            "boxoffice_sagas_in_flight",
            "Sagas not finished",
            metrics.sagas_in_flight.clone(),
        );
        registry.register(
            "boxoffice_saga_compensations",
            "Compensations started, by reason",
            metrics.compensations.clone(),
        );
        registry.register(
            "boxoffice_saga_deadlines_fired",
            "Seat holds that expired before the payment was settled",
            metrics.deadlines_fired.clone(),
        );
        registry.register(
            "boxoffice_bookings_final",
            "Bookings that reached a final status, by status",
            metrics.bookings_final.clone(),
        );
        registry.register(
            "boxoffice_payment_calls",
            "Payment gateway call attempts, by operation and outcome",
            metrics.payment_calls.clone(),
        );
        registry.register(
            "boxoffice_payment_call_duration_seconds",
            "Payment gateway call latency in seconds, retries and waits for a turn included",
            metrics.payment_call_seconds.clone(),
        );
        registry.register(
            "boxoffice_payment_circuit_state",
            "The payment gateway circuit breaker's state (1 for the current one)",
            metrics.payment_circuit_state.clone(),
        );
        registry.register(
            "boxoffice_payment_circuit_opened",
            "Times the payment gateway circuit breaker opened",
            metrics.payment_circuit_opened.clone(),
        );
        registry.register(
            "boxoffice_payment_calls_waiting",
            "Payment gateway calls waiting for a turn (PAYMENT_MAX_IN_FLIGHT are at the gateway)",
            metrics.payment_calls_waiting.clone(),
        );
        registry.register(
            "boxoffice_reconciliation_findings",
            "Payments the reconciliation sweep found out of line and mended, by finding",
            metrics.reconciliation_findings.clone(),
        );
        registry.register(
            "boxoffice_reconciliation_passes",
            "Reconciliation passes completed",
            metrics.reconciliation_passes.clone(),
        );
        registry.register(
            "boxoffice_payments_uncollectable",
            "Confirmed bookings whose payment could not be taken, for people to settle",
            metrics.payments_uncollectable.clone(),
        );
        metrics
    }
}
