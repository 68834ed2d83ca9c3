//! Executing commands against the event store.
//!
//! This plays the part of cqrs-es's `CqrsFramework::execute`: load the aggregate from
//! its events (postgres-es's `PostgresEventRepository`), let it decide
//! (`Aggregate::handle`), append what it decided. It differs where this service needs
//! it to:
//!
//! - It returns the committed sequence, which the consistency token is made of.
//! - Commands on one aggregate are serialized inside the process, and the aggregate as
//!   last loaded stays in memory, so the next command reads only the events appended
//!   since (usually none), not the whole stream again. An aggregate the caller has just
//!   given a new id is not read at all ([`AggregateStore::create`]).
//! - **Combining.** Commands that queue up for one aggregate while another is being
//!   appended are decided one after the other on the aggregate (each sees what the
//!   previous ones did, so every invariant holds) and appended together in one
//!   statement. A hot event's seat ledger takes many reservations per round trip
//!   instead of one. A command carrying an `Idempotency-Key` is appended on its own, so
//!   a key conflict never fails its neighbours. The batch is served on a task of its
//!   own: a caller that goes away cannot leave the others without an answer.
//! - The append is one `INSERT ... SELECT FROM unnest(...)` statement, atomic on its
//!   own, where postgres-es sends BEGIN, one INSERT per event and COMMIT. The rows are
//!   the ones postgres-es writes and reads, and the key
//!   `(aggregate_type, aggregate_id, sequence)` is the same optimistic lock against
//!   other processes. Appends of different aggregates that come together share that
//!   statement ([`crate::append`], group commit).
//!
//! The aggregates must refuse a command before writing any fact (they decide, then
//! write), so a refused command leaves the aggregate as it was for the next one.
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
use sqlx::PgPool;
use tokio::sync::{oneshot, watch, Mutex, OwnedMutexGuard};

use domain::metadata::EventMetadata;
use domain::policy::{self, Reacts};

use crate::append::{AppendError, Appender, Effects};
use crate::metrics::{EventLabels, Metrics};

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
    /// Too many appends are waiting: try again shortly.
    #[error("too many appends are waiting")]
    Overloaded,
    /// The store failed.
    #[error("event store: {0}")]
    Store(#[from] PersistenceError),
}

impl<E: std::error::Error> ExecuteError<E> {
    /// The same failure, for another command of the batch it befell.
    fn again(&self) -> Self {
        match self {
            Self::Conflict => Self::Conflict,
            Self::IdempotencyKeyTaken => Self::IdempotencyKeyTaken,
            Self::Overloaded => Self::Overloaded,
            // A lost connection stays one for every command of the batch (503, not 500).
            Self::Store(PersistenceError::ConnectionError(_)) => {
                Self::Store(PersistenceError::ConnectionError(self.to_string().into()))
            }
            Self::Store(PersistenceError::UnknownError(cause))
                if platform::db::error_is_transient(cause.as_ref()) =>
            {
                Self::Store(PersistenceError::ConnectionError(self.to_string().into()))
            }
            other => Self::Store(PersistenceError::UnknownError(other.to_string().into())),
        }
    }
}

/// An aggregate as loaded, with the sequence of its last applied event.
#[derive(Default)]
struct Loaded<A> {
    aggregate: A,
    sequence: usize,
    /// When it was last brought up to date with the store; `None` if never.
    caught_up_at: Option<Instant>,
}

/// A command waiting for its aggregate.
struct Request<A: Aggregate> {
    command: A::Command,
    metadata: EventMetadata,
    /// Whether the aggregate must be read first (false for a made-up new id).
    load: bool,
    reply: oneshot::Sender<Result<Committed, ExecuteError<A::Error>>>,
}

impl<A: Aggregate> Request<A> {
    /// Carries an `Idempotency-Key`: appended on its own.
    fn keyed(&self) -> bool {
        self.metadata.idempotency_key.is_some()
    }
}

/// One aggregate: its loaded state, and the commands queued for it.
struct Slot<A: Aggregate> {
    state: Arc<Mutex<Loaded<A>>>,
    queue: SyncMutex<Vec<Request<A>>>,
}

impl<A: Aggregate> Default for Slot<A> {
    fn default() -> Self {
        Self {
            state: Arc::new(Mutex::new(Loaded::default())),
            queue: SyncMutex::new(Vec::new()),
        }
    }
}

