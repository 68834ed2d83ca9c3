//! Executing commands against the event store.
//!
//! This plays the part of cqrs-es's `CqrsFramework::execute`: load the aggregate from
//! its events (postgres-es's `PostgresEventRepository`), let it decide
//! (`Aggregate::handle`), append what it decided. It differs where this service needs
//! it to:
//!
//! - It returns the committed sequence, which the consistency token is made of.
//! - Commands on one aggregate are serialized inside the process (one async mutex per
//!   aggregate id), so concurrent requests for a hot aggregate queue instead of
//!   colliding; optimistic concurrency still guards against other processes.
//! - The mutex also guards the aggregate as last loaded, so the next command reads only
//!   the events appended since (usually none), not the whole stream again. An aggregate
//!   the caller has just given a new id is not read at all ([`AggregateStore::create`]).
//! - The append is one `INSERT ... SELECT FROM unnest(...)` statement, atomic on its own,
//!   where postgres-es sends BEGIN, one INSERT per event and COMMIT: two round trips
//!   fewer per command, which is most of the cost of a command (see the README's
//!   benchmark). The rows are the ones postgres-es writes and reads, and the key
//!   `(aggregate_type, aggregate_id, sequence)` is the same optimistic lock.
//!
//! Stored events pass through the domain's upcasters (`domain::upcast`) before they are
//! deserialized, as in cqrs-es's `PersistedEventStore`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, SerializedEvent};
use cqrs_es::{Aggregate, EventEnvelope};
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{Mutex, Notify};

use crate::metrics::{EventLabels, Metrics};

/// The SQLSTATE the append trigger raises when an `Idempotency-Key` is held by another
/// command (see the event-store migration).
const KEY_TAKEN_SQLSTATE: &str = "BX409";

/// Postgres's `unique_violation`: another writer took the sequence first.
const UNIQUE_VIOLATION: &str = "23505";

/// How many aggregates keep their loaded state in memory. Past this, idle ones are
/// dropped and loaded again when next used.
const CACHED_AGGREGATES: usize = 4096;

/// What an executed command left in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The aggregate's sequence after the command: its last event.
    pub last_sequence: usize,
    /// How many events the command appended (0 for a no-op).
    pub appended: usize,
}

/// Why a command was not committed.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E: std::error::Error> {
    /// The aggregate refused the command.
    #[error("{0}")]
    Domain(E),
    /// Another process appended to the aggregate first; try again.
    #[error("concurrent update of the aggregate")]
    Conflict,
    /// The command's `Idempotency-Key` was recorded by another command meanwhile.
    #[error("the idempotency key is held by another command")]
    IdempotencyKeyTaken,
    /// The store failed.
    #[error("event store: {0}")]
    Store(#[from] PersistenceError),
}

/// An aggregate as loaded, with the sequence of its last applied event.
#[derive(Default)]
struct Loaded<A> {
    aggregate: A,
    sequence: usize,
    /// When it was last brought up to date with the store; `None` if never.
    caught_up_at: Option<Instant>,
}

/// Commands and reads for one aggregate type.
pub struct AggregateStore<A: Aggregate> {
    pool: PgPool,
    repo: PostgresEventRepository,
    services: A::Services,
    slots: SyncMutex<HashMap<String, Arc<Mutex<Loaded<A>>>>>,
    appended: Arc<Notify>,
    metrics: Metrics,
}

