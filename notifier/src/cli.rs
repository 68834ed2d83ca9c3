//! The command line of the `notifier` binary: its settings (every one also an
//! environment variable, see [`Settings`]) and its subcommands.

use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::config::Settings;

/// boxoffice notifications: e-mails customers on every turn of their bookings.
#[derive(Parser)]
#[command(name = "notifier", after_help = platform::config::ENV_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do; running the service when none is given.
#[derive(Subcommand)]
pub enum Command {
    /// Run the notifier service (the default).
    Serve,
    /// Apply the notifier's migrations, as the owner of its tables
    /// (MIGRATION_DATABASE_URL, else DATABASE_URL), then exit.
    Migrate,
    /// Print the sent log's counts by status and kind, and every parked notification.
    Status,
    /// Send parked notifications again: one booking's, or all.
    Retry {
        /// A booking id, or `all`.
        booking: String,
    },
    /// Send one booking's notifications again on purpose (the same Message-IDs).
    Resend {
        /// The booking id.
        booking: Uuid,
    },
}
