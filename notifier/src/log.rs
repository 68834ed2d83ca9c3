//! The sent log: taking due notifications with a lease, recording how each ended, and
//! what operators see and do (`notifier status`, `retry`, `resend`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::mail::Kind;

/// A notification taken to be sent.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The booking.
    pub booking_id: Uuid,
    /// The announced fact's sequence in the booking's stream.
    pub sequence: i64,
    /// Which message.
    pub kind: Kind,
    /// This attempt's number, from 1.
    pub attempts: i32,
    /// Its Message-ID.
    pub message_id: String,
}

/// How a notification's attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// The SMTP server took it.
    Sent,
    /// Try again after a while.
    Retry {
        /// How long to wait.
        after: Duration,
        /// What failed.
        error: String,
    },
    /// Given up on until an operator retries it.
    Parked(String),
    /// The booking carries no e-mail address.
    NoContact,
    /// The user was erased.
    Erased,
}

/// Takes up to `limit` due notifications for `lease`: of each booking, only the one of
/// its earliest fact not yet sent (nor given up on for good).
pub async fn claim(log: &PgPool, limit: i64, lease: Duration) -> sqlx::Result<Vec<Claimed>> {
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    let rows: Vec<(Uuid, i64, String, i32, String)> = sqlx::query_as(
        "UPDATE notifications n
            SET lease_until = now() + make_interval(secs => $2), attempts = n.attempts + 1
          WHERE (n.booking_id, n.sequence) IN (
                SELECT booking_id, sequence FROM notifications d
                 WHERE status = 'pending' AND next_attempt_at <= now()
                   AND (lease_until IS NULL OR lease_until <= now())
                   -- Kinds a newer build wrote wait for that build.
                   AND kind = ANY($3)
                   -- A booking's messages go out in the order of its facts: the
                   -- refund never before the confirmation, even one that is parked
                   -- (an operator's retry of it would come after the refund).
                   AND NOT EXISTS (SELECT 1 FROM notifications e
                                    WHERE e.booking_id = d.booking_id AND e.sequence < d.sequence
                                      AND e.status IN ('pending', 'parked'))
                 ORDER BY next_attempt_at, position
                 LIMIT $1
                   FOR UPDATE SKIP LOCKED)
         RETURNING n.booking_id, n.sequence, n.kind, n.attempts, n.message_id",
    )
    .bind(limit)
    .bind(lease.as_secs_f64())
    .bind(&kinds)
    .fetch_all(log)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(booking_id, sequence, kind, attempts, message_id)| {
            Some(Claimed {
                booking_id,
                sequence,
                kind: Kind::parse(&kind)?,
                attempts,
                message_id,
            })
        })
        .collect())
}

/// Records how `claim`'s attempt ended, and lets go of its lease. False when the
/// notification is no longer this attempt's (its lease ran out and another sender
/// took it, or an operator asked for it again): nothing is recorded then.
pub async fn record(log: &PgPool, claim: &Claimed, end: &End) -> sqlx::Result<bool> {
    let (status, wait, error, sent) = match end {
        End::Sent => ("sent", 0.0, None, true),
        End::Retry { after, error } => {
            ("pending", after.as_secs_f64(), Some(error.as_str()), false)
        }
        End::Parked(error) => ("parked", 0.0, Some(error.as_str()), false),
        End::NoContact => ("no_contact", 0.0, None, false),
        End::Erased => ("erased", 0.0, None, false),
    };
    let recorded = sqlx::query(
        "UPDATE notifications
            SET status = $3, lease_until = NULL, last_error = $5,
                next_attempt_at = now() + make_interval(secs => $4),
                sent_at = CASE WHEN $6 THEN now() ELSE sent_at END
          WHERE booking_id = $1 AND sequence = $2 AND status = 'pending' AND attempts = $7",
    )
    .bind(claim.booking_id)
    .bind(claim.sequence)
    .bind(status)
    .bind(wait)
    .bind(error)
    .bind(sent)
    .bind(claim.attempts)
    .execute(log)
    .await?
    .rows_affected();
    Ok(recorded == 1)
}

