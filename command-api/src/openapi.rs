//! command-api's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the request and answer types; served at `/openapi.json` with a
//! browsable UI at `/docs`, and committed as `docs/openapi/command-api.json` (a test
//! fails when the two differ).

use utoipa::OpenApi;

use crate::routes::{bookings, events, locations, sagas, users};

/// A name or line of text as `domain::values::Name` takes it: 1 to 200 characters once
/// trimmed of white space, no control characters. (The white space is Rust's
/// `char::is_whitespace`, spelled out: JSON Schema's `\\s` is another set.)
pub const NAME_PATTERN: &str = concat!(
    "^[\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*",
    "[^\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
    "(?:[^\\x00-\\x1f\\x7f-\\x9f]{0,198}",
    "[^\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000])?",
    "[\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$"
);

/// The schema of a field read as a `domain::values::Name`.
pub struct Text;

impl utoipa::PartialSchema for Text {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .description(Some(
                "1 to 200 characters once trimmed of white space; no control characters.",
            ))
            .pattern(Some(NAME_PATTERN))
            .into()
    }
}

impl utoipa::ToSchema for Text {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "boxoffice command-api",
        description = "The write side of boxoffice: commands that append facts to the event store. \
                       An accepted command answers with a consistency token; send it as \
                       `X-Consistency-Token` on a query-api read to see the write. \
                       Errors use one envelope, `{\"error\": {\"code\", \"message\", \"details\"?}}`.",
        license(name = "MIT")
    ),
    paths(
        locations::create_location,
        locations::add_hall,
        events::schedule_event,
        events::cancel_event,
        bookings::request_booking,
        bookings::cancel_booking,
        users::erase,
        sagas::parked,
        sagas::retry,
    ),
    tags(
        (name = "locations", description = "Venues and their halls."),
        (name = "events", description = "Shows in a hall."),
        (name = "bookings", description = "Seats, paid through the saga."),
        (name = "admin", description = "Operators: erasure, parked sagas."),
        (name = "operations", description = "Health and metrics."),
    )
)]
struct Document;

/// The document, with what every service shares (`platform::openapi::finish`).
pub fn document() -> utoipa::openapi::OpenApi {
    platform::openapi::finish(Document::openapi(), true)
}

/// The document as served and committed.
pub fn document_json() -> String {
    platform::openapi::to_json(&document())
}
