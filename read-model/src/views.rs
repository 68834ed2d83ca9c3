//! The read models: one row type per projection, the pure function that moves a row
//! forward by one event, and the SQL that loads and stores rows.
//!
//! A row is a function of its aggregate's events up to `last_sequence`, and of nothing
//! else (times come from the events' `recorded_at`). That is what makes redelivery
//! harmless, two writers agree, and a rebuild equal to the live table.

use chrono::{DateTime, Utc};
use domain::booking::{BookingFact, BookingStatus};
use domain::event::EventFact;
use domain::location::{Hall, LocationFact};
use domain::user::UserFact;
use platform::kafka::WireEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projection::Projection;

/// Why an event could not be applied to a row.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The payload is not a fact this projection knows.
    #[error("cannot decode {event_type} v{version}: {cause}")]
    Decode {
        /// The event's type.
        event_type: String,
        /// Its version.
        version: String,
        /// What serde said.
        cause: serde_json::Error,
    },
    /// The event needs a row that its stream never created.
    #[error("{0} arrived before the row was created")]
    NoRow(String),
    /// `recorded_at` is missing from the metadata or is not a time.
    #[error("the event has no valid recorded_at")]
    NoTime,
}

/// One read model: a row type read with `SELECT *` from its table.
pub trait View:
    Sized + Clone + Send + Sync + Unpin + for<'r> sqlx::FromRow<'r, PgRow> + 'static
{
    /// The projection this row type is.
    const PROJECTION: Projection;
    /// The aggregate type whose events it consumes.
    const AGGREGATE_TYPE: &'static str = Self::PROJECTION.aggregate_type();
    /// Its live table in the read-model schema.
    const TABLE: &'static str = Self::PROJECTION.table();

    /// Moves the row on by `event` (`None` before the stream's first event). On error
    /// the row is as it was.
    fn apply(row: &mut Option<Self>, id: Uuid, event: &WireEvent) -> Result<(), ApplyError>;

    /// The row's aggregate id.
    fn id(&self) -> Uuid;

    /// The sequence of the last event applied to the row.
    fn last_sequence(&self) -> i64;

    /// The rows of `table` with these ids.
    fn load(
        conn: &mut PgConnection,
        table: &str,
        ids: &[Uuid],
    ) -> impl std::future::Future<Output = sqlx::Result<Vec<Self>>> + Send {
        async move {
            // Runtime-bound, as every statement on a view's table: the table is named at
            // run time (the live one, or a rebuild's shadow table).
            sqlx::query_as(&format!("SELECT * FROM {table} WHERE id = ANY($1)"))
                .bind(ids)
                .fetch_all(conn)
                .await
        }
    }

    /// Writes `rows` into `table`; a stored row is replaced only by a newer one.
    fn store(
        conn: &mut PgConnection,
        table: &str,
        rows: &[Self],
    ) -> impl std::future::Future<Output = sqlx::Result<()>> + Send;
}

/// A name column (a status) as a checked query reads it
/// (`status AS "status: StoredName<BookingStatus>"`): decoded from `text` by the type's
/// `TryFrom<String>`, so a name no variant has fails the read, as
/// `#[sqlx(try_from = "String")]` does for the rows' [`sqlx::FromRow`]; `query_as!` turns
/// it into the field's type (`From`). A wrapper, because `BookingStatus` lives in
/// `domain`, which knows nothing of sqlx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredName<T>(pub T);

impl<T> sqlx::Type<sqlx::Postgres> for StoredName<T> {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r, T> sqlx::Decode<'r, sqlx::Postgres> for StoredName<T>
where
    T: TryFrom<String>,
    T::Error: std::error::Error + Send + Sync + 'static,
{
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let name = <String as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(Self(T::try_from(name)?))
    }
}

impl From<StoredName<BookingStatus>> for BookingStatus {
    fn from(name: StoredName<BookingStatus>) -> Self {
        name.0
    }
}

impl From<StoredName<EventStatus>> for EventStatus {
    fn from(name: StoredName<EventStatus>) -> Self {
        name.0
    }
}

