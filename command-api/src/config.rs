//! command-api configuration: [`Settings`], each an option with its environment
//! variable (see `command-api --help` and `.env.example`), become a [`Config`].

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::anyhow;
use clap::ArgAction;
use platform::auth::{JwtRules, JwtSettings};
use platform::config::{empty_is_unset, first_set, required, set};
use platform::kafka::{KafkaSecurity, KafkaSettings, TopicSpec};
use platform::server::{HttpSettings, ServerLimits};
use platform::telemetry::LogSettings;

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
    /// `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*` (default plaintext):
    /// TLS and SASL for every Kafka client.
    pub kafka_security: KafkaSecurity,
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
    /// `PAYMENT_MAX_IN_FLIGHT` (default 16, 1 to 100 000): calls this process has at the
    /// gateway at once; more wait their turn here, within their budget.
    pub max_in_flight: usize,
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
            .field("max_in_flight", &self.max_in_flight)
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
            .field("kafka_security", &self.kafka_security)
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
            kafka_security: KafkaSecurity::PLAINTEXT,
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
                max_in_flight: 16,
                reconcile_every: Duration::from_secs(60),
                reconcile_after: Duration::from_secs(300),
            },
            idempotency_ttl: Duration::from_secs(24 * 3600),
        }
    }

    /// Reads the environment (see `.env.example`; unset variables keep the defaults of
    /// [`Config::new`]); errors name the variable at fault.
    pub fn from_env() -> anyhow::Result<Self> {
        platform::config::from_env::<Settings>("command-api")?.try_into()
    }
}

/// Everything command-api reads, each an option with its environment variable:
/// `command-api --help` lists them with their defaults (see also `.env.example`).
#[derive(Clone, clap::Args)]
#[command(next_help_heading = "Service")]
pub struct Settings {
    /// The event store (required), as command-api's own database user. Hidden here:
    /// it holds a password.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = empty_is_unset::<String>())]
    pub database_url: Option<String>,
    /// For `migrate`: the event store as the owner of its tables; defaults to
    /// DATABASE_URL. Hidden here: it holds a password.
    #[arg(long, env = "MIGRATION_DATABASE_URL", hide_env_values = true, value_parser = empty_is_unset::<String>())]
    pub migration_database_url: Option<String>,
    /// The event store's pool size.
    #[arg(long, env = "BOXOFFICE_DB_MAX_CONNECTIONS", default_value_t = 32, value_parser = empty_is_unset::<u32>())]
    pub db_max_connections: u32,
    /// Append statements in flight at once; appends arriving while all are busy share
    /// the next statement (group commit across aggregates).
    #[arg(long, env = "BOXOFFICE_APPEND_WRITERS", default_value_t = 2, value_parser = empty_is_unset::<usize>())]
    pub append_writers: usize,
    /// Appends that may wait for a writer; more are answered 503 overloaded.
    #[arg(long, env = "BOXOFFICE_APPEND_QUEUE", default_value_t = 4096, value_parser = empty_is_unset::<usize>())]
    pub append_queue: usize,
    /// How long an Idempotency-Key is remembered, in hours.
    #[arg(long, env = "BOXOFFICE_IDEMPOTENCY_TTL_HOURS", default_value_t = 24, value_parser = empty_is_unset::<u64>())]
    pub idempotency_ttl_hours: u64,
    /// Where command-api listens.
    #[arg(long, env = "COMMAND_API_ADDR", default_value = "127.0.0.1:8080", value_parser = empty_is_unset::<SocketAddr>())]
    pub command_api_addr: SocketAddr,
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub jwt: JwtSettings,
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub relay: RelaySettings,
    #[command(flatten)]
    pub saga: SagaSettings,
    #[command(flatten)]
    pub fairness: FairnessSettings,
    #[command(flatten)]
    pub payment: PaymentSettings,
    #[command(flatten)]
    pub log: LogSettings,
}

