//! `POST /v1/events` and `POST /v1/events/{id}/cancel` (admin).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, Utc};
use domain::event::{EventCommand, ScheduleEvent, Venue};
use domain::values::{Capacity, Currency, Name, PriceCents, Problems};
use platform::auth::Admin;
use platform::http::{ApiError, JsonBody, PathId};
use serde::Deserialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::commands::{submit, RequestContext, Submission};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/events", post(schedule_event))
        .route("/v1/events/{id}/cancel", post(cancel_event))
}

/// A new event.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"name": "Jazz night", "location_id": "0193b3c4-8f5e-7a1c-9d2e-3f4a5b6c7d8e",
                          "hall": "Main", "starts_at": "2030-05-01T20:00:00Z", "ends_at": "2030-05-01T23:00:00Z",
                          "price_cents": 2500, "currency": "EUR"}))]
pub(crate) struct ScheduleEventDto {
    /// 1 to 200 characters.
    #[schema(value_type = crate::openapi::Text)]
    name: String,
    /// A location's id.
    #[schema(format = Uuid)]
    location_id: String,
    /// One of the location's halls.
    #[schema(value_type = crate::openapi::Text)]
    hall: String,
    /// RFC 3339, in the future.
    #[schema(format = DateTime)]
    starts_at: String,
    /// RFC 3339, after `starts_at`.
    #[schema(format = DateTime)]
    ends_at: String,
    /// 0 to 1 000 000 000, in minor units.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    price_cents: i64,
    /// ISO 4217, such as `EUR`.
    #[schema(pattern = "^[A-Z]{3}$")]
    currency: String,
    /// At most the hall's; the hall's when absent.
    #[schema(minimum = 1, maximum = 1_000_000)]
    capacity: Option<i64>,
}

/// An RFC 3339 time, in UTC.
fn parse_time(raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| "must be an RFC 3339 time, such as 2030-05-01T20:00:00Z".to_owned())
}

fn parse_uuid(raw: &str) -> Result<Uuid, String> {
    Uuid::parse_str(raw).map_err(|_| "must be a UUID".to_owned())
}

/// The schedule request, checked field by field; the venue is looked up afterwards.
struct Parsed {
    name: Name,
    location_id: Uuid,
    hall: Name,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    price_cents: PriceCents,
    currency: Currency,
    capacity: Option<Capacity>,
}

impl TryFrom<ScheduleEventDto> for Parsed {
    type Error = ApiError;

    fn try_from(dto: ScheduleEventDto) -> Result<Self, ApiError> {
        let mut p = Problems::default();
        let name = p.check("name", Name::parse(&dto.name));
        let location_id = p.check("location_id", parse_uuid(&dto.location_id));
        let hall = p.check("hall", Name::parse(&dto.hall));
        let starts_at = p.check("starts_at", parse_time(&dto.starts_at));
        let ends_at = p.check("ends_at", parse_time(&dto.ends_at));
        let price_cents = p.check("price_cents", PriceCents::parse(dto.price_cents));
        let currency = p.check("currency", Currency::parse(&dto.currency));
        let capacity = dto
            .capacity
            .map(|c| p.check("capacity", Capacity::parse(c)));
        p.finish().map_err(ApiError::validation)?;
        let missing = || ApiError::unexpected("validation passed with a missing field");
        Ok(Self {
            name: name.ok_or_else(missing)?,
            location_id: location_id.ok_or_else(missing)?,
            hall: hall.ok_or_else(missing)?,
            starts_at: starts_at.ok_or_else(missing)?,
            ends_at: ends_at.ok_or_else(missing)?,
            price_cents: price_cents.ok_or_else(missing)?,
            currency: currency.ok_or_else(missing)?,
            capacity: capacity.map(|c| c.ok_or_else(missing)).transpose()?,
        })
    }
}

/// Schedule an event in a hall (admin).
#[utoipa::path(post, path = "/v1/events", tag = "events", security(("bearer" = [])),
    request_body = ScheduleEventDto,
    responses(
        (status = 201, description = "Scheduled.", body = crate::commands::Accepted,
         headers(("X-Consistency-Token" = String, description = "As `consistency_token`."))),
        (status = 403, description = "Not an admin.", body = platform::openapi::ErrorBody),
        (status = 422, description = "`validation_failed` (with `details`), `unknown_location`, `unknown_hall`, `capacity_exceeds_hall`, `ends_before_start`, `starts_in_past`, `idempotency_key_reused`.", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn schedule_event(
    State(app): State<AppState>,
    Admin(user): Admin,
    context: RequestContext,
    body: JsonBody<ScheduleEventDto>,
) -> Result<Response, ApiError> {
    let parsed = Parsed::try_from(body.value)?;
    let location_id = parsed.location_id;
    // Halls are never removed or resized, so what is read here still holds when the
    // event is appended.
    let venue = app
        .locations
        .read(&location_id.to_string(), |location, _| {
            Some(Venue {
                location_id,
                name: location.name()?.clone(),
                halls: location.halls().to_vec(),
            })
        })
        .await
        .map_err(crate::commands::store_failure)?;
    let command = EventCommand::ScheduleEvent(ScheduleEvent {
        name: parsed.name,
        venue,
        hall: parsed.hall,
        capacity: parsed.capacity,
        starts_at: parsed.starts_at,
        ends_at: parsed.ends_at,
        price_cents: parsed.price_cents,
        currency: parsed.currency,
        now: Utc::now(),
    });
    let submission = Submission {
        name: "schedule_event",
        user: &user,
        context: &context,
        fingerprint: &body.fingerprint,
        accepted: StatusCode::CREATED,
        status: None,
        creates: true,
    };
    Ok(submit(&app, &app.events, submission, Uuid::now_v7(), command).await)
}

/// An event's cancellation.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"reason": "the artist is ill"}))]
pub(crate) struct CancelEventDto {
    /// 1 to 200 characters.
    #[schema(value_type = crate::openapi::Text)]
    reason: String,
}

/// Cancel an event (admin): its bookings are rejected or cancelled and refunded.
#[utoipa::path(post, path = "/v1/events/{id}/cancel", tag = "events", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The event.")),
    request_body = CancelEventDto,
    responses(
        (status = 202, description = "Accepted; the bookings follow.", body = crate::commands::Accepted,
         headers(("X-Consistency-Token" = String, description = "As `consistency_token`."))),
        (status = 403, description = "Not an admin.", body = platform::openapi::ErrorBody),
        (status = 404, description = "No such event.", body = platform::openapi::ErrorBody),
        (status = 409, description = "`already_cancelled`, `event_ended`, `concurrency_conflict`.", body = platform::openapi::ErrorBody),
        (status = 422, description = "`validation_failed`, `idempotency_key_reused`.", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn cancel_event(
    State(app): State<AppState>,
    Admin(user): Admin,
    context: RequestContext,
    PathId(event_id): PathId,
    body: JsonBody<CancelEventDto>,
) -> Result<Response, ApiError> {
    let mut problems = Problems::default();
    let reason = problems.check("reason", Name::parse(&body.value.reason));
    problems.finish().map_err(ApiError::validation)?;
    let reason =
        reason.ok_or_else(|| ApiError::unexpected("validation passed with a missing field"))?;
    let command = EventCommand::CancelEvent {
        reason,
        now: Utc::now(),
    };
    let submission = Submission {
        name: "cancel_event",
        user: &user,
        context: &context,
        fingerprint: &body.fingerprint,
        accepted: StatusCode::ACCEPTED,
        status: None,
        creates: false,
    };
    Ok(submit(&app, &app.events, submission, event_id, command).await)
}
