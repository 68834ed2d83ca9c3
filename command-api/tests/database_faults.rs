//! The database dropping a session mid-command (an operator's `pg_terminate_backend`,
//! a failover): the client is answered 503 `unavailable` with `Retry-After`, never
//! 500, and a retry succeeds once the database is back.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use sqlx::Connection;
use testkit::{eventually, TestDb};

#[tokio::test]
async fn a_command_whose_database_session_is_terminated_is_answered_503_and_can_be_retried() {
    let db = TestDb::create().await;
    let app = TestApp::spawn_with(config(
        &db.url,
        "127.0.0.1:1",
        &testkit::unique_topic(),
        false,
    ))
    .await;
    let before = db.scalar("SELECT count(*) FROM events").await;

    // The append waits for this lock; meanwhile its session is terminated.
    let mut blocker = db.connect().await;
    let mut lock = blocker.begin().await.expect("begin");
    sqlx::query("LOCK TABLE events IN SHARE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock");
    let body = testkit::api::location_body("Olympia", 10);
    let request = {
        let (client, url, body) = (app.client().clone(), app.url("/v1/locations"), body.clone());
        tokio::spawn(async move {
            testkit::api::post(
                &client,
                &url,
                &admin(),
                &[("idempotency-key", "olympia-1")],
                &body,
            )
            .await
        })
    };
    let waiting = "SELECT pid FROM pg_stat_activity
                    WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO events%'";
    eventually(
        Duration::from_secs(10),
        "the append to wait for the lock",
        || async {
            (db.scalar(&format!("SELECT count(*) FROM ({waiting}) w"))
                .await
                == 1)
                .then_some(())
        },
    )
    .await;
    let terminated = db
        .scalar(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM ({waiting}) w"
        ))
        .await;
    assert_eq!(terminated, 1);
    lock.commit().await.expect("unlock");

    let answer = request.await.expect("task");
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert_eq!(answer.code(), "unavailable", "{}", answer.body);
    assert_eq!(answer.headers["retry-after"], "1");
    assert_eq!(
        db.scalar("SELECT count(*) FROM events").await,
        before,
        "nothing appended"
    );

    // The client does as told: the same command again, with the same key.
    let again = testkit::api::post(
        app.client(),
        &app.url("/v1/locations"),
        &admin(),
        &[("idempotency-key", "olympia-1")],
        &body,
    )
    .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    assert!(db.scalar("SELECT count(*) FROM events").await > before);
}
