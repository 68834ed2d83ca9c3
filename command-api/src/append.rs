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
//! - The queue is bounded (`BOXOFFICE_APPEND_QUEUE`): an append that finds it full is
//!   refused at once ([`AppendError::Overloaded`], answered 503 `overloaded`), instead of
//!   waiting behind a backlog the database cannot clear.

use std::sync::Arc;

use cqrs_es::persist::SerializedEvent;
use domain::metadata::EventMetadata;
use domain::policy::{KeyRecord, Reaction};
use domain::saga::Step;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::metrics::Metrics;

/// The statement that appends events, of one aggregate or several, and writes what the
/// saga policy (`domain::policy`) decided about them, atomically:
///
/// - `$1`..`$7`: arrays of aggregate types, aggregate ids, sequences, event types,
///   versions, payloads and metadata, one element per event, in the order they are to
///   be stored (positions follow it);
/// - `$8`: booking sagas to start, `$9`: booking sagas to move, `$10`: event
///   cancellation sagas to start, `$11`: `Idempotency-Key` records, `$12`: user keys to
///   destroy; each a JSON array of rows (empty when there are none).
///
/// One statement is one transaction: the facts, the sagas they start, the keys they
/// answer and the user keys they destroy are written together or not at all. The sub-statements all see the store as
/// it was before the statement, which is all they need: a batch never holds two
/// appends of one aggregate, so no saga is started and moved by one statement.
///
/// The text is in `append.sql`, so that `insert` checks it at compile time
/// (`sqlx::query_file!`) and the bench runs the very same statement.
pub const APPEND_SQL: &str = include_str!("append.sql");

/// The most events one statement carries. Bounds the statement's size and the time its
/// transaction holds locks.
pub const MAX_BATCH_EVENTS: usize = 512;

/// The constraint an `Idempotency-Key` held by another command violates.
const KEY_TAKEN_CONSTRAINT: &str = "idempotency_keys_pkey";

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
    /// Too many appends wait already (`BOXOFFICE_APPEND_QUEUE`): try again shortly.
    #[error("too many appends are waiting")]
    Overloaded,
    /// The store failed.
    #[error("event store: {0}")]
    Store(Arc<sqlx::Error>),
}

/// What the saga policy decided about an append's events, written with them.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    /// Sagas started or moved (`domain::policy::reactions`).
    pub reactions: Vec<Reaction>,
    /// The records of the `Idempotency-Key`s of the commands appended
    /// (`domain::policy::key_record`).
    pub keys: Vec<KeyRecord>,
}

/// One aggregate's events, waiting to be written.
struct Append {
    aggregate_type: &'static str,
    aggregate_id: String,
    events: Vec<SerializedEvent>,
    effects: Effects,
    reply: oneshot::Sender<Result<(), AppendError>>,
}

/// Writes appends, several per statement under load. Cheap to clone; the writing stops
/// when the last clone is dropped (after the statements in flight).
#[derive(Clone)]
pub struct Appender {
    queue: mpsc::Sender<Append>,
}

impl Appender {
    /// Starts writing on `pool` with at most `writers` statements at once (at least one),
    /// and at most `queue` appends waiting for them (more are refused,
    /// [`AppendError::Overloaded`]). Needs a Tokio runtime.
    pub fn start(pool: PgPool, writers: usize, queue: usize, metrics: Metrics) -> Self {
        let (queue, waiting) = mpsc::channel(queue.max(1));
        tokio::spawn(dispatch(pool, waiting, writers.max(1), metrics));
        Self { queue }
    }

