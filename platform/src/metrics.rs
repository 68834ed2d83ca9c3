//! Metrics with prometheus-client, served as OpenMetrics text on `GET /metrics`.

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics` for a registry that is complete (nothing registers after this).
pub fn metrics_router<S: Clone + Send + Sync + 'static>(registry: Arc<Registry>) -> Router<S> {
    Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                let mut body = String::new();
                match encode(&mut body, &registry) {
                    Ok(()) => ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
                    Err(err) => {
                        tracing::error!(cause = %err, "cannot encode metrics");
                        StatusCode::INTERNAL_SERVER_ERROR.into_response()
                    }
                }
            }
        }),
    )
}

/// A latency histogram in seconds, from 0.5 ms to about 16 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 16,
    ))
}
