//! command-api killed with SIGKILL in the middle of sagas, then restarted: every booking
//! ends confirmed or rejected, no seat is held twice or left held, no card is charged
//! twice. Checked against the event store (the truth) and the gateway's books.

mod common;

use std::time::Duration;

use common::*;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use testkit::{eventually, TestDb};

const BOOKINGS: usize = 200;

fn card(i: usize) -> &'static str {
    match i % 7 {
        0 => "tok_decline",
        1 => "tok_timeout",
        _ => "tok_visa",
    }
}

#[tokio::test]
async fn every_saga_finishes_after_a_crash_without_double_holds_or_charges() {
    let db = TestDb::create().await;
    let mut gateway = testkit::gateway::config(&db);
    gateway.latency = Duration::from_millis(30);
    let gateway = testkit::gateway::Gateway::start(gateway).await;
    let mut config = config(&db.url, "127.0.0.1:1", &testkit::unique_topic(), false);
    config.saga = saga_config(true);
    config.saga.hold_ttl = Duration::from_secs(3);
    config.payment.url = gateway.base_url.clone();
    let mut process = command_api_process(&config).await;
    let client = testkit::http();
    let base = process.base_url();
    let location = post_json(
        &client,
        &base,
        "/v1/locations",
        &admin(),
        None,
        &testkit::api::location_body("Olympia", 150),
    )
    .await
    .id();
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

    let answers = join_all((0..BOOKINGS).map(|i| {
        let body = json!({"seats": 1 + i % 2, "card_token": card(i)});
        let (client, base, event) = (client.clone(), base.clone(), event.clone());
        async move {
            post_json(
                &client,
                &base,
                &format!("/v1/events/{event}/bookings"),
                &customer(&format!("u{i}")),
                None,
                &body,
            )
            .await
        }
    }))
    .await;
    assert!(answers.iter().all(|a| a.status == StatusCode::ACCEPTED));

    // Kill it while sagas are half done.
    eventually(Duration::from_secs(60), "sagas to be under way", || async {
        let done = db
            .scalar("SELECT count(*) FROM booking_sagas WHERE step = 'done'")
            .await;
        (done > 10 && done < BOOKINGS as i64 - 20).then_some(())
    })
    .await;
    process.kill();
    let unfinished = db
        .scalar("SELECT count(*) FROM booking_sagas WHERE step <> 'done'")
        .await;
    assert!(unfinished > 0, "every saga finished before the crash");

    // Restarted, it finishes them all (the leases of the dead process expire first).
    let restarted_at = chrono::Utc::now();
    let restarted = command_api_process(&config).await;
    eventually(Duration::from_secs(120), "every saga to finish", || async {
        (db.scalar("SELECT count(*) FROM booking_sagas WHERE step <> 'done'")
            .await
            == 0)
            .then_some(())
    })
    .await;

    // Every booking ended confirmed or rejected, for the reason its card calls for.
    let finals: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT b.aggregate_id, b.event_type, b.payload -> b.event_type ->> 'reason'
           FROM events b
          WHERE b.aggregate_type = 'booking'
            AND b.sequence = (SELECT max(sequence) FROM events x WHERE x.aggregate_type = 'booking' AND x.aggregate_id = b.aggregate_id)",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(finals.len(), BOOKINGS);
    let mut confirmed = Vec::new();
    for (i, answer) in answers.iter().enumerate() {
        let (_, last, reason) = finals.iter().find(|(id, _, _)| *id == answer.id()).unwrap();
        match (card(i), last.as_str(), reason.as_deref()) {
            ("tok_visa", "BookingConfirmed", None) => confirmed.push((answer.id(), 1 + i % 2)),
            // A hold that expired while no runner was alive is rejected at its deadline,
            // whatever the card: the payment was never tried.
            ("tok_visa", "BookingRejected", Some("sold_out" | "hold_expired"))
            | (
                "tok_decline",
                "BookingRejected",
                Some("payment_declined" | "sold_out" | "hold_expired"),
            )
            | ("tok_timeout", "BookingRejected", Some("hold_expired" | "sold_out")) => {}
            other => panic!("booking {i} ended {other:?}"),
        }
    }

    // None stayed pending past its deadline: an expired hold was rejected at its
    // deadline, or as soon as the restarted process was up if it passed meanwhile.
    let late: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM booking_sagas s JOIN events e
             ON e.aggregate_type = 'booking' AND e.aggregate_id = s.booking_id AND e.event_type = 'BookingRejected'
          WHERE s.reason = 'hold_expired'
            AND (e.metadata ->> 'recorded_at')::timestamptz > greatest(s.hold_deadline, $1) + interval '3 seconds'",
    )
    .bind(restarted_at)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(late, 0, "a booking stayed pending well past its deadline");

    // The seat ledger: each booking reserved at most once, released at most once,
    // nothing held at the end, and sold seats are the confirmed bookings' seats.
    let twice: i64 = db
        .scalar(
            "SELECT count(*) FROM (
                 SELECT payload -> event_type ->> 'booking_id' AS booking, event_type, count(*)
                   FROM events WHERE aggregate_type = 'event' AND event_type IN ('SeatsReserved', 'SeatsRefused', 'SeatsReleased', 'SeatsSold')
                  GROUP BY 1, 2 HAVING count(*) > 1) t",
        )
        .await;
    assert_eq!(
        twice, 0,
        "a booking's seats were reserved, sold or released twice"
    );
    let (held, sold): (i64, i64) = sqlx::query_as(
        "SELECT (payload -> event_type -> 'counts' ->> 'held')::bigint, (payload -> event_type -> 'counts' ->> 'sold')::bigint
           FROM events WHERE aggregate_type = 'event' AND aggregate_id = $1 AND payload -> event_type ? 'counts'
          ORDER BY sequence DESC LIMIT 1",
    )
    .bind(&event)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(held, 0, "seats are still held");
    assert_eq!(sold, confirmed.iter().map(|(_, s)| *s as i64).sum::<i64>());

    // The gateway's books: one payment captured per confirmed booking, and no money
    // held or taken for the others.
    let taken: Vec<(String, String)> = sqlx::query_as(
        "SELECT idempotency_key, status FROM payment_gateway.payment_intents
          WHERE status IN ('authorized', 'captured') ORDER BY idempotency_key",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let mut expected: Vec<(String, String)> = confirmed
        .iter()
        .map(|(id, _)| (id.clone(), "captured".to_owned()))
        .collect();
    expected.sort();
    assert_eq!(taken, expected);
    assert_eq!(restarted.terminate().await, Some(0));
    gateway.stop().await;
}

