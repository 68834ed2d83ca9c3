//! The audit endpoints on an event store alone: an export cut and resumed,
//! verification against each kind of tampering, the `query-api audit` CLI, and card
//! tokens of an older store redacted. (A booking's history through its whole saga is
//! in the e2e crate's tests.)

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::api::{admin, Answer};
use testkit::service::{serve, Running};
use testkit::{eventually, TestDb, JWT_SECRET};

/// How long an export may be held back by a transaction that ends by itself.
const PATIENCE: Duration = Duration::from_secs(30);

/// An event store (migrated, empty) and a query-api reading it: no broker needed.
async fn store_and_query_api() -> (TestDb, Running) {
    let db = TestDb::create().await;
    let pool = platform::db::connect(&db.url, 2).await.unwrap();
    platform::db::migrate_event_store(&pool).await.unwrap();
    let running = serve_query_api(&db).await;
    (db, running)
}

/// A query-api on `db` (whose store is migrated).
async fn serve_query_api(db: &TestDb) -> Running {
    let app = query_api::Application::build(query_api::Config {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..query_api::Config::new(&db.url, JWT_SECRET)
    })
    .await
    .unwrap();
    serve(|l, s| app.run(l, s)).await
}

async fn get(api: &Running, path: &str) -> Answer {
    testkit::api::get(&testkit::http(), &api.url(path), &admin(), &[]).await
}

/// The whole body of an export asked for with `query` (`""`, `"?after=5"`, ...).
async fn export_text(api: &Running, query: &str) -> String {
    testkit::http()
        .get(api.url(&format!("/v1/audit/export{query}")))
        .bearer_auth(admin())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `query-api audit ARGS...` against `db`.
async fn cli(db: &TestDb, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_query-api"))
        .arg("audit")
        .args(args)
        .env("DATABASE_URL", &db.url)
        .output()
        .await
        .unwrap()
}

/// The positions in an NDJSON export body, checking each line is a whole event.
fn positions(body: &str) -> Vec<i64> {
    body.lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("a line is one JSON event");
            assert!(event["payload"].is_object() && event["hash"].is_string());
            event["position"].as_i64().unwrap()
        })
        .collect()
}

#[tokio::test]
async fn an_export_cut_and_resumed_gives_each_event_exactly_once() {
    let (db, api) = store_and_query_api().await;
    db.seed_bookings("0192e4d2-0000-7000-8000-000000000001", 10_000)
        .await;

    // Read about a third, then drop the connection in the middle of the body. An
    // export stops before the oldest transaction of this database still running, and
    // autovacuum may have one here for a moment: ask again until the seed is within it.
    let client = testkit::http();
    let received = eventually(
        Duration::from_secs(30),
        "an export past 3 500 events",
        || async {
            let mut response = client
                .get(api.url("/v1/audit/export"))
                .bearer_auth(admin())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["content-type"], "application/x-ndjson");
            let mut received = Vec::new();
            while received.iter().filter(|b| **b == b'\n').count() < 3_500 {
                let chunk = response.chunk().await.unwrap()?;
                received.extend_from_slice(&chunk);
            }
            Some(received)
        },
    )
    .await;
    // Keep whole lines only, as a client resuming would.
    let cut = received.iter().rposition(|b| *b == b'\n').unwrap() + 1;
    let mut seen = positions(std::str::from_utf8(&received[..cut]).unwrap());
    assert!(seen.len() >= 3_500 && seen.len() < 10_000, "{}", seen.len());

    // More events arrive meanwhile; the resumed export has them too.
    db.seed_bookings("0192e4d2-0000-7000-8000-000000000002", 500)
        .await;
    // Resume until the export has caught up, as a client following the store would
    // (autovacuum, again, may hold it back for a moment).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let after = *seen.last().unwrap();
        let rest = client
            .get(api.url(&format!("/v1/audit/export?after={after}")))
            .bearer_auth(admin())
            .send()
            .await
            .unwrap();
        assert_eq!(rest.status(), StatusCode::OK);
        seen.extend(positions(&rest.text().await.unwrap()));
        if seen.len() >= 10_500 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an event was exported twice");
    let stored: Vec<i64> = sqlx::query_scalar("SELECT position FROM events")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 10_500);
    assert_eq!(unique, stored.into_iter().collect::<HashSet<_>>());

    // `limit` stops early, and a resumed export after the last event is empty.
    let last = *seen.last().unwrap();
    let limited = export_text(&api, "?limit=10").await;
    assert_eq!(positions(&limited).len(), 10);
    let empty = export_text(&api, &format!("?after={last}")).await;
    assert_eq!(empty, "");
    api.stop().await;
}

