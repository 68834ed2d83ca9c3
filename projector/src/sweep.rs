//! The sweep: the read models converge to the event store, whatever Kafka delivered.
//!
//! Every `PROJECTOR_SWEEP_MS` the projector walks the store from where the last sweep
//! stopped, in `(transaction_id, position)` order up to the oldest transaction that
//! may still add events (see [`crate::store`]), and applies what the read models lack. In normal
//! operation that is nothing: Kafka was faster. It matters when the broker lost
//! messages (a broker restarted empty), or a stream's last event never arrived, which
//! no later message would reveal as a gap. One projector process sweeps at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::app::Context;
use crate::metrics::Source;
use read_model::engine::{apply_batch, Target};
use read_model::store::Cursor;
use read_model::Projection;

/// Events read from the store per transaction.
const CHUNK: i64 = 2000;

/// Sweeps every `interval` until `shutdown`.
pub async fn run(ctx: Arc<Context>, interval: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match sweep_once(&ctx).await {
            Ok(0) => {}
            Ok(events) => tracing::debug!(events, "swept the event store"),
            Err(err) => tracing::warn!(cause = format!("{err:#}"), "sweep failed; will try again"),
        }
    }
}

/// One sweep up to the current horizon. Returns how many events it read.
pub async fn sweep_once(ctx: &Context) -> anyhow::Result<u64> {
    let mut read = 0;
    loop {
        let started = Instant::now();
        let mut tx = ctx.read.begin().await?;
        // Another process sweeping holds the row: leave it to that one.
        let Some((transaction_id, position)) =
            sqlx::query!("SELECT transaction_id, position FROM store_sweep FOR UPDATE SKIP LOCKED")
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| (row.transaction_id, row.position))
        else {
            return Ok(read);
        };
        let batch = ctx
            .store
            .final_after(
                Cursor {
                    transaction_id,
                    position,
                },
                &Projection::aggregate_types(),
                CHUNK,
            )
            .await?;
        let Some((last, _)) = batch.last().cloned() else {
            return Ok(read);
        };
        let events: Vec<_> = batch.into_iter().map(|(_, event)| event).collect();
        let applied = apply_batch(&mut tx, &ctx.store, Target::Live, &events).await?;
        sqlx::query!(
            "UPDATE store_sweep SET transaction_id = $1, position = $2",
            last.transaction_id,
            last.position
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        ctx.metrics.record(&applied);
        if applied.iter().any(|(_, a)| a.events > 0) {
            ctx.kafka_behind.notify_one();
        }
        ctx.metrics
            .apply_seconds
            .get_or_create(&Source { source: "sweep" })
            .observe(started.elapsed().as_secs_f64());
        read += events.len() as u64;
        if (events.len() as i64) < CHUNK {
            return Ok(read);
        }
    }
}
