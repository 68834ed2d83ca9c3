//! `/v1/payment_intents`: create (idempotent per key), retrieve, list, capture, cancel,
//! refund, and the technical cancel by key.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use platform::http::{ApiError, ErrorCode, JsonBody, QueryParams};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tracing::instrument;

use super::extract::{ActionBody, PathIntentId, PathKey, RequiredKey};
use super::time;
use crate::app::AppState;
use crate::faults::no_answer;
use crate::intent::{self, Decision, Intent, Operation, Status};
use crate::payment_method;
use crate::store::{self, KeyCancel, NewIntent};

/// The largest amount, in minor units.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;
/// The most metadata keys.
pub const MAX_METADATA_KEYS: usize = 20;
/// The longest metadata key (as Stripe).
pub const MAX_METADATA_KEY_CHARS: usize = 40;
/// The longest metadata value (as Stripe).
pub const MAX_METADATA_VALUE_CHARS: usize = 500;
/// Intents per page when the client does not say.
pub const DEFAULT_LIMIT: i64 = 10;
/// The most intents per page.
pub const MAX_LIMIT: i64 = 100;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/payment_intents", post(create).get(list))
        .route("/v1/payment_intents/{id}", get(retrieve))
        .route("/v1/payment_intents/{id}/capture", post(capture))
        .route("/v1/payment_intents/{id}/cancel", post(cancel))
        .route("/v1/payment_intents/{id}/refund", post(refund))
        .route("/v1/payment_intents/by_key/{key}", get(retrieve_by_key))
        .route(
            "/v1/payment_intents/by_key/{key}/cancel",
            post(cancel_by_key),
        )
}

/// Why an intent operation was refused.
#[derive(Debug, thiserror::Error)]
enum IntentError {
    #[error("no payment intent has the id {0:?}")]
    NotFound(String),
    #[error("no payment intent has the idempotency key {0:?}")]
    KeyNotFound(String),
    #[error("cannot {op} a payment intent that is {}", .intent.status)]
    UnexpectedState { op: &'static str, intent: Intent },
    #[error("this Idempotency-Key was already used with another request")]
    KeyReused,
    #[error("no such payment method")]
    NoSuchPaymentMethod,
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

impl From<IntentError> for ApiError {
    fn from(err: IntentError) -> Self {
        let message = err.to_string();
        match err {
            IntentError::NotFound(_) | IntentError::KeyNotFound(_) => {
                crate::routes::missing(message)
            }
            IntentError::UnexpectedState { intent, .. } => {
                let details = json!({ "payment_intent": render(&intent) });
                ApiError::conflict(ErrorCode::PaymentIntentUnexpectedState, message)
                    .with_details(details)
            }
            IntentError::KeyReused => ApiError::conflict(ErrorCode::IdempotencyKeyReused, message),
            IntentError::NoSuchPaymentMethod => ApiError::validation(json!([{
                "field": "payment_method",
                "message": message,
            }])),
            IntentError::Unexpected(cause) => ApiError::unexpected(cause),
        }
    }
}

/// An intent as the API shows it. The card token is never shown.
fn render(intent: &Intent) -> Value {
    json!({
        "id": intent.id,
        "object": "payment_intent",
        "idempotency_key": intent.idempotency_key,
        "amount": intent.amount,
        "currency": intent.currency,
        "status": intent.status.as_str(),
        "decline_code": intent.decline_code,
        "metadata": intent.metadata,
        "created": time(intent.created),
        "updated": time(intent.updated),
    })
}

/// A validated create request.
struct CreateRequest {
    amount: i64,
    currency: String,
    /// A payment method id (`pm_…`) or a card token.
    payment_method: String,
    metadata: Value,
}

impl CreateRequest {
    /// Checks every field, naming each problem. Messages never repeat a value: one of
    /// them is a card token.
    fn parse(body: &Map<String, Value>) -> Result<Self, ApiError> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, message: String| {
            problems.push(json!({ "field": field, "message": message }));
        };
        let field = |name: &str| body.get(name).filter(|v| !v.is_null());

        let amount = match field("amount") {
            None => {
                problem("amount", "is required".into());
                None
            }
            Some(v) => {
                let amount = v.as_i64().filter(|a| (1..=MAX_AMOUNT).contains(a));
                if amount.is_none() {
                    problem(
                        "amount",
                        format!("must be an integer from 1 to {MAX_AMOUNT} (minor units)"),
                    );
                }
                amount
            }
        };
        let currency = match field("currency") {
            None => {
                problem("currency", "is required".into());
                None
            }
            Some(v) => {
                let currency = v
                    .as_str()
                    .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()));
                if currency.is_none() {
                    problem(
                        "currency",
                        "must be three uppercase letters (ISO 4217, e.g. EUR)".into(),
                    );
                }
                currency
            }
        };
        let payment_method = match field("payment_method") {
            None => {
                problem("payment_method", "is required".into());
                None
            }
            Some(v) => {
                let token = v.as_str().filter(|t| {
                    (1..=200).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_graphic())
                });
                if token.is_none() {
                    problem(
                        "payment_method",
                        "must be a payment method id (pm_...) or a card token, 1 to 200 \
                         visible ASCII characters"
                            .into(),
                    );
                }
                token
            }
        };
        let metadata = match field("metadata") {
            None => Some(Map::new()),
            Some(Value::Object(map)) => {
                let mut ok = true;
                if map.len() > MAX_METADATA_KEYS {
                    problem(
                        "metadata",
                        format!("must have at most {MAX_METADATA_KEYS} keys"),
                    );
                    ok = false;
                }
                for (key, value) in map {
                    if !(1..=MAX_METADATA_KEY_CHARS).contains(&key.chars().count()) {
                        problem(
                            "metadata",
                            format!("keys must be 1 to {MAX_METADATA_KEY_CHARS} characters"),
                        );
                        ok = false;
                    }
                    let fine = value
                        .as_str()
                        .is_some_and(|v| v.chars().count() <= MAX_METADATA_VALUE_CHARS);
                    if !fine {
                        problem(
                            &format!("metadata.{key}"),
                            format!(
                                "must be a string of at most {MAX_METADATA_VALUE_CHARS} characters"
                            ),
                        );
                        ok = false;
                    }
                }
                ok.then(|| map.clone())
            }
            Some(_) => {
                problem("metadata", "must be an object of strings".into());
                None
            }
        };
        match (amount, currency, payment_method, metadata) {
            (Some(amount), Some(currency), Some(payment_method), Some(metadata))
                if problems.is_empty() =>
            {
                Ok(Self {
                    amount,
                    currency: currency.to_owned(),
                    payment_method: payment_method.to_owned(),
                    metadata: Value::Object(metadata),
                })
            }
            _ => Err(ApiError::validation(problems)),
        }
    }
}

