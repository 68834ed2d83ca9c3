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
use platform::http::{ApiError, IdempotencyKey, JsonBody};
use projector::rebuild::{self, RebuildError, RequestKey};
use projector::status;
use serde_json::{json, Value};

use crate::app::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/projections", get(list))
        .route("/v1/admin/projections/{name}/rebuild", post(rebuild))
}

async fn list(State(app): State<AppState>, _admin: Admin) -> Result<Json<Value>, ApiError> {
    let statuses = status::all(&app.read, &app.store)
        .await
        .map_err(ApiError::unexpected)?;
    Ok(Json(
        serde_json::to_value(statuses).map_err(ApiError::unexpected)?,
    ))
}

async fn rebuild(
    State(app): State<AppState>,
    Admin(user): Admin,
    Path(name): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let key = key.as_deref().map(|key| RequestKey {
        user_id: &user.id,
        key,
        fingerprint: &body.fingerprint,
        ttl: app.idempotency_ttl,
    });
    match rebuild::request(&app.read, &name, key).await {
        Ok(id) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "id": id, "projection": name, "status": "requested" })),
        )),
        Err(err @ RebuildError::Unknown(_)) => Err(ApiError::not_found(err.to_string())),
        Err(err @ RebuildError::KeyReused) => Err(ApiError::unprocessable(
            "idempotency_key_reused",
            err.to_string(),
        )),
        Err(err) => Err(ApiError::unexpected(err)),
    }
}
