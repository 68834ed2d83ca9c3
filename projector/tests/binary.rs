//! The projector binary as operators run it: killed with SIGKILL mid-batch and
//! restarted, it converges; `projector rebuild` and `projector status` do what they say.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use testkit::api::{admin, event_body, location_body};
use testkit::service::{serve, ServiceProcess};
use testkit::{eventually, TestDb, JWT_SECRET};

/// command-api in this process, publishing to a topic of the test's own.
async fn command_api(db: &TestDb, topic: &platform::kafka::TopicSpec) -> testkit::service::Running {
    let mut config = command_api::Config::new(&db.url, JWT_SECRET);
    config.db_max_connections = 10;
    config.kafka_brokers = testkit::kafka_brokers();
    config.topic = topic.clone();
    config.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.relay.poll_interval = Duration::from_millis(200);
    // The seeded bookings stay as they are: this test is about the projector.
    config.saga.enabled = false;
    let app = command_api::Application::build(config)
        .await
        .expect("command-api");
    serve(|l, s| app.run(l, s)).await
}

fn env(db: &TestDb, topic: &str, group: &str) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", db.url.clone()),
        ("KAFKA_BROKERS", testkit::kafka_brokers()),
        ("KAFKA_TOPIC", topic.to_owned()),
        ("PROJECTOR_GROUP", group.to_owned()),
        ("PROJECTOR_SWEEP_MS", "1000".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec()
}

async fn projector(db: &TestDb, topic: &str, group: &str) -> ServiceProcess {
    ServiceProcess::start(
        env!("CARGO_BIN_EXE_projector"),
        &env(db, topic, group),
        "PROJECTOR_ADDR",
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
    )
    .await
}

/// Runs a projector subcommand; returns its output, failing on a non-zero exit.
fn cli(db: &TestDb, topic: &str, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_projector"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env(db, topic, "unused"))
        .output()
        .expect("cannot run projector");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "projector {args:?} failed: {text}");
    text
}

async fn booking_rows(db: &TestDb) -> i64 {
    db.scalar("SELECT count(*) FROM read_models.booking_view")
        .await
}

async fn checksum(db: &TestDb) -> String {
    sqlx::query_scalar(
        "SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM read_models.booking_view t",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_projector_killed_mid_batch_converges_and_the_cli_rebuilds_and_reports() {
    let db = TestDb::create().await;
    let topic = testkit::unique_topic();
    let group = format!("bt-{}", uuid::Uuid::new_v4().simple());
    let command = command_api(&db, &topic).await;
    let client = testkit::http();
    let location = testkit::api::post(
        &client,
        &command.url("/v1/locations"),
        &admin(),
        &[],
        &location_body("Olympia", 100),
    )
    .await;
    let event = testkit::api::post(
        &client,
        &command.url("/v1/events"),
        &admin(),
        &[],
        &event_body(&location.id()),
    )
    .await;
    assert_eq!(event.status, StatusCode::CREATED);
    db.seed_bookings(&event.id(), 30_000).await;

    let mut process = projector(&db, &topic.name, &group).await;
    eventually(
        Duration::from_secs(60),
        "the projector to be under way",
        || async {
            let rows = booking_rows(&db).await;
            (rows > 0 && rows < 30_000).then_some(())
        },
    )
    .await;
    process.kill();
    let killed_at = booking_rows(&db).await;
    assert!(
        killed_at < 30_000,
        "the projector finished before it was killed"
    );

    let process = projector(&db, &topic.name, &group).await;
    eventually(
        Duration::from_secs(90),
        "the projector to converge",
        || async { (booking_rows(&db).await == 30_000).then_some(()) },
    )
    .await;
    let converged = checksum(&db).await;
    assert_eq!(process.terminate().await, Some(0));

    // The store's truth, rebuilt from scratch, is what the crashed projector converged to.
    let rebuilt = cli(&db, &topic.name, &["rebuild", "all"]);
    assert!(rebuilt.contains("bookings: 30000 events"), "{rebuilt}");
    assert!(rebuilt.contains("locations: 1 events"), "{rebuilt}");
    assert_eq!(checksum(&db).await, converged);

    let status = cli(&db, &topic.name, &["status"]);
    let bookings = status
        .lines()
        .find(|l| l.starts_with("bookings"))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(
        bookings.contains("live") && bookings.contains("done 100% (30000/30000)"),
        "{status}"
    );
    command.stop().await;
}
