//! The path every HTTP command takes once its body is parsed: idempotency, execution
//! with bounded retries, the answer, the metrics.
//!
//! 1. With an `Idempotency-Key` the caller used before: the first answer again (or 422
//!    `idempotency_key_reused` for another body), nothing executed.
//! 2. Execute. An optimistic-concurrency conflict (another process appended first) is
//!    retried with a short random back-off, [`MAX_ATTEMPTS`] times in all, then 409.
//! 3. Accepted: the status, `{"id", "consistency_token", ...}` and the
//!    `X-Consistency-Token` header. Refused: the domain's code, status by its kind; the
//!    refusal is remembered under the key.

use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cqrs_es::persist::PersistenceError;
use cqrs_es::Aggregate;
use domain::metadata::{EventMetadata, TraceParent};
use domain::{DomainError, ErrorKind};
use platform::auth::User;
use platform::http::{ApiError, ErrorCode, IdempotencyKey};
use rand::Rng;
use tracing::Instrument;
use uuid::Uuid;

use crate::app::App;
use crate::idempotency::{self, Outcome};
use crate::metrics::{CommandLabels, CommandName};
use crate::store::{AggregateStore, ExecuteError, Storable};

/// Attempts per command before a conflict is answered 409.
pub const MAX_ATTEMPTS: u32 = 8;

/// The header carrying the consistency token of an accepted command.
pub const CONSISTENCY_TOKEN: &str = "x-consistency-token";

/// What a command request carries besides its body: the `Idempotency-Key`, a
/// correlation id (`X-Correlation-Id`, or a new one) and a request id.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The `Idempotency-Key`, when sent.
    pub idempotency_key: Option<String>,
    /// Kept on every event the request causes, sagas included.
    pub correlation_id: String,
    /// Unique per request; the causation id of the events it appends.
    pub request_id: String,
    /// The W3C trace context: the caller's `traceparent` continued (a span of ours as
    /// the parent), or a new trace. Kept on the events and sent to Kafka with them.
    pub traceparent: TraceParent,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Self::from_headers(&parts.headers)
    }
}

impl RequestContext {
    fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let IdempotencyKey(idempotency_key) = IdempotencyKey::from_headers(headers)?;
        // Set by the HTTP layer on every request; made here for a handler called
        // without it.
        let correlation_id = platform::access_log::correlation_id(headers)
            .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned);
        // The HTTP layer (platform::access_log) has set it to the request's own span
        // (the caller's trace continued). Without one, or a malformed one (a handler
        // called without that layer), a new trace, as the W3C recommends.
        let traceparent = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<TraceParent>().ok())
            .unwrap_or_else(TraceParent::new_root);
        Ok(Self {
            idempotency_key,
            correlation_id,
            request_id: Uuid::new_v4().to_string(),
            traceparent,
        })
    }
}

/// One command, as the handler hands it over.
pub struct Submission<'a> {
    /// The metric label, for example `request_booking`.
    pub name: &'static str,
    /// Who asks.
    pub user: &'a User,
    /// Headers that matter.
    pub context: &'a RequestContext,
    /// The request fingerprint from [`platform::http::JsonBody`].
    pub fingerprint: &'a str,
    /// The status of an accepted answer (201 or 202).
    pub accepted: StatusCode,
    /// The `status` of the accepted body, for a create that has one (a booking).
    pub status: Option<&'static str>,
    /// Whether the command creates its aggregate under an id just made up.
    pub creates: bool,
}

/// The consistency token of an aggregate's state after `sequence`: what the query API
/// waits for (`domain::consistency`). Clients treat it as opaque.
pub fn consistency_token(
    aggregate_type: &'static str,
    aggregate_id: &str,
    sequence: i64,
) -> String {
    domain::consistency::ConsistencyToken {
        aggregate_type,
        aggregate_id: aggregate_id.to_owned(),
        sequence,
    }
    .to_string()
}

