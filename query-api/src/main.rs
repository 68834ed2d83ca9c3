//! The query-api binary.

use query_api::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::telemetry::init();
    let config = Config::from_env()?;
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let app = Application::build(config).await?;
    app.run(listener, platform::shutdown::on_signal()).await
}
