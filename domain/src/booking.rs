//! A booking: a user's request for 1 to 10 seats of an event, and its status machine.
//!
//! ```text
//! pending ──▶ confirmed ──▶ cancelled
//!    └──────▶ rejected
//! ```
//!
//! A rejection or cancellation carries a [`Reason`]. The user of a booking is the one the
//! request came from (the token's subject), never a field of the body. Only the owner or
//! an admin may cancel, and only a confirmed booking. The saga's steps (confirm, reject,
//! refund) are idempotent: repeating one that already happened records nothing.

use chrono::{DateTime, Utc};
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{DomainError, ErrorKind, RefusalCode};
use crate::personal::SealedContact;
use crate::values::{Currency, Seats};
use crate::FACT_VERSION;

/// The version of `BookingRequested` facts written today: 2.0 added `unit_price_cents`;
/// 3.0 replaced the card token with the payment gateway's payment method and added the
/// sealed contact data (see [`crate::upcast`]).
pub const BOOKING_REQUESTED_VERSION: &str = "3.0";

/// Where a booking stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    /// Requested; seats and payment are being arranged.
    Pending,
    /// Seats are sold to the user.
    Confirmed,
    /// The request failed; see the reason.
    Rejected,
    /// A confirmed booking was cancelled; see the reason.
    Cancelled,
}

impl BookingStatus {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
        }
    }
}

impl TryFrom<String> for BookingStatus {
    type Error = crate::values::UnknownName;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        [
            Self::Pending,
            Self::Confirmed,
            Self::Rejected,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
        .ok_or(crate::values::UnknownName(name))
    }
}

/// Why a booking was rejected or cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Not enough seats were left.
    SoldOut,
    /// The payment gateway declined the card.
    PaymentDeclined,
    /// Payment did not answer before the hold's deadline.
    HoldExpired,
    /// The event was cancelled.
    EventCancelled,
    /// The user (or an admin for them) cancelled.
    CancelledByUser,
}

impl Reason {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SoldOut => "sold_out",
            Self::PaymentDeclined => "payment_declined",
            Self::HoldExpired => "hold_expired",
            Self::EventCancelled => "event_cancelled",
            Self::CancelledByUser => "cancelled_by_user",
        }
    }
}

/// What a booking request needs to know about its event, as loaded by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSummary {
    /// The event.
    pub event_id: Uuid,
    /// Whether it was cancelled.
    pub cancelled: bool,
    /// When it starts.
    pub starts_at: DateTime<Utc>,
    /// Price of one seat in minor units.
    pub price_cents: i64,
    /// Currency of the price.
    pub currency: Currency,
}

/// The content of a `RequestBooking` command.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestBooking {
    /// The event, or `None` when there is no such event.
    pub event: Option<EventSummary>,
    /// The user asking (the token's subject).
    pub user_id: String,
    /// How many seats.
    pub seats: Seats,
    /// How to pay: the payment gateway's payment method, which the caller got for the
    /// request's card token (the token itself is never kept).
    pub payment_method: String,
    /// The user's contact data, sealed under their key, when their token had some.
    pub contact: Option<SealedContact>,
    /// The time of the request.
    pub now: DateTime<Utc>,
    /// Seats the user holds on the event now (their pending bookings), and the most
    /// they may hold at once (`None`: no cap).
    pub holds: Holds,
}

/// A user's seat holds on one event, against the cap of a fair sale.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holds {
    /// Seats held now by the user's pending bookings.
    pub held: u32,
    /// The most one user may hold at once; `None` turns the cap off.
    pub max: Option<u32>,
}

/// Why a booking request would be refused, before anything is asked of the payment
/// gateway; `None` when it would be taken. [`Booking`] applies the same rule.
pub fn refusal(
    event: Option<&EventSummary>,
    seats: u32,
    holds: Holds,
    now: DateTime<Utc>,
) -> Option<BookingError> {
    let Some(event) = event else {
        return Some(BookingError::EventNotFound);
    };
    if event.cancelled {
        return Some(BookingError::EventCancelled);
    }
    if event.starts_at <= now {
        return Some(BookingError::EventStarted);
    }
    match holds.max {
        Some(max) if holds.held.saturating_add(seats) > max => {
            Some(BookingError::TooManyHeldSeats {
                held: holds.held,
                max,
            })
        }
        _ => None,
    }
}

