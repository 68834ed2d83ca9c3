//! `/v1/payment_methods`: exchange a card token for a reusable `pm_…` reference
//! (idempotent per key, when one is sent), and read one back. The card token is never
//! shown, echoed or logged.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use platform::http::{ApiError, ErrorCode, IdempotencyKey, JsonBody};
use serde_json::{json, Value};
use tracing::instrument;

use super::extract::PathMethodId;
use super::time;
use crate::app::AppState;
use crate::payment_method::PaymentMethod;
use crate::store::{self, NewPaymentMethod};

/// The longest card token, in characters (each visible ASCII).
pub const MAX_CARD_TOKEN_CHARS: usize = 200;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/payment_methods", post(create))
        .route("/v1/payment_methods/{id}", get(retrieve))
}

/// Why a payment method operation was refused. No message names a card token or an id
/// (a client may send one for the other).
#[derive(Debug, thiserror::Error)]
enum MethodError {
    #[error("no such payment method")]
    NotFound,
    #[error("this Idempotency-Key was already used with another request")]
    KeyReused,
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

impl From<MethodError> for ApiError {
    fn from(err: MethodError) -> Self {
        let message = err.to_string();
        match err {
            MethodError::NotFound => crate::routes::missing(message),
            MethodError::KeyReused => ApiError::conflict(ErrorCode::IdempotencyKeyReused, message),
            MethodError::Unexpected(cause) => ApiError::unexpected(cause),
        }
    }
}

/// A payment method as the API shows it. The card token is never shown.
fn render(method: &PaymentMethod) -> Value {
    json!({
        "id": method.id,
        "object": "payment_method",
        "created": time(method.created),
    })
}

/// The card token of a create request. The body is taken as any JSON (not as an object)
/// so that no deserializer message can quote a value: a bare string sent as the body
/// might be the token itself.
fn parse(body: &Value) -> Result<&str, ApiError> {
    let problem = |field: &str, message: &str| {
        ApiError::validation(json!([{ "field": field, "message": message }]))
    };
    let Value::Object(body) = body else {
        return Err(problem("", "the body must be a JSON object"));
    };
    match body.get("card_token").filter(|v| !v.is_null()) {
        None => Err(problem("card_token", "is required")),
        Some(v) => v.as_str().filter(|t| is_card_token(t)).ok_or_else(|| {
            problem(
                "card_token",
                "must be a card token of 1 to 200 visible ASCII characters",
            )
        }),
    }
}

fn is_card_token(token: &str) -> bool {
    (1..=MAX_CARD_TOKEN_CHARS).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
}

/// `POST /v1/payment_methods`. Tokenization never declines nor hangs: the simulated
/// card network judges the token when an intent is authorized with it.
#[instrument(skip_all, fields(idempotency_key = key.as_deref()))]
async fn create(
    State(app): State<AppState>,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let card_token = parse(&body.value)?;
    let new = NewPaymentMethod {
        card_token,
        idempotency_key: key.as_deref(),
        fingerprint: &body.fingerprint,
    };
    let (method, created) = store::create_payment_method(&app.pool, &new)
        .await
        .map_err(MethodError::from)?;
    if created {
        tracing::info!(payment_method_id = %method.id, "payment method created");
    } else if method.fingerprint.as_deref() != Some(body.fingerprint.as_str()) {
        return Err(MethodError::KeyReused.into());
    }
    // Created now, or a replay of the same request: the same payment method.
    Ok(Json(render(&method)))
}

/// `GET /v1/payment_methods/{id}`.
async fn retrieve(
    State(app): State<AppState>,
    PathMethodId(id): PathMethodId,
) -> Result<Json<Value>, ApiError> {
    let method = store::payment_method_by_id(&app.pool, &id)
        .await
        .map_err(MethodError::from)?
        .ok_or(MethodError::NotFound)?;
    Ok(Json(render(&method)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(err: &ApiError) -> String {
        err.body()["error"]["details"][0]["field"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn the_card_token_is_checked_and_never_echoed() {
        assert_eq!(
            parse(&json!({"card_token": "tok_visa"})).ok(),
            Some("tok_visa")
        );
        let longest = "t".repeat(MAX_CARD_TOKEN_CHARS);
        assert!(parse(&json!({"card_token": longest, "other": 1})).is_ok());
        for (body, expected) in [
            (json!({}), "card_token"),
            (json!({"card_token": null}), "card_token"),
            (json!({"card_token": ""}), "card_token"),
            (json!({"card_token": "tok secret"}), "card_token"),
            (json!({"card_token": "tok_sécret"}), "card_token"),
            (json!({"card_token": "t".repeat(201)}), "card_token"),
            (json!({"card_token": 42}), "card_token"),
            (json!("tok_secret"), ""),
            (json!(["tok_secret"]), ""),
        ] {
            let err = parse(&body).err().unwrap();
            assert_eq!(field(&err), expected, "{body}");
            assert_eq!(err.code(), "validation_failed");
            let text = err.body().to_string();
            assert!(!text.contains("secret") && !text.contains("ttt"), "{text}");
        }
    }
}
