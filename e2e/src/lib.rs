//! The whole system in the test process: command-api (relay on), projector and
//! query-api on a fresh database and a topic of the test's own.
//!
//! The tests under `tests/` drive boxoffice end to end: a booking from the command
//! through the relay, the topic, the projector and the sagas to the read model query-api
//! serves. They live in a crate of their own so that no service has to link another
//! one (query-api knows nothing of the projector; this crate links all of them).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use platform::kafka::{KafkaSecurity, TopicSpec};
use reqwest::StatusCode;
use serde_json::{json, Value};
pub use testkit::api::{admin, customer, event_body, event_body_in, location_body, Answer};
pub use testkit::gateway::Gateway;
use testkit::roles;
use testkit::service::{serve, Running};
use testkit::{eventually, TestDb, JWT_SECRET};
use uuid::Uuid;

/// command-api, projector, query-api and the payment gateway on one database (the
/// gateway in a schema of its own) and topic.
pub struct Stack {
    pub db: TestDb,
    /// The payment gateway command-api pays through.
    pub gateway: Gateway,
    pub brokers: String,
    /// How the services reach the broker (plaintext unless a test says otherwise).
    pub kafka_security: KafkaSecurity,
    /// The topic the projector consumes.
    pub topic: TopicSpec,
    /// The topic the relay publishes to (the same unless a test redirected the projector).
    pub relay_topic: String,
    /// command-api's state, for tests that play the saga's part.
    pub command_state: command_api::AppState,
    /// query-api's state, for tests that read its watcher.
    pub query_state: query_api::AppState,
    pub group: String,
    pub command: Running,
    pub projector: Option<(Running, Arc<projector::Context>)>,
    pub query: Running,
    pub client: reqwest::Client,
    sweep: Duration,
}

/// How to start a stack.
pub struct Options {
    /// The broker (the shared test broker by default).
    pub brokers: Option<String>,
    /// How the services reach it (TLS, SASL).
    pub kafka_security: KafkaSecurity,
    /// How often the projector sweeps the store (`ZERO`: never).
    pub sweep: Duration,
    /// The topic the projector consumes, when it should not be the relay's.
    pub projector_topic: Option<String>,
    /// Whether command-api runs the sagas (bookings then move on by themselves).
    pub sagas: bool,
    /// How long a seat hold waits for the payment.
    pub hold_ttl: Duration,
    /// Changes to command-api's configuration (payment timeouts, reconciliation).
    pub command: fn(&mut command_api::Config),
    /// Changes to the payment gateway's configuration (its capacity).
    pub gateway: fn(&mut payment_gateway::Config),
}

impl Default for Options {
    fn default() -> Self {
        Self {
            brokers: None,
            kafka_security: KafkaSecurity::PLAINTEXT,
            sweep: Duration::from_millis(500),
            projector_topic: None,
            sagas: true,
            hold_ttl: Duration::from_secs(600),
            command: |_| {},
            gateway: |_| {},
        }
    }
}

pub fn projector_config(
    db: &TestDb,
    brokers: &str,
    topic: &TopicSpec,
    group: &str,
    sweep: Duration,
) -> projector::Config {
    // The projector's own database user, as a deployment runs it.
    let url = roles::url_as(&db.url, roles::PROJECTOR);
    projector::Config {
        database_url: url.clone(),
        read_database_url: url,
        kafka_brokers: brokers.to_owned(),
        kafka_security: platform::kafka::KafkaSecurity::PLAINTEXT,
        topic: topic.clone(),
        group: group.to_owned(),
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        http: platform::server::ServerLimits::default(),
        batch_size: 500,
        sweep_interval: sweep,
        fetch_wait: Duration::from_millis(10),
        parked_retry: Duration::from_secs(30),
        reads: domain::upcast::readable,
    }
}

