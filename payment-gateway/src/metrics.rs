//! What `/metrics` exports, and the middleware that counts and times API requests.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use platform::metrics::latency_histogram;

use crate::app::AppState;
use crate::faults::Unanswered;
use crate::intent::Status;

/// Labels of a finished request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// What was asked (`create`, `capture`, ..., see [`operation`]).
    pub operation: &'static str,
    /// The HTTP status sent, or `none` when no answer was sent (a hung request, a lost
    /// answer, a client that went away).
    pub status: String,
}

/// Labels naming an operation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    /// What was asked.
    pub operation: &'static str,
}

/// Labels of an intent's change of status.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabel {
    /// The status it went to (a creation goes to `authorized` or `declined`, a
    /// tombstone to `voided`).
    pub to: &'static str,
}

/// Every metric the gateway exports.
#[derive(Clone)]
pub struct Metrics {
    /// Answers by method, route, status and error code (the access-log layer counts).
    pub http: platform::access_log::HttpMetrics,
    /// `payment_gateway_requests_total{operation,status}`.
    pub requests: Family<RequestLabels, Counter>,
    /// `payment_gateway_request_seconds{operation}`.
    pub request_seconds: Family<OperationLabel, Histogram>,
    /// `payment_gateway_requests_in_flight{operation}`.
    pub in_flight: Family<OperationLabel, Gauge>,
    /// `payment_gateway_intent_transitions_total{to}`.
    pub transitions: Family<TransitionLabel, Counter>,
}

impl Metrics {
    /// Fresh metrics, registered in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            http: platform::access_log::HttpMetrics::new(registry),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            in_flight: Family::default(),
            transitions: Family::default(),
        };
        registry.register(
            "payment_gateway_requests",
            "API requests by operation and HTTP status",
            metrics.requests.clone(),
        );
        registry.register(
            "payment_gateway_request_seconds",
            "API request latency in seconds, simulated latency included",
            metrics.request_seconds.clone(),
        );
        registry.register(
            "payment_gateway_requests_in_flight",
            "API requests being handled (hung ones included)",
            metrics.in_flight.clone(),
        );
        registry.register(
            "payment_gateway_intent_transitions",
            "Payment intents reaching a status",
            metrics.transitions.clone(),
        );
        metrics
    }

    /// Counts an intent reaching `to`.
    pub fn transition(&self, to: Status) {
        self.transitions
            .get_or_create(&TransitionLabel { to: to.as_str() })
            .inc();
    }
}

/// The operation a route serves, for labels.
pub fn operation(method: &Method, route: &str) -> &'static str {
    match (method.as_str(), route) {
        ("POST", "/v1/payment_intents") => "create",
        ("GET", "/v1/payment_intents") => "list",
        ("GET", "/v1/payment_intents/{id}") => "retrieve",
        ("GET", "/v1/payment_intents/by_key/{key}") => "retrieve_by_key",
        ("POST", "/v1/payment_intents/{id}/capture") => "capture",
        ("POST", "/v1/payment_intents/{id}/cancel") => "cancel",
        ("POST", "/v1/payment_intents/{id}/refund") => "refund",
        ("POST", "/v1/payment_intents/by_key/{key}/cancel") => "cancel_by_key",
        ("POST", "/v1/payment_methods") => "create_payment_method",
        ("GET", "/v1/payment_methods/{id}") => "retrieve_payment_method",
        ("GET", "/admin/faults") => "get_faults",
        ("PUT", "/admin/faults") => "set_faults",
        _ => "other",
    }
}

/// Counts a request when it ends, however it ends: a future dropped because the client
/// went away, or one never answered, is counted with status `none`.
struct InFlight {
    app: AppState,
    operation: &'static str,
    started: Instant,
    status: Option<u16>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let label = OperationLabel {
            operation: self.operation,
        };
        let metrics = &self.app.metrics;
        metrics.in_flight.get_or_create(&label).dec();
        let status = self
            .status
            .map_or_else(|| "none".to_owned(), |s| s.to_string());
        tracing::debug!(operation = self.operation, %status, "request done");
        metrics
            .requests
            .get_or_create(&RequestLabels {
                operation: self.operation,
                status,
            })
            .inc();
        metrics
            .request_seconds
            .get_or_create(&label)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// The middleware: counts and times every API request by operation.
pub async fn track(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    let operation = operation(request.method(), route);
    app.metrics
        .in_flight
        .get_or_create(&OperationLabel { operation })
        .inc();
    let mut guard = InFlight {
        app: app.clone(),
        operation,
        started: Instant::now(),
        status: None,
    };
    let response = next.run(request).await;
    if response.extensions().get::<Unanswered>().is_none() {
        guard.status = Some(response.status().as_u16());
    }
    response
}
