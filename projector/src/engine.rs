//! Applying a batch of events to the read models, in one transaction of the caller's.
//!
//! The same code serves the Kafka consumer, the sweep through the store, and rebuilds,
//! so all three produce the same rows. For each stream in the batch: load its row, skip
//! what the row already has (duplicates, redeliveries), fill a gap from the event store
//! (the truth), apply the rest in sequence order, and write the row back, which the
//! store only accepts if it moved forward.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use platform::kafka::WireEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::store::EventStore;
use crate::views::{recorded_at, BookingRow, EventRow, LocationRow, UserRow, View};

/// The projections, by name.
pub const PROJECTIONS: [&str; 4] = [
    LocationRow::PROJECTION,
    EventRow::PROJECTION,
    BookingRow::PROJECTION,
    UserRow::PROJECTION,
];

/// The aggregate type a projection consumes, or `None` for an unknown name.
pub fn aggregate_type(projection: &str) -> Option<&'static str> {
    match projection {
        p if p == LocationRow::PROJECTION => Some(LocationRow::AGGREGATE_TYPE),
        p if p == EventRow::PROJECTION => Some(EventRow::AGGREGATE_TYPE),
        p if p == BookingRow::PROJECTION => Some(BookingRow::AGGREGATE_TYPE),
        p if p == UserRow::PROJECTION => Some(UserRow::AGGREGATE_TYPE),
        _ => None,
    }
}

/// The table of a projection, for an aggregate type: what read-your-writes waits on.
pub fn table_for_aggregate(aggregate_type: &str) -> Option<&'static str> {
    match aggregate_type {
        t if t == LocationRow::AGGREGATE_TYPE => Some(LocationRow::TABLE),
        t if t == EventRow::AGGREGATE_TYPE => Some(EventRow::TABLE),
        t if t == BookingRow::AGGREGATE_TYPE => Some(BookingRow::TABLE),
        t if t == UserRow::AGGREGATE_TYPE => Some(UserRow::TABLE),
        _ => None,
    }
}

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
    /// Events that could not be applied and were stepped over.
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
) -> anyhow::Result<Vec<(&'static str, Applied)>> {
    let mut applied = Vec::new();
    for (name, outcome) in [
        (
            LocationRow::PROJECTION,
            apply_view::<LocationRow>(conn, store, target, events).await?,
        ),
        (
            EventRow::PROJECTION,
            apply_view::<EventRow>(conn, store, target, events).await?,
        ),
        (
            BookingRow::PROJECTION,
            apply_view::<BookingRow>(conn, store, target, events).await?,
        ),
        (
            UserRow::PROJECTION,
            apply_view::<UserRow>(conn, store, target, events).await?,
        ),
    ] {
        if let Some(outcome) = outcome {
            applied.push((name, outcome));
        }
    }
    if target == Target::Live {
        for (name, outcome) in &applied {
            sqlx::query(
                "UPDATE projection_status
                    SET applied_position = GREATEST(applied_position, $2),
                        applied_events = applied_events + $3,
                        last_applied_at = now(),
                        last_event_at = GREATEST(last_event_at, $4)
                  WHERE name = $1",
            )
            .bind(name)
            .bind(outcome.max_position)
            .bind(i64::try_from(outcome.events).unwrap_or(i64::MAX))
            .bind(outcome.newest)
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
            tracing::info!(projection = V::PROJECTION, %id, after = known, through = newest, "gap in the stream; reading it from the event store");
            outcome.gaps += 1;
            filled = store.stream(V::AGGREGATE_TYPE, id, known, newest).await?;
            filled.iter().collect()
        };

        for event in pending {
            match V::apply(&mut row, id, event) {
                Ok(()) => {
                    outcome.events += 1;
                    outcome.max_position = outcome.max_position.max(event.position);
                    if let Ok(at) = recorded_at(event) {
                        outcome.newest = outcome.newest.max(Some(at));
                    }
                }
                Err(err) => {
                    outcome.errors += 1;
                    tracing::error!(
                        projection = V::PROJECTION, %id, sequence = event.sequence,
                        event_type = %event.event_type, cause = %err,
                        "cannot apply an event; stepping over it"
                    );
                    if let Some(row) = row.as_mut() {
                        row.set_last_sequence(event.sequence);
                    }
                }
            }
        }
        if let Some(row) = row.filter(|r| r.last_sequence() > known) {
            changed.push(row);
        }
    }
    if !changed.is_empty() {
        V::store(conn, &table, &changed).await?;
    }
    Ok(Some(outcome))
}

/// Keeps the first of each sequence (a message delivered twice in one batch).
fn dedup(mut events: Vec<&WireEvent>) -> Vec<&WireEvent> {
    events.dedup_by_key(|e| e.sequence);
    events
}
