//! What the migrations leave in the database: triggers that guard the store itself
//! (hash chain, append-only, outbox), and no business policy (which fact starts or
//! moves a saga, and what an Idempotency-Key records, are decided in Rust,
//! `domain::policy`, and written by command-api with the facts); and group roles that
//! give each service only the rights it needs.

mod common;

use common::*;
use testkit::{roles, TestDb};

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

/// Every migration applied by the owner, as a deployment does before the services.
async fn migrated(db: &TestDb) {
    let store = platform::db::connect(&db.url, 2).await.unwrap();
    platform::db::migrate_event_store(&store).await.unwrap();
    let read = platform::db::connect_read_models(&db.url, 2).await.unwrap();
    platform::db::migrate_read_models(&read).await.unwrap();
    let payments =
        platform::db::connect_in_schema(&db.url, platform::db::PAYMENT_GATEWAY_SCHEMA, 2)
            .await
            .unwrap();
    platform::db::migrate_payment_gateway(&payments)
        .await
        .unwrap();
}

/// What `login` gets for `statement`: `Ok` or the SQLSTATE.
async fn run_as(db: &TestDb, login: &str, statement: &str) -> Result<(), String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&roles::url_as(&db.url, login))
        .await
        .expect("the login connects");
    let outcome = sqlx::query(statement).execute(&mut conn).await;
    let _ = conn.close().await;
    outcome.map(drop).map_err(|err| {
        err.as_database_error()
            .and_then(|db| db.code())
            .map_or_else(|| err.to_string(), |code| code.into_owned())
    })
}

#[tokio::test]
async fn each_services_database_user_is_refused_what_is_not_its_own() {
    let db = TestDb::create().await;
    migrated(&db).await;
    roles::ensure_logins().await;
    // Something for the refused updates and deletes to aim at.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('location', 'l1', 1, 'LocationCreated', '1.0', '{}', '{}')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    use roles::{COMMAND, PAYMENTS, PROJECTOR, QUERY};
    let refused = [
        // command-api appends; it never rewrites the store or switches off its guards.
        (COMMAND, "UPDATE events SET payload = '{}'"),
        (COMMAND, "DELETE FROM events"),
        (COMMAND, "TRUNCATE events"),
        (COMMAND, "ALTER TABLE events DISABLE TRIGGER events_append_only"),
        (COMMAND, "DROP TRIGGER events_chain ON events"),
        (COMMAND, "UPDATE append_receipts SET hashes = '{}'"),
        (COMMAND, "DELETE FROM append_receipts"),
        (COMMAND, "INSERT INTO redactions (position, aggregate_type, aggregate_id, sequence, reason, redacted_hash) VALUES (1, 'x', 'x', 1, 'x', '')"),
        (COMMAND, "UPDATE read_models.booking_view SET status = 'confirmed'"),
        (COMMAND, "CREATE TABLE public.intruder (id int)"),
        (COMMAND, "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, payload, current_snapshot) VALUES ('x', 'x', 1, '{}', 1)"),
        (COMMAND, "SELECT * FROM redactions"),
        // The projector reads the store and writes read models only.
        (PROJECTOR, "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ('location', 'l2', 1, 'x', '1.0', '{}', '{}')"),
        (PROJECTOR, "DELETE FROM outbox"),
        (PROJECTOR, "SELECT * FROM user_keys"),
        (PROJECTOR, "UPDATE booking_sagas SET step = 'done'"),
        (PROJECTOR, "ALTER TABLE events DISABLE TRIGGER events_append_only"),
        (PROJECTOR, "SELECT * FROM redactions"),
        // query-api reads; it writes nothing but its rebuild requests.
        (QUERY, "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ('location', 'l3', 1, 'x', '1.0', '{}', '{}')"),
        (QUERY, "ALTER TABLE events DISABLE TRIGGER events_append_only"),
        (QUERY, "INSERT INTO append_receipts (positions, aggregate_types, aggregate_ids, sequences, hashes) VALUES ('{}', '{}', '{}', '{}', '{}')"),
        (QUERY, "UPDATE user_keys SET secret = NULL"),
        (QUERY, "UPDATE read_models.booking_view SET status = 'confirmed'"),
        (QUERY, "DELETE FROM read_models.event_view"),
        (QUERY, "DROP TABLE read_models.booking_view"),
        (QUERY, "UPDATE read_models.projection_status SET applied_events = 0"),
        (QUERY, "SELECT * FROM store_identity"),
        // The payment gateway keeps to its own books.
        (PAYMENTS, "SELECT * FROM public.events"),
        (PAYMENTS, "SELECT * FROM public.user_keys"),
        (PAYMENTS, "DELETE FROM payment_gateway.payment_intents"),
        (PAYMENTS, "ALTER TABLE payment_gateway.payment_intents ADD COLUMN note text"),
        (PAYMENTS, "UPDATE payment_gateway.payment_methods SET card_token = 'tok_other'"),
        (PAYMENTS, "DELETE FROM payment_gateway.payment_methods"),
    ];
    for (login, statement) in refused {
        assert_eq!(
            run_as(&db, login, statement).await,
            Err("42501".to_owned()),
            "{login} may: {statement}"
        );
    }
    // And each may do its own work (the services' tests run every service as its own
    // user; these are the plainest of its writes).
    let allowed = [
        (COMMAND, "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ('location', 'l1', 2, 'HallAdded', '1.0', '{}', '{}')"),
        (COMMAND, "UPDATE booking_sagas SET attempts = 0"),
        (PROJECTOR, "UPDATE read_models.projection_status SET applied_events = 0"),
        (PROJECTOR, "SELECT count(*) FROM events"),
        (QUERY, "SELECT count(*) FROM events JOIN append_receipts ON true"),
        (QUERY, "INSERT INTO read_models.projection_rebuilds (projection, status) VALUES ('events', 'requested')"),
        (PAYMENTS, "SELECT count(*) FROM payment_gateway.payment_intents"),
    ];
    for (login, statement) in allowed {
        assert_eq!(
            run_as(&db, login, statement).await,
            Ok(()),
            "{login}: {statement}"
        );
    }
}

#[tokio::test]
async fn a_destroyed_user_key_stays_destroyed_whoever_asks() {
    let db = TestDb::create().await;
    migrated(&db).await;
    roles::ensure_logins().await;
    sqlx::query(
        "INSERT INTO user_keys (key_id, user_id, secret)
         VALUES ('0192e4d2-0000-7000-8000-0000000000aa', 'zelda', decode(repeat('ab', 32), 'hex'))",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let destroy =
        "UPDATE user_keys SET secret = NULL, destroyed_at = now() WHERE user_id = 'zelda'";
    let restore =
        "UPDATE user_keys SET secret = decode(repeat('ab', 32), 'hex'), destroyed_at = NULL
                    WHERE user_id = 'zelda'";
    // Changing a live key's secret is refused as well: a key is made and destroyed, nothing else.
    let change =
        "UPDATE user_keys SET secret = decode(repeat('cd', 32), 'hex') WHERE user_id = 'zelda'";
    use roles::COMMAND;
    assert_eq!(run_as(&db, COMMAND, change).await, Err("23000".to_owned()));
    assert_eq!(run_as(&db, COMMAND, destroy).await, Ok(()));
    assert_eq!(run_as(&db, COMMAND, restore).await, Err("23000".to_owned()));
    // Not even the owner brings it back (short of dropping the trigger, which shows).
    let owner = sqlx::query(restore).execute(&db.pool).await.unwrap_err();
    assert_eq!(
        owner.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("23000")
    );
}
