//! The projector under the failures it must survive: duplicated and redelivered
//! messages, gaps, several processes, a broker that lost its data, a crash mid-batch.

use std::time::Duration;

use domain::booking::BookingCommand;
use e2e::*;
use platform::kafka::WireEvent;
use reqwest::StatusCode;
use serde_json::json;
use testkit::{eventually, produce, read_topic, PrivateBroker};

const TABLES: [&str; 3] = ["location_view", "event_view", "booking_view"];

async fn checksums(stack: &Stack) -> Vec<String> {
    let mut sums = Vec::new();
    for table in TABLES {
        sums.push(stack.checksum(table).await);
    }
    sums
}

/// Some of everything: locations, halls, events, a cancellation, bookings.
async fn activity(stack: &Stack) -> String {
    let location = stack.location("Olympia", 100).await;
    stack
        .command(
            &format!("/v1/locations/{location}/halls"),
            &admin(),
            &json!({"name": "Club", "capacity": 30}),
        )
        .await;
    let event = stack.event(&event_body(&location)).await.id();
    let other = stack
        .event(&event_body_in(&location, "Matinee", 3))
        .await
        .id();
    stack
        .command(
            &format!("/v1/events/{other}/cancel"),
            &admin(),
            &json!({"reason": "rain"}),
        )
        .await;
    for user in ["alice", "bob", "carol"] {
        stack.book(&event, user, 2).await;
    }
    event
}

/// The projector's consumed-message count.
fn consumed(stack: &Stack) -> u64 {
    stack.projector().metrics.consumed.get()
}

