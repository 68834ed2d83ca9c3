//! The payment gateway's client: the sagas and the reconciliation sweep reach the
//! `payment-gateway` service (a provider with a Stripe-shaped API) over HTTP.
//!
//! - **Idempotent calls.** An authorization is created under an `Idempotency-Key`, the
//!   booking's id: asking twice authorizes once. Capture, void and refund of an intent
//!   are idempotent at the gateway too. So a call that failed, or whose answer was lost,
//!   is simply made again.
//! - **Timeouts and retries.** Each attempt is bounded by `PAYMENT_TIMEOUT_MS`; a call
//!   that failed for a reason that may pass (not reached, timed out, 5xx, 429) is tried
//!   again up to `PAYMENT_RETRIES` times, after a random pause ("full jitter": up to
//!   25 ms, 50 ms, 100 ms ...), and never past the budget the caller gives. An attempt
//!   cut short by that budget is not held against the gateway.
//! - **A turn at the gateway.** At most `PAYMENT_MAX_IN_FLIGHT` calls of this process
//!   are at the gateway at once; the others wait here, in order, within their budget.
//!   A burst (300 buyers at once) then queues where the wait costs no attempt its
//!   timeout, instead of at the gateway, where each attempt's clock would run while it
//!   waits, the attempts would time out together and the breaker would take the burst
//!   for an outage. A call whose budget runs out while it waits answers
//!   [`GatewayError::Unavailable`] and says nothing about the gateway to the breaker.
//! - **A circuit breaker** ([`breaker`]): after `PAYMENT_CIRCUIT_FAILURES` failures in a
//!   row no call goes out for `PAYMENT_CIRCUIT_OPEN_MS`; then one probe decides. While it
//!   is open every call answers [`GatewayError::Unavailable`] as soon as it has its turn
//!   (not sent), and the saga waits (a booking stays pending until its hold expires);
//!   nothing is failed for it.
//! - **A void wins over a late authorization.** A release voids by key
//!   ([`GatewayClient::void_key`]): the gateway voids the key's intent, or, when none
//!   arrived yet, records the key as voided, so that an authorization still on its way
//!   (one this side gave up waiting for) can never go through.
//! - **An answer that makes no sense** (a 4xx, a body that is not an intent) is
//!   [`GatewayError::Refused`]: the gateway is up, so the breaker counts it a success,
//!   and the caller decides (the saga logs it with the booking's correlation id and
//!   retries or compensates).
//!
//! Metrics: `boxoffice_payment_calls{operation,outcome}`,
//! `boxoffice_payment_call_duration_seconds{operation}`,
//! `boxoffice_payment_circuit_state{state}` (1 for the current state),
//! `boxoffice_payment_circuit_opened` and `boxoffice_payment_calls_waiting`.

pub mod breaker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{Semaphore, SemaphorePermit};
use tracing::Instrument;
use uuid::Uuid;

use crate::config::PaymentConfig;
use crate::metrics::{CircuitLabel, Metrics, PaymentCallLabels, PaymentOperation};
use breaker::{Breaker, Permit, State};

/// Why a call did not give an answer the caller can use.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// Not reached, too slow, 5xx, or the circuit is open: try again later.
    #[error("the payment gateway is unavailable: {0}")]
    Unavailable(String),
    /// It answered, but refused the call or answered something else than asked for.
    #[error("the payment gateway refused: {status} {code}: {message}")]
    Refused {
        /// The HTTP status (0 for an answer that could not be read).
        status: u16,
        /// The error code of its envelope, or `malformed_answer`.
        code: String,
        /// Its message.
        message: String,
    },
}

impl GatewayError {
    /// Whether the gateway said it does not know the intent or key (404
    /// `resource_missing`; a 404 for an unknown route is a misconfiguration, not that).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Refused { status: 404, code, .. } if code == "resource_missing")
    }
}

/// Where a payment intent stands at the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentStatus {
    /// The money is held on the card.
    Authorized,
    /// The money is taken.
    Captured,
    /// The hold was cancelled (or the key voided before anything arrived).
    Voided,
    /// The money went back.
    Refunded,
    /// The card was refused.
    Declined,
}

impl IntentStatus {
    /// The name used by the gateway.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorized => "authorized",
            Self::Captured => "captured",
            Self::Voided => "voided",
            Self::Refunded => "refunded",
            Self::Declined => "declined",
        }
    }
}

