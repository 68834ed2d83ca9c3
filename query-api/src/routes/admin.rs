//! `GET /v1/admin/projections` and `POST /v1/admin/projections/{name}/rebuild` (admin).
//!
//! A rebuild asked for here is recorded and run by a projector service (its rebuild
//! worker looks every second); asking while one is requested or running answers that
//! one. Its progress shows in the list. An `Idempotency-Key` the admin used before for
//! the same request answers the rebuild that request got, even once it is done.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use platform::auth::Admin;
use platform::http::{ApiError, ErrorCode, IdempotencyKey, JsonBody};
use read_model::rebuild::{self, RebuildError, RequestKey};
use read_model::status;

use crate::app::AppState;
use crate::contract::RebuildRequested;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/projections", get(list))
        .route("/v1/admin/projections/{name}/rebuild", post(rebuild))
}

/// The projections: lag, last applied, the latest rebuild (admin).
#[utoipa::path(get, path = "/v1/admin/projections", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every projection.", body = Vec<read_model::status::ProjectionStatus>),
        (status = 403, description = "Not an admin.", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn list(
    State(app): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<read_model::status::ProjectionStatus>>, ApiError> {
    let statuses = status::all(&app.read, &app.store).await?;
    Ok(Json(statuses))
}

/// Rebuild a projection from the event store (admin); a projector runs it, its
/// progress shows in the list. Asking while one is requested or running answers that one.
#[utoipa::path(post, path = "/v1/admin/projections/{name}/rebuild", tag = "admin", security(("bearer" = [])),
    params(
        ("name" = String, Path, description = "`locations`, `events`, `bookings` or `users`."),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[\\x21-\\x7e](?:[\\t\\x20-\\x7e]{0,198}[\\x21-\\x7e])?$", example = "rebuild-2030-05-01", description = "1 to 200 visible ASCII characters. The same key and body answer the rebuild the first request got."),
    ),
    request_body = platform::http::EmptyBody,
    responses(
        (status = 202, description = "Requested.", body = RebuildRequested),
        (status = 403, description = "Not an admin.", body = platform::openapi::ErrorBody),
        (status = 404, description = "No such projection.", body = platform::openapi::ErrorBody),
        (status = 422, description = "`idempotency_key_reused`.", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn rebuild(
    State(app): State<AppState>,
    Admin(user): Admin,
    Path(name): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<platform::http::EmptyBody>,
) -> Result<(StatusCode, Json<RebuildRequested>), ApiError> {
    let key = key.as_deref().map(|key| RequestKey {
        user_id: &user.id,
        key,
        fingerprint: &body.fingerprint,
        ttl: app.idempotency_ttl,
    });
    match rebuild::request(&app.read, &name, key).await {
        Ok(id) => Ok((
            StatusCode::ACCEPTED,
            Json(RebuildRequested {
                id,
                projection: name,
                status: "requested".to_owned(),
            }),
        )),
        Err(err @ RebuildError::Unknown(_)) => Err(ApiError::not_found(err.to_string())),
        Err(err @ RebuildError::KeyReused) => Err(ApiError::unprocessable(
            ErrorCode::IdempotencyKeyReused,
            err.to_string(),
        )),
        Err(err) => Err(ApiError::unexpected(err)),
    }
}
