//! The consistency token: what command-api answers an accepted command with
//! (`consistency_token` in the body, `X-Consistency-Token` in a header) and query-api
//! takes back on a read to wait until the read models include that write. One type,
//! written and read here only: `<aggregate type>:<aggregate id>:<sequence>`, such as
//! `booking:0193b3c4-8f5e-7a1c-9d2e-3f4a5b6c7d8e:3`.

use std::fmt;
use std::str::FromStr;

use cqrs_es::Aggregate;

use crate::booking::Booking;
use crate::event::Event;
use crate::location::Location;
use crate::user::UserData;

/// The aggregate types a token may name.
pub const AGGREGATE_TYPES: [&str; 4] = [Location::TYPE, Event::TYPE, Booking::TYPE, UserData::TYPE];

/// The token's form as a regular expression, for the OpenAPI documents.
pub const PATTERN: &str = "^(location|event|booking|user):[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}:[1-9][0-9]{0,17}$";

/// A write: an aggregate at the sequence a command left it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyToken {
    /// One of [`AGGREGATE_TYPES`].
    pub aggregate_type: &'static str,
    /// A UUID, hyphenated.
    pub aggregate_id: String,
    /// 1 or more.
    pub sequence: i64,
}

impl fmt::Display for ConsistencyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.aggregate_type, self.aggregate_id, self.sequence
        )
    }
}

/// Not a token this system writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a consistency token")]
pub struct NotAToken;

impl FromStr for ConsistencyToken {
    type Err = NotAToken;

    /// Exactly the form [`fmt::Display`] writes (and [`PATTERN`] describes): a known
    /// aggregate type, a hyphenated UUID, a sequence in plain digits without a leading
    /// zero. Anything else, however close, is refused.
    fn from_str(raw: &str) -> Result<Self, NotAToken> {
        let mut parts = raw.split(':');
        let (Some(aggregate_type), Some(id), Some(sequence), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(NotAToken);
        };
        let aggregate_type = AGGREGATE_TYPES
            .into_iter()
            .find(|t| *t == aggregate_type)
            .ok_or(NotAToken)?;
        let hyphenated = id.len() == 36 && uuid::Uuid::parse_str(id).is_ok();
        let canonical = !sequence.is_empty()
            && !sequence.starts_with('0')
            && sequence.len() <= 18
            && sequence.bytes().all(|b| b.is_ascii_digit());
        if !hyphenated || !canonical {
            return Err(NotAToken);
        }
        Ok(Self {
            aggregate_type,
            aggregate_id: id.to_owned(),
            sequence: sequence.parse().map_err(|_| NotAToken)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0193b3c4-8f5e-7a1c-9d2e-3f4a5b6c7d8e";

    #[test]
    fn a_token_reads_back_what_it_wrote() {
        let token = ConsistencyToken {
            aggregate_type: Booking::TYPE,
            aggregate_id: ID.to_owned(),
            sequence: 3,
        };
        assert_eq!(token.to_string(), format!("booking:{ID}:3"));
        assert_eq!(token.to_string().parse::<ConsistencyToken>(), Ok(token));
    }

    #[test]
    fn only_the_written_form_is_read() {
        for raw in [
            format!("invoice:{ID}:1"),
            format!("booking:{ID}:0"),
            format!("booking:{ID}:05"),
            format!("booking:{ID}:+5"),
            format!("booking:{ID}:x"),
            format!("booking:{ID}:1:2"),
            format!("booking:{}:1", ID.replace('-', "")),
            "booking:not-a-uuid:1".to_owned(),
            String::new(),
        ] {
            assert_eq!(raw.parse::<ConsistencyToken>(), Err(NotAToken), "{raw}");
        }
    }

    #[test]
    fn the_pattern_names_every_aggregate_type() {
        for aggregate_type in AGGREGATE_TYPES {
            assert!(PATTERN.contains(aggregate_type), "{aggregate_type}");
        }
    }
}
