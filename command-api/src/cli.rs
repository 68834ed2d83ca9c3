//! The command line of the `command-api` binary: its settings (every one also an
//! environment variable, see [`Settings`]) and its subcommands.

use clap::{Parser, Subcommand};
use platform::auth::Role;

use crate::config::Settings;

/// boxoffice write side: HTTP commands, outbox relay, sagas.
#[derive(Parser)]
#[command(
    name = "command-api",
    after_help = platform::config::ENV_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do; serving when none is given.
#[derive(Subcommand)]
pub enum Command {
    /// Serve the command API (the default).
    Serve,
    /// Apply the event store's migrations, as the owner of its tables
    /// (MIGRATION_DATABASE_URL, else DATABASE_URL), then exit.
    Migrate,
    /// Print a token signed with BOXOFFICE_JWT_SECRET, for local use (with the issuer and
    /// audience of BOXOFFICE_JWT_ISSUER and BOXOFFICE_JWT_AUDIENCE, when set).
    Token {
        /// The user id (the token's `sub`).
        #[arg(long)]
        sub: String,
        /// `admin` or `customer`.
        #[arg(long)]
        role: Role,
        /// How long the token is valid, in seconds (at most BOXOFFICE_JWT_MAX_TTL_SECS).
        #[arg(long, default_value_t = 24 * 3600)]
        ttl_secs: u64,
        /// The user's e-mail address (the `email` claim), for bookings with contact data.
        #[arg(long)]
        email: Option<String>,
        /// The user's name (the `name` claim).
        #[arg(long)]
        name: Option<String>,
    },
}
