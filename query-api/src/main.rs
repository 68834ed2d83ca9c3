//! The query-api binary: with no arguments it runs the service; `audit` is for
//! auditors and operators, straight against the event store (`DATABASE_URL`).
//! `query-api --help` lists every setting and its environment variable.

use std::io::Write;
use std::time::Duration;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use query_api::audit::export::Export;
use query_api::audit::verify;
use query_api::cli::{Audit, Cli, Command};
use query_api::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { settings, command } = Cli::parse();
    let audit = match command.unwrap_or(Command::Serve) {
        Command::Audit(audit) => audit,
        Command::Migrate => {
            platform::telemetry::init(&settings.log);
            let url = settings.urls.migration_url()?;
            return platform::db::Migrations::ReadModels.run(&url).await;
        }
        Command::Serve => {
            platform::telemetry::init(&settings.log);
            let config = Config::try_from(settings)?;
            let listener = tokio::net::TcpListener::bind(config.addr).await?;
            let app = Application::build(config).await?;
            let served = app.run(listener, platform::shutdown::on_signal()).await;
            platform::telemetry::shutdown();
            return served;
        }
    };
    let url = settings.urls.database_url()?;
    let pool = platform::db::connect(&url, 2).await?;
    match audit {
        Audit::Verify => {
            let total = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM events"#)
                .fetch_one(&pool)
                .await?;
            let bar = ProgressBar::new(u64::try_from(total).unwrap_or(0));
            bar.set_style(
                ProgressStyle::with_template(
                    "verifying [{bar:40}] {pos}/{len} events {per_sec} {eta}",
                )?
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            let report = verify::verify(&pool, &|done| bar.set_position(done)).await;
            bar.finish_and_clear();
            let report = report?;
            for p in &report.problems {
                println!(
                    "{:<9} {}/{} sequence {} (position {}): {}",
                    serde_json::to_value(p.kind)?.as_str().unwrap_or("?"),
                    p.aggregate_type,
                    p.aggregate_id,
                    p.sequence,
                    p.position.map_or("unknown".into(), |p| p.to_string()),
                    p.detail
                );
            }
            if report.problems_truncated {
                println!(
                    "... and more (only the first {} are listed)",
                    verify::MAX_PROBLEMS
                );
            }
            println!(
                "{}: {} events and {} append receipts checked, {} problems",
                if report.ok { "ok" } else { "TAMPERED" },
                report.checked_events,
                report.checked_receipts,
                report.problems.len()
            );
            if !report.ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Audit::Export { after } => {
            let mut export = Export::start(pool, after, None).await?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            while let Some(page) = export.next_page().await? {
                out.write_all(&page)?;
            }
            out.flush()?;
            Ok(())
        }
    }
}
