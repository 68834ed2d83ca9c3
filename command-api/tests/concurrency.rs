//! Concurrent commands on one aggregate lose no update: inside one process they queue
//! (and are appended together); across processes, optimistic concurrency conflicts are
//! retried (bounded) and an accepted command is always in the store.

mod common;

use std::collections::HashSet;

use common::*;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use testkit::TestDb;

async fn hall_names(db: &TestDb, location: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT payload->'HallAdded'->'hall'->>'name' FROM events
          WHERE aggregate_id = $1 AND event_type = 'HallAdded' ORDER BY sequence",
    )
    .bind(location)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn fifty_concurrent_commands_on_one_aggregate_are_all_kept() {
    let db = TestDb::create().await;
    let app = TestApp::spawn(&db).await;
    let location = app.location(10).await;
    let path = format!("/v1/locations/{location}/halls");
    let token = admin();

    let bodies: Vec<_> = (0..50)
        .map(|i| json!({"name": format!("Hall {i}"), "capacity": i + 1}))
        .collect();
    let answers = join_all(bodies.iter().map(|body| app.post(&path, &token, body))).await;

    for answer in &answers {
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    }
    let tokens: HashSet<&str> = answers
        .iter()
        .map(|a| a.body["consistency_token"].as_str().unwrap())
        .collect();
    assert_eq!(tokens.len(), 50, "every command got its own sequence");
    let names: HashSet<String> = hall_names(&db, &location).await.into_iter().collect();
    assert_eq!(names, (0..50).map(|i| format!("Hall {i}")).collect());
    let sequences = db
        .scalar(&format!(
            "SELECT count(DISTINCT sequence) FROM events WHERE aggregate_id = '{location}'"
        ))
        .await;
    assert_eq!(sequences, 51);
    app.stop().await;
}

#[tokio::test]
async fn two_processes_writing_one_aggregate_lose_nothing() {
    let db = TestDb::create().await;
    let first = TestApp::spawn(&db).await;
    let second = TestApp::spawn(&db).await;
    let location = first.location(10).await;
    let path = format!("/v1/locations/{location}/halls");
    let token = admin();

    let answers = join_all((0..40).map(|i| {
        let app = if i % 2 == 0 { &first } else { &second };
        let path = path.clone();
        let token = token.clone();
        async move {
            (
                i,
                app.post(
                    &path,
                    &token,
                    &json!({"name": format!("Hall {i}"), "capacity": 1}),
                )
                .await,
            )
        }
    }))
    .await;

    let mut accepted = HashSet::new();
    for (i, answer) in &answers {
        match answer.status {
            StatusCode::CREATED => {
                accepted.insert(format!("Hall {i}"));
            }
            // Retries are bounded: a command that kept losing is refused, and appended nothing.
            StatusCode::CONFLICT => assert_eq!(answer.code(), "concurrency_conflict"),
            other => panic!("unexpected {other}: {}", answer.body),
        }
    }
    let stored = hall_names(&db, &location).await;
    let stored_set: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), stored_set.len(), "no hall twice");
    assert_eq!(
        stored_set, accepted,
        "exactly the accepted commands are stored"
    );
    assert!(
        accepted.len() >= 30,
        "retries should carry most commands through: {}",
        accepted.len()
    );
    first.stop().await;
    second.stop().await;
}
