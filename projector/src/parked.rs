//! Parked events tried again: at start-up and every `PROJECTOR_PARKED_RETRY_MS` (a
//! newer build may read what an older one parked), and within a second of an admin's
//! `POST /v1/admin/parked/{position}/retry` (query-api marks the row). A retry reads the
//! parked stream from the event store, from the parked event on, and applies it like
//! any batch: when it goes through, the engine removes the row; when it fails again,
//! the row counts one more attempt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::Context;
use crate::metrics::ProjectionLabel;
use read_model::engine::{apply_batch, Target};
use read_model::Projection;

/// How often asked-for retries are looked for.
const ASKED_EVERY: Duration = Duration::from_secs(1);

/// Retries parked events until `shutdown`.
pub async fn run(ctx: Arc<Context>, every: Duration, shutdown: CancellationToken) {
    let mut all_at = Instant::now();
    let mut all = true;
    loop {
        match retry(&ctx, all).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "parked events tried again"),
            Err(err) => tracing::warn!(cause = format!("{err:#}"), "cannot retry parked events"),
        }
        if all {
            all_at = Instant::now();
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(ASKED_EVERY) => {}
        }
        all = all_at.elapsed() >= every;
    }
}

/// Tries the parked events again (all of them, or those an admin asked for), and
/// updates the gauge. Returns how many were tried.
pub async fn retry(ctx: &Context, all: bool) -> anyhow::Result<usize> {
    let parked: Vec<(i64, String, Uuid, i64)> = sqlx::query!(
        "SELECT position, aggregate_type, aggregate_id, sequence FROM parked_events
          WHERE $1 OR retry_requested_at IS NOT NULL ORDER BY position LIMIT 100",
        all
    )
    .fetch_all(&ctx.read)
    .await?
    .into_iter()
    .map(|row| {
        (
            row.position,
            row.aggregate_type,
            row.aggregate_id,
            row.sequence,
        )
    })
    .collect();
    for (position, aggregate_type, aggregate_id, sequence) in &parked {
        let events = ctx
            .store
            .stream(aggregate_type, *aggregate_id, sequence - 1, i64::MAX)
            .await?;
        let mut tx = ctx.read.begin().await?;
        let applied = apply_batch(&mut tx, &ctx.store, Target::Live, &events).await?;
        sqlx::query!(
            "UPDATE parked_events SET retry_requested_at = NULL WHERE position = $1",
            position
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        ctx.metrics.record(&applied);
    }
    let counts: Vec<(String, i64)> = sqlx::query!(
        r#"SELECT projection, count(*) AS "count!" FROM parked_events GROUP BY projection"#
    )
    .fetch_all(&ctx.read)
    .await?
    .into_iter()
    .map(|row| (row.projection, row.count))
    .collect();
    for projection in Projection::ALL {
        let count = counts
            .iter()
            .find(|(p, _)| p == projection.name())
            .map_or(0, |(_, n)| *n);
        ctx.metrics
            .parked
            .get_or_create(&ProjectionLabel::from(projection))
            .set(count);
    }
    Ok(parked.len())
}
