//! The booking saga, seen as a user sees it: through the query API. Confirmation, sold
//! out, declined payment, expired hold, cancellation by the user and by the event, an
//! unreachable gateway, and a crowd racing for few seats.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::*;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// An event in a hall of `capacity` seats, and its id.
async fn event(stack: &Stack, capacity: u32) -> String {
    let location = stack.location("Olympia", capacity).await;
    let answer = stack.event(&event_body(&location)).await;
    answer.id()
}

async fn book_with(stack: &Stack, event: &str, user: &str, seats: u32, card: &str) -> Answer {
    let answer = stack
        .command(
            &format!("/v1/events/{event}/bookings"),
            &customer(user),
            &json!({"seats": seats, "card_token": card}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    answer
}

/// Waits until the booking has `status`, and returns it as the query API shows it.
async fn until_status(stack: &Stack, booking: &str, user: &str, status: &str) -> Value {
    stack
        .eventually(
            &format!("/v1/bookings/{booking}"),
            &customer(user),
            &format!("booking {booking} to be {status}"),
            |a| a.status == StatusCode::OK && a.body["status"] == status,
        )
        .await
        .body
}

/// The event as the query API shows it once it shows `predicate`.
async fn event_when(
    stack: &Stack,
    event: &str,
    what: &str,
    predicate: impl Fn(&Value) -> bool,
) -> Value {
    stack
        .eventually(
            &format!("/v1/events/{event}"),
            &customer("watcher"),
            what,
            |a| a.status == StatusCode::OK && predicate(&a.body),
        )
        .await
        .body
}

fn seats(event: &Value) -> (i64, i64, i64) {
    (
        event["seats_held"].as_i64().unwrap(),
        event["seats_sold"].as_i64().unwrap(),
        event["seats_available"].as_i64().unwrap(),
    )
}

fn statuses(booking: &Value) -> Vec<&str> {
    booking["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect()
}

/// The payment gateway's books for a booking: the status of the intent under its key,
/// if the gateway ever heard of it.
async fn payment(stack: &Stack, booking: &str) -> Option<String> {
    stack.gateway.status_by_key(booking).await
}

#[tokio::test]
async fn a_booking_is_confirmed_and_its_seats_sold() {
    let stack = Stack::start().await;
    let event = event(&stack, 100).await;

    let booking = book_with(&stack, &event, "alice", 3, "tok_visa").await.id();

    let shown = until_status(&stack, &booking, "alice", "confirmed").await;
    assert_eq!(statuses(&shown), ["pending", "confirmed"]);
    assert_eq!(
        (&shown["reason"], &shown["refunded"]),
        (&Value::Null, &json!(false))
    );
    let shown = event_when(&stack, &event, "3 seats sold", |e| e["seats_sold"] == 3).await;
    assert_eq!(seats(&shown), (0, 3, 97));
    // The money is taken once the booking is confirmed, not merely held on the card.
    let captured = testkit::eventually(Duration::from_secs(10), "the capture", || async {
        payment(&stack, &booking)
            .await
            .filter(|status| status != "authorized")
    })
    .await;
    assert_eq!(captured, "captured");
    stack.stop().await;
}

#[tokio::test]
async fn a_request_for_more_seats_than_are_left_is_rejected_sold_out() {
    let stack = Stack::start().await;
    let event = event(&stack, 5).await;
    let first = book_with(&stack, &event, "alice", 4, "tok_visa").await.id();
    until_status(&stack, &first, "alice", "confirmed").await;

    // The gateway is down, which does not matter: a booking refused its seats never
    // reached the payment, so its saga has nothing to void and does not wait for it.
    stack.gateway.set_faults("unavailable", 0).await;
    let second = book_with(&stack, &event, "bob", 2, "tok_visa").await.id();

    let shown = until_status(&stack, &second, "bob", "rejected").await;
    assert_eq!(shown["reason"], "sold_out");
    assert_eq!(statuses(&shown), ["pending", "rejected"]);
    testkit::eventually(Duration::from_secs(10), "bob's saga to finish", || async {
        let outcome: Option<String> =
            sqlx::query_scalar("SELECT outcome FROM booking_sagas WHERE booking_id = $1")
                .bind(&second)
                .fetch_one(&stack.db.pool)
                .await
                .unwrap();
        (outcome.as_deref() == Some("rejected")).then_some(())
    })
    .await;
    stack.gateway.set_faults("normal", 0).await;
    assert_eq!(payment(&stack, &second).await, None, "nothing was charged");
    let shown = event_when(&stack, &event, "the first booking sold", |e| {
        e["seats_sold"] == 4
    })
    .await;
    assert_eq!(seats(&shown), (0, 4, 1));
    stack.stop().await;
}

#[tokio::test]
async fn a_declined_payment_leaves_the_seats_available_as_before() {
    let stack = Stack::start().await;
    let event = event(&stack, 10).await;
    let earlier = book_with(&stack, &event, "alice", 2, "tok_visa").await.id();
    until_status(&stack, &earlier, "alice", "confirmed").await;
    let before = event_when(&stack, &event, "2 sold", |e| e["seats_sold"] == 2).await;

    let booking = book_with(&stack, &event, "bob", 3, "tok_decline_insufficient_funds")
        .await
        .id();

    let shown = until_status(&stack, &booking, "bob", "rejected").await;
    assert_eq!(shown["reason"], "payment_declined");
    let after = event_when(&stack, &event, "the hold released", |e| {
        e["seats_held"] == 0
    })
    .await;
    assert_eq!(after["seats_available"], before["seats_available"]);
    assert_eq!(seats(&after), (0, 2, 8));
    // The gateway's books show the refusal, and nothing held.
    assert_eq!(payment(&stack, &booking).await.as_deref(), Some("declined"));
    stack.stop().await;
}

#[tokio::test]
async fn a_hold_expires_and_its_seats_return_after_the_ttl() {
    let stack = Stack::start_with(Options {
        hold_ttl: Duration::from_millis(1500),
        ..Options::default()
    })
    .await;
    let event = event(&stack, 10).await;

    let booking = book_with(&stack, &event, "alice", 4, "tok_timeout")
        .await
        .id();

    // Held while the payment does not answer...
    let held = event_when(&stack, &event, "4 seats held", |e| e["seats_held"] == 4).await;
    assert_eq!(seats(&held), (4, 0, 6));
    // ...then given back at the deadline.
    let shown = until_status(&stack, &booking, "alice", "rejected").await;
    assert_eq!(shown["reason"], "hold_expired");
    let after = event_when(&stack, &event, "the hold released", |e| {
        e["seats_held"] == 0
    })
    .await;
    assert_eq!(seats(&after), (0, 0, 10));
    assert_eq!(stack.command_state.metrics.deadlines_fired.get(), 1);
    stack.stop().await;
}

#[tokio::test]
async fn a_user_cancels_a_confirmed_booking_and_is_refunded() {
    let stack = Stack::start().await;
    let event = event(&stack, 10).await;
    let booking = book_with(&stack, &event, "alice", 2, "tok_visa").await.id();
    until_status(&stack, &booking, "alice", "confirmed").await;

    let cancel = stack
        .command(
            &format!("/v1/bookings/{booking}/cancel"),
            &customer("alice"),
            &json!({}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED);

    let shown = stack
        .eventually(
            &format!("/v1/bookings/{booking}"),
            &customer("alice"),
            "the refund",
            |a| a.body["refunded"] == true,
        )
        .await
        .body;
    assert_eq!(
        (&shown["status"], &shown["reason"]),
        (&json!("cancelled"), &json!("cancelled_by_user"))
    );
    assert_eq!(statuses(&shown), ["pending", "confirmed", "cancelled"]);
    let after = event_when(&stack, &event, "the seats back", |e| e["seats_sold"] == 0).await;
    assert_eq!(seats(&after), (0, 0, 10));
    assert_eq!(payment(&stack, &booking).await.as_deref(), Some("refunded"));
    stack.stop().await;
}

#[tokio::test]
async fn an_event_cancellation_refunds_every_confirmed_booking_and_rejects_the_pending_ones() {
    let stack = Stack::start().await;
    let event = event(&stack, 50).await;
    let mut confirmed = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let booking = book_with(&stack, &event, user, 2, "tok_visa").await.id();
        until_status(&stack, &booking, user, "confirmed").await;
        confirmed.push((user, booking));
    }
    // A booking whose payment never answers: pending, its seats held.
    let pending = book_with(&stack, &event, "dave", 3, "tok_timeout")
        .await
        .id();
    event_when(&stack, &event, "dave's seats held", |e| {
        e["seats_held"] == 3
    })
    .await;

    let cancel = stack
        .command(
            &format!("/v1/events/{event}/cancel"),
            &admin(),
            &json!({"reason": "storm"}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED);

    for (user, booking) in &confirmed {
        let shown = stack
            .eventually(
                &format!("/v1/bookings/{booking}"),
                &customer(user),
                "the refund",
                |a| a.body["refunded"] == true,
            )
            .await
            .body;
        assert_eq!(
            (&shown["status"], &shown["reason"]),
            (&json!("cancelled"), &json!("event_cancelled"))
        );
        assert_eq!(payment(&stack, booking).await.as_deref(), Some("refunded"));
    }
    let shown = until_status(&stack, &pending, "dave", "rejected").await;
    assert_eq!(shown["reason"], "event_cancelled");
    // Its card never answered; its key is voided, so no answer arriving late can hold
    // money for it.
    let voided = testkit::eventually(Duration::from_secs(10), "the void", || async {
        payment(&stack, &pending).await
    })
    .await;
    assert_eq!(voided, "voided");
    let after = event_when(&stack, &event, "every seat back", |e| {
        e["seats_held"] == 0 && e["seats_sold"] == 0
    })
    .await;
    assert_eq!(after["status"], "cancelled");
    let refused = stack
        .command(
            &format!("/v1/events/{event}/bookings"),
            &customer("erin"),
            &json!({"seats": 1, "card_token": "tok_visa"}),
        )
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::CONFLICT, "event_cancelled")
    );
    stack.stop().await;
}

#[tokio::test]
async fn an_unreachable_gateway_is_retried_then_the_booking_is_compensated() {
    let stack = Stack::start_with(Options {
        hold_ttl: Duration::from_secs(3),
        // The circuit breaker opens during the outage; it lets a probe through soon
        // enough for a hold of 3 s.
        command: |config| config.payment.circuit_open = Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let event = event(&stack, 10).await;
    let gateway = &stack.gateway;
    let retried = || {
        stack
            .command_state
            .metrics
            .saga_steps
            .get_or_create(&command_api::metrics::StepLabels {
                step: "authorize",
                outcome: "retried",
            })
            .get()
    };

    // A short outage: retried with back-off, then confirmed.
    gateway.set_faults("unavailable", 0).await;
    let lucky = book_with(&stack, &event, "alice", 1, "tok_visa").await.id();
    testkit::eventually(Duration::from_secs(10), "two retries", || async {
        (retried() >= 2).then_some(())
    })
    .await;
    gateway.set_faults("normal", 0).await;
    until_status(&stack, &lucky, "alice", "confirmed").await;

    // An outage longer than the hold: the booking is compensated at the deadline.
    gateway.set_faults("unavailable", 0).await;
    let unlucky = book_with(&stack, &event, "bob", 2, "tok_visa").await.id();
    let shown = until_status(&stack, &unlucky, "bob", "rejected").await;
    gateway.set_faults("normal", 0).await;
    assert_eq!(shown["reason"], "hold_expired");
    let after = event_when(&stack, &event, "bob's hold released", |e| {
        e["seats_held"] == 0
    })
    .await;
    assert_eq!(seats(&after), (0, 1, 9));
    // Once the gateway is back, the key is voided: nothing can be held for bob.
    let voided = testkit::eventually(Duration::from_secs(30), "the void", || async {
        payment(&stack, &unlucky).await
    })
    .await;
    assert_eq!(voided, "voided");
    stack.stop().await;
}

#[tokio::test]
async fn three_hundred_buyers_for_two_hundred_seats_never_oversell() {
    let stack = Stack::start().await;
    let event = event(&stack, 200).await;

    // Someone watches the event the whole time: no read may show more than 200 taken.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (client, url, stop) = (
            stack.client.clone(),
            stack.query.url(&format!("/v1/events/{event}")),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let shown = testkit::api::get(&client, &url, &customer("watcher"), &[]).await;
                if shown.status == StatusCode::OK {
                    let (held, sold, available) = seats(&shown.body);
                    assert!(held + sold <= 200, "oversold: {}", shown.body);
                    assert_eq!(held + sold + available, 200, "{}", shown.body);
                    reads += 1;
                }
            }
            reads
        })
    };

    // 300 requests of 1 to 4 seats at once (a fixed pseudo-random mix).
    let requests: Vec<(String, u32)> = (0..300u32)
        .map(|i| (format!("buyer-{i}"), 1 + (i * 7 + i / 3) % 4))
        .collect();
    let answers = join_all(
        requests
            .iter()
            .map(|(user, seats)| book_with(&stack, &event, user, *seats, "tok_visa")),
    )
    .await;

    let mut confirmed_seats = 0;
    for ((user, seats), answer) in requests.iter().zip(&answers) {
        let shown = stack
            .eventually(
                &format!("/v1/bookings/{}", answer.id()),
                &customer(user),
                "a final status",
                |a| a.body["status"] == "confirmed" || a.body["status"] == "rejected",
            )
            .await
            .body;
        if shown["status"] == "confirmed" {
            confirmed_seats += i64::from(*seats);
        } else {
            assert_eq!(shown["reason"], "sold_out", "{shown}");
        }
    }
    let last = event_when(&stack, &event, "every booking settled", |e| {
        e["seats_held"] == 0
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let reads = watcher
        .await
        .expect("a read showed more seats taken than there are");

    assert!(reads > 10, "the watcher barely read: {reads}");
    assert_eq!(
        last["seats_sold"], confirmed_seats,
        "sold seats are the confirmed bookings' seats"
    );
    assert!(
        confirmed_seats > 150,
        "the event should be nearly full: {confirmed_seats}"
    );
    let authorized: i64 = stack
        .db
        .scalar("SELECT count(*) FROM payment_gateway.payment_intents WHERE status = 'captured'")
        .await;
    let confirmed = answers.len() as i64
        - stack
            .db
            .scalar("SELECT count(*) FROM booking_sagas WHERE outcome = 'rejected'")
            .await;
    assert_eq!(authorized, confirmed, "one payment per confirmed booking");
    stack.stop().await;
}
