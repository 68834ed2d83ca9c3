//! A location (a venue) and its halls.
//!
//! Rules: a location is created once, with any number of halls; hall names are unique
//! within the location and every hall has a capacity of at least one seat. Halls can be
//! added later; they are never removed or resized, so an event scheduled in a hall can
//! rely on that hall for good.

use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, ErrorKind, RefusalCode};
use crate::values::{Capacity, Name};
use crate::FACT_VERSION;

/// A hall of a location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hall {
    /// Unique within its location.
    pub name: Name,
    /// How many seats it has.
    pub capacity: Capacity,
}

/// The location aggregate. Its state is what its commands need to decide, and what
/// others read from it (the halls, when an event is scheduled).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Location {
    name: Option<Name>,
    halls: Vec<Hall>,
}

impl Location {
    /// Whether the location was created.
    pub fn exists(&self) -> bool {
        self.name.is_some()
    }

    /// The location's name, once created.
    pub fn name(&self) -> Option<&Name> {
        self.name.as_ref()
    }

    /// The halls, in the order they were added.
    pub fn halls(&self) -> &[Hall] {
        &self.halls
    }
}

/// What can be asked of a location.
#[derive(Debug, Clone, PartialEq)]
pub enum LocationCommand {
    /// Create the location.
    CreateLocation {
        /// The venue's name.
        name: Name,
        /// Its postal address.
        address: Name,
        /// Its country.
        country: Name,
        /// Its halls; names must be unique.
        halls: Vec<Hall>,
    },
    /// Add a hall to an existing location.
    AddHall {
        /// The new hall; its name must not be taken.
        hall: Hall,
    },
}

/// What happened to a location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LocationFact {
    /// The location was created.
    LocationCreated {
        /// The venue's name.
        name: Name,
        /// Its postal address.
        address: Name,
        /// Its country.
        country: Name,
        /// Its halls.
        halls: Vec<Hall>,
    },
    /// A hall was added.
    HallAdded {
        /// The new hall.
        hall: Hall,
    },
}

impl DomainEvent for LocationFact {
    fn event_type(&self) -> String {
        match self {
            Self::LocationCreated { .. } => "LocationCreated",
            Self::HallAdded { .. } => "HallAdded",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        FACT_VERSION.to_owned()
    }
}

/// Why a location refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// The location does not exist.
    #[error("location not found")]
    NotFound,
    /// The location was already created.
    #[error("location already exists")]
    AlreadyExists,
    /// Two halls of the new location have the same name.
    #[error("hall name '{0}' appears more than once")]
    DuplicateHall(String),
    /// The location already has a hall of that name.
    #[error("the location already has a hall named '{0}'")]
    HallExists(String),
}

impl DomainError for LocationError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound => ErrorKind::NotFound,
            Self::AlreadyExists | Self::HallExists(_) => ErrorKind::Conflict,
            Self::DuplicateHall(_) => ErrorKind::Invalid,
        }
    }

    fn code(&self) -> RefusalCode {
        match self {
            Self::NotFound => RefusalCode::NotFound,
            Self::AlreadyExists => RefusalCode::AlreadyExists,
            Self::DuplicateHall(_) => RefusalCode::DuplicateHall,
            Self::HallExists(_) => RefusalCode::HallExists,
        }
    }
}

