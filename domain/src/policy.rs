//! The live saga rules: which stored fact starts or moves which saga, what an erasure
//! destroys, and what record an `Idempotency-Key` leaves. This is the one place they are
//! decided.
//!
//! command-api asks [`reactions`] about every fact it is about to append, and
//! [`key_record`] about every command that carried a key, and writes the answers in the
//! same statement as the facts (see command-api's `append` module): a saga exists if and
//! only if the fact that calls for it was stored, and a key is recorded if and only if
//! its command's facts were. The database holds no policy of its own; its triggers only
//! guard the store (hash chain, append-only, outbox).
//!
//! | fact | reaction |
//! | --- | --- |
//! | `BookingRequested` | the booking's saga starts at `reserve` |
//! | `BookingCancelled` (a confirmed booking, by its owner or with its event) | its saga moves to `refund`, from wherever it is |
//! | `BookingRejected` with `event_cancelled` (a pending booking, with its event) | its saga moves to `release`, unless it is releasing or done already |
//! | `EventCancelled` | the event's cancellation saga starts (it cancels or rejects every booking holding seats) |
//! | `PersonalDataErased` | the user's keys it names are destroyed, in the same transaction |
//! | anything else | none |
//!
//! A move from outside never takes a saga away from the runner that holds it: the
//! runner finishes (or abandons) its step, finds its save refused because the saga
//! moved, and lets go; only then does a runner take up the new step. That is what stops
//! a release from running beside an authorization still in flight.

use serde::Serialize;

use crate::booking::{BookingFact, Reason};
use crate::event::EventFact;
use crate::location::LocationFact;
use crate::metadata::EventMetadata;
use crate::saga::Step;
use crate::user::UserFact;

/// What a stored fact asks of the sagas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    /// A booking's saga starts at [`Step::Reserve`] (nothing happens when it exists).
    StartBookingSaga(NewBookingSaga),
    /// A booking's saga is moved to `to` by a fact from outside it.
    MoveBookingSaga {
        /// The booking.
        booking_id: String,
        /// The step it goes to.
        to: Step,
        /// Steps (by [`Step::name`]) from which it does not move.
        unless_at: &'static [&'static str],
        /// The correlation id of the request that moved it: the saga's further facts
        /// carry it.
        correlation_id: String,
    },
    /// A cancelled event's saga starts (nothing happens when it exists).
    StartEventCancellation {
        /// The event.
        event_id: String,
        /// The correlation id of the cancelling request.
        correlation_id: String,
    },
    /// A user's keys are destroyed: whatever was sealed under them can no longer be
    /// read (crypto-shredding).
    DestroyUserKeys {
        /// The user.
        user_id: String,
        /// The keys.
        keys: Vec<uuid::Uuid>,
    },
}

/// A booking saga as it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewBookingSaga {
    /// The booking.
    pub booking_id: String,
    /// Its event.
    pub event_id: String,
    /// Who booked (their held seats are counted against the per-user cap).
    pub user_id: String,
    /// Seats asked for.
    pub seats: u32,
    /// What the payment is for, in minor units.
    pub amount_cents: i64,
    /// The currency of the amount.
    pub currency: String,
    /// How to pay: the payment gateway's payment method.
    pub payment_method: Option<String>,
    /// The booking request's correlation id.
    pub correlation_id: String,
}

/// The facts of one aggregate type, as the policy reads them.
pub trait Reacts {
    /// What this fact, stored on `aggregate_id` by a request with `correlation_id`, asks
    /// of the sagas.
    fn reactions(&self, aggregate_id: &str, correlation_id: &str) -> Vec<Reaction>;
}

impl Reacts for BookingFact {
    fn reactions(&self, aggregate_id: &str, correlation_id: &str) -> Vec<Reaction> {
        let booking_id = aggregate_id.to_owned();
        let correlation_id = correlation_id.to_owned();
        match self {
            Self::BookingRequested {
                event_id,
                user_id,
                seats,
                amount_cents,
                currency,
                payment_method,
                ..
            } => vec![Reaction::StartBookingSaga(NewBookingSaga {
                booking_id,
                event_id: event_id.to_string(),
                user_id: user_id.clone(),
                seats: *seats,
                amount_cents: *amount_cents,
                currency: currency.as_str().to_owned(),
                payment_method: payment_method.clone(),
                correlation_id,
            })],
            // A confirmed booking was cancelled: give the seats and the money back.
            Self::BookingCancelled { .. } => vec![Reaction::MoveBookingSaga {
                booking_id,
                to: Step::Refund,
                unless_at: &[],
                correlation_id,
            }],
            // A pending booking was rejected with its event: give back whatever it
            // holds. A saga already releasing (or finished) has its own reason.
            Self::BookingRejected {
                reason: Reason::EventCancelled,
            } => vec![Reaction::MoveBookingSaga {
                booking_id,
                to: Step::Release {
                    reason: Reason::EventCancelled,
                },
                unless_at: &["release", "done"],
                correlation_id,
            }],
            Self::BookingRejected { .. }
            | Self::BookingConfirmed
            | Self::BookingRefunded { .. } => vec![],
        }
    }
}

