//! The audit endpoints on a whole system: a booking's history and state through its
//! whole saga, and facts stored in an older version read through the upcaster by every
//! reader (the audit endpoints, the projector, the sagas). The store-only audit tests
//! (export, verify, the CLI) are in query-api's own tests.

use std::collections::HashSet;
use std::time::Duration;

use e2e::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_bookings_history_and_state_through_its_whole_saga() {
    let stack = Stack::start().await;
    let location = stack.location("Olympia", 100).await;
    let event = stack.event(&event_body(&location)).await.id();
    let booking = stack.book(&event, "alice", 2).await.id();
    stack
        .eventually(
            &format!("/v1/bookings/{booking}"),
            &customer("alice"),
            "the booking to be confirmed",
            |a| a.body["status"] == "confirmed",
        )
        .await;
    let cancel = stack
        .command(
            &format!("/v1/bookings/{booking}/cancel"),
            &customer("alice"),
            &json!({}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED, "{}", cancel.body);
    stack
        .eventually(
            &format!("/v1/bookings/{booking}"),
            &customer("alice"),
            "the booking to be refunded",
            |a| a.body["refunded"] == true,
        )
        .await;

    // The history: every fact of the saga, with its metadata and a chained hash.
    let path = format!("/v1/audit/streams/booking/{booking}");
    let history = stack.query(&path, &admin()).await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    let events = history.body["events"].as_array().unwrap();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "BookingRequested",
            "BookingConfirmed",
            "BookingCancelled",
            "BookingRefunded"
        ]
    );
    assert_eq!(events[0]["event_version"], "3.0");
    // The payment method the gateway gave for the card, never the card token.
    let requested = &events[0]["payload"]["BookingRequested"];
    assert!(requested["payment_method"]
        .as_str()
        .unwrap()
        .starts_with("pm_"));
    assert!(requested.get("card_token").is_none());
    assert_eq!(events[0]["payload"]["BookingRequested"]["user_id"], "alice");
    assert_eq!(
        events[2]["payload"]["BookingCancelled"]["reason"],
        "cancelled_by_user"
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence"], i as i64 + 1);
        for key in ["user_id", "correlation_id", "causation_id", "recorded_at"] {
            assert!(e["metadata"][key].is_string(), "{key} missing in {e}");
        }
        assert_eq!(e["hash"].as_str().unwrap().len(), 64);
    }
    // One correlation id from each request through the saga it started: the booking
    // request's to the confirmation, the cancellation's to the refund.
    let correlation = |i: usize| events[i]["metadata"]["correlation_id"].as_str().unwrap();
    assert_eq!(correlation(0), correlation(1));
    assert_eq!(correlation(2), correlation(3));
    assert_ne!(correlation(0), correlation(2));
    let hashes: HashSet<&str> = events.iter().map(|e| e["hash"].as_str().unwrap()).collect();
    assert_eq!(hashes.len(), 4);
    assert!(history.body["next_cursor"].is_null());

    // Paged: two at a time, the same events.
    let first = stack.query(&format!("{path}?limit=2"), &admin()).await;
    assert_eq!(first.body["events"].as_array().unwrap().len(), 2);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let second = stack
        .query(&format!("{path}?limit=2&cursor={cursor}"), &admin())
        .await;
    assert_eq!(second.body["events"][0]["sequence"], 3);
    assert_eq!(second.body["events"].as_array().unwrap().len(), 2);

    // The state at each point of the saga.
    let state = |at: String| {
        let stack = &stack;
        let path = format!("{path}/state{at}");
        async move { stack.query(&path, &admin()).await }
    };
    let pending = state("?at_sequence=1".into()).await;
    assert_eq!(pending.status, StatusCode::OK, "{}", pending.body);
    assert_eq!(pending.body["sequence"], 1);
    assert_eq!(pending.body["state"]["state"]["status"], "pending");
    assert_eq!(pending.body["state"]["state"]["unit_price_cents"], 2500);
    let confirmed = state("?at_sequence=2".into()).await;
    assert_eq!(confirmed.body["state"]["state"]["status"], "confirmed");
    let now = state(String::new()).await;
    assert_eq!(now.body["sequence"], 4);
    assert_eq!(now.body["state"]["state"]["status"], "cancelled");
    assert_eq!(now.body["state"]["state"]["refunded"], true);
    // By time: as of the confirmation's recorded_at, the booking was confirmed.
    let confirmed_at = events[1]["metadata"]["recorded_at"].as_str().unwrap();
    let by_time = state(format!(
        "?at={}",
        confirmed_at.replace(':', "%3A").replace('+', "%2B")
    ))
    .await;
    assert_eq!(by_time.status, StatusCode::OK, "{}", by_time.body);
    assert_eq!(by_time.body["sequence"], 2);
    let before = state("?at=2000-01-01T00:00:00Z".into()).await;
    assert_eq!(before.status, StatusCode::NOT_FOUND, "{}", before.body);

    // The event's seat ledger replays too.
    let ledger = stack
        .query(&format!("/v1/audit/streams/event/{event}/state"), &admin())
        .await;
    assert_eq!(ledger.status, StatusCode::OK, "{}", ledger.body);

    // Bad input: clear 4xx with the envelope.
    for (path, status) in [
        (
            format!("{path}/state?at_sequence=0"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("{path}/state?at_sequence=1&at=2030-01-01T00:00:00Z"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("{path}/state?at=yesterday"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("{path}?cursor=zz"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (format!("{path}?limit=0"), StatusCode::UNPROCESSABLE_ENTITY),
        (
            "/v1/audit/streams/booking/nope".into(),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/v1/audit/streams/ticket/{booking}"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/v1/audit/streams/ticket/{booking}/state"),
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/audit/export?after=-1".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/audit/export?after=999999999".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let answer = stack.query(&path, &admin()).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        assert!(
            answer.body["error"]["code"].is_string(),
            "{path}: {}",
            answer.body
        );
    }
    // Admins only.
    for path in [
        path.clone(),
        format!("{path}/state"),
        "/v1/audit/verify".into(),
        "/v1/audit/export".into(),
    ] {
        let answer = stack.query(&path, &customer("alice")).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
    }

    // Nothing was tampered with.
    let verify = stack.query("/v1/audit/verify", &admin()).await;
    assert_eq!(verify.body["ok"], true, "{}", verify.body);
    stack.stop().await;
}

#[tokio::test]
async fn bookings_stored_in_version_1_are_read_as_version_2_everywhere() {
    let stack = Stack::start_with(Options {
        sweep: Duration::from_millis(200),
        ..Options::default()
    })
    .await;
    let location = stack.location("Olympia", 100).await;
    let event = stack.event(&event_body(&location)).await.id();
    // Booking requests exactly as version 1.0 stored them (no unit_price_cents), with
    // the sagas command-api starts in the statement that appends such a fact (seeded
    // straight into the store, they get them here).
    stack.seed_bookings(&event, 3).await;
    sqlx::query(
        "INSERT INTO booking_sagas (booking_id, event_id, seats, amount_cents, currency, card_token, correlation_id, step)
         SELECT aggregate_id, payload -> 'BookingRequested' ->> 'event_id',
                (payload -> 'BookingRequested' ->> 'seats')::integer,
                (payload -> 'BookingRequested' ->> 'amount_cents')::bigint,
                payload -> 'BookingRequested' ->> 'currency', payload -> 'BookingRequested' ->> 'card_token',
                metadata ->> 'correlation_id', 'reserve'
           FROM events WHERE event_type = 'BookingRequested'",
    )
    .execute(&stack.db.pool)
    .await
    .unwrap();
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE event_type = 'BookingRequested' AND event_version = '1.0'",
    )
    .fetch_all(&stack.db.pool)
    .await
    .unwrap();
    assert_eq!(ids.len(), 3);
    for id in &ids {
        // The saga loaded it on the command side and carried it to the end; the
        // projector read it.
        let booking = stack
            .eventually(
                &format!("/v1/bookings/{id}"),
                &admin(),
                "the version 1 booking to be confirmed",
                |a| a.body["status"] == "confirmed",
            )
            .await;
        let seats = booking.body["seats"].as_i64().unwrap();
        // The audit shows it as stored, and replays it upcast.
        let history = stack
            .query(&format!("/v1/audit/streams/booking/{id}"), &admin())
            .await;
        assert_eq!(history.body["events"][0]["event_version"], "1.0");
        assert!(history.body["events"][0]["payload"]["BookingRequested"]
            .get("unit_price_cents")
            .is_none());
        let state = stack
            .query(
                &format!("/v1/audit/streams/booking/{id}/state?at_sequence=1"),
                &admin(),
            )
            .await;
        assert_eq!(state.status, StatusCode::OK, "{}", state.body);
        let replayed = &state.body["state"]["state"];
        assert_eq!(replayed["unit_price_cents"], 2500);
        assert_eq!(replayed["amount_cents"], 2500 * seats);
    }
    stack.stop().await;
}
