//! The metadata every stored fact carries, as a type. cqrs-es hands metadata around as
//! `HashMap<String, String>` and the store keeps it as a JSON object; this module is
//! the one place that names its keys (the serde field names below, and [`key`] for SQL
//! that must reach into the column).
//!
//! Keys this build does not know (written by a newer one) are kept in `other`, so what
//! is read and written back or published is what was stored.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The keys, for SQL that reads the `metadata` column (`metadata ->> 'recorded_at'`).
pub mod key {
    /// [`super::EventMetadata::user_id`].
    pub const USER_ID: &str = "user_id";
    /// [`super::EventMetadata::correlation_id`].
    pub const CORRELATION_ID: &str = "correlation_id";
    /// [`super::EventMetadata::causation_id`].
    pub const CAUSATION_ID: &str = "causation_id";
    /// [`super::EventMetadata::recorded_at`].
    pub const RECORDED_AT: &str = "recorded_at";

    /// A SQL expression building a fact's metadata from four SQL expressions, for
    /// code that seeds many facts in one statement (the tests, the bench) shaped as
    /// command-api records them.
    pub fn sql_object(
        user_id: &str,
        correlation_id: &str,
        causation_id: &str,
        recorded_at: &str,
    ) -> String {
        format!(
            "jsonb_build_object('{USER_ID}', {user_id}, '{CORRELATION_ID}', {correlation_id}, \
             '{CAUSATION_ID}', {causation_id}, '{RECORDED_AT}', {recorded_at})"
        )
    }
}

/// What a fact's metadata says about how it came to be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Who asked: the token's `sub`, or `system:saga` for a saga's step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// One per request (`X-Correlation-Id`), kept through the saga it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The request (or saga step) that caused the fact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// When the fact was recorded, RFC 3339 as written (microseconds, `Z`). Kept as
    /// the stored text: the hash chain and the history show it verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<String>,
    /// The request's `Idempotency-Key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The request's keyed fingerprint. Only on the way to the store: the key's record
    /// keeps it, the facts never do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_fingerprint: Option<String>,
    /// The W3C trace context of the request that caused the fact, as received and
    /// continued ([`EventMetadata::trace_parent`] reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Keys this build does not know, kept as they were.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl EventMetadata {
    /// Read from cqrs-es's map.
    pub fn from_map(map: &HashMap<String, String>) -> Self {
        let object: serde_json::Map<String, Value> = map
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        Self::from_value(&Value::Object(object))
    }

    /// Read from a stored JSON object. A known key with a value that is not a string
    /// (never written by this code) is kept in `other`, not lost.
    pub fn from_value(value: &Value) -> Self {
        match serde_json::from_value(value.clone()) {
            Ok(metadata) => metadata,
            Err(_) => {
                let other = value
                    .as_object()
                    .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                Self {
                    other,
                    ..Self::default()
                }
            }
        }
    }

    /// As cqrs-es wants it (every value a string; other values as JSON text).
    pub fn into_map(self) -> HashMap<String, String> {
        match serde_json::to_value(self) {
            Ok(Value::Object(object)) => object
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => (k, s),
                    other => (k, other.to_string()),
                })
                .collect(),
            _ => HashMap::new(),
        }
    }

    /// As stored.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The trace context, when there is a valid one.
    pub fn trace_parent(&self) -> Option<TraceParent> {
        self.traceparent.as_deref().and_then(|t| t.parse().ok())
    }

    /// `recorded_at` as a time, when it is one.
    pub fn recorded_time(&self) -> Option<DateTime<Utc>> {
        self.recorded_at
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    }
}

/// A W3C `traceparent` (version 00): trace id, parent span id, flags.
/// <https://www.w3.org/TR/trace-context/#traceparent-header>
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

impl TraceParent {
    /// A new trace, sampled, from random ids.
    pub fn new_root() -> Self {
        Self {
            trace_id: uuid::Uuid::new_v4().as_u128(),
            span_id: Self::new_span_id(),
            flags: 1,
        }
    }

