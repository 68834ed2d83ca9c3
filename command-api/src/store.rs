//! Executing commands against the event store.
//!
//! This plays the part of cqrs-es's `CqrsFramework::execute`: load the aggregate from
//! its events, let it decide (`Aggregate::handle`), append what it decided through
//! postgres-es's `PostgresEventRepository`. It differs in three ways, each needed here:
//!
//! - It returns the committed sequence, which the consistency token is made of.
//! - Commands on one aggregate are serialized inside the process (one async mutex per
//!   aggregate id), so concurrent requests for a hot aggregate queue instead of
//!   colliding; optimistic concurrency still guards against other processes.
//! - The mutex also guards the aggregate as last loaded, so the next command reads only
//!   the events appended since (usually none), not the whole stream again.
//!
//! Upcasters registered with [`AggregateStore::with_upcasters`] are applied to every
//! stored event before it is deserialized, as cqrs-es's `PersistedEventStore` does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex};

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{
    EventUpcaster, PersistedEventRepository, PersistenceError, SerializedEvent,
};
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope};
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;
use tokio::sync::{Mutex, Notify};

use crate::metrics::{EventLabels, Metrics};

/// The SQLSTATE the append trigger raises when an `Idempotency-Key` is held by another
/// command (see the event-store migration).
const KEY_TAKEN_SQLSTATE: &str = "BX409";

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
}

/// Commands and reads for one aggregate type.
pub struct AggregateStore<A: Aggregate> {
    repo: PostgresEventRepository,
    upcasters: Vec<Box<dyn EventUpcaster>>,
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
            repo: PostgresEventRepository::new(pool),
            upcasters: Vec::new(),
            services,
            slots: SyncMutex::new(HashMap::new()),
            appended,
            metrics,
        }
    }

    /// Registers upcasters, in the order they apply.
    pub fn with_upcasters(mut self, upcasters: Vec<Box<dyn EventUpcaster>>) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// Reads the current state of an aggregate (the default state when it has no
    /// events) and its sequence.
    pub async fn read<R>(
        &self,
        aggregate_id: &str,
        read: impl FnOnce(&A, usize) -> R,
    ) -> Result<R, PersistenceError> {
        let slot = self.slot(aggregate_id);
        let mut loaded = slot.lock().await;
        self.catch_up(aggregate_id, &mut loaded).await?;
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
        let slot = self.slot(aggregate_id);
        let mut loaded = slot.lock().await;
        self.catch_up(aggregate_id, &mut loaded).await?;

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
        let mut event_types = Vec::with_capacity(facts.len());
        for (fact, sequence) in facts.into_iter().zip(loaded.sequence + 1..) {
            event_types.push(fact.event_type());
            let envelope = EventEnvelope::<A> {
                aggregate_id: aggregate_id.to_owned(),
                sequence,
                payload: fact,
                metadata: metadata.clone(),
            };
            serialized.push(SerializedEvent::try_from(&envelope)?);
        }

        match self.repo.persist::<A>(&serialized, None).await {
            Ok(()) => {
                let appended = serialized.len();
                loaded.aggregate = aggregate;
                loaded.sequence += appended;
                self.appended.notify_one();
                for event_type in event_types {
                    self.metrics
                        .events_appended
                        .get_or_create(&EventLabels {
                            aggregate_type: A::TYPE,
                            event_type,
                        })
                        .inc();
                }
                Ok(Committed {
                    last_sequence: loaded.sequence,
                    appended,
                })
            }
            // The loaded state stays as it was: the next catch-up reads what the other
            // writer appended.
            Err(PersistenceError::OptimisticLockError) => Err(ExecuteError::Conflict),
            Err(err) if is_key_taken(&err) => Err(ExecuteError::IdempotencyKeyTaken),
            Err(err) => Err(ExecuteError::Store(err)),
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
            let event = self.upcast(event);
            let envelope = EventEnvelope::<A>::try_from(event)?;
            loaded.aggregate.apply(envelope.payload);
            loaded.sequence = envelope.sequence;
        }
        Ok(())
    }

    fn upcast(&self, event: SerializedEvent) -> SerializedEvent {
        self.upcasters.iter().fold(event, |event, upcaster| {
            if upcaster.can_upcast(&event.event_type, &event.event_version) {
                upcaster.upcast(event)
            } else {
                event
            }
        })
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

fn is_key_taken(err: &PersistenceError) -> bool {
    let (PersistenceError::UnknownError(cause) | PersistenceError::ConnectionError(cause)) = err
    else {
        return false;
    };
    cause
        .downcast_ref::<sqlx::Error>()
        .and_then(sqlx::Error::as_database_error)
        .and_then(|db| db.code())
        .is_some_and(|code| code == KEY_TAKEN_SQLSTATE)
}
