//! Personal data at rest: contact data sealed under a key of its user (AES-256-GCM), and
//! the keys, in `user_keys` (a table of their own, not append-only).
//!
//! - A user's **current key** is the newest one not destroyed; the first booking with
//!   contact data makes one ([`current_key`]). Erasure destroys every key alive
//!   (command-api, in the statement that records the erasure), so the next booking of
//!   that user gets a new one.
//! - A sealed contact is bound to its booking and user (they are the AEAD's associated
//!   data, [`associated_data`]): moved onto another booking, it does not open.
//! - Reading ([`open`]) needs the key: once destroyed, every copy of what was sealed
//!   under it (the store, the topic, exports, read models, backups of them) is noise.
//!   The keys table itself must not outlive an erasure in a backup; see the README.

use std::collections::HashMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use domain::personal::{Contact, SealedContact};
use rand::RngCore;
use sqlx::PgExecutor;
use uuid::Uuid;

/// A user's key.
#[derive(Clone)]
pub struct UserKey {
    /// Its id, named by what is sealed under it.
    pub id: Uuid,
    secret: [u8; 32],
}

impl std::fmt::Debug for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl UserKey {
    /// A new random key.
    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        Self {
            id: Uuid::new_v4(),
            secret,
        }
    }

    fn from_row(id: Uuid, secret: &[u8]) -> Option<Self> {
        Some(Self {
            id,
            secret: secret.try_into().ok()?,
        })
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.secret.into())
    }
}

/// What a booking's sealed contact is bound to.
pub fn associated_data(booking_id: &str, user_id: &str) -> Vec<u8> {
    format!("boxoffice:booking:{booking_id}:user:{user_id}").into_bytes()
}

/// Seals `contact` under `key`, bound to `associated`.
pub fn seal(key: &UserKey, associated: &[u8], contact: &Contact) -> SealedContact {
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    // Serializing two optional strings cannot fail.
    let plain = serde_json::to_vec(contact).unwrap_or_default();
    // Encrypting a message this small with a valid key cannot fail.
    let ciphertext = key
        .cipher()
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &plain,
                aad: associated,
            },
        )
        .unwrap_or_default();
    SealedContact {
        key_id: key.id,
        nonce: BASE64.encode(nonce),
        ciphertext: BASE64.encode(ciphertext),
    }
}

/// Opens `sealed` with `key`; `None` when it does not open (another key, another
/// booking, altered).
pub fn open(key: &UserKey, associated: &[u8], sealed: &SealedContact) -> Option<Contact> {
    if key.id != sealed.key_id {
        return None;
    }
    let nonce: [u8; 12] = BASE64.decode(&sealed.nonce).ok()?.try_into().ok()?;
    let ciphertext = BASE64.decode(&sealed.ciphertext).ok()?;
    let plain = key
        .cipher()
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &ciphertext,
                aad: associated,
            },
        )
        .ok()?;
    serde_json::from_slice(&plain).ok()
}

/// `user_id`'s current key, made when they have none alive.
///
/// An erasure may run at the same moment. A booking that got the key just before the
/// erasure destroyed it seals its contact under a dead key: that contact reads as
/// erased, which is what the erasure asked for. A booking after the erasure gets a new
/// key. Between the two, a key found by the unique index can vanish before it is read;
/// then a new one is made (once more: two erasures in those few microseconds is not a
/// race anyone wins by retrying further).
pub async fn current_key(db: &sqlx::PgPool, user_id: &str) -> sqlx::Result<UserKey> {
    for _ in 0..2 {
        // Most bookings are by users who have a key: one read.
        if let Some(key) = live_key(db, user_id).await? {
            return Ok(key);
        }
        // The partial unique index (one live key per user) makes two concurrent first
        // bookings agree on one key: the second finds the first's.
        let fresh = UserKey::generate();
        let made = sqlx::query(
            "INSERT INTO user_keys (user_id, key_id, secret) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) WHERE secret IS NOT NULL DO NOTHING",
        )
        .bind(user_id)
        .bind(fresh.id)
        .bind(fresh.secret.as_slice())
        .execute(db)
        .await?
        .rows_affected();
        if made == 1 {
            return Ok(fresh);
        }
    }
    Err(sqlx::Error::Protocol(
        "a user key vanished as it was made, twice".into(),
    ))
}

async fn live_key(db: &sqlx::PgPool, user_id: &str) -> sqlx::Result<Option<UserKey>> {
    let row: Option<(Uuid, Vec<u8>)> = sqlx::query_as(
        "SELECT key_id, secret FROM user_keys WHERE user_id = $1 AND secret IS NOT NULL",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    Ok(row.and_then(|(id, secret)| UserKey::from_row(id, &secret)))
}

/// The keys alive among `ids` (destroyed or unknown ones are missing).
pub async fn keys(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<HashMap<Uuid, UserKey>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(
        "SELECT key_id, secret FROM user_keys WHERE key_id = ANY($1) AND secret IS NOT NULL",
    )
    .bind(ids)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, secret)| Some((id, UserKey::from_row(id, &secret)?)))
        .collect())
}

/// The ids of `user_id`'s keys alive now.
pub async fn live_keys(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar("SELECT key_id FROM user_keys WHERE user_id = $1 AND secret IS NOT NULL")
        .bind(user_id)
        .fetch_all(db)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact() -> Contact {
        Contact {
            name: Some("Ada Lovelace".into()),
            email: Some("ada@example.com".into()),
        }
    }

    #[test]
    fn sealed_contact_data_opens_with_its_key_and_binding_only() {
        let key = UserKey::generate();
        let bound = associated_data("b1", "ada");
        let sealed = seal(&key, &bound, &contact());
        assert!(!sealed.ciphertext.contains("Ada"));
        assert_eq!(open(&key, &bound, &sealed), Some(contact()));
        // Another booking, another key, an altered ciphertext: nothing.
        assert_eq!(open(&key, &associated_data("b2", "ada"), &sealed), None);
        assert_eq!(open(&UserKey::generate(), &bound, &sealed), None);
        let mut altered = sealed.clone();
        altered.ciphertext.replace_range(0..2, "AA");
        assert_eq!(open(&key, &bound, &altered), None);
    }

    #[test]
    fn two_seals_of_the_same_data_differ() {
        let key = UserKey::generate();
        let bound = associated_data("b1", "ada");
        assert_ne!(
            seal(&key, &bound, &contact()).ciphertext,
            seal(&key, &bound, &contact()).ciphertext
        );
    }

    #[test]
    fn a_key_does_not_print_its_secret() {
        let key = UserKey::generate();
        let printed = format!("{key:?}");
        assert!(printed.contains(&key.id.to_string()));
        assert!(!printed.contains("secret"));
    }
}
