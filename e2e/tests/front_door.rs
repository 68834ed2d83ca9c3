//! The front door (nginx, from the template `scripts/up` runs): one address for a
//! client's whole walk, commands to command-api and reads to query-api, the contracts
//! and their UIs, and the edge's own refusals in the services' error envelope.

use std::net::SocketAddr;
use std::time::Duration;

use e2e::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::api::{get, post, schedule_event};
use testkit::eventually;
use testkit::front_door::{FrontDoor, Limits};

async fn door_for(stack: &Stack) -> FrontDoor {
    FrontDoor::start(stack.command.addr, stack.query.addr, Limits::default()).await
}

#[tokio::test]
async fn a_customer_books_and_reads_back_through_one_address() {
    let stack = Stack::start().await;
    let door = door_for(&stack).await;
    let client = testkit::http();

    let event = schedule_event(&client, &door.url("")).await;

    let alice = customer("alice");
    let booking = post(
        &client,
        &door.url(&format!("/v1/events/{event}/bookings")),
        &alice,
        &[("Idempotency-Key", "alice-door-1")],
        &json!({"seats": 2, "card_token": "tok_visa"}),
    )
    .await;
    assert_eq!(booking.status, StatusCode::ACCEPTED, "{}", booking.body);
    let token = booking.token();
    let id = booking.id();

    // Read-your-writes through the door: the consistency header passes both ways.
    let read = get(
        &client,
        &door.url(&format!("/v1/bookings/{id}")),
        &alice,
        &[("X-Consistency-Token", &token)],
    )
    .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["id"], id.as_str());

    // The saga confirms it; the customer sees that through the same address.
    eventually(
        Duration::from_secs(60),
        "the booking to be confirmed",
        || {
            let (client, url, alice) = (&client, door.url(&format!("/v1/bookings/{id}")), &alice);
            async move {
                let answer = get(client, &url, alice, &[]).await;
                (answer.body["status"] == "confirmed").then_some(())
            }
        },
    )
    .await;
    let mine = get(&client, &door.url("/v1/users/me/bookings"), &alice, &[]).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
    assert!(
        mine.body.to_string().contains(&id),
        "alice's list lacks {id}: {}",
        mine.body
    );

    // Each service's admin routes reach that service, whatever the method.
    let parked_sagas = get(&client, &door.url("/v1/admin/sagas/parked"), &admin(), &[]).await;
    assert_eq!(parked_sagas.status, StatusCode::OK, "{}", parked_sagas.body);
    let projections = get(&client, &door.url("/v1/admin/projections"), &admin(), &[]).await;
    assert_eq!(projections.status, StatusCode::OK, "{}", projections.body);
    let rebuild = post(
        &client,
        &door.url("/v1/admin/projections/bookings/rebuild"),
        &admin(),
        &[],
        &json!({}),
    )
    .await;
    assert_eq!(rebuild.status, StatusCode::ACCEPTED, "{}", rebuild.body);

    // One JSON access-log line per request, with its request id.
    let log = door.access_log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("an access-log line is JSON"))
        .collect();
    assert!(
        lines.iter().any(|l| l["method"] == "POST"
            && l["path"] == format!("/v1/events/{event}/bookings")
            && l["status"] == 202
            && l["request_id"].as_str().is_some_and(|r| !r.is_empty())),
        "no access-log line for the booking: {log}"
    );
    drop(door);
    stack.stop().await;
}

#[tokio::test]
async fn request_ids_and_trace_context_pass_through() {
    let stack = Stack::start().await;
    let door = door_for(&stack).await;
    let client = testkit::http();
    let url = door.url("/v1/events");

    // A sane client id is kept and echoed; a missing or odd one is replaced by ours.
    let kept = client
        .get(&url)
        .bearer_auth(customer("bob"))
        .header("X-Request-Id", "bob-req-42")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .expect("GET");
    assert_eq!(kept.status(), StatusCode::OK);
    assert_eq!(kept.headers()["x-request-id"], "bob-req-42");
    for sent in [None, Some("has spaces and ; semicolons")] {
        let mut request = client.get(&url).bearer_auth(customer("bob"));
        if let Some(id) = sent {
            request = request.header("X-Request-Id", id);
        }
        let answer = request.send().await.expect("GET");
        let id = answer.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{id:?}"
        );
    }
    let log = door.access_log();
    assert!(
        log.lines()
            .any(|l| l.contains("\"request_id\":\"bob-req-42\"")
                && l.contains("4bf92f3577b34da6a3ce929d0e0e4736")),
        "the access log lacks the client's request id and traceparent: {log}"
    );
    drop(door);
    stack.stop().await;
}