impl Settings {
    /// The URL `migrate` applies the event store's migrations with:
    /// `MIGRATION_DATABASE_URL`, else `DATABASE_URL`.
    pub fn migration_url(&self) -> anyhow::Result<String> {
        first_set(&[
            ("MIGRATION_DATABASE_URL", &self.migration_database_url),
            ("DATABASE_URL", &self.database_url),
        ])
    }
}

/// The outbox relay's settings.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Outbox relay")]
pub struct RelaySettings {
    /// Run the outbox relay (`true` or `false`). Every replica may run one; only the
    /// leader publishes.
    #[arg(long, env = "BOXOFFICE_RELAY_ENABLED", default_value_t = true, action = ArgAction::Set, value_parser = empty_is_unset::<bool>())]
    pub relay_enabled: bool,
    /// Rows published per batch.
    #[arg(long, env = "BOXOFFICE_RELAY_BATCH", default_value_t = 500, value_parser = empty_is_unset::<i64>())]
    pub relay_batch: i64,
    /// The polling fallback when no notification arrives, in milliseconds.
    #[arg(long, env = "BOXOFFICE_RELAY_POLL_MS", default_value_t = 1000, value_parser = empty_is_unset::<u64>())]
    pub relay_poll_ms: u64,
    /// After a batch that was not full, how long rows gather before the next one, in
    /// milliseconds (fewer, fuller batches; the first event after a quiet spell is not
    /// delayed).
    #[arg(long, env = "BOXOFFICE_RELAY_LINGER_MS", default_value_t = 10, value_parser = empty_is_unset::<u64>())]
    pub relay_linger_ms: u64,
}

/// The sagas' settings.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Sagas")]
pub struct SagaSettings {
    /// Run the saga worker (`true` or `false`). Every replica may; they share the work.
    #[arg(long, env = "BOXOFFICE_SAGAS_ENABLED", default_value_t = true, action = ArgAction::Set, value_parser = empty_is_unset::<bool>())]
    pub sagas_enabled: bool,
    /// How long seats stay held for a payment that does not answer, in seconds
    /// (fractions allowed).
    #[arg(long, env = "BOXOFFICE_HOLD_TTL_SECS", default_value_t = 600.0, value_parser = empty_is_unset::<f64>())]
    pub hold_ttl_secs: f64,
    /// Sagas carried on at once per process.
    #[arg(long, env = "BOXOFFICE_SAGA_CONCURRENCY", default_value_t = 64, value_parser = empty_is_unset::<usize>())]
    pub saga_concurrency: usize,
    /// After how many failures in a row of the same kind a saga is parked, until an
    /// operator retries it (0: never).
    #[arg(long, env = "BOXOFFICE_SAGA_PARK_AFTER", default_value_t = 10, value_parser = empty_is_unset::<u32>())]
    pub saga_park_after: u32,
}

/// Fairness between customers (admins are not limited).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Fairness")]
pub struct FairnessSettings {
    /// Seats one customer may hold of an event at once, in bookings not yet paid (0: no
    /// cap; more is 409 too_many_held_seats).
    #[arg(long, env = "BOXOFFICE_MAX_HELD_SEATS_PER_USER", default_value_t = 10, value_parser = empty_is_unset::<u32>())]
    pub max_held_seats_per_user: u32,
    /// Commands a customer may send per second, sustained (0: no limit; more is 429
    /// rate_limited).
    #[arg(long, env = "BOXOFFICE_COMMANDS_PER_USER_PER_SEC", default_value_t = 5, value_parser = empty_is_unset::<u32>())]
    pub commands_per_user_per_sec: u32,
    /// Commands a customer may send at once after a quiet spell.
    #[arg(long, env = "BOXOFFICE_COMMANDS_BURST", default_value_t = 20, value_parser = empty_is_unset::<u32>())]
    pub commands_burst: u32,
}

