//! An event (a concert, a circus, a talk) held in a hall, and its seat ledger.
//!
//! Rules:
//! - An event is scheduled in an existing hall of an existing location, with a capacity
//!   of at most that hall's (the hall's by default); it ends after it starts and starts
//!   in the future.
//! - The ledger: `seats_held + seats_sold <= capacity`, always. A booking appears in the
//!   ledger at most once: its seats are reserved at most once, sold at most once and
//!   released at most once. Repeating a ledger command is a no-op, which is what makes
//!   the saga steps idempotent. A reservation that cannot be had is refused as an error
//!   and leaves no fact on the event (its booking's rejection records it), so a sold-out
//!   event's stream does not grow with every request that comes too late.
//! - A cancelled event takes no new reservations; what it holds or sold is released by
//!   the saga that refunds the bookings.
//!
//! Every ledger fact carries the counts after it ([`SeatCounts`]), so projections never
//! recompute the rule.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{DomainError, ErrorKind, RefusalCode};
use crate::location::Hall;
use crate::values::{Capacity, Currency, Name, PriceCents, Seats};
use crate::FACT_VERSION;

/// The fixed facts of an event, as scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDetails {
    /// The event's name.
    pub name: Name,
    /// The location it takes place at.
    pub location_id: Uuid,
    /// That location's name, carried for the read models.
    pub location_name: Name,
    /// The hall, by name.
    pub hall: Name,
    /// When it starts.
    pub starts_at: DateTime<Utc>,
    /// When it ends.
    pub ends_at: DateTime<Utc>,
    /// The price of one seat, in minor units.
    pub price_cents: PriceCents,
    /// The currency of the price.
    pub currency: Currency,
    /// How many seats are for sale.
    pub capacity: Capacity,
}

/// Where a reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    /// Seats are held for the booking while it is paid.
    Held,
    /// The booking is paid; the seats are sold.
    Sold,
    /// The seats went back to sale.
    Released,
    /// The request was refused; no seats were ever held.
    Refused,
}

/// One booking's line in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// How many seats.
    pub seats: u32,
    /// Where it stands.
    pub state: ReservationState,
    /// Why it was refused, when it was.
    #[serde(default)]
    pub refused: Option<RefusalReason>,
}

/// The seat counts of an event after a fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatCounts {
    /// Seats for sale in all.
    pub capacity: u32,
    /// Seats held for bookings being paid.
    pub held: u32,
    /// Seats sold.
    pub sold: u32,
    /// `capacity - held - sold`.
    pub available: u32,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// Not enough seats are left.
    SoldOut,
    /// The event was cancelled.
    EventCancelled,
}

/// The event aggregate.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    details: Option<EventDetails>,
    cancelled: bool,
    held: u32,
    sold: u32,
    ledger: BTreeMap<Uuid, Reservation>,
}

impl Event {
    /// The event as scheduled, or `None` when it does not exist.
    pub fn details(&self) -> Option<&EventDetails> {
        self.details.as_ref()
    }

    /// Whether it was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }

    /// The current seat counts (all zero when the event does not exist).
    pub fn counts(&self) -> SeatCounts {
        let capacity = self.details.as_ref().map_or(0, |d| d.capacity.get());
        SeatCounts {
            capacity,
            held: self.held,
            sold: self.sold,
            available: capacity - self.held - self.sold,
        }
    }

    /// The ledger line of a booking.
    pub fn reservation(&self, booking_id: Uuid) -> Option<Reservation> {
        self.ledger.get(&booking_id).copied()
    }

    /// The bookings that hold or bought seats now.
    pub fn seat_holders(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.ledger
            .iter()
            .filter(|(_, r)| matches!(r.state, ReservationState::Held | ReservationState::Sold))
            .map(|(id, _)| *id)
    }
}

/// Where an event is to be held, as the location knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Venue {
    /// The location's id.
    pub location_id: Uuid,
    /// The location's name.
    pub name: Name,
    /// The location's halls.
    pub halls: Vec<Hall>,
}

