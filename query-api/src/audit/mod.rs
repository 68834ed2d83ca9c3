//! Audit: reading the event store as it is, for people who must trust it.
//!
//! - [`history`]: one stream's events with their metadata and hashes, a page at a time;
//! - [`replay`]: an aggregate's state at a sequence or a time, replayed from its events
//!   through the upcasters, exactly as the command side would load it;
//! - [`verify`]: walks the whole store and names every event that was modified,
//!   deleted, inserted or reordered behind the store's back (the hash chain and append
//!   receipts of `migrations/event_store/0005_tamper_evidence.sql`);
//! - [`export`]: the store as NDJSON, in a resumable order, in constant memory.
//!
//! Everything here reads the event store and writes nothing.

pub mod export;
pub mod history;
pub mod replay;
pub mod verify;

/// The stream types of the store: the three aggregates, a user's stream (erasures)
/// and the store's own (`store/redactions`).
pub const AGGREGATE_TYPES: [&str; 5] = ["location", "event", "booking", "user", "store"];

/// Whether `aggregate_type` names one of ours.
pub fn known_type(aggregate_type: &str) -> bool {
    AGGREGATE_TYPES.contains(&aggregate_type)
}
