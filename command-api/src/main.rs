//! The command-api binary: with no arguments it serves; `token` prints a JWT for local
//! use.

use std::time::Duration;

use clap::{Parser, Subcommand};
use command_api::{Application, Config};
use platform::auth::{Jwt, Role};

#[derive(Parser)]
#[command(
    name = "command-api",
    about = "boxoffice write side: HTTP commands, outbox relay, sagas"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the command API (the default).
    Serve,
    /// Print a token signed with BOXOFFICE_JWT_SECRET, for local use.
    Token {
        /// The user id (the token's `sub`).
        #[arg(long)]
        sub: String,
        /// `admin` or `customer`.
        #[arg(long)]
        role: Role,
        /// How long the token is valid, in seconds.
        #[arg(long, default_value_t = 24 * 3600)]
        ttl_secs: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Token {
            sub,
            role,
            ttl_secs,
        } => {
            let secret = platform::config::required("BOXOFFICE_JWT_SECRET")?;
            println!(
                "{}",
                Jwt::new(&secret).issue(&sub, role, Duration::from_secs(ttl_secs))
            );
            Ok(())
        }
        Command::Serve => {
            platform::telemetry::init();
            let config = Config::from_env()?;
            let listener = tokio::net::TcpListener::bind(config.addr).await?;
            let app = Application::build(config).await?;
            app.run(listener, platform::shutdown::on_signal()).await
        }
    }
}