/// An export stops before the oldest transaction that may still add events to this
/// store. A transaction left open in another database of the same server (a read-model
/// rebuild there, any other application's session) cannot, and does not cut the export
/// short; one open in this database does, until it ends.
#[tokio::test]
async fn only_this_databases_open_transactions_hold_an_export_back() {
    let (db, api) = store_and_query_api().await;
    let elsewhere = TestDb::create().await;
    let open_elsewhere = running_transaction(&elsewhere.pool).await;

    db.seed_bookings("0192e4d2-0000-7000-8000-000000000003", 20)
        .await;
    // (Autovacuum may hold the export back for a moment; the transaction elsewhere stays
    // open all the while.)
    let exported = eventually(PATIENCE, "an export of every committed event", || async {
        let exported = positions(&export_text(&api, "").await);
        (exported.len() == 20).then_some(exported)
    })
    .await;

    // A transaction of this database, running: what commits after it started waits.
    let open_here = running_transaction(&db.pool).await;
    db.seed_bookings("0192e4d2-0000-7000-8000-000000000004", 5)
        .await;
    let after = format!("?after={}", exported.last().unwrap());
    assert_eq!(export_text(&api, &after).await, "");
    open_here.commit().await.unwrap();
    eventually(PATIENCE, "the export to go on once it ended", || async {
        (positions(&export_text(&api, &after).await).len() == 5).then_some(())
    })
    .await;

    open_elsewhere.rollback().await.unwrap();
    api.stop().await;
}

/// A transaction on `pool` that has its transaction id (as one that appended would),
/// left running until committed or rolled back.
async fn running_transaction(pool: &sqlx::PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut transaction = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *transaction)
        .await
        .unwrap();
    transaction
}

/// Appends `streams` location streams of `length` events each, through the triggers
/// like any append (and a receipt per statement).
async fn seed_streams(db: &TestDb, streams: i64, length: i64) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'location', 'loc-' || a, s, 'HallAdded', '1.0',
                jsonb_build_object('HallAdded', jsonb_build_object('hall', jsonb_build_object('name', 'Hall ' || s, 'capacity', 10 * s))),
                jsonb_build_object('user_id', 'admin', 'correlation_id', 'c-' || a, 'causation_id', 'c-' || a,
                                   'recorded_at', '2030-01-01T00:00:00Z')
           FROM generate_series(1, $2) s, generate_series(1, $1) a
          ORDER BY s, a",
    )
    .bind(streams)
    .bind(length)
    .execute(&db.pool)
    .await
    .unwrap();
}

/// The problems verify reports, as (kind, stream id, sequence).
async fn problems(api: &Running) -> (bool, Vec<(String, String, i64)>) {
    let report = get(api, "/v1/audit/verify").await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    let list = report.body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap().to_owned(),
                p["aggregate_id"].as_str().unwrap().to_owned(),
                p["sequence"].as_i64().unwrap(),
            )
        })
        .collect();
    (report.body["ok"].as_bool().unwrap(), list)
}

fn problem(kind: &str, stream: &str, sequence: i64) -> (String, String, i64) {
    (kind.to_owned(), stream.to_owned(), sequence)
}

