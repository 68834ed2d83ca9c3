//! projector: consumes the events topic and maintains the read models.
//!
//! The read models themselves (rows, how an event moves one on, the batch engine, the
//! store walk, status) are in the `read-model` crate, which query-api shares.
//!
//! - [`consumer`]: the Kafka consumer group, the fast path.
//! - [`sweep`]: the slow path: the read models converge to the event store whatever
//!   Kafka delivered.
//! - [`parked`]: events a projection could not apply, tried again.
//! - [`rebuild`]: fresh tables from the event store, swapped in atomically.
//! - [`config`], [`cli`]: the settings (options and environment variables) and the
//!   binary's command line.
//! - [`app`]: `Application::build(config)` and `run(listener, shutdown)`.

pub mod app;
pub mod cli;
pub mod config;
pub mod consumer;
pub mod metrics;
pub mod parked;
pub mod rebuild;
pub mod sweep;

pub use read_model::{engine, status, store, views, Projection};

pub use app::{Application, Context};
pub use config::Config;
