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
    /// (MIGRATION_PAYMENT_DATABASE_URL, else PAYMENT_DATABASE_URL), then exit.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command.unwrap_or(Command::Serve);
    platform::telemetry::init();
    if let Command::Migrate = command {
        return platform::db::Migrations::PaymentGateway.run().await;
    }
    let config = Config::from_env()?;
    tracing::info!(?config, "starting payment-gateway");
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let app = Application::build(config).await?;
    app.run(listener, platform::shutdown::on_signal()).await
}
