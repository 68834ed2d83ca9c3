//! Request parts the gateway's routes share, beyond platform's.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use platform::http::{ApiError, ErrorCode, IdempotencyKey, JsonBody, MAX_BODY_BYTES};
use serde_json::{Map, Value};

/// The `Idempotency-Key` header, which creating an intent requires: 400
/// `idempotency_key_required` without it, 400 `invalid_idempotency_key` when it is not
/// 1 to 200 visible ASCII characters.
#[derive(Debug)]
pub struct RequiredKey(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequiredKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match IdempotencyKey::from_headers(&parts.headers)? {
            IdempotencyKey(Some(key)) => Ok(Self(key)),
            IdempotencyKey(None) => Err(ApiError::bad_request(
                ErrorCode::IdempotencyKeyRequired,
                "creating a payment intent needs an Idempotency-Key header",
            )),
        }
    }
}

/// Whether `key` could have come in an `Idempotency-Key` header (what
/// [`IdempotencyKey`] accepts): 1 to 200 characters, each visible ASCII, space or tab.
pub fn is_valid_key(key: &str) -> bool {
    (1..=200).contains(&key.len()) && key.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// The `{id}` path segment. One that cannot even be decoded names nothing: 404.
#[derive(Debug)]
pub struct PathIntentId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathIntentId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| super::missing("no such payment intent"))?;
        Ok(Self(id))
    }
}

/// The `{id}` path segment of a payment method. One that cannot even be decoded names
/// nothing: 404. Never echoed (a client might put a card token there by mistake).
#[derive(Debug)]
pub struct PathMethodId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathMethodId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| super::missing("no such payment method"))?;
        Ok(Self(id))
    }
}

/// The `{key}` path segment (`/by_key/{key}`, percent-decoded): 400
/// `invalid_idempotency_key` when no `Idempotency-Key` header could hold it.
#[derive(Debug)]
pub struct PathKey(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .ok()
            .filter(|Path(key)| is_valid_key(key))
            .map(|Path(key)| Self(key))
            .ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::InvalidIdempotencyKey,
                    "an Idempotency-Key is 1 to 200 visible ASCII characters (percent-encoded \
                     in the path)",
                )
            })
    }
}

/// The body of an action on an intent (capture, cancel, refund): empty (any
/// `Content-Type`, or none), or a JSON object, whose fields are ignored. Anything else is
/// refused as [`JsonBody`] refuses it (415, 400, 422); over 64 KiB, 413.
#[derive(Debug)]
pub struct ActionBody;

impl<S: Send + Sync> FromRequest<S> for ActionBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
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
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|err| {
                if is_length_limit(&err) {
                    too_large()
                } else {
                    ApiError::bad_request(ErrorCode::UnreadableBody, "the body could not be read")
                }
            })?;
        if bytes.is_empty() {
            return Ok(Self);
        }
        let req = Request::from_parts(parts, Body::from(bytes));
        JsonBody::<Map<String, Value>>::from_request(req, state).await?;
        Ok(Self)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(is_valid_key("booking-1"));
        assert!(is_valid_key("a b/c?d"));
        assert!(is_valid_key(&"k".repeat(200)));
        assert!(!is_valid_key(&"k".repeat(201)));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key("é"));
        assert!(!is_valid_key("a\nb"));
    }
}
