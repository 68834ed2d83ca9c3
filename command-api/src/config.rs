//! command-api configuration, from the environment (see `.env.example`).

use std::net::SocketAddr;
use std::time::Duration;

use platform::auth::JwtRules;
use platform::config::{parse_or, required, var_or};
use platform::kafka::TopicSpec;
use platform::server::ServerLimits;

/// Everything command-api reads from its environment.
#[derive(Clone)]
pub struct Config {
    /// `DATABASE_URL`: the event store.
    pub database_url: String,
    /// `BOXOFFICE_DB_MAX_CONNECTIONS` (default 32).
    pub db_max_connections: u32,
    /// `BOXOFFICE_APPEND_WRITERS` (default 2): append statements in flight at once;
    /// appends that come while all are busy share the next one (group commit).
    pub append_writers: usize,
    /// `BOXOFFICE_APPEND_QUEUE` (default 4096): appends that may wait for a writer;
    /// more are refused with 503 `overloaded`.
    pub append_queue: usize,
    /// `KAFKA_BROKERS` (default `127.0.0.1:9092`).
    pub kafka_brokers: String,
    /// `KAFKA_TOPIC` (default `boxoffice.events`), `KAFKA_TOPIC_PARTITIONS` (default 6)
    /// and `KAFKA_TOPIC_REPLICATION` (default 1), used when the topic must be created.
    pub topic: TopicSpec,
    /// `BOXOFFICE_JWT_SECRET`, required, at least 32 bytes. Never logged.
    pub jwt_secret: String,
    /// `BOXOFFICE_JWT_ISSUER`, `BOXOFFICE_JWT_AUDIENCE`, `BOXOFFICE_JWT_MAX_TTL_SECS`:
    /// what a token must satisfy.
    pub jwt_rules: JwtRules,
    /// `COMMAND_API_ADDR` (default `127.0.0.1:8080`).
    pub addr: SocketAddr,
    /// The HTTP server's bounds (`HTTP_*`, see `platform::server`).
    pub http: ServerLimits,
    /// The outbox relay's settings.
    pub relay: RelayConfig,
    /// The sagas' settings.
    pub saga: SagaConfig,
    /// How the payment gateway is reached, and reconciled with.
    pub payment: PaymentConfig,
    /// Fairness between customers.
    pub fairness: FairnessConfig,
    /// `BOXOFFICE_IDEMPOTENCY_TTL_HOURS` (default 24): how long an `Idempotency-Key` is
    /// remembered.
    pub idempotency_ttl: Duration,
}

/// How the outbox relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// `BOXOFFICE_RELAY_ENABLED` (default true). Every replica may run one; only the
    /// leader publishes.
    pub enabled: bool,
    /// `BOXOFFICE_RELAY_BATCH` (default 500): rows published per round trip.
    pub batch_size: i64,
    /// `BOXOFFICE_RELAY_POLL_MS` (default 1000): the polling fallback when no
    /// notification arrives.
    pub poll_interval: Duration,
    /// `BOXOFFICE_RELAY_LINGER_MS` (default 10): after a batch that was not full, how
    /// long the relay lets rows gather before it reads the next one. Fewer, fuller
    /// batches cost the database and the broker less; the first event after a quiet
    /// spell is not delayed.
    pub linger: Duration,
}

/// How the sagas run.
#[derive(Debug, Clone)]
pub struct SagaConfig {
    /// `BOXOFFICE_SAGAS_ENABLED` (default true): run the saga worker. Every replica may;
    /// they share the work.
    pub enabled: bool,
    /// `BOXOFFICE_HOLD_TTL_SECS` (default 600, fractions allowed): how long seats stay
    /// held for a payment that does not answer.
    pub hold_ttl: Duration,
    /// `BOXOFFICE_SAGA_CONCURRENCY` (default 64): sagas carried on at once per process.
    pub concurrency: usize,
    /// `BOXOFFICE_SAGA_PARK_AFTER` (default 10): a saga whose step fails the same way
    /// this many times in a row is parked (`GET /v1/admin/sagas/parked`) until an
    /// operator retries it; 0 never parks.
    pub park_after: u32,
}

