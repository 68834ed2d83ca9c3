//! Asking for a rebuild of a projection; a projector service runs it (see the
//! projector's `rebuild` module for how: a fresh table filled from the event store and
//! swapped in). Progress is in [`crate::status`].

use std::time::Duration;

use sqlx::PgPool;

use crate::projection::{Projection, UnknownProjection};

/// Why a rebuild did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// No projection has that name.
    #[error(transparent)]
    Unknown(#[from] UnknownProjection),
    /// Another rebuild of the projection runs, or took this request.
    #[error("a rebuild of {0} is already running")]
    Busy(String),
    /// The `Idempotency-Key` was used before for a different request.
    #[error("this Idempotency-Key was used for a different request")]
    KeyReused,
    /// It failed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<sqlx::Error> for RebuildError {
    fn from(err: sqlx::Error) -> Self {
        Self::Failed(err.into())
    }
}

/// Who asked for a rebuild under an `Idempotency-Key`, and what exactly they asked
/// (the request's fingerprint: method, path, body).
#[derive(Debug, Clone, Copy)]
pub struct RequestKey<'a> {
    /// The token's subject.
    pub user_id: &'a str,
    /// The key.
    pub key: &'a str,
    /// The request's fingerprint.
    pub fingerprint: &'a str,
    /// How long the key is remembered.
    pub ttl: Duration,
}

/// Asks for a rebuild of `name`, to be run by a projector service. Asking while one is
/// requested or running returns that one. With a `key` the same user used before for
/// the same request, returns the rebuild that request got, and asks for nothing; with
/// one used for another request, [`RebuildError::KeyReused`]. Returns the rebuild's id.
pub async fn request(
    read: &PgPool,
    name: &str,
    key: Option<RequestKey<'_>>,
) -> Result<i64, RebuildError> {
    let mut tx = read.begin().await?;
    if let Some(key) = key {
        // Serializes requests with one key, so two never both ask.
        sqlx::query!(
            "SELECT pg_advisory_xact_lock(hashtext('boxoffice.rebuild-key.' || $1 || '.' || $2))",
            key.user_id,
            key.key
        )
        .execute(&mut *tx)
        .await?;
        let first = sqlx::query!(
            "SELECT request_fingerprint, rebuild_id FROM rebuild_request_keys
              WHERE user_id = $1 AND idempotency_key = $2
                AND created_at > now() - make_interval(secs => $3)",
            key.user_id,
            key.key,
            key.ttl.as_secs_f64()
        )
        .fetch_optional(&mut *tx)
        .await?;
        match first {
            Some(first) if first.request_fingerprint == key.fingerprint => {
                return Ok(first.rebuild_id)
            }
            Some(_) => return Err(RebuildError::KeyReused),
            None => {}
        }
    }
    let projection: Projection = name.parse()?;
    // Serializes requests for one projection, so two never both insert.
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtext('boxoffice.rebuild-request.' || $1))",
        projection.name()
    )
    .execute(&mut *tx)
    .await?;
    let open: Option<i64> = sqlx::query_scalar!(
        "SELECT id FROM projection_rebuilds
          WHERE projection = $1 AND status IN ('requested', 'running') ORDER BY id LIMIT 1",
        projection.name()
    )
    .fetch_optional(&mut *tx)
    .await?;
    let id = match open {
        Some(id) => id,
        None => {
            sqlx::query_scalar!(
                "INSERT INTO projection_rebuilds (projection, status) VALUES ($1, 'requested') RETURNING id",
                projection.name()
            )
            .fetch_one(&mut *tx)
            .await?
        }
    };
    if let Some(key) = key {
        sqlx::query!(
            "INSERT INTO rebuild_request_keys (user_id, idempotency_key, request_fingerprint, rebuild_id, projection)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id, idempotency_key) DO UPDATE
                 SET request_fingerprint = EXCLUDED.request_fingerprint, rebuild_id = EXCLUDED.rebuild_id,
                     projection = EXCLUDED.projection, created_at = now()",
            key.user_id,
            key.key,
            key.fingerprint,
            id,
            projection.name()
        )
        .execute(&mut *tx)
        .await?;
        // The table stays small: expired keys go as new ones come.
        sqlx::query!(
            "DELETE FROM rebuild_request_keys WHERE created_at < now() - make_interval(secs => $1)",
            key.ttl.as_secs_f64(),
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(id)
}