/// Who asks for a cancellation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// The token's subject.
    pub user_id: String,
    /// Whether the token has the admin role.
    pub is_admin: bool,
}

/// What can be asked of a booking.
#[derive(Debug, Clone, PartialEq)]
pub enum BookingCommand {
    /// A user asks for seats.
    RequestBooking(RequestBooking),
    /// The seats are sold and paid for.
    ConfirmBooking,
    /// The request failed.
    RejectBooking {
        /// Why.
        reason: Reason,
    },
    /// The owner or an admin cancels a confirmed booking, before its event starts.
    CancelBooking {
        /// Who asks.
        by: Requester,
        /// When the booking's event starts, as loaded by the caller (`None` when the
        /// caller found no event: then there is no booking either).
        event_starts_at: Option<DateTime<Utc>>,
        /// The time of the request.
        now: DateTime<Utc>,
    },
    /// The event was cancelled: a pending booking is rejected, a confirmed one cancelled.
    CancelForEvent,
    /// The payment of a cancelled booking was refunded.
    RecordRefund {
        /// How much went back, in minor units.
        amount_cents: i64,
    },
}

/// What happened to a booking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BookingFact {
    /// A user asked for seats.
    BookingRequested {
        /// The event.
        event_id: Uuid,
        /// The user.
        user_id: String,
        /// How many seats.
        seats: u32,
        /// The price of one seat when the booking was made, in minor units. Since
        /// version 2.0 (see [`crate::upcast`]: version 1.0 facts get it from
        /// `amount_cents / seats`).
        unit_price_cents: i64,
        /// Seats times price, in minor units.
        amount_cents: i64,
        /// Currency of the amount.
        currency: Currency,
        /// How to pay: the payment gateway's payment method (`None` for a request of
        /// before 3.0, whose card token is no longer kept).
        #[serde(default)]
        payment_method: Option<String>,
        /// The user's contact data, sealed under their key (since 3.0).
        #[serde(default)]
        contact: Option<SealedContact>,
    },
    /// The booking is confirmed: seats sold, payment authorized.
    BookingConfirmed,
    /// The request failed.
    BookingRejected {
        /// Why.
        reason: Reason,
    },
    /// A confirmed booking was cancelled.
    BookingCancelled {
        /// Why.
        reason: Reason,
    },
    /// The payment went back to the user.
    BookingRefunded {
        /// How much, in minor units.
        amount_cents: i64,
    },
}

impl DomainEvent for BookingFact {
    fn event_type(&self) -> String {
        match self {
            Self::BookingRequested { .. } => "BookingRequested",
            Self::BookingConfirmed => "BookingConfirmed",
            Self::BookingRejected { .. } => "BookingRejected",
            Self::BookingCancelled { .. } => "BookingCancelled",
            Self::BookingRefunded { .. } => "BookingRefunded",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        match self {
            Self::BookingRequested { .. } => BOOKING_REQUESTED_VERSION,
            _ => FACT_VERSION,
        }
        .to_owned()
    }
}

/// Why a booking refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookingError {
    /// The booking does not exist.
    #[error("booking not found")]
    NotFound,
    /// The booking was already requested.
    #[error("booking already exists")]
    AlreadyExists,
    /// The event asked for does not exist.
    #[error("event not found")]
    EventNotFound,
    /// The event was cancelled.
    #[error("the event is cancelled")]
    EventCancelled,
    /// The event has started.
    #[error("the event has already started")]
    EventStarted,
    /// Someone else's booking. Told exactly like an unknown booking, so that the
    /// answer does not tell whether the id exists.
    #[error("booking not found")]
    NotOwner,
    /// Only a confirmed booking can be cancelled.
    #[error("the booking is {0}, only a confirmed booking can be cancelled")]
    NotConfirmed(&'static str),
    /// The booking was cancelled before.
    #[error("the booking is already cancelled")]
    AlreadyCancelled,
    /// Confirm and reject apply to pending bookings only.
    #[error("the booking is {0}, not pending")]
    NotPending(&'static str),
    /// Only a cancelled booking is refunded.
    #[error("the booking is {0}, not cancelled")]
    NotCancelled(&'static str),
    /// The user would hold more seats of the event at once than one user may.
    #[error("you hold {held} seats of this event in pending bookings; at most {max} at once")]
    TooManyHeldSeats {
        /// Held now.
        held: u32,
        /// The cap.
        max: u32,
    },
}

impl DomainError for BookingError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound | Self::EventNotFound | Self::NotOwner => ErrorKind::NotFound,
            Self::AlreadyExists
            | Self::EventCancelled
            | Self::EventStarted
            | Self::NotConfirmed(_)
            | Self::AlreadyCancelled
            | Self::NotPending(_)
            | Self::NotCancelled(_)
            | Self::TooManyHeldSeats { .. } => ErrorKind::Conflict,
        }
    }

