//! `GET /v1/bookings/{id}` (the owner or an admin) and `GET /v1/users/me/bookings`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use platform::auth::User;
use platform::http::{ApiError, PathId, QueryParams};
use projector::views::BookingRow;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::time;
use crate::app::AppState;
use crate::consistency::Consistent;
use crate::pagination;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/bookings/{id}", get(one))
        .route("/v1/users/me/bookings", get(mine))
}

fn render(row: &BookingRow) -> Value {
    json!({
        "id": row.id,
        "event_id": row.event_id,
        "user_id": row.user_id,
        "seats": row.seats,
        "amount_cents": row.amount_cents,
        "currency": row.currency,
        "status": row.status,
        "reason": row.reason,
        "refunded": row.refunded,
        "history": row.history,
        "created_at": time(row.created_at),
        "updated_at": time(row.updated_at),
    })
}

async fn one(
    State(app): State<AppState>,
    user: User,
    _: Consistent,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let row: Option<BookingRow> = sqlx::query_as("SELECT * FROM booking_view WHERE id = $1")
        .bind(id)
        .fetch_optional(&app.read)
        .await
        .map_err(ApiError::unexpected)?;
    let row = row.ok_or_else(|| ApiError::not_found("no such booking"))?;
    if row.user_id != user.id && !user.is_admin() {
        return Err(ApiError::forbidden(
            "only the owner of a booking or an admin may see it",
        ));
    }
    Ok(Json(render(&row)))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

/// The caller's bookings, newest first.
async fn mine(
    State(app): State<AppState>,
    user: User,
    _: Consistent,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = pagination::limit(query.limit)?;
    let before: Option<Uuid> = pagination::decode(query.cursor.as_deref())?;
    let rows: Vec<BookingRow> = sqlx::query_as(
        "SELECT * FROM booking_view
          WHERE user_id = $1 AND ($2::uuid IS NULL OR id < $2)
          ORDER BY id DESC LIMIT $3",
    )
    .bind(&user.id)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(&app.read)
    .await
    .map_err(ApiError::unexpected)?;
    Ok(Json(pagination::page(rows, limit, |r| r.id, render)))
}
