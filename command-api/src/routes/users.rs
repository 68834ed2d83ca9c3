//! `POST /v1/admin/users/{user_id}/erase` (admin): erases a user's personal data.
//!
//! The user's keys are destroyed in the statement that appends the fact recording it
//! (`PersonalDataErased`, on the user's stream): every contact sealed under them, in the
//! store, on the topic, in exports and read models, can no longer be read, while the
//! facts themselves, and their hash chain, stay as they were. Asking again is harmless:
//! with nothing left to destroy, nothing is recorded, and the answer is the same. The
//! user's next booking gets a new key.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use domain::user::{stream_id, UserCommand};
use platform::auth::Admin;
use platform::http::{ApiError, JsonBody};
use platform::personal;

use crate::app::AppState;
use crate::commands::{submit, RequestContext, Submission};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/admin/users/{user_id}/erase", post(erase))
}

/// Erase a user's personal data (admin; idempotent): the user's keys are destroyed,
/// history and read models show the contact as erased.
#[utoipa::path(post, path = "/v1/admin/users/{user_id}/erase", tag = "admin", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "The token `sub` of the user.")),
    request_body = platform::http::EmptyBody,
    responses(
        (status = 202, description = "Erased.", body = crate::commands::Accepted,
         headers(("X-Consistency-Token" = String, description = "As `consistency_token`."))),
        (status = 403, description = "Not an admin.", body = platform::openapi::ErrorBody),
        (status = 404, description = "Not a user id.", body = platform::openapi::ErrorBody),
        (status = 409, description = "`concurrency_conflict`.", body = platform::openapi::ErrorBody),
        (status = 422, description = "`idempotency_key_reused`.", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn erase(
    State(app): State<AppState>,
    Admin(admin): Admin,
    context: RequestContext,
    Path(user_id): Path<String>,
    body: JsonBody<platform::http::EmptyBody>,
) -> Result<Response, ApiError> {
    // A user id is a token's `sub`: 1 to 200 bytes. Anything else names nobody.
    if user_id.is_empty() || user_id.len() > 200 || user_id.chars().any(char::is_control) {
        return Err(ApiError::not_found("no such user"));
    }
    let keys = personal::live_keys(&app.pool, &user_id).await?;
    let submission = Submission {
        name: "erase_user",
        user: &admin,
        context: &context,
        fingerprint: &body.fingerprint,
        accepted: StatusCode::ACCEPTED,
        status: None,
        creates: false,
    };
    let command = UserCommand::ErasePersonalData {
        user_id: user_id.clone(),
        keys,
    };
    Ok(submit(&app, &app.users, submission, stream_id(&user_id), command).await)
}
