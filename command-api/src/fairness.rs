//! Fairness between customers: a command rate limit per customer, and the cap on the
//! seats one customer holds of an event at once. Admins are limited by neither.
//!
//! The rate limit is governor's GCRA, keyed by the token's subject: a sustained rate
//! with a burst. A refused command is answered 429 `rate_limited` with `Retry-After`
//! and changes nothing. Limits per client address belong at the edge (behind a proxy
//! every request comes from the proxy's address).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use platform::auth::User;
use platform::http::{ApiError, ErrorCode};
use uuid::Uuid;

use crate::app::AppState;
use crate::config::FairnessConfig;

/// The per-customer command limiter; `None` when turned off.
pub struct CommandLimiter(Option<DefaultKeyedRateLimiter<String>>);

impl CommandLimiter {
    /// The limiter of `config` (off when its rate is 0).
    pub fn new(config: &FairnessConfig) -> Arc<Self> {
        let limiter = NonZeroU32::new(config.commands_per_user_per_sec).map(|rate| {
            let burst = NonZeroU32::new(config.commands_burst.max(rate.get())).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Arc::new(Self(limiter))
    }

    /// `Ok` when `user` may send a command now, else how long until they may.
    fn check(&self, user: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.0 else {
            return Ok(());
        };
        limiter
            .check_key(&user.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets customers who have been quiet long enough to be back at a full burst,
    /// so that the table does not grow with every customer ever seen.
    pub fn forget_quiet(&self) {
        if let Some(limiter) = &self.0 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Whether it limits anything.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }
}

/// Middleware on the command routes: a customer over their rate gets 429. Requests
/// without a valid token go on, to be answered 401 by their handler.
pub async fn limit_commands(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if !app.limiter.is_on() {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    if let Ok(user) = User::from_request_parts(&mut parts, &app).await {
        if !user.is_admin() {
            if let Err(wait) = app.limiter.check(&user.id) {
                app.metrics.rate_limited.inc();
                return rate_limited(wait);
            }
        }
    }
    next.run(Request::from_parts(parts, body)).await
}

fn rate_limited(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::RateLimited,
        "too many commands from this customer; try again after Retry-After seconds",
    )
    .retry_after(seconds.max(1))
    .into_response()
}

/// The seats `user_id` holds of `event_id` now: those of their bookings whose saga has
/// not passed its payment (one index lookup, `booking_sagas_holds`).
pub async fn held_seats(app: &AppState, event_id: Uuid, user_id: &str) -> Result<u32, ApiError> {
    let held: i64 = sqlx::query_scalar!(
        r#"SELECT coalesce(sum(seats), 0) AS "held!" FROM booking_sagas
          WHERE event_id = $1 AND user_id = $2 AND step IN ('reserve', 'authorize', 'confirm')"#,
        event_id.to_string(),
        user_id
    )
    .fetch_one(&app.pool)
    .await?;
    Ok(u32::try_from(held).unwrap_or(u32::MAX))
}
