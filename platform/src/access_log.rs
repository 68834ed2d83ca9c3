//! One access-log line per request, at `info`, as JSON with the service's other logs
//! (`LOG_FORMAT=json`): method, route, status, latency, the authenticated user, the
//! correlation, request and trace ids. Probes (`/health/...`) and `/metrics` are not
//! logged: they would drown the rest.
//!
//! The layer also makes sure every request has the ids the rest of the service and
//! the events it appends carry, and that the client sees them:
//! - `X-Correlation-Id`: the client's (1 to 100 characters), or a new one; set on the
//!   request before the handler reads it, and on the answer.
//! - `traceparent`: the request runs in a span of its own (`METHOD /route`, kind
//!   server), a child of the client's W3C trace context when it sent one. The handler
//!   sees a `traceparent` naming that span (with traces off: the client's trace with a
//!   new parent id, or a new trace), so the events it appends, and everything that
//!   follows them, stay in the trace. The answer carries the trace id as `X-Trace-Id`.
//! - `X-Request-Id`: the front door's (or the client's), logged and echoed; absent when
//!   nobody sent one.
//!
//! It counts the answers too ([`HttpMetrics`]): `boxoffice_http_responses_total` by
//! method, route template, status and error code (the envelope's `code`, from the
//! [`crate::http::ApiError`] that made the answer; empty for a success).
//!
//! ```json
//! {"timestamp":"…","level":"INFO","message":"request","method":"POST",
//!  "route":"/v1/events/{id}/bookings","status":202,"latency_ms":4.1,"user":"alice",
//!  "correlation_id":"…","request_id":"…","trace_id":"4bf92f35…","target":"access"}
//! ```

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use domain::metadata::TraceParent;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tracing::Instrument;
use uuid::Uuid;

use crate::telemetry::{continue_trace, traceparent_of};

/// Where the authentication extractor leaves the caller's id for the log line
/// (set once, by [`crate::auth::User`], when a token was verified).
#[derive(Clone, Default)]
pub struct AccessUser(Arc<OnceLock<String>>);

impl AccessUser {
    /// Records the verified caller of this request.
    pub fn set(&self, user: &str) {
        let _ = self.0.set(user.to_owned());
    }
}

/// The answers a service gave, counted by the layer.
#[derive(Clone, Debug, Default)]
pub struct HttpMetrics {
    responses: Family<ResponseLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    method: String,
    route: String,
    status: String,
    code: String,
}

impl HttpMetrics {
    /// Fresh counters, registered in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "boxoffice_http_responses",
            "Answers by method, route template, status and error code (empty: a success)",
            metrics.responses.clone(),
        );
        metrics
    }
}

/// Paths not logged.
fn quiet(path: &str) -> bool {
    path.starts_with("/health/") || path == "/metrics"
}

/// The middleware:
/// `router.layer(axum::middleware::from_fn_with_state(http_metrics, platform::access_log::layer))`,
/// outermost, so that refusals of the other layers (overload, timeouts) are logged and
/// counted too.
pub async fn layer(
    State(metrics): State<HttpMetrics>,
    mut request: Request,
    next: Next,
) -> Response {
    if quiet(request.uri().path()) {
        return next.run(request).await;
    }
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    let headers = request.headers_mut();
    let correlation_id = ensure_correlation_id(headers);
    let trace_id = pass_trace_on(headers, &span);
    let request_id = header(headers, "x-request-id").map(str::to_owned);
    let user = AccessUser::default();
    request.extensions_mut().insert(user.clone());

    let mut response = next.run(request).instrument(span.clone()).await;

    let status = response.status();
    let code = response
        .extensions()
        .get::<crate::error_code::ErrorCode>()
        .map_or("", |code| code.as_str());
    metrics
        .responses
        .get_or_create(&ResponseLabels {
            method: method.to_string(),
            route: route.clone(),
            status: status.as_u16().to_string(),
            code: code.to_owned(),
        })
        .inc();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    let answer = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        answer.insert("x-correlation-id", value);
    }
    if let Ok(value) = HeaderValue::from_str(&trace_id) {
        answer.insert("x-trace-id", value);
    }
    if let Some(value) = request_id
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        answer.insert("x-request-id", value);
    }
    tracing::info!(
        target: "access",
        method = %method,
        route,
        status = status.as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        user = user.0.get().map_or("", String::as_str),
        correlation_id,
        request_id = request_id.as_deref().unwrap_or(""),
        trace_id,
        "request"
    );
    response
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The client's `X-Correlation-Id`, when it is usable (1 to 100 characters of text).
pub fn correlation_id(headers: &HeaderMap) -> Option<&str> {
    header(headers, "x-correlation-id").filter(|v| (1..=100).contains(&v.len()))
}

