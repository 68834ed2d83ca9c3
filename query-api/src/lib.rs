//! query-api: serves the read models over HTTP (see `../shared/API.md`).
//!
//! - [`config`], [`cli`], [`app`]: the settings (options and environment variables) and
//!   the binary's command line; `Application::build(config)` and `run(listener, shutdown)`.
//! - `routes`: one module per resource.
//! - [`consistency`]: read-your-writes through `X-Consistency-Token`, woken by the
//!   shared [`watcher`].
//! - [`contacts`]: a booking's sealed contact data, opened for its owner and admins.
//! - [`pagination`]: cursors that stay stable while rows are inserted.
//! - [`metrics`]: what `/metrics` exports.
//! - [`audit`]: history, state at a point, verification and export of the event store.

pub mod app;
pub mod audit;
pub mod cli;
pub mod config;
pub mod consistency;
pub mod contacts;
pub mod contract;
pub mod metrics;
pub mod openapi;
pub mod pagination;
mod routes;
pub mod watcher;

pub use app::{AppState, Application};
pub use config::Config;
