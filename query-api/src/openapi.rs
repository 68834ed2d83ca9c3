//! query-api's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the answer types of `crate::contract`; served at `/openapi.json`
//! with a browsable UI at `/docs`, and committed as `docs/openapi/query-api.json` (a
//! test fails when the two differ).

use utoipa::OpenApi;

use crate::routes::{admin, audit, bookings, events, locations, parked};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "boxoffice query-api",
        description = "The read side of boxoffice: read models built by the projector, and the audit \
                       of the event store. A read carrying `X-Consistency-Token` (from a command's \
                       answer) waits until the read models include that write, up to \
                       `X-Consistency-Timeout-Ms` (default 5000, at most 30000), then answers 503 \
                       `not_caught_up` with `Retry-After`. Errors use one envelope, \
                       `{\"error\": {\"code\", \"message\", \"details\"?}}`.",
        license(name = "MIT")
    ),
    paths(
        locations::list,
        locations::one,
        events::list,
        events::one,
        bookings::one,
        bookings::mine,
        admin::list,
        admin::rebuild,
        parked::list,
        parked::retry,
        audit::stream,
        audit::state,
        audit::verify,
        audit::export,
    ),
    tags(
        (name = "locations", description = "Venues and their halls."),
        (name = "events", description = "Shows and their seats."),
        (name = "bookings", description = "A customer's bookings."),
        (name = "admin", description = "Projections and parked events."),
        (name = "audit", description = "The event store as recorded: history, state at a point, verification, export."),
        (name = "operations", description = "Health and metrics."),
    )
)]
struct Document;

/// The document, with what every service shares (`platform::openapi::finish`).
pub fn document() -> utoipa::openapi::OpenApi {
    platform::openapi::finish(Document::openapi(), false)
}

/// The document as served and committed.
pub fn document_json() -> String {
    platform::openapi::to_json(&document())
}