/// The request's correlation id, made and set when it has none (or an unusable one).
fn ensure_correlation_id(headers: &mut HeaderMap) -> String {
    if let Some(given) = correlation_id(headers) {
        return given.to_owned();
    }
    let made = Uuid::new_v4().to_string();
    headers.insert(
        "x-correlation-id",
        HeaderValue::from_str(&made).expect("a uuid is a header value"),
    );
    made
}

/// Continues the client's trace in `span` and sets the request's `traceparent` to what
/// the handler should continue: `span` itself when traces are on; else the client's
/// trace with a new parent id, or a new trace. Returns the trace id.
fn pass_trace_on(headers: &mut HeaderMap, span: &tracing::Span) -> String {
    let given = header(headers, "traceparent").and_then(|v| v.parse::<TraceParent>().ok());
    if let Some(given) = &given {
        continue_trace(span, given);
    }
    let passed = traceparent_of(span)
        .or_else(|| given.map(TraceParent::child))
        .unwrap_or_else(TraceParent::new_root);
    headers.insert(
        "traceparent",
        HeaderValue::from_str(&passed.to_string()).expect("a traceparent is a header value"),
    );
    passed.trace_id()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route(
                "/v1/things/{id}",
                get(|headers: HeaderMap| async move {
                    // What the handler sees: the ids the layer made sure of.
                    format!(
                        "{}|{}",
                        header(&headers, "x-correlation-id").unwrap_or("none"),
                        header(&headers, "traceparent").unwrap_or("none")
                    )
                }),
            )
            .route("/health/live", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                HttpMetrics::default(),
                layer,
            ))
    }

    /// The layer's tests take turns: `tracing` caches per call site whether anyone
    /// listens, and a test running the layer on another thread while the capturing test
    /// installs its subscriber could leave that cache saying no (`cargo test` runs tests
    /// on threads of one process; nextest would not need this).
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    async fn call(request: Request) -> (Response, String) {
        let response = app().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 16).await.unwrap();
        (
            Response::from_parts(parts, Body::empty()),
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_request_without_ids_gets_them_and_the_answer_names_them() {
        let _turn = ONE_AT_A_TIME.lock().await;
        let (response, seen) =
            call(Request::get("/v1/things/7").body(Body::empty()).unwrap()).await;
        let (correlation, traceparent) = seen.split_once('|').unwrap();
        assert!(Uuid::parse_str(correlation).is_ok(), "{seen}");
        let trace: TraceParent = traceparent.parse().expect("a made traceparent");
        assert_eq!(response.headers()["x-correlation-id"], correlation);
        assert_eq!(response.headers()["x-trace-id"], trace.trace_id().as_str());
        assert!(response.headers().get("x-request-id").is_none());
    }

    #[tokio::test]
    async fn the_clients_ids_are_kept() {
        let _turn = ONE_AT_A_TIME.lock().await;
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (response, seen) = call(
            Request::get("/v1/things/7")
                .header("x-correlation-id", "order-77")
                .header("traceparent", given)
                .header("x-request-id", "req-1")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        // The same trace, with a new parent id (ours).
        let (correlation, traceparent) = seen.split_once('|').unwrap();
        assert_eq!(correlation, "order-77");
        let passed: TraceParent = traceparent.parse().unwrap();
        assert_eq!(passed.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(traceparent, given);
        assert_eq!(response.headers()["x-correlation-id"], "order-77");
        assert_eq!(
            response.headers()["x-trace-id"],
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(response.headers()["x-request-id"], "req-1");
    }

    /// A writer the test reads back: what the JSON formatter wrote.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn one_json_line_per_request_and_none_for_probes() {
        let _turn = ONE_AT_A_TIME.lock().await;
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        call(
            Request::get("/v1/things/7")
                .header("x-correlation-id", "order-77")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        call(Request::get("/health/live").body(Body::empty()).unwrap()).await;
        call(Request::get("/nowhere").body(Body::empty()).unwrap()).await;

        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first = &lines[0]["fields"];
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["target"], "access");
        assert_eq!(first["method"], "GET");
        assert_eq!(first["route"], "/v1/things/{id}");
        assert_eq!(first["status"], 200);
        assert_eq!(first["correlation_id"], "order-77");
        assert_eq!(first["trace_id"].as_str().map(str::len), Some(32));
        assert!(first["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
        assert_eq!(lines[1]["fields"]["route"], "unmatched");
        assert_eq!(lines[1]["fields"]["status"], 404);
    }

    #[tokio::test]
    async fn probes_pass_untouched() {
        let _turn = ONE_AT_A_TIME.lock().await;
        let (response, _) = call(Request::get("/health/live").body(Body::empty()).unwrap()).await;
        assert!(response.headers().get("x-trace-id").is_none());
    }
}
