//! `GET /v1/locations` and `GET /v1/locations/{id}` (any user).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use platform::auth::User;
use platform::http::{ApiError, PathId, QueryParams};
use projector::views::LocationRow;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::AppState;
use crate::consistency::Consistent;
use crate::pagination;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/locations", get(list))
        .route("/v1/locations/{id}", get(one))
}

fn render(row: &LocationRow) -> Value {
    json!({
        "id": row.id,
        "name": row.name,
        "address": row.address,
        "country": row.country,
        "halls": row.halls,
    })
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Locations in creation order (their ids are time-ordered UUIDs).
async fn list(
    State(app): State<AppState>,
    _user: User,
    _: Consistent,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = pagination::limit(query.limit)?;
    let after: Option<Uuid> = pagination::decode(query.cursor.as_deref())?;
    let rows: Vec<LocationRow> = sqlx::query_as(
        "SELECT * FROM location_view WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&app.read)
    .await
    .map_err(ApiError::unexpected)?;
    Ok(Json(pagination::page(rows, limit, |r| r.id, render)))
}

async fn one(
    State(app): State<AppState>,
    _user: User,
    _: Consistent,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let row: Option<LocationRow> = sqlx::query_as("SELECT * FROM location_view WHERE id = $1")
        .bind(id)
        .fetch_optional(&app.read)
        .await
        .map_err(ApiError::unexpected)?;
    row.map(|r| Json(render(&r)))
        .ok_or_else(|| ApiError::not_found("no such location"))
}
