//! `GET /v1/events` (filters: `location_id`, `q`, `starts_after`, `starts_before`,
//! `status`) and `GET /v1/events/{id}` (any user).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use platform::auth::User;
use platform::http::{ApiError, PathId, QueryParams};
use read_model::views::{EventRow, EventStatus, StoredName};
use serde::Deserialize;
use uuid::Uuid;

use super::time;
use crate::app::AppState;
use crate::consistency::Consistent;
use crate::contract::{Event, Page};
use crate::pagination::{self, field_error};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/events", get(list))
        .route("/v1/events/{id}", get(one))
}

fn render(row: &EventRow) -> Event {
    Event {
        id: row.id,
        name: row.name.clone(),
        location_id: row.location_id,
        location_name: row.location_name.clone(),
        hall: row.hall.clone(),
        starts_at: time(row.starts_at),
        ends_at: time(row.ends_at),
        price_cents: row.price_cents,
        currency: row.currency.clone(),
        capacity: row.capacity,
        seats_held: row.seats_held,
        seats_sold: row.seats_sold,
        seats_available: row.seats_available,
        status: row.status.as_str().to_owned(),
    }
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    location_id: Option<String>,
    q: Option<String>,
    starts_after: Option<String>,
    starts_before: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

fn parse_time(field: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.map(|raw| {
        DateTime::parse_from_rfc3339(raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| field_error(field, "must be an RFC 3339 time"))
    })
    .transpose()
}

/// `q` as a LIKE pattern matching it anywhere, its wildcards taken literally.
fn contains_pattern(q: &str) -> String {
    let escaped = q
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Events by start time, then id (any user).
#[utoipa::path(get, path = "/v1/events", tag = "events", security(("bearer" = [])),
    params(
        ("location_id" = Option<Uuid>, Query, description = "Only this location's."),
        ("q" = Option<String>, Query, max_length = 200, description = "Name contains (case-insensitive, at most 200 characters)."),
        ("starts_after" = Option<String>, Query, format = DateTime, description = "RFC 3339."),
        ("starts_before" = Option<String>, Query, format = DateTime, description = "RFC 3339."),
        ("status" = Option<String>, Query, pattern = "^(scheduled|cancelled)$", description = "`scheduled` or `cancelled`."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "1 to 200; 50 when absent."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the page before.")),
    responses(
        (status = 200, description = "A page of events.", body = Page<Event>),
        (status = 422, description = "`validation_failed`: a query parameter out of range (with `details`).", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn list(
    State(app): State<AppState>,
    _user: User,
    _: Consistent,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<Page<Event>>, ApiError> {
    let limit = pagination::limit(query.limit)?;
    let location_id = query
        .location_id
        .as_deref()
        .map(|raw| Uuid::parse_str(raw).map_err(|_| field_error("location_id", "must be a UUID")))
        .transpose()?;
    let starts_after = parse_time("starts_after", query.starts_after.as_deref())?;
    let starts_before = parse_time("starts_before", query.starts_before.as_deref())?;
    if let Some(status) = query.status.as_deref() {
        if status != "scheduled" && status != "cancelled" {
            return Err(field_error("status", "must be scheduled or cancelled"));
        }
    }
    let pattern = match query.q.as_deref() {
        Some(q) if q.chars().count() > 200 => {
            return Err(field_error("q", "must be at most 200 characters"))
        }
        Some(q) => Some(contains_pattern(q)),
        None => None,
    };
    let after: Option<(DateTime<Utc>, Uuid)> = pagination::decode(query.cursor.as_deref())?;
    let rows = sqlx::query_as!(
        EventRow,
        r#"SELECT id, name, location_id, location_name, hall, starts_at, ends_at, price_cents,
                  currency, capacity, seats_held, seats_sold, seats_available,
                  status AS "status: StoredName<EventStatus>", created_at, updated_at,
                  last_sequence
             FROM event_view
            WHERE ($1::uuid IS NULL OR location_id = $1)
              AND ($2::text IS NULL OR name ILIKE $2)
              AND ($3::timestamptz IS NULL OR starts_at > $3)
              AND ($4::timestamptz IS NULL OR starts_at < $4)
              AND ($5::text IS NULL OR status = $5)
              AND ($6::timestamptz IS NULL OR (starts_at, id) > ($6, $7))
            ORDER BY starts_at, id
            LIMIT $8"#,
        location_id,
        pattern,
        starts_after,
        starts_before,
        query.status,
        after.map(|(t, _)| t),
        after.map(|(_, id)| id),
        limit + 1
    )
    .fetch_all(&app.read)
    .await?;
    Ok(Json(pagination::page(
        rows,
        limit,
        |r| (r.starts_at, r.id),
        render,
    )))
}

/// One event with its seats (any user).
#[utoipa::path(get, path = "/v1/events/{id}", tag = "events", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The event.")),
    responses(
        (status = 200, description = "The event.", body = Event),
        (status = 404, description = "No such event.", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn one(
    State(app): State<AppState>,
    _user: User,
    _: Consistent,
    PathId(id): PathId,
) -> Result<Json<Event>, ApiError> {
    let row = sqlx::query_as!(
        EventRow,
        r#"SELECT id, name, location_id, location_name, hall, starts_at, ends_at, price_cents,
                  currency, capacity, seats_held, seats_sold, seats_available,
                  status AS "status: StoredName<EventStatus>", created_at, updated_at,
                  last_sequence
             FROM event_view WHERE id = $1"#,
        id
    )
    .fetch_optional(&app.read)
    .await?;
    row.map(|r| Json(render(&r)))
        .ok_or_else(|| ApiError::not_found("no such event"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_takes_wildcards_literally() {
        assert_eq!(contains_pattern("jazz"), "%jazz%");
        assert_eq!(contains_pattern("100%_\\"), "%100\\%\\_\\\\%");
    }
}
