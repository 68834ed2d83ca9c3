//! Helpers for integration tests that run against the real Postgres and broker.
//!
//! `scripts/test` starts both and exports:
//! - `BOXOFFICE_TEST_DATABASE_URL`: a superuser URL; every test gets a database of its
//!   own ([`TestDb`]), so tests run in parallel.
//! - `BOXOFFICE_TEST_KAFKA_BROKERS`: the shared broker; every test gets a topic of its
//!   own ([`unique_topic`]).
//! - `BOXOFFICE_TANSU_BIN`: for tests that stop and restart a broker, a private one
//!   ([`PrivateBroker`]).
//! - `BOXOFFICE_NGINX_BIN`: the front door ([`front_door`]).
//! - `BOXOFFICE_SMTP_PYTHON`, `BOXOFFICE_SMTP_SINK`: an SMTP server of the test's own,
//!   every message it accepts an `.eml` file ([`smtp::SmtpSink`]).
//!
//! Nothing here sleeps to synchronise: [`eventually`] polls a condition until a
//! deadline.
//!
//! [`api`] has tokens and requests; [`service`] runs a service in this process or as a
//! child process; [`gateway`] runs the payment gateway in this process.

pub mod api;
pub mod front_door;
pub mod gateway;
pub mod otlp;
mod payments;
pub mod roles;
pub mod service;
pub mod smtp;
pub mod tls_broker;

use std::future::Future;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use platform::kafka::{
    client_config, ensure_topic, KafkaLogs, KafkaSecurity, TopicSpec, WireEvent,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// The JWT secret tests sign with.
pub const JWT_SECRET: &str = "boxoffice-test-secret-thirty-two-bytes";

/// Prefix of the databases tests create (`scripts/test` drops leftovers).
pub const DB_PREFIX: &str = "bt_";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test, which starts Postgres and the broker")
    })
}

/// A database of the test's own, with nothing in it.
pub struct TestDb {
    /// Its URL.
    pub url: String,
    /// Its name.
    pub name: String,
    /// A small pool for the test's own queries.
    pub pool: PgPool,
}

impl TestDb {
    /// Creates a fresh, empty database.
    pub async fn create() -> Self {
        let admin_url = env("BOXOFFICE_TEST_DATABASE_URL");
        let name = format!("{DB_PREFIX}{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("cannot connect to the test Postgres");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("cannot create the test database");
        let _ = admin.close().await;
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("BOXOFFICE_TEST_DATABASE_URL has no database name");
        let url = format!("{base}/{name}");
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_lazy(&url)
            .expect("bad test database URL");
        Self { url, name, pool }
    }

    /// A single connection to it.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("cannot connect to the test database")
    }

    /// Appends `count` booking requests for `event_id` straight into the event store,
    /// each its own aggregate (users `seed-1` ..), shaped as command-api records them.
    /// Through the outbox they take the real path to the topic and the projector.
    pub async fn seed_bookings(&self, event_id: &str, count: i64) {
        let metadata = domain::metadata::key::sql_object(
            "'seed-' || n",
            "'seed'",
            "'seed'",
            "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
        );
        sqlx::query(&format!(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT 'booking', gen_random_uuid()::text, 1, 'BookingRequested', '1.0',
                    jsonb_build_object('BookingRequested', jsonb_build_object(
                        'event_id', $1::text, 'user_id', 'seed-' || n, 'seats', 1 + n % 4,
                        'amount_cents', 2500 * (1 + n % 4), 'currency', 'EUR', 'card_token', 'tok_seed')),
                    {metadata}
               FROM generate_series(1, $2) n",
        ))
        .bind(event_id)
        .bind(count)
        .execute(&self.pool)
        .await
        .expect("cannot seed bookings");
    }

    /// The result of a scalar query, such as `SELECT count(*) FROM events`.
    pub async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"))
    }
}

/// The shared test broker.
pub fn kafka_brokers() -> String {
    env("BOXOFFICE_TEST_KAFKA_BROKERS")
}

/// A topic name no other test uses (created on first use by the relay, or by
/// [`create_topic`]).
pub fn unique_topic() -> TopicSpec {
    TopicSpec {
        name: format!("bt.{}", Uuid::new_v4().simple()),
        partitions: 3,
        replication: 1,
    }
}

/// Creates `topic` on `brokers`.
pub async fn create_topic(brokers: &str, topic: &TopicSpec) {
    ensure_topic(brokers, &KafkaSecurity::PLAINTEXT, topic)
        .await
        .expect("cannot create the test topic");
}

