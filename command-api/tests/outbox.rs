//! The outbox relay against a real broker: every stored event reaches the topic once
//! and in per-aggregate order; a broker outage loses nothing; a relay killed while
//! publishing loses nothing; several processes elect one leader.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::*;
use futures::future::join_all;
use platform::kafka::{TopicSpec, WireEvent};
use reqwest::StatusCode;
use serde_json::json;
use testkit::{eventually, read_topic, PrivateBroker, TestDb};

/// Every stored event, by position: (aggregate_id, sequence).
async fn stored(db: &TestDb) -> BTreeMap<i64, (String, i64)> {
    sqlx::query_as::<_, (i64, String, i64)>("SELECT position, aggregate_id, sequence FROM events")
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|(p, id, seq)| (p, (id, seq)))
        .collect()
}

/// Waits until the outbox is empty.
async fn drained(db: &TestDb, within: Duration) {
    eventually(within, "the outbox to drain", || async {
        (db.scalar("SELECT count(*) FROM outbox").await == 0).then_some(())
    })
    .await;
}

/// Checks what a consumer of the topic would see: each of `expected` exactly once, one
/// partition per aggregate, and each aggregate's events in sequence order.
fn assert_once_and_in_order(
    messages: &[(i32, WireEvent)],
    expected: &BTreeMap<i64, (String, i64)>,
) {
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for (_, wire) in messages {
        *seen.entry(wire.position).or_default() += 1;
    }
    let duplicated: Vec<_> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(p, _)| *p)
        .collect();
    assert!(
        duplicated.is_empty(),
        "published more than once: {duplicated:?}"
    );
    let missing: Vec<_> = expected.keys().filter(|p| !seen.contains_key(p)).collect();
    assert!(
        missing.is_empty(),
        "{} stored events never reached the topic: {missing:?}",
        missing.len()
    );

    let mut partitions: HashMap<&str, i32> = HashMap::new();
    let mut last_sequence: HashMap<&str, i64> = HashMap::new();
    for (partition, wire) in messages {
        if !expected.contains_key(&wire.position) {
            continue;
        }
        let id = wire.aggregate_id.as_str();
        assert_eq!(
            *partitions.entry(id).or_insert(*partition),
            *partition,
            "{id} is in two partitions"
        );
        let last = last_sequence.entry(id).or_insert(0);
        assert!(
            wire.sequence > *last,
            "{id}: sequence {} after {}",
            wire.sequence,
            last
        );
        *last = wire.sequence;
    }
}

#[tokio::test]
async fn each_stored_event_reaches_the_topic_once_in_order() {
    let db = TestDb::create().await;
    let app = TestApp::spawn_with_relay(&db).await;
    let token = admin();

    // Concurrent writers on a handful of aggregates.
    let locations = join_all((0..4).map(|_| app.location(10))).await;
    let bodies: Vec<(String, serde_json::Value)> = (0..80)
        .map(|i| {
            (
                format!("/v1/locations/{}/halls", locations[i % 4]),
                json!({"name": format!("Hall {i}"), "capacity": 5}),
            )
        })
        .collect();
    let answers = join_all(
        bodies
            .iter()
            .map(|(path, body)| app.post(path, &token, body)),
    )
    .await;
    assert!(answers.iter().all(|a| a.status == StatusCode::CREATED));
    let event = app.event(50).await;
    let booking = app
        .post(
            &format!("/v1/events/{event}/bookings"),
            &customer("alice"),
            &json!({"seats": 1, "card_token": "tok"}),
        )
        .await;
    assert_eq!(booking.status, StatusCode::ACCEPTED);

    drained(&db, Duration::from_secs(30)).await;
    let expected = stored(&db).await;
    let messages = read_topic(&app.brokers, &app.topic.name).await;

    assert_eq!(messages.len(), expected.len());
    assert_once_and_in_order(&messages, &expected);
    // The envelope of API.md "On the wire", with the message key the aggregate id.
    let (_, wire) = messages
        .iter()
        .find(|(_, w)| w.aggregate_type == "booking")
        .unwrap();
    assert_eq!(wire.aggregate_id, booking.id());
    assert_eq!(
        (
            wire.sequence,
            wire.event_type.as_str(),
            wire.event_version.as_str()
        ),
        (1, "BookingRequested", "3.0")
    );
    assert_eq!(wire.payload["BookingRequested"]["user_id"], "alice");
    assert_eq!(wire.metadata.user_id.as_deref(), Some("alice"));
    app.stop().await;
}

