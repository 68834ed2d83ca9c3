//! The sweep: every booking fact in the store is taken in, whatever Kafka delivered.
//!
//! Kafka is the fast path; a gap inside a stream is filled when the stream's next fact
//! arrives (see [`crate::intake`]), but a stream's last fact lost on the way would
//! never be followed by one. So every `NOTIFIER_SWEEP_MS` the store is walked from
//! where the last sweep stopped, in the order that never skips an event
//! (`read_model::store`), and whatever was not taken in is. One process sweeps at a
//! time (the progress row is locked).

use std::sync::Arc;
use std::time::Duration;

use read_model::store::Cursor;
use tokio_util::sync::CancellationToken;

use crate::app::Context;
use crate::intake::take_in;
use crate::metrics::SourceLabels;

/// Facts read from the store per transaction.
const CHUNK: i64 = 1000;

/// Sweeps every `interval` until `shutdown`.
pub async fn run(ctx: Arc<Context>, interval: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match sweep_once(&ctx).await {
            Ok(0) => {}
            Ok(facts) => tracing::info!(facts, "the sweep took in facts Kafka had not brought"),
            Err(err) => tracing::warn!(cause = format!("{err:#}"), "sweep failed; will try again"),
        }
    }
}

/// One sweep up to the current horizon. Returns how many facts it took in that had
/// not been taken in before.
pub async fn sweep_once(ctx: &Context) -> anyhow::Result<u64> {
    let mut taken = 0;
    loop {
        let mut tx = ctx.log.begin().await?;
        let Some((transaction_id, position)): Option<(i64, i64)> =
            sqlx::query_as("SELECT transaction_id, position FROM progress FOR UPDATE SKIP LOCKED")
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(taken);
        };
        let batch = ctx
            .store
            .final_after(
                Cursor {
                    transaction_id,
                    position,
                },
                &["booking"],
                CHUNK,
            )
            .await?;
        let Some((last, _)) = batch.last().cloned() else {
            return Ok(taken);
        };
        let events: Vec<_> = batch.into_iter().map(|(_, event)| event).collect();
        let intake = take_in(&mut tx, ctx, &events).await?;
        sqlx::query("UPDATE progress SET transaction_id = $1, position = $2")
            .bind(last.transaction_id)
            .bind(last.position)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        ctx.metrics
            .facts
            .get_or_create(&SourceLabels { source: "sweep" })
            .inc_by(intake.facts);
        if intake.notifications > 0 {
            ctx.wake.notify_one();
        }
        if intake.facts > 0 {
            ctx.kafka_behind.notify_one();
        }
        taken += intake.facts;
        if (events.len() as i64) < CHUNK {
            return Ok(taken);
        }
    }
}
