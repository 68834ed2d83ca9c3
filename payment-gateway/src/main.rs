//! The payment-gateway binary: with no arguments (or `serve`) it runs the service.
//! `payment-gateway --help` lists every setting and its environment variable.

use clap::Parser;
use payment_gateway::cli::{Cli, Command};
use payment_gateway::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { settings, command } = Cli::parse();
    platform::telemetry::init(&settings.log);
    if let Some(Command::Migrate) = command {
        let url = settings.migration_url()?;
        return platform::db::Migrations::PaymentGateway.run(&url).await;
    }
    let config = Config::try_from(settings)?;
    tracing::info!(?config, "starting payment-gateway");
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let app = Application::build(config).await?;
    let served = app.run(listener, platform::shutdown::on_signal()).await;
    platform::telemetry::shutdown();
    served
}
