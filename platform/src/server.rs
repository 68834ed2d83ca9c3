//! Serving HTTP with bounds on everything a client controls: how long it takes to send
//! its request head and its body, how long its request may run, how many requests run
//! at once, how long an idle connection stays open.
//!
//! - **Header read** (`HTTP_HEADER_TIMEOUT_MS`, 10 s): a connection that has not sent a
//!   whole request head within it is closed. hyper starts that clock whenever a
//!   connection waits for a request, so it is also how long an **idle keep-alive**
//!   connection stays open. (axum's own `serve` runs hyper without a timer: a client
//!   sending half a request line kept its connection forever.)
//! - **Body read** (`HTTP_BODY_TIMEOUT_MS`, 10 s): a body that takes longer to arrive is
//!   answered 408 `body_timeout`.
//! - **Whole request** (`HTTP_REQUEST_TIMEOUT_MS`, 30 s): a request still running then
//!   is answered 503 `request_timeout`. A read-your-writes wait
//!   (`X-Consistency-Token`) has this plus the wait it asked for (at most 30 s, its own
//!   bound), and a service may name routes that stream or walk the whole store (the
//!   audit's export and verify) and are bounded otherwise.
//! - **In flight** (`HTTP_MAX_IN_FLIGHT`, 512): one more request is answered at once,
//!   503 `overloaded` with `Retry-After`, rather than queued.
//!
//! Health and metrics routes are merged after the limits, so probes answer whatever the
//! load.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::empty_is_unset;
use crate::http::{ApiError, ErrorCode};

/// The bounds of a service's HTTP server.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// `HTTP_HEADER_TIMEOUT_MS` (default 10 000): the request head must arrive within
    /// it; also how long an idle keep-alive connection stays open.
    pub header_read: Duration,
    /// `HTTP_BODY_TIMEOUT_MS` (default 10 000): the body must arrive within it.
    pub body_read: Duration,
    /// `HTTP_REQUEST_TIMEOUT_MS` (default 30 000): the longest a request may run.
    pub request: Duration,
    /// `HTTP_MAX_IN_FLIGHT` (default 512): requests run at once; more are refused.
    pub max_in_flight: usize,
    /// After SIGTERM, how long requests in flight may still take (default 30 s).
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(10),
            request: Duration::from_secs(30),
            max_in_flight: 512,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// The HTTP server's bounds as settings (`HTTP_*`), shared by every service.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "HTTP server")]
pub struct HttpSettings {
    /// The request head must arrive within this many milliseconds; it is also how long
    /// an idle keep-alive connection stays open.
    #[arg(long, env = "HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = empty_is_unset::<u64>())]
    pub http_header_timeout_ms: u64,
    /// The request body must arrive within this many milliseconds (else 408).
    #[arg(long, env = "HTTP_BODY_TIMEOUT_MS", default_value_t = 10_000, value_parser = empty_is_unset::<u64>())]
    pub http_body_timeout_ms: u64,
    /// The whole request must be answered within this many milliseconds (else 503
    /// request_timeout). A read-your-writes wait adds its own bound; the audit's export
    /// and verify have none.
    #[arg(long, env = "HTTP_REQUEST_TIMEOUT_MS", default_value_t = 30_000, value_parser = empty_is_unset::<u64>())]
    pub http_request_timeout_ms: u64,
    /// Requests run at once, at most (at least 1); one more is answered 503 overloaded,
    /// with Retry-After.
    #[arg(long, env = "HTTP_MAX_IN_FLIGHT", default_value_t = 512, value_parser = empty_is_unset::<usize>())]
    pub http_max_in_flight: usize,
}

impl TryFrom<&HttpSettings> for ServerLimits {
    type Error = anyhow::Error;

    fn try_from(settings: &HttpSettings) -> anyhow::Result<Self> {
        anyhow::ensure!(
            settings.http_max_in_flight > 0,
            "HTTP_MAX_IN_FLIGHT must be at least 1"
        );
        Ok(Self {
            header_read: Duration::from_millis(settings.http_header_timeout_ms),
            body_read: Duration::from_millis(settings.http_body_timeout_ms),
            request: Duration::from_millis(settings.http_request_timeout_ms),
            max_in_flight: settings.http_max_in_flight,
            ..Self::default()
        })
    }
}

