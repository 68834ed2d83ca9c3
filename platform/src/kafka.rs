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

/// A client configuration for `brokers` (comma-separated `host:port`), reached as
/// `security` says (plaintext, TLS, SASL).
pub fn client_config(brokers: &str, security: &KafkaSecurity) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        // Fail a metadata request quickly when the broker is away; callers retry.
        .set("socket.timeout.ms", "10000");
    security.apply(&mut config);
    config
}

/// How the clients reach the brokers: librdkafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// No encryption, no authentication (the local broker, a private network).
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS (the password travels in clear with PLAIN).
    SaslPlaintext,
    /// SASL over TLS: what managed Kafka services ask for.
    SaslSsl,
}

impl SecurityProtocol {
    fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl std::str::FromStr for SecurityProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "plaintext" => Ok(Self::Plaintext),
            "ssl" => Ok(Self::Ssl),
            "sasl_plaintext" => Ok(Self::SaslPlaintext),
            "sasl_ssl" => Ok(Self::SaslSsl),
            _ => Err("expected plaintext, ssl, sasl_plaintext or sasl_ssl".to_owned()),
        }
    }
}

impl std::fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        })
    }
}

/// How a SASL client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// The password itself (use it over TLS only).
    Plain,
    /// SCRAM with SHA-256: the password never crosses the wire.
    ScramSha256,
    /// SCRAM with SHA-512.
    ScramSha512,
}

impl std::str::FromStr for SaslMechanism {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Self::Plain),
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            _ => Err("expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512".to_owned()),
        }
    }
}

impl std::fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        })
    }
}

/// TLS and SASL for every Kafka client of a service (the producer, the consumers, the
/// admin clients). The default is plaintext, as the local broker speaks; a managed
/// cluster typically wants `KAFKA_SECURITY_PROTOCOL=sasl_ssl` with a SCRAM or PLAIN
/// login. librdkafka is built with OpenSSL (rdkafka's `ssl-vendored` feature), which
/// PLAIN and SCRAM need nothing more than.
#[derive(Clone, PartialEq, Eq, clap::Args)]
#[command(next_help_heading = "Kafka security")]
pub struct KafkaSecurity {
    /// `plaintext`, `ssl` (TLS), `sasl_plaintext` or `sasl_ssl` (SASL over TLS).
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL", default_value_t = SecurityProtocol::Plaintext, value_parser = empty_is_unset::<SecurityProtocol>())]
    pub kafka_security_protocol: SecurityProtocol,
    /// With SASL: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[arg(long, env = "KAFKA_SASL_MECHANISM", value_parser = empty_is_unset::<SaslMechanism>())]
    pub kafka_sasl_mechanism: Option<SaslMechanism>,
    /// With SASL: the user name.
    #[arg(long, env = "KAFKA_SASL_USERNAME", value_parser = empty_is_unset::<String>())]
    pub kafka_sasl_username: Option<String>,
    /// With SASL: the password. Never logged.
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true, value_parser = empty_is_unset::<String>())]
    pub kafka_sasl_password: Option<String>,
    /// With TLS: the CA certificates (a PEM file) that the brokers' certificates must
    /// chain to. Unset: the system's CA store.
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION", value_parser = empty_is_unset::<String>())]
    pub kafka_ssl_ca_location: Option<String>,
    /// With TLS, for brokers that ask for a client certificate: the certificate, a PEM
    /// file (with `KAFKA_SSL_KEY_LOCATION`).
    #[arg(long, env = "KAFKA_SSL_CERTIFICATE_LOCATION", value_parser = empty_is_unset::<String>())]
    pub kafka_ssl_certificate_location: Option<String>,
    /// The client certificate's private key, a PEM file.
    #[arg(long, env = "KAFKA_SSL_KEY_LOCATION", value_parser = empty_is_unset::<String>())]
    pub kafka_ssl_key_location: Option<String>,
    /// The private key's password, if it has one. Never logged.
    #[arg(long, env = "KAFKA_SSL_KEY_PASSWORD", hide_env_values = true, value_parser = empty_is_unset::<String>())]
    pub kafka_ssl_key_password: Option<String>,
}

impl std::fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("KafkaSecurity")
            .field("protocol", &self.kafka_security_protocol)
            .field("sasl_mechanism", &self.kafka_sasl_mechanism)
            .field("sasl_username", &self.kafka_sasl_username)
            .field("sasl_password", &secret(&self.kafka_sasl_password))
            .field("ssl_ca_location", &self.kafka_ssl_ca_location)
            .field(
                "ssl_certificate_location",
                &self.kafka_ssl_certificate_location,
            )
            .field("ssl_key_location", &self.kafka_ssl_key_location)
            .field("ssl_key_password", &secret(&self.kafka_ssl_key_password))
            .finish()
    }
}