/// What the store needs of an aggregate (all of ours are): among others, facts the saga
/// policy can read ([`Reacts`]).
pub trait Storable:
    Aggregate<
        Command: Clone + Send + 'static,
        Error: Send + 'static,
        Services: 'static,
        Event: Reacts,
    > + Clone
    + 'static
{
}

impl<A> Storable for A where
    A: Aggregate<
            Command: Clone + Send + 'static,
            Error: Send + 'static,
            Services: 'static,
            Event: Reacts,
        > + Clone
        + 'static
{
}

/// Commands and reads for one aggregate type. Cheap to clone.
pub struct AggregateStore<A: Aggregate>(Arc<Inner<A>>);

impl<A: Aggregate> Clone for AggregateStore<A> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

struct Inner<A: Aggregate> {
    appender: Appender,
    repo: PostgresEventRepository,
    services: A::Services,
    slots: SyncMutex<HashMap<String, Arc<Slot<A>>>>,
    appended: watch::Sender<u64>,
    metrics: Metrics,
}

impl<A: Storable> AggregateStore<A> {
    /// A store reading from `pool` and appending through `appender`. `appended` is
    /// bumped after every commit (what the outbox relay and the saga worker wake on).
    pub fn new(
        pool: PgPool,
        appender: Appender,
        services: A::Services,
        appended: watch::Sender<u64>,
        metrics: Metrics,
    ) -> Self {
        Self(Arc::new(Inner {
            repo: PostgresEventRepository::new(pool),
            appender,
            services,
            slots: SyncMutex::new(HashMap::new()),
            appended,
            metrics,
        }))
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
        let slot = self.0.slot(aggregate_id);
        let mut loaded = slot.state.lock().await;
        if loaded.caught_up_at.is_none_or(|at| at.elapsed() >= max_age) {
            self.0.catch_up(aggregate_id, &mut loaded).await?;
        }
        Ok(read(&loaded.aggregate, loaded.sequence))
    }

    /// Executes one command: decide, then append with optimistic concurrency. Does not
    /// retry; the caller decides what a conflict means.
    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &EventMetadata,
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
        metadata: &EventMetadata,
    ) -> Result<Committed, ExecuteError<A::Error>> {
        self.run(aggregate_id, command, metadata, false).await
    }

    async fn run(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &EventMetadata,
        load: bool,
    ) -> Result<Committed, ExecuteError<A::Error>> {
        let slot = self.0.slot(aggregate_id);
        let (reply, mut answer) = oneshot::channel();
        lock(&slot.queue).push(Request {
            command,
            metadata: metadata.clone(),
            load,
            reply,
        });
        loop {
            tokio::select! {
                biased;
                answered = &mut answer => {
                    return answered.unwrap_or_else(|_| {
                        Err(ExecuteError::Store(PersistenceError::UnknownError(
                            "the command's batch was abandoned".into(),
                        )))
                    });
                }
                // Whoever holds the aggregate serves everything queued for it.
                loaded = slot.state.clone().lock_owned() => {
                    let batch = std::mem::take(&mut *lock(&slot.queue));
                    if batch.is_empty() {
                        continue; // served by the previous holder: the answer is waiting
                    }
                    let (inner, id) = (self.0.clone(), aggregate_id.to_owned());
                    let _ = tokio::spawn(async move { inner.serve(&id, loaded, batch).await }).await;
                }
            }
        }
    }
}

