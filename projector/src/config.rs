//! projector configuration, from the environment (see `.env.example`).

use std::net::SocketAddr;
use std::time::Duration;

use platform::config::{parse_or, required, var_or};
use platform::kafka::TopicSpec;
use platform::server::ServerLimits;

/// What projector reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`: the event store (the truth, for gaps, sweeps and rebuilds).
    pub database_url: String,
    /// `READ_DATABASE_URL` (default `DATABASE_URL`): where the read models live.
    pub read_database_url: String,
    /// `KAFKA_BROKERS` (default `127.0.0.1:9092`).
    pub kafka_brokers: String,
    /// `KAFKA_TOPIC` (default `boxoffice.events`); partitions and replication as for
    /// command-api, used if the projector is first to need the topic.
    pub topic: TopicSpec,
    /// `PROJECTOR_GROUP` (default `boxoffice-projector`): the consumer group.
    pub group: String,
    /// `PROJECTOR_ADDR` (default `127.0.0.1:8082`): health and metrics.
    pub addr: SocketAddr,
    /// The HTTP server's bounds (`HTTP_*`, see `platform::server`): it serves only
    /// health and metrics, but a slow client must not keep a connection anyway.
    pub http: ServerLimits,
    /// `PROJECTOR_BATCH` (default 500): messages applied per transaction at most.
    pub batch_size: usize,
    /// `PROJECTOR_SWEEP_MS` (default 5000): how often the event store is swept for
    /// events Kafka did not bring (0 turns the sweep off).
    pub sweep_interval: Duration,
    /// `PROJECTOR_FETCH_WAIT_MS` (default 10): the longest a fetch waits for messages.
    /// Kafka answers as soon as there are some; tansu only at this limit, so it bounds
    /// freshness there. Lower means fresher, and more fetches while idle.
    pub fetch_wait: Duration,
    /// `PROJECTOR_PARKED_RETRY_MS` (default 30 000): how often every parked event is
    /// tried again (an admin's retry is taken up within a second).
    pub parked_retry: Duration,
    /// Which fact versions this build reads (`domain::upcast::readable`); a test
    /// stands in for an older build with a narrower one.
    pub reads: read_model::store::Reads,
}

impl Config {
    /// Reads the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let database_url = required("DATABASE_URL")?;
        Ok(Self {
            read_database_url: var_or("READ_DATABASE_URL", &database_url),
            database_url,
            kafka_brokers: var_or("KAFKA_BROKERS", "127.0.0.1:9092"),
            topic: TopicSpec {
                name: var_or("KAFKA_TOPIC", "boxoffice.events"),
                partitions: parse_or("KAFKA_TOPIC_PARTITIONS", 6)?,
                replication: parse_or("KAFKA_TOPIC_REPLICATION", 1)?,
            },
            group: var_or("PROJECTOR_GROUP", "boxoffice-projector"),
            addr: parse_or("PROJECTOR_ADDR", SocketAddr::from(([127, 0, 0, 1], 8082)))?,
            http: ServerLimits::from_env()?,
            batch_size: parse_or("PROJECTOR_BATCH", 500)?,
            sweep_interval: Duration::from_millis(parse_or("PROJECTOR_SWEEP_MS", 5000)?),
            fetch_wait: Duration::from_millis(parse_or("PROJECTOR_FETCH_WAIT_MS", 10)?),
            parked_retry: Duration::from_millis(parse_or("PROJECTOR_PARKED_RETRY_MS", 30_000)?),
            reads: domain::upcast::readable,
        })
    }
}