impl KafkaSecurity {
    /// No TLS, no SASL (the local broker, and the tests).
    pub const PLAINTEXT: Self = Self {
        kafka_security_protocol: SecurityProtocol::Plaintext,
        kafka_sasl_mechanism: None,
        kafka_sasl_username: None,
        kafka_sasl_password: None,
        kafka_ssl_ca_location: None,
        kafka_ssl_certificate_location: None,
        kafka_ssl_key_location: None,
        kafka_ssl_key_password: None,
    };

    /// The settings, checked as a whole: a SASL protocol needs its mechanism, user and
    /// password; SASL or TLS settings given to a protocol that does not use them are a
    /// mistake (the connection would silently go without them); a client certificate
    /// needs its key and the files must be readable. Errors name the variable at fault,
    /// so that a service refuses to start rather than retry a broker it can never reach.
    pub fn validated(self) -> anyhow::Result<Self> {
        let protocol = self.kafka_security_protocol;
        let sasl = [
            ("KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism.is_some()),
            ("KAFKA_SASL_USERNAME", self.kafka_sasl_username.is_some()),
            ("KAFKA_SASL_PASSWORD", self.kafka_sasl_password.is_some()),
        ];
        for (name, set) in sasl {
            if protocol.uses_sasl() && !set {
                bail!("{name} is required with KAFKA_SECURITY_PROTOCOL={protocol}");
            }
            if !protocol.uses_sasl() && set {
                bail!("{name} is set, but KAFKA_SECURITY_PROTOCOL={protocol} does not use SASL (sasl_plaintext or sasl_ssl do)");
            }
        }
        let files = [
            ("KAFKA_SSL_CA_LOCATION", &self.kafka_ssl_ca_location),
            (
                "KAFKA_SSL_CERTIFICATE_LOCATION",
                &self.kafka_ssl_certificate_location,
            ),
            ("KAFKA_SSL_KEY_LOCATION", &self.kafka_ssl_key_location),
        ];
        for (name, file) in files {
            let Some(file) = file else { continue };
            if !protocol.uses_tls() {
                bail!("{name} is set, but KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS (ssl or sasl_ssl do)");
            }
            std::fs::File::open(file).with_context(|| format!("{name}={file} cannot be read"))?;
        }
        if self.kafka_ssl_certificate_location.is_some() != self.kafka_ssl_key_location.is_some() {
            bail!("KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION go together: set both or neither");
        }
        if self.kafka_ssl_key_password.is_some() && self.kafka_ssl_key_location.is_none() {
            bail!("KAFKA_SSL_KEY_PASSWORD is set without KAFKA_SSL_KEY_LOCATION");
        }
        Ok(self)
    }

    /// Sets librdkafka's properties for these settings.
    pub fn apply(&self, config: &mut ClientConfig) {
        config.set(
            "security.protocol",
            self.kafka_security_protocol.to_string(),
        );
        let properties = [
            (
                "sasl.mechanism",
                self.kafka_sasl_mechanism.map(|m| m.to_string()),
            ),
            ("sasl.username", self.kafka_sasl_username.clone()),
            ("sasl.password", self.kafka_sasl_password.clone()),
            ("ssl.ca.location", self.kafka_ssl_ca_location.clone()),
            (
                "ssl.certificate.location",
                self.kafka_ssl_certificate_location.clone(),
            ),
            ("ssl.key.location", self.kafka_ssl_key_location.clone()),
            ("ssl.key.password", self.kafka_ssl_key_password.clone()),
        ];
        for (key, value) in properties {
            if let Some(value) = value {
                config.set(key, value);
            }
        }
    }
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
    #[command(flatten)]
    pub security: KafkaSecurity,
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
pub async fn ensure_topic(
    brokers: &str,
    security: &KafkaSecurity,
    topic: &TopicSpec,
) -> anyhow::Result<()> {
    let admin: AdminClient<KafkaLogs> = client_config(brokers, security)
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

/// Waits until the broker answers again (creating the topic if it lost it), or until
/// `shutdown`: what a consumer does after the broker went away.
pub async fn wait_for_topic(
    brokers: &str,
    security: &KafkaSecurity,
    topic: &TopicSpec,
    shutdown: &tokio_util::sync::CancellationToken,
) {
    let mut pause = Duration::from_millis(250);
    loop {
        if ensure_topic(brokers, security, topic).await.is_ok() {
            return;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// A consumer in `group`, subscribed to `topic`, for a reader that applies what it
/// consumes in its own transaction and only then commits the offsets: no auto-commit;
/// a new group (or one whose offsets the broker lost) reads from the start, duplicates
/// being skipped by the reader; `fetch_wait` bounds how long a fetch waits (tansu
/// answers only at this limit); a recreated topic (a broker that lost its data) is
/// noticed within seconds.
pub fn batch_consumer(
    brokers: &str,
    security: &KafkaSecurity,
    group: &str,
    topic: &str,
    fetch_wait: Duration,
) -> anyhow::Result<rdkafka::consumer::StreamConsumer<KafkaLogs>> {
    use rdkafka::consumer::Consumer;
    let consumer: rdkafka::consumer::StreamConsumer<KafkaLogs> = client_config(brokers, security)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", fetch_wait.as_millis().to_string())
        .set("topic.metadata.refresh.interval.ms", "5000")
        .set("session.timeout.ms", "10000")
        .create_with_context(KafkaLogs)?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// The offsets to commit after a batch: for each partition, the offset after the last
/// message taken.
pub fn commit_list(
    topic: &str,
    next_offsets: &std::collections::BTreeMap<i32, i64>,
) -> rdkafka::TopicPartitionList {
    let mut list = rdkafka::TopicPartitionList::new();
    for (partition, offset) in next_offsets {
        // Partitions and offsets come from the broker; adding them cannot fail.
        let _ = list.add_partition_offset(topic, *partition, rdkafka::Offset::Offset(*offset));
    }
    list
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
        security: &KafkaSecurity,
        topic: &str,
        every: Duration,
        up: prometheus_client::metrics::gauge::Gauge,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Self> {
        let admin: AdminClient<KafkaLogs> = client_config(brokers, security)
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

#[cfg(test)]
mod tests {
    use rdkafka::consumer::BaseConsumer;

    use super::*;

    fn settings(args: &[&str]) -> anyhow::Result<KafkaSecurity> {
        crate::config::from_args::<KafkaSettings>(args)?
            .security
            .validated()
    }

    const SCRAM: &[&str] = &[
        "--kafka-security-protocol",
        "SASL_SSL",
        "--kafka-sasl-mechanism",
        "scram-sha-512",
        "--kafka-sasl-username",
        "boxoffice",
        "--kafka-sasl-password",
        "s3cret",
    ];

    #[test]
    fn plaintext_is_the_default() {
        assert_eq!(settings(&[]).unwrap(), KafkaSecurity::PLAINTEXT);
    }

    #[test]
    fn a_sasl_ssl_scram_client_can_be_made() {
        // librdkafka refuses sasl_ssl and SCRAM when it was built without OpenSSL: this
        // is the check that the build has them.
        let security = settings(SCRAM).unwrap();
        assert_eq!(security.kafka_security_protocol, SecurityProtocol::SaslSsl);
        let config = client_config("127.0.0.1:9", &security);
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.username"), Some("boxoffice"));
        let made: Result<BaseConsumer<KafkaLogs>, _> = config.create_with_context(KafkaLogs);
        assert!(made.is_ok(), "{:?}", made.err());
        for mechanism in ["PLAIN", "SCRAM-SHA-256"] {
            let mut args = SCRAM.to_vec();
            args[3] = mechanism;
            let made: Result<BaseConsumer<KafkaLogs>, _> =
                client_config("127.0.0.1:9", &settings(&args).unwrap())
                    .create_with_context(KafkaLogs);
            assert!(made.is_ok(), "{mechanism}: {:?}", made.err());
        }
    }

    #[test]
    fn the_passwords_are_never_shown() {
        let mut args = SCRAM.to_vec();
        args.extend(["--kafka-ssl-key-password", "keypass"]);
        let shown = format!(
            "{:?}",
            crate::config::from_args::<KafkaSettings>(&args).unwrap()
        );
        assert!(
            !shown.contains("s3cret") && !shown.contains("keypass"),
            "{shown}"
        );
        assert!(shown.contains("boxoffice"), "{shown}");
    }

    #[test]
    fn settings_that_do_not_fit_together_are_refused_by_name() {
        let refused = |args: &[&str], variable: &str| {
            let err = settings(args).expect_err("refused").to_string();
            assert!(err.contains(variable), "{args:?}: {err}");
        };
        // SASL without its parts.
        refused(&SCRAM[..6], "KAFKA_SASL_PASSWORD");
        refused(
            &["--kafka-security-protocol", "sasl_plaintext"],
            "KAFKA_SASL_MECHANISM",
        );
        // SASL or TLS settings with a protocol that would silently ignore them.
        refused(&SCRAM[2..], "KAFKA_SASL_MECHANISM");
        refused(
            &["--kafka-ssl-ca-location", "/etc/hostname"],
            "KAFKA_SSL_CA_LOCATION",
        );
        // Files that are not there, a certificate without its key.
        refused(
            &[
                "--kafka-security-protocol",
                "ssl",
                "--kafka-ssl-ca-location",
                "/nonexistent/ca.pem",
            ],
            "KAFKA_SSL_CA_LOCATION",
        );
        refused(
            &[
                "--kafka-security-protocol",
                "ssl",
                "--kafka-ssl-certificate-location",
                "/etc/hostname",
            ],
            "KAFKA_SSL_KEY_LOCATION",
        );
        refused(&["--kafka-security-protocol", "tls"], "sasl_ssl");
    }
}
