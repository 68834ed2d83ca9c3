//! notifier configuration: [`Settings`], each an option with its environment variable
//! (see `notifier --help` and `.env.example`), become a [`Config`].

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use lettre::message::Mailbox;
use platform::config::{empty_is_unset, first_set, required};
use platform::kafka::{KafkaSecurity, KafkaSettings, TopicSpec};
use platform::server::{HttpSettings, ServerLimits};
use platform::telemetry::LogSettings;

/// What the notifier reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`: the event store, as the notifier's own database user. The
    /// notifier reads the store there and keeps its sent log in the schema `notifier`.
    pub database_url: String,
    /// `KAFKA_BROKERS`, as for the other services.
    pub kafka_brokers: String,
    /// `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`.
    pub kafka_security: KafkaSecurity,
    /// `KAFKA_TOPIC`.
    pub topic: TopicSpec,
    /// `NOTIFIER_GROUP` (default `boxoffice-notifier`): its own consumer group.
    pub group: String,
    /// `NOTIFIER_ADDR` (default `127.0.0.1:8084`): health and metrics.
    pub addr: SocketAddr,
    /// The HTTP server's bounds (`HTTP_*`).
    pub http: ServerLimits,
    /// `SMTP_URL` and how long one SMTP exchange may take.
    pub smtp: SmtpConfig,
    /// `MAIL_FROM`: the sender of every message.
    pub mail_from: Mailbox,
    /// `NOTIFIER_SWEEP_MS` (default 5000): how often the store is swept for facts
    /// Kafka did not bring (0: never).
    pub sweep_interval: Duration,
    /// `NOTIFIER_FETCH_WAIT_MS` (default 10): the longest a fetch waits (see the
    /// projector's setting of the same name).
    pub fetch_wait: Duration,
    /// Sending: concurrency, retries, leases.
    pub send: SendConfig,
}

/// Where mail goes.
#[derive(Clone)]
pub struct SmtpConfig {
    /// `SMTP_URL`: `smtp://[user:pass@]host:port` (STARTTLS when the server offers it;
    /// `?tls=required` insists, `?tls=none` never tries), or `smtps://` (TLS on connect).
    pub url: String,
    /// `SMTP_TIMEOUT_MS` (default 10 000): the longest one message's SMTP exchange may
    /// take (connect, commands, data, answer); then it is a temporary failure.
    pub timeout: Duration,
    /// `SMTP_POOL_SIZE` (default 8): connections kept open to the server, at most.
    pub pool_size: u32,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("SmtpConfig")
            .field("url", &redacted(&self.url))
            .field("timeout", &self.timeout)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// `url` without its password.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = &url[scheme + 3..at];
            let user = user.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// How the sender works through the log.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// `NOTIFIER_CONCURRENCY` (default 8): messages in flight at once.
    pub concurrency: usize,
    /// `NOTIFIER_RETRY_BASE_MS` (default 1000): the first wait after a temporary
    /// failure; it doubles with each attempt.
    pub retry_base: Duration,
    /// `NOTIFIER_RETRY_MAX_MS` (default 300 000): the longest wait between attempts.
    pub retry_max: Duration,
    /// `NOTIFIER_MAX_ATTEMPTS` (default 20): attempts before a message is parked.
    pub max_attempts: i32,
    /// `NOTIFIER_LEASE_MS` (default 120 000): how long a sender holds a message it
    /// took; a sender that died holding one gives it up after this. Longer than an
    /// SMTP exchange can take.
    pub lease: Duration,
}

impl Config {
    /// Reads the environment; errors name the variable at fault.
    pub fn from_env() -> anyhow::Result<Self> {
        platform::config::from_env::<Settings>("notifier")?.try_into()
    }
}

