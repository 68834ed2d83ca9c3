//! Reading the event store, the truth behind the read models: one stream's events to
//! fill a gap, and the whole store in an order that never skips an event.
//!
//! Positions are taken at insert time and transactions commit in any order, so a reader
//! walking by position alone could pass a position whose transaction commits later.
//! Walking by `(transaction_id, position)` and stopping before the oldest transaction
//! still running ([`EventStore::final_after`]) cannot: every transaction older than that
//! has ended, so nothing can appear behind the cursor any more. A stream's events are in
//! sequence order in that walk too: the transaction appending sequence n+1 had to read
//! n committed first, so it got its transaction id after n's.

use domain::metadata::EventMetadata;
use platform::kafka::WireEvent;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{FromRow, PgPool, Row};
use uuid::Uuid;

/// A place in the `(transaction_id, position)` walk of the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// The appending transaction's id (`xid8`, as a number).
    pub transaction_id: i64,
    /// The event's position.
    pub position: i64,
}

/// Which fact versions a build reads: `(event_type, event_version) -> bool`.
pub type Reads = fn(&str, &str) -> bool;

/// The event store, read-only.
#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
    /// Which fact versions this projector reads ([`domain::upcast::readable`]); an
    /// event of another version is parked. Tests stand in for an older build with a
    /// narrower one.
    pub reads: Reads,
}

const COLUMNS: &str = "(transaction_id::text)::bigint AS transaction_id, position, aggregate_type,
                       aggregate_id, sequence, event_type, event_version, payload, metadata";

fn wire(row: &PgRow) -> sqlx::Result<(Cursor, WireEvent)> {
    Ok((
        Cursor {
            transaction_id: row.try_get("transaction_id")?,
            position: row.try_get("position")?,
        },
        WireEvent::from_row(row)?,
    ))
}

impl EventStore {
    /// The store behind `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            reads: domain::upcast::readable,
        }
    }

    /// The pool, for health checks.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// One stream's events with `after < sequence <= through`, in order.
    pub async fn stream(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        after: i64,
        through: i64,
    ) -> sqlx::Result<Vec<WireEvent>> {
        let rows = sqlx::query!(
            r#"SELECT position, aggregate_type, aggregate_id, sequence, event_type, event_version,
                      payload, metadata AS "metadata: Json<EventMetadata>"
                 FROM events
                WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 AND sequence <= $4
                ORDER BY sequence"#,
            aggregate_type,
            aggregate_id.to_string(),
            after,
            through
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| WireEvent {
                position: row.position,
                aggregate_type: row.aggregate_type,
                aggregate_id: row.aggregate_id,
                sequence: row.sequence,
                event_type: row.event_type,
                event_version: row.event_version,
                payload: row.payload,
                metadata: row.metadata.0,
            })
            .collect())
    }

    /// Up to `limit` final events of `aggregate_types` after `cursor`: events of
    /// transactions older than every transaction still running.
    pub async fn final_after(
        &self,
        cursor: Cursor,
        aggregate_types: &[&str],
        limit: i64,
    ) -> sqlx::Result<Vec<(Cursor, WireEvent)>> {
        self.after(cursor, aggregate_types, limit, true).await
    }

    /// Up to `limit` events of `aggregate_types` after `cursor` that are visible now,
    /// final or not. Events committing later may still appear behind them.
    pub async fn visible_after(
        &self,
        cursor: Cursor,
        aggregate_types: &[&str],
        limit: i64,
    ) -> sqlx::Result<Vec<(Cursor, WireEvent)>> {
        self.after(cursor, aggregate_types, limit, false).await
    }

    async fn after(
        &self,
        cursor: Cursor,
        aggregate_types: &[&str],
        limit: i64,
        only_final: bool,
    ) -> sqlx::Result<Vec<(Cursor, WireEvent)>> {
        // Runtime-bound: the text depends on `only_final`.
        let horizon = if only_final {
            "AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())"
        } else {
            ""
        };
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM events
              WHERE (transaction_id, position) > ((($1::bigint)::text)::xid8, $2)
                AND aggregate_type = ANY($3)
                {horizon}
              ORDER BY events.transaction_id, events.position
              LIMIT $4"
        ))
        .bind(cursor.transaction_id)
        .bind(cursor.position)
        .bind(aggregate_types)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(wire).collect()
    }

    /// How many events of `aggregate_type` there are.
    pub async fn count(&self, aggregate_type: &str) -> sqlx::Result<i64> {
        sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM events WHERE aggregate_type = $1"#,
            aggregate_type
        )
        .fetch_one(&self.pool)
        .await
    }

    /// How many events of `aggregate_type` have a position past `position`.
    pub async fn count_after(&self, aggregate_type: &str, position: i64) -> sqlx::Result<i64> {
        sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM events WHERE position > $2 AND aggregate_type = $1"#,
            aggregate_type,
            position
        )
        .fetch_one(&self.pool)
        .await
    }
}
