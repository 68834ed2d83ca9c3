//! notifier: consumes the events topic in its own consumer group and e-mails each
//! customer on every turn of their booking.
//!
//! - [`intake`]: which booking fact calls for which message, and the transaction that
//!   records it in the sent log with the stream's new position (gaps filled from the
//!   store).
//! - [`consumer`]: Kafka, the fast path; [`sweep`]: the store, the truth.
//! - [`sender`]: composes each due notification from the store and sends it, with
//!   retries, back-off and parking; [`log`]: the sent log's queries.
//! - [`mail`]: what a message says (the templates in `notifier/templates/`, the
//!   calendar file, the Message-ID); [`smtp`]: lettre's transport and its answers.
//! - [`config`], [`cli`], [`app`]: settings, command line, `Application`.

pub mod app;
pub mod cli;
pub mod config;
pub mod consumer;
pub mod intake;
pub mod log;
pub mod mail;
pub mod metrics;
pub mod sender;
pub mod smtp;
pub mod sweep;

pub use app::{Application, Context};
pub use config::Config;
