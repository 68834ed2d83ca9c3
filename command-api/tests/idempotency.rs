//! `Idempotency-Key`: the same user repeating a key with the same body gets the first
//! answer again and nothing is appended; another body gets 422; a crash never separates
//! a key from its events.

mod common;

use common::*;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use testkit::TestDb;

async fn count_events(db: &TestDb) -> i64 {
    db.scalar("SELECT count(*) FROM events").await
}

#[tokio::test]
async fn a_retry_gets_the_first_answer_and_appends_nothing() {
    let db = TestDb::create().await;
    let app = TestApp::spawn(&db).await;
    let event = app.event(100).await;
    let path = format!("/v1/events/{event}/bookings");
    let body = json!({"seats": 2, "card_token": "tok_visa"});
    let key = [("idempotency-key", "booking-attempt-1")];

    let first = app.post_with(&path, &customer("alice"), &key, &body).await;
    let events_after_first = count_events(&db).await;
    // Whitespace and key order do not make another request.
    let same_body_reordered = json!({"card_token": "tok_visa", "seats": 2});
    let second = app
        .post_with(&path, &customer("alice"), &key, &same_body_reordered)
        .await;

    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(second.status, first.status);
    assert_eq!(second.body, first.body);
    assert_eq!(
        second.headers["x-consistency-token"],
        first.headers["x-consistency-token"]
    );
    assert_eq!(count_events(&db).await, events_after_first);
    app.stop().await;
}

