//! The HTTP conventions every boxoffice service shares.
//!
//! - [`ApiError`]: one error type, one JSON envelope
//!   `{"error": {"code", "message", "details"?}}`. Unexpected failures are logged and
//!   answered 500 without internals.
//! - [`JsonBody`]: a strict JSON body: 415 without `Content-Type: application/json`,
//!   413 over [`MAX_BODY_BYTES`], 400 when it is not JSON, 422 with `details` when it
//!   does not fit the expected shape. It also fingerprints the request for
//!   `Idempotency-Key`.
//! - [`PathId`]: a UUID path segment; anything else is a 404, as an unknown id is.
//! - [`health_router`]: `/health/live` and `/health/ready`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use crate::error_code::ErrorCode;

/// The body of a command that needs no fields: `{}`. Any JSON object is taken (its
/// fields are ignored); anything else (an array, a number) is 422, as for any body that
/// is not what the operation reads. (An empty struct would not do: serde reads one from
/// `[]` too.)
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct EmptyBody(pub serde_json::Map<String, Value>);

/// The largest request body accepted (64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Whether a cause handed to [`ApiError::unexpected`] is a database failure of the
/// moment: a `sqlx::Error` (bare or shared) or an `anyhow::Error` with one in its chain.
fn transient(cause: &dyn std::any::Any) -> bool {
    if let Some(err) = cause.downcast_ref::<sqlx::Error>() {
        return crate::db::is_transient(err);
    }
    if let Some(err) = cause.downcast_ref::<Arc<sqlx::Error>>() {
        return crate::db::is_transient(err);
    }
    if let Some(err) = cause.downcast_ref::<anyhow::Error>() {
        return err.chain().any(crate::db::error_is_transient);
    }
    if let Some(err) = cause.downcast_ref::<Box<dyn std::error::Error + Send + Sync>>() {
        return crate::db::error_is_transient(err.as_ref());
    }
    false
}

/// An answer other than success, rendered as the JSON error envelope.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    details: Option<Value>,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    /// An error with any status and code.
    pub fn new(status: StatusCode, code: impl Into<ErrorCode>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            details: None,
            retry_after_secs: None,
        }
    }

    /// 400 with a code.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// The same error, telling the client when to try again (`Retry-After`).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// 409 with a code.
    pub fn conflict(code: impl Into<ErrorCode>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 422 with a code.
    pub fn unprocessable(code: impl Into<ErrorCode>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 422 `validation_failed` with one `details` entry per field problem.
    pub fn validation(details: impl serde::Serialize) -> Self {
        Self::unprocessable(
            ErrorCode::ValidationFailed,
            "the request does not pass validation",
        )
        .with_details(serde_json::to_value(details).unwrap_or(Value::Null))
    }

    /// 503 with a code and a `Retry-After`.
    pub fn unavailable(code: ErrorCode, message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut err = Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        err.retry_after_secs = Some(retry_after_secs);
        err
    }

    /// A failure that is ours, not the client's: logged with its cause, answered 500
    /// `internal_error` with nothing of the cause in the body. A database that is
    /// unreachable for the moment (see [`crate::db::is_transient`]) is answered 503
    /// `unavailable` with `Retry-After` instead: the client may try again.
    pub fn unexpected(cause: impl std::fmt::Display + 'static) -> Self {
        if transient(&cause) {
            tracing::warn!(cause = %cause, "the database is unavailable for the moment");
            return Self::database_unavailable();
        }
        tracing::error!(cause = %cause, "request failed unexpectedly");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            "something went wrong on our side; it was logged",
        )
    }

    /// 503 `unavailable`: the database could not be reached (or dropped the session)
    /// this moment. A command answered so may or may not have been recorded: repeat it
    /// with the same `Idempotency-Key` to be sure it is recorded once.
    pub fn database_unavailable() -> Self {
        Self::unavailable(
            ErrorCode::Unavailable,
            "the database is unavailable for a moment; try again shortly",
            1,
        )
    }

    /// Adds `details` to the envelope.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The envelope, as sent.
    pub fn body(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(details) = &self.details {
            error["details"] = details.clone();
        }
        json!({ "error": error })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

/// A database failure in a handler: `?` answers it as [`ApiError::unexpected`] does
/// (503 when it is the moment's, else 500, the cause logged).
impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        Self::unexpected(err)
    }
}

