//! What every refusal of the domain has in common: a kind the edge maps to a status
//! code, and a stable snake_case code clients can match on.

/// How a refusal is to be understood by a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The aggregate the command names does not exist (HTTP 404).
    NotFound,
    /// The command is well formed but the current state refuses it (HTTP 409).
    Conflict,
    /// The command contradicts a rule about its own content (HTTP 422).
    Invalid,
    /// The caller may not do this to this aggregate (HTTP 403).
    Forbidden,
}

/// Implemented by the error type of every aggregate.
pub trait DomainError: std::error::Error {
    /// How the refusal is to be understood.
    fn kind(&self) -> ErrorKind;
    /// A stable code clients can match on, for example [`RefusalCode::SoldOut`].
    fn code(&self) -> RefusalCode;
}

/// Declares [`RefusalCode`] with its wire spelling once: the variant and its string
/// cannot drift apart, and [`RefusalCode::ALL`] cannot miss one.
macro_rules! refusal_codes {
    ($($(#[$doc:meta])* $variant:ident => $text:literal,)+) => {
        /// Every code a domain refusal may carry, as clients see it in the error
        /// envelope (`{"error": {"code": "sold_out", ...}}`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum RefusalCode {
            $($(#[$doc])* $variant,)+
        }

        impl RefusalCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [RefusalCode] = &[$(Self::$variant,)+];

            /// The code as it is written on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }
    };
}

refusal_codes! {
    /// The aggregate does not exist (or is not the caller's to see).
    NotFound => "not_found",
    /// An aggregate with this id exists already.
    AlreadyExists => "already_exists",
    /// A hall name appears twice in one command.
    DuplicateHall => "duplicate_hall",
    /// The location has a hall of that name already.
    HallExists => "hall_exists",
    /// The event names a location that does not exist.
    UnknownLocation => "unknown_location",
    /// The event names a hall its location does not have.
    UnknownHall => "unknown_hall",
    /// The event has more seats than its hall.
    CapacityExceedsHall => "capacity_exceeds_hall",
    /// The event ends before it starts.
    EndsBeforeStart => "ends_before_start",
    /// The event starts in the past.
    StartsInPast => "starts_in_past",
    /// The event or booking was cancelled already.
    AlreadyCancelled => "already_cancelled",
    /// The event is over.
    EventEnded => "event_ended",
    /// Seats to sell or release are not held for that booking.
    SeatsNotHeld => "seats_not_held",
    /// Not enough seats left.
    SoldOut => "sold_out",
    /// The event was cancelled.
    EventCancelled => "event_cancelled",
    /// The event has started: no more bookings or cancellations by customers.
    EventStarted => "event_started",
    /// The booking is not confirmed.
    BookingNotConfirmed => "booking_not_confirmed",
    /// The booking is no longer pending.
    BookingNotPending => "booking_not_pending",
    /// The booking is not cancelled.
    BookingNotCancelled => "booking_not_cancelled",
    /// The customer holds as many unpaid seats of the event as they may.
    TooManyHeldSeats => "too_many_held_seats",
}

impl std::fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for RefusalCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_snake_case_and_serializes_as_written() {
        let mut seen = std::collections::HashSet::new();
        for code in RefusalCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} is used twice");
            assert!(
                text.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{text} is not snake_case"
            );
            assert_eq!(serde_json::to_value(code).unwrap(), text);
        }
    }
}
