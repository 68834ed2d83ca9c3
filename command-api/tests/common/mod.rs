//! Starting command-api in the test process, on port 0, against a fresh database and a
//! topic of the test's own (or as its binary, for tests that kill it); the requests the
//! tests make come from `testkit::api`.

#![allow(dead_code, unused_imports)] // each test file uses its own part of this

use std::net::SocketAddr;
use std::time::Duration;

use command_api::config::{FairnessConfig, RelayConfig, SagaConfig};
use command_api::{AppState, Application, Config};
use platform::kafka::TopicSpec;
use reqwest::StatusCode;
use serde_json::Value;
pub use testkit::api::{admin, answer, customer, event_body, Answer};
pub use testkit::gateway::Gateway;
use testkit::service::{serve, Running, ServiceProcess};
use testkit::{TestDb, JWT_SECRET};

/// A command-api running in this process, with a payment gateway of its own.
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub brokers: String,
    pub topic: TopicSpec,
    pub gateway: Gateway,
    running: Running,
    client: reqwest::Client,
}

/// A payment gateway on `config`'s database (in its own schema), and `config` pointed
/// at it: booking requests exchange their card token there.
pub async fn with_gateway(mut config: Config) -> (Gateway, Config) {
    let gateway = Gateway::start(payment_gateway::Config::new(&config.database_url)).await;
    config.payment.url = gateway.base_url.clone();
    (gateway, config)
}

/// The configuration tests run command-api with.
pub fn config(database_url: &str, brokers: &str, topic: &TopicSpec, relay: bool) -> Config {
    Config {
        db_max_connections: 10,
        kafka_brokers: brokers.to_owned(),
        topic: topic.clone(),
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        relay: RelayConfig {
            enabled: relay,
            batch_size: 100,
            poll_interval: Duration::from_millis(200),
            ..Config::new(database_url, JWT_SECRET).relay
        },
        saga: saga_config(false),
        // Tests send many commands as one customer; the fairness tests turn it on.
        fairness: no_fairness_limits(),
        ..Config::new(database_url, JWT_SECRET)
    }
}

/// The cap on held seats and the rate limit, both off.
pub fn no_fairness_limits() -> FairnessConfig {
    FairnessConfig {
        max_held_seats_per_user: 0,
        commands_per_user_per_sec: 0,
        commands_burst: 0,
    }
}

/// Saga settings for tests: off unless a test is about sagas.
pub fn saga_config(enabled: bool) -> SagaConfig {
    SagaConfig {
        enabled,
        hold_ttl: Duration::from_secs(600),
        concurrency: 64,
        park_after: 10,
    }
}

impl TestApp {
    /// command-api on `db`, without the relay (most tests need no broker).
    pub async fn spawn(db: &TestDb) -> Self {
        Self::spawn_with(config(
            &db.url,
            "127.0.0.1:1",
            &testkit::unique_topic(),
            false,
        ))
        .await
    }

    /// command-api on `db` with the relay publishing to a fresh topic on the shared broker.
    pub async fn spawn_with_relay(db: &TestDb) -> Self {
        let brokers = testkit::kafka_brokers();
        Self::spawn_with(config(&db.url, &brokers, &testkit::unique_topic(), true)).await
    }

    pub async fn spawn_with(config: Config) -> Self {
        let (gateway, config) = with_gateway(config).await;
        let brokers = config.kafka_brokers.clone();
        let topic = config.topic.clone();
        let app = Application::build(config)
            .await
            .expect("command-api does not build");
        let state = app.state();
        let running = serve(|listener, shutdown| app.run(listener, shutdown)).await;
        Self {
            addr: running.addr,
            state,
            brokers,
            topic,
            gateway,
            running,
            client: testkit::http(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.running.url(path)
    }

    /// POSTs JSON with a bearer token and extra headers.
    pub async fn post_with(
        &self,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Answer {
        testkit::api::post(&self.client, &self.url(path), token, headers, body).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Answer {
        self.post_with(path, token, &[], body).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        answer(
            self.client
                .get(self.url(path))
                .send()
                .await
                .expect("request failed"),
        )
        .await
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A location with one hall "Main" of `capacity` seats.
    pub async fn location(&self, capacity: u32) -> String {
        let answer = self
            .post(
                "/v1/locations",
                &admin(),
                &testkit::api::location_body("Olympia", capacity),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer.id()
    }

    /// An event in hall "Main" of a new location, in 30 days, 25.00 EUR a seat.
    pub async fn event(&self, capacity: u32) -> String {
        let location = self.location(capacity).await;
        let answer = self
            .post("/v1/events", &admin(), &event_body(&location))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer.id()
    }

    pub async fn stop(self) {
        self.running.stop().await;
        self.gateway.stop().await;
    }
}

/// POSTs JSON to a service at `base`, with an optional `Idempotency-Key`.
pub async fn post_json(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: &Value,
) -> Answer {
    let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
    testkit::api::post(client, &format!("{base}{path}"), token, &headers, body).await
}

/// The command-api binary with `config` as its environment.
pub async fn command_api_process(config: &Config) -> ServiceProcess {
    let env = [
        ("DATABASE_URL", config.database_url.clone()),
        ("KAFKA_BROKERS", config.kafka_brokers.clone()),
        ("KAFKA_TOPIC", config.topic.name.clone()),
        (
            "KAFKA_TOPIC_PARTITIONS",
            config.topic.partitions.to_string(),
        ),
        ("BOXOFFICE_JWT_SECRET", config.jwt_secret.clone()),
        ("BOXOFFICE_RELAY_ENABLED", config.relay.enabled.to_string()),
        ("BOXOFFICE_RELAY_BATCH", config.relay.batch_size.to_string()),
        (
            "BOXOFFICE_RELAY_POLL_MS",
            config.relay.poll_interval.as_millis().to_string(),
        ),
        ("BOXOFFICE_SAGAS_ENABLED", config.saga.enabled.to_string()),
        (
            "BOXOFFICE_HOLD_TTL_SECS",
            config.saga.hold_ttl.as_secs_f64().to_string(),
        ),
        (
            "BOXOFFICE_MAX_HELD_SEATS_PER_USER",
            config.fairness.max_held_seats_per_user.to_string(),
        ),
        (
            "BOXOFFICE_COMMANDS_PER_USER_PER_SEC",
            config.fairness.commands_per_user_per_sec.to_string(),
        ),
        ("PAYMENT_GATEWAY_URL", config.payment.url.clone()),
        (
            "PAYMENT_TIMEOUT_MS",
            config.payment.timeout.as_millis().to_string(),
        ),
        ("PAYMENT_RETRIES", config.payment.retries.to_string()),
        (
            "BOXOFFICE_RECONCILE_EVERY_SECS",
            config.payment.reconcile_every.as_secs().to_string(),
        ),
        (
            "BOXOFFICE_RECONCILE_AFTER_SECS",
            config.payment.reconcile_after.as_secs().to_string(),
        ),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    ServiceProcess::start(
        env!("CARGO_BIN_EXE_command-api"),
        &env,
        "COMMAND_API_ADDR",
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
    )
    .await
}