/// What the simulated card network answers for `card_token`: the status and decline
/// code to record, or `None` when it never answers.
fn network(card_token: &str) -> Option<(Status, Option<String>)> {
    match intent::decide(card_token) {
        Decision::Hang => None,
        Decision::Authorize => Some((Status::Authorized, None)),
        Decision::Decline(code) => Some((Status::Declined, Some(code))),
    }
}

/// `POST /v1/payment_intents`.
#[instrument(skip_all, fields(idempotency_key = %key))]
async fn create(
    State(app): State<AppState>,
    RequiredKey(key): RequiredKey,
    body: JsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    let request = CreateRequest::parse(&body.value)?;
    // The fingerprint is of the request as sent (with the pm id, when it named one);
    // the card token recorded is always the token itself.
    let new = |card_token, status, decline_code| NewIntent {
        idempotency_key: &key,
        fingerprint: &body.fingerprint,
        amount: request.amount,
        currency: &request.currency,
        payment_method: card_token,
        status,
        decline_code,
        metadata: &request.metadata,
    };
    let recorded = if payment_method::is_id(&request.payment_method) {
        // The token is read and the intent recorded in one transaction.
        let mut tx = app.pool.begin().await.map_err(IntentError::from)?;
        let card_token = store::card_token(&mut tx, &request.payment_method)
            .await
            .map_err(IntentError::from)?
            .ok_or(IntentError::NoSuchPaymentMethod)?;
        match network(&card_token) {
            None => {
                tx.rollback().await.map_err(IntentError::from)?;
                None
            }
            Some((status, decline_code)) => {
                let new = new(&card_token, status, decline_code.as_deref());
                let recorded = store::create(&mut tx, &new)
                    .await
                    .map_err(IntentError::from)?;
                tx.commit().await.map_err(IntentError::from)?;
                Some(recorded)
            }
        }
    } else {
        match network(&request.payment_method) {
            None => None,
            Some((status, decline_code)) => {
                let new = new(&request.payment_method, status, decline_code.as_deref());
                let mut conn = app.pool.acquire().await.map_err(IntentError::from)?;
                Some(
                    store::create(&mut conn, &new)
                        .await
                        .map_err(IntentError::from)?,
                )
            }
        }
    };
    let Some((intent, created)) = recorded else {
        // Nothing recorded, and no connection held while hanging.
        tracing::info!("simulating a card network that never answers");
        app.shutdown.cancelled().await;
        return Ok(no_answer());
    };
    if created {
        app.metrics.transition(intent.status);
        tracing::info!(intent_id = %intent.id, status = %intent.status, "payment intent created");
    } else if intent
        .fingerprint
        .as_ref()
        .is_some_and(|fingerprint| *fingerprint != body.fingerprint)
    {
        return Err(IntentError::KeyReused.into());
    }
    // A replay (same request) or a tombstone: the intent as it is now, nothing done.
    Ok(Json(render(&intent)).into_response())
}

