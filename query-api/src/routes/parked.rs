//! Parked events (admin): `GET /v1/admin/parked` lists the events a projection could not
//! apply (its stream waits at that event; the others go on), with the error and the
//! attempts; `POST /v1/admin/parked/{position}/retry` asks the projector to try one
//! again now (taken up within a second; the row goes once it applies, or counts one
//! more attempt). The projector also retries every parked event at start-up and every
//! `PROJECTOR_PARKED_RETRY_MS`, so a newer build that can read it applies it by itself.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use platform::auth::Admin;
use platform::http::ApiError;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/parked", get(list))
        .route("/v1/admin/parked/{position}/retry", post(retry))
}

/// A parked event as listed.
#[derive(Serialize, sqlx::FromRow)]
struct Parked {
    position: i64,
    projection: String,
    aggregate_type: String,
    aggregate_id: Uuid,
    sequence: i64,
    event_type: String,
    event_version: String,
    error: String,
    attempts: i32,
    parked_at: DateTime<Utc>,
    last_attempt_at: DateTime<Utc>,
    retry_requested_at: Option<DateTime<Utc>>,
}

async fn list(State(app): State<AppState>, _admin: Admin) -> Result<Json<Value>, ApiError> {
    let items: Vec<Parked> = sqlx::query_as(
        "SELECT position, projection, aggregate_type, aggregate_id, sequence, event_type,
                event_version, error, attempts, parked_at, last_attempt_at, retry_requested_at
           FROM parked_events ORDER BY position LIMIT 1000",
    )
    .fetch_all(&app.read)
    .await
    .map_err(ApiError::unexpected)?;
    Ok(Json(json!({ "items": items })))
}

async fn retry(
    State(app): State<AppState>,
    _admin: Admin,
    Path(position): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let unknown = || ApiError::not_found("no parked event at that position");
    let position: i64 = position.parse().map_err(|_| unknown())?;
    let asked: Option<Parked> = sqlx::query_as(
        "UPDATE parked_events SET retry_requested_at = now() WHERE position = $1
         RETURNING position, projection, aggregate_type, aggregate_id, sequence, event_type,
                   event_version, error, attempts, parked_at, last_attempt_at, retry_requested_at",
    )
    .bind(position)
    .fetch_optional(&app.read)
    .await
    .map_err(ApiError::unexpected)?;
    let parked = asked.ok_or_else(unknown)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::to_value(parked).map_err(ApiError::unexpected)?),
    ))
}