fn lock<T>(mutex: &SyncMutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<A> Inner<A>
where
    A: Storable,
{
    /// Decides and appends a batch of queued commands, answering each.
    async fn serve(
        &self,
        aggregate_id: &str,
        mut loaded: OwnedMutexGuard<Loaded<A>>,
        batch: Vec<Request<A>>,
    ) {
        if batch.iter().any(|r| r.load) || loaded.caught_up_at.is_some() {
            if let Err(err) = self.catch_up(aggregate_id, &mut loaded).await {
                let err = ExecuteError::<A::Error>::Store(err);
                for request in batch {
                    let _ = request.reply.send(Err(err.again()));
                }
                return;
            }
        }
        // Key-less commands in a row share an append; a keyed one goes alone.
        let mut requests = batch.into_iter().peekable();
        while let Some(first) = requests.next() {
            let mut group = vec![first];
            if !group[0].keyed() {
                while let Some(next) = requests.next_if(|r| !r.keyed()) {
                    group.push(next);
                }
            }
            self.serve_group(aggregate_id, &mut loaded, group).await;
        }
    }

    /// Decides each command of `group` in turn on the aggregate, appends every fact in
    /// one statement, answers each command.
    async fn serve_group(
        &self,
        aggregate_id: &str,
        loaded: &mut Loaded<A>,
        group: Vec<Request<A>>,
    ) {
        let recorded_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let mut working = loaded.aggregate.clone();
        let mut sequence = loaded.sequence;
        let mut serialized = Vec::new();
        let mut effects = Effects::default();
        let mut accepted = Vec::with_capacity(group.len());
        for request in group {
            let sink = EventSink::default();
            if let Err(err) = working.handle(request.command, &self.services, &sink).await {
                let _ = request.reply.send(Err(ExecuteError::Domain(err)));
                continue;
            }
            let mut metadata = request.metadata;
            // The key's record keeps the request's fingerprint; the facts do not (it
            // is about the request, not about what happened, and the facts live for
            // ever).
            let key = policy::key_record(&metadata, A::TYPE, aggregate_id, 0);
            metadata.request_fingerprint = None;
            metadata.recorded_at = Some(recorded_at.clone());
            let facts = sink.collect().await;
            let count = facts.len();
            let correlation_id = policy::correlation_id(&metadata, aggregate_id).to_owned();
            let metadata = metadata.into_map();
            for fact in facts {
                sequence += 1;
                effects
                    .reactions
                    .extend(fact.reactions(aggregate_id, &correlation_id));
                let envelope = EventEnvelope::<A> {
                    aggregate_id: aggregate_id.to_owned(),
                    sequence,
                    payload: fact,
                    metadata: metadata.clone(),
                };
                match SerializedEvent::try_from(&envelope) {
                    Ok(event) => serialized.push(event),
                    Err(err) => {
                        // Cannot happen for our facts; if it did, nothing is appended.
                        tracing::error!(cause = %err, "cannot serialize a fact");
                        let _ = request.reply.send(Err(ExecuteError::Store(err)));
                        return;
                    }
                }
            }
            if let Some(mut key) = key.filter(|_| count > 0) {
                key.last_sequence = sequence as i64;
                effects.keys.push(key);
            }
            accepted.push((request.reply, sequence, count));
        }
        if serialized.is_empty() {
            for (reply, last_sequence, appended) in accepted {
                let _ = reply.send(Ok(Committed {
                    last_sequence,
                    appended,
                }));
            }
            return;
        }

        let event_types: Vec<String> = serialized.iter().map(|e| e.event_type.clone()).collect();
        match self.append(aggregate_id, serialized, effects).await {
            Ok(()) => {
                loaded.aggregate = working;
                loaded.sequence = sequence;
                loaded.caught_up_at = Some(Instant::now());
                self.appended.send_modify(|n| *n = n.wrapping_add(1));
                self.metrics.append_batch.observe(accepted.len() as f64);
                for event_type in event_types {
                    self.metrics
                        .events_appended
                        .get_or_create(&EventLabels {
                            aggregate_type: A::TYPE,
                            event_type,
                        })
                        .inc();
                }
                for (reply, last_sequence, appended) in accepted {
                    let _ = reply.send(Ok(Committed {
                        last_sequence,
                        appended,
                    }));
                }
            }
            // The loaded state stays as it was: the next catch-up reads what the other
            // writer appended.
            Err(err) => {
                for (reply, _, _) in accepted {
                    let _ = reply.send(Err(err.again()));
                }
            }
        }
    }

    /// Appends `events` (consecutive sequences of one aggregate) with their `effects`,
    /// possibly in one statement with other aggregates' appends.
    async fn append(
        &self,
        aggregate_id: &str,
        events: Vec<SerializedEvent>,
        effects: Effects,
    ) -> Result<(), ExecuteError<A::Error>> {
        self.appender
            .append(A::TYPE, aggregate_id, events, effects)
            .await
            .map_err(|err| match err {
                AppendError::Conflict => ExecuteError::Conflict,
                AppendError::KeyTaken => ExecuteError::IdempotencyKeyTaken,
                AppendError::Overloaded => ExecuteError::Overloaded,
                AppendError::Store(err) => {
                    ExecuteError::Store(PersistenceError::UnknownError(Box::new(err)))
                }
            })
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

    fn slot(&self, aggregate_id: &str) -> Arc<Slot<A>> {
        let mut slots = lock(&self.slots);
        if slots.len() >= CACHED_AGGREGATES && !slots.contains_key(aggregate_id) {
            // Drop every slot nobody is using; the busy ones are the hot ones.
            slots.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        slots.entry(aggregate_id.to_owned()).or_default().clone()
    }
}