/// Polls `check` until it returns `Some`, failing the test after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Polls `check` until it returns `Some`; `None` after `within` (for tests that say
/// themselves what was missing).
pub async fn eventually_or<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Every message on `topic` now, read from the start of every partition, with the
/// partition it is in. Blocking; call it from `spawn_blocking` or through
/// [`read_topic`].
pub fn read_topic_blocking(brokers: &str, topic: &str) -> Vec<(i32, WireEvent)> {
    read_messages_blocking(brokers, topic)
        .into_iter()
        .map(|(partition, wire, _)| (partition, wire))
        .collect()
}

/// Every message of `topic`, with the CloudEvents attributes of its headers.
pub async fn read_topic_attributes(
    brokers: &str,
    topic: &str,
) -> Vec<(WireEvent, Option<platform::cloudevents::Attributes>)> {
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_messages_blocking(&brokers, &topic))
        .await
        .expect("topic reader panicked")
        .into_iter()
        .map(|(_, wire, attributes)| (wire, attributes))
        .collect()
}

type Read = (i32, WireEvent, Option<platform::cloudevents::Attributes>);

fn read_messages_blocking(brokers: &str, topic: &str) -> Vec<Read> {
    let consumer: BaseConsumer<KafkaLogs> = client_config(brokers, &KafkaSecurity::PLAINTEXT)
        .set("group.id", format!("bt-reader-{}", Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create_with_context(KafkaLogs)
        .expect("cannot create a test consumer");
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .expect("cannot read topic metadata");
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    // The end of a partition is where the broker says it is when we get there
    // (PartitionEOF, from the fetch response). ListOffsets is not trusted for that: tansu
    // answers the base offset of the last batch plus one.
    let mut assignment = TopicPartitionList::new();
    let mut open = std::collections::HashSet::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .expect("cannot read watermarks");
        if high > low {
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(low))
                .expect("bad assignment");
            open.insert(partition);
        }
    }
    let mut messages = Vec::new();
    if open.is_empty() {
        return messages;
    }
    consumer.assign(&assignment).expect("cannot assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !open.is_empty() {
        assert!(Instant::now() < deadline, "timed out reading topic {topic}");
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(err)) => panic!("reading {topic}: {err}"),
            Some(Ok(message)) => {
                let wire: WireEvent = serde_json::from_slice(message.payload().unwrap_or_default())
                    .expect("a message that is not a wire event");
                let attributes = platform::cloudevents::Attributes::read(message.headers());
                messages.push((message.partition(), wire, attributes));
            }
        }
    }
    messages
}

/// [`read_topic_blocking`] on a blocking thread.
pub async fn read_topic(brokers: &str, topic: &str) -> Vec<(i32, WireEvent)> {
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_topic_blocking(&brokers, &topic))
        .await
        .expect("topic reader panicked")
}

/// Produces `events` to `topic` as the relay does (key: the aggregate id, value: the
/// wire event), one after the other: a test's own duplicates, gaps and replays.
pub async fn produce(brokers: &str, topic: &str, events: &[WireEvent]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer<KafkaLogs> = client_config(brokers, &KafkaSecurity::PLAINTEXT)
        .create_with_context(KafkaLogs)
        .expect("a producer");
    for event in events {
        let value = serde_json::to_vec(event).expect("a wire event encodes");
        producer
            .send(
                FutureRecord::to(topic)
                    .key(&event.aggregate_id)
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("delivered");
    }
}

/// A free TCP port on loopback (free when asked; taken soon after, usually by us).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("no free port")
        .port()
}

/// A tansu broker of the test's own, with memory storage, which the test can stop and
/// start again (empty, as a real broker that lost its disk).
pub struct PrivateBroker {
    /// The port it tells clients to connect to (its own, unless a proxy stands in
    /// front of it).
    advertised: u16,
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

impl PrivateBroker {
    /// Starts a broker on a free port and waits until it accepts connections.
    pub async fn start() -> Self {
        let port = free_port();
        Self::start_advertising(port, port).await
    }

    /// Starts a broker on `port` that tells clients to connect to `advertised` (where
    /// a proxy forwards to it), and waits until it accepts connections.
    pub async fn start_advertising(port: u16, advertised: u16) -> Self {
        let mut broker = Self {
            port,
            advertised,
            child: None,
        };
        broker.restart().await;
        broker
    }

    /// `host:port`, for clients.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (SIGKILL: whatever it held is gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port, empty.
    pub async fn restart(&mut self) {
        self.stop();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(std::env::temp_dir().join(format!("boxoffice-tansu-{}.log", self.port)))
            .expect("cannot open the broker's log");
        let child = Command::new(env("BOXOFFICE_TANSU_BIN"))
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cannot share the broker's log"))
            .stderr(log)
            .spawn()
            .expect("cannot start tansu");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        eventually(
            Duration::from_secs(20),
            "the private broker to listen",
            || {
                let addr = addr.clone();
                async move { tokio::net::TcpStream::connect(addr).await.ok().map(drop) }
            },
        )
        .await;
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A JSON HTTP client for the services under test.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("cannot build an HTTP client")
}