/// The payment gateway's client and the reconciliation sweep.
#[derive(Clone, clap::Args)]
#[command(next_help_heading = "Payment gateway")]
pub struct PaymentSettings {
    /// Where the payment gateway is.
    #[arg(long, env = "PAYMENT_GATEWAY_URL", default_value = "http://127.0.0.1:8083", value_parser = empty_is_unset::<String>())]
    pub payment_gateway_url: String,
    /// The gateway's secret key, sent as a bearer token (leave unset when the gateway
    /// has none). Hidden here, never logged.
    #[arg(long, env = "PAYMENT_GATEWAY_KEY", hide_env_values = true, value_parser = empty_is_unset::<String>())]
    pub payment_gateway_key: Option<String>,
    /// How long one attempt of a call may take, in milliseconds.
    #[arg(long, env = "PAYMENT_TIMEOUT_MS", default_value_t = 2000, value_parser = empty_is_unset::<u64>())]
    pub payment_timeout_ms: u64,
    /// Retries of a call that failed for a reason that may pass (not reached, timed
    /// out, 5xx).
    #[arg(long, env = "PAYMENT_RETRIES", default_value_t = 2, value_parser = empty_is_unset::<u32>())]
    pub payment_retries: u32,
    /// Failures in a row that open the circuit breaker.
    #[arg(long, env = "PAYMENT_CIRCUIT_FAILURES", default_value_t = 5, value_parser = empty_is_unset::<u32>())]
    pub payment_circuit_failures: u32,
    /// How long an open circuit holds calls back before one probe goes through, in
    /// milliseconds.
    #[arg(long, env = "PAYMENT_CIRCUIT_OPEN_MS", default_value_t = 5000, value_parser = empty_is_unset::<u64>())]
    pub payment_circuit_open_ms: u64,
    /// Calls at the gateway at once; more wait their turn here (within their budget)
    /// instead of piling up there, where the wait would count against their timeout.
    #[arg(long, env = "PAYMENT_MAX_IN_FLIGHT", default_value_t = 16, value_parser = empty_is_unset::<usize>())]
    pub payment_max_in_flight: usize,
    /// How often the gateway's authorized payments are checked against the bookings,
    /// in seconds (0: never).
    #[arg(long, env = "BOXOFFICE_RECONCILE_EVERY_SECS", default_value_t = 60, value_parser = empty_is_unset::<u64>())]
    pub reconcile_every_secs: u64,
    /// How old a payment must be, in seconds, for the sweep to check it (younger ones
    /// are left to their sagas).
    #[arg(long, env = "BOXOFFICE_RECONCILE_AFTER_SECS", default_value_t = 300, value_parser = empty_is_unset::<u64>())]
    pub reconcile_after_secs: u64,
}

impl TryFrom<Settings> for Config {
    type Error = anyhow::Error;