    fn code(&self) -> RefusalCode {
        match self {
            Self::NotFound | Self::EventNotFound | Self::NotOwner => RefusalCode::NotFound,
            Self::AlreadyExists => RefusalCode::AlreadyExists,
            Self::EventCancelled => RefusalCode::EventCancelled,
            Self::EventStarted => RefusalCode::EventStarted,
            Self::NotConfirmed(_) => RefusalCode::BookingNotConfirmed,
            Self::AlreadyCancelled => RefusalCode::AlreadyCancelled,
            Self::NotPending(_) => RefusalCode::BookingNotPending,
            Self::NotCancelled(_) => RefusalCode::BookingNotCancelled,
            Self::TooManyHeldSeats { .. } => RefusalCode::TooManyHeldSeats,
        }
    }
}

/// The booking's state once requested.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BookingState {
    /// The event.
    pub event_id: Uuid,
    /// The owner.
    pub user_id: String,
    /// How many seats.
    pub seats: u32,
    /// The price of one seat when it was booked, in minor units.
    pub unit_price_cents: i64,
    /// What it costs, in minor units.
    pub amount_cents: i64,
    /// Currency of the amount.
    pub currency: Currency,
    /// How to pay (the gateway's payment method).
    pub payment_method: Option<String>,
    /// The user's contact data, sealed.
    pub contact: Option<SealedContact>,
    /// Where it stands.
    pub status: BookingStatus,
    /// Why it was rejected or cancelled.
    pub reason: Option<Reason>,
    /// Whether the payment went back.
    pub refunded: bool,
}

/// The booking aggregate.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Booking {
    state: Option<BookingState>,
}

impl Booking {
    /// The booking, or `None` when it was never requested.
    pub fn state(&self) -> Option<&BookingState> {
        self.state.as_ref()
    }
}

impl Aggregate for Booking {
    const TYPE: &'static str = "booking";
    type Command = BookingCommand;
    type Event = BookingFact;
    type Error = BookingError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for fact in self.decide(command)? {
            sink.write(fact, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, fact: Self::Event) {
        if let BookingFact::BookingRequested {
            event_id,
            user_id,
            seats,
            unit_price_cents,
            amount_cents,
            currency,
            payment_method,
            contact,
        } = fact
        {
            self.state = Some(BookingState {
                event_id,
                user_id,
                seats,
                unit_price_cents,
                amount_cents,
                currency,
                payment_method,
                contact,
                status: BookingStatus::Pending,
                reason: None,
                refunded: false,
            });
            return;
        }
        let Some(state) = &mut self.state else {
            return;
        };
        match fact {
            BookingFact::BookingRequested { .. } => {}
            BookingFact::BookingConfirmed => state.status = BookingStatus::Confirmed,
            BookingFact::BookingRejected { reason } => {
                state.status = BookingStatus::Rejected;
                state.reason = Some(reason);
            }
            BookingFact::BookingCancelled { reason } => {
                state.status = BookingStatus::Cancelled;
                state.reason = Some(reason);
            }
            BookingFact::BookingRefunded { .. } => state.refunded = true,
        }
    }
}

impl Booking {
    /// The decision itself, synchronous and without side effects.
    fn decide(&self, command: BookingCommand) -> Result<Vec<BookingFact>, BookingError> {
        if let BookingCommand::RequestBooking(request) = command {
            return self.request(request).map(|f| vec![f]);
        }
        let state = self.state.as_ref().ok_or(BookingError::NotFound)?;
        let status = state.status;
        match command {
            BookingCommand::RequestBooking(_) => unreachable!("handled above"),
            BookingCommand::ConfirmBooking => match status {
                BookingStatus::Pending => Ok(vec![BookingFact::BookingConfirmed]),
                BookingStatus::Confirmed => Ok(vec![]),
                other => Err(BookingError::NotPending(other.as_str())),
            },
            BookingCommand::RejectBooking { reason } => match status {
                BookingStatus::Pending => Ok(vec![BookingFact::BookingRejected { reason }]),
                BookingStatus::Rejected => Ok(vec![]),
                other => Err(BookingError::NotPending(other.as_str())),
            },
            BookingCommand::CancelBooking {
                by,
                event_starts_at,
                now,
            } => {
                if !by.is_admin && by.user_id != state.user_id {
                    return Err(BookingError::NotOwner);
                }
                match status {
                    // Once the show has begun, the seat was used (or could have been):
                    // no cancellation, no refund. The event's own cancellation still
                    // refunds everyone.
                    BookingStatus::Confirmed if event_starts_at.is_some_and(|at| at <= now) => {
                        Err(BookingError::EventStarted)
                    }
                    BookingStatus::Confirmed => Ok(vec![BookingFact::BookingCancelled {
                        reason: Reason::CancelledByUser,
                    }]),
                    BookingStatus::Cancelled => Err(BookingError::AlreadyCancelled),
                    other => Err(BookingError::NotConfirmed(other.as_str())),
                }
            }
            BookingCommand::CancelForEvent => {
                let reason = Reason::EventCancelled;
                Ok(match status {
                    BookingStatus::Pending => vec![BookingFact::BookingRejected { reason }],
                    BookingStatus::Confirmed => vec![BookingFact::BookingCancelled { reason }],
                    BookingStatus::Rejected | BookingStatus::Cancelled => vec![],
                })
            }
            BookingCommand::RecordRefund { amount_cents } => match status {
                BookingStatus::Cancelled if state.refunded => Ok(vec![]),
                BookingStatus::Cancelled => Ok(vec![BookingFact::BookingRefunded { amount_cents }]),
                other => Err(BookingError::NotCancelled(other.as_str())),
            },
        }
    }