/// Everything the notifier reads, each an option with its environment variable.
#[derive(Clone, clap::Args)]
#[command(next_help_heading = "Service")]
pub struct Settings {
    /// The event store (required), as the notifier's own database user. Hidden here:
    /// it holds a password.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = empty_is_unset::<String>())]
    pub database_url: Option<String>,
    /// For `migrate`: the same database as the owner of its tables; defaults to
    /// DATABASE_URL. Hidden here: it holds a password.
    #[arg(long, env = "MIGRATION_DATABASE_URL", hide_env_values = true, value_parser = empty_is_unset::<String>())]
    pub migration_database_url: Option<String>,
    /// The consumer group (several notifier processes share its partitions).
    #[arg(long, env = "NOTIFIER_GROUP", default_value = "boxoffice-notifier", value_parser = empty_is_unset::<String>())]
    pub notifier_group: String,
    /// Where the notifier serves health and metrics.
    #[arg(long, env = "NOTIFIER_ADDR", default_value = "127.0.0.1:8084", value_parser = empty_is_unset::<SocketAddr>())]
    pub notifier_addr: SocketAddr,
    /// The SMTP server (required): smtp://[user:pass@]host:port (STARTTLS when offered;
    /// ?tls=required insists, ?tls=none never tries) or smtps://host:port (TLS on
    /// connect). Hidden here: it may hold a password.
    #[arg(long, env = "SMTP_URL", hide_env_values = true, value_parser = empty_is_unset::<String>())]
    pub smtp_url: Option<String>,
    /// The sender of every message (required), e.g. "boxoffice <tickets@example.com>".
    #[arg(long, env = "MAIL_FROM", value_parser = empty_is_unset::<String>())]
    pub mail_from: Option<String>,
    /// The longest one message's SMTP exchange may take, in milliseconds (then it is a
    /// temporary failure, tried again).
    #[arg(long, env = "SMTP_TIMEOUT_MS", default_value_t = 10_000, value_parser = empty_is_unset::<u64>())]
    pub smtp_timeout_ms: u64,
    /// Connections kept open to the SMTP server, at most.
    #[arg(long, env = "SMTP_POOL_SIZE", default_value_t = 8, value_parser = empty_is_unset::<u32>())]
    pub smtp_pool_size: u32,
    /// Messages in flight at once.
    #[arg(long, env = "NOTIFIER_CONCURRENCY", default_value_t = 8, value_parser = empty_is_unset::<usize>())]
    pub notifier_concurrency: usize,
    /// The first wait after a temporary failure, in milliseconds (doubling, with jitter).
    #[arg(long, env = "NOTIFIER_RETRY_BASE_MS", default_value_t = 1000, value_parser = empty_is_unset::<u64>())]
    pub notifier_retry_base_ms: u64,
    /// The longest wait between two attempts, in milliseconds.
    #[arg(long, env = "NOTIFIER_RETRY_MAX_MS", default_value_t = 300_000, value_parser = empty_is_unset::<u64>())]
    pub notifier_retry_max_ms: u64,
    /// Attempts before a message that keeps failing is parked.
    #[arg(long, env = "NOTIFIER_MAX_ATTEMPTS", default_value_t = 20, value_parser = empty_is_unset::<i32>())]
    pub notifier_max_attempts: i32,
    /// How long a sender holds a message it took, in milliseconds; one that died
    /// holding it gives it up after this. More than twice SMTP_TIMEOUT_MS.
    #[arg(long, env = "NOTIFIER_LEASE_MS", default_value_t = 120_000, value_parser = empty_is_unset::<u64>())]
    pub notifier_lease_ms: u64,
    /// How often the store is swept for facts Kafka did not bring, in milliseconds
    /// (0: never).
    #[arg(long, env = "NOTIFIER_SWEEP_MS", default_value_t = 5000, value_parser = empty_is_unset::<u64>())]
    pub notifier_sweep_ms: u64,
    /// The longest a fetch waits for messages, in milliseconds.
    #[arg(long, env = "NOTIFIER_FETCH_WAIT_MS", default_value_t = 10, value_parser = empty_is_unset::<u64>())]
    pub notifier_fetch_wait_ms: u64,
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub log: LogSettings,
}

impl Settings {
    /// The URL `migrate` applies the notifier's migrations with.
    pub fn migration_url(&self) -> anyhow::Result<String> {
        first_set(&[
            ("MIGRATION_DATABASE_URL", &self.migration_database_url),
            ("DATABASE_URL", &self.database_url),
        ])
    }
}

impl TryFrom<Settings> for Config {
    type Error = anyhow::Error;