/// The `recorded_at` of an event's metadata.
pub fn recorded_at(event: &WireEvent) -> Result<DateTime<Utc>, ApplyError> {
    event.metadata.recorded_time().ok_or(ApplyError::NoTime)
}

fn decode<F: serde::de::DeserializeOwned>(event: &WireEvent) -> Result<F, ApplyError> {
    let upcast = domain::upcast::upcast(
        event.event_type.clone(),
        event.event_version.clone(),
        event.payload.clone(),
    );
    serde_json::from_value(upcast).map_err(|cause| ApplyError::Decode {
        event_type: event.event_type.clone(),
        version: event.event_version.clone(),
        cause,
    })
}

fn existing<'a, T>(row: &'a mut Option<T>, event: &WireEvent) -> Result<&'a mut T, ApplyError> {
    row.as_mut()
        .ok_or_else(|| ApplyError::NoRow(event.event_type.clone()))
}

// --- locations ------------------------------------------------------------------

/// A location as `GET /v1/locations/{id}` shows it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LocationRow {
    /// The location's id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Its country.
    pub country: String,
    /// `[{"name", "capacity"}]`, in the order the halls were added.
    pub halls: Value,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// The last event applied.
    pub last_sequence: i64,
}

fn hall_json(hall: &Hall) -> Value {
    serde_json::json!({ "name": hall.name, "capacity": hall.capacity })
}

impl View for LocationRow {
    const PROJECTION: Projection = Projection::Locations;

    fn apply(row: &mut Option<Self>, id: Uuid, event: &WireEvent) -> Result<(), ApplyError> {
        let at = recorded_at(event)?;
        let row = match decode::<LocationFact>(event)? {
            LocationFact::LocationCreated {
                name,
                address,
                country,
                halls,
            } => row.insert(LocationRow {
                id,
                name: name.to_string(),
                address: address.to_string(),
                country: country.to_string(),
                halls: Value::Array(halls.iter().map(hall_json).collect()),
                created_at: at,
                updated_at: at,
                last_sequence: 0,
            }),
            LocationFact::HallAdded { hall } => {
                let row = existing(row, event)?;
                if let Value::Array(halls) = &mut row.halls {
                    halls.push(hall_json(&hall));
                }
                row
            }
        };
        row.updated_at = at;
        row.last_sequence = event.sequence;
        Ok(())
    }

    fn id(&self) -> Uuid {
        self.id
    }

    fn last_sequence(&self) -> i64 {
        self.last_sequence
    }

    async fn store(conn: &mut PgConnection, table: &str, rows: &[Self]) -> sqlx::Result<()> {
        let text = |f: fn(&Self) -> &str| rows.iter().map(f).collect::<Vec<_>>();
        // Runtime-bound: `table` is the live table or a rebuild's, named at run time.
        sqlx::query(&format!(
            "INSERT INTO {table} (id, name, address, country, halls, created_at, updated_at, last_sequence)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[],
                                  $6::timestamptz[], $7::timestamptz[], $8::bigint[])
             ON CONFLICT (id) DO UPDATE SET
                 name = EXCLUDED.name, address = EXCLUDED.address, country = EXCLUDED.country,
                 halls = EXCLUDED.halls, created_at = EXCLUDED.created_at,
                 updated_at = EXCLUDED.updated_at, last_sequence = EXCLUDED.last_sequence
             WHERE {table}.last_sequence < EXCLUDED.last_sequence"
        ))
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(text(|r| &r.name))
        .bind(text(|r| &r.address))
        .bind(text(|r| &r.country))
        .bind(rows.iter().map(|r| &r.halls).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.last_sequence).collect::<Vec<_>>())
        .execute(conn)
        .await
        .map(drop)
    }
}

// --- events ---------------------------------------------------------------------------

