//! One stream's events as stored: payload as written (before upcasting), metadata,
//! position and hash, in sequence order, a page at a time.

use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

/// A stored event as the audit shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct StoredEvent {
    /// Place in the store (global, increasing at append).
    pub position: i64,
    /// Place in its stream, from 1.
    pub sequence: i64,
    /// The fact's type.
    pub event_type: String,
    /// The version of the fact's shape it was stored in.
    pub event_version: String,
    /// The fact, as stored.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Who, why and when.
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// sha256 of the previous event's hash and this event, hex.
    pub hash: String,
}

/// Up to `limit` events of a stream with a sequence above `after`, and whether the
/// stream goes on after them.
pub async fn page(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    after: i64,
    limit: i64,
) -> sqlx::Result<(Vec<StoredEvent>, bool)> {
    let mut events = sqlx::query_as!(
        StoredEvent,
        r#"SELECT position, sequence, event_type, event_version, payload, metadata,
                  encode(hash, 'hex') AS "hash!"
             FROM events
            WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3
            ORDER BY sequence
            LIMIT $4"#,
        aggregate_type,
        aggregate_id,
        after,
        limit + 1
    )
    .fetch_all(pool)
    .await?;
    let more = events.len() as i64 > limit;
    events.truncate(usize::try_from(limit).unwrap_or(0));
    Ok((events, more))
}

/// Whether the stream has any event.
pub async fn exists(pool: &PgPool, aggregate_type: &str, aggregate_id: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT FROM events WHERE aggregate_type = $1 AND aggregate_id = $2)
               AS "exists!""#,
        aggregate_type,
        aggregate_id
    )
    .fetch_one(pool)
    .await
}