impl Aggregate for Location {
    const TYPE: &'static str = "location";
    type Command = LocationCommand;
    type Event = LocationFact;
    type Error = LocationError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for fact in self.decide(command)? {
            sink.write(fact, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, fact: Self::Event) {
        match fact {
            LocationFact::LocationCreated { name, halls, .. } => {
                self.name = Some(name);
                self.halls = halls;
            }
            LocationFact::HallAdded { hall } => self.halls.push(hall),
        }
    }
}

impl Location {
    /// The decision itself, synchronous and without side effects.
    fn decide(&self, command: LocationCommand) -> Result<Vec<LocationFact>, LocationError> {
        match command {
            LocationCommand::CreateLocation {
                name,
                address,
                country,
                halls,
            } => {
                if self.exists() {
                    return Err(LocationError::AlreadyExists);
                }
                for (i, hall) in halls.iter().enumerate() {
                    if halls[..i].iter().any(|h| h.name == hall.name) {
                        return Err(LocationError::DuplicateHall(hall.name.to_string()));
                    }
                }
                Ok(vec![LocationFact::LocationCreated {
                    name,
                    address,
                    country,
                    halls,
                }])
            }
            LocationCommand::AddHall { hall } => {
                if !self.exists() {
                    return Err(LocationError::NotFound);
                }
                if self.halls.iter().any(|h| h.name == hall.name) {
                    return Err(LocationError::HallExists(hall.name.to_string()));
                }
                Ok(vec![LocationFact::HallAdded { hall }])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Location>;

    fn hall(name: &str, capacity: i64) -> Hall {
        Hall {
            name: Name::parse(name).unwrap(),
            capacity: Capacity::parse(capacity).unwrap(),
        }
    }

    fn n(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    fn created(halls: Vec<Hall>) -> LocationFact {
        LocationFact::LocationCreated {
            name: n("Olympia"),
            address: n("28 Boulevard des Capucines"),
            country: n("FR"),
            halls,
        }
    }

    fn create(halls: Vec<Hall>) -> LocationCommand {
        LocationCommand::CreateLocation {
            name: n("Olympia"),
            address: n("28 Boulevard des Capucines"),
            country: n("FR"),
            halls,
        }
    }

    #[test]
    fn a_new_location_is_created_with_its_halls() {
        Given::with(())
            .given_no_previous_events()
            .when(create(vec![hall("Main", 2000), hall("Club", 150)]))
            .then_expect_events(vec![created(vec![hall("Main", 2000), hall("Club", 150)])]);
    }

    #[test]
    fn a_location_is_created_only_once() {
        Given::with(())
            .given(vec![created(vec![])])
            .when(create(vec![]))
            .then_expect_error(LocationError::AlreadyExists);
    }

    #[test]
    fn hall_names_are_unique_at_creation() {
        Given::with(())
            .given_no_previous_events()
            .when(create(vec![hall("Main", 10), hall("Main", 20)]))
            .then_expect_error(LocationError::DuplicateHall("Main".into()));
    }

    #[test]
    fn a_hall_can_be_added() {
        Given::with(())
            .given(vec![created(vec![hall("Main", 10)])])
            .when(LocationCommand::AddHall {
                hall: hall("Club", 50),
            })
            .then_expect_events(vec![LocationFact::HallAdded {
                hall: hall("Club", 50),
            }]);
    }

    #[test]
    fn an_added_hall_needs_a_free_name() {
        Given::with(())
            .given(vec![created(vec![hall("Main", 10)])])
            .and(vec![LocationFact::HallAdded {
                hall: hall("Club", 50),
            }])
            .when(LocationCommand::AddHall {
                hall: hall("Club", 70),
            })
            .then_expect_error(LocationError::HallExists("Club".into()));
    }

    #[test]
    fn a_hall_cannot_be_added_to_a_missing_location() {
        Given::with(())
            .given_no_previous_events()
            .when(LocationCommand::AddHall {
                hall: hall("Club", 50),
            })
            .then_expect_error(LocationError::NotFound);
    }

    #[test]
    fn the_state_lists_the_halls() {
        let mut location = Location::default();
        location.apply(created(vec![hall("Main", 10)]));
        location.apply(LocationFact::HallAdded {
            hall: hall("Club", 5),
        });
        assert!(location.exists());
        assert_eq!(location.name().unwrap().as_str(), "Olympia");
        let names: Vec<_> = location.halls().iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["Main", "Club"]);
    }

    #[test]
    fn refusals_map_to_kinds_and_codes() {
        assert_eq!(LocationError::NotFound.kind(), ErrorKind::NotFound);
        assert_eq!(
            LocationError::HallExists("x".into()).code().as_str(),
            "hall_exists"
        );
        assert_eq!(
            LocationError::DuplicateHall("x".into()).kind(),
            ErrorKind::Invalid
        );
    }
}
