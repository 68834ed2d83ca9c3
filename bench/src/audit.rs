//! The `audit` scenario, on a scratch database seeded with `--events` events:
//!
//! - export (query-api's NDJSON export, every page) and verify (the whole walk of the
//!   hash chain and the append receipts) in events/s, next to streaming the same rows
//!   out of the store;
//! - append throughput with the hash chain against without it (the chain's trigger
//!   disabled; the receipts are written by the relay, off the append path), in the
//!   same run: `--clients` connections each appending one event per statement to a
//!   stream of its own (every append after the first looks its predecessor's hash up,
//!   the chain's dearest case), through the statement command-api uses. Phases
//!   alternate (with, without, without, with, ...) so drift on a shared machine hits
//!   both alike.

use std::time::{Duration, Instant};

use query_api::audit::export::Export;
use query_api::audit::verify;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::rebuild;
use crate::scratch::Scratch;

/// Options of the scenario.
#[derive(clap::Args)]
pub struct Args {
    /// Events in the store to export and verify.
    #[arg(long, default_value_t = 100_000)]
    events: i64,
    /// Connections appending in the append phases.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds per append phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Pairs of append phases (one with the chain, one without each).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// The stack's database; the scratch database is created on the same server.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
}

/// Runs the scenario and prints the results.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let scratch = Scratch::create(&args.database_url, "bench_audit").await?;
    let outcome = measure(&args, &scratch.url).await;
    scratch.drop().await?;
    outcome
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(f64::EPSILON)
}

async fn measure(args: &Args, url: &str) -> anyhow::Result<()> {
    let pool = platform::db::connect(url, args.clients as u32 + 2).await?;
    platform::db::migrate_event_store(&pool).await?;
    println!("boxoffice bench: audit");
    println!(
        "  seeding {} booking events in a scratch database (through the chain triggers)",
        args.events
    );
    rebuild::seed(&pool, args.events / 2).await?;
    sqlx::query("VACUUM ANALYZE events").execute(&pool).await?;

    let before = rebuild::stream(&pool).await?;
    let started = Instant::now();
    let mut export = Export::start(pool.clone(), 0, None).await?;
    let (mut exported, mut bytes) = (0u64, 0usize);
    while let Some(page) = export.next_page().await? {
        exported += page.iter().filter(|b| **b == b'\n').count() as u64;
        bytes += page.len();
    }
    let export_time = started.elapsed();
    anyhow::ensure!(
        exported == before.0,
        "exported {exported} of {} events",
        before.0
    );

    let started = Instant::now();
    let report = verify::verify(&pool, &|_| {}).await?;
    let verify_time = started.elapsed();
    anyhow::ensure!(report.ok, "verify found problems: {:?}", report.problems);
    let after = rebuild::stream(&pool).await?;

    println!(
        "  export (NDJSON)            {:>9.0} events/s  ({exported} events, {:.1} MB, in {:.2} s)",
        rate(exported, export_time),
        bytes as f64 / 1e6,
        export_time.as_secs_f64()
    );
    println!(
        "  verify (chain + receipts)  {:>9.0} events/s  ({} events, {} receipts and outbox rows, in {:.2} s)",
        rate(report.checked_events, verify_time),
        report.checked_events,
        report.checked_receipts,
        verify_time.as_secs_f64()
    );
    let baseline = (rate(before.0, before.1) + rate(after.0, after.1)) / 2.0;
    println!(
        "  baseline (streamed SELECT) {baseline:>9.0} rows/s    (mean of one before and one after)"
    );

    // Appends, with and without the chain.
    println!(
        "\n  appends: {} connections, one event per statement, {} s per phase",
        args.clients, args.seconds
    );
    sqlx::query("ALTER TABLE events ALTER COLUMN hash DROP NOT NULL")
        .execute(&pool)
        .await?;
    let (mut with, mut without) = ((0u64, Duration::ZERO), (0u64, Duration::ZERO));
    for round in 0..args.rounds {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for chained in order {
            let toggle = if chained { "ENABLE" } else { "DISABLE" };
            sqlx::query(&format!("ALTER TABLE events {toggle} TRIGGER events_chain"))
                .execute(&pool)
                .await?;
            let (n, d) = appends(&pool, args.clients, Duration::from_secs(args.seconds)).await?;
            println!(
                "    {:<14} {:>7.0} appends/s",
                if chained {
                    "with chain"
                } else {
                    "without chain"
                },
                rate(n, d)
            );
            let total = if chained { &mut with } else { &mut without };
            total.0 += n;
            total.1 += d;
        }
    }
    let (with, without) = (rate(with.0, with.1), rate(without.0, without.1));
    println!(
        "\nsummary\n  export {:.0} events/s, verify {:.0} events/s; baseline streamed SELECT {baseline:.0} rows/s\n  appends with chain {with:.0}/s, without {without:.0}/s: the chain costs {:.1}%",
        rate(exported, export_time),
        rate(report.checked_events, verify_time),
        (1.0 - with / without) * 100.0
    );
    Ok(())
}

/// Appends for `length` from `clients` connections; how many, in how long.
async fn appends(
    pool: &PgPool,
    clients: usize,
    length: Duration,
) -> anyhow::Result<(u64, Duration)> {
    let deadline = Instant::now() + length;
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let stream = format!("bench-{}", Uuid::new_v4());
                let mut sequence = 0i64;
                while Instant::now() < deadline {
                    sequence += 1;
                    // The size of a real fact and its metadata.
                    let payload = json!({"HallAdded": {"hall": {"name": format!("Hall {sequence}"), "capacity": 250}}});
                    let metadata = json!({"user_id": "bench-admin", "correlation_id": Uuid::new_v4(),
                                          "causation_id": Uuid::new_v4(), "recorded_at": "2030-01-01T00:00:00.000000Z"});
                    sqlx::query(command_api::store::APPEND_SQL)
                        .bind("location")
                        .bind(&stream)
                        .bind([sequence])
                        .bind(["HallAdded"])
                        .bind(["1.0"])
                        .bind([payload])
                        .bind([metadata])
                        .execute(&pool)
                        .await?;
                }
                anyhow::Ok(sequence as u64)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok((total, started.elapsed()))
}