/// An event as `GET /v1/events/{id}` shows it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EventRow {
    /// The event's id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Where it takes place.
    pub location_id: Uuid,
    /// That location's name.
    pub location_name: String,
    /// The hall.
    pub hall: String,
    /// When it starts.
    pub starts_at: DateTime<Utc>,
    /// When it ends.
    pub ends_at: DateTime<Utc>,
    /// Price of one seat.
    pub price_cents: i64,
    /// Currency of the price.
    pub currency: String,
    /// Seats for sale.
    pub capacity: i32,
    /// Seats held for bookings being paid.
    pub seats_held: i32,
    /// Seats sold.
    pub seats_sold: i32,
    /// `capacity - seats_held - seats_sold`.
    pub seats_available: i32,
    /// Scheduled or cancelled.
    #[sqlx(try_from = "String")]
    pub status: EventStatus,
    /// When it was scheduled.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// The last event applied.
    pub last_sequence: i64,
}

/// Whether an event still takes place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// It takes place; seats are for sale.
    Scheduled,
    /// It was cancelled; its bookings are cancelled and refunded.
    Cancelled,
}

impl EventStatus {
    /// The name used in the API and the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Cancelled => "cancelled",
        }
    }
}

impl TryFrom<String> for EventStatus {
    type Error = domain::values::UnknownName;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        [Self::Scheduled, Self::Cancelled]
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or(domain::values::UnknownName(name))
    }
}

impl EventRow {
    fn counts(&mut self, counts: domain::event::SeatCounts) {
        let as_i32 = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        self.seats_held = as_i32(counts.held);
        self.seats_sold = as_i32(counts.sold);
        self.seats_available = as_i32(counts.available);
    }
}

impl View for EventRow {
    const PROJECTION: Projection = Projection::Events;

    fn apply(row: &mut Option<Self>, id: Uuid, event: &WireEvent) -> Result<(), ApplyError> {
        let at = recorded_at(event)?;
        let row = match decode::<EventFact>(event)? {
            EventFact::EventScheduled(details) => {
                let capacity = i32::try_from(details.capacity.get()).unwrap_or(i32::MAX);
                row.insert(EventRow {
                    id,
                    name: details.name.to_string(),
                    location_id: details.location_id,
                    location_name: details.location_name.to_string(),
                    hall: details.hall.to_string(),
                    starts_at: details.starts_at,
                    ends_at: details.ends_at,
                    price_cents: details.price_cents.get(),
                    currency: details.currency.as_str().to_owned(),
                    capacity,
                    seats_held: 0,
                    seats_sold: 0,
                    seats_available: capacity,
                    status: EventStatus::Scheduled,
                    created_at: at,
                    updated_at: at,
                    last_sequence: 0,
                })
            }
            EventFact::EventCancelled { .. } => {
                let row = existing(row, event)?;
                row.status = EventStatus::Cancelled;
                row
            }
            EventFact::SeatsReserved { counts, .. }
            | EventFact::SeatsRefused { counts, .. }
            | EventFact::SeatsSold { counts, .. }
            | EventFact::SeatsReleased { counts, .. } => {
                let row = existing(row, event)?;
                row.counts(counts);
                row
            }
        };
        row.updated_at = at;
        row.last_sequence = event.sequence;
        Ok(())
    }

    fn id(&self) -> Uuid {
        self.id
    }

    fn last_sequence(&self) -> i64 {
        self.last_sequence
    }

