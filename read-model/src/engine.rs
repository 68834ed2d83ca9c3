//! Applying a batch of events to the read models, in one transaction of the caller's.
//!
//! The same code serves the Kafka consumer, the sweep through the store, and rebuilds,
//! so all three produce the same rows. For each stream in the batch: load its row, skip
//! what the row already has (duplicates, redeliveries), fill a gap from the event store
//! (the truth), apply the rest in sequence order, and write the row back, which the
//! store only accepts if it moved forward. An event that cannot be applied is parked
//! (`parked_events`): its stream stops there, the others go on.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use platform::kafka::WireEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projection::Projection;
use crate::store::EventStore;
use crate::views::{recorded_at, BookingRow, EventRow, LocationRow, UserRow, View};

/// The channel notified when live read models moved (query-api's watcher listens).
pub const PROJECTED_CHANNEL: &str = "boxoffice_projected";

/// Where a batch goes: the live tables, or the fresh tables a rebuild fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The tables queries read.
    Live,
    /// `<table>__rebuild`, swapped in when a rebuild ends.
    Rebuild,
}

impl Target {
    /// The table of `V` for this target.
    pub fn table<V: View>(self) -> String {
        match self {
            Self::Live => V::TABLE.to_owned(),
            Self::Rebuild => rebuild_table(V::TABLE),
        }
    }
}

/// The name of the table a rebuild of `table` fills.
pub fn rebuild_table(table: &str) -> String {
    format!("{table}__rebuild")
}

/// What a batch did to one projection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// Events applied (duplicates and redeliveries not counted).
    pub events: u64,
    /// Gaps filled from the event store.
    pub gaps: u64,
    /// Events that could not be applied and were parked (their streams stop there).
    pub errors: u64,
    /// The highest store position applied.
    pub max_position: i64,
    /// The newest `recorded_at` applied.
    pub newest: Option<DateTime<Utc>>,
}