/// Any other failure of ours in a handler, likewise.
impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        Self::unexpected(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        // For the access log's count of answers by error code.
        response.extensions_mut().insert(self.code);
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750: how to authenticate.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The fallback for unknown routes: 404 in the envelope.
pub async fn route_not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// The fallback for a known route and an unknown method: 405 in the envelope.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}

/// A JSON request body of type `T`, with the request's fingerprint.
#[derive(Debug)]
pub struct JsonBody<T> {
    /// The parsed body.
    pub value: T,
    /// SHA-256 of method, path and canonical JSON body: two requests with the same
    /// fingerprint asked for the same thing, whatever their whitespace or key order.
    /// Stored only keyed (see [`FingerprintKey`]): a plain hash of a body that holds a
    /// name or an e-mail address would let anyone who reads it test guesses of them.
    pub fingerprint: String,
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "send the body as Content-Type: application/json",
            ));
        }
        let method = req.method().to_string();
        let path = req.uri().path().to_owned();
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                format!("the body must be at most {MAX_BODY_BYTES} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(too_large());
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|err| {
                if is_length_limit(&err) {
                    too_large()
                } else if crate::server::is_body_timeout(&err) {
                    ApiError::new(
                        crate::server::BODY_TIMEOUT,
                        ErrorCode::BodyTimeout,
                        "the body did not arrive in time",
                    )
                } else {
                    ApiError::bad_request(ErrorCode::UnreadableBody, "the body could not be read")
                }
            })?;
        let json: Value = serde_json::from_slice(&bytes).map_err(|err| {
            ApiError::bad_request(
                ErrorCode::MalformedJson,
                format!("the body is not valid JSON: {err}"),
            )
        })?;
        let fingerprint = fingerprint(&method, &path, &json);
        let value = serde_path_to_error::deserialize(&json).map_err(|err| {
            let field = err.path().to_string();
            let field = if field == "." { String::new() } else { field };
            ApiError::validation(json!([{ "field": field, "message": shape_error(err.inner()) }]))
        })?;
        Ok(Self { value, fingerprint })
    }
}

/// How a body does not fit, in serde's words but without the values the client sent
/// (a card number in the wrong field must not come back in the answer, or reach a log):
/// `invalid type: string "4111…", expected u32` becomes `invalid type: string, expected
/// u32`. Field and variant names stay (they are what the client needs to fix), cut to
/// a readable length.
fn shape_error(err: &serde_json::Error) -> String {
    let message = err.to_string();
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let (got, expected) = rest
                .rfind(", expected ")
                .map_or((rest, ""), |at| rest.split_at(at));
            // What serde says it got: a kind ("string", "integer", "map"...), then
            // the value, quoted; only the kind stays.
            let kind = got.split([' ', '`', '"']).next().unwrap_or_default();
            let kind = match kind {
                "floating" => "floating point",
                "unit" => "unit value",
                other => other,
            };
            return format!("{prefix}{kind}{expected}");
        }
    }
    const NAME_LIMIT: usize = 40;
    for prefix in ["unknown field `", "unknown variant `"] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
            let name: String = name.chars().take(NAME_LIMIT).collect();
            return format!("{prefix}{name}`{tail}");
        }
    }
    message
}

fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// The request fingerprint: SHA-256 over method, path and the body in canonical JSON
/// (object keys sorted, no whitespace).
/// The key request fingerprints are stored under: HMAC-SHA-256 keyed by a key derived
/// from the service's secret, so a stored fingerprint says nothing about the body it
/// was taken of to anyone without that secret.
#[derive(Clone)]
pub struct FingerprintKey([u8; 32]);