/// The metadata key naming the store that created an intent (see [`GatewayClient`]).
pub const STORE_METADATA: &str = "boxoffice_store";

/// A payment intent, as the gateway shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct Intent {
    /// The gateway's id (`pi_...`): the payment reference.
    pub id: String,
    /// The key it was created under (a booking id).
    pub idempotency_key: String,
    /// Where it stands.
    pub status: IntentStatus,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// What its creator attached (ours: the booking, its correlation id, the store).
    #[serde(default)]
    pub metadata: HashMap<String, String>,
}

impl Intent {
    /// Whether this store created it.
    pub fn created_by(&self, store: Uuid) -> bool {
        self.metadata.get(STORE_METADATA).map(String::as_str) == Some(store.to_string().as_str())
    }
}

/// A payment method: the gateway's reference for a card, kept in place of its token.
#[derive(Debug, Clone, Deserialize)]
struct PaymentMethod {
    id: String,
}

/// A page of intents.
#[derive(Debug, Clone, Deserialize)]
pub struct Page {
    /// The intents, oldest first.
    pub data: Vec<Intent>,
    /// Where the next page starts, when there is one.
    pub next_cursor: Option<String>,
}

/// The gateway's answer to an authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// The money is held; the intent's id.
    Authorized(String),
    /// The card was refused.
    Declined,
    /// The key was voided before: this authorization can never go through.
    Voided,
}

/// What an authorization asks for.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest<'a> {
    /// The idempotency key: the booking's id.
    pub key: &'a str,
    /// In minor units.
    pub amount_cents: i64,
    /// ISO 4217.
    pub currency: &'a str,
    /// How to pay: a payment method (`pm_...`), or the raw card token of a booking made
    /// before payment methods existed.
    pub payment_method: &'a str,
    /// Carried in the intent's metadata, for people reading the gateway's books.
    pub correlation_id: &'a str,
}

/// The gateway's client. Cheap to clone.
#[derive(Clone)]
pub struct GatewayClient(Arc<Inner>);

struct Inner {
    http: reqwest::Client,
    base: String,
    store: Uuid,
    key: Option<String>,
    attempt_timeout: Duration,
    retries: u32,
    breaker: Mutex<Breaker>,
    /// Turns at the gateway: `PAYMENT_MAX_IN_FLIGHT` permits.
    turns: Semaphore,
    metrics: Metrics,
}

/// One call's outcome, for the metrics.
#[derive(Clone, Copy)]
enum Outcome {
    Ok,
    Refused,
    Unavailable,
    Timeout,
    CircuitOpen,
    /// The budget ran out while the call waited for its turn: never sent.
    NoTurn,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::CircuitOpen => "circuit_open",
            Self::NoTurn => "no_turn",
        }
    }
}

