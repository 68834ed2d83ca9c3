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

use crate::app::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/sagas/parked", get(parked))
        .route("/v1/admin/sagas/{id}/retry", post(retry))
}

/// A parked saga as listed.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Parked {
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

/// Parked sagas.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ParkedList {
    /// At most 1000, oldest first.
    items: Vec<Parked>,
}

/// A parked saga taken up again.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Retrying {
    id: String,
    /// `booking` or `event_cancellation`.
    kind: String,
    /// `retrying`.
    status: String,
}

/// Sagas parked after failing the same way too often (admin).
#[utoipa::path(get, path = "/v1/admin/sagas/parked", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "The parked sagas.", body = ParkedList),
        (status = 403, description = "Not an admin.", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn parked(
    State(app): State<AppState>,
    _admin: Admin,
) -> Result<Json<ParkedList>, ApiError> {
    // A union's columns are nullable to Postgres: the overrides say which are not.
    let items = sqlx::query_as!(
        Parked,
        r#"SELECT kind AS "kind!", id AS "id!", step AS "step!", last_error,
                  same_failures AS "same_failures!", parked_at AS "parked_at!"
             FROM (SELECT 'booking' AS kind, booking_id AS id, step, last_error, same_failures, parked_at
                     FROM booking_sagas WHERE parked_at IS NOT NULL
                   UNION ALL
                   SELECT 'event_cancellation', event_id, 'cancel', last_error, same_failures, parked_at
                     FROM event_cancellation_sagas WHERE parked_at IS NOT NULL) AS parked
            ORDER BY parked_at
            LIMIT 1000"#
    )
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(ParkedList { items }))
}

/// Take a parked saga up again (admin).
#[utoipa::path(post, path = "/v1/admin/sagas/{id}/retry", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "A booking's id, or a cancelled event's.")),
    responses(
        (status = 202, description = "Retrying.", body = Retrying),
        (status = 403, description = "Not an admin.", body = platform::openapi::ErrorBody),
        (status = 404, description = "No parked saga with that id.", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn retry(
    State(app): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Retrying>), ApiError> {
    let retried = sqlx::query_scalar!(
        r#"WITH booking AS (
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
         SELECT kind AS "kind!" FROM booking UNION ALL SELECT kind FROM cancellation LIMIT 1"#,
        &id
    )
    .fetch_optional(&app.pool)
    .await?;
    match retried {
        Some(kind) => Ok((
            StatusCode::ACCEPTED,
            Json(Retrying {
                id,
                kind,
                status: "retrying".to_owned(),
            }),
        )),
        None => Err(ApiError::not_found("no parked saga with that id")),
    }
}