/// The content of a `ScheduleEvent` command.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleEvent {
    /// The event's name.
    pub name: Name,
    /// The location, as loaded by the caller; `None` when there is no such location.
    pub venue: Option<Venue>,
    /// The hall's name.
    pub hall: Name,
    /// Seats for sale; the hall's capacity when `None`.
    pub capacity: Option<Capacity>,
    /// When it starts.
    pub starts_at: DateTime<Utc>,
    /// When it ends.
    pub ends_at: DateTime<Utc>,
    /// Price of one seat.
    pub price_cents: PriceCents,
    /// Currency of the price.
    pub currency: Currency,
    /// The time of the request.
    pub now: DateTime<Utc>,
}

/// What can be asked of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum EventCommand {
    /// Schedule the event.
    ScheduleEvent(ScheduleEvent),
    /// Cancel it: no new bookings, and the saga refunds the existing ones.
    CancelEvent {
        /// Why, for people.
        reason: Name,
        /// The time of the request.
        now: DateTime<Utc>,
    },
    /// Hold seats for a booking, or record that they cannot be had.
    ReserveSeats {
        /// The booking.
        booking_id: Uuid,
        /// How many seats.
        seats: Seats,
    },
    /// Turn a booking's hold into sold seats.
    SellSeats {
        /// The booking.
        booking_id: Uuid,
    },
    /// Give a booking's held or sold seats back.
    ReleaseSeats {
        /// The booking.
        booking_id: Uuid,
    },
}

/// What happened to an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventFact {
    /// The event was scheduled.
    EventScheduled(EventDetails),
    /// The event was cancelled.
    EventCancelled {
        /// Why, for people.
        reason: Name,
    },
    /// Seats are held for a booking.
    SeatsReserved {
        /// The booking.
        booking_id: Uuid,
        /// How many seats.
        seats: u32,
        /// Counts after the hold.
        counts: SeatCounts,
    },
    /// A booking's request for seats was refused. No longer recorded (see
    /// [`EventError::SeatsRefused`]); kept to read the history written before.
    SeatsRefused {
        /// The booking.
        booking_id: Uuid,
        /// How many seats were asked for.
        seats: u32,
        /// Why.
        reason: RefusalReason,
        /// Counts at the time.
        counts: SeatCounts,
    },
    /// A booking's held seats are sold.
    SeatsSold {
        /// The booking.
        booking_id: Uuid,
        /// How many seats.
        seats: u32,
        /// Counts after the sale.
        counts: SeatCounts,
    },
    /// A booking's seats went back to sale.
    SeatsReleased {
        /// The booking.
        booking_id: Uuid,
        /// How many seats.
        seats: u32,
        /// Whether they were held or sold before.
        was: ReservationState,
        /// Counts after the release.
        counts: SeatCounts,
    },
}

impl DomainEvent for EventFact {
    fn event_type(&self) -> String {
        match self {
            Self::EventScheduled(_) => "EventScheduled",
            Self::EventCancelled { .. } => "EventCancelled",
            Self::SeatsReserved { .. } => "SeatsReserved",
            Self::SeatsRefused { .. } => "SeatsRefused",
            Self::SeatsSold { .. } => "SeatsSold",
            Self::SeatsReleased { .. } => "SeatsReleased",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        FACT_VERSION.to_owned()
    }
}

/// Why an event refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The event does not exist.
    #[error("event not found")]
    NotFound,
    /// The event was already scheduled.
    #[error("event already exists")]
    AlreadyExists,
    /// The location named does not exist.
    #[error("location not found")]
    UnknownLocation,
    /// The location has no hall of that name.
    #[error("the location has no hall named '{0}'")]
    UnknownHall(String),
    /// More seats than the hall has.
    #[error("capacity {capacity} is more than the hall's {hall_capacity}")]
    CapacityExceedsHall {
        /// Asked for.
        capacity: u32,
        /// The hall's.
        hall_capacity: u32,
    },
    /// `ends_at` is not after `starts_at`.
    #[error("the event must end after it starts")]
    EndsBeforeStart,
    /// `starts_at` is not in the future.
    #[error("the event must start in the future")]
    StartsInPast,
    /// The event was already cancelled.
    #[error("the event is already cancelled")]
    AlreadyCancelled,
    /// The event is over.
    #[error("the event has already ended")]
    AlreadyEnded,
    /// Seats can be sold only from a hold.
    #[error("booking {0} holds no seats to sell")]
    NotHeld(Uuid),
    /// A reservation was refused. Nothing is recorded on the event: the booking's own
    /// stream records its rejection, so refused requests do not grow the event's.
    #[error("no seats for the booking: {0:?}")]
    SeatsRefused(RefusalReason),
}

