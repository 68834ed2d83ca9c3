//! Poison is parked, not skipped. An event the projector cannot read (here: a fact
//! version newer than an older build reads, as in a rolling deploy) stops only its own
//! stream, is listed with its error, and applies once a build that reads it retries it;
//! other streams go on. A saga that fails the same way again and again is parked too,
//! listed, counted in a metric, and retried on request, while other sagas go on.

use std::time::Duration;

use e2e::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::eventually;

/// An older projector build: it knows locations, but not halls being added to them.
fn predates_hall_additions(event_type: &str, event_version: &str) -> bool {
    event_type != "HallAdded" && domain::upcast::readable(event_type, event_version)
}

async fn parked(stack: &Stack) -> Vec<Value> {
    let answer = stack.query("/v1/admin/parked", &admin()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_event_the_projector_cannot_read_is_parked_and_applied_by_a_build_that_can() {
    let mut stack = Stack::start().await;
    stack.stop_projector().await;
    stack
        .start_projector_with(|config| config.reads = predates_hall_additions)
        .await;
    let location = stack.location("Olympia", 100).await;
    let added = stack
        .command(
            &format!("/v1/locations/{location}/halls"),
            &admin(),
            &json!({"name": "Annex", "capacity": 50}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);

    // Parked, and listed with why.
    let items = eventually(Duration::from_secs(30), "the event parked", || async {
        let items = parked(&stack).await;
        (!items.is_empty()).then_some(items)
    })
    .await;
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item["projection"], "locations");
    assert_eq!(item["aggregate_id"], location.as_str());
    assert_eq!(item["event_type"], "HallAdded");
    assert_eq!(item["sequence"], 2);
    assert!(item["error"]
        .as_str()
        .unwrap()
        .contains("newer than this projector reads"));
    let position = item["position"].as_i64().unwrap();
    let gauge = || {
        stack
            .projector()
            .metrics
            .parked
            .get_or_create(&projector::metrics::ProjectionLabel {
                projection: "locations",
            })
            .get()
    };
    eventually(Duration::from_secs(10), "the gauge", || async {
        (gauge() == 1).then_some(())
    })
    .await;

    // The stream waits at the event before; other streams go on.
    let shown = stack
        .query(&format!("/v1/locations/{location}"), &customer("ann"))
        .await;
    assert_eq!(shown.body["halls"].as_array().unwrap().len(), 1);
    let other = stack.location("Bataclan", 40).await;
    stack
        .eventually(
            &format!("/v1/locations/{other}"),
            &customer("ann"),
            "the other location",
            |a| a.status == StatusCode::OK,
        )
        .await;

    // A retry with the same build fails again: one more attempt, still parked.
    let retried = stack
        .admin_query_post(&format!("/v1/admin/parked/{position}/retry"))
        .await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.body);
    eventually(Duration::from_secs(30), "a second attempt", || async {
        let items = parked(&stack).await;
        (items.len() == 1 && items[0]["attempts"].as_i64() >= Some(2)).then_some(())
    })
    .await;
    assert_eq!(
        stack
            .admin_query_post("/v1/admin/parked/999999999/retry")
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // The newer build reads it: at start-up it retries what is parked.
    stack.stop_projector().await;
    stack.start_projector().await;
    stack
        .eventually(
            &format!("/v1/locations/{location}"),
            &customer("ann"),
            "the hall added",
            |a| a.body["halls"].as_array().is_some_and(|h| h.len() == 2),
        )
        .await;
    eventually(Duration::from_secs(30), "nothing parked", || async {
        parked(&stack).await.is_empty().then_some(())
    })
    .await;
    stack.stop().await;
}

#[tokio::test]
async fn a_saga_failing_the_same_way_is_parked_listed_and_retried_while_others_go_on() {
    let stack = Stack::start_with(Options {
        command: |config| config.saga.park_after = 3,
        ..Options::default()
    })
    .await;
    // A saga row no booking of ours could have made: its step fails every time.
    sqlx::query(
        "INSERT INTO booking_sagas (booking_id, event_id, user_id, seats, amount_cents, currency, correlation_id, step)
         VALUES ('not-a-booking-id', 'nowhere', 'mallory', 1, 100, 'EUR', 'corr-poison', 'reserve')",
    )
    .execute(&stack.db.pool)
    .await
    .unwrap();
    let list = || async {
        let answer = testkit::api::get(
            &stack.client,
            &stack.command.url("/v1/admin/sagas/parked"),
            &admin(),
            &[],
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.body["items"].as_array().unwrap().clone()
    };
    let items = eventually(Duration::from_secs(30), "the saga parked", || async {
        let items = list().await;
        (!items.is_empty()).then_some(items)
    })
    .await;
    assert_eq!(items[0]["id"], "not-a-booking-id");
    assert_eq!(items[0]["kind"], "booking");
    assert_eq!(items[0]["same_failures"], 3);
    assert!(items[0]["last_error"]
        .as_str()
        .unwrap()
        .contains("not a UUID"));
    let metrics = &stack.command_state.metrics;
    eventually(Duration::from_secs(10), "the gauge", || async {
        (metrics.sagas_parked.get() == 1).then_some(())
    })
    .await;
    let attempts = || async {
        let n: i32 = sqlx::query_scalar(
            "SELECT attempts FROM booking_sagas WHERE booking_id = 'not-a-booking-id'",
        )
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
        n
    };
    // Parked means left alone.
    let before = attempts().await;
    assert_eq!(before, 3);

    // Other bookings go on.
    let location = stack.location("Olympia", 10).await;
    let event = stack.event(&event_body(&location)).await.id();
    let booking = stack.book(&event, "alice", 2).await.id();
    stack
        .eventually(
            &format!("/v1/bookings/{booking}"),
            &admin(),
            "the booking confirmed",
            |a| a.body["status"] == "confirmed",
        )
        .await;
    assert_eq!(attempts().await, 3, "a parked saga is not run");

    // A retry runs it again from scratch (it fails again here, and is parked again).
    let retried = testkit::api::post(
        &stack.client,
        &stack.command.url("/v1/admin/sagas/not-a-booking-id/retry"),
        &admin(),
        &[],
        &json!({}),
    )
    .await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.body);
    let first_parked = items[0]["parked_at"].clone();
    eventually(
        Duration::from_secs(30),
        "parked again after three more tries",
        || async {
            let items = list().await;
            (items.len() == 1
                && items[0]["parked_at"] != first_parked
                && items[0]["same_failures"] == 3)
                .then_some(())
        },
    )
    .await;
    assert_eq!(attempts().await, 3);
    let customer_retry = testkit::api::post(
        &stack.client,
        &stack.command.url("/v1/admin/sagas/not-a-booking-id/retry"),
        &customer("mallory"),
        &[],
        &json!({}),
    )
    .await;
    assert_eq!(customer_retry.status, StatusCode::FORBIDDEN);
    stack.stop().await;
}

#[tokio::test]
async fn an_event_cancellation_goes_past_a_booking_it_cannot_cancel_and_parks() {
    let stack = Stack::start_with(Options {
        command: |config| config.saga.park_after = 3,
        ..Options::default()
    })
    .await;
    let location = stack.location("Olympia", 10).await;
    let event = stack.event(&event_body(&location)).await.id();
    let mut bookings = Vec::new();
    for user in ["alice", "bob"] {
        let id = stack.book(&event, user, 2).await.id();
        stack
            .eventually(
                &format!("/v1/bookings/{id}"),
                &admin(),
                "the booking confirmed",
                |a| a.body["status"] == "confirmed",
            )
            .await;
        bookings.push(id);
    }
    // The first booking (first in the event's ledger) gets a fact no build knows: it can
    // no longer be loaded, so it cannot be cancelled.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'booking', $1, max(sequence) + 1, 'BookingMystery', '1.0', '{\"BookingMystery\": {}}', '{}'
           FROM events WHERE aggregate_type = 'booking' AND aggregate_id = $1",
    )
    .bind(&bookings[0])
    .execute(&stack.db.pool)
    .await
    .unwrap();

    let cancelled = stack
        .command(
            &format!("/v1/events/{event}/cancel"),
            &admin(),
            &json!({"reason": "storm"}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::ACCEPTED, "{}", cancelled.body);
    // The pass goes past it: the other booking is cancelled and refunded.
    stack
        .eventually(
            &format!("/v1/bookings/{}", bookings[1]),
            &admin(),
            "the second booking cancelled",
            |a| a.body["status"] == "cancelled" && a.body["reason"] == "event_cancelled",
        )
        .await;
    // And the cancellation, failing the same way each time, is parked for an operator.
    let parked = eventually(
        Duration::from_secs(60),
        "the cancellation parked",
        || async {
            let answer = testkit::api::get(
                &stack.client,
                &stack.command.url("/v1/admin/sagas/parked"),
                &admin(),
                &[],
            )
            .await;
            let items = answer.body["items"].as_array().cloned().unwrap_or_default();
            items
                .into_iter()
                .find(|i| i["kind"] == "event_cancellation")
        },
    )
    .await;
    assert_eq!(parked["id"], event.as_str());
    assert!(
        parked["last_error"]
            .as_str()
            .unwrap()
            .contains(bookings[0].as_str()),
        "{parked}"
    );
    stack.stop().await;
}