/// A consumer that knows CloudEvents routes and traces a message from its headers
/// alone: type, id (the store position), subject, time, and the caller's trace.
#[tokio::test]
async fn each_message_is_a_binary_mode_cloudevent_carrying_the_callers_trace() {
    let db = TestDb::create().await;
    let app = TestApp::spawn_with_relay(&db).await;
    let caller_trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let location = app
        .post_with(
            "/v1/locations",
            &admin(),
            &[
                ("traceparent", caller_trace),
                ("x-correlation-id", "corr-ce"),
            ],
            &testkit::api::location_body("Roundhouse", 10),
        )
        .await;
    assert_eq!(location.status, StatusCode::CREATED, "{}", location.body);
    drained(&db, Duration::from_secs(30)).await;

    let messages = testkit::read_topic_attributes(&app.brokers, &app.topic.name).await;
    let (wire, attributes) = messages
        .iter()
        .find(|(w, _)| w.aggregate_id == location.id())
        .expect("the location's event on the topic");
    let attributes = attributes.as_ref().expect("CloudEvents headers");
    assert_eq!(attributes.id, wire.position.to_string());
    assert_eq!(attributes.event_type, "boxoffice.location.LocationCreated");
    assert_eq!(
        attributes.subject.as_deref(),
        Some(format!("location/{}", location.id()).as_str())
    );
    assert_eq!(attributes.time, wire.metadata.recorded_at);
    assert!(attributes.time.is_some());
    assert_eq!(attributes.correlation_id.as_deref(), Some("corr-ce"));
    assert_eq!(attributes.content_type.as_deref(), Some("application/json"));
    // The same trace, continued by a span of command-api's (a new parent id).
    let sent: domain::metadata::TraceParent = attributes
        .traceparent
        .as_deref()
        .expect("a traceparent header")
        .parse()
        .expect("a W3C traceparent");
    assert_eq!(sent.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(sent.to_string(), caller_trace);
    // The value keeps its envelope, the trace in its metadata too.
    assert_eq!(wire.metadata.traceparent, attributes.traceparent);
    app.stop().await;
}

#[tokio::test]
async fn with_the_broker_down_commands_succeed_and_the_backlog_is_published_when_it_returns() {
    let db = TestDb::create().await;
    let mut broker = PrivateBroker::start().await;
    let topic = TopicSpec {
        name: "boxoffice.events".into(),
        partitions: 3,
        replication: 1,
    };
    let app = TestApp::spawn_with(config(&db.url, &broker.brokers(), &topic, true)).await;
    let location = app.location(10).await;
    drained(&db, Duration::from_secs(30)).await;
    let before_outage = db.scalar("SELECT max(position) FROM events").await;

    broker.stop();
    let token = admin();
    for i in 0..20 {
        let answer = app
            .post(
                &format!("/v1/locations/{location}/halls"),
                &token,
                &json!({"name": format!("Hall {i}"), "capacity": 5}),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "commands do not need the broker"
        );
    }
    let other = app.location(20).await;
    // Still ready (it can append: the outbox keeps the rest), the broker shown down.
    let ready = eventually(Duration::from_secs(20), "the broker shown down", || async {
        let ready = app.get("/health/ready").await;
        (ready.body["checks"]["broker"] != "ok").then_some(ready)
    })
    .await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.body["checks"]["database"], "ok");
    assert_eq!(app.state.metrics.broker_up.get(), 0);
    assert!(
        db.scalar("SELECT count(*) FROM outbox").await >= 21,
        "the backlog waits in the outbox"
    );

    // The broker comes back empty (memory storage): the relay creates the topic again
    // and publishes the backlog.
    broker.restart().await;
    drained(&db, Duration::from_secs(90)).await;

    let backlog: BTreeMap<_, _> = stored(&db)
        .await
        .into_iter()
        .filter(|(p, _)| *p > before_outage)
        .collect();
    assert_eq!(backlog.len(), 21);
    assert!(backlog.values().any(|(id, _)| *id == other));
    let messages = read_topic(&broker.brokers(), &topic.name).await;
    assert_once_and_in_order(&messages, &backlog);
    eventually(
        Duration::from_secs(20),
        "the broker shown up again",
        || async {
            let ready = app.get("/health/ready").await;
            (ready.status == StatusCode::OK && ready.body["checks"]["broker"] == "ok").then_some(())
        },
    )
    .await;
    assert_eq!(app.state.metrics.broker_up.get(), 1);
    app.stop().await;
}