impl Reacts for EventFact {
    fn reactions(&self, aggregate_id: &str, correlation_id: &str) -> Vec<Reaction> {
        match self {
            Self::EventCancelled { .. } => vec![Reaction::StartEventCancellation {
                event_id: aggregate_id.to_owned(),
                correlation_id: correlation_id.to_owned(),
            }],
            _ => vec![],
        }
    }
}

impl Reacts for UserFact {
    fn reactions(&self, _aggregate_id: &str, _correlation_id: &str) -> Vec<Reaction> {
        match self {
            Self::PersonalDataErased { user_id, keys } => vec![Reaction::DestroyUserKeys {
                user_id: user_id.clone(),
                keys: keys.clone(),
            }],
        }
    }
}

impl Reacts for LocationFact {
    fn reactions(&self, _aggregate_id: &str, _correlation_id: &str) -> Vec<Reaction> {
        vec![]
    }
}

/// What an accepted command with an `Idempotency-Key` leaves, so that a retry gets the
/// first answer again: the key, the request it came with, and where its facts went.
/// (Serialized with the column names of `idempotency_keys`.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRecord {
    /// Whose key (keys are per user).
    pub user_id: String,
    /// The key.
    #[serde(rename = "idempotency_key")]
    pub key: String,
    /// The fingerprint of the request that used it first.
    #[serde(rename = "request_fingerprint")]
    pub fingerprint: String,
    /// That request's id.
    pub request_id: String,
    /// The aggregate its facts went to.
    pub aggregate_type: String,
    /// Its id.
    pub aggregate_id: String,
    /// The sequence of the command's last fact.
    pub last_sequence: i64,
}

/// The record a command leaves when it carried an `Idempotency-Key` (in `metadata`) and
/// its facts end at `last_sequence`; `None` for a command without a key.
pub fn key_record(
    metadata: &EventMetadata,
    aggregate_type: &str,
    aggregate_id: &str,
    last_sequence: i64,
) -> Option<KeyRecord> {
    let key = metadata.idempotency_key.as_ref()?;
    let field = |value: &Option<String>| value.clone().unwrap_or_default();
    Some(KeyRecord {
        user_id: field(&metadata.user_id),
        key: key.clone(),
        fingerprint: field(&metadata.request_fingerprint),
        request_id: field(&metadata.causation_id),
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        last_sequence,
    })
}

