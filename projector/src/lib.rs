//! projector: consumes the events topic and maintains the read models.
//!
//! - [`views`]: the read models, and how one event moves a row on.
//! - [`engine`]: applying a batch in one transaction: duplicates skipped, gaps filled
//!   from the event store, rows written only forward.
//! - [`consumer`]: the Kafka consumer group, the fast path.
//! - [`sweep`]: the slow path: the read models converge to the event store whatever
//!   Kafka delivered.
//! - [`parked`]: events a projection could not apply, tried again.
//! - [`rebuild`]: fresh tables from the event store, swapped in atomically.
//! - [`status`]: lag and rebuild progress, for the CLI, the query API and the metrics.
//! - [`store`]: reading the event store without ever skipping an event.
//! - [`app`]: `Application::build(config)` and `run(listener, shutdown)`.

pub mod app;
pub mod config;
pub mod consumer;
pub mod engine;
pub mod metrics;
pub mod parked;
pub mod rebuild;
pub mod status;
pub mod store;
pub mod sweep;
pub mod views;

pub use app::{Application, Context};
pub use config::Config;
