//! The payment-gateway binary: with no arguments (or `serve`) it runs the service.

use clap::{Parser, Subcommand};
use payment_gateway::{Application, Config};

#[derive(Parser)]
#[command(
    name = "payment-gateway",
    about = "A small payment provider with a Stripe-shaped HTTP API, for boxoffice"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Apply the gateway's migrations to its schema, as the owner
    /// (MIGRATION_DATABASE_URL, else PAYMENT_DATABASE_URL), then exit.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command.unwrap_or(Command::Serve);
    platform::telemetry::init();
    if let Command::Migrate = command {
        let url = platform::db::migration_url("PAYMENT_DATABASE_URL")?;
        let pool =
            platform::db::connect_in_schema(&url, platform::db::PAYMENT_GATEWAY_SCHEMA, 2).await?;
        platform::db::migrate_payment_gateway(&pool).await?;
        println!("payment gateway migrated");
        return Ok(());
    }
    let config = Config::from_env()?;
    tracing::info!(?config, "starting payment-gateway");
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let app = Application::build(config).await?;
    app.run(listener, platform::shutdown::on_signal()).await
}
