//! Read your writes: a GET carrying `X-Consistency-Token` (from a command's answer)
//! waits until the read models include that write, up to `X-Consistency-Timeout-Ms`
//! (default 5000, at most 30000), then answers 503 `not_caught_up` with `Retry-After`.
//!
//! The token `<aggregate_type>:<id>:<sequence>` names a stream and how far it went; the
//! projection of that aggregate type includes the write once its row for the id has
//! reached the sequence. Waiting is done by the shared [`crate::watcher`]: a waiting
//! request holds no database connection.

use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use domain::consistency::ConsistencyToken;
use platform::auth::User;
use platform::http::{ApiError, ErrorCode};
use uuid::Uuid;

use crate::app::AppState;
use crate::metrics::Wait;

/// The default wait.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5000);
/// The longest wait a client may ask for.
const MAX_TIMEOUT: Duration = Duration::from_millis(30_000);

/// A parsed consistency token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The projection table that includes the write.
    pub table: &'static str,
    /// The aggregate.
    pub id: Uuid,
    /// Its sequence after the write.
    pub sequence: i64,
}

impl Token {
    /// Reads a token as command-api writes it (`domain::consistency`), and names the
    /// projection table that shows the write.
    pub fn parse(raw: &str) -> Option<Self> {
        let token: ConsistencyToken = raw.parse().ok()?;
        Some(Self {
            table: read_model::Projection::consuming(token.aggregate_type)?.table(),
            id: Uuid::parse_str(&token.aggregate_id).ok()?,
            sequence: token.sequence,
        })
    }
}

/// Put this extractor in a handler (after authentication) and the handler runs only
/// once the caller's write is visible.
#[derive(Debug)]
pub struct Consistent;

impl FromRequestParts<AppState> for Consistent {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = User::from_request_parts(parts, state).await?;
        let request = Requested::from_request_parts(parts, state).await?;
        request.wait(state, &user).await.map(|()| Self)
    }
}

/// The consistency a request asks for, not waited for yet: for a handler that must
/// check something first (that the caller may see what it asks for).
#[derive(Debug)]
pub struct Requested(Option<(Token, Duration)>);

impl FromRequestParts<AppState> for Requested {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(raw) = parts.headers.get("x-consistency-token") else {
            return Ok(Self(None));
        };
        let token = raw
            .to_str()
            .ok()
            .and_then(Token::parse)
            .ok_or_else(invalid)?;
        let timeout = match parts.headers.get("x-consistency-timeout-ms") {
            None => DEFAULT_TIMEOUT,
            Some(value) => value
                .to_str()
                .ok()
                .filter(|v| !v.is_empty() && v.len() <= 9 && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .map(|ms| Duration::from_millis(ms).min(MAX_TIMEOUT))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        ErrorCode::InvalidConsistencyTimeout,
                        "X-Consistency-Timeout-Ms must be a number of milliseconds",
                    )
                })?,
        };
        Ok(Self(Some((token, timeout))))
    }
}

impl Requested {
    /// Whether the request carries a token.
    pub fn is_asked(&self) -> bool {
        self.0.is_some()
    }

    /// Waits until the write is visible, when a token was sent. A token must name
    /// something `user` may see: locations and events are public; a booking, only its
    /// owner's; a user's stream (its erasures), only that user's own. A token naming
    /// something else (or nothing at all) is refused alike, before any wait, so that
    /// neither the answer nor its delay tells whether another user's booking exists or
    /// moved on, or whether someone's data was erased. Admins may wait on anything.
    pub async fn wait(self, state: &AppState, user: &User) -> Result<(), ApiError> {
        let Some((token, timeout)) = self.0 else {
            return Ok(());
        };
        if !user.is_admin() {
            let allowed = match token.table {
                BOOKINGS => {
                    booking_owner(state, token.id).await?.as_deref() == Some(user.id.as_str())
                }
                USERS => token.id == domain::user::stream_id(&user.id),
                _ => true,
            };
            if !allowed {
                return Err(invalid());
            }
        }
        wait(state, &token, timeout).await
    }
}

/// The read model of bookings, whose rows are personal.
const BOOKINGS: &str = <read_model::views::BookingRow as read_model::views::View>::TABLE;
/// The read model of users (their erasures), personal too.
const USERS: &str = <read_model::views::UserRow as read_model::views::View>::TABLE;

fn invalid() -> ApiError {
    ApiError::bad_request(
        ErrorCode::InvalidConsistencyToken,
        "X-Consistency-Token must be a token from the answer to one of your commands",
    )
}

/// Who booked `id`, from the event store (the truth: a booking the caller was just
/// answered for is there, even when the read model does not have it yet).
pub async fn booking_owner(state: &AppState, id: Uuid) -> Result<Option<String>, ApiError> {
    sqlx::query_scalar!(
        "SELECT payload -> 'BookingRequested' ->> 'user_id' FROM events
          WHERE aggregate_type = 'booking' AND aggregate_id = $1 AND sequence = 1",
        id.to_string()
    )
    .fetch_optional(state.store.pool())
    .await
    .map(Option::flatten)
    .map_err(ApiError::unexpected)
}

async fn wait(state: &AppState, token: &Token, timeout: Duration) -> Result<(), ApiError> {
    let started = Instant::now();
    if state
        .watcher
        .wait(token.table, token.id, token.sequence, timeout)
        .await
    {
        state
            .metrics
            .observe_wait(Wait::CaughtUp, started.elapsed());
        return Ok(());
    }
    state
        .metrics
        .observe_wait(Wait::TimedOut, started.elapsed());
    Err(ApiError::unavailable(
        ErrorCode::NotCaughtUp,
        "the read models do not include that write yet; try again",
        1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_a_projection_a_row_and_a_sequence() {
        let id = Uuid::now_v7();
        let token = Token::parse(&format!("booking:{id}:3")).unwrap();
        assert_eq!(
            (token.table, token.id, token.sequence),
            ("booking_view", id, 3)
        );
        assert!(Token::parse(&format!("event:{id}:1")).is_some());
        assert!(Token::parse(&format!("invoice:{id}:1")).is_none());
        assert!(Token::parse(&format!("booking:{id}:0")).is_none());
        assert!(Token::parse(&format!("booking:{id}:x")).is_none());
        assert!(Token::parse(&format!("booking:{id}:1:2")).is_none());
        assert!(Token::parse("booking:not-a-uuid:1").is_none());
    }
}