/// Fairness between customers (admins are not limited). Limits per client address
/// belong at the edge: behind a proxy every request comes from the proxy's address.
#[derive(Debug, Clone)]
pub struct FairnessConfig {
    /// `BOXOFFICE_MAX_HELD_SEATS_PER_USER` (default 10): seats one customer may hold of
    /// an event at once, in bookings not yet paid; 0 turns the cap off.
    pub max_held_seats_per_user: u32,
    /// `BOXOFFICE_COMMANDS_PER_USER_PER_SEC` (default 5): commands a customer may send
    /// per second, sustained; 0 turns the limit off.
    pub commands_per_user_per_sec: u32,
    /// `BOXOFFICE_COMMANDS_BURST` (default 20): commands a customer may send at once
    /// after a quiet spell.
    pub commands_burst: u32,
}

/// The payment gateway's client and the reconciliation sweep.
#[derive(Clone)]
pub struct PaymentConfig {
    /// `PAYMENT_GATEWAY_URL` (default `http://127.0.0.1:8083`).
    pub url: String,
    /// `PAYMENT_GATEWAY_KEY` (optional): the secret key sent as a bearer token, as the
    /// gateway requires when it has one. Never logged.
    pub key: Option<String>,
    /// `PAYMENT_TIMEOUT_MS` (default 2000): how long one attempt of a call may take.
    pub timeout: Duration,
    /// `PAYMENT_RETRIES` (default 2): attempts after the first, for a call that failed
    /// for a reason that may pass (not reached, timed out, 5xx).
    pub retries: u32,
    /// `PAYMENT_CIRCUIT_FAILURES` (default 5): failures in a row that open the circuit.
    pub circuit_failures: u32,
    /// `PAYMENT_CIRCUIT_OPEN_MS` (default 5000): how long an open circuit holds calls
    /// back before one probe goes through.
    pub circuit_open: Duration,
    /// `BOXOFFICE_RECONCILE_EVERY_SECS` (default 60; 0 turns the sweep off): how often
    /// the gateway's authorized intents are checked against the bookings.
    pub reconcile_every: Duration,
    /// `BOXOFFICE_RECONCILE_AFTER_SECS` (default 300): intents younger than this are
    /// left to their sagas.
    pub reconcile_after: Duration,
}

impl std::fmt::Debug for PaymentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentConfig")
            .field("url", &self.url)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("circuit_failures", &self.circuit_failures)
            .field("circuit_open", &self.circuit_open)
            .field("reconcile_every", &self.reconcile_every)
            .field("reconcile_after", &self.reconcile_after)
            .finish()
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &"<redacted>")
            .field("db_max_connections", &self.db_max_connections)
            .field("append_writers", &self.append_writers)
            .field("append_queue", &self.append_queue)
            .field("kafka_brokers", &self.kafka_brokers)
            .field("topic", &self.topic)
            .field("jwt_secret", &"<redacted>")
            .field("jwt_rules", &self.jwt_rules)
            .field("addr", &self.addr)
            .field("http", &self.http)
            .field("relay", &self.relay)
            .field("saga", &self.saga)
            .field("payment", &self.payment)
            .field("fairness", &self.fairness)
            .field("idempotency_ttl", &self.idempotency_ttl)
            .finish()
    }
}

impl Config {
    /// The defaults (what an empty environment gives) for the store at `database_url`,
    /// signing with `jwt_secret`. Tests and the bench start from this and change what
    /// they need.
    pub fn new(database_url: &str, jwt_secret: &str) -> Self {
        Self {
            database_url: database_url.to_owned(),
            db_max_connections: 32,
            append_writers: 2,
            append_queue: 4096,
            kafka_brokers: "127.0.0.1:9092".into(),
            topic: TopicSpec {
                name: "boxoffice.events".into(),
                partitions: 6,
                replication: 1,
            },
            jwt_secret: jwt_secret.to_owned(),
            jwt_rules: JwtRules::default(),
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            http: ServerLimits::default(),
            relay: RelayConfig {
                enabled: true,
                batch_size: 500,
                poll_interval: Duration::from_millis(1000),
                linger: Duration::from_millis(10),
            },
            saga: SagaConfig {
                enabled: true,
                hold_ttl: Duration::from_secs(600),
                concurrency: 64,
                park_after: 10,
            },
            fairness: FairnessConfig {
                max_held_seats_per_user: 10,
                commands_per_user_per_sec: 5,
                commands_burst: 20,
            },
            payment: PaymentConfig {
                url: "http://127.0.0.1:8083".into(),
                key: None,
                timeout: Duration::from_millis(2000),
                retries: 2,
                circuit_failures: 5,
                circuit_open: Duration::from_millis(5000),
                reconcile_every: Duration::from_secs(60),
                reconcile_after: Duration::from_secs(300),
            },
            idempotency_ttl: Duration::from_secs(24 * 3600),
        }
    }