    async fn store(conn: &mut PgConnection, table: &str, rows: &[Self]) -> sqlx::Result<()> {
        let text = |f: fn(&Self) -> &str| rows.iter().map(f).collect::<Vec<_>>();
        let int = |f: fn(&Self) -> i32| rows.iter().map(f).collect::<Vec<_>>();
        let time = |f: fn(&Self) -> DateTime<Utc>| rows.iter().map(f).collect::<Vec<_>>();
        // Runtime-bound: `table` is the live table or a rebuild's, named at run time.
        sqlx::query(&format!(
            "INSERT INTO {table} (id, name, location_id, location_name, hall, starts_at, ends_at,
                                  price_cents, currency, capacity, seats_held, seats_sold,
                                  seats_available, status, created_at, updated_at, last_sequence)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[],
                                  $6::timestamptz[], $7::timestamptz[], $8::bigint[], $9::text[],
                                  $10::int[], $11::int[], $12::int[], $13::int[], $14::text[],
                                  $15::timestamptz[], $16::timestamptz[], $17::bigint[])
             ON CONFLICT (id) DO UPDATE SET
                 name = EXCLUDED.name, location_id = EXCLUDED.location_id,
                 location_name = EXCLUDED.location_name, hall = EXCLUDED.hall,
                 starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at,
                 price_cents = EXCLUDED.price_cents, currency = EXCLUDED.currency,
                 capacity = EXCLUDED.capacity, seats_held = EXCLUDED.seats_held,
                 seats_sold = EXCLUDED.seats_sold, seats_available = EXCLUDED.seats_available,
                 status = EXCLUDED.status, created_at = EXCLUDED.created_at,
                 updated_at = EXCLUDED.updated_at, last_sequence = EXCLUDED.last_sequence
             WHERE {table}.last_sequence < EXCLUDED.last_sequence"
        ))
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(text(|r| &r.name))
        .bind(rows.iter().map(|r| r.location_id).collect::<Vec<_>>())
        .bind(text(|r| &r.location_name))
        .bind(text(|r| &r.hall))
        .bind(time(|r| r.starts_at))
        .bind(time(|r| r.ends_at))
        .bind(rows.iter().map(|r| r.price_cents).collect::<Vec<_>>())
        .bind(text(|r| &r.currency))
        .bind(int(|r| r.capacity))
        .bind(int(|r| r.seats_held))
        .bind(int(|r| r.seats_sold))
        .bind(int(|r| r.seats_available))
        .bind(text(|r| r.status.as_str()))
        .bind(time(|r| r.created_at))
        .bind(time(|r| r.updated_at))
        .bind(rows.iter().map(|r| r.last_sequence).collect::<Vec<_>>())
        .execute(conn)
        .await
        .map(drop)
    }
}

// --- bookings -------------------------------------------------------------------------

/// One status a booking went through, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The status.
    pub status: String,
    /// When the booking reached it (RFC 3339, as recorded).
    pub at: String,
}

/// A booking as `GET /v1/bookings/{id}` shows it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct BookingRow {
    /// The booking's id.
    pub id: Uuid,
    /// The event.
    pub event_id: Uuid,
    /// The owner.
    pub user_id: String,
    /// How many seats.
    pub seats: i32,
    /// What it costs.
    pub amount_cents: i64,
    /// Currency of the amount.
    pub currency: String,
    /// Where it stands.
    #[sqlx(try_from = "String")]
    pub status: BookingStatus,
    /// Why it was rejected or cancelled.
    pub reason: Option<String>,
    /// Whether the payment went back.
    pub refunded: bool,
    /// `[{"status", "at"}]`.
    pub history: Value,
    /// The owner's contact data, sealed under their key as the booking carries it
    /// (`domain::personal::SealedContact`); never in clear here.
    pub contact: Option<Value>,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// The last event applied.
    pub last_sequence: i64,
}

impl BookingRow {
    fn step(&mut self, status: BookingStatus, event: &WireEvent) {
        self.status = status;
        if let Value::Array(history) = &mut self.history {
            history.push(serde_json::json!({
                "status": status.as_str(),
                "at": event.metadata.recorded_at,
            }));
        }
    }
}

impl View for BookingRow {
    const PROJECTION: Projection = Projection::Bookings;

    fn apply(row: &mut Option<Self>, id: Uuid, event: &WireEvent) -> Result<(), ApplyError> {
        let at = recorded_at(event)?;
        let row = match decode::<BookingFact>(event)? {
            BookingFact::BookingRequested {
                event_id,
                user_id,
                seats,
                amount_cents,
                currency,
                contact,
                ..
            } => {
                let row = row.insert(BookingRow {
                    id,
                    event_id,
                    user_id,
                    seats: i32::try_from(seats).unwrap_or(i32::MAX),
                    amount_cents,
                    currency: currency.as_str().to_owned(),
                    status: BookingStatus::Pending,
                    reason: None,
                    refunded: false,
                    history: Value::Array(Vec::new()),
                    contact: contact.map(|sealed| serde_json::json!(sealed)),
                    created_at: at,
                    updated_at: at,
                    last_sequence: 0,
                });
                row.step(BookingStatus::Pending, event);
                row
            }
            BookingFact::BookingConfirmed => {
                let row = existing(row, event)?;
                row.step(BookingStatus::Confirmed, event);
                row
            }
            BookingFact::BookingRejected { reason } => {
                let row = existing(row, event)?;
                row.step(BookingStatus::Rejected, event);
                row.reason = Some(reason.as_str().to_owned());
                row
            }
            BookingFact::BookingCancelled { reason } => {
                let row = existing(row, event)?;
                row.step(BookingStatus::Cancelled, event);
                row.reason = Some(reason.as_str().to_owned());
                row
            }
            BookingFact::BookingRefunded { .. } => {
                let row = existing(row, event)?;
                row.refunded = true;
                row
            }
        };
        row.updated_at = at;
        row.last_sequence = event.sequence;
        Ok(())
    }

