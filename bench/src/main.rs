//! `bench`: measures a running boxoffice (started with `scripts/up`) and, in the same
//! run on the same machine, a raw baseline of what the hardware gives.
//!
//! ```text
//! source .local/env && cargo run --release -p bench -- bookings --clients 8,32 --seconds 20
//! ```
//!
//! - `bookings`: N clients POST `/v1/events/{id}/bookings` as fast as they are answered
//!   for T seconds; then N connections commit one-row INSERTs into a table shaped like
//!   `events` for T seconds. Throughput, latency percentiles, and the ratio.
//! - `freshness`: bookings at a fixed rate, each timed from its 202 until the query API
//!   shows it; baseline: produce → consume through the same broker at the same rate.
//! - `rebuild`: a projection rebuilt from N events in a scratch database; baseline: the
//!   same rows streamed out of the store.
//! - `hot-event`: C clients race for one event of S seats, each waiting for its
//!   booking's final status; baseline: the same clients on an event each.
//! - `audit`: export and verify of N events in a scratch database; baseline: the same
//!   rows streamed out of the store. Then appends with the hash chain against without.
//! - `notify`: N confirmed bookings' facts on a fresh topic, the notifier run until it
//!   recorded every message as taken by the SMTP server (`SMTP_URL`, scripts/up's
//!   aiosmtpd); baseline: a bare lettre send loop of the same messages to that server,
//!   before and after.
//! - `otlp-sink`: not a measurement: an OTLP/HTTP endpoint that takes and counts trace
//!   exports, to measure the services with export on where no collector runs.
//! - `chaos`: not a measurement but a drill: a system of its own under load while its
//!   processes are killed at random; exits 1 when anything was lost or done twice.

mod audit;
mod bookings;
mod chaos;
mod freshness;
mod hot_event;
mod notify;
mod otlp_sink;
mod rebuild;
mod report;
mod scratch;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bench",
    about = "Measure a running boxoffice next to a raw baseline"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Booking requests against command-api, next to raw INSERT commits.
    Bookings(bookings::Args),
    /// Command to query-visible latency, next to a raw produce/consume round trip.
    Freshness(freshness::Args),
    /// Projection rebuild speed, next to streaming the same rows.
    Rebuild(rebuild::Args),
    /// Many buyers for one event, to a final status, next to one event each.
    HotEvent(hot_event::Args),
    /// Export and verify speed next to streaming the rows; appends with the hash
    /// chain against without it.
    Audit(audit::Args),
    /// A system of its own under load while services, the broker and database
    /// sessions are killed at random; then checks that nothing was lost or done twice.
    Chaos(chaos::Args),
    /// Notifications from facts on the topic to messages the SMTP server took, next
    /// to a bare lettre send loop to the same server.
    Notify(notify::Args),
    /// An OTLP/HTTP endpoint that takes and counts trace exports (for a run with
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` set where no collector runs).
    OtlpSink(otlp_sink::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().scenario {
        Scenario::Bookings(args) => bookings::run(args).await,
        Scenario::Freshness(args) => freshness::run(args).await,
        Scenario::Rebuild(args) => rebuild::run(args).await,
        Scenario::HotEvent(args) => hot_event::run(args).await,
        Scenario::Audit(args) => audit::run(args).await,
        Scenario::Chaos(args) => chaos::run(args).await,
        Scenario::Notify(args) => notify::run(args).await,
        Scenario::OtlpSink(args) => otlp_sink::run(args).await,
    }
}