/// The correlation id a fact's reactions carry: the request's, or the aggregate's id
/// for a fact stored without one.
pub fn correlation_id<'a>(metadata: &'a EventMetadata, aggregate_id: &'a str) -> &'a str {
    metadata.correlation_id.as_deref().unwrap_or(aggregate_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{Currency, Name};

    const BOOKING: &str = "0192e4d2-0000-7000-8000-0000000000b1";
    const EVENT: &str = "0192e4d2-0000-7000-8000-0000000000e1";

    fn given(fact: impl Reacts, aggregate_id: &str) -> Vec<Reaction> {
        fact.reactions(aggregate_id, "corr-1")
    }

    #[test]
    fn a_booking_request_starts_its_saga_with_what_the_payment_needs() {
        let requested = BookingFact::BookingRequested {
            event_id: EVENT.parse().unwrap(),
            user_id: "alice".into(),
            seats: 3,
            unit_price_cents: 2500,
            amount_cents: 7500,
            currency: Currency::parse("EUR").unwrap(),
            payment_method: Some("pm_1".into()),
            contact: None,
        };
        assert_eq!(
            given(requested, BOOKING),
            vec![Reaction::StartBookingSaga(NewBookingSaga {
                booking_id: BOOKING.into(),
                event_id: EVENT.into(),
                user_id: "alice".into(),
                seats: 3,
                amount_cents: 7500,
                currency: "EUR".into(),
                payment_method: Some("pm_1".into()),
                correlation_id: "corr-1".into(),
            })]
        );
    }

    #[test]
    fn a_cancelled_booking_is_refunded_from_wherever_its_saga_is() {
        for reason in [Reason::CancelledByUser, Reason::EventCancelled] {
            assert_eq!(
                given(BookingFact::BookingCancelled { reason }, BOOKING),
                vec![Reaction::MoveBookingSaga {
                    booking_id: BOOKING.into(),
                    to: Step::Refund,
                    unless_at: &[],
                    correlation_id: "corr-1".into(),
                }]
            );
        }
    }

    #[test]
    fn a_booking_rejected_with_its_event_releases_unless_already_releasing_or_done() {
        assert_eq!(
            given(
                BookingFact::BookingRejected {
                    reason: Reason::EventCancelled
                },
                BOOKING
            ),
            vec![Reaction::MoveBookingSaga {
                booking_id: BOOKING.into(),
                to: Step::Release {
                    reason: Reason::EventCancelled
                },
                unless_at: &["release", "done"],
                correlation_id: "corr-1".into(),
            }]
        );
    }

    #[test]
    fn the_sagas_own_facts_move_nothing() {
        // A rejection the saga itself decided (sold out, declined, expired) is already
        // where the saga is going; confirmation and refund are the saga's own steps.
        for fact in [
            BookingFact::BookingRejected {
                reason: Reason::SoldOut,
            },
            BookingFact::BookingRejected {
                reason: Reason::HoldExpired,
            },
            BookingFact::BookingConfirmed,
            BookingFact::BookingRefunded { amount_cents: 100 },
        ] {
            assert_eq!(given(fact, BOOKING), vec![]);
        }
    }

    #[test]
    fn an_event_cancellation_starts_its_saga_and_the_ledger_moves_nothing() {
        assert_eq!(
            given(
                EventFact::EventCancelled {
                    reason: Name::parse("storm").unwrap()
                },
                EVENT
            ),
            vec![Reaction::StartEventCancellation {
                event_id: EVENT.into(),
                correlation_id: "corr-1".into(),
            }]
        );
        let counts = crate::event::SeatCounts {
            capacity: 10,
            held: 0,
            sold: 0,
            available: 10,
        };
        assert_eq!(
            given(
                EventFact::SeatsReleased {
                    booking_id: BOOKING.parse().unwrap(),
                    seats: 1,
                    was: crate::event::ReservationState::Held,
                    counts,
                },
                EVENT
            ),
            vec![]
        );
    }

    #[test]
    fn an_erasure_destroys_the_keys_it_names() {
        let key = uuid::Uuid::from_u128(9);
        assert_eq!(
            given(
                UserFact::PersonalDataErased {
                    user_id: "alice".into(),
                    keys: vec![key]
                },
                "stream"
            ),
            vec![Reaction::DestroyUserKeys {
                user_id: "alice".into(),
                keys: vec![key],
            }]
        );
    }

    #[test]
    fn a_keyed_command_leaves_a_record_of_where_its_facts_went() {
        let metadata = EventMetadata {
            user_id: Some("alice".into()),
            idempotency_key: Some("k-1".into()),
            request_fingerprint: Some("f".into()),
            causation_id: Some("req-9".into()),
            correlation_id: Some("corr-1".into()),
            ..EventMetadata::default()
        };
        assert_eq!(
            key_record(&metadata, "booking", BOOKING, 4),
            Some(KeyRecord {
                user_id: "alice".into(),
                key: "k-1".into(),
                fingerprint: "f".into(),
                request_id: "req-9".into(),
                aggregate_type: "booking".into(),
                aggregate_id: BOOKING.into(),
                last_sequence: 4,
            })
        );
        assert_eq!(correlation_id(&metadata, BOOKING), "corr-1");
    }

    #[test]
    fn a_command_without_a_key_leaves_no_record() {
        let metadata = EventMetadata {
            user_id: Some("alice".into()),
            ..EventMetadata::default()
        };
        assert_eq!(key_record(&metadata, "booking", BOOKING, 1), None);
        // Facts stored without a correlation id carry the aggregate's id instead.
        assert_eq!(correlation_id(&metadata, BOOKING), BOOKING);
    }
}
