//! Rebuilding a projection while it serves: queries never see an empty or partial
//! model, and the rebuilt model equals the live one row for row.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::*;
use reqwest::StatusCode;
use serde_json::json;
use testkit::eventually;

/// A location, an event, `own` bookings by alice through the API and `seeded` more
/// straight into the store; returns the event's id once everything is projected.
async fn busy_event(stack: &Stack, own: usize, seeded: i64) -> String {
    let location = stack.location("Olympia", 100_000).await;
    let event = stack.event(&event_body(&location)).await.id();
    for _ in 0..own {
        stack.book(&event, "alice", 1).await;
    }
    stack.seed_bookings(&event, seeded).await;
    stack.caught_up().await;
    event
}

/// Reads alice's bookings and one seeded booking over and over until told to stop;
/// every answer must show the whole model.
fn keep_reading(
    stack: &Stack,
    own: usize,
    seeded_id: String,
) -> (Arc<AtomicBool>, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let (client, base) = (stack.client.clone(), stack.query.url(""));
    let (stop_flag, counter) = (stop.clone(), reads.clone());
    let reader = tokio::spawn(async move {
        while !stop_flag.load(Ordering::Relaxed) {
            let mine = testkit::api::get(
                &client,
                &format!("{base}/v1/users/me/bookings?limit=200"),
                &customer("alice"),
                &[],
            )
            .await;
            assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
            assert_eq!(
                mine.body["items"].as_array().map(Vec::len),
                Some(own),
                "a partial model was served"
            );
            let seeded = testkit::api::get(
                &client,
                &format!("{base}/v1/bookings/{seeded_id}"),
                &admin(),
                &[],
            )
            .await;
            assert_eq!(
                seeded.status,
                StatusCode::OK,
                "a seeded booking went missing: {}",
                seeded.body
            );
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    (stop, reads, reader)
}

async fn a_seeded_booking(stack: &Stack) -> String {
    sqlx::query_scalar(
        "SELECT id::text FROM read_models.booking_view WHERE user_id LIKE 'seed-%' LIMIT 1",
    )
    .fetch_one(&stack.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_rebuild_under_queries_never_serves_a_partial_model_and_equals_the_live_one() {
    let stack = Stack::start_with(Options {
        // Bookings stay as recorded: this test is about the read side.
        sagas: false,
        ..Options::default()
    })
    .await;
    let event = busy_event(&stack, 20, 30_000).await;
    let live = stack.checksum("booking_view").await;
    let (stop, reads, reader) = keep_reading(&stack, 20, a_seeded_booking(&stack).await);
    eventually(Duration::from_secs(10), "the reader to start", || async {
        (reads.load(Ordering::Relaxed) > 0).then_some(())
    })
    .await;
    let reads_before = reads.load(Ordering::Relaxed);

    // What `projector rebuild bookings` runs.
    let progress = Mutex::new(Vec::new());
    let report = projector::rebuild::run(
        &stack.projector().read,
        &stack.projector().store,
        projector::Projection::Bookings,
        None,
        &|p| {
            progress.lock().unwrap().push((p.done, p.total));
        },
    )
    .await
    .unwrap();

    stop.store(true, Ordering::Relaxed);
    reader
        .await
        .expect("a reader saw an empty or partial model");
    assert!(
        reads.load(Ordering::Relaxed) > reads_before,
        "no query ran during the rebuild"
    );
    assert_eq!(report.events, 30_020);
    let progress = progress.into_inner().unwrap();
    assert!(
        progress.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress went backwards"
    );
    assert_eq!(progress.last(), Some(&(30_020, 30_020)));
    assert_eq!(
        stack.checksum("booking_view").await,
        live,
        "the rebuilt model differs from the live one"
    );

    // The live projection carries on in the swapped-in table.
    let after = stack.book(&event, "alice", 2).await;
    let shown = stack
        .query_with(
            &format!("/v1/bookings/{}", after.id()),
            &customer("alice"),
            &[("x-consistency-token", &after.token())],
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK);
    let statuses = stack.query("/v1/admin/projections", &admin()).await;
    let bookings = &statuses.body[2];
    assert_eq!(
        (&bookings["name"], &bookings["status"]),
        (&json!("bookings"), &json!("live"))
    );
    assert_eq!(
        (
            &bookings["rebuild"]["status"],
            &bookings["rebuild"]["progress"]
        ),
        (&json!("done"), &json!(1.0))
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_rebuild_asked_for_over_http_is_run_by_the_projector() {
    let stack = Stack::start_with(Options {
        // Bookings stay as recorded: this test is about the read side.
        sagas: false,
        ..Options::default()
    })
    .await;
    busy_event(&stack, 5, 20_000).await;
    let live = stack.checksum("booking_view").await;
    let (stop, reads, reader) = keep_reading(&stack, 5, a_seeded_booking(&stack).await);
    let url = stack.query.url("/v1/admin/projections/bookings/rebuild");

    let asked = testkit::api::post(&stack.client, &url, &admin(), &[], &json!({})).await;
    let again = testkit::api::post(&stack.client, &url, &admin(), &[], &json!({})).await;
    let by_customer =
        testkit::api::post(&stack.client, &url, &customer("alice"), &[], &json!({})).await;

    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.body);
    assert_eq!(asked.body["status"], "requested");
    assert_eq!(by_customer.status, StatusCode::FORBIDDEN);
    let id = asked.body["id"].as_i64().unwrap();
    // Until it is done, asking again answers the same rebuild.
    let listed = stack.query("/v1/admin/projections", &admin()).await;
    if listed.body[2]["rebuild"]["status"] != "done" {
        assert_eq!(again.body["id"].as_i64(), Some(id));
    }
    let done = stack
        .eventually(
            "/v1/admin/projections",
            &admin(),
            "the rebuild to be done",
            |a| {
                a.body[2]["rebuild"]["id"].as_i64() == Some(id)
                    && a.body[2]["rebuild"]["status"] == "done"
            },
        )
        .await;
    stop.store(true, Ordering::Relaxed);
    reader
        .await
        .expect("a reader saw an empty or partial model");

    assert!(reads.load(Ordering::Relaxed) > 0);
    let rebuild = &done.body[2]["rebuild"];
    assert_eq!(
        (&rebuild["events_done"], &rebuild["events_total"]),
        (&json!(20_005), &json!(20_005))
    );
    assert_eq!(done.body[2]["status"], "live");
    assert_eq!(stack.checksum("booking_view").await, live);
    stack.stop().await;
}

#[tokio::test]
async fn every_projection_rebuilds_to_what_it_was() {
    let stack = Stack::start_with(Options {
        // Bookings stay as recorded: this test is about the read side.
        sagas: false,
        ..Options::default()
    })
    .await;
    let location = stack.location("Olympia", 500).await;
    stack
        .command(
            &format!("/v1/locations/{location}/halls"),
            &admin(),
            &json!({"name": "Club", "capacity": 40}),
        )
        .await;
    let event = stack.event(&event_body(&location)).await.id();
    let other = stack
        .event(&event_body_in(&location, "Matinee", 5))
        .await
        .id();
    stack
        .command(
            &format!("/v1/events/{other}/cancel"),
            &admin(),
            &json!({"reason": "rain"}),
        )
        .await;
    stack.book(&event, "alice", 3).await;
    stack.caught_up().await;
    let tables = ["location_view", "event_view", "booking_view"];
    let mut before = Vec::new();
    for table in tables {
        before.push(stack.checksum(table).await);
    }

    for projection in [
        projector::Projection::Locations,
        projector::Projection::Events,
        projector::Projection::Bookings,
    ] {
        projector::rebuild::run(
            &stack.projector().read,
            &stack.projector().store,
            projection,
            None,
            &|_| {},
        )
        .await
        .unwrap();
    }

    for (table, sum) in tables.iter().zip(before) {
        assert_eq!(stack.checksum(table).await, sum, "{table}");
    }
    // The indexes keep their names, so later migrations can refer to them.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'read_models' AND tablename = 'booking_view' ORDER BY 1",
    )
    .fetch_all(&stack.db.pool)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "booking_view_event",
            "booking_view_pkey",
            "booking_view_user"
        ]
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_rebuild_asked_again_with_its_idempotency_key_is_not_run_again() {
    let stack = Stack::start_with(Options {
        sagas: false,
        ..Options::default()
    })
    .await;
    busy_event(&stack, 1, 100).await;
    let url = stack.query.url("/v1/admin/projections/events/rebuild");
    let key = [("Idempotency-Key", "nightly-events-rebuild")];
    let latest = |name: &'static str| {
        let stack = &stack;
        async move {
            let listed = stack.query("/v1/admin/projections", &admin()).await;
            listed
                .body
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap()["rebuild"]
                .clone()
        }
    };

    let asked = testkit::api::post(&stack.client, &url, &admin(), &key, &json!({})).await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.body);
    let id = asked.body["id"].as_i64().unwrap();
    eventually(
        Duration::from_secs(60),
        "the rebuild to be done",
        || async {
            let rebuild = latest("events").await;
            (rebuild["id"].as_i64() == Some(id) && rebuild["status"] == "done").then_some(())
        },
    )
    .await;

    // The retry of a request that was answered: the first answer, and nothing new
    // asked for, although the rebuild it got is over.
    let again = testkit::api::post(&stack.client, &url, &admin(), &key, &json!({})).await;
    assert_eq!((again.status, &again.body), (asked.status, &asked.body));
    assert_eq!(latest("events").await["id"].as_i64(), Some(id));

    // The key on another request is refused, and asks for nothing.
    let bookings = stack.query.url("/v1/admin/projections/bookings/rebuild");
    let other = testkit::api::post(&stack.client, &bookings, &admin(), &key, &json!({})).await;
    assert_eq!(
        (other.status, other.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
    );
    assert_eq!(latest("bookings").await, json!(null));

    // A malformed key is a 400; without a key, the same request asks for a new rebuild.
    let long = "k".repeat(201);
    let malformed = testkit::api::post(
        &stack.client,
        &url,
        &admin(),
        &[("Idempotency-Key", &long)],
        &json!({}),
    )
    .await;
    assert_eq!(
        (malformed.status, malformed.code()),
        (StatusCode::BAD_REQUEST, "invalid_idempotency_key")
    );
    let fresh = testkit::api::post(&stack.client, &url, &admin(), &[], &json!({})).await;
    assert_eq!(fresh.status, StatusCode::ACCEPTED);
    assert!(fresh.body["id"].as_i64().unwrap() > id);
    stack.stop().await;
}
