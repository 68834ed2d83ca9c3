//! Fault injection for tests and drills: a latency and a mode, set at run time with
//! `PUT /admin/faults` (`{"mode", "latency_ms", "scope"?}`), applied to every `/v1`
//! request, or with `"scope": "intents"` to the payment intents only, so that payment
//! methods are still made (not to `/admin`, `/health` or `/metrics`).
//!
//! A request first waits for a place when the gateway has a capacity
//! (`PAYMENT_CAPACITY`, every `/v1` request whatever the scope) and holds it to its
//! end, latency included, so that requests beyond the capacity queue as at a saturated
//! provider. Then it sleeps the latency in force when it got its place, reads the mode
//! again (so a switch made during the sleep applies) and:
//! - `normal`: is handled;
//! - `unavailable`: is answered 503 `service_unavailable` with `Retry-After: 1`, nothing
//!   done;
//! - `hang`: is never answered, nothing done;
//! - `lose_answer`: is handled (whatever it does is committed), and its answer thrown
//!   away: never answered.
//!
//! A request never answered waits for shutdown, and then its connection is closed
//! without a response ([`no_answer`]), so graceful shutdown completes and the client
//! sees a dropped connection, as when a real network loses an answer. A shutdown during
//! the latency sleep cuts the sleep short.

use std::sync::Mutex;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use platform::http::{ApiError, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::app::AppState;

/// The largest latency accepted (10 minutes).
pub const MAX_LATENCY_MS: u64 = 600_000;

/// What happens to a `/v1` request after its latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Handled.
    Normal,
    /// 503, nothing done.
    Unavailable,
    /// Never answered, nothing done.
    Hang,
    /// Done, never answered.
    LoseAnswer,
}

/// Which `/v1` requests the faults apply to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every `/v1` request.
    #[default]
    All,
    /// Payment intents only (`/v1/payment_intents...`): payment methods are still
    /// made, as when only the card networks behind a provider are down.
    Intents,
}

/// The faults in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Faults {
    /// What happens to requests.
    pub mode: Mode,
    /// How long each request waits first, in milliseconds.
    pub latency_ms: u64,
    /// Which requests they apply to.
    pub scope: Scope,
}

/// The faults in force, shared by every request.
#[derive(Debug)]
pub struct FaultSwitch(Mutex<Faults>);

impl FaultSwitch {
    /// Normal mode with `latency`.
    pub fn new(latency: Duration) -> Self {
        let latency_ms = u64::try_from(latency.as_millis())
            .unwrap_or(u64::MAX)
            .min(MAX_LATENCY_MS);
        Self(Mutex::new(Faults {
            mode: Mode::Normal,
            latency_ms,
            scope: Scope::All,
        }))
    }

    /// The faults now.
    pub fn get(&self) -> Faults {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces them.
    pub fn set(&self, faults: Faults) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = faults;
    }
}

/// Marks a response that must never reach the client (see [`no_answer`]).
#[derive(Debug, Clone, Copy)]
pub struct Unanswered;

/// A "response" that closes the connection without answering: its body fails before
/// yielding anything, so hyper drops the connection before the head is written. It
/// carries [`Unanswered`] so the metrics count it as no answer.
pub fn no_answer() -> Response {
    let body = Body::from_stream(futures::stream::once(async {
        Err::<Bytes, _>(std::io::Error::other("the answer is withheld"))
    }));
    let mut response = Response::new(body);
    response.extensions_mut().insert(Unanswered);
    response
}

/// The fault-injection middleware of the `/v1` routes.
pub async fn inject(State(app): State<AppState>, request: Request, next: Next) -> Response {
    // The place is held to the end of the request (a hanging one keeps it).
    let _place = match &app.capacity {
        Some(capacity) => capacity.acquire().await.ok(),
        None => None,
    };
    let faults = app.faults.get();
    if faults.scope == Scope::Intents && !request.uri().path().starts_with("/v1/payment_intents") {
        return next.run(request).await;
    }
    let latency = Duration::from_millis(faults.latency_ms);
    if !latency.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(latency) => {}
            () = app.shutdown.cancelled() => {}
        }
    }
    match app.faults.get().mode {
        Mode::Normal => next.run(request).await,
        Mode::Unavailable => ApiError::unavailable(
            ErrorCode::ServiceUnavailable,
            "the payment gateway is unavailable (simulated); retry later",
            1,
        )
        .into_response(),
        Mode::Hang => {
            app.shutdown.cancelled().await;
            no_answer()
        }
        Mode::LoseAnswer => {
            drop(next.run(request).await);
            app.shutdown.cancelled().await;
            no_answer()
        }
    }
}
