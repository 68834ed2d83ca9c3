//! Event versioning: reading facts stored in an older shape.
//!
//! Stored facts are never rewritten. A fact's shape changes like this:
//!
//! 1. change the fact in the domain and bump its `event_version` (each fact type has
//!    its own: `booking::BOOKING_REQUESTED_VERSION`, [`crate::FACT_VERSION`] for those
//!    never changed);
//! 2. write an upcaster (cqrs-es's [`EventUpcaster`]) that turns the old payload into
//!    the new one, and register it in [`UPCASTERS`];
//! 3. add a test that reads a fact stored in the old version (as the store holds it).
//!
//! Every reader of the store (the command side when it loads an aggregate, the
//! projector, the audit replay) passes stored payloads through [`UPCASTERS`] before
//! deserializing them, so old history reads as today's types. Adding a field that
//! cannot be derived from the old payload needs a default instead, or a new fact type.
//!
//! The examples: `BookingRequested` 1.0 → 2.0 added `unit_price_cents`, the price of
//! one seat when the booking was made. A 1.0 fact has `amount_cents = price × seats`,
//! so the upcaster derives it exactly. 2.0 → 3.0 replaced `card_token` with the payment
//! gateway's `payment_method` and added the sealed `contact`: the upcaster drops the
//! token (no reader of the store ever sees it, whatever is stored) and leaves the two
//! new fields empty, as a request of before 3.0 had neither. (Tokens still stored in
//! such facts are redacted by migration 0010, see the README.)

use std::sync::LazyLock;

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use serde_json::Value;

/// Every upcaster, in the order they apply (an older version's first).
pub static UPCASTERS: LazyLock<Vec<Box<dyn EventUpcaster>>> =
    LazyLock::new(|| vec![Box::new(BookingRequestedV1), Box::new(BookingRequestedV2)]);

/// `BookingRequested` 1.0 → 2.0: adds `unit_price_cents = amount_cents / seats`.
struct BookingRequestedV1;

impl EventUpcaster for BookingRequestedV1 {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        event_type == "BookingRequested" && event_version == "1.0"
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        if let Some(fields) = event
            .payload
            .get_mut("BookingRequested")
            .and_then(Value::as_object_mut)
        {
            let amount = fields.get("amount_cents").and_then(Value::as_i64);
            let seats = fields.get("seats").and_then(Value::as_i64);
            // A payload without them fails to deserialize later, with a clear error;
            // leave it as it is.
            if let (Some(amount), Some(seats)) = (amount, seats.filter(|s| *s > 0)) {
                fields.insert("unit_price_cents".into(), Value::from(amount / seats));
            }
        }
        event.event_version = "2.0".to_owned();
        event
    }
}

/// `BookingRequested` 2.0 → 3.0: drops `card_token`; no payment method, no contact.
struct BookingRequestedV2;

impl EventUpcaster for BookingRequestedV2 {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        event_type == "BookingRequested" && event_version == "2.0"
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        if let Some(fields) = event
            .payload
            .get_mut("BookingRequested")
            .and_then(Value::as_object_mut)
        {
            fields.remove("card_token");
        }
        event.event_version = crate::booking::BOOKING_REQUESTED_VERSION.to_owned();
        event
    }
}

/// `event` as the current code expects it.
pub fn upcast_serialized(event: SerializedEvent) -> SerializedEvent {
    UPCASTERS.iter().fold(event, |event, upcaster| {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            upcaster.upcast(event)
        } else {
            event
        }
    })
}

/// Whether a stored fact of this type and version must be upcast before it is read.
pub fn needs_upcast(event_type: &str, event_version: &str) -> bool {
    UPCASTERS
        .iter()
        .any(|u| u.can_upcast(event_type, event_version))
}

/// The version this build writes of a fact type.
pub fn current_version(event_type: &str) -> &'static str {
    match event_type {
        "BookingRequested" => crate::booking::BOOKING_REQUESTED_VERSION,
        _ => crate::FACT_VERSION,
    }
}

