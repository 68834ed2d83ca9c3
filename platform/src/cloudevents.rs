//! Kafka messages as CloudEvents 1.0, binary content mode (the CloudEvents Kafka
//! protocol binding): the attributes travel as `ce_*` headers, the value stays the
//! stored event's envelope ([`WireEvent`], JSON). Any CloudEvents-aware consumer can
//! route and trace a message without decoding its value.
//!
//! | header           | value                                                  |
//! |------------------|--------------------------------------------------------|
//! | `ce_specversion` | `1.0`                                                  |
//! | `ce_id`          | the event's store position (unique, never reused)     |
//! | `ce_source`      | [`SOURCE`]                                             |
//! | `ce_type`        | `boxoffice.<aggregate type>.<event type>`, e.g. `boxoffice.booking.BookingRequested` |
//! | `ce_subject`     | `<aggregate type>/<aggregate id>`                      |
//! | `ce_time`        | `recorded_at` (RFC 3339)                               |
//! | `ce_dataschemaversion` | the event's version, e.g. `3.0` (an extension)   |
//! | `ce_correlationid` | the correlation id (an extension)                    |
//! | `traceparent`    | the W3C trace context of the request that caused it    |
//! | `content-type`   | `application/json`                                     |

use rdkafka::message::{Header, Headers, OwnedHeaders};

use crate::kafka::WireEvent;

/// The CloudEvents version spoken.
pub const SPEC_VERSION: &str = "1.0";
/// `ce_source` of every event: the store they were appended to.
pub const SOURCE: &str = "/boxoffice/event-store";
/// The prefix of every `ce_type`.
pub const TYPE_PREFIX: &str = "boxoffice.";
/// The value's media type.
pub const CONTENT_TYPE: &str = "application/json";

/// The attributes of one message, as sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    /// `ce_id`.
    pub id: String,
    /// `ce_type`.
    pub event_type: String,
    /// `ce_subject`.
    pub subject: Option<String>,
    /// `ce_time`.
    pub time: Option<String>,
    /// `ce_dataschemaversion`.
    pub version: Option<String>,
    /// `ce_correlationid`.
    pub correlation_id: Option<String>,
    /// `traceparent`.
    pub traceparent: Option<String>,
    /// `content-type`.
    pub content_type: Option<String>,
}

impl Attributes {
    /// The attributes of a stored event.
    pub fn of(wire: &WireEvent) -> Self {
        Self {
            id: wire.position.to_string(),
            event_type: format!("{TYPE_PREFIX}{}.{}", wire.aggregate_type, wire.event_type),
            subject: Some(format!("{}/{}", wire.aggregate_type, wire.aggregate_id)),
            time: wire.metadata.recorded_at.clone(),
            version: Some(wire.event_version.clone()),
            correlation_id: wire.metadata.correlation_id.clone(),
            traceparent: wire.metadata.traceparent.clone(),
            content_type: Some(CONTENT_TYPE.to_owned()),
        }
    }

    /// As Kafka headers.
    pub fn headers(&self) -> OwnedHeaders {
        let mut headers = OwnedHeaders::new_with_capacity(10);
        for (key, value) in [
            ("ce_specversion", Some(SPEC_VERSION)),
            ("ce_id", Some(self.id.as_str())),
            ("ce_source", Some(SOURCE)),
            ("ce_type", Some(self.event_type.as_str())),
            ("ce_subject", self.subject.as_deref()),
            ("ce_time", self.time.as_deref()),
            ("ce_dataschemaversion", self.version.as_deref()),
            ("ce_correlationid", self.correlation_id.as_deref()),
            ("traceparent", self.traceparent.as_deref()),
            ("content-type", self.content_type.as_deref()),
        ] {
            if let Some(value) = value {
                headers = headers.insert(Header {
                    key,
                    value: Some(value),
                });
            }
        }
        headers
    }

    /// Read from a message's headers; `None` when it is not a CloudEvent of this
    /// version (no or another `ce_specversion`, no `ce_id` or `ce_type`).
    pub fn read(headers: Option<&impl Headers>) -> Option<Self> {
        let headers = headers?;
        let mut attributes = Self::default();
        let mut spec = None;
        for header in headers.iter() {
            let Some(value) = header.value.and_then(|v| std::str::from_utf8(v).ok()) else {
                continue;
            };
            let value = value.to_owned();
            match header.key {
                "ce_specversion" => spec = Some(value),
                "ce_id" => attributes.id = value,
                "ce_type" => attributes.event_type = value,
                "ce_subject" => attributes.subject = Some(value),
                "ce_time" => attributes.time = Some(value),
                "ce_dataschemaversion" => attributes.version = Some(value),
                "ce_correlationid" => attributes.correlation_id = Some(value),
                "traceparent" => attributes.traceparent = Some(value),
                "content-type" => attributes.content_type = Some(value),
                _ => {}
            }
        }
        (spec.as_deref() == Some(SPEC_VERSION)
            && !attributes.id.is_empty()
            && !attributes.event_type.is_empty())
        .then_some(attributes)
    }

    /// The aggregate type named by `ce_type`.
    pub fn aggregate_type(&self) -> Option<&str> {
        self.event_type
            .strip_prefix(TYPE_PREFIX)?
            .split_once('.')
            .map(|(aggregate_type, _)| aggregate_type)
    }

    /// The store position named by `ce_id`.
    pub fn position(&self) -> Option<i64> {
        self.id.parse().ok()
    }

    /// Whether the value is JSON (absent means JSON, as the binding's default here).
    pub fn is_json(&self) -> bool {
        self.content_type.as_deref().is_none_or(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim() == CONTENT_TYPE)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::metadata::EventMetadata;
    use serde_json::json;

    #[test]
    fn a_stored_event_travels_as_a_binary_mode_cloudevent() {
        let wire = WireEvent {
            position: 42,
            aggregate_type: "booking".into(),
            aggregate_id: "b-1".into(),
            sequence: 1,
            event_type: "BookingRequested".into(),
            event_version: "3.0".into(),
            payload: json!({}),
            metadata: EventMetadata {
                correlation_id: Some("c-1".into()),
                recorded_at: Some("2030-01-01T10:00:00.000001Z".into()),
                traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
                ..EventMetadata::default()
            },
        };
        let sent = Attributes::of(&wire);
        let headers = sent.headers();
        let names: Vec<&str> = headers.iter().map(|h| h.key).collect();
        assert_eq!(
            names,
            [
                "ce_specversion",
                "ce_id",
                "ce_source",
                "ce_type",
                "ce_subject",
                "ce_time",
                "ce_dataschemaversion",
                "ce_correlationid",
                "traceparent",
                "content-type"
            ]
        );
        let read = Attributes::read(Some(&headers)).unwrap();
        assert_eq!(read, sent);
        assert_eq!(read.event_type, "boxoffice.booking.BookingRequested");
        assert_eq!(read.aggregate_type(), Some("booking"));
        assert_eq!(read.position(), Some(42));
        assert!(read.is_json());
    }

    #[test]
    fn a_message_without_the_spec_version_is_not_a_cloudevent() {
        let headers = OwnedHeaders::new().insert(Header {
            key: "event_type",
            value: Some("BookingRequested"),
        });
        assert_eq!(Attributes::read(Some(&headers)), None);
        assert_eq!(Attributes::read(None::<&OwnedHeaders>), None);
    }
}
