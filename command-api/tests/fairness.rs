//! Fairness between customers: the cap on seats one customer holds of an event at once
//! (409 `too_many_held_seats`), and the per-customer command rate limit (429
//! `rate_limited` with `Retry-After`). Admins are limited by neither; both can be
//! turned off. A refused command appends nothing.

mod common;

use command_api::config::FairnessConfig;
use common::*;
use reqwest::StatusCode;
use serde_json::json;
use testkit::TestDb;

async fn app_with(db: &TestDb, fairness: FairnessConfig) -> TestApp {
    let mut config = config(&db.url, "127.0.0.1:1", &testkit::unique_topic(), false);
    config.fairness = fairness;
    TestApp::spawn_with(config).await
}

async fn book(app: &TestApp, event: &str, user: &str, seats: u32) -> testkit::api::Answer {
    app.post(
        &format!("/v1/events/{event}/bookings"),
        &customer(user),
        &json!({"seats": seats, "card_token": "tok_visa"}),
    )
    .await
}

async fn requested(db: &TestDb) -> i64 {
    db.scalar("SELECT count(*) FROM events WHERE event_type = 'BookingRequested'")
        .await
}

#[tokio::test]
async fn a_customer_holds_at_most_the_cap_of_one_event_and_the_cap_can_be_turned_off() {
    let db = TestDb::create().await;
    // No saga runs: every booking stays pending, its seats held.
    let app = app_with(
        &db,
        FairnessConfig {
            max_held_seats_per_user: 4,
            ..no_fairness_limits()
        },
    )
    .await;
    let event = app.event(100).await;
    let other_event = app.event(100).await;

    assert_eq!(
        book(&app, &event, "alice", 3).await.status,
        StatusCode::ACCEPTED
    );
    let refused = book(&app, &event, "alice", 2).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(refused.code(), "too_many_held_seats");
    assert_eq!(requested(&db).await, 1, "the refusal appended nothing");
    // Up to the cap is fine; other customers and other events are apart.
    assert_eq!(
        book(&app, &event, "alice", 1).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        book(&app, &event, "bob", 4).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        book(&app, &other_event, "alice", 4).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        book(&app, &event, "alice", 1).await.code(),
        "too_many_held_seats"
    );
    // Admins are not capped.
    let by_admin = app
        .post(
            &format!("/v1/events/{event}/bookings"),
            &admin(),
            &json!({"seats": 10, "card_token": "tok_visa"}),
        )
        .await;
    assert_eq!(by_admin.status, StatusCode::ACCEPTED, "{}", by_admin.body);
    app.stop().await;

    // Off: the same customer books on.
    let db = TestDb::create().await;
    let app = app_with(&db, no_fairness_limits()).await;
    let event = app.event(100).await;
    for _ in 0..4 {
        assert_eq!(
            book(&app, &event, "alice", 5).await.status,
            StatusCode::ACCEPTED
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_customer_over_their_command_rate_gets_429_and_others_and_admins_do_not() {
    let db = TestDb::create().await;
    let app = app_with(
        &db,
        FairnessConfig {
            commands_per_user_per_sec: 1,
            commands_burst: 3,
            ..no_fairness_limits()
        },
    )
    .await;
    let event = app.event(100).await;

    for _ in 0..3 {
        assert_eq!(
            book(&app, &event, "alice", 1).await.status,
            StatusCode::ACCEPTED
        );
    }
    let limited = book(&app, &event, "alice", 1).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.body
    );
    assert_eq!(limited.code(), "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        requested(&db).await,
        3,
        "the refused command appended nothing"
    );
    // Another customer has a budget of their own; admins have none to spend.
    assert_eq!(
        book(&app, &event, "bob", 1).await.status,
        StatusCode::ACCEPTED
    );
    for _ in 0..10 {
        assert_eq!(app.location(10).await.len(), 36);
    }
    let counted = app.state.metrics.rate_limited.get();
    assert_eq!(counted, 1);
    app.stop().await;

    // Off: a burst of 30 from one customer goes through.
    let db = TestDb::create().await;
    let app = app_with(&db, no_fairness_limits()).await;
    let event = app.event(1000).await;
    for _ in 0..30 {
        assert_eq!(
            book(&app, &event, "alice", 1).await.status,
            StatusCode::ACCEPTED
        );
    }
    app.stop().await;
}
