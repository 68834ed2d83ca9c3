//! Payment intents: their statuses, what the simulated card network answers, and which
//! status each operation moves an intent from and to.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Where a payment intent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The money is held on the card.
    Authorized,
    /// The money was taken.
    Captured,
    /// The hold was released before any money was taken (or the key was cancelled
    /// before anyone used it: a tombstone).
    Voided,
    /// The money taken was given back.
    Refunded,
    /// The card was refused.
    Declined,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 5] = [
        Status::Authorized,
        Status::Captured,
        Status::Voided,
        Status::Refunded,
        Status::Declined,
    ];

    /// Its name in the API and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Authorized => "authorized",
            Status::Captured => "captured",
            Status::Voided => "voided",
            Status::Refunded => "refunded",
            Status::Declined => "declined",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a status.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a payment intent status")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// A status as stored (`text`): read with [`FromStr`], so a value this code does not
/// know fails the read.
impl sqlx::Type<sqlx::Postgres> for Status {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <&str as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Status {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(<&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?.parse()?)
    }
}

/// A payment intent as stored (without its card token, which is never read back).
#[derive(Debug, Clone)]
pub struct Intent {
    /// `pi_` and a UUID v4 in simple form.
    pub id: String,
    /// The `Idempotency-Key` it was created with.
    pub idempotency_key: String,
    /// The fingerprint of the request that created it; `None` for a tombstone.
    pub fingerprint: Option<String>,
    /// In the currency's minor unit; `None` for a tombstone.
    pub amount: Option<i64>,
    /// ISO 4217, uppercase; `None` for a tombstone.
    pub currency: Option<String>,
    /// Where it stands.
    pub status: Status,
    /// Why the card was refused, when it was.
    pub decline_code: Option<String>,
    /// The client's string-to-string metadata.
    pub metadata: Value,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When its status last changed.
    pub updated: DateTime<Utc>,
    /// Creation order, for cursors.
    pub seq: i64,
}

impl Intent {
    /// A new intent id.
    pub fn new_id() -> String {
        format!("pi_{}", uuid::Uuid::new_v4().simple())
    }
}

/// What the simulated card network does with a card token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The money is held.
    Authorize,
    /// The card is refused, with this code.
    Decline(String),
    /// The network never answers (`tok_timeout…`): nothing is recorded and the request
    /// is left hanging until the gateway shuts down.
    Hang,
}

/// The simulator's rule: `tok_decline…` is declined (`card_declined`, or the rest after
/// `tok_decline_` when there is one), `tok_timeout…` hangs, anything else is authorized.
pub fn decide(payment_method: &str) -> Decision {
    if let Some(rest) = payment_method.strip_prefix("tok_decline") {
        let code = rest.strip_prefix('_').filter(|code| !code.is_empty());
        Decision::Decline(code.unwrap_or("card_declined").to_owned())
    } else if payment_method.starts_with("tok_timeout") {
        Decision::Hang
    } else {
        Decision::Authorize
    }
}

/// An operation on an existing intent: the moves it makes, the statuses it leaves as
/// they are (answering success: asking twice is harmless), and by elimination the
/// statuses it refuses with 409.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// Its name, for messages.
    pub name: &'static str,
    /// `(from, to)` pairs.
    pub moves: &'static [(Status, Status)],
    /// Statuses answered as they are.
    pub settled: &'static [Status],
}

impl Operation {
    /// Takes the held money.
    pub const CAPTURE: Operation = Operation {
        name: "capture",
        moves: &[(Status::Authorized, Status::Captured)],
        settled: &[Status::Captured],
    };

    /// Releases the hold.
    pub const CANCEL: Operation = Operation {
        name: "cancel",
        moves: &[(Status::Authorized, Status::Voided)],
        settled: &[Status::Voided],
    };

    /// Gives the money back: refunds a capture; an authorization, where nothing was
    /// taken yet, is voided instead.
    pub const REFUND: Operation = Operation {
        name: "refund",
        moves: &[
            (Status::Captured, Status::Refunded),
            (Status::Authorized, Status::Voided),
        ],
        settled: &[Status::Refunded, Status::Voided],
    };

    /// The technical cancel by key: voids an authorization; a capture is refused.
    pub const CANCEL_BY_KEY: Operation = Operation {
        name: "cancel",
        moves: &[(Status::Authorized, Status::Voided)],
        settled: &[Status::Voided, Status::Declined, Status::Refunded],
    };

    /// Whether `status` is answered as it is.
    pub fn leaves(&self, status: Status) -> bool {
        self.settled.contains(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulator_rules() {
        assert_eq!(decide("tok_visa"), Decision::Authorize);
        assert_eq!(
            decide("tok_decline"),
            Decision::Decline("card_declined".into())
        );
        assert_eq!(
            decide("tok_decline_"),
            Decision::Decline("card_declined".into())
        );
        assert_eq!(
            decide("tok_decline_insufficient_funds"),
            Decision::Decline("insufficient_funds".into())
        );
        assert_eq!(
            decide("tok_declined_badly"),
            Decision::Decline("card_declined".into())
        );
        assert_eq!(decide("tok_timeout"), Decision::Hang);
        assert_eq!(decide("tok_timeout_slow"), Decision::Hang);
        assert_eq!(decide("tok_visa_tok_decline"), Decision::Authorize);
    }

    #[test]
    fn statuses_round_trip() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>().unwrap(), status);
        }
        assert!("Authorized".parse::<Status>().is_err());
    }

    #[test]
    fn every_operation_either_moves_leaves_or_refuses_each_status() {
        for op in [
            Operation::CAPTURE,
            Operation::CANCEL,
            Operation::REFUND,
            Operation::CANCEL_BY_KEY,
        ] {
            for status in Status::ALL {
                let moves = op.moves.iter().any(|(from, _)| *from == status);
                assert!(!(moves && op.leaves(status)), "{} {status}", op.name);
            }
        }
    }
}
