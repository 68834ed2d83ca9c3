//! The boxoffice domain: aggregates, commands, facts, invariants and saga decisions.
//!
//! This crate is pure: no I/O, no clock, no random ids. Time and ids come in through
//! commands, so every rule can be tested with given/when/then and no set-up.
//!
//! The parts:
//! - [`location`]: a venue and its halls.
//! - [`event`]: something that happens in a hall (a concert, a circus, a talk) and its
//!   seat ledger.
//! - [`booking`]: a user's request for seats of an event, and its status machine.
//! - [`user`]: a user, as far as facts are kept about one: the erasure of their
//!   personal data; [`personal`]: personal data in the sealed form the store keeps.
//! - [`saga`]: the booking saga's decisions, a pure function of step and observation.
//! - [`policy`]: which stored fact starts or moves which saga, and what an
//!   `Idempotency-Key` records: the live saga rules, in one place.
//! - [`values`]: validated values (names, capacities, seats, money) parsed once at the edge.
//! - [`error`]: what every refusal of the domain has in common.
//! - [`upcast`]: reading facts stored in an older shape.
//!
//! Naming: commands are imperative (`ReserveSeats`), domain events past tense
//! (`SeatsReserved`). The enums of domain events are called `...Fact` (`EventFact`)
//! because one aggregate is itself called `Event`, and `EventEvent` helps nobody.
//! Every fact has a stable `event_type` (its variant name) and an `event_version`.

pub mod booking;
pub mod consistency;
pub mod error;
pub mod event;
pub mod location;
pub mod metadata;
pub mod personal;
pub mod policy;
pub mod saga;
pub mod upcast;
pub mod user;
pub mod values;

pub use error::{DomainError, ErrorKind, RefusalCode};

/// The version written with every fact of this crate. Bump it for a fact whose shape
/// changes, and register an upcaster for the old version where the store is read.
pub const FACT_VERSION: &str = "1.0";
