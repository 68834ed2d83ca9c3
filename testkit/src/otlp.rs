//! An OTLP/HTTP receiver in the test process: the services under test export their
//! spans to it (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`)
//! and the test reads what arrived. It speaks the JSON encoding of OTLP
//! (`POST /v1/traces`, an `ExportTraceServiceRequest`), and keeps, for each span, the
//! service that sent it, its name, kind and ids.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

use crate::service::{serve, Running};

/// A span as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// `service.name` of the resource that sent it.
    pub service: String,
    /// The span's name.
    pub name: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, or empty for a root span.
    pub parent_span_id: String,
}

/// The receiver, listening on a port of its own.
pub struct OtlpReceiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    running: Running,
}

impl OtlpReceiver {
    /// Starts it.
    pub async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(spans.clone());
        let running = serve(move |listener, shutdown| async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await?;
            Ok(())
        })
        .await;
        Self { spans, running }
    }

    /// What to set `OTEL_EXPORTER_OTLP_ENDPOINT` to.
    pub fn endpoint(&self) -> String {
        self.running.url("")
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("poisoned").clone()
    }

    /// Stops it.
    pub async fn stop(self) {
        self.running.stop().await;
    }
}

async fn receive(
    State(spans): State<Arc<Mutex<Vec<ReceivedSpan>>>>,
    Json(request): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut received = Vec::new();
    for resource in request["resourceSpans"].as_array().into_iter().flatten() {
        let service = resource["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .and_then(|a| a["value"]["stringValue"].as_str())
            .unwrap_or("")
            .to_owned();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                // Ids in lower-case hex, whatever case the sender wrote them in.
                let id = |key: &str| span[key].as_str().unwrap_or("").to_ascii_lowercase();
                received.push(ReceivedSpan {
                    service: service.clone(),
                    name: span["name"].as_str().unwrap_or("").to_owned(),
                    trace_id: id("traceId"),
                    span_id: id("spanId"),
                    parent_span_id: id("parentSpanId"),
                });
            }
        }
    }
    spans.lock().expect("poisoned").extend(received);
    (StatusCode::OK, Json(serde_json::json!({})))
}