/// Runs a command through idempotency, execution and retries, and renders the answer.
pub async fn submit<A>(
    app: &App,
    store: &AggregateStore<A>,
    submission: Submission<'_>,
    aggregate_id: Uuid,
    command: A::Command,
) -> Response
where
    A: Storable,
    A::Error: DomainError,
{
    let started = Instant::now();
    let span = tracing::info_span!(
        "command",
        command = submission.name,
        aggregate_type = A::TYPE,
        %aggregate_id,
        user_id = %submission.user.id,
        correlation_id = %submission.context.correlation_id,
    );
    let (outcome, response) = run::<A>(app, store, &submission, aggregate_id, command)
        .instrument(span)
        .await;
    let metrics = &app.metrics;
    metrics
        .commands
        .get_or_create(&CommandLabels {
            command: submission.name,
            outcome,
        })
        .inc();
    metrics
        .command_seconds
        .get_or_create(&CommandName {
            command: submission.name,
        })
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn run<A>(
    app: &App,
    store: &AggregateStore<A>,
    s: &Submission<'_>,
    aggregate_id: Uuid,
    command: A::Command,
) -> (&'static str, Response)
where
    A: Storable,
    A::Error: DomainError,
{
    if let Some(key) = &s.context.idempotency_key {
        match replay::<A>(app, s, key).await {
            Ok(Some(response)) => return ("replayed", response),
            Ok(None) => {}
            Err(err) => return ("error", err.into_response()),
        }
    }

    let metadata = metadata(app, s);
    let id = aggregate_id.to_string();
    for attempt in 1..=MAX_ATTEMPTS {
        let outcome = if s.creates && attempt == 1 {
            store.create(&id, command.clone(), &metadata).await
        } else {
            store.execute(&id, command.clone(), &metadata).await
        };
        match outcome {
            Ok(committed) => {
                let token = consistency_token(A::TYPE, &id, committed.last_sequence as i64);
                return ("accepted", accepted(s, &id, &token));
            }
            Err(ExecuteError::Domain(err)) => {
                let refusal = refusal(&err);
                tracing::info!(code = %refusal.code(), "command refused");
                return match remember_refusal::<A>(app, s, &refusal).await {
                    Ok(Some(replayed)) => ("replayed", replayed),
                    Ok(None) => ("refused", refusal.into_response()),
                    Err(err) => ("error", err.into_response()),
                };
            }
            Err(ExecuteError::Conflict) => {
                app.metrics
                    .conflicts
                    .get_or_create(&CommandName { command: s.name })
                    .inc();
                tracing::debug!(attempt, "concurrent update, retrying");
                let ceiling = 2u64 << attempt.min(6);
                let pause = rand::rng().random_range(1..=ceiling);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Err(ExecuteError::IdempotencyKeyTaken) => {
                let key = s.context.idempotency_key.as_deref().unwrap_or_default();
                return match replay::<A>(app, s, key).await {
                    Ok(Some(response)) => ("replayed", response),
                    Ok(None) => (
                        "error",
                        ApiError::unexpected("idempotency key taken but not found").into_response(),
                    ),
                    Err(err) => ("error", err.into_response()),
                };
            }
            Err(ExecuteError::Overloaded) => {
                return ("overloaded", platform::server::overloaded());
            }
            Err(ExecuteError::Store(err)) => {
                return ("error", store_failure(err).into_response());
            }
        }
    }
    (
        "conflict",
        ApiError::conflict(
            ErrorCode::ConcurrencyConflict,
            "the resource changed concurrently too often; try again",
        )
        .into_response(),
    )
}

/// The metadata the command is submitted with. The store keeps the fingerprint for the
/// key's record and leaves it out of the events.
fn metadata(app: &App, s: &Submission<'_>) -> EventMetadata {
    let key = s.context.idempotency_key.clone();
    EventMetadata {
        user_id: Some(s.user.id.clone()),
        correlation_id: Some(s.context.correlation_id.clone()),
        causation_id: Some(s.context.request_id.clone()),
        request_fingerprint: key.is_some().then(|| app.fingerprints.keyed(s.fingerprint)),
        idempotency_key: key,
        traceparent: Some(s.context.traceparent.to_string()),
        ..EventMetadata::default()
    }
}

/// The answer to an accepted command (201 or 202), the `X-Consistency-Token` header
/// carrying the same token.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "0193b3c4-8f5e-7a1c-9d2e-3f4a5b6c7d8e", "status": "pending",
                          "consistency_token": "booking:0193b3c4-8f5e-7a1c-9d2e-3f4a5b6c7d8e:1"}))]
pub struct Accepted {
    /// The id of the aggregate the command went to (a new one for a create).
    pub id: String,
    /// A new booking's status: `pending`, until the saga moves it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Send it as `X-Consistency-Token` on a read to see this write.
    pub consistency_token: String,
}

