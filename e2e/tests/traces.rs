//! One booking is one trace across processes. The real binaries (command-api with its
//! relay and sagas, the payment gateway, the projector) run as child processes and
//! export their spans over OTLP/HTTP to a receiver in this test; the client starts the
//! trace with its own `traceparent`. Every span of the booking, in every process, must
//! carry that trace id, and the parent links must cross the process boundaries: the
//! projector's apply is a child of command-api's request span (through the event's
//! metadata and the Kafka headers), the gateway's request a child of command-api's call.

use std::path::Path;
use std::time::Duration;

use e2e::migrate_as_owner;
use reqwest::StatusCode;
use serde_json::json;
use testkit::api::{customer, post, schedule_event};
use testkit::otlp::{OtlpReceiver, ReceivedSpan};
use testkit::service::{binary, ServiceProcess};
use testkit::{eventually, TestDb, JWT_SECRET};
use uuid::Uuid;

/// The client's trace: its id, and the id of the client's own (unexported) span.
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The spans of `service` in the trace named `name`.
fn named<'a>(spans: &'a [ReceivedSpan], service: &str, name: &str) -> Option<&'a ReceivedSpan> {
    spans
        .iter()
        .find(|s| s.service == service && s.name == name)
}

/// The spans as an indented tree, children under their parent, as `service / name`.
fn tree(spans: &[ReceivedSpan]) -> String {
    fn walk(spans: &[ReceivedSpan], parent: &str, depth: usize, out: &mut String) {
        for span in spans.iter().filter(|s| s.parent_span_id == parent) {
            out.push_str(&format!(
                "{}{} / {}\n",
                "  ".repeat(depth + 1),
                span.service,
                span.name
            ));
            walk(spans, &span.span_id, depth + 1, out);
        }
    }
    let mut out = String::new();
    // The roots: spans whose parent was not received (the client's own span).
    let mut roots: Vec<&str> = spans
        .iter()
        .filter(|s| !spans.iter().any(|p| p.span_id == s.parent_span_id))
        .map(|s| s.parent_span_id.as_str())
        .collect();
    roots.sort_unstable();
    roots.dedup();
    for root in roots {
        walk(spans, root, 0, &mut out);
    }
    out
}

#[tokio::test]
async fn one_booking_is_one_trace_across_command_api_the_saga_the_gateway_and_the_projector() {
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver.endpoint();
    let db = TestDb::create().await;
    migrate_as_owner(&db).await;
    let brokers = testkit::kafka_brokers();
    let topic = testkit::unique_topic();
    testkit::create_topic(&brokers, &topic).await;
    let partitions = topic.partitions.to_string();
    let logs = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let traced = |service: &str| {
        vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_SERVICE_NAME", service),
            // Export every 100 ms instead of every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ])
    };

    let mut env = traced("payment-gateway");
    env.extend(vars(&[("PAYMENT_DATABASE_URL", &db.url)]));
    let gateway = ServiceProcess::start(
        &binary("payment-gateway"),
        &env,
        "PAYMENT_GATEWAY_ADDR",
        logs,
    )
    .await;
    let gateway_url = gateway.base_url();
    let kafka = [
        ("DATABASE_URL", db.url.as_str()),
        ("KAFKA_BROKERS", &brokers),
        ("KAFKA_TOPIC", &topic.name),
        ("KAFKA_TOPIC_PARTITIONS", &partitions),
    ];
    let mut env = traced("command-api");
    env.extend(vars(&kafka));
    env.extend(vars(&[
        ("BOXOFFICE_JWT_SECRET", JWT_SECRET),
        ("PAYMENT_GATEWAY_URL", &gateway_url),
        ("BOXOFFICE_RELAY_POLL_MS", "100"),
    ]));
    let command =
        ServiceProcess::start(&binary("command-api"), &env, "COMMAND_API_ADDR", logs).await;
    let group = format!("bt-projector-{}", Uuid::new_v4().simple());
    let mut env = traced("projector");
    env.extend(vars(&kafka));
    env.extend(vars(&[("PROJECTOR_GROUP", &group)]));
    let projector = ServiceProcess::start(&binary("projector"), &env, "PROJECTOR_ADDR", logs).await;

    // Set up (traces of their own), then the booking, in the client's trace.
    let client = testkit::http();
    let url = |path: &str| format!("{}{path}", command.base_url());
    let event = schedule_event(&client, &command.base_url()).await;
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let booking = post(
        &client,
        &url(&format!("/v1/events/{event}/bookings")),
        &customer("alice"),
        &[("traceparent", &traceparent)],
        &json!({"seats": 2, "card_token": "tok_visa"}),
    )
    .await;
    assert_eq!(booking.status, StatusCode::ACCEPTED, "{}", booking.body);
    // The answer names the trace.
    assert_eq!(booking.headers["x-trace-id"], TRACE_ID);

    // Wait until every part of the booking's journey has reported its span.
    let spans = eventually(Duration::from_secs(60), "the booking's whole trace", || {
        let spans: Vec<ReceivedSpan> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == TRACE_ID)
            .collect();
        let complete = named(&spans, "command-api", "POST /v1/events/{id}/bookings").is_some()
            && spans
                .iter()
                .any(|s| s.service == "command-api" && s.name.starts_with("saga "))
            && named(&spans, "command-api", "payment gateway authorize").is_some()
            && named(&spans, "payment-gateway", "POST /v1/payment_intents").is_some()
            && named(&spans, "projector", "apply BookingRequested").is_some()
            && named(&spans, "projector", "apply BookingConfirmed").is_some();
        async move { complete.then_some(spans) }
    })
    .await;

    // Shown as a tree (run with --no-capture to see it).
    eprintln!("the booking's trace {TRACE_ID}:\n{}", tree(&spans));

    // The parent links cross the processes.
    let request = named(&spans, "command-api", "POST /v1/events/{id}/bookings").unwrap();
    assert_eq!(
        request.parent_span_id, CLIENT_SPAN,
        "command-api continues the client's span"
    );
    let applied = named(&spans, "projector", "apply BookingRequested").unwrap();
    assert_eq!(
        applied.parent_span_id, request.span_id,
        "the projector's apply is a child of the request that appended the fact"
    );
    let call = named(&spans, "command-api", "payment gateway authorize").unwrap();
    let served = named(&spans, "payment-gateway", "POST /v1/payment_intents").unwrap();
    assert_eq!(
        served.parent_span_id, call.span_id,
        "the gateway's request is a child of command-api's call"
    );

    for process in [projector, command, gateway] {
        assert_eq!(process.terminate().await, Some(0));
    }
    receiver.stop().await;
}
