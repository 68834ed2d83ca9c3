//! An aggregate's state at a point of its history: its events up to a sequence, or up
//! to a time (their `recorded_at`), replayed one by one through the upcasters into a
//! fresh aggregate, as the command side loads it. Events are streamed, not collected:
//! a long stream (a hot event's seat ledger) replays in constant memory.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::booking::Booking;
use domain::event::Event;
use domain::location::Location;
use domain::user::UserData;
use futures::TryStreamExt;
use serde_json::Value;
use sqlx::PgPool;

/// Where to stop.
#[derive(Debug, Clone, Copy)]
pub enum Point {
    /// After the event of this sequence (or the last one, if the stream is shorter).
    Sequence(i64),
    /// After the last event recorded at or before this time.
    Time(DateTime<Utc>),
    /// After the last event.
    End,
}

/// The state replayed, and the sequence of the last event applied.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Replayed {
    /// The last event applied.
    pub sequence: i64,
    /// The aggregate's state after it, as the aggregate serializes it.
    pub state: Value,
}

/// Why a state could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Not one of the store's aggregate types.
    #[error("there is no aggregate type {0:?}")]
    UnknownType(String),
    /// The stream has no event at or before the point.
    #[error("the stream has no event at or before that point")]
    NothingBefore,
    /// A stored event this code cannot read (even upcast).
    #[error("event {sequence} cannot be read: {cause}")]
    Decode {
        /// The event.
        sequence: i64,
        /// What is wrong with it.
        cause: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// The state of `aggregate_type`/`aggregate_id` at `point`.
pub async fn state_at(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    point: Point,
) -> Result<Replayed, ReplayError> {
    match aggregate_type {
        "location" => replay::<Location>(pool, aggregate_id, point).await,
        "event" => replay::<Event>(pool, aggregate_id, point).await,
        "booking" => replay::<Booking>(pool, aggregate_id, point).await,
        "user" => replay::<UserData>(pool, aggregate_id, point).await,
        other => Err(ReplayError::UnknownType(other.to_owned())),
    }
}

async fn replay<A: Aggregate>(
    pool: &PgPool,
    aggregate_id: &str,
    point: Point,
) -> Result<Replayed, ReplayError> {
    let through = match point {
        Point::Sequence(n) => n,
        Point::Time(_) | Point::End => i64::MAX,
    };
    // The metadata key is a parameter (not spelled into the text), so the statement is
    // fixed and checked.
    let mut rows = sqlx::query!(
        "SELECT sequence, event_type, event_version, payload, metadata ->> $4::text AS recorded_at
           FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence <= $3
          ORDER BY sequence",
        A::TYPE,
        aggregate_id,
        through,
        domain::metadata::key::RECORDED_AT
    )
    .fetch(pool);
    let mut aggregate = A::default();
    let mut last = None;
    while let Some(row) = rows.try_next().await? {
        let sequence = row.sequence;
        let decode = |cause: String| ReplayError::Decode { sequence, cause };
        if let Point::Time(at) = point {
            let recorded = row
                .recorded_at
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .ok_or_else(|| decode("no readable recorded_at in its metadata".into()))?;
            if recorded > at {
                break;
            }
        }
        let payload = domain::upcast::upcast(row.event_type, row.event_version, row.payload);
        let fact: A::Event =
            serde_json::from_value(payload).map_err(|cause| decode(cause.to_string()))?;
        aggregate.apply(fact);
        last = Some(sequence);
    }
    let sequence = last.ok_or(ReplayError::NothingBefore)?;
    let state = serde_json::to_value(&aggregate).map_err(|cause| decode_state(sequence, cause))?;
    Ok(Replayed { sequence, state })
}

fn decode_state(sequence: i64, cause: serde_json::Error) -> ReplayError {
    ReplayError::Decode {
        sequence,
        cause: format!("the state after it cannot be serialized: {cause}"),
    }
}
