//! The booking saga's decisions, as a pure function: given the step a booking's saga is
//! at and what the runner observed when it carried that step out, the next step.
//!
//! ```text
//! Reserve ──held──▶ Authorize ──authorized──▶ Confirm ──confirmed──▶ Done(confirmed)
//!    │                 │  ├─declined─────────────┐        │
//!    │                 │  ├─deadline passed──────┤        │ seats or booking gone
//!    │ refused         │  └─gateway unavailable: │        │ (event cancelled)
//!    │ (sold out,      │     same step, later    ▼        ▼
//!    │  cancelled)     └─booking closed──▶ Release(reason) ──compensated──▶ Done(rejected)
//!    └──────────────────────────────────────────▲
//! (a confirmed booking cancelled) ─────▶ Refund ──compensated──▶ Done(cancelled)
//! ```
//!
//! Every step is idempotent where it acts (the seat ledger and the booking ignore a
//! command that already happened; the payment gateway is called with the booking as its
//! idempotency key), so a runner that crashes mid-step simply runs the step again.
//! Confirm captures the authorized payment once the booking is confirmed (the user
//! learns first; an unreachable gateway only delays the capture). Release gives back
//! held or sold seats and voids any authorization ([`voids_payment`] says when there
//! can be one); Refund gives back sold seats and refunds the payment. The runner lives
//! in command-api.

use serde::{Deserialize, Serialize};

use crate::booking::{BookingStatus, Reason};
use crate::event::RefusalReason;

/// Where a booking's saga is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Ask the event to hold the seats.
    Reserve,
    /// Seats are held until the deadline: have the payment authorized.
    Authorize,
    /// Payment authorized: sell the held seats, confirm the booking, capture the
    /// payment.
    Confirm,
    /// Compensate a booking that will not happen: release seats, void payment, reject.
    Release {
        /// Why the booking is rejected.
        reason: Reason,
    },
    /// Compensate a confirmed booking that was cancelled: release seats, refund.
    Refund,
    /// Nothing left to do.
    Done {
        /// How the booking ended.
        outcome: BookingStatus,
    },
}

impl Step {
    /// A stable name, for storage and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Reserve => "reserve",
            Self::Authorize => "authorize",
            Self::Confirm => "confirm",
            Self::Release { .. } => "release",
            Self::Refund => "refund",
            Self::Done { .. } => "done",
        }
    }

    /// Whether this step compensates (undoes what was done).
    pub fn compensates(self) -> bool {
        matches!(self, Self::Release { .. } | Self::Refund)
    }
}

/// What the runner saw when it carried out a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// The event holds the booking's seats.
    SeatsHeld,
    /// The event refused the seats.
    SeatsRefused(RefusalReason),
    /// The booking is no longer pending: someone else (an event cancellation) closed it.
    BookingClosed,
    /// The gateway authorized the payment.
    PaymentAuthorized,
    /// The gateway declined the payment.
    PaymentDeclined,
    /// The gateway did not answer (unreachable, or too slow).
    GatewayUnavailable,
    /// The hold's deadline passed before the payment was settled.
    DeadlinePassed,
    /// The held seats were released meanwhile (an event cancellation).
    SeatsGone,
    /// Seats sold, booking confirmed.
    Confirmed,
    /// Seats given back and money returned (or never taken); the booking closed.
    Compensated,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Carry on with this step.
    Go(Step),
    /// Try the same step again later (with back-off).
    Retry,
}

/// The saga's next move after `observation` at `step`.
pub fn decide(step: Step, observation: Observation) -> Decision {
    use Decision::{Go, Retry};
    use Observation as O;
    let release = |reason| Go(Step::Release { reason });
    match (step, observation) {
        (_, O::GatewayUnavailable) => Retry,
        (Step::Reserve, O::SeatsHeld) => Go(Step::Authorize),
        (Step::Reserve, O::SeatsRefused(RefusalReason::SoldOut)) => release(Reason::SoldOut),
        (Step::Reserve, O::SeatsRefused(RefusalReason::EventCancelled)) => {
            release(Reason::EventCancelled)
        }
        (Step::Authorize, O::PaymentAuthorized) => Go(Step::Confirm),
        (Step::Authorize, O::PaymentDeclined) => release(Reason::PaymentDeclined),
        (Step::Authorize, O::DeadlinePassed) => release(Reason::HoldExpired),
        (Step::Reserve | Step::Authorize | Step::Confirm, O::BookingClosed | O::SeatsGone) => {
            release(Reason::EventCancelled)
        }
        (Step::Confirm, O::Confirmed) => Go(Step::Done {
            outcome: BookingStatus::Confirmed,
        }),
        (Step::Release { .. }, O::Compensated) => Go(Step::Done {
            outcome: BookingStatus::Rejected,
        }),
        (Step::Refund, O::Compensated) => Go(Step::Done {
            outcome: BookingStatus::Cancelled,
        }),
        // Nothing else can be seen at these steps; running the step again is safe.
        _ => Retry,
    }
}