fn accepted(s: &Submission<'_>, id: &str, token: &str) -> Response {
    let body = Accepted {
        id: id.to_owned(),
        status: s.status.map(str::to_owned),
        consistency_token: token.to_owned(),
    };
    let mut response = (s.accepted, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(token) {
        response.headers_mut().insert(CONSISTENCY_TOKEN, value);
    }
    response
}

fn refusal<E: DomainError>(err: &E) -> ApiError {
    let message = err.to_string();
    match err.kind() {
        ErrorKind::NotFound => ApiError::not_found(message),
        ErrorKind::Conflict => ApiError::conflict(err.code(), message),
        ErrorKind::Invalid => ApiError::unprocessable(err.code(), message),
        ErrorKind::Forbidden => ApiError::forbidden(message),
    }
}

/// The first answer to this submission's `Idempotency-Key`, when the user used it
/// before: for a handler that must ask something of the outside world before it submits
/// (and must not ask again for a retry).
pub async fn replayed<A: Aggregate>(
    app: &App,
    s: &Submission<'_>,
) -> Result<Option<Response>, ApiError> {
    match &s.context.idempotency_key {
        Some(key) => replay::<A>(app, s, key).await,
        None => Ok(None),
    }
}

/// The first answer for `key`, when the user used it before.
async fn replay<A: Aggregate>(
    app: &App,
    s: &Submission<'_>,
    key: &str,
) -> Result<Option<Response>, ApiError> {
    let Some(record) = idempotency::find(&app.pool, &s.user.id, key).await? else {
        return Ok(None);
    };
    if record.fingerprint != app.fingerprints.keyed(s.fingerprint) {
        return Err(ApiError::unprocessable(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used for a different request",
        ));
    }
    Ok(Some(match record.outcome {
        Outcome::Accepted {
            aggregate_id,
            last_sequence,
        } => {
            let token = consistency_token(A::TYPE, &aggregate_id, last_sequence);
            accepted(s, &aggregate_id, &token)
        }
        Outcome::Refused { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::CONFLICT);
            (status, Json(body)).into_response()
        }
    }))
}

/// Stores a refusal under the key. When a concurrent request recorded the key first,
/// its answer is the one to give.
async fn remember_refusal<A: Aggregate>(
    app: &App,
    s: &Submission<'_>,
    refusal: &ApiError,
) -> Result<Option<Response>, ApiError> {
    let Some(key) = &s.context.idempotency_key else {
        return Ok(None);
    };
    let inserted = idempotency::record_refusal(
        &app.pool,
        &s.user.id,
        key,
        &app.fingerprints.keyed(s.fingerprint),
        &s.context.request_id,
        refusal.status().as_u16(),
        &refusal.body(),
    )
    .await?;
    if inserted {
        Ok(None)
    } else {
        replay::<A>(app, s, key).await
    }
}

/// The answer to a failure of the event store: 503 `unavailable` when the database
/// is unreachable for the moment (the connection was lost or terminated), else 500.
pub(crate) fn store_failure(err: PersistenceError) -> ApiError {
    match &err {
        PersistenceError::ConnectionError(_) => ApiError::database_unavailable(),
        PersistenceError::UnknownError(cause)
            if platform::db::error_is_transient(cause.as_ref()) =>
        {
            ApiError::database_unavailable()
        }
        _ => ApiError::unexpected(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn an_idempotency_key_is_1_to_200_characters() {
        assert!(RequestContext::from_headers(&headers(&[("idempotency-key", "")])).is_err());
        let long = "k".repeat(201);
        assert!(RequestContext::from_headers(&headers(&[("idempotency-key", &long)])).is_err());
        let ok = RequestContext::from_headers(&headers(&[("idempotency-key", "abc")])).unwrap();
        assert_eq!(ok.idempotency_key.as_deref(), Some("abc"));
        assert!(RequestContext::from_headers(&HeaderMap::new())
            .unwrap()
            .idempotency_key
            .is_none());
    }

    #[test]
    fn a_correlation_id_is_taken_or_made() {
        let given =
            RequestContext::from_headers(&headers(&[("x-correlation-id", "abc-1")])).unwrap();
        assert_eq!(given.correlation_id, "abc-1");
        let made = RequestContext::from_headers(&HeaderMap::new()).unwrap();
        assert!(Uuid::parse_str(&made.correlation_id).is_ok());
        assert_ne!(made.request_id, made.correlation_id);
    }

    #[test]
    fn tokens_name_the_stream_and_sequence() {
        let id = Uuid::now_v7().to_string();
        let token = consistency_token("booking", &id, 3);
        assert_eq!(token, format!("booking:{id}:3"));
        assert!(token
            .parse::<domain::consistency::ConsistencyToken>()
            .is_ok());
    }
}