/// Whether this build can read a stored fact of this type and version: the version it
/// writes, or an older one it has an upcaster for. A newer version (written by a newer
/// build during a rolling deploy) is not guessed at: readers park it until a build that
/// knows it comes.
pub fn readable(event_type: &str, event_version: &str) -> bool {
    event_version == current_version(event_type) || needs_upcast(event_type, event_version)
}

/// The payload of a stored fact as the current code expects it.
pub fn upcast(event_type: String, event_version: String, payload: Value) -> Value {
    let event = SerializedEvent::new(
        String::new(),
        0,
        String::new(),
        event_type,
        event_version,
        payload,
        Value::Null,
    );
    upcast_serialized(event).payload
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_build_reads_its_own_versions_and_older_ones_it_can_upcast_not_newer_ones() {
        use super::readable;
        assert!(readable("BookingRequested", "3.0"));
        assert!(readable("BookingRequested", "2.0"));
        assert!(readable("BookingRequested", "1.0"));
        assert!(!readable("BookingRequested", "4.0"));
        assert!(readable("HallAdded", "1.0"));
        assert!(!readable("HallAdded", "2.0"));
    }

    use super::*;
    use crate::booking::{Booking, BookingFact};
    use cqrs_es::{Aggregate, DomainEvent};
    use serde_json::json;

    /// A `BookingRequested` exactly as version 1.0 stored it.
    fn stored_v1() -> Value {
        json!({"BookingRequested": {
            "event_id": "0192e4d2-0000-7000-8000-000000000001",
            "user_id": "alice",
            "seats": 3,
            "amount_cents": 7500,
            "currency": "EUR",
            "card_token": "tok_visa"
        }})
    }

    #[test]
    fn a_version_1_booking_request_reads_as_today_without_its_card_token() {
        assert!(needs_upcast("BookingRequested", "1.0"));
        let payload = upcast("BookingRequested".into(), "1.0".into(), stored_v1());
        let fact: BookingFact = serde_json::from_value(payload).unwrap();
        let BookingFact::BookingRequested {
            unit_price_cents,
            amount_cents,
            seats,
            ..
        } = &fact
        else {
            panic!("not a booking request: {fact:?}");
        };
        assert_eq!((*unit_price_cents, *amount_cents, *seats), (2500, 7500, 3));
        // Replayed, it gives the booking a unit price, and no trace of the token.
        let mut booking = Booking::default();
        booking.apply(fact);
        let state = booking.state().unwrap();
        assert_eq!(state.unit_price_cents, 2500);
        assert_eq!(state.payment_method, None);
        assert!(!serde_json::to_string(&booking)
            .unwrap()
            .contains("tok_visa"));
    }

    #[test]
    fn a_version_2_booking_request_loses_its_card_token() {
        let mut stored = stored_v1();
        stored["BookingRequested"]["unit_price_cents"] = json!(2500);
        assert!(needs_upcast("BookingRequested", "2.0"));
        let payload = upcast("BookingRequested".into(), "2.0".into(), stored);
        assert!(payload["BookingRequested"].get("card_token").is_none());
        let fact: BookingFact = serde_json::from_value(payload).unwrap();
        let BookingFact::BookingRequested {
            payment_method,
            contact,
            ..
        } = fact
        else {
            panic!("not a booking request");
        };
        assert_eq!((payment_method, contact), (None, None));
    }

    #[test]
    fn a_version_1_payload_does_not_deserialize_without_the_upcaster() {
        assert!(serde_json::from_value::<BookingFact>(stored_v1()).is_err());
    }

    #[test]
    fn current_facts_pass_through_unchanged() {
        let fact = BookingFact::BookingConfirmed;
        assert!(!needs_upcast(&fact.event_type(), &fact.event_version()));
        let payload = serde_json::to_value(&fact).unwrap();
        assert_eq!(
            upcast(fact.event_type(), fact.event_version(), payload.clone()),
            payload
        );
        assert!(!needs_upcast("BookingRequested", "3.0"));
    }
}
