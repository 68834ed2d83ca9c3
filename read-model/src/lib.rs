//! read-model: what the projector writes and query-api reads.
//!
//! - [`projection`]: the projections, one closed enum (name, table, aggregate type).
//! - [`views`]: one row type per projection, and the pure function that moves a row
//!   forward by one event.
//! - [`engine`]: applying a batch in one transaction: duplicates skipped, gaps filled
//!   from the event store, rows written only forward, what cannot be applied parked.
//! - [`store`]: reading the event store without ever skipping an event.
//! - [`rebuild`]: asking for a rebuild (the projector runs it) and its tables.
//! - [`status`]: lag and rebuild progress, for the CLI, the query API and the metrics.
//!
//! It links no Kafka client: query-api depends on it, not on the projector.

pub mod engine;
pub mod projection;
pub mod rebuild;
pub mod status;
pub mod store;
pub mod views;

pub use projection::Projection;
