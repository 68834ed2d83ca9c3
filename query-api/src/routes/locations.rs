//! `GET /v1/locations` and `GET /v1/locations/{id}` (any user).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use platform::auth::User;
use platform::http::{ApiError, PathId, QueryParams};
use read_model::views::LocationRow;
use serde::Deserialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::consistency::Consistent;
use crate::contract::{Location, Page};
use crate::pagination;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/locations", get(list))
        .route("/v1/locations/{id}", get(one))
}

fn render(row: &LocationRow) -> Location {
    Location {
        id: row.id,
        name: row.name.clone(),
        address: row.address.clone(),
        country: row.country.clone(),
        halls: row.halls.clone(),
    }
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Locations in creation order (their ids are time-ordered UUIDs).
/// Locations, oldest first (any user).
#[utoipa::path(get, path = "/v1/locations", tag = "locations", security(("bearer" = [])),
    params(("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "1 to 200; 50 when absent."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the page before.")),
    responses(
        (status = 200, description = "A page of locations.", body = Page<Location>),
        (status = 422, description = "`validation_failed`: a query parameter out of range (with `details`).", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn list(
    State(app): State<AppState>,
    _user: User,
    _: Consistent,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<Page<Location>>, ApiError> {
    let limit = pagination::limit(query.limit)?;
    let after: Option<Uuid> = pagination::decode(query.cursor.as_deref())?;
    let rows = sqlx::query_as!(
        LocationRow,
        "SELECT id, name, address, country, halls, created_at, updated_at, last_sequence
           FROM location_view WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
        after,
        limit + 1
    )
    .fetch_all(&app.read)
    .await?;
    Ok(Json(pagination::page(rows, limit, |r| r.id, render)))
}

/// One location (any user).
#[utoipa::path(get, path = "/v1/locations/{id}", tag = "locations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The location.")),
    responses(
        (status = 200, description = "The location.", body = Location),
        (status = 404, description = "No such location.", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn one(
    State(app): State<AppState>,
    _user: User,
    _: Consistent,
    PathId(id): PathId,
) -> Result<Json<Location>, ApiError> {
    let row = sqlx::query_as!(
        LocationRow,
        "SELECT id, name, address, country, halls, created_at, updated_at, last_sequence
           FROM location_view WHERE id = $1",
        id
    )
    .fetch_optional(&app.read)
    .await?;
    row.map(|r| Json(render(&r)))
        .ok_or_else(|| ApiError::not_found("no such location"))
}
