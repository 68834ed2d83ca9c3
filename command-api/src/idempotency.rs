//! `Idempotency-Key` records.
//!
//! An accepted command's record is written by command-api in the statement that appends
//! its events (`domain::policy::key_record` decides it; `crate::append` writes it): it
//! names the aggregate and its last sequence, from which the first answer is rendered
//! again. A refused command
//! appends nothing; its record keeps the status and body of the refusal. Records expire
//! after `BOXOFFICE_IDEMPOTENCY_TTL_HOURS`.

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;

/// How the first request with a key ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It was accepted; its events went to this aggregate, up to this sequence.
    Accepted {
        /// The aggregate's id.
        aggregate_id: String,
        /// Its last event.
        last_sequence: i64,
    },
    /// It was refused with this answer.
    Refused {
        /// HTTP status.
        status: u16,
        /// The error envelope.
        body: Value,
    },
}

/// A stored key.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The fingerprint of the first request.
    pub fingerprint: String,
    /// How it ended.
    pub outcome: Outcome,
}

/// The record of `user_id`'s `key`, if any.
pub async fn find(pool: &PgPool, user_id: &str, key: &str) -> sqlx::Result<Option<Record>> {
    let row = sqlx::query!(
        "SELECT request_fingerprint, aggregate_id, last_sequence, response_status, response_body
           FROM idempotency_keys
          WHERE user_id = $1 AND idempotency_key = $2",
        user_id,
        key
    )
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    // The table's CHECK makes a record either accepted (with its sequence) or refused
    // (with its answer); anything else is a row this code cannot answer from.
    let outcome = match (row.last_sequence, row.aggregate_id, row.response_status) {
        (Some(last_sequence), Some(aggregate_id), _) => Outcome::Accepted {
            aggregate_id,
            last_sequence,
        },
        (None, _, Some(status)) => Outcome::Refused {
            status: u16::try_from(status).unwrap_or(500),
            body: row.response_body.unwrap_or(Value::Null),
        },
        _ => {
            return Err(sqlx::Error::Decode(
                format!("idempotency record {key:?} is neither accepted nor refused").into(),
            ))
        }
    };
    Ok(Some(Record {
        fingerprint: row.request_fingerprint,
        outcome,
    }))
}

/// Remembers a refusal. Returns false when the key was recorded meanwhile (by a
/// concurrent request with the same key), in which case that record stands.
pub async fn record_refusal(
    pool: &PgPool,
    user_id: &str,
    key: &str,
    fingerprint: &str,
    request_id: &str,
    status: u16,
    body: &Value,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query!(
        "INSERT INTO idempotency_keys
                (user_id, idempotency_key, request_fingerprint, request_id, response_status, response_body)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (user_id, idempotency_key) DO NOTHING",
        user_id,
        key,
        fingerprint,
        request_id,
        i16::try_from(status).unwrap_or(500),
        body
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Forgets keys older than `ttl`. Returns how many.
pub async fn expire(pool: &PgPool, ttl: Duration) -> sqlx::Result<u64> {
    let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    Ok(sqlx::query!(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
        secs as f64
    )
    .execute(pool)
    .await?
    .rows_affected())
}
