//! The command line of the `payment-gateway` binary: its settings (every one also an
//! environment variable, see [`Settings`]) and its subcommands.

use clap::{Parser, Subcommand};

use crate::config::Settings;

/// A small payment provider with a Stripe-shaped HTTP API, for boxoffice.
#[derive(Parser)]
#[command(
    name = "payment-gateway",
    after_help = platform::config::ENV_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do; running the gateway when none is given.
#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Apply the gateway's migrations to its schema, as the owner
    /// (MIGRATION_PAYMENT_DATABASE_URL, else PAYMENT_DATABASE_URL), then exit.
    Migrate,
}
