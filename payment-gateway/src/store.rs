//! The books: every statement on `payment_intents` and `payment_methods` (schema
//! `payment_gateway`, reached through the pool's `search_path`).
//!
//! Each operation that races another on one key or one intent is a single statement, so
//! Postgres settles the race: the unique index on `idempotency_key` with `INSERT .. ON
//! CONFLICT` for creates and technical cancels, a guarded `UPDATE .. WHERE status = ..`
//! for transitions. A create naming a payment method reads its card token
//! ([`card_token`]) and records the intent ([`create`]) in one transaction.

use serde_json::Value;
use sqlx::{PgConnection, PgExecutor, PgPool};

use crate::intent::{Intent, Operation, Status};
use crate::payment_method::PaymentMethod;

// Every statement here is a `query_as!`: checked at compile time against the schema
// (`.sqlx/`, see scripts/sqlx-prepare), with the columns read back spelled out in each
// (the macros take literal SQL only). `status` is decoded by `Status`'s `sqlx::Decode`
// (an unknown status is an error, not a panic).

/// A payment intent to record.
#[derive(Debug)]
pub struct NewIntent<'a> {
    /// Its `Idempotency-Key`.
    pub idempotency_key: &'a str,
    /// The fingerprint of the request.
    pub fingerprint: &'a str,
    /// In minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: &'a str,
    /// The card token: as sent, or the one of the payment method the request named
    /// (never a `pm_` id).
    pub payment_method: &'a str,
    /// `Authorized` or `Declined`.
    pub status: Status,
    /// Set when declined.
    pub decline_code: Option<&'a str>,
    /// A JSON object of strings.
    pub metadata: &'a Value,
}

/// Records `new` unless its key is taken. Returns the intent holding the key and
/// whether it was created now. `conn` may be a transaction (see [`card_token`]); at
/// read committed, as here, the read after a conflict sees the committed intent either
/// way.
pub async fn create(conn: &mut PgConnection, new: &NewIntent<'_>) -> sqlx::Result<(Intent, bool)> {
    let inserted = sqlx::query_as!(
        Intent,
        r#"INSERT INTO payment_intents (id, idempotency_key, request_fingerprint, amount,
               currency, payment_method, status, decline_code, metadata)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (idempotency_key) DO NOTHING
           RETURNING id, idempotency_key, request_fingerprint AS fingerprint, amount, currency,
               status AS "status: Status", decline_code, metadata,
               created_at AS created, updated_at AS updated, seq"#,
        Intent::new_id(),
        new.idempotency_key,
        new.fingerprint,
        new.amount,
        new.currency,
        new.payment_method,
        new.status.as_str(),
        new.decline_code,
        new.metadata,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(intent) = inserted {
        return Ok((intent, true));
    }
    // DO NOTHING waited for the conflicting insert to commit, but this statement's
    // snapshot predates that commit, so the row is read by a new statement. Rows are
    // never deleted: it is there.
    let existing = by_key(&mut *conn, new.idempotency_key)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    Ok((existing, false))
}

/// The intent `id`.
pub async fn by_id(pool: &PgPool, id: &str) -> sqlx::Result<Option<Intent>> {
    sqlx::query_as!(
        Intent,
        r#"SELECT id, idempotency_key, request_fingerprint AS fingerprint, amount, currency,
               status AS "status: Status", decline_code, metadata,
               created_at AS created, updated_at AS updated, seq
           FROM payment_intents WHERE id = $1"#,
        id
    )
    .fetch_optional(pool)
    .await
}

/// The intent (or tombstone) holding `key`.
pub async fn by_key<'e>(executor: impl PgExecutor<'e>, key: &str) -> sqlx::Result<Option<Intent>> {
    sqlx::query_as!(
        Intent,
        r#"SELECT id, idempotency_key, request_fingerprint AS fingerprint, amount, currency,
               status AS "status: Status", decline_code, metadata,
               created_at AS created, updated_at AS updated, seq
           FROM payment_intents WHERE idempotency_key = $1"#,
        key
    )
    .fetch_optional(executor)
    .await
}

/// Makes one of `op`'s moves on intent `id`, if its status is one they start from.
/// `None` when it is not (or there is no such intent).
pub async fn transition(pool: &PgPool, id: &str, op: &Operation) -> sqlx::Result<Option<Intent>> {
    let (from, to): (Vec<String>, Vec<String>) = op
        .moves
        .iter()
        .map(|(from, to)| (from.as_str().to_owned(), to.as_str().to_owned()))
        .unzip();
    sqlx::query_as!(
        Intent,
        r#"UPDATE payment_intents SET status = m.to_status, updated_at = now()
           FROM unnest($2::text[], $3::text[]) AS m(from_status, to_status)
           WHERE id = $1 AND status = m.from_status
           RETURNING id, idempotency_key, request_fingerprint AS fingerprint, amount, currency,
               status AS "status: Status", decline_code, metadata,
               created_at AS created, updated_at AS updated, seq"#,
        id,
        &from,
        &to
    )
    .fetch_optional(pool)
    .await
}

/// What a technical cancel did.
#[derive(Debug)]
pub enum KeyCancel {
    /// Nobody had used the key: a tombstone holds it now.
    Tombstoned(Intent),
    /// The authorization holding the key is voided now.
    Voided(Intent),
    /// The intent holding the key was not authorized; it is as it was.
    Untouched(Intent),
}

