//! Validated values, parsed once at the edge ("parse, don't validate").
//!
//! Each type has a `parse` that checks the rule and a transparent serde form. Facts are
//! deserialized without checking again: a fact is history, and a rule tightened later
//! must not make old history unreadable.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The most seats one booking may ask for.
pub const MAX_SEATS_PER_BOOKING: u32 = 10;
/// The largest hall we accept. Large enough for a stadium, small enough that the seat
/// arithmetic stays far from overflow.
pub const MAX_CAPACITY: u32 = 1_000_000;
/// The largest ticket price in minor units (ten million in major units).
pub const MAX_PRICE_CENTS: i64 = 1_000_000_000;

/// A stored name (a status, a reason) that no variant has: a row written by a newer
/// build, or edited by hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name {0:?}")]
pub struct UnknownName(pub String);

/// A problem with one field of a request, reported in the `details` of a 422.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Where the problem is, for example `halls[1].capacity`.
    pub field: String,
    /// What is wrong, for people.
    pub message: String,
}

/// Collects field problems while a request is parsed, so the client hears about all of
/// them at once.
#[derive(Debug, Default)]
pub struct Problems(Vec<FieldError>);

impl Problems {
    /// Records the outcome of parsing one field; returns the value when it was valid.
    pub fn check<T>(&mut self, field: impl Into<String>, parsed: Result<T, String>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(message) => {
                self.push(field, message);
                None
            }
        }
    }

    /// Records a problem.
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// `Ok(())` when nothing was recorded, else every problem.
    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

/// A human-readable name or line of text: trimmed, 1 to 200 characters, no control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    /// The longest name accepted, in characters.
    pub const MAX_LEN: usize = 200;

    /// Checks and trims `raw`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("must not be empty".into());
        }
        if trimmed.chars().count() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        if trimmed.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A number of seats in a hall or an event: 1 to [`MAX_CAPACITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Capacity(u32);

impl Capacity {
    /// Checks `raw`.
    pub fn parse(raw: i64) -> Result<Self, String> {
        match u32::try_from(raw) {
            Ok(n) if (1..=MAX_CAPACITY).contains(&n) => Ok(Self(n)),
            _ => Err(format!("must be between 1 and {MAX_CAPACITY}")),
        }
    }

    /// The number of seats.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// The seats one booking asks for: 1 to [`MAX_SEATS_PER_BOOKING`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seats(u32);

impl Seats {
    /// Checks `raw`.
    pub fn parse(raw: i64) -> Result<Self, String> {
        match u32::try_from(raw) {
            Ok(n) if (1..=MAX_SEATS_PER_BOOKING).contains(&n) => Ok(Self(n)),
            _ => Err(format!("must be between 1 and {MAX_SEATS_PER_BOOKING}")),
        }
    }

    /// The number of seats.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Currency(String);

impl Currency {
    /// Checks `raw`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err("must be an ISO 4217 code of three upper-case letters, such as EUR".into())
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A price in minor units: 0 (free entry) to [`MAX_PRICE_CENTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriceCents(i64);

impl PriceCents {
    /// Checks `raw`.
    pub fn parse(raw: i64) -> Result<Self, String> {
        if (0..=MAX_PRICE_CENTS).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(format!("must be between 0 and {MAX_PRICE_CENTS}"))
        }
    }

    /// The amount in minor units.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// A payment card token as the payment gateway issued it: 1 to 200 visible ASCII
/// characters. It is a reference to a card, never card data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CardToken(String);

impl CardToken {
    /// Checks `raw`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > 200 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be 1 to 200 visible ASCII characters".into());
        }
        Ok(Self(raw.to_owned()))
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(Name::parse("  Hall A ").unwrap().as_str(), "Hall A");
        assert!(Name::parse("   ").is_err());
        assert!(Name::parse(&"x".repeat(201)).is_err());
        assert!(Name::parse(&"é".repeat(200)).is_ok());
        assert!(Name::parse("a\u{0}b").is_err());
    }

    #[test]
    fn capacities_and_seats_have_bounds() {
        assert!(Capacity::parse(0).is_err());
        assert!(Capacity::parse(-5).is_err());
        assert_eq!(Capacity::parse(1).unwrap().get(), 1);
        assert!(Capacity::parse(i64::from(MAX_CAPACITY) + 1).is_err());
        assert!(Seats::parse(0).is_err());
        assert!(Seats::parse(11).is_err());
        assert_eq!(Seats::parse(10).unwrap().get(), 10);
    }

    #[test]
    fn currencies_prices_and_tokens() {
        assert!(Currency::parse("EUR").is_ok());
        assert!(Currency::parse("eur").is_err());
        assert!(Currency::parse("EURO").is_err());
        assert!(PriceCents::parse(0).is_ok());
        assert!(PriceCents::parse(-1).is_err());
        assert!(CardToken::parse("tok_visa").is_ok());
        assert!(CardToken::parse("tok visa").is_err());
        assert!(CardToken::parse("").is_err());
    }

    #[test]
    fn problems_collect_every_field() {
        let mut problems = Problems::default();
        assert_eq!(
            problems.check("a", Name::parse("ok")).unwrap().as_str(),
            "ok"
        );
        assert!(problems.check("b", Capacity::parse(0)).is_none());
        problems.push("c", "bad");
        let errors = problems.finish().unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].field, "b");
    }
}
