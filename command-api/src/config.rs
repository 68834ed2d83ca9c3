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
    /// Reads the environment; errors name the variable at fault.
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            database_url: required("DATABASE_URL")?,
            db_max_connections: parse_or("BOXOFFICE_DB_MAX_CONNECTIONS", 32)?,
            append_writers: parse_or("BOXOFFICE_APPEND_WRITERS", 2)?,
            kafka_brokers: var_or("KAFKA_BROKERS", "127.0.0.1:9092"),
            topic: TopicSpec {
                name: var_or("KAFKA_TOPIC", "boxoffice.events"),
                partitions: parse_or("KAFKA_TOPIC_PARTITIONS", 6)?,
                replication: parse_or("KAFKA_TOPIC_REPLICATION", 1)?,
            },
            jwt_secret: required("BOXOFFICE_JWT_SECRET")?,
            addr: parse_or("COMMAND_API_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            relay: RelayConfig {
                enabled: parse_or("BOXOFFICE_RELAY_ENABLED", true)?,
                batch_size: parse_or("BOXOFFICE_RELAY_BATCH", 500)?,
                poll_interval: Duration::from_millis(parse_or("BOXOFFICE_RELAY_POLL_MS", 1000)?),
                linger: Duration::from_millis(parse_or("BOXOFFICE_RELAY_LINGER_MS", 10)?),
            },
            saga: SagaConfig {
                enabled: parse_or("BOXOFFICE_SAGAS_ENABLED", true)?,
                hold_ttl: Duration::from_secs_f64(parse_or("BOXOFFICE_HOLD_TTL_SECS", 600.0)?),
                payment_latency: Duration::from_millis(parse_or("PAYMENT_LATENCY_MS", 0)?),
                payment_timeout: Duration::from_millis(parse_or("PAYMENT_TIMEOUT_MS", 5000)?),
                concurrency: parse_or("BOXOFFICE_SAGA_CONCURRENCY", 64)?,
            },
            idempotency_ttl: Duration::from_secs(
                3600 * parse_or::<u64>("BOXOFFICE_IDEMPOTENCY_TTL_HOURS", 24)?,
            ),
        })
    }
}
