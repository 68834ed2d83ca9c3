//! Parked sagas (admin): `GET /v1/admin/sagas/parked` lists the booking sagas and event
//! cancellations set aside after failing the same way `BOXOFFICE_SAGA_PARK_AFTER` times
//! in a row; `POST /v1/admin/sagas/{id}/retry` (a booking's id, or a cancelled event's)
//! takes one up again at once, its failure count reset. Retrying one that is not parked
//! is 404 `not_found`; retrying twice is harmless.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use platform::auth::Admin;
use platform::http::ApiError;
use serde::Serialize;
use serde_json::{json, Value};

use crate::app::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/sagas/parked", get(parked))
        .route("/v1/admin/sagas/{id}/retry", post(retry))
}

/// A parked saga as listed.
#[derive(Serialize, sqlx::FromRow)]
struct Parked {
    /// `booking` or `event_cancellation`.
    kind: String,
    /// The booking's id, or the cancelled event's.
    id: String,
    /// The step that keeps failing (`cancel` for an event cancellation).
    step: String,
    /// How it fails.
    last_error: Option<String>,
    /// How many times in a row it failed that way.
    same_failures: i32,
    /// When it was parked.
    parked_at: DateTime<Utc>,
}

async fn parked(State(app): State<AppState>, _admin: Admin) -> Result<Json<Value>, ApiError> {
    let items: Vec<Parked> = sqlx::query_as(
        "SELECT 'booking' AS kind, booking_id AS id, step, last_error, same_failures, parked_at
           FROM booking_sagas WHERE parked_at IS NOT NULL
         UNION ALL
         SELECT 'event_cancellation', event_id, 'cancel', last_error, same_failures, parked_at
           FROM event_cancellation_sagas WHERE parked_at IS NOT NULL
         ORDER BY parked_at
         LIMIT 1000",
    )
    .fetch_all(&app.pool)
    .await
    .map_err(ApiError::unexpected)?;
    Ok(Json(json!({ "items": items })))
}

async fn retry(
    State(app): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let retried: Option<String> = sqlx::query_scalar(
        "WITH booking AS (
             UPDATE booking_sagas
                SET parked_at = NULL, same_failures = 0, attempts = 0, due_at = now(), updated_at = now()
              WHERE booking_id = $1 AND parked_at IS NOT NULL
             RETURNING 'booking'::text AS kind
         ), cancellation AS (
             UPDATE event_cancellation_sagas
                SET parked_at = NULL, same_failures = 0, attempts = 0, due_at = now(), updated_at = now()
              WHERE event_id = $1 AND parked_at IS NOT NULL
             RETURNING 'event_cancellation'::text AS kind
         )
         SELECT kind FROM booking UNION ALL SELECT kind FROM cancellation LIMIT 1",
    )
    .bind(&id)
    .fetch_optional(&app.pool)
    .await
    .map_err(ApiError::unexpected)?;
    match retried {
        Some(kind) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"id": id, "kind": kind, "status": "retrying"})),
        )),
        None => Err(ApiError::not_found("no parked saga with that id")),
    }
}
