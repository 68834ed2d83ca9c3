//! command-api: the write side of boxoffice.
//!
//! HTTP commands (see `../shared/API.md`) are parsed at the edge into domain commands,
//! executed against the event store, and answered with a consistency token. The parts:
//!
//! - [`config`]: the settings (options and environment variables) and the
//!   configuration they give; [`cli`]: the binary's command line.
//! - [`app`]: `Application::build(config)` and `run(listener, shutdown)`.
//! - `routes`: one module per resource.
//! - [`commands`]: what every command goes through: idempotency, bounded retries on
//!   optimistic-concurrency conflicts, the answer, the metrics.
//! - [`store`]: load, decide, append (cqrs-es aggregates on postgres-es), serialized per
//!   aggregate inside the process; [`append`]: appends of different aggregates share a
//!   statement (group commit).
//! - [`idempotency`]: `Idempotency-Key` records.
//! - [`relay`]: the outbox relay publishing appended events to Kafka.
//! - [`saga`]: the booking saga runner (seat hold, payment, confirmation,
//!   compensation); [`payment`], the client of the payment gateway (timeouts, retries,
//!   a circuit breaker); [`reconcile`], the sweep that checks the gateway's books
//!   against the bookings.
//! - [`metrics`]: what `/metrics` exports.

pub mod app;
pub mod append;
pub mod cli;
pub mod commands;
pub mod config;
pub mod fairness;
pub mod idempotency;
pub mod metrics;
pub mod openapi;
pub mod payment;
pub mod reconcile;
pub mod relay;
mod routes;
pub mod saga;
pub mod store;

pub use app::{AppState, Application};
pub use config::Config;
