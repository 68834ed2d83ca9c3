//! projector configuration: [`Settings`], each an option with its environment variable
//! (see `projector --help` and `.env.example`), become a [`Config`].

use std::net::SocketAddr;
use std::time::Duration;

use platform::config::empty_is_unset;
use platform::db::ReadSideUrls;
use platform::kafka::{KafkaSecurity, KafkaSettings, TopicSpec};
use platform::server::{HttpSettings, ServerLimits};
use platform::telemetry::LogSettings;

/// What projector reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`: the event store (the truth, for gaps, sweeps and rebuilds).
    pub database_url: String,
    /// `READ_DATABASE_URL` (default `DATABASE_URL`): where the read models live.
    pub read_database_url: String,
    /// `KAFKA_BROKERS` (default `127.0.0.1:9092`).
    pub kafka_brokers: String,
    /// `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*` (default plaintext):
    /// TLS and SASL, as for command-api.
    pub kafka_security: KafkaSecurity,
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
    /// Reads the environment (see `.env.example`); errors name the variable at fault.
    pub fn from_env() -> anyhow::Result<Self> {
        platform::config::from_env::<Settings>("projector")?.try_into()
    }
}

/// Everything projector reads, each an option with its environment variable:
/// `projector --help` lists them with their defaults (see also `.env.example`).
#[derive(Clone, clap::Args)]
#[command(next_help_heading = "Service")]
pub struct Settings {
    /// The consumer group (several projector processes share its partitions).
    #[arg(long, env = "PROJECTOR_GROUP", default_value = "boxoffice-projector", value_parser = empty_is_unset::<String>())]
    pub projector_group: String,
    /// Where projector serves health and metrics.
    #[arg(long, env = "PROJECTOR_ADDR", default_value = "127.0.0.1:8082", value_parser = empty_is_unset::<SocketAddr>())]
    pub projector_addr: SocketAddr,
    /// Messages applied per read-model transaction, at most.
    #[arg(long, env = "PROJECTOR_BATCH", default_value_t = 500, value_parser = empty_is_unset::<usize>())]
    pub projector_batch: usize,
    /// How often the event store is swept for events Kafka did not bring, in
    /// milliseconds (0: never).
    #[arg(long, env = "PROJECTOR_SWEEP_MS", default_value_t = 5000, value_parser = empty_is_unset::<u64>())]
    pub projector_sweep_ms: u64,
    /// The longest a fetch waits for messages, in milliseconds. Kafka answers as soon
    /// as there are some; tansu only at this limit, so it bounds freshness there.
    #[arg(long, env = "PROJECTOR_FETCH_WAIT_MS", default_value_t = 10, value_parser = empty_is_unset::<u64>())]
    pub projector_fetch_wait_ms: u64,
    /// How often every parked event is tried again, in milliseconds (an admin's retry
    /// is taken up within a second).
    #[arg(long, env = "PROJECTOR_PARKED_RETRY_MS", default_value_t = 30_000, value_parser = empty_is_unset::<u64>())]
    pub projector_parked_retry_ms: u64,
    #[command(flatten)]
    pub urls: ReadSideUrls,
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub log: LogSettings,
}

impl TryFrom<Settings> for Config {
    type Error = anyhow::Error;

    /// The configuration the settings give; errors name the variable at fault.
    fn try_from(s: Settings) -> anyhow::Result<Self> {
        Ok(Self {
            database_url: s.urls.database_url()?,
            read_database_url: s.urls.read_database_url()?,
            kafka_brokers: s.kafka.kafka_brokers.clone(),
            kafka_security: s.kafka.security.clone().validated()?,
            topic: s.kafka.topic(),
            group: s.projector_group,
            addr: s.projector_addr,
            http: ServerLimits::try_from(&s.http)?,
            batch_size: s.projector_batch,
            sweep_interval: Duration::from_millis(s.projector_sweep_ms),
            fetch_wait: Duration::from_millis(s.projector_fetch_wait_ms),
            parked_retry: Duration::from_millis(s.projector_parked_retry_ms),
            reads: domain::upcast::readable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> anyhow::Result<Config> {
        platform::config::from_args::<Settings>(args)?.try_into()
    }

    #[test]
    fn the_defaults() {
        let config = config(&["--database-url", "postgres://store"]).unwrap();
        assert_eq!(config.database_url, "postgres://store");
        assert_eq!(config.read_database_url, "postgres://store");
        assert_eq!(config.kafka_brokers, "127.0.0.1:9092");
        assert_eq!(config.topic.name, "boxoffice.events");
        assert_eq!((config.topic.partitions, config.topic.replication), (6, 1));
        assert_eq!(config.group, "boxoffice-projector");
        assert_eq!(config.addr, SocketAddr::from(([127, 0, 0, 1], 8082)));
        assert_eq!(config.batch_size, 500);
        assert_eq!(config.sweep_interval, Duration::from_secs(5));
        assert_eq!(config.fetch_wait, Duration::from_millis(10));
        assert_eq!(config.parked_retry, Duration::from_secs(30));
        assert_eq!(
            format!("{:?}", config.http),
            format!("{:?}", ServerLimits::default())
        );
    }

    #[test]
    fn the_read_models_have_their_own_url_when_set() {
        let config = config(&[
            "--database-url",
            "postgres://store",
            "--read-database-url",
            "postgres://read",
        ])
        .unwrap();
        assert_eq!(config.read_database_url, "postgres://read");
        let err = config_err(&["--read-database-url", "postgres://read"]);
        assert_eq!(err, "DATABASE_URL must be set");
    }

    fn config_err(args: &[&str]) -> String {
        config(args).expect_err("an error").to_string()
    }
}
