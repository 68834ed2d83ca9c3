//! Every error code the boxoffice services answer with, as one closed enum: the code
//! of the JSON error envelope (`{"error": {"code", "message", "details"?}}`). A client
//! matches on these strings; the OpenAPI documents list them all (the `code` schema of
//! `ErrorBody` is generated from [`ErrorCode::all`]), and a handler cannot answer a code
//! that is not here.

use domain::RefusalCode;

/// Declares [`ErrorCode`]'s own variants with their wire spelling once.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $text:literal,)+) => {
        /// The code of an error answer.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)+
            /// A refusal of the domain (a command the current state or its own content
            /// rules out), with the domain's code, e.g. `sold_out`.
            Refused(RefusalCode),
        }

        impl ErrorCode {
            const OWN: &'static [ErrorCode] = &[$(Self::$variant,)+];

            /// The code as it is written on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Refused(code) => code.as_str(),
                }
            }
        }
    };
}

error_codes! {
    // Any service.
    /// 401: no token, or one that is not valid (signature, expiry, issuer, audience).
    Unauthorized => "unauthorized",
    /// 403: the token is valid but its role may not do this.
    Forbidden => "forbidden",
    /// 404: no such route, or no such resource (or not the caller's to see).
    NotFound => "not_found",
    /// 405: the route does not take that method.
    MethodNotAllowed => "method_not_allowed",
    /// 400: the body is not JSON.
    MalformedJson => "malformed_json",
    /// 400: the body could not be read.
    UnreadableBody => "unreadable_body",
    /// 415: the body is not `application/json`.
    UnsupportedMediaType => "unsupported_media_type",
    /// 413: the body is too large.
    PayloadTooLarge => "payload_too_large",
    /// 408: the body did not arrive in time.
    BodyTimeout => "body_timeout",
    /// 422: the request does not fit its schema; `details` names each field.
    ValidationFailed => "validation_failed",
    /// 400: the `Idempotency-Key` header is not a valid key.
    InvalidIdempotencyKey => "invalid_idempotency_key",
    /// 422 (409 at the payment gateway): the `Idempotency-Key` was used for another
    /// request.
    IdempotencyKeyReused => "idempotency_key_reused",
    /// 503: the request took longer than the server allows.
    RequestTimeout => "request_timeout",
    /// 503: too many requests at once; `Retry-After`.
    Overloaded => "overloaded",
    /// 503: the database is unavailable for a moment; `Retry-After`.
    Unavailable => "unavailable",
    /// 500: a failure of ours, logged; nothing of it in the answer.
    InternalError => "internal_error",
    // command-api.
    /// 409: the aggregate changed concurrently too often.
    ConcurrencyConflict => "concurrency_conflict",
    /// 429: too many commands from this customer; `Retry-After`.
    RateLimited => "rate_limited",
    /// 503: the payment gateway cannot be reached; `Retry-After`.
    PaymentUnavailable => "payment_unavailable",
    // query-api.
    /// 400: `X-Consistency-Token` is not a token of one of the caller's commands.
    InvalidConsistencyToken => "invalid_consistency_token",
    /// 400: `X-Consistency-Timeout-Ms` is not a number of milliseconds.
    InvalidConsistencyTimeout => "invalid_consistency_timeout",
    /// 503: the read models do not include the awaited write yet; `Retry-After`.
    NotCaughtUp => "not_caught_up",
    // payment-gateway (a provider of its own, with Stripe's spelling).
    /// 400: creating a payment intent needs an `Idempotency-Key`.
    IdempotencyKeyRequired => "idempotency_key_required",
    /// 404: no such payment intent or payment method.
    ResourceMissing => "resource_missing",
    /// 409: the payment intent is not in a state that allows the move.
    PaymentIntentUnexpectedState => "payment_intent_unexpected_state",
    /// 503: the gateway is switched to fail (a fault for tests and drills).
    ServiceUnavailable => "service_unavailable",
}

impl ErrorCode {
    /// Every code, each wire string once (a refusal's `not_found` is the same code as
    /// the services' own).
    pub fn all() -> Vec<ErrorCode> {
        let mut all = Self::OWN.to_vec();
        for &refusal in RefusalCode::ALL {
            if !Self::OWN.iter().any(|own| own.as_str() == refusal.as_str()) {
                all.push(Self::Refused(refusal));
            }
        }
        all
    }
}

impl From<RefusalCode> for ErrorCode {
    fn from(code: RefusalCode) -> Self {
        Self::Refused(code)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A code that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code {0:?}")]
pub struct UnknownErrorCode(pub String);

impl std::str::FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::all()
            .into_iter()
            .find(|code| code.as_str() == text)
            .ok_or_else(|| UnknownErrorCode(text.to_owned()))
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "A stable code to match on; the message is for people and may change.",
            ))
            .enum_values(Some(Self::all().into_iter().map(Self::as_str)))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_in_snake_case() {
        let all = ErrorCode::all();
        let mut seen = std::collections::HashSet::new();
        for code in &all {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} is listed twice");
            assert!(text.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert_eq!(serde_json::to_value(code).unwrap(), text);
            assert_eq!(text.parse::<ErrorCode>().unwrap().as_str(), text);
        }
        assert!("no_such_code".parse::<ErrorCode>().is_err());
        // Every refusal of the domain can be told apart by its wire string.
        for &refusal in RefusalCode::ALL {
            assert!(seen.contains(refusal.as_str()), "{refusal} is missing");
        }
    }
}
