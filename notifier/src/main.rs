//! The notifier binary: with no arguments it runs the service; `status`, `retry` and
//! `resend` are for operators. `notifier --help` lists every setting.

use clap::Parser;
use notifier::cli::{Cli, Command};
use notifier::{log, Application, Config};
use uuid::Uuid;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { settings, command } = Cli::parse();
    let command = command.unwrap_or(Command::Serve);
    match command {
        Command::Serve => {
            platform::telemetry::init(&settings.log);
            let config = Config::try_from(settings)?;
            let listener = tokio::net::TcpListener::bind(config.addr).await?;
            let app = Application::build(config).await?;
            let served = app.run(listener, platform::shutdown::on_signal()).await;
            platform::telemetry::shutdown();
            served
        }
        Command::Migrate => {
            platform::telemetry::init(&settings.log);
            platform::db::Migrations::Notifier
                .run(&settings.migration_url()?)
                .await
        }
        Command::Status => {
            let pool = operator_pool(&settings).await?;
            print_status(&log::status(&pool).await?);
            Ok(())
        }
        Command::Retry { booking } => {
            let pool = operator_pool(&settings).await?;
            let which = match booking.as_str() {
                "all" => None,
                id => Some(
                    id.parse::<Uuid>()
                        .map_err(|_| anyhow::anyhow!("{id:?} is neither a booking id nor `all`"))?,
                ),
            };
            let n = log::retry_parked(&pool, which).await?;
            println!("{n} parked notification(s) will be sent again now");
            Ok(())
        }
        Command::Resend { booking } => {
            let pool = operator_pool(&settings).await?;
            let n = log::resend(&pool, booking).await?;
            println!(
                "{n} notification(s) of booking {booking} will be sent again (same Message-ID)"
            );
            Ok(())
        }
    }
}

/// The notifier's schema, for an operator's command.
async fn operator_pool(settings: &notifier::config::Settings) -> anyhow::Result<sqlx::PgPool> {
    let url = platform::config::required("DATABASE_URL", &settings.database_url)?;
    platform::db::connect_in_schema(&url, platform::db::NOTIFIER_SCHEMA, 2).await
}

fn print_status(status: &log::Status) {
    println!("{:<11} {:<18} {:>8}", "status", "kind", "count");
    for c in &status.counts {
        println!("{:<11} {:<18} {:>8}", c.status, c.kind, c.count);
    }
    println!(
        "oldest pending: {:.1} s; parked: {}",
        status.oldest_pending_seconds,
        status.parked.len()
    );
    for p in &status.parked {
        println!(
            "  parked {} #{} {} after {} attempt(s), since {}: {}",
            p.booking_id,
            p.sequence,
            p.kind,
            p.attempts,
            p.created_at.to_rfc3339(),
            p.last_error.as_deref().unwrap_or("-")
        );
    }
}
