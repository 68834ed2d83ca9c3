//! The audit endpoints (admin only), reading the event store: a stream's history, an
//! aggregate's state at a point, verification of the whole store, and the export.
//! See [`crate::audit`] for what each does.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use platform::auth::Admin;
use platform::http::{ApiError, QueryParams};
use serde::Deserialize;

use crate::app::AppState;
use crate::audit::export::{Export, ExportError};
use crate::audit::replay::{self, Point, ReplayError};
use crate::audit::{history, known_type, verify};
use crate::contract::{StateAt, StreamHistory};
use crate::pagination::{self, field_error};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/audit/streams/{aggregate_type}/{id}", get(stream))
        .route("/v1/audit/streams/{aggregate_type}/{id}/state", get(state))
        .route("/v1/audit/verify", get(verify))
        .route("/v1/audit/export", get(export))
}

fn no_stream(aggregate_type: &str, id: &str) -> ApiError {
    ApiError::not_found(format!(
        "no stream {aggregate_type}/{id} in the event store"
    ))
}

#[derive(Deserialize)]
pub(crate) struct PageParams {
    cursor: Option<String>,
    limit: Option<i64>,
}

/// One stream's stored events, in order (admin).
#[utoipa::path(get, path = "/v1/audit/streams/{aggregate_type}/{id}", tag = "audit", security(("bearer" = [])),
    params(
        ("aggregate_type" = String, Path, description = "`location`, `event`, `booking` or `user`."),
        ("id" = String, Path, description = "The aggregate's id."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "1 to 200; 50 when absent."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the page before."),
    ),
    responses(
        (status = 200, description = "A page of the stream.", body = StreamHistory),
        (status = 403, description = "Not an admin.", body = platform::openapi::ErrorBody),
        (status = 404, description = "No such stream.", body = platform::openapi::ErrorBody),
        (status = 422, description = "`validation_failed`: a query parameter out of range.", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn stream(
    State(app): State<AppState>,
    _admin: Admin,
    Path((aggregate_type, id)): Path<(String, String)>,
    QueryParams(params): QueryParams<PageParams>,
) -> Result<Json<StreamHistory>, ApiError> {
    let limit = pagination::limit(params.limit)?;
    let after: i64 = pagination::decode(params.cursor.as_deref())?.unwrap_or(0);
    if !known_type(&aggregate_type) {
        return Err(no_stream(&aggregate_type, &id));
    }
    let pool = app.store.pool();
    let (events, more) = history::page(pool, &aggregate_type, &id, after, limit).await?;
    if events.is_empty() && !history::exists(pool, &aggregate_type, &id).await? {
        return Err(no_stream(&aggregate_type, &id));
    }
    let next_cursor = more
        .then(|| events.last().map(|e| pagination::encode(&e.sequence)))
        .flatten();
    Ok(Json(StreamHistory {
        aggregate_type,
        aggregate_id: id,
        events,
        next_cursor,
    }))
}

#[derive(Deserialize)]
pub(crate) struct StateParams {
    at_sequence: Option<i64>,
    at: Option<DateTime<Utc>>,
}

/// An aggregate's state replayed to a point: `at_sequence` or `at` (a time), or its
/// end (admin).
#[utoipa::path(get, path = "/v1/audit/streams/{aggregate_type}/{id}/state", tag = "audit", security(("bearer" = [])),
    params(
        ("aggregate_type" = String, Path, description = "`location`, `event`, `booking` or `user`."),
        ("id" = String, Path, description = "The aggregate's id."),
        ("at_sequence" = Option<i64>, Query, minimum = 1, description = "1 or more; not with `at`."),
        ("at" = Option<String>, Query, format = DateTime, description = "RFC 3339; not with `at_sequence`."),
    ),
    responses(
        (status = 200, description = "The state.", body = StateAt),
        (status = 403, description = "Not an admin.", body = platform::openapi::ErrorBody),
        (status = 404, description = "No such stream, or it did not exist yet at that point.", body = platform::openapi::ErrorBody),
        (status = 422, description = "`validation_failed`.", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn state(
    State(app): State<AppState>,
    _admin: Admin,
    Path((aggregate_type, id)): Path<(String, String)>,
    QueryParams(params): QueryParams<StateParams>,
) -> Result<Json<StateAt>, ApiError> {
    let point = match (params.at_sequence, params.at) {
        (Some(_), Some(_)) => {
            return Err(field_error(
                "at_sequence",
                "give at_sequence or at, not both",
            ))
        }
        (Some(n), None) if n < 1 => {
            return Err(field_error("at_sequence", "must be 1 or more"));
        }
        (Some(n), None) => Point::Sequence(n),
        (None, Some(at)) => Point::Time(at),
        (None, None) => Point::End,
    };
    match replay::state_at(app.store.pool(), &aggregate_type, &id, point).await {
        Ok(mut replayed) => {
            // A booking's contact data, opened for the admin while its key lives;
            // erased once the user was.
            if aggregate_type == "booking" {
                crate::contacts::open_in_state(&app, &id, &mut replayed.state).await?;
            }
            Ok(Json(StateAt {
                aggregate_type,
                aggregate_id: id,
                sequence: replayed.sequence,
                state: replayed.state,
            }))
        }
        Err(ReplayError::UnknownType(_)) => Err(no_stream(&aggregate_type, &id)),
        Err(ReplayError::NothingBefore) => {
            let exists = history::exists(app.store.pool(), &aggregate_type, &id).await?;
            if exists {
                Err(ApiError::not_found(format!(
                    "{aggregate_type}/{id} did not exist yet at that point"
                )))
            } else {
                Err(no_stream(&aggregate_type, &id))
            }
        }
        Err(err) => Err(ApiError::unexpected(err)),
    }
}

/// Verify the whole store: every hash link and receipt (admin).
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses(
        (status = 200, description = "The report; `ok` false lists the problems.", body = crate::audit::verify::Report),
        (status = 403, description = "Not an admin.", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn verify(
    State(app): State<AppState>,
    _admin: Admin,
) -> Result<Json<crate::audit::verify::Report>, ApiError> {
    let report = verify::verify(app.store.pool(), &|_| {}).await?;
    Ok(Json(report))
}

#[derive(Deserialize)]
pub(crate) struct ExportParams {
    after: Option<i64>,
    limit: Option<i64>,
}

/// Every stored event after a position, in commit order, one JSON object a line
/// (admin); streamed.
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit", security(("bearer" = [])),
    params(
        ("after" = Option<i64>, Query, minimum = 0, description = "A position (0 or more); 0 when absent."),
        ("limit" = Option<i64>, Query, minimum = 1, description = "1 or more; all when absent."),
    ),
    responses(
        (status = 200, description = "One stored event a line, as in the stream history.", content_type = "application/x-ndjson", body = String),
        (status = 403, description = "Not an admin.", body = platform::openapi::ErrorBody),
        (status = 422, description = "`validation_failed`: an unknown position or a bad limit.", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn export(
    State(app): State<AppState>,
    _admin: Admin,
    QueryParams(params): QueryParams<ExportParams>,
) -> Result<Response, ApiError> {
    let after = params.after.unwrap_or(0);
    if after < 0 {
        return Err(field_error("after", "must be a position (0 or more)"));
    }
    let limit = match params.limit.map(u64::try_from) {
        None => None,
        Some(Ok(n)) if n >= 1 => Some(n),
        Some(_) => return Err(field_error("limit", "must be 1 or more")),
    };
    let export = match Export::start(app.store.pool().clone(), after, limit).await {
        Ok(export) => export,
        Err(err @ ExportError::UnknownPosition(_)) => {
            return Err(field_error("after", &err.to_string()));
        }
        Err(err) => return Err(ApiError::unexpected(err)),
    };
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(export.into_stream()),
    )
        .into_response())
}