impl<A> AggregateStore<A>
where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    /// A store on `pool`. `appended` is notified after every commit (the outbox relay's
    /// wake-up call).
    pub fn new(
        pool: PgPool,
        services: A::Services,
        appended: Arc<Notify>,
        metrics: Metrics,
    ) -> Self {
        Self {
            repo: PostgresEventRepository::new(pool.clone()),
            pool,
            services,
            slots: SyncMutex::new(HashMap::new()),
            appended,
            metrics,
        }
    }

    /// Reads the current state of an aggregate (the default state when it has no
    /// events) and its sequence.
    pub async fn read<R>(
        &self,
        aggregate_id: &str,
        read: impl FnOnce(&A, usize) -> R,
    ) -> Result<R, PersistenceError> {
        self.read_recent(aggregate_id, Duration::ZERO, read).await
    }

    /// Like [`read`](Self::read), but accepts the state as this process last saw it
    /// when that was less than `max_age` ago: no round trip to the store. For facts
    /// that never change (an event's start, price) or where a decision taken on a
    /// slightly old state is caught later anyway.
    pub async fn read_recent<R>(
        &self,
        aggregate_id: &str,
        max_age: Duration,
        read: impl FnOnce(&A, usize) -> R,
    ) -> Result<R, PersistenceError> {
        let slot = self.slot(aggregate_id);
        let mut loaded = slot.lock().await;
        if loaded.caught_up_at.is_none_or(|at| at.elapsed() >= max_age) {
            self.catch_up(aggregate_id, &mut loaded).await?;
        }
        Ok(read(&loaded.aggregate, loaded.sequence))
    }

    /// Executes one command: decide, then append with optimistic concurrency. Does not
    /// retry; the caller decides what a conflict means.
    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &HashMap<String, String>,
    ) -> Result<Committed, ExecuteError<A::Error>> {
        self.run(aggregate_id, command, metadata, true).await
    }

    /// Executes the first command of an aggregate whose id the caller has just made up
    /// (a fresh UUID): nothing can be stored under it, so nothing is read. Were something
    /// there after all, the append would conflict and a retry with
    /// [`execute`](Self::execute) would see it.
    pub async fn create(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &HashMap<String, String>,
    ) -> Result<Committed, ExecuteError<A::Error>> {
        self.run(aggregate_id, command, metadata, false).await
    }

    async fn run(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &HashMap<String, String>,
        load: bool,
    ) -> Result<Committed, ExecuteError<A::Error>> {
        let slot = self.slot(aggregate_id);
        let mut loaded = slot.lock().await;
        if load || loaded.caught_up_at.is_some() {
            self.catch_up(aggregate_id, &mut loaded).await?;
        }

        let mut aggregate = loaded.aggregate.clone();
        let sink = EventSink::default();
        aggregate
            .handle(command, &self.services, &sink)
            .await
            .map_err(ExecuteError::Domain)?;
        let facts = sink.collect().await;
        if facts.is_empty() {
            return Ok(Committed {
                last_sequence: loaded.sequence,
                appended: 0,
            });
        }

        let mut metadata = metadata.clone();
        metadata.insert(
            "recorded_at".into(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        );
        let mut serialized = Vec::with_capacity(facts.len());
        for (fact, sequence) in facts.into_iter().zip(loaded.sequence + 1..) {
            let envelope = EventEnvelope::<A> {
                aggregate_id: aggregate_id.to_owned(),
                sequence,
                payload: fact,
                metadata: metadata.clone(),
            };
            serialized.push(SerializedEvent::try_from(&envelope)?);
        }

        self.append(aggregate_id, &serialized).await?;
        let appended = serialized.len();
        loaded.aggregate = aggregate;
        loaded.sequence += appended;
        loaded.caught_up_at = Some(Instant::now());
        self.appended.notify_one();
        for event in serialized {
            self.metrics
                .events_appended
                .get_or_create(&EventLabels {
                    aggregate_type: A::TYPE,
                    event_type: event.event_type,
                })
                .inc();
        }
        Ok(Committed {
            last_sequence: loaded.sequence,
            appended,
        })
    }

    /// Appends `events` (consecutive sequences of one aggregate) in one statement.
    async fn append(
        &self,
        aggregate_id: &str,
        events: &[SerializedEvent],
    ) -> Result<(), ExecuteError<A::Error>> {
        let sequences: Vec<i64> = events.iter().map(|e| e.sequence as i64).collect();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let versions: Vec<&str> = events.iter().map(|e| e.event_version.as_str()).collect();
        let payloads: Vec<&Value> = events.iter().map(|e| &e.payload).collect();
        let metadata: Vec<&Value> = events.iter().map(|e| &e.metadata).collect();
        let outcome = sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT $1, $2, s, t, v, p, m
               FROM unnest($3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[]) AS u(s, t, v, p, m)",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(&sequences)
        .bind(&types)
        .bind(&versions)
        .bind(&payloads)
        .bind(&metadata)
        .execute(&self.pool)
        .await;
        match outcome {
            Ok(_) => Ok(()),
            // The loaded state stays as it was: the next catch-up reads what the other
            // writer appended.
            Err(err) if has_sqlstate(&err, UNIQUE_VIOLATION) => Err(ExecuteError::Conflict),
            Err(err) if has_sqlstate(&err, KEY_TAKEN_SQLSTATE) => {
                Err(ExecuteError::IdempotencyKeyTaken)
            }
            Err(err) => Err(ExecuteError::Store(PersistenceError::UnknownError(
                Box::new(err),
            ))),
        }
    }

    /// Applies the events appended since `loaded` was last brought up to date.
    async fn catch_up(
        &self,
        aggregate_id: &str,
        loaded: &mut Loaded<A>,
    ) -> Result<(), PersistenceError> {
        let events = self
            .repo
            .get_last_events::<A>(aggregate_id, loaded.sequence)
            .await?;
        for event in events {
            let event = domain::upcast::upcast_serialized(event);
            let envelope = EventEnvelope::<A>::try_from(event)?;
            loaded.aggregate.apply(envelope.payload);
            loaded.sequence = envelope.sequence;
        }
        loaded.caught_up_at = Some(Instant::now());
        Ok(())
    }

    fn slot(&self, aggregate_id: &str) -> Arc<Mutex<Loaded<A>>> {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slots.len() >= CACHED_AGGREGATES && !slots.contains_key(aggregate_id) {
            // Drop every slot nobody is using; the busy ones are the hot ones.
            slots.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        slots
            .entry(aggregate_id.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(Loaded::default())))
            .clone()
    }
}

/// Whether the database refused with SQLSTATE `code`.
fn has_sqlstate(err: &sqlx::Error, code: &str) -> bool {
    err.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|c| c == code)
}
