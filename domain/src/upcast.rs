//! Event versioning: reading facts stored in an older shape.
//!
//! A fact's shape changes by bumping its `event_version` and registering an upcaster
//! here (cqrs-es's `EventUpcaster`): every reader of the store (the command side when it
//! loads an aggregate, the projector, the audit replay) passes stored payloads through
//! [`UPCASTERS`] before deserializing them, so old history reads as today's types.

use std::sync::LazyLock;

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use serde_json::Value;

/// Every upcaster, in the order they apply (an older version's first).
pub static UPCASTERS: LazyLock<Vec<Box<dyn EventUpcaster>>> = LazyLock::new(Vec::new);

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
