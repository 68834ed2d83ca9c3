//! query-api's metrics.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use platform::metrics::latency_histogram;

use crate::app::AppState;

/// Labels of a request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route, as declared (`/v1/events/{id}`).
    pub route: String,
    /// The HTTP status.
    pub status: u16,
}

/// Labels naming a route.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// The route, as declared.
    pub route: String,
}

/// How a read-your-writes wait ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Wait {
    /// The write became visible.
    CaughtUp,
    /// It did not in time (503 `not_caught_up`).
    TimedOut,
}

/// Labels of a wait.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WaitLabel {
    /// How it ended.
    pub outcome: Wait,
}

/// Every metric query-api exports.
#[derive(Clone)]
pub struct Metrics {
    /// Answers by method, route, status and error code (the access-log layer counts).
    pub http: platform::access_log::HttpMetrics,
    /// Requests by route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by route.
    pub request_seconds: Family<RouteLabel, Histogram>,
    /// Read-your-writes waits by outcome.
    pub consistency_wait_seconds: Family<WaitLabel, Histogram>,
}

impl Metrics {
    /// Fresh metrics, registered in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            http: platform::access_log::HttpMetrics::new(registry),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            consistency_wait_seconds: Family::new_with_constructor(latency_histogram),
        };
        registry.register(
            "boxoffice_query_requests",
            "Requests by route and status",
            metrics.requests.clone(),
        );
        registry.register(
            "boxoffice_query_duration_seconds",
            "Request latency in seconds",
            metrics.request_seconds.clone(),
        );
        registry.register(
            "boxoffice_consistency_wait_seconds",
            "Time a read-your-writes request waited for the read models",
            metrics.consistency_wait_seconds.clone(),
        );
        metrics
    }

    /// Records a read-your-writes wait.
    pub fn observe_wait(&self, outcome: Wait, waited: Duration) {
        self.consistency_wait_seconds
            .get_or_create(&WaitLabel { outcome })
            .observe(waited.as_secs_f64());
    }
}

/// Counts and times every request by its route.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            status: response.status().as_u16(),
        })
        .inc();
    state
        .metrics
        .request_seconds
        .get_or_create(&RouteLabel { route })
        .observe(started.elapsed().as_secs_f64());
    response
}
