//! The command line of the `query-api` binary: its settings (every one also an
//! environment variable, see [`Settings`]) and its subcommands.

use clap::{Parser, Subcommand};

use crate::config::Settings;

/// boxoffice query side: read models, read-your-writes, audit.
#[derive(Parser)]
#[command(
    name = "query-api",
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
    /// Run the query-api service (the default).
    Serve,
    /// Audit the event store (DATABASE_URL).
    #[command(subcommand)]
    Audit(Audit),
    /// Apply the read models' migrations, as the owner of their tables
    /// (MIGRATION_READ_DATABASE_URL, else READ_DATABASE_URL, else DATABASE_URL), then exit.
    Migrate,
}

/// The audit of the event store.
#[derive(Subcommand)]
pub enum Audit {
    /// Walk the whole store and name every event modified, deleted, inserted or
    /// reordered behind its back. Exits 1 when it found any.
    Verify,
    /// Write the store as NDJSON to stdout, from after a position (resumable).
    Export {
        /// The position of the last event already received (0: from the start).
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
}