/// The organiser's reason for cancelling `event_id`, once it is cancelled.
pub async fn event_cancellation(store: &PgPool, event_id: Uuid) -> anyhow::Result<Option<String>> {
    let payload: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT payload FROM events
          WHERE aggregate_type = 'event' AND aggregate_id = $1 AND event_type = 'EventCancelled'
          ORDER BY sequence LIMIT 1",
    )
    .bind(event_id.to_string())
    .fetch_optional(store)
    .await?;
    Ok(payload.and_then(|p| {
        p.pointer("/EventCancelled/reason")
            .and_then(|r| r.as_str())
            .map(str::to_owned)
    }))
}

/// Counts of notifications by status and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    /// `pending`, `sent`, `parked`, `no_contact`, `erased`.
    pub status: String,
    /// Which message.
    pub kind: String,
    /// How many.
    pub count: i64,
}

/// A parked notification, for an operator.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Parked {
    /// The booking.
    pub booking_id: Uuid,
    /// The fact's sequence.
    pub sequence: i64,
    /// Which message.
    pub kind: String,
    /// Attempts made.
    pub attempts: i32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When the fact was taken in.
    pub created_at: DateTime<Utc>,
}

/// What `notifier status` shows.
#[derive(Debug, Clone)]
pub struct Status {
    /// Counts by status and kind.
    pub counts: Vec<Count>,
    /// The parked notifications, oldest first (at most 100).
    pub parked: Vec<Parked>,
    /// Age of the oldest pending notification, in seconds.
    pub oldest_pending_seconds: f64,
}

/// The log's state.
pub async fn status(log: &PgPool) -> sqlx::Result<Status> {
    let counts: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT status, kind, count(*) FROM notifications GROUP BY status, kind ORDER BY status, kind",
    )
    .fetch_all(log)
    .await?;
    let parked: Vec<Parked> = sqlx::query_as(
        "SELECT booking_id, sequence, kind, attempts, last_error, created_at FROM notifications
          WHERE status = 'parked' ORDER BY created_at LIMIT 100",
    )
    .fetch_all(log)
    .await?;
    let oldest: f64 = sqlx::query_scalar(
        "SELECT coalesce(extract(epoch FROM now() - min(pending_since))::float8, 0)
           FROM notifications WHERE status = 'pending'",
    )
    .fetch_one(log)
    .await?;
    Ok(Status {
        counts: counts
            .into_iter()
            .map(|(status, kind, count)| Count {
                status,
                kind,
                count,
            })
            .collect(),
        parked,
        oldest_pending_seconds: oldest,
    })
}

/// Gauges' values: pending, parked, and the oldest pending's age in seconds.
pub async fn gauges(log: &PgPool) -> sqlx::Result<(i64, i64, f64)> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'pending'),
                count(*) FILTER (WHERE status = 'parked'),
                coalesce(extract(epoch FROM now() - min(pending_since) FILTER (WHERE status = 'pending'))::float8, 0)
           FROM notifications WHERE status IN ('pending', 'parked')",
    )
    .fetch_one(log)
    .await
}

/// Puts parked notifications (of one booking, or all) back to be sent now. Returns how
/// many.
pub async fn retry_parked(log: &PgPool, booking_id: Option<Uuid>) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "UPDATE notifications
            SET status = 'pending', attempts = 0, next_attempt_at = now(), lease_until = NULL,
                pending_since = now()
          WHERE status = 'parked' AND ($1::uuid IS NULL OR booking_id = $1)",
    )
    .bind(booking_id)
    .execute(log)
    .await?
    .rows_affected())
}

/// Sends one booking's notifications again, on purpose, with their Message-IDs (those
/// that ended without a message, no contact or erased, stay as they are). Returns how
/// many.
pub async fn resend(log: &PgPool, booking_id: Uuid) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "UPDATE notifications
            SET status = 'pending', attempts = 0, next_attempt_at = now(), lease_until = NULL,
                pending_since = now(), resends = resends + 1
          WHERE booking_id = $1 AND status IN ('sent', 'parked')",
    )
    .bind(booking_id)
    .execute(log)
    .await?
    .rows_affected())
}