/// Appends `aggregates × per_aggregate` events straight into the store (the relay does
/// not look inside payloads), with the relay off.
async fn backlog(db: &TestDb, aggregates: i64, per_aggregate: i64) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'location', 'agg-' || a, s, 'HallAdded', '1.0', '{}', '{}'
           FROM generate_series(1, $2) s, generate_series(1, $1) a
          ORDER BY s, a",
    )
    .bind(aggregates)
    .bind(per_aggregate)
    .execute(&db.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_relay_killed_while_publishing_loses_nothing_and_repeats_nothing() {
    let db = TestDb::create().await;
    let brokers = testkit::kafka_brokers();
    let topic = testkit::unique_topic();
    // Migrate the store, then fill it.
    TestApp::spawn_with(config(&db.url, &brokers, &topic, false))
        .await
        .stop()
        .await;
    backlog(&db, 100, 60).await;
    let total = 6000;

    let mut relay = command_api_process(&config(&db.url, &brokers, &topic, true)).await;
    eventually(
        Duration::from_secs(60),
        "publishing to be under way",
        || async {
            let left = db.scalar("SELECT count(*) FROM outbox").await;
            (left < total - 500 && left > 0).then_some(())
        },
    )
    .await;
    relay.kill();
    let left_at_crash = db.scalar("SELECT count(*) FROM outbox").await;
    assert!(left_at_crash > 0, "the relay finished before it was killed");

    let relay = command_api_process(&config(&db.url, &brokers, &topic, true)).await;
    drained(&db, Duration::from_secs(120)).await;

    let expected = stored(&db).await;
    assert_eq!(expected.len() as i64, total);
    let messages = read_topic(&brokers, &topic.name).await;
    assert_once_and_in_order(&messages, &expected);
    assert_eq!(messages.len() as i64, total);
    assert_eq!(relay.terminate().await, Some(0));
}

#[tokio::test]
async fn several_processes_elect_one_relay_leader_and_another_takes_over() {
    let db = TestDb::create().await;
    let brokers = testkit::kafka_brokers();
    let topic = testkit::unique_topic();
    let first = TestApp::spawn_with(config(&db.url, &brokers, &topic, true)).await;
    let second = TestApp::spawn_with(config(&db.url, &brokers, &topic, true)).await;
    let leaders =
        || first.state.metrics.relay_leader.get() + second.state.metrics.relay_leader.get();
    eventually(Duration::from_secs(30), "a leader", || async {
        (leaders() == 1).then_some(())
    })
    .await;
    first.location(5).await;
    second.location(5).await;
    drained(&db, Duration::from_secs(30)).await;
    assert_eq!(leaders(), 1, "one leader at a time");

    // The leader goes away; the other process takes over and publishes what comes next.
    let (leader, follower) = if first.state.metrics.relay_leader.get() == 1 {
        (first, second)
    } else {
        (second, first)
    };
    leader.stop().await;
    follower.location(5).await;
    eventually(Duration::from_secs(30), "the follower to lead", || async {
        (follower.state.metrics.relay_leader.get() == 1).then_some(())
    })
    .await;
    drained(&db, Duration::from_secs(30)).await;

    let expected = stored(&db).await;
    let messages = read_topic(&brokers, &topic.name).await;
    assert_eq!(messages.len(), expected.len());
    assert_once_and_in_order(&messages, &expected);
    follower.stop().await;
}