/// The technical cancel of `key`, in one statement against a concurrent create: either
/// the tombstone goes in first (and the create finds it) or the create's intent does
/// (and is voided here when authorized).
pub async fn cancel_by_key(pool: &PgPool, key: &str) -> sqlx::Result<KeyCancel> {
    let tombstone_id = Intent::new_id();
    let written = sqlx::query_as!(
        Intent,
        r#"INSERT INTO payment_intents AS p (id, idempotency_key, status)
           VALUES ($1, $2, 'voided')
           ON CONFLICT (idempotency_key) DO UPDATE SET status = 'voided', updated_at = now()
           WHERE p.status = 'authorized'
           RETURNING id, idempotency_key, request_fingerprint AS fingerprint, amount, currency,
               status AS "status: Status", decline_code, metadata,
               created_at AS created, updated_at AS updated, seq"#,
        &tombstone_id,
        key
    )
    .fetch_optional(pool)
    .await?;
    match written {
        Some(intent) if intent.id == tombstone_id => Ok(KeyCancel::Tombstoned(intent)),
        Some(intent) => Ok(KeyCancel::Voided(intent)),
        None => {
            // The key's intent was not authorized; it was committed (ON CONFLICT waited
            // for it), so a new statement sees it.
            let existing = by_key(pool, key).await?.ok_or(sqlx::Error::RowNotFound)?;
            Ok(KeyCancel::Untouched(existing))
        }
    }
}

/// Up to `limit` intents after creation position `after`, in creation order, of
/// `status` when given.
pub async fn list(
    pool: &PgPool,
    status: Option<Status>,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<Intent>> {
    // Two statements rather than `($1 IS NULL OR status = $1)`, whose generic plan
    // would not use the (status, seq) index.
    match status {
        Some(status) => {
            sqlx::query_as!(
                Intent,
                r#"SELECT id, idempotency_key, request_fingerprint AS fingerprint, amount,
                       currency, status AS "status: Status", decline_code, metadata,
                       created_at AS created, updated_at AS updated, seq
                   FROM payment_intents WHERE status = $1 AND seq > $2 ORDER BY seq LIMIT $3"#,
                status.as_str(),
                after,
                limit
            )
            .fetch_all(pool)
            .await
        }
        None => {
            sqlx::query_as!(
                Intent,
                r#"SELECT id, idempotency_key, request_fingerprint AS fingerprint, amount,
                       currency, status AS "status: Status", decline_code, metadata,
                       created_at AS created, updated_at AS updated, seq
                   FROM payment_intents WHERE seq > $1 ORDER BY seq LIMIT $2"#,
                after,
                limit
            )
            .fetch_all(pool)
            .await
        }
    }
}

/// A payment method to record.
#[derive(Debug)]
pub struct NewPaymentMethod<'a> {
    /// The card token it stands for.
    pub card_token: &'a str,
    /// Its `Idempotency-Key`, when the request had one.
    pub idempotency_key: Option<&'a str>,
    /// The fingerprint of the request (kept only with a key).
    pub fingerprint: &'a str,
}

/// Records `new` unless its key is taken (a key-less request always records). Returns
/// the payment method holding the key and whether it was created now.
pub async fn create_payment_method(
    pool: &PgPool,
    new: &NewPaymentMethod<'_>,
) -> sqlx::Result<(PaymentMethod, bool)> {
    let inserted = sqlx::query_as!(
        PaymentMethod,
        "INSERT INTO payment_methods (id, card_token, idempotency_key, request_fingerprint)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING id, idempotency_key, request_fingerprint AS fingerprint, created_at AS created",
        PaymentMethod::new_id(),
        new.card_token,
        new.idempotency_key,
        new.idempotency_key.map(|_| new.fingerprint),
    )
    .fetch_optional(pool)
    .await?;
    if let Some(method) = inserted {
        return Ok((method, true));
    }
    // Only a key conflicts (NULLs are distinct). As in `create`: the winner committed,
    // a new statement sees it, and rows are never deleted.
    let key = new.idempotency_key.ok_or(sqlx::Error::RowNotFound)?;
    let existing = sqlx::query_as!(
        PaymentMethod,
        "SELECT id, idempotency_key, request_fingerprint AS fingerprint, created_at AS created
         FROM payment_methods WHERE idempotency_key = $1",
        key
    )
    .fetch_optional(pool)
    .await?
    .ok_or(sqlx::Error::RowNotFound)?;
    Ok((existing, false))
}

/// The payment method `id`.
pub async fn payment_method_by_id(pool: &PgPool, id: &str) -> sqlx::Result<Option<PaymentMethod>> {
    sqlx::query_as!(
        PaymentMethod,
        "SELECT id, idempotency_key, request_fingerprint AS fingerprint, created_at AS created
         FROM payment_methods WHERE id = $1",
        id
    )
    .fetch_optional(pool)
    .await
}

/// The card token of payment method `id`, `None` when there is no such payment method.
/// A payment method never changes once made (the gateway's role may not update or
/// delete one), so no lock is needed for the token read to be the one the intent is
/// authorized and recorded with.
pub async fn card_token(conn: &mut PgConnection, id: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!("SELECT card_token FROM payment_methods WHERE id = $1", id)
        .fetch_optional(conn)
        .await
}
