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
use serde_json::{json, Value};

use crate::app::AppState;
use crate::audit::export::{Export, ExportError};
use crate::audit::replay::{self, Point, ReplayError};
use crate::audit::{history, known_type, verify};
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
struct PageParams {
    cursor: Option<String>,
    limit: Option<i64>,
}

async fn stream(
    State(app): State<AppState>,
    _admin: Admin,
    Path((aggregate_type, id)): Path<(String, String)>,
    QueryParams(params): QueryParams<PageParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = pagination::limit(params.limit)?;
    let after: i64 = pagination::decode(params.cursor.as_deref())?.unwrap_or(0);
    if !known_type(&aggregate_type) {
        return Err(no_stream(&aggregate_type, &id));
    }
    let pool = app.store.pool();
    let (events, more) = history::page(pool, &aggregate_type, &id, after, limit)
        .await
        .map_err(ApiError::unexpected)?;
    if events.is_empty()
        && !history::exists(pool, &aggregate_type, &id)
            .await
            .map_err(ApiError::unexpected)?
    {
        return Err(no_stream(&aggregate_type, &id));
    }
    let next_cursor = more
        .then(|| events.last().map(|e| pagination::encode(&e.sequence)))
        .flatten();
    Ok(Json(json!({
        "aggregate_type": aggregate_type,
        "aggregate_id": id,
        "events": events,
        "next_cursor": next_cursor,
    })))
}

#[derive(Deserialize)]
struct StateParams {
    at_sequence: Option<i64>,
    at: Option<DateTime<Utc>>,
}

async fn state(
    State(app): State<AppState>,
    _admin: Admin,
    Path((aggregate_type, id)): Path<(String, String)>,
    QueryParams(params): QueryParams<StateParams>,
) -> Result<Json<Value>, ApiError> {
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
            Ok(Json(json!({
                "aggregate_type": aggregate_type,
                "aggregate_id": id,
                "sequence": replayed.sequence,
                "state": replayed.state,
            })))
        }
        Err(ReplayError::UnknownType(_)) => Err(no_stream(&aggregate_type, &id)),
        Err(ReplayError::NothingBefore) => {
            let exists = history::exists(app.store.pool(), &aggregate_type, &id)
                .await
                .map_err(ApiError::unexpected)?;
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

async fn verify(State(app): State<AppState>, _admin: Admin) -> Result<Json<Value>, ApiError> {
    let report = verify::verify(app.store.pool(), &|_| {})
        .await
        .map_err(ApiError::unexpected)?;
    Ok(Json(
        serde_json::to_value(report).map_err(ApiError::unexpected)?,
    ))
}

#[derive(Deserialize)]
struct ExportParams {
    after: Option<i64>,
    limit: Option<u64>,
}

async fn export(
    State(app): State<AppState>,
    _admin: Admin,
    QueryParams(params): QueryParams<ExportParams>,
) -> Result<Response, ApiError> {
    let after = params.after.unwrap_or(0);
    if after < 0 {
        return Err(field_error("after", "must be a position (0 or more)"));
    }
    if params.limit == Some(0) {
        return Err(field_error("limit", "must be 1 or more"));
    }
    let export = match Export::start(app.store.pool().clone(), after, params.limit).await {
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