impl DomainError for EventError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound => ErrorKind::NotFound,
            Self::AlreadyExists
            | Self::AlreadyCancelled
            | Self::AlreadyEnded
            | Self::NotHeld(_)
            | Self::SeatsRefused(_) => ErrorKind::Conflict,
            Self::UnknownLocation
            | Self::UnknownHall(_)
            | Self::CapacityExceedsHall { .. }
            | Self::EndsBeforeStart
            | Self::StartsInPast => ErrorKind::Invalid,
        }
    }

    fn code(&self) -> RefusalCode {
        match self {
            Self::NotFound => RefusalCode::NotFound,
            Self::AlreadyExists => RefusalCode::AlreadyExists,
            Self::UnknownLocation => RefusalCode::UnknownLocation,
            Self::UnknownHall(_) => RefusalCode::UnknownHall,
            Self::CapacityExceedsHall { .. } => RefusalCode::CapacityExceedsHall,
            Self::EndsBeforeStart => RefusalCode::EndsBeforeStart,
            Self::StartsInPast => RefusalCode::StartsInPast,
            Self::AlreadyCancelled => RefusalCode::AlreadyCancelled,
            Self::AlreadyEnded => RefusalCode::EventEnded,
            Self::NotHeld(_) => RefusalCode::SeatsNotHeld,
            Self::SeatsRefused(RefusalReason::SoldOut) => RefusalCode::SoldOut,
            Self::SeatsRefused(RefusalReason::EventCancelled) => RefusalCode::EventCancelled,
        }
    }
}

impl Aggregate for Event {
    const TYPE: &'static str = "event";
    type Command = EventCommand;
    type Event = EventFact;
    type Error = EventError;
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
            EventFact::EventScheduled(details) => self.details = Some(details),
            EventFact::EventCancelled { .. } => self.cancelled = true,
            EventFact::SeatsReserved {
                booking_id, seats, ..
            } => {
                self.held += seats;
                self.ledger.insert(
                    booking_id,
                    Reservation {
                        seats,
                        state: ReservationState::Held,
                        refused: None,
                    },
                );
            }
            EventFact::SeatsRefused {
                booking_id,
                seats,
                reason,
                ..
            } => {
                self.ledger.insert(
                    booking_id,
                    Reservation {
                        seats,
                        state: ReservationState::Refused,
                        refused: Some(reason),
                    },
                );
            }
            EventFact::SeatsSold {
                booking_id, seats, ..
            } => {
                self.held -= seats;
                self.sold += seats;
                self.set_state(booking_id, ReservationState::Sold);
            }
            EventFact::SeatsReleased {
                booking_id,
                seats,
                was,
                ..
            } => {
                match was {
                    ReservationState::Sold => self.sold -= seats,
                    _ => self.held -= seats,
                }
                self.set_state(booking_id, ReservationState::Released);
            }
        }
    }
}

impl Event {
    fn set_state(&mut self, booking_id: Uuid, state: ReservationState) {
        if let Some(line) = self.ledger.get_mut(&booking_id) {
            line.state = state;
        }
    }

    /// The counts after `held` and `sold` change by the given amounts.
    fn counts_after(&self, held: i64, sold: i64) -> SeatCounts {
        let now = self.counts();
        let held = (i64::from(now.held) + held) as u32;
        let sold = (i64::from(now.sold) + sold) as u32;
        SeatCounts {
            capacity: now.capacity,
            held,
            sold,
            available: now.capacity - held - sold,
        }
    }