    /// The configuration the settings give; errors name the variable at fault.
    fn try_from(s: Settings) -> anyhow::Result<Self> {
        let database_url = required("DATABASE_URL", &s.database_url)?;
        let jwt_secret = s.jwt.secret()?;
        let hold_ttl = Duration::try_from_secs_f64(s.saga.hold_ttl_secs).map_err(|_| {
            anyhow!("BOXOFFICE_HOLD_TTL_SECS must be a number of seconds, at least 0")
        })?;
        anyhow::ensure!(
            (1..=100_000).contains(&s.payment.payment_max_in_flight),
            "PAYMENT_MAX_IN_FLIGHT must be between 1 and 100000"
        );
        Ok(Self {
            db_max_connections: s.db_max_connections,
            append_writers: s.append_writers,
            append_queue: s.append_queue,
            kafka_brokers: s.kafka.kafka_brokers.clone(),
            kafka_security: s.kafka.security.clone().validated()?,
            topic: s.kafka.topic(),
            jwt_rules: s.jwt.rules(),
            addr: s.command_api_addr,
            http: ServerLimits::try_from(&s.http)?,
            relay: RelayConfig {
                enabled: s.relay.relay_enabled,
                batch_size: s.relay.relay_batch,
                poll_interval: Duration::from_millis(s.relay.relay_poll_ms),
                linger: Duration::from_millis(s.relay.relay_linger_ms),
            },
            saga: SagaConfig {
                enabled: s.saga.sagas_enabled,
                hold_ttl,
                concurrency: s.saga.saga_concurrency,
                park_after: s.saga.saga_park_after,
            },
            fairness: FairnessConfig {
                max_held_seats_per_user: s.fairness.max_held_seats_per_user,
                commands_per_user_per_sec: s.fairness.commands_per_user_per_sec,
                commands_burst: s.fairness.commands_burst,
            },
            payment: PaymentConfig {
                url: s.payment.payment_gateway_url,
                key: set(&s.payment.payment_gateway_key).map(str::to_owned),
                timeout: Duration::from_millis(s.payment.payment_timeout_ms),
                retries: s.payment.payment_retries,
                circuit_failures: s.payment.payment_circuit_failures,
                circuit_open: Duration::from_millis(s.payment.payment_circuit_open_ms),
                max_in_flight: s.payment.payment_max_in_flight,
                reconcile_every: Duration::from_secs(s.payment.reconcile_every_secs),
                reconcile_after: Duration::from_secs(s.payment.reconcile_after_secs),
            },
            idempotency_ttl: Duration::from_secs(s.idempotency_ttl_hours.saturating_mul(3600)),
            ..Self::new(&database_url, &jwt_secret)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn settings(args: &[&str]) -> Settings {
        platform::config::from_args(args).unwrap()
    }

    #[test]
    fn the_settings_default_to_the_defaults_of_new() {
        let config = Config::try_from(settings(&[
            "--database-url",
            "postgres://db",
            "--jwt-secret",
            SECRET,
        ]))
        .unwrap();
        assert_eq!(
            format!("{config:?}"),
            format!("{:?}", Config::new("postgres://db", SECRET))
        );
        assert_eq!(config.database_url, "postgres://db");
        assert_eq!(config.jwt_secret, SECRET);
    }

    #[test]
    fn the_database_and_the_secret_are_required() {
        let err = Config::try_from(settings(&["--jwt-secret", SECRET])).unwrap_err();
        assert_eq!(err.to_string(), "DATABASE_URL must be set");
        let err = Config::try_from(settings(&["--database-url", "postgres://db"])).unwrap_err();
        assert_eq!(err.to_string(), "BOXOFFICE_JWT_SECRET must be set");
    }

    #[test]
    fn no_payment_call_at_all_is_refused() {
        let err = Config::try_from(settings(&[
            "--database-url",
            "postgres://db",
            "--jwt-secret",
            SECRET,
            "--payment-max-in-flight",
            "0",
        ]))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "PAYMENT_MAX_IN_FLIGHT must be between 1 and 100000"
        );
    }

    #[test]
    fn settings_become_the_config() {
        let config = Config::try_from(settings(&[
            "--database-url",
            "postgres://db",
            "--jwt-secret",
            SECRET,
            "--relay-enabled",
            "false",
            "--hold-ttl-secs",
            "0.5",
            "--payment-gateway-key",
            "",
            "--idempotency-ttl-hours",
            "2",
            "--kafka-topic-partitions",
            "3",
        ]))
        .unwrap();
        assert!(!config.relay.enabled);
        assert_eq!(config.saga.hold_ttl, Duration::from_millis(500));
        assert_eq!(config.payment.key, None);
        assert_eq!(config.idempotency_ttl, Duration::from_secs(7200));
        assert_eq!(config.topic.partitions, 3);
    }

    #[test]
    fn a_negative_hold_is_refused() {
        let err = Config::try_from(settings(&[
            "--database-url",
            "postgres://db",
            "--jwt-secret",
            SECRET,
            "--hold-ttl-secs=-1",
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("BOXOFFICE_HOLD_TTL_SECS"), "{err}");
    }

    #[test]
    fn migrations_use_the_owners_url_else_the_services() {
        let own = settings(&["--database-url", "postgres://own"]);
        assert_eq!(own.migration_url().unwrap(), "postgres://own");
        let owner = settings(&[
            "--database-url",
            "postgres://own",
            "--migration-database-url",
            "postgres://owner",
        ]);
        assert_eq!(owner.migration_url().unwrap(), "postgres://owner");
        assert_eq!(
            settings(&[]).migration_url().unwrap_err().to_string(),
            "none of MIGRATION_DATABASE_URL, DATABASE_URL is set"
        );
    }
}
