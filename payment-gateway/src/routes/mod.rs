//! The HTTP routes: `/v1/payment_intents`, `/v1/payment_methods` and `/admin/faults`
//! behind the API key (and, for `/v1`, the fault injection), merged with health, metrics
//! and the JSON fallbacks.

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use platform::http::{
    health_router, method_not_allowed, route_not_found, ApiError, ErrorCode, ReadinessCheck,
};
use platform::metrics::metrics_router;
use platform::server::ServerLimits;
use prometheus_client::registry::Registry;

use crate::app::AppState;

mod admin;
mod extract;
mod intents;
mod payment_methods;

/// Every route of the gateway.
pub fn router(
    state: AppState,
    registry: Arc<Registry>,
    readiness: Vec<ReadinessCheck>,
    limits: &ServerLimits,
) -> Router {
    // Layers run outside in: detached from the connection, metrics (so they see every
    // answer, 401s and simulated latency included), then the key, then the faults
    // (`/v1` only).
    let v1 = intents::router()
        .merge(payment_methods::router())
        .route_layer(from_fn_with_state(state.clone(), crate::faults::inject));
    let api = v1
        .merge(admin::router())
        .route_layer(from_fn_with_state(state.clone(), crate::auth::require_key))
        .route_layer(from_fn_with_state(state.clone(), crate::metrics::track))
        .route_layer(from_fn(detach));
    Router::new()
        .merge(platform::server::limit(api, limits, &[]))
        .merge(health_router(readiness))
        .merge(metrics_router(registry))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(
            state.0.metrics.http.clone(),
            platform::access_log::layer,
        ))
        .with_state(state)
}

/// Carries a request out on a task of its own. A provider carries out what reached it
/// whether or not the client waits for the answer: a client that gives up (a timeout)
/// closes its connection, which would otherwise cancel the handler half-way, and the
/// "authorization that lands after the client gave up" could never happen.
async fn detach(request: Request, next: Next) -> Response {
    match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        Err(err) => {
            ApiError::unexpected(format!("the request's task failed: {err}")).into_response()
        }
    }
}

/// A time as the API shows it: RFC 3339, UTC.
fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// 404 `resource_missing` (as Stripe has it): the route exists, the object it names
/// does not. A client tells it from an unknown route (404 `not_found`), which means it
/// is talking to the wrong thing, not that there is nothing there.
pub(crate) fn missing(message: impl Into<String>) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        ErrorCode::ResourceMissing,
        message,
    )
}