#[tokio::test]
async fn the_contracts_and_their_uis_are_served_under_each_service_name() {
    let stack = Stack::start().await;
    let door = door_for(&stack).await;
    let client = testkit::http();
    let text = |path: &'static str| {
        let (client, url) = (&client, door.url(path));
        async move {
            let answer = client.get(url).send().await.expect("GET");
            assert_eq!(answer.status(), StatusCode::OK, "{path}");
            answer.text().await.expect("body")
        }
    };
    assert_eq!(
        text("/command-api/openapi.json").await,
        command_api::openapi::document_json()
    );
    assert_eq!(
        text("/query-api/openapi.json").await,
        query_api::openapi::document_json()
    );
    // The UI pages load their document relative to themselves, their assets from /docs/.
    for page in ["/command-api/docs", "/query-api/docs"] {
        let html = text(page).await;
        assert!(html.contains("url: 'openapi.json'"), "{page}: {html}");
        assert!(
            html.contains("/docs/swagger-ui-bundle.js"),
            "{page}: {html}"
        );
    }
    assert!(text("/docs/swagger-ui-bundle.js").await.len() > 10_000);
    let index = text("/docs").await;
    assert!(index.contains("/command-api/docs") && index.contains("/query-api/docs"));
    drop(door);
    stack.stop().await;
}

/// The error envelope's code of an answer.
async fn code_of(answer: reqwest::Response) -> (StatusCode, String) {
    let status = answer.status();
    let body: Value = answer.json().await.expect("a JSON body");
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn the_edge_refuses_in_the_services_envelope() {
    let stack = Stack::start().await;
    let client = testkit::http();

    // Too large: refused at the edge, before command-api; nothing was appended.
    let door = door_for(&stack).await;
    let before = stack.db.scalar("SELECT count(*) FROM events").await;
    let huge = json!({"name": "x".repeat(70 * 1024), "address": "a", "country": "FR", "halls": []});
    let answer = client
        .post(door.url("/v1/locations"))
        .bearer_auth(admin())
        .json(&huge)
        .send()
        .await
        .expect("POST");
    assert_eq!(
        code_of(answer).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into())
    );
    assert_eq!(stack.db.scalar("SELECT count(*) FROM events").await, before);

    // No such route.
    let answer = client.get(door.url("/nowhere")).send().await.expect("GET");
    assert_eq!(
        code_of(answer).await,
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    // The services' probes and metrics are not exposed.
    for internal in ["/metrics", "/health/ready"] {
        let answer = client.get(door.url(internal)).send().await.expect("GET");
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{internal}");
    }
    drop(door);

    // Over the rate: 429 rate_limited with Retry-After, and the rest still answered.
    let strict = FrontDoor::start(
        stack.command.addr,
        stack.query.addr,
        Limits { rate: 1, burst: 2 },
    )
    .await;
    let mut limited = 0;
    let mut answered = 0;
    for _ in 0..10 {
        let answer = client
            .get(strict.url("/v1/events"))
            .bearer_auth(customer("carol"))
            .send()
            .await
            .expect("GET");
        if answer.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(answer.headers()["retry-after"], "1");
            assert_eq!(code_of(answer).await.1, "rate_limited");
            limited += 1;
        } else {
            assert_eq!(answer.status(), StatusCode::OK);
            answered += 1;
        }
    }
    assert!(
        limited >= 5 && answered >= 1,
        "{limited} limited, {answered} answered"
    );
    drop(strict);

    // A service that cannot be reached: 503 unavailable with Retry-After.
    let closed = SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
    let orphan = FrontDoor::start(closed, stack.query.addr, Limits::default()).await;
    let answer = client
        .post(orphan.url("/v1/locations"))
        .bearer_auth(admin())
        .json(&location_body("Nowhere", 10))
        .send()
        .await
        .expect("POST");
    assert_eq!(answer.headers()["retry-after"], "1");
    assert_eq!(
        code_of(answer).await,
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into())
    );
    drop(orphan);
    stack.stop().await;
}
