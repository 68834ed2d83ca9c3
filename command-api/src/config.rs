//! command-api configuration, from the environment (see `.env.example`).

use std::net::SocketAddr;
use std::time::Duration;

use platform::config::{parse_or, required, var_or};
use platform::kafka::TopicSpec;

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
    /// `KAFKA_BROKERS` (default `127.0.0.1:9092`).
    pub kafka_brokers: String,
    /// `KAFKA_TOPIC` (default `boxoffice.events`), `KAFKA_TOPIC_PARTITIONS` (default 6)
    /// and `KAFKA_TOPIC_REPLICATION` (default 1), used when the topic must be created.
    pub topic: TopicSpec,
    /// `BOXOFFICE_JWT_SECRET`, required. Never logged.
    pub jwt_secret: String,
    /// `COMMAND_API_ADDR` (default `127.0.0.1:8080`).
    pub addr: SocketAddr,
    /// The outbox relay's settings.
    pub relay: RelayConfig,
    /// The sagas' settings.
    pub saga: SagaConfig,
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
    /// `PAYMENT_LATENCY_MS` (default 0): the simulated gateway's latency per call.
    pub payment_latency: Duration,
    /// `PAYMENT_TIMEOUT_MS` (default 5000): how long one gateway call may take.
    pub payment_timeout: Duration,
    /// `BOXOFFICE_SAGA_CONCURRENCY` (default 64): sagas carried on at once per process.
    pub concurrency: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &"<redacted>")
            .field("db_max_connections", &self.db_max_connections)
            .field("append_writers", &self.append_writers)
            .field("kafka_brokers", &self.kafka_brokers)
            .field("topic", &self.topic)
            .field("jwt_secret", &"<redacted>")
            .field("addr", &self.addr)
            .field("relay", &self.relay)
            .field("saga", &self.saga)
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
            kafka_brokers: "127.0.0.1:9092".into(),
            topic: TopicSpec {
                name: "boxoffice.events".into(),
                partitions: 6,
                replication: 1,
            },
            jwt_secret: jwt_secret.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            relay: RelayConfig {
                enabled: true,
                batch_size: 500,
                poll_interval: Duration::from_millis(1000),
                linger: Duration::from_millis(10),
            },
            saga: SagaConfig {
                enabled: true,
                hold_ttl: Duration::from_secs(600),
                payment_latency: Duration::ZERO,
                payment_timeout: Duration::from_millis(5000),
                concurrency: 64,
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
            kafka_brokers: var_or("KAFKA_BROKERS", &d.kafka_brokers),
            topic: TopicSpec {
                name: var_or("KAFKA_TOPIC", &d.topic.name),
                partitions: parse_or("KAFKA_TOPIC_PARTITIONS", d.topic.partitions)?,
                replication: parse_or("KAFKA_TOPIC_REPLICATION", d.topic.replication)?,
            },
            addr: parse_or("COMMAND_API_ADDR", d.addr)?,
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
                payment_latency: millis("PAYMENT_LATENCY_MS", d.saga.payment_latency)?,
                payment_timeout: millis("PAYMENT_TIMEOUT_MS", d.saga.payment_timeout)?,
                concurrency: parse_or("BOXOFFICE_SAGA_CONCURRENCY", d.saga.concurrency)?,
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
