//! `POST /v1/events/{id}/bookings` (any user) and `POST /v1/bookings/{id}/cancel`
//! (the owner or an admin, before the event starts: 409 `event_started` after).
//!
//! A booking is recorded `pending`; the saga moves it on.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use domain::booking::{
    self, Booking, BookingCommand, EventSummary, Holds, RequestBooking, Requester,
};
use domain::personal::Contact;
use domain::values::{CardToken, Problems, Seats};
use platform::auth::User;
use platform::http::{ApiError, ErrorCode, JsonBody, PathId};
use platform::personal;
use serde::Deserialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::commands::{replayed, submit, RequestContext, Submission};
use crate::payment::GatewayError;

/// How old the event a booking request looks at may be.
const EVENT_MAX_AGE: Duration = Duration::from_secs(1);

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/events/{id}/bookings", post(request_booking))
        .route("/v1/bookings/{id}/cancel", post(cancel_booking))
}

/// A booking request.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"seats": 2, "card_token": "tok_visa"}))]
pub(crate) struct RequestBookingDto {
    /// 1 to 10.
    #[schema(minimum = 1, maximum = 10)]
    seats: i64,
    /// The card, as the payment provider's token (1 to 200 visible ASCII
    /// characters); exchanged with the gateway, never stored here.
    #[schema(pattern = "^[\\x21-\\x7e]{1,200}$")]
    card_token: String,
}

