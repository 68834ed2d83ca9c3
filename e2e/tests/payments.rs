//! Money through the payment gateway across HTTP: no authorization outlives its
//! booking, whatever races the saga (a cancellation mid-authorization, an
//! authorization this side gave up on that the gateway carries out later), a circuit
//! breaker that holds sagas back during an outage instead of failing them, and the
//! reconciliation sweep that finds and mends what the sagas cannot see.

use std::time::Duration;

use domain::booking::{BookingFact, Reason};
use domain::values::Currency;
use e2e::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::eventually;
use uuid::Uuid;

async fn event(stack: &Stack, capacity: u32) -> String {
    let location = stack.location("Olympia", capacity).await;
    stack.event(&event_body(&location)).await.id()
}

async fn book_with(stack: &Stack, event: &str, user: &str, card: &str) -> String {
    let answer = stack
        .command(
            &format!("/v1/events/{event}/bookings"),
            &customer(user),
            &json!({"seats": 2, "card_token": card}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    answer.id()
}

async fn until_status(stack: &Stack, booking: &str, status: &str) -> Value {
    stack
        .eventually(
            &format!("/v1/bookings/{booking}"),
            &admin(),
            &format!("booking {booking} to be {status}"),
            |a| a.status == StatusCode::OK && a.body["status"] == status,
        )
        .await
        .body
}

/// The saga's step, and whether a runner holds it now.
async fn saga(stack: &Stack, booking: &str) -> (String, bool) {
    sqlx::query_as(
        "SELECT step, coalesce(lease_until > now(), false) FROM booking_sagas WHERE booking_id = $1",
    )
    .bind(booking)
    .fetch_one(&stack.db.pool)
    .await
    .unwrap()
}

/// Waits until the booking's saga is done.
async fn saga_done(stack: &Stack, booking: &str) {
    eventually(Duration::from_secs(60), "the saga to finish", || async {
        (saga(stack, booking).await.0 == "done").then_some(())
    })
    .await;
}

/// Authorization attempts command-api sent the gateway (every outcome but "not sent").
fn authorizations_sent(stack: &Stack) -> u64 {
    ["ok", "refused", "unavailable", "timeout"]
        .into_iter()
        .map(|outcome| {
            stack
                .command_state
                .metrics
                .payment_calls
                .get_or_create(&command_api::metrics::PaymentCallLabels {
                    operation: "authorize",
                    outcome,
                })
                .get()
        })
        .sum()
}

/// Waits until the gateway has carried out every authorization sent to it.
async fn authorizations_landed(stack: &Stack) {
    eventually(
        Duration::from_secs(20),
        "every authorization to land at the gateway",
        || async { (stack.gateway.in_flight("create").await == 0).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn an_event_cancelled_while_the_payment_is_being_authorized_leaves_no_money_held() {
    // The authorization takes the gateway 3 s (this side waits up to 10 s for it): time
    // enough for the cancellation.
    let stack = Stack::start_with(Options {
        command: |config| config.payment.timeout = Duration::from_secs(10),
        ..Options::default()
    })
    .await;
    stack.gateway.set_faults("normal", 3000).await;
    let event = event(&stack, 10).await;
    let booking = book_with(&stack, &event, "alice", "tok_visa").await;
    eventually(
        Duration::from_secs(10),
        "the authorization under way",
        || async { (stack.gateway.in_flight("create").await == 1).then_some(()) },
    )
    .await;
    // From now on the gateway answers at once: whatever the cancellation sends it
    // (a void) is carried out before the slow authorization is.
    stack.gateway.set_faults("normal", 0).await;

    let cancel = stack
        .command(
            &format!("/v1/events/{event}/cancel"),
            &admin(),
            &json!({"reason": "storm"}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED);

    let shown = until_status(&stack, &booking, "rejected").await;
    assert_eq!(shown["reason"], "event_cancelled");
    saga_done(&stack, &booking).await;
    authorizations_landed(&stack).await;
    // The release waited for the authorization in flight (fencing): it voided a real
    // authorization (with its amount), not a key nothing had arrived under yet. It holds
    // nothing now, and nothing can change that (the key is voided at the gateway).
    let intent = stack.gateway.intent_by_key(&booking).await.unwrap();
    assert_eq!(
        (intent.status.as_str(), intent.amount),
        ("voided", Some(5000)),
        "{intent:?}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn an_authorization_given_up_on_but_carried_out_by_the_gateway_is_voided() {
    // Each authorization takes the gateway 8 s; this side waits 400 ms per attempt,
    // and the hold lasts 1.5 s: every attempt is given up on, and the hold expires
    // while all of them are still on their way.
    let stack = Stack::start_with(Options {
        hold_ttl: Duration::from_millis(1500),
        command: |config| {
            config.payment.timeout = Duration::from_millis(400);
            config.payment.retries = 0;
            config.payment.circuit_open = Duration::from_millis(200);
        },
        ..Options::default()
    })
    .await;
    stack.gateway.set_faults("normal", 8000).await;
    let event = event(&stack, 10).await;
    let booking = book_with(&stack, &event, "alice", "tok_visa").await;

    // The hold expires; the saga is releasing (seen in the store, at once).
    eventually(Duration::from_secs(20), "the release", || async {
        let (step, _) = saga(&stack, &booking).await;
        (step == "release" || step == "done").then_some(())
    })
    .await;
    // The gateway answers at once from now on (requests already in it keep their
    // 8 s): the release's void goes through before any authorization lands.
    stack.gateway.set_faults("normal", 0).await;
    let shown = until_status(&stack, &booking, "rejected").await;
    assert_eq!(shown["reason"], "hold_expired");
    saga_done(&stack, &booking).await;
    assert!(authorizations_sent(&stack) >= 1);
    authorizations_landed(&stack).await;
    // The void came first and the gateway kept it: the late authorizations were
    // refused there, and nothing was ever held (the voided key has no amount).
    let intent = stack.gateway.intent_by_key(&booking).await.unwrap();
    assert_eq!(
        (intent.status.as_str(), intent.amount),
        ("voided", None),
        "{intent:?}"
    );
    let seats = stack
        .eventually(
            &format!("/v1/events/{event}"),
            &admin(),
            "the hold released",
            |a| a.body["seats_held"] == 0,
        )
        .await;
    assert_eq!(seats.body["seats_available"], 10);
    stack.stop().await;
}

#[tokio::test]
async fn an_open_circuit_holds_the_saga_back_until_the_gateway_returns() {
    let stack = Stack::start_with(Options {
        command: |config| {
            config.payment.timeout = Duration::from_millis(300);
            config.payment.retries = 1;
            config.payment.circuit_failures = 3;
            config.payment.circuit_open = Duration::from_millis(1500);
        },
        ..Options::default()
    })
    .await;
    let event = event(&stack, 10).await;
    let metrics = &stack.command_state.metrics;
    let circuit = |state| {
        metrics
            .payment_circuit_state
            .get_or_create(&command_api::metrics::CircuitLabel { state })
            .get()
    };
    assert_eq!(circuit("closed"), 1);

    stack.gateway.set_faults("unavailable", 0).await;
    let booking = book_with(&stack, &event, "alice", "tok_visa").await;
    eventually(Duration::from_secs(20), "the circuit to open", || async {
        (circuit("open") == 1).then_some(())
    })
    .await;
    // While it is open, calls are not even sent, and the booking waits, pending.
    eventually(Duration::from_secs(20), "a call held back", || async {
        let held_back = metrics
            .payment_calls
            .get_or_create(&command_api::metrics::PaymentCallLabels {
                operation: "authorize",
                outcome: "circuit_open",
            })
            .get();
        (held_back > 0).then_some(())
    })
    .await;
    until_status(&stack, &booking, "pending").await;
    assert!(metrics.payment_circuit_opened.get() >= 1);

    // The gateway returns: a probe closes the circuit and the booking is confirmed.
    stack.gateway.set_faults("normal", 0).await;
    until_status(&stack, &booking, "confirmed").await;
    eventually(Duration::from_secs(10), "the capture", || async {
        (stack.gateway.status_by_key(&booking).await.as_deref() == Some("captured")).then_some(())
    })
    .await;
    assert_eq!(circuit("closed"), 1);
    // What /metrics shows, under a name with "circuit" in it.
    let text = stack
        .client
        .get(stack.command.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("boxoffice_payment_circuit_state{state=\"closed\"} 1"));
    assert!(text.contains("boxoffice_payment_call_duration_seconds"));
    stack.stop().await;
}

#[tokio::test]
async fn a_burst_of_buyers_waits_its_turn_at_a_busy_gateway_instead_of_opening_the_circuit() {
    // The gateway works on 2 requests at once, 100 ms each: the last of 32 card tokens
    // sent together is done 1.6 s after the first. An attempt may take 1 s. Sent all at
    // once, the last dozen would wait at the gateway past their attempt's timeout, time
    // out together, and the circuit would open on a gateway that is only busy: those
    // buyers would be turned away 503. Waiting their turn here (2 calls out at a time),
    // every attempt takes 100 ms.
    let stack = Stack::start_with(Options {
        command: |config| {
            config.payment.timeout = Duration::from_millis(1000);
            // A deadline well past the queue (7 attempts: 10 s), so that a loaded
            // machine does not turn a long wait into a 503; without turns the circuit
            // still opens (its calls are not retried while it is open).
            config.payment.retries = 6;
            config.payment.max_in_flight = 2;
        },
        gateway: |config| {
            config.capacity = 2;
            config.latency = Duration::from_millis(100);
        },
        ..Options::default()
    })
    .await;
    let event = event(&stack, 100).await;
    let buyers: Vec<String> = (0..32).map(|i| format!("buyer-{i}")).collect();
    let bookings = futures::future::join_all(
        buyers
            .iter()
            .map(|buyer| book_with(&stack, &event, buyer, "tok_visa")),
    )
    .await;
    for booking in &bookings {
        until_status(&stack, booking, "confirmed").await;
        // The capture follows the confirmation.
        eventually(Duration::from_secs(30), "the capture", || async {
            (stack.gateway.status_by_key(booking).await.as_deref() == Some("captured"))
                .then_some(())
        })
        .await;
    }
    let metrics = &stack.command_state.metrics;
    assert_eq!(
        metrics.payment_circuit_opened.get(),
        0,
        "a busy gateway is not an outage"
    );
    assert_eq!(
        metrics.payment_calls_waiting.get(),
        0,
        "no call is left counted as waiting"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_booking_while_the_gateway_is_down_is_answered_503_and_appends_nothing() {
    let stack = Stack::start_with(Options {
        command: |config| {
            config.payment.timeout = Duration::from_millis(300);
            config.payment.retries = 0;
        },
        ..Options::default()
    })
    .await;
    let event = event(&stack, 10).await;
    let booking_facts = || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'BookingRequested'")
                .fetch_one(&stack.db.pool)
                .await
                .unwrap();
        n
    };
    let path = format!("/v1/events/{event}/bookings");
    let url = stack.command.url(&path);
    let body = json!({"seats": 2, "card_token": "tok_visa"});
    let key = [("Idempotency-Key", "gateway-down-1")];

    stack.gateway.set_faults_everywhere("unavailable", 0).await;
    let refused = testkit::api::post(&stack.client, &url, &customer("alice"), &key, &body).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );
    assert_eq!(refused.code(), "payment_unavailable");
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(booking_facts().await, 0, "nothing is appended");

    // Once the gateway is back, the same request (same key) is accepted.
    stack.gateway.set_faults_everywhere("normal", 0).await;
    let accepted = eventually(Duration::from_secs(20), "the booking accepted", || async {
        let a = testkit::api::post(&stack.client, &url, &customer("alice"), &key, &body).await;
        (a.status == StatusCode::ACCEPTED).then_some(a)
    })
    .await;
    until_status(&stack, &accepted.id(), "confirmed").await;
    assert_eq!(
        booking_facts().await,
        1,
        "one booking, however often it was asked"
    );
    stack.stop().await;
}

/// Appends a booking's facts straight into the store, as if its saga had run on
/// another system: requested, then `then`.
async fn stored_booking(stack: &Stack, event: &str, then: Option<BookingFact>) -> String {
    let id = Uuid::now_v7().to_string();
    let requested = BookingFact::BookingRequested {
        event_id: event.parse().unwrap(),
        user_id: "zoe".into(),
        seats: 1,
        unit_price_cents: 2500,
        amount_cents: 2500,
        currency: Currency::parse("EUR").unwrap(),
        payment_method: Some("pm_stored".into()),
        contact: None,
    };
    let mut facts = vec![requested];
    facts.extend(then);
    for (sequence, fact) in facts.iter().enumerate() {
        let payload = serde_json::to_value(fact).unwrap();
        // `{"BookingRequested": {..}}`, or `"BookingConfirmed"` for a fact without data.
        let event_type = match &payload {
            Value::String(name) => name.clone(),
            other => other.as_object().unwrap().keys().next().unwrap().clone(),
        };
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             VALUES ('booking', $1, $2, $3, '3.0', $4, '{\"user_id\": \"zoe\"}')",
        )
        .bind(&id)
        .bind(sequence as i64 + 1)
        .bind(&event_type)
        .bind(&payload)
        .execute(&stack.db.pool)
        .await
        .unwrap();
    }
    id
}

#[tokio::test]
async fn the_reconciliation_sweep_captures_voids_and_leaves_pending_payments_alone() {
    let stack = Stack::start_with(Options {
        command: |config| {
            config.payment.reconcile_every = Duration::from_millis(300);
            config.payment.reconcile_after = Duration::ZERO;
        },
        ..Options::default()
    })
    .await;
    let event = event(&stack, 10).await;
    // Bookings whose payments the gateway holds, but no saga of ours will settle: a
    // confirmed one never captured, a rejected one never voided, one still pending,
    // and a payment for no booking of ours at all.
    let confirmed = stored_booking(&stack, &event, Some(BookingFact::BookingConfirmed)).await;
    let rejected = stored_booking(
        &stack,
        &event,
        Some(BookingFact::BookingRejected {
            reason: Reason::HoldExpired,
        }),
    )
    .await;
    let pending = stored_booking(&stack, &event, None).await;
    let stranger = "no-such-booking";
    // Created by this store, as its sagas do (the intent names the store).
    let store: Uuid = sqlx::query_scalar("SELECT id FROM store_identity")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    let ours = json!({"boxoffice_store": store.to_string()});
    for key in [&confirmed, &rejected, &pending, &stranger.to_owned()] {
        let intent = stack
            .gateway
            .authorize(key, 2500, "tok_visa", ours.clone())
            .await;
        assert_eq!(intent["status"], "authorized", "{intent}");
    }
    // Another store's payment on the same gateway account: none of ours to touch.
    let theirs = stack
        .gateway
        .authorize(
            "another-stores-booking",
            900,
            "tok_visa",
            json!({"boxoffice_store": Uuid::new_v4().to_string()}),
        )
        .await;
    assert_eq!(theirs["status"], "authorized");

    let findings = |finding| {
        stack
            .command_state
            .metrics
            .reconciliation_findings
            .get_or_create(&command_api::metrics::FindingLabel { finding })
            .get()
    };
    eventually(Duration::from_secs(20), "the sweep's findings", || async {
        (findings("captured") == 1 && findings("voided") == 1 && findings("orphaned") == 1)
            .then_some(())
    })
    .await;
    assert_eq!(
        stack.gateway.status_by_key(&confirmed).await.as_deref(),
        Some("captured")
    );
    assert_eq!(
        stack.gateway.status_by_key(&rejected).await.as_deref(),
        Some("voided")
    );
    assert_eq!(
        stack.gateway.status_by_key(stranger).await.as_deref(),
        Some("voided")
    );
    // Later passes find nothing more, and leave the pending booking's payment to its
    // saga.
    let passes = stack.command_state.metrics.reconciliation_passes.get();
    eventually(Duration::from_secs(20), "two more passes", || async {
        (stack.command_state.metrics.reconciliation_passes.get() >= passes + 2).then_some(())
    })
    .await;
    assert_eq!(
        (
            findings("captured"),
            findings("voided"),
            findings("orphaned")
        ),
        (1, 1, 1)
    );
    assert_eq!(
        stack.gateway.status_by_key(&pending).await.as_deref(),
        Some("authorized")
    );
    assert_eq!(
        stack
            .gateway
            .status_by_key("another-stores-booking")
            .await
            .as_deref(),
        Some("authorized")
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_confirmed_booking_cannot_be_cancelled_once_its_show_has_started() {
    let stack = Stack::start().await;
    let location = stack.location("Olympia", 10).await;
    // An event that starts in two seconds (the API takes no event in the past).
    let starts = chrono::Utc::now() + chrono::Duration::seconds(2);
    let body = json!({
        "name": "Matinee", "location_id": location, "hall": "Main",
        "starts_at": starts.to_rfc3339(), "ends_at": (starts + chrono::Duration::hours(2)).to_rfc3339(),
        "price_cents": 2500, "currency": "EUR",
    });
    let event = stack.event(&body).await.id();
    let booking = book_with(&stack, &event, "alice", "tok_visa").await;
    until_status(&stack, &booking, "confirmed").await;
    saga_done(&stack, &booking).await;
    // The show begins (the condition is the clock itself).
    let left = (starts - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(50)).await;
    let events_before = stack.db.scalar("SELECT count(*) FROM events").await;

    let cancel = stack
        .command(
            &format!("/v1/bookings/{booking}/cancel"),
            &customer("alice"),
            &json!({}),
        )
        .await;

    assert_eq!(
        (cancel.status, cancel.code()),
        (StatusCode::CONFLICT, "event_started"),
        "{}",
        cancel.body
    );
    assert_eq!(
        stack.db.scalar("SELECT count(*) FROM events").await,
        events_before,
        "nothing was appended"
    );
    assert_eq!(saga(&stack, &booking).await.0, "done", "no refund started");
    assert_eq!(
        stack.gateway.status_by_key(&booking).await.as_deref(),
        Some("captured")
    );
    stack.stop().await;
}
