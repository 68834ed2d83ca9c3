//! The projections, as one closed enum: a new one is a new variant, and the compiler
//! shows every place that must learn about it (the engine, rebuilds, the metrics).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One read model the projector maintains and query-api serves.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Projection {
    /// `location_view`, from the location streams.
    Locations,
    /// `event_view`, from the event streams: schedule and seat counts.
    Events,
    /// `booking_view`, from the booking streams.
    Bookings,
    /// `user_view`, from the user streams: whose personal data is erased.
    Users,
}

impl Projection {
    /// Every projection, in the order a batch is applied.
    pub const ALL: [Projection; 4] = [
        Projection::Locations,
        Projection::Events,
        Projection::Bookings,
        Projection::Users,
    ];

    /// Its name in the API, the CLI, the metrics and the status tables.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Locations => "locations",
            Self::Events => "events",
            Self::Bookings => "bookings",
            Self::Users => "users",
        }
    }

    /// Its live table in the read-model schema.
    pub const fn table(self) -> &'static str {
        match self {
            Self::Locations => "location_view",
            Self::Events => "event_view",
            Self::Bookings => "booking_view",
            Self::Users => "user_view",
        }
    }

    /// The aggregate type whose events it consumes.
    pub const fn aggregate_type(self) -> &'static str {
        match self {
            Self::Locations => "location",
            Self::Events => "event",
            Self::Bookings => "booking",
            Self::Users => "user",
        }
    }

    /// The projection that consumes `aggregate_type`, if one does.
    pub fn consuming(aggregate_type: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.aggregate_type() == aggregate_type)
    }

    /// Every aggregate type some projection consumes.
    pub fn aggregate_types() -> [&'static str; 4] {
        Self::ALL.map(Self::aggregate_type)
    }
}

impl fmt::Display for Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A name that is not a projection's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no projection is named {0:?}; the projections are locations, events, bookings and users")]
pub struct UnknownProjection(pub String);

impl FromStr for Projection {
    type Err = UnknownProjection;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| UnknownProjection(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_projection_is_found_by_its_name_and_by_what_it_consumes() {
        for projection in Projection::ALL {
            assert_eq!(projection.name().parse(), Ok(projection));
            assert_eq!(
                Projection::consuming(projection.aggregate_type()),
                Some(projection)
            );
            assert_eq!(
                serde_json::to_value(projection).unwrap(),
                serde_json::json!(projection.name())
            );
        }
        assert_eq!(
            "seats".parse::<Projection>(),
            Err(UnknownProjection("seats".into()))
        );
        assert_eq!(Projection::consuming("store"), None);
    }
}
