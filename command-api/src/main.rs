//! The command-api binary: with no arguments it serves; `token` prints a JWT for local
//! use.

use std::time::Duration;

use clap::{Parser, Subcommand};
use command_api::{Application, Config};
use platform::auth::{Claims, Jwt, JwtRules, Role};

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Token {
            sub,
            role,
            ttl_secs,
            email,
            name,
        } => {
            let secret = platform::config::required("BOXOFFICE_JWT_SECRET")?;
            let jwt = Jwt::for_service(&secret, JwtRules::from_env()?)?;
            let max = jwt.rules().max_ttl.as_secs();
            anyhow::ensure!(
                ttl_secs <= max,
                "--ttl-secs {ttl_secs} is more than BOXOFFICE_JWT_MAX_TTL_SECS ({max}): the services would refuse it"
            );
            let mut claims = Claims::new(&sub, role, Duration::from_secs(ttl_secs));
            claims.email = email;
            claims.name = name;
            println!("{}", jwt.sign(claims));
            Ok(())
        }
        Command::Migrate => {
            platform::telemetry::init();
            platform::db::Migrations::EventStore.run().await
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