/// `GET /v1/payment_intents/{id}`.
async fn retrieve(
    State(app): State<AppState>,
    PathIntentId(id): PathIntentId,
) -> Result<Json<Value>, ApiError> {
    let intent = store::by_id(&app.pool, &id)
        .await
        .map_err(IntentError::from)?
        .ok_or(IntentError::NotFound(id))?;
    Ok(Json(render(&intent)))
}

/// `GET /v1/payment_intents/by_key/{key}`.
async fn retrieve_by_key(
    State(app): State<AppState>,
    PathKey(key): PathKey,
) -> Result<Json<Value>, ApiError> {
    let intent = store::by_key(&app.pool, &key)
        .await
        .map_err(IntentError::from)?
        .ok_or(IntentError::KeyNotFound(key))?;
    Ok(Json(render(&intent)))
}

/// Runs `op` on intent `id`: its move, or the intent as it is when `op` leaves its
/// status alone, or 409.
#[instrument(skip_all, fields(intent_id = %id, op = op.name))]
async fn act(app: &AppState, id: String, op: &Operation) -> Result<Json<Value>, ApiError> {
    if let Some(intent) = store::transition(&app.pool, &id, op)
        .await
        .map_err(IntentError::from)?
    {
        app.metrics.transition(intent.status);
        tracing::info!(status = %intent.status, "payment intent moved");
        return Ok(Json(render(&intent)));
    }
    let intent = store::by_id(&app.pool, &id)
        .await
        .map_err(IntentError::from)?
        .ok_or(IntentError::NotFound(id))?;
    if op.leaves(intent.status) {
        Ok(Json(render(&intent)))
    } else {
        Err(IntentError::UnexpectedState {
            op: op.name,
            intent,
        }
        .into())
    }
}

/// `POST /v1/payment_intents/{id}/capture`.
async fn capture(
    State(app): State<AppState>,
    PathIntentId(id): PathIntentId,
    _body: ActionBody,
) -> Result<Json<Value>, ApiError> {
    act(&app, id, &Operation::CAPTURE).await
}

/// `POST /v1/payment_intents/{id}/cancel`.
async fn cancel(
    State(app): State<AppState>,
    PathIntentId(id): PathIntentId,
    _body: ActionBody,
) -> Result<Json<Value>, ApiError> {
    act(&app, id, &Operation::CANCEL).await
}

/// `POST /v1/payment_intents/{id}/refund`.
async fn refund(
    State(app): State<AppState>,
    PathIntentId(id): PathIntentId,
    _body: ActionBody,
) -> Result<Json<Value>, ApiError> {
    act(&app, id, &Operation::REFUND).await
}

/// `POST /v1/payment_intents/by_key/{key}/cancel`: the technical cancel.
#[instrument(skip_all, fields(idempotency_key = %key))]
async fn cancel_by_key(
    State(app): State<AppState>,
    PathKey(key): PathKey,
    _body: ActionBody,
) -> Result<Json<Value>, ApiError> {
    let intent = match store::cancel_by_key(&app.pool, &key)
        .await
        .map_err(IntentError::from)?
    {
        KeyCancel::Tombstoned(intent) => {
            app.metrics.transition(Status::Voided);
            tracing::info!(intent_id = %intent.id, "unused key cancelled: tombstone recorded");
            intent
        }
        KeyCancel::Voided(intent) => {
            app.metrics.transition(Status::Voided);
            tracing::info!(intent_id = %intent.id, "payment intent voided by key");
            intent
        }
        KeyCancel::Untouched(intent) if Operation::CANCEL_BY_KEY.leaves(intent.status) => intent,
        KeyCancel::Untouched(intent) => {
            return Err(IntentError::UnexpectedState {
                op: Operation::CANCEL_BY_KEY.name,
                intent,
            }
            .into())
        }
    };
    Ok(Json(render(&intent)))
}

