//! Start-up on a fresh database: projector and query-api create the read-model schema
//! at the same moment (as `scripts/up` and compose start them), and both must come up.

use testkit::TestDb;

#[tokio::test]
async fn services_starting_together_all_create_or_find_the_read_model_schema() {
    let db = TestDb::create().await;
    let starts = (0..8).map(|_| platform::db::connect_read_models(&db.url, 1));
    for started in futures::future::join_all(starts).await {
        started.expect("every service gets its read-model pool");
    }
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'read_models'")
            .await,
        1
    );
}
