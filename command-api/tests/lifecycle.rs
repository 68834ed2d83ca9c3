//! Health, metrics, logs and shutdown: what an operator sees.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::json;
use testkit::{eventually, TestDb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn health_answers_live_and_ready_with_each_dependency() {
    let db = TestDb::create().await;
    let app = TestApp::spawn_with_relay(&db).await;

    let live = app.get("/health/live").await;
    let ready = eventually(Duration::from_secs(20), "the broker checked", || async {
        let ready = app.get("/health/ready").await;
        (ready.body["checks"]["broker"] == "ok").then_some(ready)
    })
    .await;

    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(ready.body["checks"]["database"], "ok");
    assert_eq!(ready.body["checks"]["broker"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn command_api_stays_ready_with_the_broker_unreachable_and_names_it() {
    let db = TestDb::create().await;
    // Nothing listens on port 1.
    let app = TestApp::spawn(&db).await;

    let ready = eventually(Duration::from_secs(20), "the broker checked", || async {
        let ready = app.get("/health/ready").await;
        (ready.body["checks"]["broker"] != "not checked yet").then_some(ready)
    })
    .await;

    // It can append, so it is ready: the outbox keeps what the broker cannot take yet.
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.body["checks"]["database"], "ok");
    assert_ne!(ready.body["checks"]["broker"], "ok");
    assert_eq!(app.state.metrics.broker_up.get(), 0);
    let location = app.location(10).await;
    assert!(!location.is_empty(), "commands are taken");
    app.stop().await;
}

#[tokio::test]
async fn half_open_and_idle_connections_are_closed_after_the_header_timeout() {
    let db = TestDb::create().await;
    let mut config = config(&db.url, "127.0.0.1:1", &testkit::unique_topic(), false);
    config.http.header_read = Duration::from_millis(500);
    let app = TestApp::spawn_with(config).await;

    // 300 clients that send half a request line and stop, and 100 that send nothing.
    let mut sockets = Vec::new();
    for i in 0..400 {
        let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        if i < 300 {
            socket.write_all(b"GET /health/live HTT").await.unwrap();
        }
        sockets.push(socket);
    }
    // Each is closed by the server: a read ends (EOF or reset) instead of waiting.
    for mut socket in sockets {
        let closed = async {
            let mut buf = [0u8; 512];
            while let Ok(n @ 1..) = socket.read(&mut buf).await {
                let _ = n;
            }
        };
        let ended = tokio::time::timeout(Duration::from_secs(20), closed).await;
        assert!(ended.is_ok(), "a connection still open after 20 s");
    }
    // And the service answers as ever.
    assert_eq!(app.get("/health/live").await.status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_commands_events_and_the_outbox() {
    let db = TestDb::create().await;
    let app = TestApp::spawn_with_relay(&db).await;
    let location = app.location(10).await;
    let refused = app
        .post(
            &format!("/v1/locations/{location}/halls"),
            &admin(),
            &json!({"name": "Main", "capacity": 5}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    eventually(
        Duration::from_secs(30),
        "the event to be published",
        || async { (db.scalar("SELECT count(*) FROM outbox").await == 0).then_some(()) },
    )
    .await;

    // The backlog gauge is refreshed once a second: poll until every line is there.
    let expected = [
        r#"boxoffice_commands_total{command="create_location",outcome="accepted"} 1"#,
        r#"boxoffice_commands_total{command="add_hall",outcome="refused"} 1"#,
        r#"boxoffice_events_appended_total{aggregate_type="location",event_type="LocationCreated"} 1"#,
        r#"boxoffice_command_duration_seconds_count{command="create_location"} 1"#,
        "boxoffice_outbox_backlog 0",
        "boxoffice_outbox_published_total 1",
        "boxoffice_outbox_publish_latency_seconds_count 1",
        "boxoffice_outbox_relay_leader 1",
    ];
    let metrics = || async {
        let response = app.client().get(app.url("/metrics")).send().await.unwrap();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        response.text().await.unwrap()
    };
    let missing = |text: &str| -> Vec<&str> {
        expected
            .iter()
            .copied()
            .filter(|line| !text.lines().any(|l| l == *line))
            .collect()
    };
    let found = testkit::eventually_or(Duration::from_secs(10), || async {
        let text = metrics().await;
        missing(&text).is_empty().then_some(())
    })
    .await;
    if found.is_none() {
        let text = metrics().await;
        panic!("missing {:?} in\n{text}", missing(&text));
    }
    app.stop().await;
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_releases_the_relay_and_exits_0() {
    let db = TestDb::create().await;
    let brokers = testkit::kafka_brokers();
    let (_gateway, config) =
        with_gateway(config(&db.url, &brokers, &testkit::unique_topic(), true)).await;
    let process = command_api_process(&config).await;
    let base = process.base_url();
    let client = testkit::http();
    let location = post_json(&client, &base, "/v1/locations", &admin(), None, &json!({"name": "O", "address": "P", "country": "FR", "halls": [{"name": "Main", "capacity": 100}]})).await.id();
    let event = post_json(
        &client,
        &base,
        "/v1/events",
        &admin(),
        None,
        &event_body(&location),
    )
    .await
    .id();
    eventually(Duration::from_secs(30), "the relay to lead", || async {
        (db.scalar("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = current_database()").await > 0).then_some(())
    })
    .await;

    // A booking in flight when SIGTERM arrives: its headers are sent with
    // `Expect: 100-continue`, so the server's "100 Continue" says the handler is reading
    // the body. Then SIGTERM, then the body.
    let body = json!({"seats": 2, "card_token": "tok"}).to_string();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", process.port))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/events/{event}/bookings HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        customer("alice"),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let n = stream.read(&mut buffer).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 100"),
        "no 100 Continue"
    );

    let pid = process.pid();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    // The listener closes: new requests are refused.
    eventually(Duration::from_secs(10), "the listener to close", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", process.port))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);

    assert!(
        response.starts_with("HTTP/1.1 202"),
        "the in-flight request was not finished: {response}"
    );
    assert_eq!(process.wait().await, Some(0));
    assert_eq!(
        db.scalar("SELECT count(*) FROM events WHERE aggregate_type = 'booking'")
            .await,
        1
    );
    assert_eq!(db.scalar("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = current_database()").await, 0, "the relay let go of its lock");
}

#[tokio::test]
async fn logs_are_json_lines_with_log_format_json() {
    let db = TestDb::create().await;
    let process = command_api_process(&config(
        &db.url,
        "127.0.0.1:1",
        &testkit::unique_topic(),
        false,
    ))
    .await;
    let log = process.log.clone();
    assert_eq!(process.terminate().await, Some(0));

    let text = std::fs::read_to_string(log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(
            value["level"].is_string() && value["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(text.contains("command-api listening"));
}

#[tokio::test]
async fn a_secret_shorter_than_32_bytes_stops_the_service_at_start_up() {
    let db = TestDb::create().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_command-api"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .env("BOXOFFICE_JWT_SECRET", "short-secret")
        .env(
            "COMMAND_API_ADDR",
            format!("127.0.0.1:{}", testkit::free_port()),
        )
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("BOXOFFICE_JWT_SECRET is 12 bytes long; it must be at least 32"),
        "{said}"
    );
}