/// The query of `GET /v1/payment_intents`, checked by hand so that each bad parameter
/// is named.
#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// A cursor: the creation position of the last intent sent, its decimal digits in hex,
/// so that clients treat it as opaque.
fn encode_cursor(seq: i64) -> String {
    hex::encode(seq.to_string())
}

fn decode_cursor(raw: &str) -> Option<i64> {
    let bytes = hex::decode(raw).ok()?;
    let seq: i64 = std::str::from_utf8(&bytes).ok()?.parse().ok()?;
    (seq >= 0).then_some(seq)
}

/// `GET /v1/payment_intents?status=&limit=&cursor=`.
async fn list(
    State(app): State<AppState>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let mut problems = Vec::new();
    let status = match query.status.as_deref().map(str::parse::<Status>) {
        None => None,
        Some(Ok(status)) => Some(status),
        Some(Err(_)) => {
            let names: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
            problems.push(json!({
                "field": "status",
                "message": format!("must be one of {}", names.join(", ")),
            }));
            None
        }
    };
    let limit = match query.limit.as_deref().map(str::parse::<i64>) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            problems.push(json!({
                "field": "limit",
                "message": format!("must be an integer from 1 to {MAX_LIMIT}"),
            }));
            DEFAULT_LIMIT
        }
    };
    let after = match query.cursor.as_deref().map(decode_cursor) {
        None => 0,
        Some(Some(seq)) => seq,
        Some(None) => {
            problems.push(json!({
                "field": "cursor",
                "message": "is not a cursor this API gave out (use next_cursor)",
            }));
            0
        }
    };
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let mut intents = store::list(&app.pool, status, after, limit + 1)
        .await
        .map_err(IntentError::from)?;
    let has_more = intents.len() as i64 > limit;
    intents.truncate(usize::try_from(limit).unwrap_or(0));
    let next_cursor = has_more
        .then(|| intents.last().map(|i| encode_cursor(i.seq)))
        .flatten();
    Ok(Json(json!({
        "object": "list",
        "data": intents.iter().map(render).collect::<Vec<_>>(),
        "has_more": has_more,
        "next_cursor": next_cursor,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    fn fields(err: &ApiError) -> Vec<String> {
        err.body()["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_good_request_passes() {
        let request = CreateRequest::parse(&body(json!({
            "amount": 2500, "currency": "EUR", "payment_method": "tok_visa",
            "metadata": {"booking_id": "b-1"}
        })))
        .unwrap_or_else(|err| panic!("{}", err.body()));
        assert_eq!(request.amount, 2500);
        assert_eq!(request.metadata, json!({"booking_id": "b-1"}));
        let request = CreateRequest::parse(&body(json!({
            "amount": MAX_AMOUNT, "currency": "JPY", "payment_method": "tok_visa", "metadata": null
        })))
        .unwrap_or_else(|err| panic!("{}", err.body()));
        assert_eq!(request.metadata, json!({}));
    }

    #[test]
    fn every_bad_field_is_named_and_the_card_token_is_never_echoed() {
        let err = CreateRequest::parse(&body(json!({
            "amount": 0, "currency": "eur", "payment_method": "tok secret",
            "metadata": {"k": 1}
        })))
        .err()
        .unwrap();
        assert_eq!(
            fields(&err),
            ["amount", "currency", "payment_method", "metadata.k"]
        );
        assert!(!err.body().to_string().contains("tok secret"));
        let err = CreateRequest::parse(&Map::new()).err().unwrap();
        assert_eq!(fields(&err), ["amount", "currency", "payment_method"]);
        for amount in [json!(1.5), json!(MAX_AMOUNT + 1), json!("10"), json!(-1)] {
            let err = CreateRequest::parse(&body(json!({
                "amount": amount, "currency": "EUR", "payment_method": "tok_visa"
            })))
            .err()
            .unwrap();
            assert_eq!(fields(&err), ["amount"]);
        }
        let many: Map<String, Value> = (0..21).map(|i| (format!("k{i}"), json!("v"))).collect();
        let err = CreateRequest::parse(&body(json!({
            "amount": 1, "currency": "EUR", "payment_method": "tok_visa", "metadata": many
        })))
        .err()
        .unwrap();
        assert_eq!(fields(&err), ["metadata"]);
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        assert_eq!(decode_cursor("zz"), None);
        assert_eq!(decode_cursor(&hex::encode("-1")), None);
        assert_eq!(decode_cursor(""), None);
    }
}
