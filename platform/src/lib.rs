//! Plumbing shared by the three boxoffice services, so each service's crate holds only
//! what is its own.
//!
//! - [`config`]: settings, each an option with an environment variable (clap).
//! - [`telemetry`]: `tracing` to stdout, pretty or JSON (`LOG_FORMAT`).
//! - [`shutdown`]: SIGTERM and Ctrl-C as one cancellation token.
//! - [`auth`]: HS256 JWTs, roles, and the extractors that check them.
//! - [`http`]: the JSON error envelope, the strict JSON body extractor, health routes.
//! - [`db`]: Postgres pools and the migrations each service owns.
//! - [`kafka`]: the wire envelope of `boxoffice.events` and topic administration.
//! - [`metrics`]: the prometheus-client registry and its `/metrics` route.
//! - [`personal`]: contact data sealed under per-user keys (crypto-shredding).
//! - [`server`]: serving HTTP with bounds on time and requests in flight.

pub mod access_log;
pub mod auth;
pub mod cloudevents;
pub mod config;
pub mod db;
pub mod error_code;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod openapi;
pub mod personal;
pub mod server;
pub mod shutdown;
pub mod telemetry;
