//! The command-api binary: with no arguments it serves; `token` prints a JWT for local
//! use. `command-api --help` lists every setting and its environment variable.

use std::time::Duration;

use clap::Parser;
use command_api::cli::{Cli, Command};
use command_api::{Application, Config};
use platform::auth::{Claims, Jwt};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { settings, command } = Cli::parse();
    match command.unwrap_or(Command::Serve) {
        Command::Token {
            sub,
            role,
            ttl_secs,
            email,
            name,
        } => {
            let jwt = Jwt::for_service(&settings.jwt.secret()?, settings.jwt.rules())?;
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
            platform::telemetry::init(&settings.log);
            let url = settings.migration_url()?;
            platform::db::Migrations::EventStore.run(&url).await
        }
        Command::Serve => {
            platform::telemetry::init(&settings.log);
            let config = Config::try_from(settings)?;
            let listener = tokio::net::TcpListener::bind(config.addr).await?;
            let app = Application::build(config).await?;
            let served = app.run(listener, platform::shutdown::on_signal()).await;
            platform::telemetry::shutdown();
            served
        }
    }
}