    /// The decision itself, synchronous and without side effects.
    fn decide(&self, command: EventCommand) -> Result<Vec<EventFact>, EventError> {
        if let EventCommand::ScheduleEvent(schedule) = command {
            return self.schedule(schedule).map(|f| vec![f]);
        }
        let Some(details) = &self.details else {
            return Err(EventError::NotFound);
        };
        match command {
            EventCommand::ScheduleEvent(_) => unreachable!("handled above"),
            EventCommand::CancelEvent { reason, now } => {
                if self.cancelled {
                    Err(EventError::AlreadyCancelled)
                } else if details.ends_at <= now {
                    Err(EventError::AlreadyEnded)
                } else {
                    Ok(vec![EventFact::EventCancelled { reason }])
                }
            }
            EventCommand::ReserveSeats { booking_id, seats } => {
                if self.ledger.contains_key(&booking_id) {
                    return Ok(vec![]);
                }
                let seats = seats.get();
                let refusal = if self.cancelled {
                    Some(RefusalReason::EventCancelled)
                } else if seats > self.counts().available {
                    Some(RefusalReason::SoldOut)
                } else {
                    None
                };
                if let Some(reason) = refusal {
                    return Err(EventError::SeatsRefused(reason));
                }
                Ok(vec![EventFact::SeatsReserved {
                    booking_id,
                    seats,
                    counts: self.counts_after(i64::from(seats), 0),
                }])
            }
            EventCommand::SellSeats { booking_id } => match self.ledger.get(&booking_id) {
                Some(Reservation {
                    seats,
                    state: ReservationState::Held,
                    ..
                }) => Ok(vec![EventFact::SeatsSold {
                    booking_id,
                    seats: *seats,
                    counts: self.counts_after(-i64::from(*seats), i64::from(*seats)),
                }]),
                Some(Reservation {
                    state: ReservationState::Sold,
                    ..
                }) => Ok(vec![]),
                _ => Err(EventError::NotHeld(booking_id)),
            },
            EventCommand::ReleaseSeats { booking_id } => match self.ledger.get(&booking_id) {
                Some(&Reservation { seats, state, .. })
                    if matches!(state, ReservationState::Held | ReservationState::Sold) =>
                {
                    let n = i64::from(seats);
                    let counts = match state {
                        ReservationState::Sold => self.counts_after(0, -n),
                        _ => self.counts_after(-n, 0),
                    };
                    Ok(vec![EventFact::SeatsReleased {
                        booking_id,
                        seats,
                        was: state,
                        counts,
                    }])
                }
                // Released, refused or never reserved: nothing is held, nothing to give back.
                _ => Ok(vec![]),
            },
        }
    }

