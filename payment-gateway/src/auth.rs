//! The API key: when `PAYMENT_GATEWAY_KEY` is set, every `/v1` and `/admin` request must
//! carry `Authorization: Bearer <key>`; anything else is 401 `unauthorized` with
//! `WWW-Authenticate: Bearer`.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use platform::http::ApiError;
use sha2::{Digest, Sha256};

use crate::app::AppState;

/// The API key, kept only as its SHA-256 so that comparing takes the same time whatever
/// the key presented (its length included).
#[derive(Clone)]
pub struct ApiKey([u8; 32]);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl ApiKey {
    /// The key `secret`.
    pub fn new(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Whether `presented` is the key, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // No early exit: every byte is looked at, whatever the first difference.
        let diff = self
            .0
            .iter()
            .zip(presented.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

/// The bearer token of `Authorization`, if it has one.
fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// The middleware: lets a request through when no key is configured or it carries it.
pub async fn require_key(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let Some(key) = &app.api_key else {
        return next.run(request).await;
    };
    if bearer(&request).is_some_and(|token| key.matches(token)) {
        return next.run(request).await;
    }
    let mut response =
        ApiError::unauthorized("send the gateway's API key as Authorization: Bearer <key>")
            .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_key_matches() {
        let key = ApiKey::new("sk_test_123");
        assert!(key.matches("sk_test_123"));
        assert!(!key.matches("sk_test_124"));
        assert!(!key.matches("sk_test_12"));
        assert!(!key.matches(""));
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
    }
}
