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
use uuid::Uuid;

use crate::app::AppState;
use crate::contract::ParkedEvents;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/parked", get(list))
        .route("/v1/admin/parked/{position}/retry", post(retry))
}

/// A parked event as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Parked {
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

/// Events a projection could not apply, parked (admin).
#[utoipa::path(get, path = "/v1/admin/parked", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "The parked events, by position (at most 1000).", body = ParkedEvents),
        (status = 403, description = "Not an admin.", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn list(
    State(app): State<AppState>,
    _admin: Admin,
) -> Result<Json<ParkedEvents>, ApiError> {
    let items = sqlx::query_as!(
        Parked,
        "SELECT position, projection, aggregate_type, aggregate_id, sequence, event_type,
                event_version, error, attempts, parked_at, last_attempt_at, retry_requested_at
           FROM parked_events ORDER BY position LIMIT 1000"
    )
    .fetch_all(&app.read)
    .await?;
    Ok(Json(ParkedEvents { items }))
}

/// Ask the projector to try a parked event again now (admin).
#[utoipa::path(post, path = "/v1/admin/parked/{position}/retry", tag = "admin", security(("bearer" = [])),
    params(("position" = i64, Path, description = "The parked event's position.")),
    responses(
        (status = 202, description = "Asked; the projector tries within a second.", body = Parked),
        (status = 403, description = "Not an admin.", body = platform::openapi::ErrorBody),
        (status = 404, description = "No parked event at that position.", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn retry(
    State(app): State<AppState>,
    _admin: Admin,
    Path(position): Path<String>,
) -> Result<(StatusCode, Json<Parked>), ApiError> {
    let unknown = || ApiError::not_found("no parked event at that position");
    let position: i64 = position.parse().map_err(|_| unknown())?;
    let asked = sqlx::query_as!(
        Parked,
        "UPDATE parked_events SET retry_requested_at = now() WHERE position = $1
         RETURNING position, projection, aggregate_type, aggregate_id, sequence, event_type,
                   event_version, error, attempts, parked_at, last_attempt_at, retry_requested_at",
        position
    )
    .fetch_optional(&app.read)
    .await?;
    let parked = asked.ok_or_else(unknown)?;
    Ok((StatusCode::ACCEPTED, Json(parked)))
}