    fn schedule(&self, command: ScheduleEvent) -> Result<EventFact, EventError> {
        if self.details.is_some() {
            return Err(EventError::AlreadyExists);
        }
        let venue = command.venue.ok_or(EventError::UnknownLocation)?;
        let hall = venue
            .halls
            .iter()
            .find(|h| h.name == command.hall)
            .ok_or_else(|| EventError::UnknownHall(command.hall.to_string()))?;
        let capacity = command.capacity.unwrap_or(hall.capacity);
        if capacity > hall.capacity {
            return Err(EventError::CapacityExceedsHall {
                capacity: capacity.get(),
                hall_capacity: hall.capacity.get(),
            });
        }
        if command.ends_at <= command.starts_at {
            return Err(EventError::EndsBeforeStart);
        }
        if command.starts_at <= command.now {
            return Err(EventError::StartsInPast);
        }
        Ok(EventFact::EventScheduled(EventDetails {
            name: command.name,
            location_id: venue.location_id,
            location_name: venue.name,
            hall: command.hall,
            starts_at: command.starts_at,
            ends_at: command.ends_at,
            price_cents: command.price_cents,
            currency: command.currency,
            capacity,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Event>;

    fn n(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
    }

    fn location_id() -> Uuid {
        Uuid::from_u128(7)
    }

    fn venue() -> Venue {
        Venue {
            location_id: location_id(),
            name: n("Olympia"),
            halls: vec![Hall {
                name: n("Main"),
                capacity: Capacity::parse(10).unwrap(),
            }],
        }
    }

    fn schedule() -> ScheduleEvent {
        ScheduleEvent {
            name: n("Jazz night"),
            venue: Some(venue()),
            hall: n("Main"),
            capacity: None,
            starts_at: now() + chrono::Duration::days(30),
            ends_at: now() + chrono::Duration::days(30) + chrono::Duration::hours(3),
            price_cents: PriceCents::parse(2500).unwrap(),
            currency: Currency::parse("EUR").unwrap(),
            now: now(),
        }
    }

    fn details(capacity: i64) -> EventDetails {
        let s = schedule();
        EventDetails {
            name: s.name,
            location_id: location_id(),
            location_name: n("Olympia"),
            hall: s.hall,
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            price_cents: s.price_cents,
            currency: s.currency,
            capacity: Capacity::parse(capacity).unwrap(),
        }
    }

    fn scheduled() -> EventFact {
        EventFact::EventScheduled(details(10))
    }

    fn counts(held: u32, sold: u32) -> SeatCounts {
        SeatCounts {
            capacity: 10,
            held,
            sold,
            available: 10 - held - sold,
        }
    }

    fn booking(n: u128) -> Uuid {
        Uuid::from_u128(1000 + n)
    }

    fn reserve(b: u128, seats: i64) -> EventCommand {
        EventCommand::ReserveSeats {
            booking_id: booking(b),
            seats: Seats::parse(seats).unwrap(),
        }
    }

    fn reserved(b: u128, seats: u32, after: SeatCounts) -> EventFact {
        EventFact::SeatsReserved {
            booking_id: booking(b),
            seats,
            counts: after,
        }
    }

    // Scheduling

    #[test]
    fn an_event_takes_the_halls_capacity_by_default() {
        Given::with(())
            .given_no_previous_events()
            .when(EventCommand::ScheduleEvent(schedule()))
            .then_expect_events(vec![scheduled()]);
    }

    #[test]
    fn an_event_may_sell_fewer_seats_than_the_hall_has() {
        Given::with(())
            .given_no_previous_events()
            .when(EventCommand::ScheduleEvent(ScheduleEvent {
                capacity: Some(Capacity::parse(4).unwrap()),
                ..schedule()
            }))
            .then_expect_events(vec![EventFact::EventScheduled(details(4))]);
    }

    #[test]
    fn an_event_cannot_sell_more_seats_than_the_hall_has() {
        Given::with(())
            .given_no_previous_events()
            .when(EventCommand::ScheduleEvent(ScheduleEvent {
                capacity: Some(Capacity::parse(11).unwrap()),
                ..schedule()
            }))
            .then_expect_error(EventError::CapacityExceedsHall {
                capacity: 11,
                hall_capacity: 10,
            });
    }

    #[test]
    fn an_event_needs_an_existing_location() {
        Given::with(())
            .given_no_previous_events()
            .when(EventCommand::ScheduleEvent(ScheduleEvent {
                venue: None,
                ..schedule()
            }))
            .then_expect_error(EventError::UnknownLocation);
    }

    #[test]
    fn an_event_needs_an_existing_hall() {
        Given::with(())
            .given_no_previous_events()
            .when(EventCommand::ScheduleEvent(ScheduleEvent {
                hall: n("Attic"),
                ..schedule()
            }))
            .then_expect_error(EventError::UnknownHall("Attic".into()));
    }

    #[test]
    fn an_event_ends_after_it_starts() {
        let s = schedule();
        Given::with(())
            .given_no_previous_events()
            .when(EventCommand::ScheduleEvent(ScheduleEvent {
                ends_at: s.starts_at,
                ..s
            }))
            .then_expect_error(EventError::EndsBeforeStart);
    }

    #[test]
    fn an_event_starts_in_the_future() {
        Given::with(())
            .given_no_previous_events()
            .when(EventCommand::ScheduleEvent(ScheduleEvent {
                starts_at: now(),
                ..schedule()
            }))
            .then_expect_error(EventError::StartsInPast);
    }

    #[test]
    fn an_event_is_scheduled_once() {
        Given::with(())
            .given(vec![scheduled()])
            .when(EventCommand::ScheduleEvent(schedule()))
            .then_expect_error(EventError::AlreadyExists);
    }

    // Cancellation

    #[test]
    fn an_event_can_be_cancelled() {
        Given::with(())
            .given(vec![scheduled()])
            .when(EventCommand::CancelEvent {
                reason: n("storm"),
                now: now(),
            })
            .then_expect_events(vec![EventFact::EventCancelled { reason: n("storm") }]);
    }

    #[test]
    fn an_event_is_cancelled_once() {
        Given::with(())
            .given(vec![
                scheduled(),
                EventFact::EventCancelled { reason: n("storm") },
            ])
            .when(EventCommand::CancelEvent {
                reason: n("again"),
                now: now(),
            })
            .then_expect_error(EventError::AlreadyCancelled);
    }

    #[test]
    fn an_ended_event_cannot_be_cancelled() {
        Given::with(())
            .given(vec![scheduled()])
            .when(EventCommand::CancelEvent {
                reason: n("late"),
                now: now() + chrono::Duration::days(60),
            })
            .then_expect_error(EventError::AlreadyEnded);
    }

    #[test]
    fn a_missing_event_refuses_every_command() {
        for command in [
            EventCommand::CancelEvent {
                reason: n("x"),
                now: now(),
            },
            reserve(1, 1),
            EventCommand::SellSeats {
                booking_id: booking(1),
            },
            EventCommand::ReleaseSeats {
                booking_id: booking(1),
            },
        ] {
            Given::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(EventError::NotFound);
        }
    }

    // The seat ledger

    #[test]
    fn seats_are_held_while_there_are_enough() {
        Given::with(())
            .given(vec![scheduled(), reserved(1, 6, counts(6, 0))])
            .when(reserve(2, 4))
            .then_expect_events(vec![reserved(2, 4, counts(10, 0))]);
    }

    #[test]
    fn a_request_for_more_than_is_left_is_refused_sold_out() {
        Given::with(())
            .given(vec![scheduled(), reserved(1, 8, counts(8, 0))])
            .when(reserve(2, 3))
            .then_expect_error(EventError::SeatsRefused(RefusalReason::SoldOut));
    }

    #[test]
    fn a_cancelled_event_refuses_reservations() {
        Given::with(())
            .given(vec![
                scheduled(),
                EventFact::EventCancelled { reason: n("storm") },
            ])
            .when(reserve(1, 1))
            .then_expect_error(EventError::SeatsRefused(RefusalReason::EventCancelled));
    }

    #[test]
    fn a_booking_is_reserved_at_most_once() {
        Given::with(())
            .given(vec![scheduled(), reserved(1, 2, counts(2, 0))])
            .when(reserve(1, 2))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_booking_refused_in_history_stays_refused_even_when_seats_come_back() {
        let refused = EventFact::SeatsRefused {
            booking_id: booking(2),
            seats: 5,
            reason: RefusalReason::SoldOut,
            counts: counts(8, 0),
        };
        let released = EventFact::SeatsReleased {
            booking_id: booking(1),
            seats: 8,
            was: ReservationState::Held,
            counts: counts(0, 0),
        };
        Given::with(())
            .given(vec![
                scheduled(),
                reserved(1, 8, counts(8, 0)),
                refused,
                released,
            ])
            .when(reserve(2, 5))
            .then_expect_events(vec![]);
    }

    #[test]
    fn held_seats_are_sold() {
        Given::with(())
            .given(vec![scheduled(), reserved(1, 3, counts(3, 0))])
            .when(EventCommand::SellSeats {
                booking_id: booking(1),
            })
            .then_expect_events(vec![EventFact::SeatsSold {
                booking_id: booking(1),
                seats: 3,
                counts: counts(0, 3),
            }]);
    }

    #[test]
    fn selling_twice_is_a_no_op() {
        Given::with(())
            .given(vec![
                scheduled(),
                reserved(1, 3, counts(3, 0)),
                EventFact::SeatsSold {
                    booking_id: booking(1),
                    seats: 3,
                    counts: counts(0, 3),
                },
            ])
            .when(EventCommand::SellSeats {
                booking_id: booking(1),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn seats_that_are_not_held_cannot_be_sold() {
        Given::with(())
            .given(vec![scheduled()])
            .when(EventCommand::SellSeats {
                booking_id: booking(1),
            })
            .then_expect_error(EventError::NotHeld(booking(1)));
    }

    #[test]
    fn held_seats_are_released() {
        Given::with(())
            .given(vec![scheduled(), reserved(1, 3, counts(3, 0))])
            .when(EventCommand::ReleaseSeats {
                booking_id: booking(1),
            })
            .then_expect_events(vec![EventFact::SeatsReleased {
                booking_id: booking(1),
                seats: 3,
                was: ReservationState::Held,
                counts: counts(0, 0),
            }]);
    }

    #[test]
    fn sold_seats_are_released() {
        Given::with(())
            .given(vec![
                scheduled(),
                reserved(1, 3, counts(3, 0)),
                EventFact::SeatsSold {
                    booking_id: booking(1),
                    seats: 3,
                    counts: counts(0, 3),
                },
            ])
            .when(EventCommand::ReleaseSeats {
                booking_id: booking(1),
            })
            .then_expect_events(vec![EventFact::SeatsReleased {
                booking_id: booking(1),
                seats: 3,
                was: ReservationState::Sold,
                counts: counts(0, 0),
            }]);
    }

    #[test]
    fn seats_are_released_at_most_once() {
        Given::with(())
            .given(vec![
                scheduled(),
                reserved(1, 3, counts(3, 0)),
                EventFact::SeatsReleased {
                    booking_id: booking(1),
                    seats: 3,
                    was: ReservationState::Held,
                    counts: counts(0, 0),
                },
            ])
            .when(EventCommand::ReleaseSeats {
                booking_id: booking(1),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn releasing_what_was_never_held_is_a_no_op() {
        Given::with(())
            .given(vec![scheduled()])
            .when(EventCommand::ReleaseSeats {
                booking_id: booking(9),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn the_state_tracks_the_ledger() {
        let mut event = Event::default();
        for fact in [
            scheduled(),
            reserved(1, 3, counts(3, 0)),
            reserved(2, 2, counts(5, 0)),
            EventFact::SeatsSold {
                booking_id: booking(1),
                seats: 3,
                counts: counts(2, 3),
            },
        ] {
            event.apply(fact);
        }
        assert_eq!(event.counts(), counts(2, 3));
        assert_eq!(
            event.reservation(booking(1)),
            Some(Reservation {
                seats: 3,
                state: ReservationState::Sold,
                refused: None,
            })
        );
        assert_eq!(
            event.seat_holders().collect::<Vec<_>>(),
            [booking(1), booking(2)]
        );
        assert!(!event.is_cancelled());
    }

    /// Whatever order of ledger commands arrives, held + sold never passes capacity.
    #[test]
    fn no_sequence_of_commands_oversells() {
        let mut event = Event::default();
        event.apply(scheduled());
        // A deterministic pseudo-random walk over reserve/sell/release of 30 bookings.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = u128::from(x % 30);
            let command = match (x >> 8) % 3 {
                0 => reserve(b, i64::try_from(1 + (x >> 16) % 4).unwrap()),
                1 => EventCommand::SellSeats {
                    booking_id: booking(b),
                },
                _ => EventCommand::ReleaseSeats {
                    booking_id: booking(b),
                },
            };
            if let Ok(facts) = event.decide(command) {
                for fact in facts {
                    event.apply(fact);
                }
            }
            let c = event.counts();
            assert!(c.held + c.sold <= c.capacity, "{c:?}");
            assert_eq!(c.available, c.capacity - c.held - c.sold);
        }
    }
}