#[tokio::test]
async fn verify_names_the_exact_event_after_each_kind_of_tampering() {
    let (db, api) = store_and_query_api().await;
    seed_streams(&db, 6, 5).await;
    let report = get(&api, "/v1/audit/verify").await;
    assert_eq!(report.body["ok"], true, "{}", report.body);
    assert_eq!(report.body["checked_events"], 30);
    assert_eq!(report.body["problems"], json!([]));

    // The store refuses changes made the ordinary way.
    let refused = sqlx::query("DELETE FROM events WHERE aggregate_id = 'loc-1'")
        .execute(&db.pool)
        .await;
    assert!(refused.is_err(), "a DELETE on events was accepted");
    assert_eq!(problems(&api).await, (true, vec![]));

    // An owner of the table can get around that. Verify still names each change.
    let mut conn = db.connect().await;
    sqlx::query("ALTER TABLE events DISABLE TRIGGER events_append_only")
        .execute(&mut conn)
        .await
        .unwrap();
    let tamper = |sql: &'static str| {
        let pool = db.pool.clone();
        async move { sqlx::query(sql).execute(&pool).await.unwrap() }
    };

    // A payload updated.
    tamper(
        "UPDATE events SET payload = jsonb_set(payload, '{HallAdded,hall,capacity}', '9999')
             WHERE aggregate_id = 'loc-1' AND sequence = 3",
    )
    .await;
    let mut expected = vec![problem("modified", "loc-1", 3)];
    assert_eq!(problems(&api).await, (false, expected.clone()));

    // An event in the middle of a stream deleted.
    tamper("DELETE FROM events WHERE aggregate_id = 'loc-2' AND sequence = 3").await;
    expected.push(problem("deleted", "loc-2", 3));
    assert_eq!(problems(&api).await, (false, expected.clone()));

    // The last event of a stream deleted: nothing in the chain points at it.
    tamper("DELETE FROM events WHERE aggregate_id = 'loc-3' AND sequence = 5").await;
    expected.push(problem("deleted", "loc-3", 5));
    assert_eq!(problems(&api).await, (false, expected.clone()));

    // Two sequences swapped.
    tamper("UPDATE events SET sequence = 1002 WHERE aggregate_id = 'loc-4' AND sequence = 2").await;
    tamper("UPDATE events SET sequence = 2 WHERE aggregate_id = 'loc-4' AND sequence = 3").await;
    tamper("UPDATE events SET sequence = 3 WHERE aggregate_id = 'loc-4' AND sequence = 1002").await;
    expected.push(problem("reordered", "loc-4", 2));
    expected.push(problem("reordered", "loc-4", 3));
    assert_eq!(problems(&api).await, (false, expected.clone()));

    // A hash rewritten to match a changed payload: the receipt still has the old one.
    tamper("UPDATE events SET payload = '{\"HallAdded\": {\"hall\": {\"name\": \"Forged\", \"capacity\": 1}}}',
                              hash = boxoffice_event_hash(
                                  (SELECT hash FROM events WHERE aggregate_id = 'loc-5' AND sequence = 1),
                                  aggregate_type, aggregate_id, sequence, position, event_type,
                                  event_version, '{\"HallAdded\": {\"hall\": {\"name\": \"Forged\", \"capacity\": 1}}}', metadata)
             WHERE aggregate_id = 'loc-5' AND sequence = 2")
    .await;
    expected.push(problem("modified", "loc-5", 2));
    assert_eq!(problems(&api).await, (false, expected.clone()));

    // An event inserted behind the store's back (no trigger, so no receipt).
    sqlx::query("ALTER TABLE events DISABLE TRIGGER USER")
        .execute(&mut conn)
        .await
        .unwrap();
    tamper("INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, hash)
            SELECT aggregate_type, aggregate_id, 6, event_type, event_version, payload, metadata, hash
              FROM events WHERE aggregate_id = 'loc-6' AND sequence = 5")
    .await;
    expected.push(problem("inserted", "loc-6", 6));
    expected.sort();
    let (ok, mut found) = problems(&api).await;
    found.sort();
    assert!(!ok);
    assert_eq!(found, expected);

    // The CLI says the same, and fails.
    let output = cli(&db, &["verify"]).await;
    assert_eq!(output.status.code(), Some(1));
    let printed = String::from_utf8_lossy(&output.stdout);
    for (kind, stream, sequence) in &expected {
        assert!(
            printed.lines().any(|l| l.starts_with(kind.as_str())
                && l.contains(&format!("location/{stream} sequence {sequence} "))),
            "{kind} {stream} {sequence} not in:\n{printed}"
        );
    }
    assert!(printed.contains("TAMPERED"), "{printed}");
    api.stop().await;
}

#[tokio::test]
async fn the_cli_passes_an_untouched_store_and_exports_it() {
    let (db, api) = store_and_query_api().await;
    seed_streams(&db, 3, 4).await;
    let verify = cli(&db, &["verify"]).await;
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    assert!(String::from_utf8_lossy(&verify.stdout).starts_with("ok: 12 events"));
    // The export stops before the oldest transaction of this database still running
    // (autovacuum may have one for a moment): wait until it has all twelve.
    let exported = testkit::eventually(Duration::from_secs(30), "the CLI's export", || async {
        let export = cli(&db, &["export", "--after", "0"]).await;
        assert!(export.status.success());
        let exported = String::from_utf8(export.stdout).unwrap();
        (positions(&exported).len() == 12).then_some(exported)
    })
    .await;
    let over_http = testkit::eventually(Duration::from_secs(30), "the export", || async {
        let text = export_text(&api, "").await;
        (positions(&text).len() == 12).then_some(text)
    })
    .await;
    assert_eq!(positions(&exported), positions(&over_http));
    api.stop().await;
}

/// A store as it was before card tokens left it (every migration up to 0009), with
/// booking requests holding tokens in version 1.0 and 2.0 facts, then migrated on.
#[tokio::test]
async fn card_tokens_stored_before_are_redacted_in_the_open_and_the_chain_still_verifies() {
    let db = TestDb::create().await;
    let pool = platform::db::connect(&db.url, 2).await.unwrap();
    let every = sqlx::migrate!("../migrations/event_store");
    // The migrator's fields are how `migrate!` builds it; a test may pick some.
    let before = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(
            every
                .migrations
                .iter()
                .filter(|m| m.version <= 9)
                .cloned()
                .collect(),
        ),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    };
    before.run(&pool).await.unwrap();
    db.seed_bookings("0192e4d2-0000-7000-8000-000000000009", 3)
        .await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('booking', 'b-v2', 1, 'BookingRequested', '2.0',
                 '{\"BookingRequested\": {\"event_id\": \"0192e4d2-0000-7000-8000-000000000009\", \"user_id\": \"u\",
                   \"seats\": 1, \"unit_price_cents\": 100, \"amount_cents\": 100, \"currency\": \"EUR\",
                   \"card_token\": \"tok_old_secret_card\"}}',
                 '{\"user_id\": \"u\", \"request_fingerprint\": \"sha256-of-a-body-with-the-card\"}'),
                ('booking', 'b-v2', 2, 'BookingConfirmed', '1.0', '\"BookingConfirmed\"', '{}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(
        db.scalar("SELECT count(*) FROM events WHERE payload::text LIKE '%card_token%'")
            .await,
        4
    );

    // The deployment's upgrade.
    platform::db::migrate_event_store(&pool).await.unwrap();

    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM events
              WHERE payload::text LIKE '%tok\\_seed%' OR payload::text LIKE '%tok\\_old\\_secret%'"
        )
        .await,
        0,
        "no card token is left in the store"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM events WHERE metadata ? 'request_fingerprint'")
            .await,
        0,
        "no fingerprint of a request body that held a card is left either"
    );
    // The redaction is a fact of the store's own history, chained like any other.
    assert_eq!(
        db.scalar(
            "SELECT jsonb_array_length(payload -> 'EventsRedacted' -> 'events')::bigint FROM events
              WHERE aggregate_type = 'store' AND aggregate_id = 'redactions'
                AND event_type = 'EventsRedacted'"
        )
        .await,
        4
    );
    let api = serve_query_api(&db).await;
    let verified = get(&api, "/v1/audit/verify").await;
    assert_eq!(
        (&verified.body["ok"], &verified.body["redacted_events"]),
        (&json!(true), &json!(4)),
        "{}",
        verified.body
    );
    // The export says which events were redacted; the next event of the stream still
    // links to the redacted one's hash, as appended.
    let exported = export_text(&api, "").await;
    let redacted: Vec<Value> = exported
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| !e["redacted"].is_null())
        .collect();
    assert_eq!(redacted.len(), 4);
    assert_eq!(redacted[0]["redacted"]["reason"], "card_token");

    // A redacted event changed afterwards is still caught, in its payload or in its
    // metadata.
    let mut conn = db.connect().await;
    sqlx::query("ALTER TABLE events DISABLE TRIGGER events_append_only")
        .execute(&mut conn)
        .await
        .unwrap();
    for change in [
        "payload = jsonb_set(payload, '{BookingRequested,seats}', '9')",
        "metadata = metadata || '{\"user_id\": \"someone-else\"}'",
    ] {
        let original: (Value, Value) = sqlx::query_as(
            "SELECT payload, metadata FROM events WHERE aggregate_id = 'b-v2' AND sequence = 1",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        sqlx::query(&format!(
            "UPDATE events SET {change} WHERE aggregate_id = 'b-v2' AND sequence = 1"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        let tampered = get(&api, "/v1/audit/verify").await;
        assert_eq!(tampered.body["ok"], false, "{change}");
        assert_eq!(tampered.body["problems"][0]["kind"], "modified");
        assert_eq!(tampered.body["problems"][0]["aggregate_id"], "b-v2");
        sqlx::query(
            "UPDATE events SET payload = $1, metadata = $2 WHERE aggregate_id = 'b-v2' AND sequence = 1",
        )
        .bind(&original.0)
        .bind(&original.1)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    assert_eq!(get(&api, "/v1/audit/verify").await.body["ok"], true);

    // A change dressed up as a redaction (a row in `redactions` with the hash of the
    // changed content) is tampering all the same: no fact of the store names it.
    sqlx::query(
        "UPDATE events SET payload = '\"BookingCancelled\"', event_type = 'BookingCancelled'
          WHERE aggregate_id = 'b-v2' AND sequence = 2",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO redactions (position, aggregate_type, aggregate_id, sequence, reason, redacted_hash)
         SELECT e.position, e.aggregate_type, e.aggregate_id, e.sequence, 'card_token',
                boxoffice_event_hash(p.hash, e.aggregate_type, e.aggregate_id, e.sequence, e.position,
                                     e.event_type, e.event_version, e.payload, e.metadata)
           FROM events e JOIN events p ON p.aggregate_id = e.aggregate_id AND p.sequence = 1
          WHERE e.aggregate_id = 'b-v2' AND e.sequence = 2",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let forged = get(&api, "/v1/audit/verify").await;
    assert_eq!(forged.body["ok"], false);
    assert_eq!(forged.body["problems"][0]["kind"], "modified");
    assert_eq!(forged.body["problems"][0]["sequence"], 2);
    api.stop().await;
}
