//! Kafka: the wire envelope of the events topic and topic administration.
//!
//! Only the plain Kafka protocol is used (no transactions), so the same code runs
//! against Apache Kafka in compose and against tansu in local runs and tests.

use std::time::Duration;

use anyhow::{bail, Context};
use domain::metadata::EventMetadata;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::empty_is_unset;

/// One stored event as published on the topic: the message value, in JSON. The
/// message key is `aggregate_id`, so one aggregate's events share a partition and keep
/// their order. Read from a row of `events` (columns of the same names) with
/// `sqlx::FromRow`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct WireEvent {
    /// Global position in the event store (unique, increasing in append order).
    pub position: i64,
    /// `location`, `event` or `booking`.
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// The event's number within its aggregate, from 1.
    pub sequence: i64,
    /// The stable name of the event, such as `SeatsReserved`.
    pub event_type: String,
    /// The version of the event's shape.
    pub event_version: String,
    /// The event itself.
    pub payload: Value,
    /// Who, why, when (typed: `domain::metadata`).
    #[sqlx(json)]
    pub metadata: EventMetadata,
}

/// The context of every Kafka client here: librdkafka's logs and errors go to
/// `tracing` at levels that suit a service. A broker that is away is a warning (it is
/// expected and handled), the end of a partition is not an error at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaLogs;

impl ClientContext for KafkaLogs {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility, "{message}");
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}");
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::PartitionEOF) => {
                tracing::debug!(target: "librdkafka", %error, "{reason}");
            }
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure) => {
                tracing::warn!(target: "librdkafka", %error, "{reason}");
            }
            _ => tracing::error!(target: "librdkafka", %error, "{reason}"),
        }
    }
}

impl ConsumerContext for KafkaLogs {}

/// A client configuration for `brokers` (comma-separated `host:port`).
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        // Fail a metadata request quickly when the broker is away; callers retry.
        .set("socket.timeout.ms", "10000");
    config
}

/// The topic's settings.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    /// The topic's name.
    pub name: String,
    /// How many partitions it gets when created.
    pub partitions: i32,
    /// Its replication factor when created.
    pub replication: i32,
}

/// Where Kafka is and the events topic (command-api, projector).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaSettings {
    /// The Kafka brokers, `host:port` separated by commas (`scripts/up` runs tansu on
    /// 127.0.0.1:29092).
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092", value_parser = empty_is_unset::<String>())]
    pub kafka_brokers: String,
    /// The topic the events are published on.
    #[arg(long, env = "KAFKA_TOPIC", default_value = "boxoffice.events", value_parser = empty_is_unset::<String>())]
    pub kafka_topic: String,
    /// The topic's partitions, when a service creates it.
    #[arg(long, env = "KAFKA_TOPIC_PARTITIONS", default_value_t = 6, value_parser = empty_is_unset::<i32>())]
    pub kafka_topic_partitions: i32,
    /// The topic's replication factor, when a service creates it.
    #[arg(long, env = "KAFKA_TOPIC_REPLICATION", default_value_t = 1, value_parser = empty_is_unset::<i32>())]
    pub kafka_topic_replication: i32,
}

impl KafkaSettings {
    /// The topic.
    pub fn topic(&self) -> TopicSpec {
        TopicSpec {
            name: self.kafka_topic.clone(),
            partitions: self.kafka_topic_partitions,
            replication: self.kafka_topic_replication,
        }
    }
}

/// Creates the topic when it does not exist (tansu does not create topics on demand,
/// and Kafka should not be trusted to do it with the right partition count).
pub async fn ensure_topic(brokers: &str, topic: &TopicSpec) -> anyhow::Result<()> {
    let admin: AdminClient<KafkaLogs> = client_config(brokers)
        .create_with_context(KafkaLogs)
        .context("cannot create a Kafka admin client")?;
    let new_topic = NewTopic::new(
        &topic.name,
        topic.partitions,
        TopicReplication::Fixed(topic.replication),
    );
    let options = AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(10)))
        .operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .context("cannot reach the broker to create the topic")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("cannot create topic {name}: {code}"),
        }
    }
    Ok(())
}

/// How many partitions `topic` has, asking the broker (blocking, up to `timeout`).
/// Errors when the broker does not answer or does not know the topic.
pub fn partition_count<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<usize, String> {
    let metadata = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|err| format!("broker unreachable: {err}"))?;
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| format!("topic {topic} not found"))?;
    if let Some(err) = found.error() {
        return Err(format!("topic {topic}: {:?}", RDKafkaErrorCode::from(err)));
    }
    if found.partitions().is_empty() {
        return Err(format!("topic {topic} has no partitions"));
    }
    Ok(found.partitions().len())
}

/// The broker's health, checked in the background (a metadata call every `every`, on a
/// blocking thread of its own, one at a time), so that a probe reads it at once and
/// never starts a blocking call itself.
#[derive(Clone)]
pub struct BrokerWatch(tokio::sync::watch::Receiver<Result<(), String>>);

impl BrokerWatch {
    /// Starts watching `topic` on `brokers` until `shutdown`, showing the outcome in
    /// `up` (1 when the broker answers, 0 when not). Until the first check answers, the
    /// broker counts as not reached yet.
    pub fn start(
        brokers: &str,
        topic: &str,
        every: Duration,
        up: prometheus_client::metrics::gauge::Gauge,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Self> {
        let admin: AdminClient<KafkaLogs> = client_config(brokers)
            .create_with_context(KafkaLogs)
            .context("cannot create the Kafka admin client")?;
        let admin = std::sync::Arc::new(admin);
        let (report, health) = tokio::sync::watch::channel(Err("not checked yet".to_owned()));
        let topic = topic.to_owned();
        tokio::spawn(async move {
            loop {
                let (admin, topic) = (admin.clone(), topic.clone());
                let checked = tokio::task::spawn_blocking(move || {
                    partition_count(admin.inner(), &topic, Duration::from_secs(2)).map(drop)
                })
                .await
                .unwrap_or_else(|err| Err(err.to_string()));
                up.set(i64::from(checked.is_ok()));
                let _ = report.send_replace(checked);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
            }
        });
        Ok(Self(health))
    }

    /// The last check's outcome.
    pub fn health(&self) -> Result<(), String> {
        self.0.borrow().clone()
    }

    /// A readiness check reading the last outcome; `required` says whether it decides
    /// readiness or only shows.
    pub fn readiness(&self, required: bool) -> crate::http::ReadinessCheck {
        let watch = self.clone();
        crate::http::ReadinessCheck {
            name: "broker",
            required,
            check: std::sync::Arc::new(move || {
                let health = watch.health();
                Box::pin(async move { health })
            }),
        }
    }
}
