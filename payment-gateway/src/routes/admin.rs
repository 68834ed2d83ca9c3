//! `GET /admin/faults` and `PUT /admin/faults`: the fault injection of [`crate::faults`].

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use platform::http::{ApiError, JsonBody};
use serde_json::{json, Map, Value};

use crate::app::AppState;
use crate::faults::{Faults, Mode, Scope, MAX_LATENCY_MS};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/admin/faults", get(show).put(set))
}

async fn show(State(app): State<AppState>) -> Json<Faults> {
    Json(app.faults.get())
}

/// Both fields are required: a drill states the whole setting it wants.
async fn set(
    State(app): State<AppState>,
    body: JsonBody<Map<String, Value>>,
) -> Result<Json<Faults>, ApiError> {
    let mut problems = Vec::new();
    let mode = body
        .value
        .get("mode")
        .and_then(|v| serde_json::from_value::<Mode>(v.clone()).ok());
    if mode.is_none() {
        problems.push(json!({
            "field": "mode",
            "message": "is required: normal, unavailable, hang or lose_answer",
        }));
    }
    let latency_ms = body
        .value
        .get("latency_ms")
        .and_then(Value::as_u64)
        .filter(|ms| *ms <= MAX_LATENCY_MS);
    if latency_ms.is_none() {
        problems.push(json!({
            "field": "latency_ms",
            "message": format!("is required: an integer from 0 to {MAX_LATENCY_MS}"),
        }));
    }
    // Optional: the faults apply to every /v1 request unless told otherwise.
    let scope = match body.value.get("scope") {
        None => Some(Scope::All),
        Some(value) => serde_json::from_value::<Scope>(value.clone()).ok(),
    };
    if scope.is_none() {
        problems.push(json!({
            "field": "scope",
            "message": "must be all or intents",
        }));
    }
    let (Some(mode), Some(latency_ms), Some(scope)) = (mode, latency_ms, scope) else {
        return Err(ApiError::validation(problems));
    };
    let faults = Faults {
        mode,
        latency_ms,
        scope,
    };
    app.faults.set(faults);
    tracing::warn!(?mode, latency_ms, ?scope, "faults set");
    Ok(Json(faults))
}
