//! `bench`: measures a running boxoffice (started with `scripts/up`) and, in the same
//! run on the same machine, a raw baseline of what the hardware gives.
//!
//! ```text
//! source .local/env && cargo run --release -p bench -- bookings --clients 8,32 --seconds 20
//! ```
//!
//! `bookings`: N clients POST `/v1/events/{id}/bookings` as fast as they are answered for
//! T seconds; then N connections commit one-row INSERTs into a table shaped like
//! `events` for T seconds. Both print throughput and latency percentiles; the ratio is
//! bookings/s over inserts/s.

mod bookings;
mod report;

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().scenario {
        Scenario::Bookings(args) => bookings::run(args).await,
    }
}
