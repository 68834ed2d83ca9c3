//! `GET /v1/bookings/{id}` (the owner or an admin) and `GET /v1/users/me/bookings`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use domain::booking::BookingStatus;
use platform::auth::User;
use platform::http::{ApiError, PathId, QueryParams};
use read_model::views::{BookingRow, StoredName};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::time;
use crate::app::AppState;
use crate::consistency::{booking_owner, Consistent, Requested};
use crate::contacts;
use crate::contract::{Booking, Page};
use crate::pagination;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/bookings/{id}", get(one))
        .route("/v1/users/me/bookings", get(mine))
}

/// A booking as the API shows it, its contact as [`contacts`] opened it.
fn render(row: &BookingRow, contact: Value) -> Booking {
    Booking {
        id: row.id,
        event_id: row.event_id,
        user_id: row.user_id.clone(),
        seats: row.seats,
        amount_cents: row.amount_cents,
        currency: row.currency.clone(),
        status: row.status.as_str().to_owned(),
        reason: row.reason.clone(),
        refunded: row.refunded,
        history: row.history.clone(),
        contact,
        created_at: time(row.created_at),
        updated_at: time(row.updated_at),
    }
}

/// Someone else's booking is answered exactly like an unknown one (404, same body),
/// and that is decided before any consistency wait: neither the answer nor how long
/// it takes tells whether another user's booking exists or moved on.
/// One booking (its owner or an admin). Another customer's booking is answered as an
/// unknown one.
#[utoipa::path(get, path = "/v1/bookings/{id}", tag = "bookings", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The booking.")),
    responses(
        (status = 200, description = "The booking.", body = Booking),
        (status = 404, description = "No such booking (or another customer's).", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn one(
    State(app): State<AppState>,
    user: User,
    consistency: Requested,
    PathId(id): PathId,
) -> Result<Json<Booking>, ApiError> {
    let unknown = || ApiError::not_found("no such booking");
    let mut row = fetch(&app, id).await?;
    if !user.is_admin() {
        // The read model knows the owner of a booking it has; the event store, of
        // one it does not have yet.
        let owner = match &row {
            Some(row) => Some(row.user_id.clone()),
            None => booking_owner(&app, id).await?,
        };
        if owner.as_deref() != Some(user.id.as_str()) {
            return Err(unknown());
        }
    }
    if consistency.is_asked() {
        consistency.wait(&app, &user).await?;
        row = fetch(&app, id).await?;
    }
    let row = row.ok_or_else(unknown)?;
    let mut contacts = contacts::open_all(&app, &[stored(&row)]).await?;
    let contact = contacts.remove(&row.id).unwrap_or(Value::Null);
    Ok(Json(render(&row, contact)))
}

fn stored(row: &BookingRow) -> contacts::Stored<'_> {
    contacts::Stored {
        booking_id: row.id,
        user_id: &row.user_id,
        sealed: row.contact.as_ref(),
    }
}

async fn fetch(app: &AppState, id: Uuid) -> Result<Option<BookingRow>, ApiError> {
    sqlx::query_as!(
        BookingRow,
        r#"SELECT id, event_id, user_id, seats, amount_cents, currency,
                  status AS "status: StoredName<BookingStatus>", reason, refunded, history,
                  contact, created_at, updated_at, last_sequence
             FROM booking_view WHERE id = $1"#,
        id
    )
    .fetch_optional(&app.read)
    .await
    .map_err(ApiError::unexpected)
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

/// The caller's bookings, newest first.
#[utoipa::path(get, path = "/v1/users/me/bookings", tag = "bookings", security(("bearer" = [])),
    params(("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "1 to 200; 50 when absent."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the page before.")),
    responses(
        (status = 200, description = "A page of the caller's bookings.", body = Page<Booking>),
        (status = 422, description = "`validation_failed`: a query parameter out of range (with `details`).", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn mine(
    State(app): State<AppState>,
    user: User,
    _: Consistent,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<Page<Booking>>, ApiError> {
    let limit = pagination::limit(query.limit)?;
    let before: Option<Uuid> = pagination::decode(query.cursor.as_deref())?;
    let rows = sqlx::query_as!(
        BookingRow,
        r#"SELECT id, event_id, user_id, seats, amount_cents, currency,
                  status AS "status: StoredName<BookingStatus>", reason, refunded, history,
                  contact, created_at, updated_at, last_sequence
             FROM booking_view
            WHERE user_id = $1 AND ($2::uuid IS NULL OR id < $2)
            ORDER BY id DESC LIMIT $3"#,
        &user.id,
        before,
        limit + 1
    )
    .fetch_all(&app.read)
    .await?;
    let stored: Vec<contacts::Stored<'_>> = rows.iter().map(stored).collect();
    let contacts = contacts::open_all(&app, &stored).await?;
    Ok(Json(pagination::page(
        rows,
        limit,
        |r| r.id,
        |r| render(r, contacts.get(&r.id).cloned().unwrap_or(Value::Null)),
    )))
}
