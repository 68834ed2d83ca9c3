//! Group commit (`command_api::append`): appends of different aggregates that queue
//! while a statement is in flight share the next one, and one of them failing does not
//! fail its neighbours.

mod common;

use std::time::Duration;

use command_api::append::{AppendError, Appender};
use command_api::metrics::Metrics;
use common::*;
use cqrs_es::persist::SerializedEvent;
use prometheus_client::registry::Registry;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::Connection;
use testkit::{eventually, TestDb};

fn hall_added(stream: &str, sequence: usize) -> Vec<SerializedEvent> {
    vec![SerializedEvent {
        aggregate_id: stream.to_owned(),
        sequence,
        aggregate_type: "location".into(),
        event_type: "HallAdded".into(),
        event_version: "1.0".into(),
        payload: json!({"HallAdded": {"hall": {"name": format!("Hall {sequence}"), "capacity": 10}}}),
        metadata: json!({"user_id": "admin", "correlation_id": "c", "causation_id": "c",
                         "recorded_at": "2030-01-01T00:00:00.000000Z"}),
    }]
}

/// The value of one sample line of the text exposition, such as `name_count`.
fn sample(registry: &Registry, name: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test]
async fn queued_appends_share_a_statement_and_a_conflict_fails_only_its_own() {
    let db = TestDb::create().await;
    let pool = platform::db::connect(&db.url, 4).await.expect("pool");
    platform::db::migrate_event_store(&pool)
        .await
        .expect("migrate");
    let mut registry = Registry::default();
    let appender = Appender::start(pool.clone(), 1, 1024, Metrics::new(&mut registry));

    appender
        .append(
            "location",
            "taken",
            hall_added("taken", 1),
            Default::default(),
        )
        .await
        .expect("the first append of a stream");

    // Hold the only writer: its next statement waits for this lock.
    let mut blocker = db.connect().await;
    let mut lock = blocker.begin().await.expect("begin");
    sqlx::query("LOCK TABLE events IN SHARE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock");
    let first = tokio::spawn({
        let appender = appender.clone();
        async move {
            appender
                .append("location", "a", hall_added("a", 1), Default::default())
                .await
        }
    });
    eventually(
        Duration::from_secs(10),
        "the first append waits for the lock",
        || async {
            let waiting = db
                .scalar(
                    "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO events%'",
                )
                .await;
            (waiting == 1).then_some(())
        },
    )
    .await;

    // These three queue behind it (polled once each: that is when they are queued).
    let mut b = Box::pin(appender.append("location", "b", hall_added("b", 1), Default::default()));
    let mut conflict = Box::pin(appender.append(
        "location",
        "taken",
        hall_added("taken", 1),
        Default::default(),
    ));
    let mut d = Box::pin(appender.append("location", "d", hall_added("d", 1), Default::default()));
    assert!(futures::poll!(&mut b).is_pending());
    assert!(futures::poll!(&mut conflict).is_pending());
    assert!(futures::poll!(&mut d).is_pending());

    lock.commit().await.expect("release the lock");
    first.await.expect("task").expect("the append that waited");
    b.await
        .expect("b is written although its statement failed on a neighbour");
    assert!(matches!(conflict.await, Err(AppendError::Conflict)));
    d.await
        .expect("d is written although its statement failed on a neighbour");

    let streams: Vec<(String, i64)> = sqlx::query_as(
        "SELECT aggregate_id, count(*) FROM events GROUP BY aggregate_id ORDER BY aggregate_id",
    )
    .fetch_all(&pool)
    .await
    .expect("streams");
    let expected = [("a", 1), ("b", 1), ("d", 1), ("taken", 1)];
    assert_eq!(
        streams,
        expected.map(|(id, n)| (id.to_owned(), n)).to_vec(),
        "every append once, the conflicting one not at all"
    );
    // Three statements: "taken", "a" alone, then b, the conflict and d together.
    assert_eq!(
        sample(&registry, "boxoffice_append_statement_aggregates_count"),
        3.0
    );
    assert_eq!(
        sample(&registry, "boxoffice_append_statement_aggregates_sum"),
        5.0
    );
    // Each event's outbox row was written with it, and no other.
    assert_eq!(db.scalar("SELECT count(*) FROM outbox").await, 4);
}

#[tokio::test]
async fn a_full_append_queue_answers_503_overloaded_and_appends_nothing_for_it() {
    let db = TestDb::create().await;
    let mut config = config(&db.url, "127.0.0.1:1", &testkit::unique_topic(), false);
    // One writer, one append waiting for it at most (and one the dispatcher holds).
    config.append_writers = 1;
    config.append_queue = 1;
    let app = TestApp::spawn_with(config).await;
    let before = db.scalar("SELECT count(*) FROM events").await;

    // The writer's statement waits for this lock.
    let mut blocker = db.connect().await;
    let mut lock = blocker.begin().await.expect("begin");
    sqlx::query("LOCK TABLE events IN SHARE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock");
    let create = |app: &TestApp| {
        let (client, url) = (app.client().clone(), app.url("/v1/locations"));
        async move {
            testkit::api::post(
                &client,
                &url,
                &admin(),
                &[],
                &testkit::api::location_body("Olympia", 10),
            )
            .await
        }
    };
    let first = tokio::spawn(create(&app));
    eventually(Duration::from_secs(10), "the writer to wait", || async {
        let waiting = db
            .scalar(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO events%'",
            )
            .await;
        (waiting == 1).then_some(())
    })
    .await;
    let more: Vec<_> = (0..12).map(|_| tokio::spawn(create(&app))).collect();
    // The overloaded ones are answered at once, while the lock still holds.
    let mut answers = Vec::new();
    let mut waiting = Vec::new();
    for request in more {
        match tokio::time::timeout(Duration::from_secs(5), request).await {
            Ok(answer) => answers.push(answer.expect("task")),
            Err(_) => waiting.push(()),
        }
    }
    let overloaded: Vec<_> = answers
        .iter()
        .filter(|a| a.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(
        overloaded.len() >= 10,
        "{} of 12 answered overloaded; {} still waiting",
        overloaded.len(),
        waiting.len()
    );
    for answer in &overloaded {
        assert_eq!(answer.code(), "overloaded", "{}", answer.body);
        assert_eq!(answer.headers["retry-after"], "1");
    }
    lock.commit().await.expect("release");
    assert_eq!(first.await.expect("task").status, StatusCode::CREATED);
    // Only what was accepted was appended.
    let accepted = 1 + 12 - overloaded.len() as i64;
    eventually(Duration::from_secs(10), "the waiting appends", || async {
        (db.scalar("SELECT count(*) FROM events").await == before + accepted).then_some(())
    })
    .await;
    app.stop().await;
}