    fn id(&self) -> Uuid {
        self.id
    }

    fn last_sequence(&self) -> i64 {
        self.last_sequence
    }

    async fn store(conn: &mut PgConnection, table: &str, rows: &[Self]) -> sqlx::Result<()> {
        let text = |f: fn(&Self) -> &str| rows.iter().map(f).collect::<Vec<_>>();
        // Runtime-bound: `table` is the live table or a rebuild's, named at run time.
        sqlx::query(&format!(
            "INSERT INTO {table} (id, event_id, user_id, seats, amount_cents, currency, status,
                                  reason, refunded, history, created_at, updated_at, last_sequence,
                                  contact)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::bigint[],
                                  $6::text[], $7::text[], $8::text[], $9::bool[], $10::jsonb[],
                                  $11::timestamptz[], $12::timestamptz[], $13::bigint[], $14::jsonb[])
             ON CONFLICT (id) DO UPDATE SET
                 event_id = EXCLUDED.event_id, user_id = EXCLUDED.user_id, seats = EXCLUDED.seats,
                 amount_cents = EXCLUDED.amount_cents, currency = EXCLUDED.currency,
                 status = EXCLUDED.status, reason = EXCLUDED.reason, refunded = EXCLUDED.refunded,
                 history = EXCLUDED.history, contact = EXCLUDED.contact, created_at = EXCLUDED.created_at,
                 updated_at = EXCLUDED.updated_at, last_sequence = EXCLUDED.last_sequence
             WHERE {table}.last_sequence < EXCLUDED.last_sequence"
        ))
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.event_id).collect::<Vec<_>>())
        .bind(text(|r| &r.user_id))
        .bind(rows.iter().map(|r| r.seats).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.amount_cents).collect::<Vec<_>>())
        .bind(text(|r| &r.currency))
        .bind(text(|r| r.status.as_str()))
        .bind(rows.iter().map(|r| r.reason.as_deref()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.refunded).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| &r.history).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.last_sequence).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.contact.as_ref()).collect::<Vec<_>>())
        .execute(conn)
        .await
        .map(drop)
    }
}

// --- users ------------------------------------------------------------------------

/// A user's erasures: which of their keys are destroyed, so that what was sealed under
/// them shows as erased (even were a key to come back from an old backup).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct UserRow {
    /// The user's stream id (`domain::user::stream_id`).
    pub id: Uuid,
    /// The user id (the token's `sub`).
    pub user_id: String,
    /// Every key erased so far.
    pub erased_keys: Vec<Uuid>,
    /// When the last erasure was recorded.
    pub erased_at: DateTime<Utc>,
    /// The last event applied.
    pub last_sequence: i64,
}

impl View for UserRow {
    const PROJECTION: Projection = Projection::Users;

    fn apply(row: &mut Option<Self>, id: Uuid, event: &WireEvent) -> Result<(), ApplyError> {
        let at = recorded_at(event)?;
        let UserFact::PersonalDataErased { user_id, keys } = decode::<UserFact>(event)?;
        let row = row.get_or_insert_with(|| UserRow {
            id,
            user_id,
            erased_keys: Vec::new(),
            erased_at: at,
            last_sequence: 0,
        });
        row.erased_keys.extend(keys);
        row.erased_at = at;
        row.last_sequence = event.sequence;
        Ok(())
    }

    fn id(&self) -> Uuid {
        self.id
    }

    fn last_sequence(&self) -> i64 {
        self.last_sequence
    }