    /// Appends `events` (consecutive sequences of one aggregate, following what is
    /// stored) with their `effects`, and waits until they are committed, or refused.
    pub async fn append(
        &self,
        aggregate_type: &'static str,
        aggregate_id: &str,
        events: Vec<SerializedEvent>,
        effects: Effects,
    ) -> Result<(), AppendError> {
        let (reply, answer) = oneshot::channel();
        let append = Append {
            aggregate_type,
            aggregate_id: aggregate_id.to_owned(),
            events,
            effects,
            reply,
        };
        match self.queue.try_send(append) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return Err(AppendError::Overloaded),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(stopped()),
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
    mut waiting: mpsc::Receiver<Append>,
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

    /// Whether it is an `Idempotency-Key` held by another command.
    fn key_taken(&self) -> bool {
        self.0
            .as_database_error()
            .and_then(|db| db.constraint())
            .is_some_and(|c| c == KEY_TAKEN_CONSTRAINT)
    }

    /// Whether the failure comes from one of the statement's appends (the others may
    /// well succeed alone), not from the store as a whole.
    fn caused_by_one_append(&self) -> bool {
        self.sqlstate().is_some_and(|code| {
            [UNIQUE_VIOLATION, BROKEN_CHAIN_SQLSTATE, DEADLOCK_DETECTED].contains(&&*code)
        })
    }

    fn into_error(self) -> AppendError {
        if self.key_taken() {
            return AppendError::KeyTaken;
        }
        match self.sqlstate().as_deref() {
            // A deadlock aborted the statement, which wrote nothing: try again.
            Some(UNIQUE_VIOLATION | DEADLOCK_DETECTED) => AppendError::Conflict,
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
    let effects = EffectRows::of(batch);
    // The arrays hold borrowed elements (`&str`, `&Value`), which the macro's check of
    // parameter types does not take (it wants `&[String]`, `&[Value]`): `as` names
    // their types instead. The columns and the JSON rows' parameters are checked.
    sqlx::query_file!(
        "src/append.sql",
        &types as &[&str],
        &ids as &[&str],
        &sequences,
        &event_types as &[&str],
        &versions as &[&str],
        &payloads as &[&Value],
        &metadata as &[&Value],
        &effects.started,
        &effects.moved,
        &effects.cancellations,
        &effects.keys,
        &effects.destroyed,
    )
    .fetch_one(pool)
    .await
    .map(drop)
    .map_err(Failure)
}

/// The effects of a batch as the JSON rows [`APPEND_SQL`] takes.
struct EffectRows {
    started: Value,
    moved: Value,
    cancellations: Value,
    keys: Value,
    destroyed: Value,
}

impl EffectRows {
    fn of(batch: &[Append]) -> Self {
        let (mut started, mut moved, mut cancellations, mut destroyed) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let effects = batch.iter().map(|a| &a.effects);
        for append in batch {
            // The sagas a command starts or moves run in its trace: the request's
            // traceparent, as its facts keep it.
            let traceparent = append
                .events
                .first()
                .and_then(|e| EventMetadata::from_value(&e.metadata).traceparent);
            for reaction in &append.effects.reactions {
                match reaction {
                    Reaction::StartBookingSaga(saga) => {
                        let mut row = json!(saga);
                        row["traceparent"] = json!(traceparent);
                        started.push(row);
                    }
                    Reaction::MoveBookingSaga {
                        booking_id,
                        to,
                        unless_at,
                        correlation_id,
                    } => moved.push(json!({
                        "booking_id": booking_id,
                        "step": to.name(),
                        "reason": match to {
                            Step::Release { reason } => Some(reason.as_str()),
                            _ => None,
                        },
                        "unless_at": unless_at,
                        "correlation_id": correlation_id,
                        "traceparent": traceparent,
                    })),
                    Reaction::StartEventCancellation {
                        event_id,
                        correlation_id,
                    } => cancellations.push(json!({
                        "event_id": event_id,
                        "correlation_id": correlation_id,
                        "traceparent": traceparent,
                    })),
                    Reaction::DestroyUserKeys { user_id, keys } => {
                        destroyed.push(json!({"user_id": user_id, "keys": keys}));
                    }
                }
            }
        }
        let keys: Vec<&KeyRecord> = effects.flat_map(|e| &e.keys).collect();
        Self {
            started: Value::Array(started),
            moved: Value::Array(moved),
            cancellations: Value::Array(cancellations),
            keys: json!(keys),
            destroyed: Value::Array(destroyed),
        }
    }
}
