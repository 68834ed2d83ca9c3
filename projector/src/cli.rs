//! The command line of the `projector` binary: its settings (every one also an
//! environment variable, see [`Settings`]) and its subcommands.

use clap::{Parser, Subcommand};

use crate::config::Settings;

/// boxoffice read side: Kafka consumer, read models, rebuilds.
#[derive(Parser)]
#[command(
    name = "projector",
    after_help = platform::config::ENV_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do; running the service when none is given.
#[derive(Subcommand)]
pub enum Command {
    /// Run the projector service (the default).
    Serve,
    /// Apply the read models' migrations, as the owner of their tables
    /// (MIGRATION_READ_DATABASE_URL, else READ_DATABASE_URL, else DATABASE_URL), then exit.
    Migrate,
    /// Rebuild a projection (locations, events, bookings, users, or all) from the event store
    /// while the live one keeps serving, then swap it in.
    Rebuild {
        /// A projection's name, or `all`.
        name: String,
    },
    /// Print each projection's state: live or rebuilding, lag, last applied, rebuild.
    Status,
}