impl FingerprintKey {
    /// The key derived from `secret` (the JWT secret: one secret less to manage).
    pub fn derive(secret: &str) -> Self {
        Self(hmac_sha256(
            secret.as_bytes(),
            b"boxoffice request fingerprint key v1",
        ))
    }

    /// `fingerprint` (from [`JsonBody`]) keyed, as it is stored.
    pub fn keyed(&self, fingerprint: &str) -> String {
        hex::encode(hmac_sha256(&self.0, fingerprint.as_bytes()))
    }
}

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FingerprintKey(..)")
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The fingerprint of a request: method, path and canonical JSON body.
pub fn fingerprint(method: &str, path: &str, body: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(body, &mut canonical);
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b" ");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical.as_bytes());
    hex::encode(hasher.finalize())
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A query string of shape `T`: 422 `validation_failed` when it does not fit.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection| {
                ApiError::validation(
                    json!([{ "field": "query", "message": rejection.body_text() }]),
                )
            })
    }
}

/// The `Idempotency-Key` header of a POST, when sent: 1 to 200 visible ASCII
/// characters, else 400 `invalid_idempotency_key`. What a key promises (the same user
/// repeating it with the same request gets the first answer again, and nothing is done
/// twice) is up to each service.
#[derive(Debug, Clone, Default)]
pub struct IdempotencyKey(pub Option<String>);

impl IdempotencyKey {
    /// The key in `headers`, if any.
    pub fn from_headers(headers: &axum::http::HeaderMap) -> Result<Self, ApiError> {
        let Some(value) = headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        value
            .to_str()
            .ok()
            .filter(|k| (1..=200).contains(&k.chars().count()))
            .map(|k| Self(Some(k.to_owned())))
            .ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::InvalidIdempotencyKey,
                    "Idempotency-Key must be 1 to 200 visible ASCII characters",
                )
            })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Self::from_headers(&parts.headers)
    }
}

/// The `{id}` path segment as a UUID. Anything that is not a UUID cannot name anything
/// we store, so it is answered like an unknown id: 404.
#[derive(Debug, Clone, Copy)]
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::not_found("no such resource"))?;
        Uuid::parse_str(&raw)
            .map(Self)
            .map_err(|_| ApiError::not_found(format!("no resource has the id {raw:?}")))
    }
}

/// A boxed future, for readiness checks.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One dependency checked by `/health/ready`: its name and how to check it.
pub struct ReadinessCheck {
    /// The name shown in the answer, for example `database`.
    pub name: &'static str,
    /// Whether the service is ready only when this answers. A check that is not
    /// required is shown in the answer (and its metric) without deciding it: the
    /// broker, for command-api, whose outbox holds what it cannot publish yet.
    pub required: bool,
    /// Resolves to `Err(reason)` when the dependency is not usable.
    pub check: Arc<dyn Fn() -> BoxFuture<Result<(), String>> + Send + Sync>,
}

impl ReadinessCheck {
    /// A check that `pool`'s database answers `SELECT 1`.
    pub fn database(name: &'static str, pool: sqlx::PgPool) -> Self {
        Self {
            name,
            required: true,
            check: Arc::new(move || {
                let pool = pool.clone();
                Box::pin(async move {
                    sqlx::query("SELECT 1")
                        .execute(&pool)
                        .await
                        .map(drop)
                        .map_err(|err| err.to_string())
                })
            }),
        }
    }
}

