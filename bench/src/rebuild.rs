//! The `rebuild` scenario: how fast a projection is rebuilt from the event store, next
//! to how fast the same rows can merely be streamed out of the store.
//!
//! It runs on a scratch database of its own (created on the stack's Postgres server,
//! dropped at the end), seeded with exactly `--events` booking events, so the figure
//! does not depend on what earlier runs left in the stack's store.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use projector::store::EventStore;
use sqlx::{PgPool, Row};

use crate::scratch::Scratch;

/// Options of the scenario.
#[derive(clap::Args)]
pub struct Args {
    /// Events in the store to rebuild from (half booking requests, half confirmations).
    #[arg(long, default_value_t = 100_000)]
    events: i64,
    /// The stack's database; the scratch database is created on the same server.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

/// Runs the scenario and prints the results.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let scratch = Scratch::create(&args.database_url, "bench_rebuild").await?;
    let outcome = measure(&args, &scratch.url).await;
    scratch.drop().await?;
    outcome
}

async fn measure(args: &Args, url: &str) -> anyhow::Result<()> {
    let store_pool = platform::db::connect(url, 4).await?;
    platform::db::migrate_event_store(&store_pool).await?;
    let read = platform::db::connect_read_models(url, 4).await?;
    platform::db::migrate_read_models(&read).await?;
    println!("boxoffice bench: rebuild");
    println!(
        "  seeding {} booking events ({} bookings, requested then confirmed) in a scratch database",
        args.events,
        args.events / 2
    );
    seed(&store_pool, args.events / 2).await?;
    sqlx::query("VACUUM ANALYZE events")
        .execute(&store_pool)
        .await?;
    println!("  target: projector rebuild bookings (fill, catch up, swap)");
    println!("  baseline: stream the same rows out of the events table, in the same order\n");

    let before = stream(&store_pool).await?;
    let started = Instant::now();
    let report = projector::rebuild::run(
        &read,
        &EventStore::new(store_pool.clone()),
        projector::Projection::Bookings,
        None,
        &|_| {},
    )
    .await?;
    let elapsed = started.elapsed();
    let after = stream(&store_pool).await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM booking_view")
        .fetch_one(&read)
        .await?;
    anyhow::ensure!(rows == args.events / 2, "the rebuilt model has {rows} rows");

    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(f64::EPSILON);
    println!(
        "  rebuild (projector)        {:>9.0} events/s  ({} events in {:.2} s)",
        report.rate(),
        report.events,
        elapsed.as_secs_f64()
    );
    println!(
        "  baseline (streamed SELECT) {:>9.0} rows/s    (before the rebuild: {} rows in {:.2} s)",
        rate(before.0, before.1),
        before.0,
        before.1.as_secs_f64()
    );
    println!(
        "  baseline (streamed SELECT) {:>9.0} rows/s    (after the rebuild: {} rows in {:.2} s)",
        rate(after.0, after.1),
        after.0,
        after.1.as_secs_f64()
    );
    let baseline = (rate(before.0, before.1) + rate(after.0, after.1)) / 2.0;
    println!(
        "\nsummary\n  rebuild {:.0} events/s; baseline {:.0} rows/s (mean of the two); ratio {:.2}",
        report.rate(),
        baseline,
        report.rate() / baseline
    );
    Ok(())
}

/// `bookings` booking streams of two events each.
pub(crate) async fn seed(pool: &PgPool, bookings: i64) -> anyhow::Result<()> {
    let metadata = domain::metadata::key::sql_object(
        "'user-' || n % 5000",
        "id",
        "id",
        "to_char(now() AT TIME ZONE 'UTC' + make_interval(secs => s), 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    sqlx::query(&format!(
        "WITH ids AS (SELECT gen_random_uuid()::text AS id, n FROM generate_series(1, $1) n)
         INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'booking', id, s,
                CASE s WHEN 1 THEN 'BookingRequested' ELSE 'BookingConfirmed' END, '1.0',
                CASE s WHEN 1 THEN jsonb_build_object('BookingRequested', jsonb_build_object(
                        'event_id', '0192e4d2-0000-7000-8000-000000000001', 'user_id', 'user-' || n % 5000,
                        'seats', 1 + n % 4, 'amount_cents', 2500 * (1 + n % 4), 'currency', 'EUR',
                        'card_token', 'tok_bench'))
                       ELSE to_jsonb('BookingConfirmed'::text) END,
                {metadata}
           FROM ids, generate_series(1, 2) s
          ORDER BY s, n",
    ))
    .bind(bookings)
    .execute(pool)
    .await?;
    Ok(())
}

/// Streams every booking event in the rebuild's order, decoding each row as the
/// rebuild does. Returns how many and how long it took.
pub(crate) async fn stream(pool: &PgPool) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let mut rows = sqlx::query(
        "SELECT (transaction_id::text)::bigint AS transaction_id, position, aggregate_type, aggregate_id,
                sequence, event_type, event_version, payload, metadata
           FROM events WHERE aggregate_type = 'booking' ORDER BY events.transaction_id, events.position",
    )
    .fetch(pool);
    let mut count = 0u64;
    while let Some(row) = rows.try_next().await? {
        let _: (
            i64,
            i64,
            String,
            String,
            i64,
            String,
            String,
            serde_json::Value,
            serde_json::Value,
        ) = (
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(4)?,
            row.try_get(5)?,
            row.try_get(6)?,
            row.try_get(7)?,
            row.try_get(8)?,
        );
        count += 1;
    }
    Ok((count, started.elapsed()))
}
