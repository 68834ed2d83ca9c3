//! The projector binary: with no arguments it runs the service; `rebuild` and `status`
//! are for operators. `projector --help` lists every setting and its environment
//! variable.

use std::time::Duration;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use projector::cli::{Cli, Command};
use projector::{rebuild, status, Application, Config, Projection};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { settings, command } = Cli::parse();
    let command = command.unwrap_or(Command::Serve);
    if let Command::Serve = command {
        platform::telemetry::init(&settings.log);
        let config = Config::try_from(settings)?;
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        let app = Application::build(config).await?;
        let served = app.run(listener, platform::shutdown::on_signal()).await;
        platform::telemetry::shutdown();
        return served;
    }
    if let Command::Migrate = command {
        platform::telemetry::init(&settings.log);
        let url = settings.urls.migration_url()?;
        return platform::db::Migrations::ReadModels.run(&url).await;
    }
    let ctx = projector::app::connect(Config::try_from(settings)?).await?;
    match command {
        Command::Serve | Command::Migrate => unreachable!("handled above"),
        Command::Status => print_status(&ctx).await,
        Command::Rebuild { name } => {
            let projections: Vec<Projection> = if name == "all" {
                Projection::ALL.to_vec()
            } else {
                vec![name.parse()?]
            };
            for projection in projections {
                let bar = ProgressBar::new(0).with_message(projection.name());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg:>9} [{bar:40}] {pos}/{len} events {per_sec} {eta}",
                    )?
                    .progress_chars("=> "),
                );
                bar.enable_steady_tick(Duration::from_millis(200));
                let progress = |p: rebuild::Progress| {
                    bar.set_length(p.total);
                    bar.set_position(p.done);
                };
                let report = rebuild::run(&ctx.read, &ctx.store, projection, None, &progress).await;
                bar.finish();
                let report = report?;
                println!(
                    "{projection}: {} events in {:.1} s ({:.0} events/s), swapped in",
                    report.events,
                    report.elapsed.as_secs_f64(),
                    report.rate()
                );
            }
            Ok(())
        }
    }
}

async fn print_status(ctx: &projector::Context) -> anyhow::Result<()> {
    let statuses = status::all(&ctx.read, &ctx.store).await?;
    println!(
        "{:<10} {:<11} {:>10} {:>8} {:>9}  {:<26} rebuild",
        "projection", "status", "applied", "lag", "lag (s)", "last applied"
    );
    for s in statuses {
        let rebuild = s.rebuild.map_or_else(
            || "-".to_owned(),
            |r| {
                format!(
                    "#{} {} {:.0}% ({}/{})",
                    r.id,
                    r.status,
                    r.progress * 100.0,
                    r.events_done,
                    r.events_total.unwrap_or(0)
                )
            },
        );
        println!(
            "{:<10} {:<11} {:>10} {:>8} {:>9.1}  {:<26} {}",
            s.name,
            s.status,
            s.applied_events,
            s.lag,
            s.lag_seconds,
            s.last_applied_at
                .map_or_else(|| "-".to_owned(), |t| t.to_rfc3339()),
            rebuild
        );
    }
    Ok(())
}