    fn request(&self, request: RequestBooking) -> Result<BookingFact, BookingError> {
        if self.state.is_some() {
            return Err(BookingError::AlreadyExists);
        }
        let seats = request.seats.get();
        if let Some(refused) = refusal(request.event.as_ref(), seats, request.holds, request.now) {
            return Err(refused);
        }
        let event = request.event.ok_or(BookingError::EventNotFound)?;
        Ok(BookingFact::BookingRequested {
            event_id: event.event_id,
            user_id: request.user_id,
            seats,
            unit_price_cents: event.price_cents,
            amount_cents: event.price_cents * i64::from(seats),
            currency: event.currency,
            payment_method: Some(request.payment_method),
            contact: request.contact,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Booking>;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
    }

    fn event_id() -> Uuid {
        Uuid::from_u128(42)
    }

    fn summary() -> EventSummary {
        EventSummary {
            event_id: event_id(),
            cancelled: false,
            starts_at: now() + chrono::Duration::days(1),
            price_cents: 2500,
            currency: Currency::parse("EUR").unwrap(),
        }
    }

    fn request() -> RequestBooking {
        RequestBooking {
            event: Some(summary()),
            user_id: "alice".into(),
            seats: Seats::parse(3).unwrap(),
            payment_method: "pm_1".into(),
            contact: None,
            now: now(),
            holds: Holds::default(),
        }
    }

    fn requested() -> BookingFact {
        BookingFact::BookingRequested {
            event_id: event_id(),
            user_id: "alice".into(),
            seats: 3,
            unit_price_cents: 2500,
            amount_cents: 7500,
            currency: Currency::parse("EUR").unwrap(),
            payment_method: Some("pm_1".into()),
            contact: None,
        }
    }

    fn user(id: &str) -> Requester {
        Requester {
            user_id: id.into(),
            is_admin: false,
        }
    }

    /// A cancellation by `by`, a day before the event starts.
    fn cancel(by: Requester) -> BookingCommand {
        BookingCommand::CancelBooking {
            by,
            event_starts_at: Some(now() + chrono::Duration::days(1)),
            now: now(),
        }
    }

    fn cancelled_by_user() -> BookingFact {
        BookingFact::BookingCancelled {
            reason: Reason::CancelledByUser,
        }
    }

    // Request

    #[test]
    fn a_request_is_recorded_pending_with_its_price() {
        Given::with(())
            .given_no_previous_events()
            .when(BookingCommand::RequestBooking(request()))
            .then_expect_events(vec![requested()]);
    }

    #[test]
    fn a_request_needs_an_existing_event() {
        Given::with(())
            .given_no_previous_events()
            .when(BookingCommand::RequestBooking(RequestBooking {
                event: None,
                ..request()
            }))
            .then_expect_error(BookingError::EventNotFound);
    }

    #[test]
    fn a_cancelled_event_takes_no_booking() {
        Given::with(())
            .given_no_previous_events()
            .when(BookingCommand::RequestBooking(RequestBooking {
                event: Some(EventSummary {
                    cancelled: true,
                    ..summary()
                }),
                ..request()
            }))
            .then_expect_error(BookingError::EventCancelled);
    }

    #[test]
    fn a_user_holds_at_most_the_cap_of_seats_at_once_and_no_cap_means_none() {
        let with = |held, max| RequestBooking {
            holds: Holds { held, max },
            ..request()
        };
        // 3 seats asked for.
        Given::with(())
            .given_no_previous_events()
            .when(BookingCommand::RequestBooking(with(7, Some(10))))
            .then_expect_events(vec![requested()]);
        Given::with(())
            .given_no_previous_events()
            .when(BookingCommand::RequestBooking(with(8, Some(10))))
            .then_expect_error(BookingError::TooManyHeldSeats { held: 8, max: 10 });
        Given::with(())
            .given_no_previous_events()
            .when(BookingCommand::RequestBooking(with(500, None)))
            .then_expect_events(vec![requested()]);
    }

    #[test]
    fn a_started_event_takes_no_booking() {
        Given::with(())
            .given_no_previous_events()
            .when(BookingCommand::RequestBooking(RequestBooking {
                now: now() + chrono::Duration::days(2),
                ..request()
            }))
            .then_expect_error(BookingError::EventStarted);
    }

    #[test]
    fn a_booking_is_requested_once() {
        Given::with(())
            .given(vec![requested()])
            .when(BookingCommand::RequestBooking(request()))
            .then_expect_error(BookingError::AlreadyExists);
    }

    // Saga steps

    #[test]
    fn a_pending_booking_is_confirmed_once() {
        Given::with(())
            .given(vec![requested()])
            .when(BookingCommand::ConfirmBooking)
            .then_expect_events(vec![BookingFact::BookingConfirmed]);
        Given::with(())
            .given(vec![requested(), BookingFact::BookingConfirmed])
            .when(BookingCommand::ConfirmBooking)
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_rejected_booking_cannot_be_confirmed() {
        Given::with(())
            .given(vec![
                requested(),
                BookingFact::BookingRejected {
                    reason: Reason::SoldOut,
                },
            ])
            .when(BookingCommand::ConfirmBooking)
            .then_expect_error(BookingError::NotPending("rejected"));
    }

    #[test]
    fn a_pending_booking_is_rejected_once() {
        let rejected = BookingFact::BookingRejected {
            reason: Reason::PaymentDeclined,
        };
        Given::with(())
            .given(vec![requested()])
            .when(BookingCommand::RejectBooking {
                reason: Reason::PaymentDeclined,
            })
            .then_expect_events(vec![rejected.clone()]);
        Given::with(())
            .given(vec![requested(), rejected])
            .when(BookingCommand::RejectBooking {
                reason: Reason::HoldExpired,
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_confirmed_booking_cannot_be_rejected() {
        Given::with(())
            .given(vec![requested(), BookingFact::BookingConfirmed])
            .when(BookingCommand::RejectBooking {
                reason: Reason::HoldExpired,
            })
            .then_expect_error(BookingError::NotPending("confirmed"));
    }

    #[test]
    fn commands_on_a_missing_booking_are_refused_not_found() {
        for command in [
            BookingCommand::ConfirmBooking,
            BookingCommand::RejectBooking {
                reason: Reason::SoldOut,
            },
            cancel(user("alice")),
            BookingCommand::CancelForEvent,
            BookingCommand::RecordRefund { amount_cents: 1 },
        ] {
            Given::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(BookingError::NotFound);
        }
    }

    // Cancellation by the user

    #[test]
    fn the_owner_cancels_a_confirmed_booking() {
        Given::with(())
            .given(vec![requested(), BookingFact::BookingConfirmed])
            .when(cancel(user("alice")))
            .then_expect_events(vec![cancelled_by_user()]);
    }

    #[test]
    fn an_admin_cancels_anyones_booking() {
        Given::with(())
            .given(vec![requested(), BookingFact::BookingConfirmed])
            .when(cancel(Requester {
                user_id: "root".into(),
                is_admin: true,
            }))
            .then_expect_events(vec![cancelled_by_user()]);
    }

    #[test]
    fn another_user_cannot_cancel() {
        Given::with(())
            .given(vec![requested(), BookingFact::BookingConfirmed])
            .when(cancel(user("mallory")))
            .then_expect_error(BookingError::NotOwner);
    }

    #[test]
    fn only_a_confirmed_booking_can_be_cancelled() {
        Given::with(())
            .given(vec![requested()])
            .when(cancel(user("alice")))
            .then_expect_error(BookingError::NotConfirmed("pending"));
        Given::with(())
            .given(vec![
                requested(),
                BookingFact::BookingRejected {
                    reason: Reason::SoldOut,
                },
            ])
            .when(cancel(user("alice")))
            .then_expect_error(BookingError::NotConfirmed("rejected"));
    }

    #[test]
    fn no_cancellation_once_the_event_has_started() {
        let started = |at: DateTime<Utc>| BookingCommand::CancelBooking {
            by: user("alice"),
            event_starts_at: Some(at),
            now: now(),
        };
        Given::with(())
            .given(vec![requested(), BookingFact::BookingConfirmed])
            .when(started(now()))
            .then_expect_error(BookingError::EventStarted);
        Given::with(())
            .given(vec![requested(), BookingFact::BookingConfirmed])
            .when(started(now() - chrono::Duration::hours(1)))
            .then_expect_error(BookingError::EventStarted);
        // A second before, it still may.
        Given::with(())
            .given(vec![requested(), BookingFact::BookingConfirmed])
            .when(started(now() + chrono::Duration::seconds(1)))
            .then_expect_events(vec![cancelled_by_user()]);
    }

    #[test]
    fn a_booking_is_cancelled_once() {
        Given::with(())
            .given(vec![
                requested(),
                BookingFact::BookingConfirmed,
                cancelled_by_user(),
            ])
            .when(cancel(user("alice")))
            .then_expect_error(BookingError::AlreadyCancelled);
    }

    // Cancellation of the event

    #[test]
    fn an_event_cancellation_rejects_pending_and_cancels_confirmed() {
        let reason = Reason::EventCancelled;
        Given::with(())
            .given(vec![requested()])
            .when(BookingCommand::CancelForEvent)
            .then_expect_events(vec![BookingFact::BookingRejected { reason }]);
        Given::with(())
            .given(vec![requested(), BookingFact::BookingConfirmed])
            .when(BookingCommand::CancelForEvent)
            .then_expect_events(vec![BookingFact::BookingCancelled { reason }]);
        Given::with(())
            .given(vec![
                requested(),
                BookingFact::BookingRejected {
                    reason: Reason::SoldOut,
                },
            ])
            .when(BookingCommand::CancelForEvent)
            .then_expect_events(vec![]);
    }

    // Refunds

    #[test]
    fn a_cancelled_booking_is_refunded_once() {
        let refunded = BookingFact::BookingRefunded { amount_cents: 7500 };
        Given::with(())
            .given(vec![
                requested(),
                BookingFact::BookingConfirmed,
                cancelled_by_user(),
            ])
            .when(BookingCommand::RecordRefund { amount_cents: 7500 })
            .then_expect_events(vec![refunded.clone()]);
        Given::with(())
            .given(vec![
                requested(),
                BookingFact::BookingConfirmed,
                cancelled_by_user(),
                refunded,
            ])
            .when(BookingCommand::RecordRefund { amount_cents: 7500 })
            .then_expect_events(vec![]);
    }

    #[test]
    fn only_a_cancelled_booking_is_refunded() {
        Given::with(())
            .given(vec![requested(), BookingFact::BookingConfirmed])
            .when(BookingCommand::RecordRefund { amount_cents: 7500 })
            .then_expect_error(BookingError::NotCancelled("confirmed"));
    }

    #[test]
    fn the_state_follows_the_facts() {
        let mut booking = Booking::default();
        assert!(booking.state().is_none());
        booking.apply(requested());
        booking.apply(BookingFact::BookingConfirmed);
        booking.apply(cancelled_by_user());
        booking.apply(BookingFact::BookingRefunded { amount_cents: 7500 });
        let state = booking.state().unwrap();
        assert_eq!(state.status, BookingStatus::Cancelled);
        assert_eq!(state.reason, Some(Reason::CancelledByUser));
        assert!(state.refunded);
        assert_eq!(state.user_id, "alice");
    }
}