/// Applies every migration to `db` as its owner (the test's superuser).
pub async fn migrate_as_owner(db: &TestDb) {
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
    let notifier = platform::db::connect_in_schema(&db.url, platform::db::NOTIFIER_SCHEMA, 2)
        .await
        .unwrap();
    platform::db::migrate_notifier(&notifier).await.unwrap();
    for pool in [store, read, payments, notifier] {
        pool.close().await;
    }
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// Every service runs as its own database user, with only its group's rights; the
    /// migrations run first, as the owner, as a deployment runs them.
    pub async fn start_with(options: Options) -> Self {
        let db = TestDb::create().await;
        migrate_as_owner(&db).await;
        roles::ensure_logins().await;
        let mut gateway_config = testkit::gateway::config(&db);
        gateway_config.database_url = roles::url_as(&db.url, roles::PAYMENTS);
        (options.gateway)(&mut gateway_config);
        let gateway = Gateway::start(gateway_config).await;
        let brokers = options.brokers.unwrap_or_else(testkit::kafka_brokers);
        let topic = testkit::unique_topic();
        let mut command_config =
            command_api::Config::new(&roles::url_as(&db.url, roles::COMMAND), JWT_SECRET);
        command_config.db_max_connections = 10;
        command_config.kafka_brokers = brokers.clone();
        command_config.kafka_security = options.kafka_security.clone();
        command_config.topic = topic.clone();
        command_config.addr = SocketAddr::from(([127, 0, 0, 1], 0));
        command_config.relay.poll_interval = Duration::from_millis(200);
        command_config.saga.enabled = options.sagas;
        command_config.saga.hold_ttl = options.hold_ttl;
        // Tests send many commands as one customer.
        command_config.fairness.max_held_seats_per_user = 0;
        command_config.fairness.commands_per_user_per_sec = 0;
        command_config.payment.url = gateway.base_url.clone();
        (options.command)(&mut command_config);
        let command_app = command_api::Application::build(command_config)
            .await
            .expect("command-api");
        let command_state = command_app.state();
        let command = serve(|l, s| command_app.run(l, s)).await;
        let query_app = query_api::Application::build(query_api::Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..query_api::Config::new(&roles::url_as(&db.url, roles::QUERY), JWT_SECRET)
        })
        .await
        .expect("query-api");
        let query_state = query_app.state();
        let query = serve(|l, s| query_app.run(l, s)).await;
        let mut projector_topic = topic.clone();
        if let Some(name) = options.projector_topic {
            projector_topic.name = name;
        }
        let mut stack = Self {
            db,
            gateway,
            brokers,
            kafka_security: options.kafka_security,
            relay_topic: topic.name.clone(),
            command_state,
            query_state,
            topic: projector_topic,
            group: format!("bt-projector-{}", Uuid::new_v4().simple()),
            command,
            projector: None,
            query,
            client: testkit::http(),
            sweep: options.sweep,
        };
        stack.start_projector().await;
        stack
    }

    /// Starts (again) the projector, in the stack's consumer group.
    pub async fn start_projector(&mut self) {
        self.start_projector_with(|_| {}).await;
    }

    /// Starts (again) the projector, with a change to its configuration.
    pub async fn start_projector_with(&mut self, change: impl FnOnce(&mut projector::Config)) {
        let mut config = projector_config(
            &self.db,
            &self.brokers,
            &self.topic,
            &self.group,
            self.sweep,
        );
        config.kafka_security = self.kafka_security.clone();
        change(&mut config);
        let app = projector::Application::build(config)
            .await
            .expect("projector");
        let context = app.context();
        let running = serve(|l, s| app.run(l, s)).await;
        self.projector = Some((running, context));
    }

    /// Stops the projector as SIGTERM would.
    pub async fn stop_projector(&mut self) {
        if let Some((running, _)) = self.projector.take() {
            running.stop().await;
        }
    }

    /// The running projector's shared context.
    pub fn projector(&self) -> &Arc<projector::Context> {
        &self.projector.as_ref().expect("the projector runs").1
    }

    /// POST to command-api.
    pub async fn command(&self, path: &str, token: &str, body: &Value) -> Answer {
        testkit::api::post(&self.client, &self.command.url(path), token, &[], body).await
    }

    /// POST `{}` to query-api as an admin.
    pub async fn admin_query_post(&self, path: &str) -> Answer {
        testkit::api::post(
            &self.client,
            &self.query.url(path),
            &admin(),
            &[],
            &json!({}),
        )
        .await
    }

    /// GET from query-api.
    pub async fn query(&self, path: &str, token: &str) -> Answer {
        self.query_with(path, token, &[]).await
    }

    /// GET from query-api with extra headers.
    pub async fn query_with(&self, path: &str, token: &str, headers: &[(&str, &str)]) -> Answer {
        testkit::api::get(&self.client, &self.query.url(path), token, headers).await
    }

    /// Polls a GET until `done` holds for its answer.
    pub async fn eventually(
        &self,
        path: &str,
        token: &str,
        what: &str,
        done: impl Fn(&Answer) -> bool,
    ) -> Answer {
        eventually(Duration::from_secs(60), what, || async {
            let answer = self.query(path, token).await;
            done(&answer).then_some(answer)
        })
        .await
    }

    /// Creates a location (hall "Main") and returns its id.
    pub async fn location(&self, name: &str, capacity: u32) -> String {
        let answer = self
            .command("/v1/locations", &admin(), &location_body(name, capacity))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer.id()
    }

    /// Schedules an event and returns its answer.
    pub async fn event(&self, body: &Value) -> Answer {
        let answer = self.command("/v1/events", &admin(), body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer
    }

    /// Books `seats` of `event` as `user`.
    pub async fn book(&self, event: &str, user: &str, seats: u32) -> Answer {
        let answer = self
            .command(
                &format!("/v1/events/{event}/bookings"),
                &customer(user),
                &json!({"seats": seats, "card_token": "tok_visa"}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
        answer
    }

    /// A checksum of a read-model table's rows in id order.
    pub async fn checksum(&self, table: &str) -> String {
        sqlx::query_scalar(&format!(
            "SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t.id)), '') FROM read_models.{table} t"
        ))
        .fetch_one(&self.db.pool)
        .await
        .unwrap()
    }

    /// Rows in a read-model table.
    pub async fn rows(&self, table: &str) -> i64 {
        self.db
            .scalar(&format!("SELECT count(*) FROM read_models.{table}"))
            .await
    }

    /// Waits until the read models have every event of the store.
    pub async fn caught_up(&self) {
        eventually(
            Duration::from_secs(90),
            "the projections to catch up",
            || async {
                let statuses = self.query("/v1/admin/projections", &admin()).await;
                let lag: i64 = statuses
                    .body
                    .as_array()?
                    .iter()
                    .map(|s| s["lag"].as_i64().unwrap_or(1))
                    .sum();
                (lag == 0).then_some(())
            },
        )
        .await;
    }

    /// Waits until the relay has published every stored event (the outbox is empty:
    /// a row goes only once the broker acknowledged it). The projections catching up
    /// does not imply it: the projector's sweep reads the store too.
    pub async fn published(&self) {
        eventually(Duration::from_secs(30), "the relay to publish", || async {
            (self.db.scalar("SELECT count(*) FROM outbox").await == 0).then_some(())
        })
        .await;
    }

    /// Appends `count` bookings straight into the event store (see
    /// `TestDb::seed_bookings`).
    pub async fn seed_bookings(&self, event_id: &str, count: i64) {
        self.db.seed_bookings(event_id, count).await;
    }

    pub async fn stop(mut self) {
        self.stop_projector().await;
        self.query.stop().await;
        self.command.stop().await;
        self.gateway.stop().await;
    }
}
