//! The query-api binary: with no arguments it runs the service; `audit` is for
//! auditors and operators, straight against the event store (`DATABASE_URL`).

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use query_api::audit::export::Export;
use query_api::audit::verify;
use query_api::{Application, Config};

#[derive(Parser)]
#[command(
    name = "query-api",
    about = "boxoffice query side: read models, read-your-writes, audit"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the query-api service (the default).
    Serve,
    /// Audit the event store.
    #[command(subcommand)]
    Audit(Audit),
    /// Apply the read models' migrations, as the owner of their tables
    /// (MIGRATION_READ_DATABASE_URL, else READ_DATABASE_URL, else DATABASE_URL), then exit.
    Migrate,
}

#[derive(Subcommand)]
enum Audit {
    /// Walk the whole store and name every event modified, deleted, inserted or
    /// reordered behind its back. Exits 1 when it found any.
    Verify,
    /// Write the store as NDJSON to stdout, from after a position (resumable).
    Export {
        /// The position of the last event already received (0: from the start).
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command.unwrap_or(Command::Serve);
    let audit = match command {
        Command::Audit(audit) => audit,
        Command::Migrate => {
            platform::telemetry::init();
            return platform::db::Migrations::ReadModels.run().await;
        }
        Command::Serve => {
            platform::telemetry::init();
            let config = Config::from_env()?;
            let listener = tokio::net::TcpListener::bind(config.addr).await?;
            let app = Application::build(config).await?;
            return app.run(listener, platform::shutdown::on_signal()).await;
        }
    };
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
    let pool = platform::db::connect(&url, 2).await?;
    match audit {
        Audit::Verify => {
            let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
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