    /// The same trace, with a new span of ours as the parent.
    pub fn child(self) -> Self {
        Self {
            span_id: Self::new_span_id(),
            ..self
        }
    }

    /// The trace id, 32 hex digits.
    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// A trace context from its parts (a tracer's span); ids of zero are the caller's
    /// mistake (W3C: invalid), not checked here.
    pub fn from_parts(trace_id: u128, span_id: u64, flags: u8) -> Self {
        Self {
            trace_id,
            span_id,
            flags,
        }
    }

    /// The trace id as a number.
    pub fn trace_id_u128(&self) -> u128 {
        self.trace_id
    }

    /// The parent span id as a number.
    pub fn span_id_u64(&self) -> u64 {
        self.span_id
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    fn new_span_id() -> u64 {
        // Never zero (an invalid span id).
        (uuid::Uuid::new_v4().as_u128() as u64) | 1
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// A `traceparent` that is not version 00 of the W3C format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>, ids not all zero)")]
pub struct BadTraceParent;

impl FromStr for TraceParent {
    type Err = BadTraceParent;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        fn hex(s: &str, len: usize) -> Result<&str, BadTraceParent> {
            (s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                .then_some(s)
                .ok_or(BadTraceParent)
        }
        let mut parts = text.split('-');
        let (Some(version), Some(trace), Some(span), Some(flags), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(BadTraceParent);
        };
        hex(version, 2).and_then(|v| (v == "00").then_some(()).ok_or(BadTraceParent))?;
        let trace_id = u128::from_str_radix(hex(trace, 32)?, 16).map_err(|_| BadTraceParent)?;
        let span_id = u64::from_str_radix(hex(span, 16)?, 16).map_err(|_| BadTraceParent)?;
        let flags = u8::from_str_radix(hex(flags, 2)?, 16).map_err(|_| BadTraceParent)?;
        if trace_id == 0 || span_id == 0 {
            return Err(BadTraceParent);
        }
        Ok(Self {
            trace_id,
            span_id,
            flags,
        })
    }
}

impl Serialize for TraceParent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TraceParent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_goes_through_the_map_and_the_store_unchanged() {
        let stored = json!({
            "user_id": "alice", "correlation_id": "c-1", "causation_id": "r-1",
            "recorded_at": "2030-01-01T10:00:00.000001Z", "idempotency_key": "k-1",
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "from_a_newer_build": "kept",
        });
        let metadata = EventMetadata::from_value(&stored);
        assert_eq!(metadata.user_id.as_deref(), Some("alice"));
        assert_eq!(
            metadata.trace_parent().unwrap().trace_id(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(metadata.to_value(), stored);
        let again = EventMetadata::from_map(&metadata.clone().into_map());
        assert_eq!(again, metadata);
        assert_eq!(
            metadata.recorded_time().unwrap().to_rfc3339(),
            "2030-01-01T10:00:00.000001+00:00"
        );
    }

    #[test]
    fn a_malformed_value_is_kept_not_lost() {
        let stored = json!({"user_id": 7, "traceparent": "nonsense"});
        let metadata = EventMetadata::from_value(&stored);
        assert_eq!(metadata.to_value(), stored);
        assert_eq!(metadata.trace_parent(), None);
    }

    #[test]
    fn a_traceparent_is_read_strictly_and_written_back_the_same() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed: TraceParent = text.parse().unwrap();
        assert_eq!(parsed.to_string(), text);
        assert_eq!(parsed.child().trace_id(), parsed.trace_id());
        assert_ne!(parsed.child().to_string(), text);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(bad.parse::<TraceParent>(), Err(BadTraceParent), "{bad}");
        }
        let root = TraceParent::new_root();
        assert_eq!(root.to_string().parse(), Ok(root));
    }
}