/// The longest read-your-writes wait a request may ask for (query-api's bound).
const MAX_CONSISTENCY_WAIT: Duration = Duration::from_secs(30);

/// Puts the limits on `api` (the routes clients call; merge health and metrics after).
/// `unbounded` names path prefixes whose requests have no whole-request timeout (they
/// stream or walk the whole store, and bound themselves otherwise).
pub fn limit<S: Clone + Send + Sync + 'static>(
    api: Router<S>,
    limits: &ServerLimits,
    unbounded: &'static [&'static str],
) -> Router<S> {
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    let request = limits.request;
    api.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let in_flight = in_flight.clone();
            async move {
                let Ok(_permit) = in_flight.try_acquire_owned() else {
                    return overloaded();
                };
                let path = req.uri().path();
                if unbounded.iter().any(|prefix| path.starts_with(prefix)) {
                    return next.run(req).await;
                }
                let budget = request + asked_wait(&req);
                match tokio::time::timeout(budget, next.run(req)).await {
                    Ok(response) => response,
                    Err(_) => ApiError::unavailable(
                        ErrorCode::RequestTimeout,
                        format!("the request took longer than {} ms", budget.as_millis()),
                        1,
                    )
                    .into_response(),
                }
            }
        },
    ))
    .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_read,
    ))
}

/// The read-your-writes wait a request asks for, on top of its own time.
fn asked_wait(req: &Request) -> Duration {
    if !req.headers().contains_key("x-consistency-token") {
        return Duration::ZERO;
    }
    req.headers()
        .get("x-consistency-timeout-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(Duration::from_secs(5), Duration::from_millis)
        .min(MAX_CONSISTENCY_WAIT)
}

/// 503 `overloaded`: too many requests at once.
pub fn overloaded() -> Response {
    let mut response = ApiError::unavailable(
        ErrorCode::Overloaded,
        "too many requests at once; try again shortly",
        1,
    )
    .into_response();
    // Nothing of the request was read: the client may send it again on this
    // connection.
    response
        .headers_mut()
        .insert("connection", HeaderValue::from_static("keep-alive"));
    response
}

/// Serves `router` on `listener` with the limits' header timeout, until `shutdown`;
/// then stops accepting and gives the requests in flight `shutdown_grace` to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &ServerLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // HTTP/1.1 only, and no upgrades: telling HTTP/2 apart means waiting for the first
    // 24 bytes with no timeout (and `serve_connection_with_upgrades` always does), so a
    // client that sends fewer, or nothing, would hold its connection forever. The
    // services sit behind a gateway or a load balancer that speaks 1.1.
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, or a connection reset before it was
                    // taken: the listener itself is fine. Pause a little, go on.
                    tracing::warn!(cause = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                // A client that went away, a head that never came (the header timeout):
                // the client's business, not ours.
                tracing::debug!(cause = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace = ?limits.shutdown_grace,
            "requests still in flight after the shutdown grace; leaving them"
        );
    }
    Ok(())
}

/// Whether `err` (from reading a request body) is the body read timeout.
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// The status of a body that did not arrive in time.
pub const BODY_TIMEOUT: StatusCode = StatusCode::REQUEST_TIMEOUT;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_args;

    #[test]
    fn the_settings_default_to_the_default_limits() {
        let settings: HttpSettings = from_args(&[]).unwrap();
        let limits = ServerLimits::try_from(&settings).unwrap();
        assert_eq!(
            format!("{limits:?}"),
            format!("{:?}", ServerLimits::default())
        );
    }

    #[test]
    fn no_request_at_a_time_is_refused() {
        let settings: HttpSettings = from_args(&["--http-max-in-flight", "0"]).unwrap();
        assert_eq!(
            ServerLimits::try_from(&settings).unwrap_err().to_string(),
            "HTTP_MAX_IN_FLIGHT must be at least 1"
        );
    }
}