#[tokio::test]
async fn the_first_answer_stands_even_when_the_state_has_moved_on() {
    let db = TestDb::create().await;
    let app = TestApp::spawn(&db).await;
    let event = app.event(100).await;
    let path = format!("/v1/events/{event}/bookings");
    let body = json!({"seats": 1, "card_token": "tok"});
    let key = [("idempotency-key", "k-1")];
    let first = app.post_with(&path, &customer("alice"), &key, &body).await;
    let cancel = app
        .post(
            &format!("/v1/events/{event}/cancel"),
            &admin(),
            &json!({"reason": "storm"}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED);
    let events_before = count_events(&db).await;

    let retry = app.post_with(&path, &customer("alice"), &key, &body).await;

    assert_eq!(
        retry.status,
        StatusCode::ACCEPTED,
        "not the 409 a new request would get"
    );
    assert_eq!(retry.body, first.body);
    assert_eq!(count_events(&db).await, events_before);
    app.stop().await;
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused() {
    let db = TestDb::create().await;
    let app = TestApp::spawn(&db).await;
    let event = app.event(100).await;
    let path = format!("/v1/events/{event}/bookings");
    let key = [("idempotency-key", "k-2")];
    let first = app
        .post_with(
            &path,
            &customer("alice"),
            &key,
            &json!({"seats": 1, "card_token": "tok"}),
        )
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let events_before = count_events(&db).await;

    let other_body = app
        .post_with(
            &path,
            &customer("alice"),
            &key,
            &json!({"seats": 4, "card_token": "tok"}),
        )
        .await;
    let other_route = app
        .post_with(
            "/v1/locations",
            &admin(),
            &[("idempotency-key", "k-2")],
            &json!({"name": "x", "address": "y", "country": "FR", "halls": []}),
        )
        .await;

    assert_eq!(other_body.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other_body.code(), "idempotency_key_reused");
    // Keys belong to users: the admin's k-2 is not alice's.
    assert_eq!(other_route.status, StatusCode::CREATED);
    assert_eq!(count_events(&db).await, events_before + 1);
    app.stop().await;
}

#[tokio::test]
async fn a_key_reused_on_another_route_is_refused() {
    let db = TestDb::create().await;
    let app = TestApp::spawn(&db).await;
    let location = app.location(10).await;
    let key = [("idempotency-key", "k-3")];
    let first = app
        .post_with(
            &format!("/v1/locations/{location}/halls"),
            &admin(),
            &key,
            &json!({"name": "Club", "capacity": 5}),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let events_before = count_events(&db).await;

    let elsewhere = app
        .post_with("/v1/events", &admin(), &key, &event_body(&location))
        .await;

    assert_eq!(elsewhere.code(), "idempotency_key_reused");
    assert_eq!(count_events(&db).await, events_before);
    app.stop().await;
}

#[tokio::test]
async fn a_refusal_is_answered_again_the_same_way() {
    let db = TestDb::create().await;
    let app = TestApp::spawn(&db).await;
    let event = app.event(100).await;
    let booking = app
        .post(
            &format!("/v1/events/{event}/bookings"),
            &customer("alice"),
            &json!({"seats": 1, "card_token": "tok"}),
        )
        .await
        .id();
    let path = format!("/v1/bookings/{booking}/cancel");
    let key = [("idempotency-key", "cancel-1")];

    let first = app
        .post_with(&path, &customer("alice"), &key, &json!({}))
        .await;
    let events_before = count_events(&db).await;
    let again = app
        .post_with(&path, &customer("alice"), &key, &json!({}))
        .await;

    assert_eq!(first.status, StatusCode::CONFLICT);
    assert_eq!(first.code(), "booking_not_confirmed");
    assert_eq!((again.status, &again.body), (first.status, &first.body));
    assert_eq!(count_events(&db).await, events_before);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_requests_with_one_key_append_once() {
    let db = TestDb::create().await;
    let app = TestApp::spawn(&db).await;
    let body = json!({"name": "Olympia", "address": "Paris", "country": "FR", "halls": [{"name": "Main", "capacity": 10}]});
    let token = admin();

    let answers = join_all((0..12).map(|_| {
        app.post_with(
            "/v1/locations",
            &token,
            &[("idempotency-key", "create-olympia")],
            &body,
        )
    }))
    .await;

    let first = &answers[0];
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    for answer in &answers {
        assert_eq!((answer.status, &answer.body), (first.status, &first.body));
    }
    assert_eq!(count_events(&db).await, 1);
    app.stop().await;
}

/// Fires keyed bookings at a real command-api process and kills it with SIGKILL while
/// they are in flight. Whatever was cut, a key and its events are never apart, and
/// retrying every key after the restart books each request exactly once.
#[tokio::test]
async fn a_crash_never_separates_a_key_from_its_events() {
    let db = TestDb::create().await;
    let topic = testkit::unique_topic();
    let (_gateway, config) = with_gateway(config(&db.url, "127.0.0.1:1", &topic, false)).await;
    let mut process = command_api_process(&config).await;
    let base = process.base_url();
    let client = testkit::http();
    let event = {
        let location = post_json(&client, &base, "/v1/locations", &admin(), None, &json!({"name": "O", "address": "P", "country": "FR", "halls": [{"name": "Main", "capacity": 1000}]})).await.id();
        post_json(
            &client,
            &base,
            "/v1/events",
            &admin(),
            None,
            &event_body(&location),
        )
        .await
        .id()
    };
    let path = format!("/v1/events/{event}/bookings");
    let body = json!({"seats": 1, "card_token": "tok"});
    let token = customer("alice");
    let keys: Vec<String> = (0..300).map(|i| format!("key-{i}")).collect();

    // Keyed requests in flight from 16 clients; the process dies after the first few
    // dozen have been answered.
    let (answered_tx, mut answered_rx) = tokio::sync::mpsc::unbounded_channel();
    let chunks: Vec<Vec<String>> = keys
        .chunks(keys.len() / 16)
        .map(<[String]>::to_vec)
        .collect();
    let mut clients = Vec::new();
    for chunk in chunks {
        let (client, base, path, body, token, tx) = (
            client.clone(),
            base.clone(),
            path.clone(),
            body.clone(),
            token.clone(),
            answered_tx.clone(),
        );
        clients.push(tokio::spawn(async move {
            for key in chunk {
                let sent = client
                    .post(format!("{base}{path}"))
                    .bearer_auth(&token)
                    .header("idempotency-key", &key)
                    .json(&body)
                    .send()
                    .await;
                if sent.is_err() {
                    return;
                }
                let _ = tx.send(());
            }
        }));
    }
    for _ in 0..40 {
        answered_rx
            .recv()
            .await
            .expect("requests stopped before the crash");
    }
    process.kill();
    for client in clients {
        let _ = client.await;
    }

    let orphan_events = db
        .scalar(
            "SELECT count(*) FROM events e WHERE e.metadata ? 'idempotency_key' AND NOT EXISTS (
                 SELECT 1 FROM idempotency_keys k
                  WHERE k.user_id = e.metadata->>'user_id' AND k.idempotency_key = e.metadata->>'idempotency_key')",
        )
        .await;
    let orphan_keys = db
        .scalar(
            "SELECT count(*) FROM idempotency_keys k WHERE k.last_sequence IS NOT NULL AND NOT EXISTS (
                 SELECT 1 FROM events e
                  WHERE e.aggregate_type = k.aggregate_type AND e.aggregate_id = k.aggregate_id
                    AND e.sequence = k.last_sequence)",
        )
        .await;
    assert_eq!((orphan_events, orphan_keys), (0, 0));
    let booked_before_restart = db
        .scalar("SELECT count(*) FROM events WHERE aggregate_type = 'booking'")
        .await;
    assert!(
        booked_before_restart < 300,
        "the crash came too late to test anything"
    );

    // Every client retries every key: each request is booked once in all.
    let process = command_api_process(&config).await;
    let base = process.base_url();
    for key in &keys {
        let answer = post_json(&client, &base, &path, &token, Some(key), &body).await;
        assert_eq!(
            answer.status,
            StatusCode::ACCEPTED,
            "{key}: {}",
            answer.body
        );
    }
    assert_eq!(
        db.scalar("SELECT count(*) FROM events WHERE aggregate_type = 'booking'")
            .await,
        300
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM idempotency_keys").await,
        300
    );
    process.terminate().await;
}
