//! Reading the event store, the truth behind the read models: one stream's events to
//! fill a gap, and the whole store in an order that never skips an event.
//!
//! Positions are taken at insert time and transactions commit in any order, so a reader
//! walking by position alone could pass a position whose transaction commits later.
//! Walking by `(transaction_id, position)` and stopping before the oldest transaction
//! that may still add events ([`horizon`], [`EventStore::final_after`]) cannot: every transaction older than that
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

/// The oldest transaction that may still add events to the store behind `pool`, as an
/// `xid8` number: every transaction before it has ended, or runs in another database.
///
/// Transaction ids are server-wide, so the oldest transaction running on the server may
/// belong to another database on it (a long rebuild of read models kept there, another
/// application's session left open). It cannot add events here, yet counting it would
/// hold back every reader of this store for as long as it runs. So the snapshot's running
/// transactions are looked at one by one: one that has ended since is left out (the
/// reader's next statement sees its events), and so is one whose session is connected
/// to another database. Any other counts (a prepared transaction, one ending while this
/// looks, autovacuum's in this database), which at worst makes a reader wait for its
/// next round.
///
/// One statement, on the pool (never inside a transaction): its snapshot is taken
/// before the sessions are read, so a transaction it lists as running already had its
/// session; the session's transaction id and database come from one row; and
/// `pg_stat_activity` is read afresh (a transaction would keep its first reading).
pub async fn horizon(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT (coalesce(min(running), pg_snapshot_xmax(pg_current_snapshot()))::text)::bigint AS "horizon!"
             FROM pg_snapshot_xip(pg_current_snapshot()) running
            WHERE pg_xact_status(running) = 'in progress'
              AND NOT EXISTS (
                  SELECT FROM pg_stat_activity session
                   WHERE session.backend_xid = ((((running::text)::bigint % 4294967296))::text)::xid
                     AND session.datname <> current_database())"#
    )
    .fetch_one(pool)
    .await
}

/// The event store, read-only.
#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
    /// Which fact versions this projector reads ([`domain::upcast::readable`]); an
    /// event of another version is parked. Tests stand in for an older build with a
    /// narrower one.
    pub reads: Reads,
}

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
        let horizon = horizon(&self.pool).await?;
        self.after(cursor, aggregate_types, limit, Some(horizon))
            .await
    }

    /// Up to `limit` events of `aggregate_types` after `cursor` that are visible now,
    /// final or not. Events committing later may still appear behind them.
    pub async fn visible_after(
        &self,
        cursor: Cursor,
        aggregate_types: &[&str],
        limit: i64,
    ) -> sqlx::Result<Vec<(Cursor, WireEvent)>> {
        self.after(cursor, aggregate_types, limit, None).await
    }

    async fn after(
        &self,
        cursor: Cursor,
        aggregate_types: &[&str],
        limit: i64,
        before: Option<i64>,
    ) -> sqlx::Result<Vec<(Cursor, WireEvent)>> {
        // Not a query macro: the rows are read by `WireEvent`'s `FromRow`, the shape the
        // relay publishes.
        let rows = sqlx::query(
            "SELECT (transaction_id::text)::bigint AS transaction_id, position, aggregate_type,
                    aggregate_id, sequence, event_type, event_version, payload, metadata
               FROM events
              WHERE (transaction_id, position) > ((($1::bigint)::text)::xid8, $2)
                AND aggregate_type = ANY($3)
                AND ($5::bigint IS NULL OR transaction_id < (($5::bigint)::text)::xid8)
              ORDER BY events.transaction_id, events.position
              LIMIT $4",
        )
        .bind(cursor.transaction_id)
        .bind(cursor.position)
        .bind(aggregate_types)
        .bind(limit)
        .bind(before)
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