    async fn store(conn: &mut PgConnection, table: &str, rows: &[Self]) -> sqlx::Result<()> {
        // One row at a time: `unnest` cannot take an array of arrays of keys.
        for row in rows {
            // Runtime-bound: `table` is the live table or a rebuild's, named at run time.
            sqlx::query(&format!(
                "INSERT INTO {table} (id, user_id, erased_keys, erased_at, last_sequence)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET
                     user_id = EXCLUDED.user_id, erased_keys = EXCLUDED.erased_keys,
                     erased_at = EXCLUDED.erased_at, last_sequence = EXCLUDED.last_sequence
                 WHERE {table}.last_sequence < EXCLUDED.last_sequence"
            ))
            .bind(row.id)
            .bind(&row.user_id)
            .bind(&row.erased_keys)
            .bind(row.erased_at)
            .bind(row.last_sequence)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::DomainEvent;
    use domain::booking::Reason;
    use domain::metadata::EventMetadata;
    use domain::values::Currency;
    use serde_json::json;

    fn wire<F: Serialize + DomainEvent>(sequence: i64, fact: F, at: &str) -> WireEvent {
        WireEvent {
            position: sequence,
            aggregate_type: "booking".into(),
            aggregate_id: Uuid::nil().to_string(),
            sequence,
            event_type: fact.event_type(),
            event_version: fact.event_version(),
            payload: serde_json::to_value(&fact).unwrap(),
            metadata: EventMetadata {
                recorded_at: Some(at.to_owned()),
                ..EventMetadata::default()
            },
        }
    }

    fn requested() -> BookingFact {
        BookingFact::BookingRequested {
            event_id: Uuid::from_u128(1),
            user_id: "alice".into(),
            seats: 2,
            unit_price_cents: 2500,
            amount_cents: 5000,
            currency: Currency::parse("EUR").unwrap(),
            payment_method: Some("pm_1".into()),
            contact: None,
        }
    }

    #[test]
    fn a_booking_row_follows_its_history() {
        let id = Uuid::from_u128(9);
        let mut row = None;
        for event in [
            wire(1, requested(), "2030-01-01T10:00:00.000001Z"),
            wire(2, BookingFact::BookingConfirmed, "2030-01-01T10:00:01Z"),
            wire(
                3,
                BookingFact::BookingCancelled {
                    reason: Reason::CancelledByUser,
                },
                "2030-01-02T10:00:00Z",
            ),
            wire(
                4,
                BookingFact::BookingRefunded { amount_cents: 5000 },
                "2030-01-02T10:00:05Z",
            ),
        ] {
            BookingRow::apply(&mut row, id, &event).unwrap();
        }
        let row = row.unwrap();

        assert_eq!(row.status, BookingStatus::Cancelled);
        assert_eq!(row.reason.as_deref(), Some("cancelled_by_user"));
        assert!(row.refunded);
        assert_eq!(row.last_sequence, 4);
        assert_eq!(
            row.history,
            json!([
                {"status": "pending", "at": "2030-01-01T10:00:00.000001Z"},
                {"status": "confirmed", "at": "2030-01-01T10:00:01Z"},
                {"status": "cancelled", "at": "2030-01-02T10:00:00Z"},
            ])
        );
        assert_eq!(
            row.created_at.to_rfc3339(),
            "2030-01-01T10:00:00.000001+00:00"
        );
        assert_eq!(row.updated_at.to_rfc3339(), "2030-01-02T10:00:05+00:00");
    }

    #[test]
    fn an_event_before_its_row_is_refused() {
        let mut row = None;
        let err = BookingRow::apply(
            &mut row,
            Uuid::nil(),
            &wire(2, BookingFact::BookingConfirmed, "2030-01-01T10:00:00Z"),
        );
        assert!(matches!(err, Err(ApplyError::NoRow(_))));
        assert!(row.is_none());
    }

    #[test]
    fn an_event_without_a_time_is_refused() {
        let mut event = wire(1, requested(), "x");
        event.metadata = EventMetadata::default();
        assert!(matches!(
            BookingRow::apply(&mut None, Uuid::nil(), &event),
            Err(ApplyError::NoTime)
        ));
    }
}
