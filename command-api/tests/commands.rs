//! Every command's happy path, through HTTP, against the real Postgres: the answer,
//! the stored event and its metadata.

mod common;

use common::*;
use domain::booking::BookingCommand;
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::TestDb;

/// The stored events of one aggregate: (sequence, event_type, payload, metadata).
async fn stream(db: &TestDb, aggregate_id: &str) -> Vec<(i64, String, Value, Value)> {
    let mut conn = db.connect().await;
    sqlx::query_as(
        "SELECT sequence, event_type, payload, metadata FROM events
          WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(aggregate_id)
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

fn token_of(answer: &Answer) -> String {
    let header = answer.headers["x-consistency-token"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        answer.body["consistency_token"],
        header.as_str(),
        "header and body agree"
    );
    header
}

#[tokio::test]
async fn create_a_location_with_halls() {
    let db = TestDb::create().await;
    let app = TestApp::spawn(&db).await;

    let answer = app
        .post_with(
            "/v1/locations",
            &admin(),
            &[("x-correlation-id", "corr-42")],
            &json!({"name": " Olympia ", "address": "28 Bd des Capucines", "country": "FR",
                    "halls": [{"name": "Main", "capacity": 2000}, {"name": "Club", "capacity": 150}]}),
        )
        .await;

    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let id = answer.id();
    assert_eq!(token_of(&answer), format!("location:{id}:1"));
    let events = stream(&db, &id).await;
    assert_eq!(events.len(), 1);
    let (sequence, event_type, payload, metadata) = &events[0];
    assert_eq!((*sequence, event_type.as_str()), (1, "LocationCreated"));
    assert_eq!(
        payload["LocationCreated"]["name"], "Olympia",
        "names are trimmed"
    );
    assert_eq!(
        payload["LocationCreated"]["halls"][1],
        json!({"name": "Club", "capacity": 150})
    );
    assert_eq!(metadata["user_id"], "admin-1");
    assert_eq!(metadata["correlation_id"], "corr-42");
    assert!(metadata["causation_id"]
        .as_str()
        .is_some_and(|c| !c.is_empty()));
    let recorded_at = metadata["recorded_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(recorded_at).is_ok(),
        "{recorded_at}"
    );
    app.stop().await;
}

#[tokio::test]
async fn add_a_hall() {
    let db = TestDb::create().await;
    let app = TestApp::spawn(&db).await;
    let location = app.location(100).await;

    let answer = app
        .post(
            &format!("/v1/locations/{location}/halls"),
            &admin(),
            &json!({"name": "Club", "capacity": 80}),
        )
        .await;

    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(token_of(&answer), format!("location:{location}:2"));
    let events = stream(&db, &location).await;
    assert_eq!(events[1].1, "HallAdded");
    assert_eq!(
        events[1].2["HallAdded"]["hall"],
        json!({"name": "Club", "capacity": 80})
    );
    app.stop().await;
}

#[tokio::test]
async fn schedule_an_event_taking_the_halls_capacity() {
    let db = TestDb::create().await;
    let app = TestApp::spawn(&db).await;
    let location = app.location(300).await;

    let answer = app
        .post("/v1/events", &admin(), &event_body(&location))
        .await;

    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let id = answer.id();
    assert_eq!(token_of(&answer), format!("event:{id}:1"));
    let events = stream(&db, &id).await;
    let details = &events[0].2["EventScheduled"];
    assert_eq!(events[0].1, "EventScheduled");
    assert_eq!(details["capacity"], 300);
    assert_eq!(details["location_id"], location.as_str());
    assert_eq!(
        details["location_name"], "Olympia",
        "the read models need it"
    );
    assert_eq!(details["price_cents"], 2500);
    app.stop().await;
}

#[tokio::test]
async fn schedule_an_event_with_a_smaller_capacity() {
    let db = TestDb::create().await;
    let app = TestApp::spawn(&db).await;
    let location = app.location(300).await;
    let mut body = event_body(&location);
    body["capacity"] = json!(120);

    let answer = app.post("/v1/events", &admin(), &body).await;

    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let events = stream(&db, &answer.id()).await;
    assert_eq!(events[0].2["EventScheduled"]["capacity"], 120);
    app.stop().await;
}

#[tokio::test]
async fn cancel_an_event() {
    let db = TestDb::create().await;
    let app = TestApp::spawn(&db).await;
    let event = app.event(100).await;

    let answer = app
        .post(
            &format!("/v1/events/{event}/cancel"),
            &admin(),
            &json!({"reason": "storm"}),
        )
        .await;

    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    assert_eq!(token_of(&answer), format!("event:{event}:2"));
    let events = stream(&db, &event).await;
    assert_eq!(events[1].1, "EventCancelled");
    assert_eq!(events[1].2["EventCancelled"]["reason"], "storm");
    app.stop().await;
}

#[tokio::test]
async fn request_a_booking_records_it_pending_for_the_tokens_user() {
    let db = TestDb::create().await;
    let app = TestApp::spawn(&db).await;
    let event = app.event(100).await;

    let answer = app
        .post(
            &format!("/v1/events/{event}/bookings"),
            &customer("alice"),
            // A user_id in the body is ignored: the user is the token's subject.
            &json!({"seats": 3, "card_token": "tok_visa", "user_id": "mallory"}),
        )
        .await;

    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    assert_eq!(answer.body["status"], "pending");
    let id = answer.id();
    assert_eq!(token_of(&answer), format!("booking:{id}:1"));
    let events = stream(&db, &id).await;
    let requested = &events[0].2["BookingRequested"];
    assert_eq!(requested["user_id"], "alice");
    assert_eq!(requested["event_id"], event.as_str());
    assert_eq!(requested["seats"], 3);
    assert_eq!(requested["amount_cents"], 7500);
    assert_eq!(requested["currency"], "EUR");
    assert_eq!(events[0].3["user_id"], "alice");
    app.stop().await;
}

/// Confirms a booking as the saga would (the saga itself is a later step).
async fn confirm(app: &TestApp, booking: &str) {
    let metadata = domain::metadata::EventMetadata {
        user_id: Some("system".to_owned()),
        correlation_id: Some("test".to_owned()),
        causation_id: Some("test".to_owned()),
        ..Default::default()
    };
    app.state
        .bookings
        .execute(booking, BookingCommand::ConfirmBooking, &metadata)
        .await
        .expect("the booking is confirmed");
}

#[tokio::test]
async fn the_owner_cancels_a_confirmed_booking() {
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
    confirm(&app, &booking).await;

    let answer = app
        .post(
            &format!("/v1/bookings/{booking}/cancel"),
            &customer("alice"),
            &json!({}),
        )
        .await;

    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    assert_eq!(token_of(&answer), format!("booking:{booking}:3"));
    let events = stream(&db, &booking).await;
    assert_eq!(events[2].1, "BookingCancelled");
    assert_eq!(
        events[2].2["BookingCancelled"]["reason"],
        "cancelled_by_user"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_admin_cancels_someone_elses_confirmed_booking() {
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
    confirm(&app, &booking).await;

    let answer = app
        .post(
            &format!("/v1/bookings/{booking}/cancel"),
            &admin(),
            &json!({}),
        )
        .await;

    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    assert_eq!(stream(&db, &booking).await[2].3["user_id"], "admin-1");
    app.stop().await;
}
