//! Starting command-api in the test process, on port 0, against a fresh database and a
//! topic of the test's own; and the requests the tests make.

#![allow(dead_code)] // each test file uses its own part of this

use std::net::SocketAddr;
use std::time::Duration;

use command_api::config::RelayConfig;
use command_api::{AppState, Application, Config};
use platform::auth::{Jwt, Role};
use platform::kafka::TopicSpec;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::{TestDb, JWT_SECRET};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A command-api running in this process.
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub brokers: String,
    pub topic: TopicSpec,
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
    client: reqwest::Client,
}

/// An answer: status, headers, JSON body (`Null` when empty or not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The error code of an error envelope.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// The `id` of an accepted command.
    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .expect("no id in the answer")
            .to_owned()
    }
}

/// The configuration tests run command-api with.
pub fn config(database_url: &str, brokers: &str, topic: &TopicSpec, relay: bool) -> Config {
    Config {
        database_url: database_url.to_owned(),
        db_max_connections: 10,
        kafka_brokers: brokers.to_owned(),
        topic: topic.clone(),
        jwt_secret: JWT_SECRET.to_owned(),
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        relay: RelayConfig {
            enabled: relay,
            batch_size: 100,
            poll_interval: Duration::from_millis(200),
        },
        idempotency_ttl: Duration::from_secs(3600),
    }
}

pub fn admin() -> String {
    Jwt::new(JWT_SECRET).issue("admin-1", Role::Admin, Duration::from_secs(600))
}

pub fn customer(sub: &str) -> String {
    Jwt::new(JWT_SECRET).issue(sub, Role::Customer, Duration::from_secs(600))
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
        // Logs go to the test's captured output, shown when it fails.
        platform::telemetry::init();
        let brokers = config.kafka_brokers.clone();
        let topic = config.topic.clone();
        let app = Application::build(config)
            .await
            .expect("command-api does not build");
        let state = app.state();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run(listener, shutdown.clone()));
        Self {
            addr,
            state,
            brokers,
            topic,
            shutdown,
            handle,
            client: testkit::http(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs JSON with a bearer token and extra headers.
    pub async fn post_with(
        &self,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Answer {
        let mut request = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        answer(request.send().await.expect("request failed")).await
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
                &json!({"name": "Olympia", "address": "28 Bd des Capucines", "country": "FR",
                        "halls": [{"name": "Main", "capacity": capacity}]}),
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
        self.shutdown.cancel();
        self.handle
            .await
            .expect("command-api panicked")
            .expect("command-api failed");
    }
}

/// A valid schedule body for `location`'s hall "Main".
pub fn event_body(location: &str) -> Value {
    let starts = chrono::Utc::now() + chrono::Duration::days(30);
    json!({
        "name": "Jazz night",
        "location_id": location,
        "hall": "Main",
        "starts_at": starts.to_rfc3339(),
        "ends_at": (starts + chrono::Duration::hours(3)).to_rfc3339(),
        "price_cents": 2500,
        "currency": "EUR",
    })
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
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
    let mut request = client
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    answer(request.send().await.expect("request failed")).await
}

/// The real command-api binary in a child process, for tests that kill it.
pub struct ServiceProcess {
    child: std::process::Child,
    pub port: u16,
    pub log: std::path::PathBuf,
}

impl ServiceProcess {
    /// Starts the binary with `config` as its environment (on a free port) and waits
    /// until it answers `/health/live`.
    pub async fn start(config: &Config) -> Self {
        let port = testkit::free_port();
        let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("command-api-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("cannot create the log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_command-api"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &config.database_url)
            .env("KAFKA_BROKERS", &config.kafka_brokers)
            .env("KAFKA_TOPIC", &config.topic.name)
            .env(
                "KAFKA_TOPIC_PARTITIONS",
                config.topic.partitions.to_string(),
            )
            .env("BOXOFFICE_JWT_SECRET", &config.jwt_secret)
            .env("COMMAND_API_ADDR", format!("127.0.0.1:{port}"))
            .env("BOXOFFICE_RELAY_ENABLED", config.relay.enabled.to_string())
            .env("BOXOFFICE_RELAY_BATCH", config.relay.batch_size.to_string())
            .env(
                "BOXOFFICE_RELAY_POLL_MS",
                config.relay.poll_interval.as_millis().to_string(),
            )
            .env("LOG_FORMAT", "json")
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("cannot start command-api");
        let process = Self { child, port, log };
        let url = format!("{}/health/live", process.base_url());
        let client = testkit::http();
        testkit::eventually(Duration::from_secs(30), "command-api to answer", || {
            let request = client.get(&url).send();
            async move {
                request
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(drop)
            }
        })
        .await;
        process
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the exit; returns the exit code.
    pub async fn terminate(self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "cannot send SIGTERM");
        self.wait().await
    }

    /// Waits for the process to exit; returns the exit code.
    pub async fn wait(mut self) -> Option<i32> {
        let status = testkit::eventually(Duration::from_secs(30), "command-api to exit", || {
            let status = self.child.try_wait().ok().flatten();
            async move { status }
        })
        .await;
        status.code()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