/// Whether a booking released for `reason` may have an authorization to void. One
/// refused its seats never reached the payment, and a declined card left nothing
/// authorized (the gateway answers a booking the same way every time it is asked); any
/// other release may follow an authorization, seen or not (the answer lost to a
/// timeout), so it voids, which is harmless when there is nothing to void. Not voiding
/// where nothing can be held means such a saga never waits for an unreachable gateway.
pub fn voids_payment(reason: Reason) -> bool {
    !matches!(reason, Reason::SoldOut | Reason::PaymentDeclined)
}

/// Whether a booking of `amount_cents` is paid through the gateway at all. A free
/// booking (an event with free entry) is confirmed without a payment, and has none to
/// void or refund.
pub fn charges(amount_cents: i64) -> bool {
    amount_cents > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use Observation as O;

    fn given(step: Step) -> impl Fn(Observation) -> Decision {
        move |observation| decide(step, observation)
    }

    #[test]
    fn a_booking_goes_from_reservation_through_payment_to_confirmation() {
        assert_eq!(
            given(Step::Reserve)(O::SeatsHeld),
            Decision::Go(Step::Authorize)
        );
        assert_eq!(
            given(Step::Authorize)(O::PaymentAuthorized),
            Decision::Go(Step::Confirm)
        );
        assert_eq!(
            given(Step::Confirm)(O::Confirmed),
            Decision::Go(Step::Done {
                outcome: BookingStatus::Confirmed
            })
        );
    }

    #[test]
    fn sold_out_seats_reject_the_booking() {
        assert_eq!(
            given(Step::Reserve)(O::SeatsRefused(RefusalReason::SoldOut)),
            Decision::Go(Step::Release {
                reason: Reason::SoldOut
            })
        );
    }

    #[test]
    fn a_cancelled_event_rejects_the_booking_wherever_it_is() {
        let release = Decision::Go(Step::Release {
            reason: Reason::EventCancelled,
        });
        assert_eq!(
            given(Step::Reserve)(O::SeatsRefused(RefusalReason::EventCancelled)),
            release
        );
        assert_eq!(given(Step::Reserve)(O::BookingClosed), release);
        assert_eq!(given(Step::Authorize)(O::BookingClosed), release);
        assert_eq!(given(Step::Confirm)(O::SeatsGone), release);
        assert_eq!(given(Step::Confirm)(O::BookingClosed), release);
    }

    #[test]
    fn a_declined_payment_releases_the_hold() {
        assert_eq!(
            given(Step::Authorize)(O::PaymentDeclined),
            Decision::Go(Step::Release {
                reason: Reason::PaymentDeclined
            })
        );
    }

    #[test]
    fn a_passed_deadline_releases_the_hold() {
        assert_eq!(
            given(Step::Authorize)(O::DeadlinePassed),
            Decision::Go(Step::Release {
                reason: Reason::HoldExpired
            })
        );
    }

    #[test]
    fn an_unavailable_gateway_is_tried_again_at_every_step() {
        for step in [
            Step::Authorize,
            Step::Release {
                reason: Reason::PaymentDeclined,
            },
            Step::Refund,
        ] {
            assert_eq!(given(step)(O::GatewayUnavailable), Decision::Retry);
        }
    }

    #[test]
    fn compensations_end_the_saga() {
        assert_eq!(
            given(Step::Release {
                reason: Reason::HoldExpired
            })(O::Compensated),
            Decision::Go(Step::Done {
                outcome: BookingStatus::Rejected
            })
        );
        assert_eq!(
            given(Step::Refund)(O::Compensated),
            Decision::Go(Step::Done {
                outcome: BookingStatus::Cancelled
            })
        );
        assert!(Step::Refund.compensates());
        assert!(!Step::Confirm.compensates());
    }

    #[test]
    fn a_release_voids_only_where_an_authorization_can_exist() {
        // Refused seats never reached the payment; a declined card holds nothing.
        assert!(!voids_payment(Reason::SoldOut));
        assert!(!voids_payment(Reason::PaymentDeclined));
        // An expired hold may follow an authorization whose answer was lost, and an
        // event cancellation can come after the payment was authorized.
        assert!(voids_payment(Reason::HoldExpired));
        assert!(voids_payment(Reason::EventCancelled));
    }

    #[test]
    fn only_a_booking_that_costs_something_is_paid() {
        assert!(charges(1));
        assert!(!charges(0));
    }

    #[test]
    fn an_observation_a_step_cannot_make_runs_the_step_again() {
        assert_eq!(given(Step::Reserve)(O::PaymentAuthorized), Decision::Retry);
        assert_eq!(given(Step::Refund)(O::SeatsHeld), Decision::Retry);
    }

    #[test]
    fn steps_are_stored_by_name_and_reason() {
        let step = Step::Release {
            reason: Reason::HoldExpired,
        };
        let stored = serde_json::to_value(step).unwrap();
        assert_eq!(
            stored,
            serde_json::json!({"step": "release", "reason": "hold_expired"})
        );
        assert_eq!(serde_json::from_value::<Step>(stored).unwrap(), step);
        assert_eq!(step.name(), "release");
    }
}
