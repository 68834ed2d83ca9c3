//! Group commit: appends of different aggregates share one statement.
//!
//! Every command that decided something ends in an append: one `INSERT` of its events,
//! which is one transaction and one WAL flush. Under load the flushes, round trips and
//! statement set-up dominate the store's work, so the [`Appender`] writes appends that
//! arrive together in one statement:
//!
//! - At most `writers` statements are in flight (`BOXOFFICE_APPEND_WRITERS`). An append
//!   that finds a writer free goes out at once, alone: no wait is ever added to let a
//!   batch fill up. Appends that arrive while every writer is busy queue, and the next
//!   free writer takes all of them (up to [`MAX_BATCH_EVENTS`] events) in one statement.
//! - A statement is atomic: it appends every aggregate of the batch or none.
//! - When a batch fails on something one of its appends caused (another process took a
//!   sequence first, an `Idempotency-Key` held by another command, a broken chain, a
//!   deadlock with another batch), the batch wrote nothing, and each append is written
//!   again on its own, so each gets its own answer and no append fails because of a
//!   neighbour.
//! - One aggregate is never twice in a batch: the store serializes the commands of an
//!   aggregate and waits for each append before the next one (see [`crate::store`]), so
//!   an aggregate's events keep their order, in positions and on the topic.

use std::sync::Arc;

use cqrs_es::persist::SerializedEvent;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::metrics::Metrics;

/// The statement that appends events, of one aggregate or several: arrays of aggregate
/// types, aggregate ids, sequences, event types, versions, payloads and metadata, one
/// element per event, in the order they are to be stored (positions follow it).
pub const APPEND_SQL: &str =
    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
     SELECT a, i, s, t, v, p, m
       FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
            AS u(a, i, s, t, v, p, m)";

/// The most events one statement carries. Bounds the statement's size and the time its
/// transaction holds locks.
pub const MAX_BATCH_EVENTS: usize = 512;

/// The SQLSTATE the append trigger raises when an `Idempotency-Key` is held by another
/// command (see the event-store migration).
const KEY_TAKEN_SQLSTATE: &str = "BX409";

/// The SQLSTATE the chain trigger raises for an event that does not follow a stored one.
const BROKEN_CHAIN_SQLSTATE: &str = "BX422";

/// Postgres's `unique_violation`: another writer took the sequence first.
const UNIQUE_VIOLATION: &str = "23505";

/// Postgres's `deadlock_detected`. Two batches taking the same rows in different orders
/// (the same aggregates appended by two processes at once, or one `Idempotency-Key`
/// used twice at once) can deadlock; the one Postgres aborts wrote nothing, and its
/// appends written one by one only wait.
const DEADLOCK_DETECTED: &str = "40P01";

/// Why an append was not written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// Another process appended to the aggregate first.
    #[error("another writer appended to the aggregate first")]
    Conflict,
    /// The command's `Idempotency-Key` is held by another command.
    #[error("the idempotency key is held by another command")]
    KeyTaken,
    /// The store failed.
    #[error("event store: {0}")]
    Store(Arc<sqlx::Error>),
}

/// One aggregate's events, waiting to be written.
struct Append {
    aggregate_type: &'static str,
    aggregate_id: String,
    events: Vec<SerializedEvent>,
    reply: oneshot::Sender<Result<(), AppendError>>,
}

/// Writes appends, several per statement under load. Cheap to clone; the writing stops
/// when the last clone is dropped (after the statements in flight).
#[derive(Clone)]
pub struct Appender {
    queue: mpsc::UnboundedSender<Append>,
}