impl GatewayClient {
    /// A client for the gateway at `config.url`, for the store whose identity is
    /// `store` (carried by every intent it creates).
    pub fn new(config: &PaymentConfig, store: Uuid, metrics: Metrics) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        let client = Self(Arc::new(Inner {
            http,
            base: config.url.trim_end_matches('/').to_owned(),
            store,
            key: config.key.clone(),
            attempt_timeout: config.timeout,
            retries: config.retries,
            breaker: Mutex::new(Breaker::new(config.circuit_failures, config.circuit_open)),
            turns: Semaphore::new(config.max_in_flight),
            metrics,
        }));
        client.show_state(State::Closed);
        Ok(client)
    }

    /// The longest one call may take with its retries, when the caller gives it all
    /// the time it needs.
    pub fn call_budget(&self) -> Duration {
        let attempts = self.0.retries + 1;
        // Each attempt's timeout, and the pauses between them (at most 25 ms doubling).
        self.0.attempt_timeout * attempts + Duration::from_millis(25 * (1 << attempts.min(10)))
    }

    /// Authorizes the booking's payment, within `budget`.
    pub async fn authorize(
        &self,
        request: &AuthorizeRequest<'_>,
        budget: Duration,
    ) -> Result<Authorization, GatewayError> {
        let body = json!({
            "amount": request.amount_cents,
            "currency": request.currency,
            "payment_method": request.payment_method,
            "metadata": {
                "booking_id": request.key,
                "correlation_id": request.correlation_id,
                STORE_METADATA: self.0.store.to_string(),
            },
        });
        let intent = self
            .intent_call(
                PaymentOperation::Authorize,
                Method::POST,
                "/v1/payment_intents".to_owned(),
                Some(body),
                Some(request.key),
                budget,
            )
            .await?;
        Ok(match intent.status {
            IntentStatus::Authorized | IntentStatus::Captured => {
                Authorization::Authorized(intent.id)
            }
            IntentStatus::Declined => Authorization::Declined,
            // Voided before it arrived, or voided (or refunded) after: either way it
            // holds nothing and never will.
            IntentStatus::Voided | IntentStatus::Refunded => Authorization::Voided,
        })
    }

    /// Exchanges a card token for a payment method, the reference kept instead of it,
    /// under `key` (a booking id: asking twice gives one payment method).
    pub async fn tokenize(
        &self,
        card_token: &str,
        key: &str,
        budget: Duration,
    ) -> Result<String, GatewayError> {
        let body = self
            .call(
                PaymentOperation::Tokenize,
                Method::POST,
                "/v1/payment_methods",
                Some(json!({"card_token": card_token})),
                Some(key),
                budget,
            )
            .await?;
        parse::<PaymentMethod>(body).map(|method| method.id)
    }

    /// The store this client creates intents for.
    pub fn store(&self) -> Uuid {
        self.0.store
    }

    /// Takes the money of an authorized intent.
    pub async fn capture(&self, intent: &str, budget: Duration) -> Result<Intent, GatewayError> {
        self.intent_action(PaymentOperation::Capture, intent, "capture", budget)
            .await
    }

    /// Voids an authorized intent.
    pub async fn void(&self, intent: &str, budget: Duration) -> Result<Intent, GatewayError> {
        self.intent_action(PaymentOperation::Void, intent, "cancel", budget)
            .await
    }

    /// Gives back an intent's money: refunds a captured one, voids one only authorized.
    pub async fn refund(&self, intent: &str, budget: Duration) -> Result<Intent, GatewayError> {
        self.intent_action(PaymentOperation::Refund, intent, "refund", budget)
            .await
    }

    /// Voids whatever is authorized under `key`, and makes sure nothing can be
    /// authorized under it later (the gateway records the key as voided when no
    /// intent arrived yet).
    pub async fn void_key(&self, key: &str, budget: Duration) -> Result<Intent, GatewayError> {
        self.intent_call(
            PaymentOperation::VoidKey,
            Method::POST,
            format!("/v1/payment_intents/by_key/{}/cancel", encode(key)),
            None,
            None,
            budget,
        )
        .await
    }

    /// The intent created under `key`, if any.
    pub async fn find_by_key(
        &self,
        key: &str,
        budget: Duration,
    ) -> Result<Option<Intent>, GatewayError> {
        match self
            .intent_call(
                PaymentOperation::Find,
                Method::GET,
                format!("/v1/payment_intents/by_key/{}", encode(key)),
                None,
                None,
                budget,
            )
            .await
        {
            Ok(intent) => Ok(Some(intent)),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// A page of the intents with `status`, oldest first, from `cursor`.
    pub async fn list(
        &self,
        status: IntentStatus,
        cursor: Option<&str>,
        budget: Duration,
    ) -> Result<Page, GatewayError> {
        let mut path = format!("/v1/payment_intents?status={}&limit=100", status.as_str());
        if let Some(cursor) = cursor {
            path.push_str("&cursor=");
            path.push_str(&encode(cursor));
        }
        let body = self
            .call(
                PaymentOperation::List,
                Method::GET,
                &path,
                None,
                None,
                budget,
            )
            .await?;
        parse(body)
    }

    async fn intent_action(
        &self,
        operation: PaymentOperation,
        intent: &str,
        action: &str,
        budget: Duration,
    ) -> Result<Intent, GatewayError> {
        self.intent_call(
            operation,
            Method::POST,
            format!("/v1/payment_intents/{}/{action}", encode(intent)),
            None,
            None,
            budget,
        )
        .await
    }

    async fn intent_call(
        &self,
        operation: PaymentOperation,
        method: Method,
        path: String,
        body: Option<Value>,
        idempotency_key: Option<&str>,
        budget: Duration,
    ) -> Result<Intent, GatewayError> {
        let answer = self
            .call(operation, method, &path, body, idempotency_key, budget)
            .await?;
        parse(answer)
    }

    /// One call with its retries, through the breaker. Answers the body of a 2xx.
    async fn call(
        &self,
        operation: PaymentOperation,
        method: Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
        budget: Duration,
    ) -> Result<Value, GatewayError> {
        let started = Instant::now();
        let deadline = started + budget;
        let mut attempt = 0u32;
        // A client span for the call (retries included): the gateway continues the
        // trace from the `traceparent` it names, so its side is in the same trace.
        let span = tracing::info_span!(
            "payment gateway call",
            otel.name = %format_args!("payment gateway {}", operation.as_str()),
            otel.kind = "client",
            http.request.method = %method,
        );
        let traceparent = platform::telemetry::traceparent_of(&span).map(|t| t.to_string());
        // The last attempt's failure, told rather than the wait that followed it.
        let mut failed: Option<GatewayError> = None;
        let result = loop {
            let Some(turn) = self.turn(deadline).await else {
                self.count(operation, Outcome::NoTurn);
                break Err(failed.take().unwrap_or_else(|| {
                    GatewayError::Unavailable(
                        "too many payment calls are waiting for their turn".into(),
                    )
                }));
            };
            let Some(permit) = Attempt::start(self) else {
                self.count(operation, Outcome::CircuitOpen);
                break Err(GatewayError::Unavailable("the circuit is open".into()));
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = self.0.attempt_timeout.min(left);
            let mut request = self
                .0
                .http
                .request(method.clone(), format!("{}{path}", self.0.base))
                .timeout(timeout);
            if let Some(key) = &self.0.key {
                request = request.bearer_auth(key);
            }
            if let Some(key) = idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            if let Some(traceparent) = &traceparent {
                request = request.header("traceparent", traceparent);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            let (outcome, result) = attempt_outcome(request.send().instrument(span.clone()).await)
                .instrument(span.clone())
                .await;
            match outcome {
                // Cut short by the caller's budget, not by the gateway's slowness: it
                // says nothing about the gateway.
                Outcome::Timeout if timeout < self.0.attempt_timeout => permit.abandon(),
                Outcome::Unavailable | Outcome::Timeout => permit.finish(false),
                _ => permit.finish(true),
            }
            drop(turn);
            self.count(operation, outcome);
            let again = matches!(outcome, Outcome::Unavailable | Outcome::Timeout);
            attempt += 1;
            if !again || attempt > self.0.retries {
                break result;
            }
            // Full jitter: a random pause up to 25 ms, 50 ms, 100 ms ..., so that many
            // sagas retrying together do not hit the gateway in step.
            let ceiling = Duration::from_millis(25 << (attempt - 1).min(10));
            let pause = ceiling.mul_f64(rand::rng().random_range(0.0..1.0));
            if Instant::now() + pause >= deadline {
                break result;
            }
            failed = result.err();
            tokio::time::sleep(pause).await;
        };
        self.0
            .metrics
            .payment_call_seconds
            .get_or_create(&PaymentCallLabels::name(operation))
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// A turn at the gateway, waited for until `deadline` at the latest (in order).
    async fn turn(&self, deadline: Instant) -> Option<SemaphorePermit<'_>> {
        if let Ok(turn) = self.0.turns.try_acquire() {
            return Some(turn);
        }
        let _waiting = Waiting::new(&self.0.metrics.payment_calls_waiting);
        let turn = tokio::time::timeout_at(deadline.into(), self.0.turns.acquire()).await;
        // The semaphore is never closed.
        turn.ok()?.ok()
    }

    fn record(&self, permit: Permit, succeeded: bool) {
        let (before, after) = {
            let mut breaker = lock(&self.0.breaker);
            let now = Instant::now();
            let before = breaker.state(now);
            (before, breaker.record(permit, succeeded, now))
        };
        if before != after {
            if after == State::Open {
                self.0.metrics.payment_circuit_opened.inc();
                tracing::warn!("payment gateway circuit opened: calls are held back for a while");
            } else if after == State::Closed {
                tracing::info!("payment gateway circuit closed: calls go through again");
            }
        }
        self.show_state(after);
    }

    fn show_state(&self, state: State) {
        for candidate in [State::Closed, State::Open, State::HalfOpen] {
            self.0
                .metrics
                .payment_circuit_state
                .get_or_create(&CircuitLabel {
                    state: candidate.as_str(),
                })
                .set(i64::from(candidate == state));
        }
    }

    fn count(&self, operation: PaymentOperation, outcome: Outcome) {
        self.0
            .metrics
            .payment_calls
            .get_or_create(&PaymentCallLabels {
                operation: operation.as_str(),
                outcome: outcome.as_str(),
            })
            .inc();
    }
}

/// One attempt's leave from the breaker. Its outcome goes back with [`Attempt::finish`];
/// an attempt dropped without one (its future cancelled) gives its place back, so a
/// half-open breaker never waits for a probe that will not report.
struct Attempt<'a> {
    client: &'a GatewayClient,
    permit: Option<Permit>,
}

impl<'a> Attempt<'a> {
    fn start(client: &'a GatewayClient) -> Option<Self> {
        let permit = lock(&client.0.breaker).allow(Instant::now())?;
        Some(Self {
            client,
            permit: Some(permit),
        })
    }

    fn finish(mut self, succeeded: bool) {
        if let Some(permit) = self.permit.take() {
            self.client.record(permit, succeeded);
        }
    }

    fn abandon(self) {
        drop(self);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            lock(&self.client.0.breaker).abandon(permit);
        }
    }
}

/// One call counted in `boxoffice_payment_calls_waiting` while it lives (a call whose
/// future is dropped while it waits, its request gone, is counted out too).
struct Waiting<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl<'a> Waiting<'a> {
    fn new(gauge: &'a prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What one attempt gave: its outcome for the metrics and the breaker, and the result.
async fn attempt_outcome(
    sent: reqwest::Result<reqwest::Response>,
) -> (Outcome, Result<Value, GatewayError>) {
    let response = match sent {
        Ok(response) => response,
        Err(err) if err.is_timeout() => {
            return (
                Outcome::Timeout,
                Err(GatewayError::Unavailable("no answer in time".into())),
            )
        }
        Err(err) => {
            return (
                Outcome::Unavailable,
                Err(GatewayError::Unavailable(format!(
                    "cannot reach it: {}",
                    without_url(&err)
                ))),
            )
        }
    };
    let status = response.status();
    let body = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(err) if err.is_timeout() => {
            return (
                Outcome::Timeout,
                Err(GatewayError::Unavailable(
                    "the answer did not arrive in time".into(),
                )),
            )
        }
        Err(err) => {
            return (
                Outcome::Unavailable,
                Err(GatewayError::Unavailable(format!(
                    "the answer broke off: {}",
                    without_url(&err)
                ))),
            )
        }
    };
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return (
            Outcome::Unavailable,
            Err(GatewayError::Unavailable(format!("it answered {status}"))),
        );
    }
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    if status.is_success() {
        return match json {
            Some(value) => (Outcome::Ok, Ok(value)),
            None => (Outcome::Refused, Err(malformed("the body is not JSON"))),
        };
    }
    let error = json.as_ref().map(|v| &v["error"]);
    let text = |field: &str| {
        error
            .and_then(|e| e[field].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    (
        Outcome::Refused,
        Err(GatewayError::Refused {
            status: status.as_u16(),
            code: text("code"),
            message: text("message"),
        }),
    )
}

/// A 2xx body read as `T`, or [`GatewayError::Refused`] `malformed_answer`.
fn parse<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, GatewayError> {
    serde_json::from_value(body).map_err(|err| malformed(&err.to_string()))
}

fn malformed(message: &str) -> GatewayError {
    GatewayError::Refused {
        status: 0,
        code: "malformed_answer".into(),
        message: message.to_owned(),
    }
}

/// reqwest's error text names the URL; the cause is what matters in a log line.
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text
            .replace(&format!(" ({url})"), "")
            .replace(url.as_str(), "");
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A path segment, percent-encoded (ids and keys are ours, but a key could hold `/`).
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(
            encode("0192e4d2-0000-7000-8000-000000000001"),
            "0192e4d2-0000-7000-8000-000000000001"
        );
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn an_intent_is_read_from_the_gateways_answer() {
        let intent: Intent = parse(json!({
            "id": "pi_1", "object": "payment_intent", "idempotency_key": "b1",
            "amount": 100, "currency": "EUR", "status": "authorized", "decline_code": null,
            "metadata": {}, "created": "2030-01-01T00:00:00Z", "updated": "2030-01-01T00:00:00Z"
        }))
        .unwrap();
        assert_eq!(
            (intent.id.as_str(), intent.status),
            ("pi_1", IntentStatus::Authorized)
        );
        let err = parse::<Intent>(json!({"id": "pi_1"})).unwrap_err();
        assert!(matches!(err, GatewayError::Refused { code, .. } if code == "malformed_answer"));
    }
}
