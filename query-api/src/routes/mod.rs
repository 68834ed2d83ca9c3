//! The HTTP routes of query-api, one module per resource, merged here with health,
//! metrics and the JSON fallbacks.

use std::sync::Arc;

use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use platform::http::{health_router, method_not_allowed, route_not_found, ReadinessCheck};
use platform::metrics::metrics_router;
use platform::server::{limit, ServerLimits};
use prometheus_client::registry::Registry;
use tower_http::trace::TraceLayer;

use crate::app::AppState;

pub(crate) mod admin;
pub(crate) mod audit;
pub(crate) mod bookings;
pub(crate) mod events;
pub(crate) mod locations;
pub(crate) mod parked;

/// Every route of query-api.
pub fn router(
    state: AppState,
    registry: Arc<Registry>,
    readiness: Vec<ReadinessCheck>,
    limits: &ServerLimits,
) -> Router {
    let api = Router::new()
        .merge(locations::router())
        .merge(events::router())
        .merge(bookings::router())
        .merge(admin::router())
        .merge(parked::router())
        .merge(audit::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ));
    // The export streams the whole store and verify walks it: bounded by the store's
    // size, not by the request timeout.
    limit(api, limits, &["/v1/audit/export", "/v1/audit/verify"])
        .merge(health_router(readiness))
        .merge(metrics_router(registry))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn_with_state(
            state.0.metrics.http.clone(),
            platform::access_log::layer,
        ))
        .with_state(state)
        .merge(platform::openapi::docs_router(
            crate::openapi::document_json(),
            "boxoffice query-api",
        ))
}

/// A time as the API shows it: RFC 3339, UTC.
fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}