    /// Reads the environment (see `.env.example`; unset variables keep the defaults of
    /// [`Config::new`]); errors name the variable at fault.
    pub fn from_env() -> anyhow::Result<Self> {
        let d = Self::new(
            &required("DATABASE_URL")?,
            &required("BOXOFFICE_JWT_SECRET")?,
        );
        let millis = |name: &str, default: Duration| -> anyhow::Result<Duration> {
            let default = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
            Ok(Duration::from_millis(parse_or(name, default)?))
        };
        Ok(Self {
            db_max_connections: parse_or("BOXOFFICE_DB_MAX_CONNECTIONS", d.db_max_connections)?,
            append_writers: parse_or("BOXOFFICE_APPEND_WRITERS", d.append_writers)?,
            append_queue: parse_or("BOXOFFICE_APPEND_QUEUE", d.append_queue)?,
            kafka_brokers: var_or("KAFKA_BROKERS", &d.kafka_brokers),
            topic: TopicSpec {
                name: var_or("KAFKA_TOPIC", &d.topic.name),
                partitions: parse_or("KAFKA_TOPIC_PARTITIONS", d.topic.partitions)?,
                replication: parse_or("KAFKA_TOPIC_REPLICATION", d.topic.replication)?,
            },
            addr: parse_or("COMMAND_API_ADDR", d.addr)?,
            http: ServerLimits::from_env()?,
            jwt_rules: JwtRules::from_env()?,
            relay: RelayConfig {
                enabled: parse_or("BOXOFFICE_RELAY_ENABLED", d.relay.enabled)?,
                batch_size: parse_or("BOXOFFICE_RELAY_BATCH", d.relay.batch_size)?,
                poll_interval: millis("BOXOFFICE_RELAY_POLL_MS", d.relay.poll_interval)?,
                linger: millis("BOXOFFICE_RELAY_LINGER_MS", d.relay.linger)?,
            },
            saga: SagaConfig {
                enabled: parse_or("BOXOFFICE_SAGAS_ENABLED", d.saga.enabled)?,
                hold_ttl: Duration::from_secs_f64(parse_or(
                    "BOXOFFICE_HOLD_TTL_SECS",
                    d.saga.hold_ttl.as_secs_f64(),
                )?),
                concurrency: parse_or("BOXOFFICE_SAGA_CONCURRENCY", d.saga.concurrency)?,
                park_after: parse_or("BOXOFFICE_SAGA_PARK_AFTER", d.saga.park_after)?,
            },
            fairness: FairnessConfig {
                max_held_seats_per_user: parse_or(
                    "BOXOFFICE_MAX_HELD_SEATS_PER_USER",
                    d.fairness.max_held_seats_per_user,
                )?,
                commands_per_user_per_sec: parse_or(
                    "BOXOFFICE_COMMANDS_PER_USER_PER_SEC",
                    d.fairness.commands_per_user_per_sec,
                )?,
                commands_burst: parse_or("BOXOFFICE_COMMANDS_BURST", d.fairness.commands_burst)?,
            },
            payment: PaymentConfig {
                url: var_or("PAYMENT_GATEWAY_URL", &d.payment.url),
                key: std::env::var("PAYMENT_GATEWAY_KEY")
                    .ok()
                    .filter(|k| !k.is_empty()),
                timeout: millis("PAYMENT_TIMEOUT_MS", d.payment.timeout)?,
                retries: parse_or("PAYMENT_RETRIES", d.payment.retries)?,
                circuit_failures: parse_or("PAYMENT_CIRCUIT_FAILURES", d.payment.circuit_failures)?,
                circuit_open: millis("PAYMENT_CIRCUIT_OPEN_MS", d.payment.circuit_open)?,
                reconcile_every: Duration::from_secs(parse_or(
                    "BOXOFFICE_RECONCILE_EVERY_SECS",
                    d.payment.reconcile_every.as_secs(),
                )?),
                reconcile_after: Duration::from_secs(parse_or(
                    "BOXOFFICE_RECONCILE_AFTER_SECS",
                    d.payment.reconcile_after.as_secs(),
                )?),
            },
            idempotency_ttl: Duration::from_secs(
                3600 * parse_or::<u64>(
                    "BOXOFFICE_IDEMPOTENCY_TTL_HOURS",
                    d.idempotency_ttl.as_secs() / 3600,
                )?,
            ),
            ..d
        })
    }
}
