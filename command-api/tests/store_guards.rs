//! What the migrations leave in the database: triggers that guard the store itself
//! (hash chain, append-only, outbox), and no business policy. Which fact starts or
//! moves a saga, and what an Idempotency-Key records, are decided in Rust
//! (`domain::policy`) and written by command-api with the facts.

mod common;

use common::*;
use testkit::TestDb;

#[tokio::test]
async fn no_trigger_on_the_event_store_writes_sagas_or_idempotency_records() {
    let db = TestDb::create().await;
    TestApp::spawn(&db).await.stop().await;

    let triggers: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.tgname::text, p.prosrc
           FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
          WHERE t.tgrelid = 'events'::regclass AND NOT t.tgisinternal
          ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let names: Vec<&str> = triggers.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        ["events_append_only", "events_appended", "events_chain"],
        "only the store's own guards"
    );
    for (name, source) in &triggers {
        for table in [
            "booking_sagas",
            "event_cancellation_sagas",
            "idempotency_keys",
        ] {
            assert!(
                !source.contains(table),
                "trigger {name} still writes {table}"
            );
        }
    }
    let policy_functions: i64 = db
        .scalar("SELECT count(*) FROM pg_proc WHERE proname = 'boxoffice_drive_sagas'")
        .await;
    assert_eq!(policy_functions, 0);
}