impl Appender {
    /// Starts writing on `pool` with at most `writers` statements at once (at least one).
    /// Needs a Tokio runtime.
    pub fn start(pool: PgPool, writers: usize, metrics: Metrics) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(pool, waiting, writers.max(1), metrics));
        Self { queue }
    }

    /// Appends `events` (consecutive sequences of one aggregate, following what is
    /// stored) and waits until they are committed, or refused.
    pub async fn append(
        &self,
        aggregate_type: &'static str,
        aggregate_id: &str,
        events: Vec<SerializedEvent>,
    ) -> Result<(), AppendError> {
        let (reply, answer) = oneshot::channel();
        let append = Append {
            aggregate_type,
            aggregate_id: aggregate_id.to_owned(),
            events,
            reply,
        };
        if self.queue.send(append).is_err() {
            return Err(stopped());
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

fn stopped() -> AppendError {
    AppendError::Store(Arc::new(sqlx::Error::PoolClosed))
}

/// Takes queued appends in batches and writes each batch on a task of its own, with at
/// most `writers` in flight. The wait for a free writer is what lets a batch grow.
async fn dispatch(
    pool: PgPool,
    mut waiting: mpsc::UnboundedReceiver<Append>,
    writers: usize,
    metrics: Metrics,
) {
    let free = Arc::new(Semaphore::new(writers));
    while let Some(first) = waiting.recv().await {
        let Ok(writer) = free.clone().acquire_owned().await else {
            return; // never closed
        };
        let mut events = first.events.len();
        let mut batch = vec![first];
        while events < MAX_BATCH_EVENTS {
            match waiting.try_recv() {
                Ok(append) => {
                    events += append.events.len();
                    batch.push(append);
                }
                Err(_) => break,
            }
        }
        let (pool, metrics) = (pool.clone(), metrics.clone());
        tokio::spawn(async move {
            metrics
                .append_statement_aggregates
                .observe(batch.len() as f64);
            write(&pool, batch).await;
            drop(writer);
        });
    }
}

/// Writes a batch in one statement and answers each append; when the batch fails on
/// one of its appends, writes each again on its own.
async fn write(pool: &PgPool, batch: Vec<Append>) {
    let outcome = insert(pool, &batch).await;
    match outcome {
        Err(err) if batch.len() > 1 && err.caused_by_one_append() => {
            for append in batch {
                let outcome = insert(pool, std::slice::from_ref(&append)).await;
                let _ = append.reply.send(outcome.map_err(Failure::into_error));
            }
        }
        outcome => {
            let outcome = outcome.map_err(Failure::into_error);
            for append in batch {
                let _ = append.reply.send(outcome.clone());
            }
        }
    }
}

/// Why a statement failed.
struct Failure(sqlx::Error);

impl Failure {
    fn sqlstate(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.0.as_database_error().and_then(|db| db.code())
    }

    /// Whether the failure comes from one of the statement's appends (the others may
    /// well succeed alone), not from the store as a whole.
    fn caused_by_one_append(&self) -> bool {
        self.sqlstate().is_some_and(|code| {
            [
                UNIQUE_VIOLATION,
                KEY_TAKEN_SQLSTATE,
                BROKEN_CHAIN_SQLSTATE,
                DEADLOCK_DETECTED,
            ]
            .contains(&&*code)
        })
    }

    fn into_error(self) -> AppendError {
        match self.sqlstate().as_deref() {
            // A deadlock aborted the statement, which wrote nothing: try again.
            Some(UNIQUE_VIOLATION | DEADLOCK_DETECTED) => AppendError::Conflict,
            Some(KEY_TAKEN_SQLSTATE) => AppendError::KeyTaken,
            _ => AppendError::Store(Arc::new(self.0)),
        }
    }
}

/// One `INSERT` of every event of `batch`.
async fn insert(pool: &PgPool, batch: &[Append]) -> Result<(), Failure> {
    let events = batch.iter().map(|a| a.events.len()).sum();
    let mut types = Vec::with_capacity(events);
    let mut ids = Vec::with_capacity(events);
    let mut sequences = Vec::with_capacity(events);
    let mut event_types = Vec::with_capacity(events);
    let mut versions = Vec::with_capacity(events);
    let mut payloads: Vec<&Value> = Vec::with_capacity(events);
    let mut metadata: Vec<&Value> = Vec::with_capacity(events);
    for append in batch {
        for event in &append.events {
            types.push(append.aggregate_type);
            ids.push(append.aggregate_id.as_str());
            sequences.push(event.sequence as i64);
            event_types.push(event.event_type.as_str());
            versions.push(event.event_version.as_str());
            payloads.push(&event.payload);
            metadata.push(&event.metadata);
        }
    }
    sqlx::query(APPEND_SQL)
        .bind(&types)
        .bind(&ids)
        .bind(&sequences)
        .bind(&event_types)
        .bind(&versions)
        .bind(&payloads)
        .bind(&metadata)
        .execute(pool)
        .await
        .map(drop)
        .map_err(Failure)
}
