//! The outbox relay's leadership is proven where it matters: a leader whose lock
//! session is gone cannot publish or delete another batch, so two relays never publish
//! side by side, and the projections come out as if nothing had happened.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::*;
use testkit::service::serve;
use testkit::{eventually, read_topic, JWT_SECRET};

/// Rows per relay batch in this test: what a step-down may publish twice at most.
const BATCH: i64 = 10;

#[tokio::test]
async fn a_relay_that_lost_its_lock_stops_within_a_batch_and_the_projection_is_unchanged() {
    let stack = Stack::start_with(Options {
        sagas: false,
        command: |config| config.relay.batch_size = BATCH,
        ..Options::default()
    })
    .await;
    // A second command-api on the same store and topic: it waits to lead.
    let mut config = command_api::Config::new(&stack.db.url, JWT_SECRET);
    config.db_max_connections = 5;
    config.kafka_brokers = stack.brokers.clone();
    config.topic = stack.topic.clone();
    config.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.relay.batch_size = BATCH;
    config.relay.poll_interval = Duration::from_millis(100);
    config.saga.enabled = false;
    let second = command_api::Application::build(config).await.unwrap();
    let second_state = second.state();
    let second = serve(|l, s| second.run(l, s)).await;
    let leaders =
        || stack.command_state.metrics.relay_leader.get() + second_state.metrics.relay_leader.get();
    eventually(Duration::from_secs(30), "one leader", || async {
        (leaders() == 1).then_some(())
    })
    .await;

    // A backlog that takes a while to publish, batch by batch.
    let event = stack
        .event(&event_body(&stack.location("Olympia", 100).await))
        .await
        .id();
    let total = 12_000;
    stack.seed_bookings(&event, total).await;
    eventually(
        Duration::from_secs(60),
        "publishing to be under way",
        || async {
            let left = stack.db.scalar("SELECT count(*) FROM outbox").await;
            (left < total - 10 * BATCH && left > total / 2).then_some(())
        },
    )
    .await;

    // The leader's lock session ends (an operator, a network cut, a failover).
    let leader = if stack.command_state.metrics.relay_leader.get() == 1 {
        &stack.command_state.metrics
    } else {
        &second_state.metrics
    };
    let holders: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_locks
          WHERE locktype = 'advisory' AND granted AND objsubid = 1
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND ((classid::bigint << 32) | objid::bigint) = $1",
    )
    .bind(0x626f_786f_6666_6963_i64)
    .fetch_all(&stack.db.pool)
    .await
    .unwrap();
    assert_eq!(holders.len(), 1, "one leader lock");
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 10000)")
        .bind(holders[0])
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert!(terminated);
    // Counted from the moment its session is gone: whatever it retires from now on, it
    // retires without holding the lock.
    let published_before = leader.outbox_published.get();
    // It steps down having published at most the batch it had in flight. (Polled
    // closely: once down, it may lead again later, legitimately.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let published_after = loop {
        if leader.relay_leader.get() == 0 {
            break leader.outbox_published.get();
        }
        assert!(
            Instant::now() < deadline,
            "the old leader never stepped down"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let after_losing = published_after - published_before;
    assert!(
        after_losing <= BATCH as u64,
        "the old leader published {after_losing} events after it lost its lock"
    );

    eventually(Duration::from_secs(120), "the relay to publish", || async {
        (stack.db.scalar("SELECT count(*) FROM outbox").await == 0).then_some(())
    })
    .await;
    eventually(Duration::from_secs(30), "a leader again", || async {
        (leaders() == 1).then_some(())
    })
    .await;
    let messages = read_topic(&stack.brokers, &stack.relay_topic).await;
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for (_, wire) in &messages {
        *seen.entry(wire.position).or_default() += 1;
    }
    let stored = stack.db.scalar("SELECT count(*) FROM events").await;
    assert_eq!(seen.len() as i64, stored, "every event reached the topic");
    let repeated: usize = seen.values().map(|n| n - 1).sum();
    assert!(
        repeated as i64 <= BATCH,
        "{repeated} messages published twice: more than the one batch in flight"
    );

    // The projector read every repeat and applied each event once: a rebuild from
    // the store gives the same model.
    stack.caught_up().await;
    let live = stack.checksum("booking_view").await;
    assert_eq!(stack.rows("booking_view").await, total);
    projector::rebuild::run(
        &stack.projector().read,
        &stack.projector().store,
        projector::Projection::Bookings,
        None,
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!(stack.checksum("booking_view").await, live);
    second.stop().await;
    stack.stop().await;
}