#[tokio::test]
async fn duplicated_and_redelivered_messages_change_nothing() {
    let mut stack = Stack::start_with(Options {
        // Bookings stay as recorded: this test is about the read side.
        sagas: false,
        ..Options::default()
    })
    .await;
    activity(&stack).await;
    stack.caught_up().await;
    stack.published().await;
    let before = checksums(&stack).await;
    let published = read_topic(&stack.brokers, &stack.topic.name).await;
    let events: Vec<WireEvent> = published.into_iter().map(|(_, e)| e).collect();
    assert_eq!(
        events.len() as i64,
        stack.db.scalar("SELECT count(*) FROM events").await
    );

    // Every message once more, and the first half a third time, out of order.
    let consumed_before = consumed(&stack);
    produce(&stack.brokers, &stack.topic.name, &events).await;
    let mut late: Vec<WireEvent> = events[..events.len() / 2].to_vec();
    late.reverse();
    produce(&stack.brokers, &stack.topic.name, &late).await;
    let expected = consumed_before + (events.len() + late.len()) as u64;
    eventually(
        Duration::from_secs(30),
        "the duplicates to be consumed",
        || async { (consumed(&stack) >= expected).then_some(()) },
    )
    .await;
    assert_eq!(
        checksums(&stack).await,
        before,
        "duplicates changed the read models"
    );

    // A projector of a new consumer group gets the whole topic again.
    stack.stop_projector().await;
    stack.group = format!("{}-again", stack.group);
    stack.start_projector().await;
    eventually(
        Duration::from_secs(30),
        "the redelivery to be consumed",
        || async { (consumed(&stack) >= (events.len() * 2 + late.len()) as u64).then_some(()) },
    )
    .await;
    assert_eq!(
        checksums(&stack).await,
        before,
        "redelivery changed the read models"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_gap_in_a_stream_is_filled_from_the_event_store() {
    // The projector reads a topic only the test writes, and never sweeps: whatever it
    // knows, it got from these messages or from the store because of them.
    let projector_topic = format!("bt.{}", uuid::Uuid::new_v4().simple());
    let stack = Stack::start_with(Options {
        // Bookings stay as recorded: this test is about the read side.
        sagas: false,
        sweep: Duration::ZERO,
        projector_topic: Some(projector_topic.clone()),
        ..Options::default()
    })
    .await;
    testkit::create_topic(
        &stack.brokers,
        &platform::kafka::TopicSpec {
            name: projector_topic.clone(),
            partitions: 3,
            replication: 1,
        },
    )
    .await;
    let location = stack.location("Olympia", 100).await;
    let event = stack.event(&event_body(&location)).await.id();
    let booking = stack.book(&event, "alice", 2).await.id();
    let saga = &stack.command_state.bookings;
    let metadata = domain::metadata::EventMetadata {
        user_id: Some("system".to_owned()),
        ..Default::default()
    };
    saga.execute(&booking, BookingCommand::ConfirmBooking, &metadata)
        .await
        .unwrap();
    let cancel = stack
        .command(
            &format!("/v1/bookings/{booking}/cancel"),
            &customer("alice"),
            &json!({}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED);
    let relayed = eventually(
        Duration::from_secs(30),
        "the booking's three events on the topic",
        || async {
            let events: Vec<WireEvent> = read_topic(&stack.brokers, &stack.relay_topic)
                .await
                .into_iter()
                .map(|(_, e)| e)
                .collect();
            let of_booking: Vec<WireEvent> = events
                .into_iter()
                .filter(|e| e.aggregate_id == booking)
                .collect();
            (of_booking.len() == 3).then_some(of_booking)
        },
    )
    .await;

    // The projector hears of sequences 1 and 3, never 2.
    produce(
        &stack.brokers,
        &projector_topic,
        &[relayed[0].clone(), relayed[2].clone()],
    )
    .await;

    let answer = stack
        .eventually(
            &format!("/v1/bookings/{booking}"),
            &customer("alice"),
            "the booking",
            |a| a.status == StatusCode::OK && a.body["status"] == "cancelled",
        )
        .await;
    let statuses: Vec<&str> = answer.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["pending", "confirmed", "cancelled"]);
    let gaps = stack
        .projector()
        .metrics
        .gaps
        .get_or_create(&projector::metrics::ProjectionLabel {
            projection: "bookings",
        })
        .get();
    assert_eq!(gaps, 1);
    stack.stop().await;
}

#[tokio::test]
async fn two_projectors_share_the_partitions() {
    let stack = Stack::start().await;
    let second_app = projector::Application::build(projector_config(
        &stack.db,
        &stack.brokers,
        &stack.topic,
        &stack.group,
        Duration::ZERO,
    ))
    .await
    .unwrap();
    let second = second_app.context();
    let second_running = testkit::service::serve(|l, s| second_app.run(l, s)).await;
    // The group settles: each process gets some of the three partitions.
    eventually(
        Duration::from_secs(60),
        "the partitions to be shared",
        || async {
            let first = stack.projector().metrics.assigned_partitions.get();
            let second = second.metrics.assigned_partitions.get();
            (first > 0 && second > 0 && first + second == 3).then_some(())
        },
    )
    .await;

    let location = stack.location("Olympia", 1000).await;
    let event = stack.event(&event_body(&location)).await.id();
    let mut last = None;
    for i in 0..60 {
        last = Some(stack.book(&event, &format!("user-{i}"), 1).await);
    }
    let last = last.unwrap();
    let shown = stack
        .query_with(
            &format!("/v1/bookings/{}", last.id()),
            &admin(),
            &[("x-consistency-token", &last.token())],
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK);
    // Every booking shows, whichever process had its partition. (Not "lag 0" first:
    // lag counts past the highest position applied, and with partitions consumed in
    // parallel a lower position can still be on its way for a moment.)
    eventually(
        Duration::from_secs(60),
        "all 60 bookings in the read model",
        || async { (stack.rows("booking_view").await == 60).then_some(()) },
    )
    .await;
    // Both took part: the group gave each some partitions.
    eventually(
        Duration::from_secs(30),
        "both projectors to have consumed",
        || async { (consumed(&stack) > 0 && second.metrics.consumed.get() > 0).then_some(()) },
    )
    .await;
    second_running.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn read_models_converge_even_when_the_broker_restarts_empty() {
    let mut broker = PrivateBroker::start().await;
    let mut stack = Stack::start_with(Options {
        brokers: Some(broker.brokers()),
        ..Options::default()
    })
    .await;
    let event = activity(&stack).await;
    stack.caught_up().await;

    // Events the broker receives but the projector never reads: it is stopped, and then
    // the broker loses everything.
    stack.stop_projector().await;
    for user in ["dave", "erin"] {
        stack.book(&event, user, 1).await;
    }
    stack.published().await;
    broker.restart().await;
    let after = stack.book(&event, "frank", 1).await;
    stack.start_projector().await;

    stack.caught_up().await;
    for user in ["dave", "erin", "frank"] {
        let mine = stack
            .eventually(
                "/v1/users/me/bookings",
                &customer(user),
                "the user's booking",
                |a| a.body["items"].as_array().is_some_and(|i| i.len() == 1),
            )
            .await;
        assert_eq!(mine.status, StatusCode::OK);
    }
    let shown = stack
        .query_with(
            &format!("/v1/bookings/{}", after.id()),
            &customer("frank"),
            &[("x-consistency-token", &after.token())],
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(stack.rows("booking_view").await, 6);
    stack.stop().await;
}

#[tokio::test]
async fn a_projector_crashing_mid_batch_converges_when_restarted() {
    let mut stack = Stack::start_with(Options {
        // Bookings stay as recorded: this test is about the read side.
        sagas: false,
        ..Options::default()
    })
    .await;
    let location = stack.location("Olympia", 100).await;
    let event = stack.event(&event_body(&location)).await.id();
    stack.caught_up().await;
    stack.seed_bookings(&event, 20_000).await;
    eventually(
        Duration::from_secs(60),
        "the projector to be half-way",
        || async {
            let rows = stack.rows("booking_view").await;
            (rows > 0 && rows < 20_000).then_some(())
        },
    )
    .await;

    // A crash: the task is dropped wherever it is, mid-transaction or between the
    // database commit and the Kafka commit.
    let (running, _) = stack.projector.take().unwrap();
    running.abort();
    stack.start_projector().await;

    stack.caught_up().await;
    assert_eq!(stack.rows("booking_view").await, 20_000);
    let live = stack.checksum("booking_view").await;
    let report = projector::rebuild::run(
        &stack.projector().read,
        &stack.projector().store,
        projector::Projection::Bookings,
        None,
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.events, 20_000);
    assert_eq!(
        stack.checksum("booking_view").await,
        live,
        "the live model differs from the store's truth"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_running_projector_consumes_again_after_the_broker_lost_its_data() {
    let mut broker = PrivateBroker::start().await;
    let stack = Stack::start_with(Options {
        brokers: Some(broker.brokers()),
        sagas: false,
        ..Options::default()
    })
    .await;
    let event = activity(&stack).await;
    stack.caught_up().await;

    // The broker restarts empty under a running projector.
    broker.restart().await;
    let consumed_before = consumed(&stack);
    let later = stack.book(&event, "grace", 1).await;

    // The booking shows (the sweep sees to that at worst)...
    let shown = stack
        .query_with(
            &format!("/v1/bookings/{}", later.id()),
            &customer("grace"),
            &[("x-consistency-token", &later.token())],
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK);
    // ...and Kafka carries the projection again: the consumer reconnected.
    eventually(
        Duration::from_secs(60),
        "the consumer to consume again",
        || async {
            (consumed(&stack) > consumed_before
                && stack.projector().metrics.assigned_partitions.get() > 0)
                .then_some(())
        },
    )
    .await;
    let again = stack.book(&event, "heidi", 1).await;
    let shown = stack
        .query_with(
            &format!("/v1/bookings/{}", again.id()),
            &customer("heidi"),
            &[("x-consistency-token", &again.token())],
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK);
    stack.stop().await;
}
