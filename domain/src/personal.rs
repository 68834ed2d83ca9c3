//! Personal data as the store keeps it: sealed (encrypted) under a key of its user, so
//! that destroying the key erases it everywhere it was copied (crypto-shredding), while
//! the facts that carry it stay as they were and their chain still verifies.
//!
//! What is personal here: the contact data a customer's token carries (`email`,
//! `name`). What is not: the token's `sub`, a pseudonymous id the identity provider
//! gives, which joins a user's bookings and is needed for that; and card data, which
//! boxoffice never keeps (the payment gateway exchanges the card token for a payment
//! method reference, the only thing stored).
//!
//! Sealing and opening is done by the services (`platform::personal`); the domain only
//! carries the sealed form.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Contact data sealed under a user key: AES-256-GCM, the nonce and ciphertext in
/// base64. Without the key (erased) it can never be read again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedContact {
    /// The user key it is sealed under.
    pub key_id: Uuid,
    /// The nonce, base64.
    pub nonce: String,
    /// The ciphertext with its tag, base64.
    pub ciphertext: String,
}

/// Contact data in clear, as a token gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The user's name.
    pub name: Option<String>,
    /// The user's e-mail address.
    pub email: Option<String>,
}

impl Contact {
    /// The contact data a token gives, if it gives any.
    pub fn from_claims(name: Option<String>, email: Option<String>) -> Option<Self> {
        (name.is_some() || email.is_some()).then_some(Self { name, email })
    }
}
