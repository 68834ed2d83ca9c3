//! Payment methods (as Stripe's PaymentMethod): a card token exchanged once for a
//! reusable `pm_…` reference, so that the merchant never keeps the token.

use chrono::{DateTime, Utc};

/// What every payment method id starts with; a create's `payment_method` starting
/// with it names one, anything else is a card token.
pub const ID_PREFIX: &str = "pm_";

/// A payment method as stored (without its card token, which is only read back to
/// authorize a payment intent).
#[derive(Debug, Clone)]
pub struct PaymentMethod {
    /// `pm_` and a UUID v4 in simple form.
    pub id: String,
    /// The `Idempotency-Key` it was created with, if any.
    pub idempotency_key: Option<String>,
    /// The fingerprint of the request that created it, when it came with a key.
    pub fingerprint: Option<String>,
    /// When it was created.
    pub created: DateTime<Utc>,
}

impl PaymentMethod {
    /// A new payment method id.
    pub fn new_id() -> String {
        format!("{ID_PREFIX}{}", uuid::Uuid::new_v4().simple())
    }
}

/// Whether a create's `payment_method` names a payment method (rather than being a card
/// token).
pub fn is_id(payment_method: &str) -> bool {
    payment_method.starts_with(ID_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let id = PaymentMethod::new_id();
        assert!(is_id(&id));
        assert_eq!(id.len(), 35);
        assert!(!is_id("tok_visa"));
        assert!(!is_id("pm"));
        assert!(!is_id("PM_x"));
    }
}