#[tokio::test]
async fn a_crash_between_the_authorization_and_its_save_ends_in_one_capture() {
    let db = TestDb::create().await;
    let gateway = testkit::gateway::Gateway::start(testkit::gateway::config(&db)).await;
    let mut config = config(&db.url, "127.0.0.1:1", &testkit::unique_topic(), false);
    config.saga = saga_config(true);
    config.payment.url = gateway.base_url.clone();
    let mut process = command_api_process(&config).await;
    let client = testkit::http();
    let base = process.base_url();
    let location = post_json(
        &client,
        &base,
        "/v1/locations",
        &admin(),
        None,
        &testkit::api::location_body("Olympia", 10),
    )
    .await
    .id();
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

    // The gateway authorizes, but its answer never comes back.
    gateway.set_faults("lose_answer", 0).await;
    let booking = post_json(
        &client,
        &base,
        &format!("/v1/events/{event}/bookings"),
        &customer("alice"),
        None,
        &json!({"seats": 2, "card_token": "tok_visa"}),
    )
    .await
    .id();
    eventually(Duration::from_secs(30), "the authorization", || async {
        (gateway.status_by_key(&booking).await.as_deref() == Some("authorized")).then_some(())
    })
    .await;
    // command-api dies before it could save what the gateway did.
    process.kill();
    let step: String = sqlx::query_scalar("SELECT step FROM booking_sagas WHERE booking_id = $1")
        .bind(&booking)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(step, "authorize", "the authorization was not saved");

    gateway.set_faults("normal", 0).await;
    let restarted = command_api_process(&config).await;
    eventually(Duration::from_secs(60), "the saga to finish", || async {
        let outcome: Option<String> =
            sqlx::query_scalar("SELECT outcome FROM booking_sagas WHERE booking_id = $1")
                .bind(&booking)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        outcome.filter(|o| o == "confirmed")
    })
    .await;
    // The restarted runner asked again under the same key: one intent, captured.
    assert_eq!(
        gateway.status_by_key(&booking).await.as_deref(),
        Some("captured")
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM payment_gateway.payment_intents")
            .await,
        1
    );
    assert_eq!(restarted.terminate().await, Some(0));
    gateway.stop().await;
}