/// Applies `events` to every projection that consumes them. Returns what happened per
/// projection that had events.
pub async fn apply_batch(
    conn: &mut PgConnection,
    store: &EventStore,
    target: Target,
    events: &[WireEvent],
) -> anyhow::Result<Vec<(Projection, Applied)>> {
    let mut applied = Vec::new();
    for projection in Projection::ALL {
        let outcome = match projection {
            Projection::Locations => apply_view::<LocationRow>(conn, store, target, events).await?,
            Projection::Events => apply_view::<EventRow>(conn, store, target, events).await?,
            Projection::Bookings => apply_view::<BookingRow>(conn, store, target, events).await?,
            Projection::Users => apply_view::<UserRow>(conn, store, target, events).await?,
        };
        if let Some(outcome) = outcome {
            applied.push((projection, outcome));
        }
    }
    if target == Target::Live {
        if applied.iter().any(|(_, a)| a.events > 0) {
            // Wakes query-api's read-your-writes watcher when this transaction commits.
            sqlx::query!("SELECT pg_notify($1, '')", PROJECTED_CHANNEL)
                .execute(&mut *conn)
                .await?;
        }
        for (projection, outcome) in &applied {
            sqlx::query!(
                "UPDATE projection_status
                    SET applied_position = GREATEST(applied_position, $2),
                        applied_events = applied_events + $3,
                        last_applied_at = now(),
                        last_event_at = GREATEST(last_event_at, $4)
                  WHERE name = $1",
                projection.name(),
                outcome.max_position,
                i64::try_from(outcome.events).unwrap_or(i64::MAX),
                outcome.newest
            )
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(applied)
}

/// Applies the events of `V`'s aggregate type; `None` when there were none.
async fn apply_view<V: View>(
    conn: &mut PgConnection,
    store: &EventStore,
    target: Target,
    events: &[WireEvent],
) -> anyhow::Result<Option<Applied>> {
    let mut streams: BTreeMap<Uuid, Vec<&WireEvent>> = BTreeMap::new();
    for event in events
        .iter()
        .filter(|e| e.aggregate_type == V::AGGREGATE_TYPE)
    {
        match Uuid::parse_str(&event.aggregate_id) {
            Ok(id) => streams.entry(id).or_default().push(event),
            Err(_) => tracing::error!(
                aggregate_id = %event.aggregate_id,
                position = event.position,
                "an event whose aggregate id is not a UUID; ignored"
            ),
        }
    }
    if streams.is_empty() {
        return Ok(None);
    }

    let table = target.table::<V>();
    let ids: Vec<Uuid> = streams.keys().copied().collect();
    let mut rows: HashMap<Uuid, V> = V::load(conn, &table, &ids)
        .await?
        .into_iter()
        .map(|row| (row.id(), row))
        .collect();

    let mut outcome = Applied::default();
    let mut changed = Vec::new();
    let mut flowing = Vec::new();
    for (id, mut batch) in streams {
        batch.sort_by_key(|e| e.sequence);
        let mut row = rows.remove(&id);
        let known = row.as_ref().map_or(0, View::last_sequence);
        let newest = batch.last().map_or(0, |e| e.sequence);
        if newest <= known {
            continue; // all of it is applied already
        }
        let fresh = dedup(batch.into_iter().filter(|e| e.sequence > known).collect());
        let contiguous = fresh
            .iter()
            .zip(known + 1..)
            .all(|(event, expected)| event.sequence == expected);
        let filled;
        let pending: Vec<&WireEvent> = if contiguous {
            fresh
        } else {
            tracing::info!(projection = %V::PROJECTION, %id, after = known, through = newest, "gap in the stream; reading it from the event store");
            outcome.gaps += 1;
            filled = store.stream(V::AGGREGATE_TYPE, id, known, newest).await?;
            filled.iter().collect()
        };

        let mut parked = false;
        for event in pending {
            let applied = if (store.reads)(&event.event_type, &event.event_version) {
                V::apply(&mut row, id, event).map_err(|err| err.to_string())
            } else {
                Err(format!(
                    "{} version {} is newer than this projector reads",
                    event.event_type, event.event_version
                ))
            };
            match applied {
                Ok(()) => {
                    outcome.events += 1;
                    outcome.max_position = outcome.max_position.max(event.position);
                    if let Ok(at) = recorded_at(event) {
                        outcome.newest = outcome.newest.max(Some(at));
                    }
                }
                Err(error) => {
                    // The stream stops here (its row keeps what came before); the
                    // others go on. Tried again later, see `crate::parked`.
                    outcome.errors += 1;
                    tracing::error!(
                        projection = %V::PROJECTION, %id, sequence = event.sequence,
                        position = event.position, event_type = %event.event_type,
                        cause = %error, "cannot apply an event; parked, its stream waits"
                    );
                    park(conn, V::PROJECTION.name(), id, event, &error).await?;
                    parked = true;
                    break;
                }
            }
        }
        if !parked {
            flowing.push(id);
        }
        if let Some(row) = row.filter(|r| r.last_sequence() > known) {
            changed.push(row);
        }
    }
    if !changed.is_empty() {
        V::store(conn, &table, &changed).await?;
    }
    // A stream that flowed past its parked event (a retry, a newer build) is unparked.
    // Only for the live tables: a rebuild's table is not what queries read yet.
    if target == Target::Live && !flowing.is_empty() {
        sqlx::query!(
            "DELETE FROM parked_events WHERE projection = $1 AND aggregate_id = ANY($2)",
            V::PROJECTION.name(),
            &flowing
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(Some(outcome))
}

/// Records `event` of stream `id` as parked for `projection` (once; a failed retry
/// counts an attempt).
async fn park(
    conn: &mut PgConnection,
    projection: &str,
    id: Uuid,
    event: &WireEvent,
    error: &str,
) -> sqlx::Result<()> {
    // A stream parks at one event at a time: an older parking of it applied since.
    sqlx::query!(
        "DELETE FROM parked_events WHERE projection = $1 AND aggregate_id = $2 AND position <> $3",
        projection,
        id,
        event.position
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO parked_events (position, projection, aggregate_type, aggregate_id, sequence,
                                    event_type, event_version, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (position) DO UPDATE
            SET attempts = parked_events.attempts + 1, error = EXCLUDED.error,
                last_attempt_at = now()",
        event.position,
        projection,
        &event.aggregate_type,
        id,
        event.sequence,
        &event.event_type,
        &event.event_version,
        error
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Keeps the first of each sequence (a message delivered twice in one batch).
fn dedup(mut events: Vec<&WireEvent>) -> Vec<&WireEvent> {
    events.dedup_by_key(|e| e.sequence);
    events
}