/// How long a readiness answer is reused: probes from several load balancers and
/// orchestrators cost the dependencies one check per second, whatever their number.
const READINESS_CACHE: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /health/live` (the process answers) and `GET /health/ready` (every required
/// dependency answers; 503 naming the failing ones otherwise; the others are shown).
/// The answer is computed at most once a second, by one probe while the others wait
/// for it.
pub fn health_router<S: Clone + Send + Sync + 'static>(checks: Vec<ReadinessCheck>) -> Router<S> {
    let checks = Arc::new(checks);
    let cache: Arc<tokio::sync::Mutex<Option<(std::time::Instant, StatusCode, Value)>>> =
        Arc::default();
    Router::new()
        .route(
            "/health/live",
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .route(
            "/health/ready",
            get(move || {
                let (checks, cache) = (checks.clone(), cache.clone());
                async move {
                    let mut cached = cache.lock().await;
                    if let Some((at, status, body)) = cached.as_ref() {
                        if at.elapsed() < READINESS_CACHE {
                            return (*status, Json(body.clone()));
                        }
                    }
                    let (status, body) = readiness(&checks).await;
                    *cached = Some((std::time::Instant::now(), status, body.clone()));
                    (status, Json(body))
                }
            }),
        )
}

async fn readiness(checks: &[ReadinessCheck]) -> (StatusCode, Value) {
    let mut report = serde_json::Map::new();
    let mut ready = true;
    for check in checks {
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(3), (check.check)())
            .await
            .unwrap_or_else(|_| Err("timed out after 3s".into()));
        let value = match outcome {
            Ok(()) => Value::from("ok"),
            Err(reason) => {
                ready &= !check.required;
                Value::from(reason)
            }
        };
        report.insert(check.name.to_owned(), value);
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": report,
    });
    (status, body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_shape_error_names_the_kind_of_value_never_the_value() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Dto {
            seats: u32,
            mode: Mode,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Mode {
            Card,
        }
        let message = |body: Value| shape_error(&serde_json::from_value::<Dto>(body).unwrap_err());
        let secret = "4111111111111111";
        for (body, expected) in [
            (
                json!({"seats": secret, "mode": "card"}),
                "invalid type: string, expected u32",
            ),
            (
                json!({"seats": -4_111_111_111_111_111_i64, "mode": "card"}),
                "invalid value: integer, expected u32",
            ),
            (
                json!({"seats": 1.5, "mode": "card"}),
                "invalid type: floating point, expected u32",
            ),
            (
                json!({"seats": 1, "mode": [secret]}),
                "invalid type: sequence, expected string or map",
            ),
            (
                json!({"seats": 1, "mode": "card", "card_number": secret}),
                "unknown field `card_number`, expected `seats` or `mode`",
            ),
            (
                json!({"seats": 1, "mode": "cash"}),
                "unknown variant `cash`, expected `card`",
            ),
            (json!({"mode": "card"}), "missing field `seats`"),
        ] {
            let got = message(body.clone());
            assert_eq!(got, expected, "{body}");
            assert!(!got.contains("4111"), "{got}");
        }
    }

    use super::*;

    #[test]
    fn the_fingerprint_ignores_key_order_and_whitespace() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2], "x": null}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":null,"y":[1,2]},"b":1}"#).unwrap();
        assert_eq!(fingerprint("POST", "/p", &a), fingerprint("POST", "/p", &b));
        assert_ne!(fingerprint("POST", "/p", &a), fingerprint("POST", "/q", &a));
        let c: Value = serde_json::from_str(r#"{"b": 2, "a": {"y": [1, 2], "x": null}}"#).unwrap();
        assert_ne!(fingerprint("POST", "/p", &a), fingerprint("POST", "/p", &c));
    }

    #[test]
    fn content_types() {
        assert!(is_json(Some(&HeaderValue::from_static("application/json"))));
        assert!(is_json(Some(&HeaderValue::from_static(
            "Application/JSON; charset=utf-8"
        ))));
        assert!(!is_json(Some(&HeaderValue::from_static("text/plain"))));
        assert!(!is_json(None));
    }

    #[test]
    fn the_envelope() {
        let err = ApiError::validation(json!([{"field": "seats", "message": "too many"}]));
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            err.body(),
            json!({"error": {"code": "validation_failed", "message": "the request does not pass validation",
                   "details": [{"field": "seats", "message": "too many"}]}})
        );
    }
}