    fn try_from(s: Settings) -> anyhow::Result<Self> {
        let smtp_url = required("SMTP_URL", &s.smtp_url)?;
        crate::smtp::check_url(&smtp_url).context("SMTP_URL is not an SMTP URL")?;
        let mail_from: Mailbox = required("MAIL_FROM", &s.mail_from)?
            .parse()
            .context("MAIL_FROM is not an address (like \"boxoffice <tickets@example.com>\")")?;
        let timeout = Duration::from_millis(s.smtp_timeout_ms);
        let lease = Duration::from_millis(s.notifier_lease_ms);
        if lease < timeout * 2 {
            bail!("NOTIFIER_LEASE_MS must be at least twice SMTP_TIMEOUT_MS: a message could be sent twice at once");
        }
        if s.notifier_concurrency == 0 || s.smtp_pool_size == 0 {
            bail!("NOTIFIER_CONCURRENCY and SMTP_POOL_SIZE must be at least 1");
        }
        if s.notifier_max_attempts < 1 {
            bail!("NOTIFIER_MAX_ATTEMPTS must be at least 1");
        }
        Ok(Self {
            database_url: required("DATABASE_URL", &s.database_url)?,
            kafka_brokers: s.kafka.kafka_brokers.clone(),
            kafka_security: s.kafka.security.clone().validated()?,
            topic: s.kafka.topic(),
            group: s.notifier_group,
            addr: s.notifier_addr,
            http: ServerLimits::try_from(&s.http)?,
            smtp: SmtpConfig {
                url: smtp_url,
                timeout,
                pool_size: s.smtp_pool_size,
            },
            mail_from,
            sweep_interval: Duration::from_millis(s.notifier_sweep_ms),
            fetch_wait: Duration::from_millis(s.notifier_fetch_wait_ms),
            send: SendConfig {
                concurrency: s.notifier_concurrency,
                retry_base: Duration::from_millis(s.notifier_retry_base_ms),
                retry_max: Duration::from_millis(s.notifier_retry_max_ms),
                max_attempts: s.notifier_max_attempts,
                lease,
            },
        })
    }
}

impl Config {
    /// The defaults, with the places given: for tests and the benchmark.
    pub fn new(database_url: &str, smtp_url: &str, kafka_brokers: &str, topic: TopicSpec) -> Self {
        let mut config: Self = platform::config::from_args::<Settings>(&[
            "--database-url",
            database_url,
            "--smtp-url",
            smtp_url,
            "--mail-from",
            "boxoffice <tickets@boxoffice.test>",
            "--kafka-brokers",
            kafka_brokers,
        ])
        .and_then(Config::try_from)
        .expect("the defaults are valid");
        config.topic = topic;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> anyhow::Result<Config> {
        platform::config::from_args::<Settings>(args)?.try_into()
    }

    const PLACES: [&str; 6] = [
        "--database-url",
        "postgres://n:p@localhost/db",
        "--smtp-url",
        "smtp://mail:secret@127.0.0.1:2525",
        "--mail-from",
        "boxoffice <tickets@example.com>",
    ];

    #[test]
    fn the_defaults_and_the_required_settings() {
        let defaults = config(&PLACES).expect("valid");
        assert_eq!(defaults.addr.to_string(), "127.0.0.1:8084");
        assert_eq!(defaults.group, "boxoffice-notifier");
        assert_eq!(defaults.mail_from.email.to_string(), "tickets@example.com");
        assert_eq!(defaults.send.max_attempts, 20);
        for missing in ["--smtp-url", "--mail-from", "--database-url"] {
            let at = PLACES.iter().position(|a| *a == missing).unwrap();
            let mut args = PLACES.to_vec();
            args.drain(at..at + 2);
            let err = config(&args).expect_err("refused").to_string();
            let name = missing
                .trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase();
            assert!(err.contains(&name), "{err}");
        }
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let with = |extra: &[&str]| {
            let mut args = PLACES.to_vec();
            for pair in extra.chunks(2) {
                match args.iter().position(|a| *a == pair[0]) {
                    Some(at) => args[at + 1] = pair[1],
                    None => args.extend_from_slice(pair),
                }
            }
            config(&args).expect_err("refused").to_string()
        };
        assert!(with(&["--mail-from", "not an address"]).contains("MAIL_FROM"));
        assert!(with(&["--smtp-url", "http://127.0.0.1"]).contains("SMTP_URL"));
        assert!(with(&["--notifier-lease-ms", "1000"]).contains("NOTIFIER_LEASE_MS"));
    }

    #[test]
    fn the_smtp_password_is_not_printed() {
        let config = config(&PLACES).expect("valid");
        let printed = format!("{config:?}");
        assert!(!printed.contains("secret"), "{printed}");
        assert!(
            printed.contains("smtp://mail:***@127.0.0.1:2525"),
            "{printed}"
        );
    }
}
