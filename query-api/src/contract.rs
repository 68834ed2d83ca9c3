//! The answers of query-api, as types: what the handlers serialize is what the OpenAPI
//! document (`crate::openapi`) describes, from the same definitions.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// One page of a list, oldest first; `next_cursor` asks for the next (null: the last).
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Give it as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// A hall of a location.
#[derive(Debug, Serialize, ToSchema)]
pub struct Hall {
    pub name: String,
    pub capacity: i64,
}

/// A location with its halls.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "0193b3c4-8f5e-7a1c-9d2e-3f4a5b6c7d8e", "name": "Roundhouse",
                          "address": "Chalk Farm Rd, London", "country": "GB",
                          "halls": [{"name": "Main", "capacity": 100}]}))]
pub struct Location {
    pub id: Uuid,
    pub name: String,
    pub address: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// The halls as projected (name and capacity each).
    #[schema(value_type = Vec<Hall>)]
    pub halls: Value,
}

/// An event and its seats. `seats_available = capacity - seats_held - seats_sold`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Event {
    pub id: Uuid,
    pub name: String,
    pub location_id: Uuid,
    pub location_name: String,
    pub hall: String,
    /// RFC 3339, UTC.
    pub starts_at: String,
    /// RFC 3339, UTC.
    pub ends_at: String,
    /// Minor units of `currency`.
    pub price_cents: i64,
    /// ISO 4217.
    pub currency: String,
    pub capacity: i32,
    /// Reserved by bookings not yet paid.
    pub seats_held: i32,
    pub seats_sold: i32,
    pub seats_available: i32,
    /// `scheduled` or `cancelled`.
    pub status: String,
}

/// A turn in a booking's life.
#[derive(Debug, Serialize, ToSchema)]
pub struct Step {
    /// `pending`, `confirmed`, `rejected` or `cancelled`.
    pub status: String,
    /// RFC 3339, UTC.
    pub at: String,
}

/// The customer's contact data recorded with a booking, from the token's claims.
#[derive(Debug, Serialize, ToSchema)]
pub struct Contact {
    /// True once the user's personal data was erased (name and email are then null).
    pub erased: bool,
    pub name: Option<String>,
    pub email: Option<String>,
}

/// A booking.
#[derive(Debug, Serialize, ToSchema)]
pub struct Booking {
    pub id: Uuid,
    pub event_id: Uuid,
    /// The token `sub` of the customer.
    pub user_id: String,
    pub seats: i32,
    pub amount_cents: i64,
    pub currency: String,
    /// `pending`, `confirmed`, `rejected` or `cancelled`.
    pub status: String,
    /// Null, `sold_out`, `payment_declined`, `hold_expired`, `event_cancelled` or
    /// `cancelled_by_user`.
    pub reason: Option<String>,
    /// The payment was given back (a cancelled booking).
    pub refunded: bool,
    #[schema(value_type = Vec<Step>)]
    pub history: Value,
    /// Null when the token carried no contact claims.
    #[schema(value_type = Option<Contact>)]
    pub contact: Value,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

/// A projection's rebuild, as requested.
#[derive(Debug, Serialize, ToSchema)]
pub struct RebuildRequested {
    pub id: i64,
    pub projection: String,
    /// `requested`, or the state of the rebuild already asked for.
    pub status: String,
}

/// A page of one stream's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamHistory {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub events: Vec<crate::audit::history::StoredEvent>,
    pub next_cursor: Option<String>,
}

/// An aggregate's state at a point of its history, replayed from the store.
#[derive(Debug, Serialize, ToSchema)]
pub struct StateAt {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The last event applied.
    pub sequence: i64,
    /// The aggregate as the domain sees it.
    #[schema(value_type = Object)]
    pub state: Value,
}

/// The parked events, by position (at most 1000).
#[derive(Debug, Serialize, ToSchema)]
pub struct ParkedEvents {
    pub items: Vec<crate::routes::parked::Parked>,
}