/// Book seats of an event (any user): recorded `pending`, the saga reserves the seats
/// and takes the payment.
#[utoipa::path(post, path = "/v1/events/{id}/bookings", tag = "bookings", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The event.")),
    request_body = RequestBookingDto,
    responses(
        (status = 202, description = "Accepted, `pending`.", body = crate::commands::Accepted,
         headers(("X-Consistency-Token" = String, description = "As `consistency_token`."))),
        (status = 404, description = "No such event.", body = platform::openapi::ErrorBody),
        (status = 409, description = "`event_cancelled`, `event_started`, `too_many_held_seats`, `concurrency_conflict`. (Sold out is not refused here: the booking is rejected `sold_out` by the saga.)", body = platform::openapi::ErrorBody),
        (status = 422, description = "`validation_failed` (also a card token the provider does not accept), `idempotency_key_reused`.", body = platform::openapi::ErrorBody),
        (status = 503, description = "`payment_unavailable`: the payment provider cannot be reached (nothing recorded); also the common 503s.", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn request_booking(
    State(app): State<AppState>,
    user: User,
    context: RequestContext,
    PathId(event_id): PathId,
    body: JsonBody<RequestBookingDto>,
) -> Result<Response, ApiError> {
    let mut problems = Problems::default();
    let seats = problems.check("seats", Seats::parse(body.value.seats));
    let card_token = problems.check("card_token", CardToken::parse(&body.value.card_token));
    problems.finish().map_err(ApiError::validation)?;
    let (Some(seats), Some(card_token)) = (seats, card_token) else {
        return Err(ApiError::unexpected(
            "validation passed with a missing field",
        ));
    };
    // What a booking needs of its event hardly changes: start, price and currency never
    // do, and a booking accepted just after a cancellation made elsewhere is rejected
    // by the saga (`event_cancelled`). So the event may be up to a second old here,
    // which saves a round trip per booking on a busy event.
    let event = app
        .events
        .read_recent(&event_id.to_string(), EVENT_MAX_AGE, |event, _| {
            event.details().map(|details| EventSummary {
                event_id,
                cancelled: event.is_cancelled(),
                starts_at: details.starts_at,
                price_cents: details.price_cents.get(),
                currency: details.currency.clone(),
            })
        })
        .await
        .map_err(crate::commands::store_failure)?;
    let submission = Submission {
        name: "request_booking",
        user: &user,
        context: &context,
        fingerprint: &body.fingerprint,
        accepted: StatusCode::ACCEPTED,
        status: Some("pending"),
        creates: true,
    };
    // A retry gets its first answer before anything is asked of the gateway again.
    if let Some(first) = replayed::<Booking>(&app, &submission).await? {
        return Ok(first);
    }
    let booking_id = Uuid::now_v7();
    let now = Utc::now();
    // A fair sale: the seats this customer already holds of the event count against
    // the cap (admins have none). Two requests of one customer at the same instant may
    // both pass; the rate limit bounds how far that goes.
    let holds = match app.max_held_seats {
        Some(max) if !user.is_admin() && event.is_some() => Holds {
            held: crate::fairness::held_seats(&app, event_id, &user.id).await?,
            max: Some(max),
        },
        _ => Holds::default(),
    };
    // The card token goes to the payment gateway and nowhere else: it is exchanged for
    // a payment method, which the booking keeps instead. Not for a request the domain
    // will refuse anyway (unknown, cancelled or started event, too many seats held).
    let bookable = booking::refusal(event.as_ref(), seats.get(), holds, now).is_none();
    let payment_method = if bookable {
        tokenize(&app, &card_token, &booking_id.to_string(), &context).await?
    } else {
        String::new()
    };
    // The contact data of the token, sealed under the user's key: the store, the topic
    // and the read models only ever hold the sealed form.
    let contact = match Contact::from_claims(user.name.clone(), user.email.clone()) {
        Some(contact) if bookable => {
            let key = personal::current_key(&app.pool, &user.id).await?;
            let bound = personal::associated_data(&booking_id.to_string(), &user.id);
            Some(personal::seal(&key, &bound, &contact))
        }
        _ => None,
    };
    let command = BookingCommand::RequestBooking(RequestBooking {
        event,
        user_id: user.id.clone(),
        seats,
        payment_method,
        contact,
        now,
        holds,
    });
    Ok(submit(&app, &app.bookings, submission, booking_id, command).await)
}

/// The gateway's payment method for `card_token`, asked under the booking's id.
async fn tokenize(
    app: &AppState,
    card_token: &CardToken,
    booking_id: &str,
    context: &RequestContext,
) -> Result<String, ApiError> {
    let budget = app.gateway.call_budget();
    match app
        .gateway
        .tokenize(card_token.as_str(), booking_id, budget)
        .await
    {
        Ok(payment_method) => Ok(payment_method),
        Err(GatewayError::Unavailable(cause)) => {
            tracing::warn!(correlation_id = %context.correlation_id, %cause, "cannot reach the payment gateway for a booking");
            Err(ApiError::unavailable(
                ErrorCode::PaymentUnavailable,
                "payments cannot be taken right now; try again shortly",
                1,
            ))
        }
        Err(GatewayError::Refused {
            status: 400 | 422, ..
        }) => Err(ApiError::validation(
            serde_json::json!([{"field": "card_token", "message": "the payment provider does not accept this card token"}]),
        )),
        Err(refused) => {
            // Not the client's fault (our key, our URL): logged, and told as an outage.
            tracing::error!(correlation_id = %context.correlation_id, cause = %refused, "the payment gateway refused to tokenize a card");
            Err(ApiError::unavailable(
                ErrorCode::PaymentUnavailable,
                "payments cannot be taken right now; try again shortly",
                5,
            ))
        }
    }
}

/// Cancel a confirmed booking before its event starts (its owner or an admin); the
/// payment is refunded.
#[utoipa::path(post, path = "/v1/bookings/{id}/cancel", tag = "bookings", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The booking.")),
    request_body = platform::http::EmptyBody,
    responses(
        (status = 202, description = "Accepted; the refund follows.", body = crate::commands::Accepted,
         headers(("X-Consistency-Token" = String, description = "As `consistency_token`."))),
        (status = 404, description = "No such booking (or another customer's).", body = platform::openapi::ErrorBody),
        (status = 409, description = "`booking_not_confirmed`, `already_cancelled`, `event_started`, `concurrency_conflict`.", body = platform::openapi::ErrorBody),
        (status = 422, description = "`idempotency_key_reused`.", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn cancel_booking(
    State(app): State<AppState>,
    user: User,
    context: RequestContext,
    PathId(booking_id): PathId,
    body: JsonBody<platform::http::EmptyBody>,
) -> Result<Response, ApiError> {
    let JsonBody {
        value: _,
        fingerprint,
    } = body;
    // When the booking's event starts: a booking never changes its event and an event
    // never moves, so what this process saw in the last second will do.
    let event_id = app
        .bookings
        .read_recent(&booking_id.to_string(), EVENT_MAX_AGE, |booking, _| {
            booking.state().map(|state| state.event_id)
        })
        .await
        .map_err(crate::commands::store_failure)?;
    let event_starts_at = match event_id {
        Some(event_id) => app
            .events
            .read_recent(&event_id.to_string(), EVENT_MAX_AGE, |event, _| {
                event.details().map(|details| details.starts_at)
            })
            .await
            .map_err(crate::commands::store_failure)?,
        None => None,
    };
    let command = BookingCommand::CancelBooking {
        by: Requester {
            user_id: user.id.clone(),
            is_admin: user.is_admin(),
        },
        event_starts_at,
        now: Utc::now(),
    };
    let submission = Submission {
        name: "cancel_booking",
        user: &user,
        context: &context,
        fingerprint: &fingerprint,
        accepted: StatusCode::ACCEPTED,
        status: None,
        creates: false,
    };
    Ok(submit(&app, &app.bookings, submission, booking_id, command).await)
}
