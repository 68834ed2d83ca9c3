//! The outbox relay: publishes appended events to Kafka, in order, once.
//!
//! - **One leader, fenced.** Every command-api process runs a relay; the one holding a
//!   Postgres advisory lock (on a connection of its own) publishes, the others wait to
//!   take over. The leader reads every batch and deletes the published rows on that
//!   very connection: a session-level advisory lock belongs to its session, so a
//!   statement that runs there is itself the proof of leadership, in the transaction
//!   that deletes the rows. A leader whose session was lost (terminated, network cut)
//!   fails on its next statement and steps down, within the batch it was publishing,
//!   which its successor may publish again (at most that batch repeats on the topic).
//! - **Wake-up.** The leader `LISTEN`s on [`CHANNEL`]; after each commit, the process
//!   that appended sends one coalesced `NOTIFY` ([`notify_after_commits`]). Polling every
//!   `BOXOFFICE_RELAY_POLL_MS` covers a notification lost to a crash. After a batch that
//!   was not full, the leader waits `BOXOFFICE_RELAY_LINGER_MS` before reading the next,
//!   so that under load batches are fuller (each costs two statements and a produce
//!   request per partition, whatever its size). The `NOTIFY` is
//!   sent after the commit rather than by the append trigger because a `NOTIFY` inside a
//!   transaction takes a database-wide lock at commit, which would serialize every
//!   append (and their fsyncs).
//! - **In order, at least once.** Rows are read in position order and produced with
//!   rdkafka's idempotent producer (key = aggregate id, so one aggregate keeps one
//!   partition), with no delivery timeout: while the broker is away the batch waits
//!   instead of failing part-way, which could let a later event of an aggregate overtake
//!   an earlier one. A row is deleted only after the broker acknowledged it. If some
//!   delivery fails anyway, the producer is rebuilt and the unacknowledged rows are sent
//!   again, still in order.
//! - **Once.** A leader that died after the broker acknowledged a batch but before it
//!   deleted the rows would make its successor publish them twice. So a new leader first
//!   reads the last messages of every partition and deletes the outbox rows already
//!   there.
//! - **The broker losing its data** (tansu's memory storage restarted): while waiting
//!   for acknowledgements the leader checks every few seconds that the topic still
//!   exists, and creates it again. Such a broker also forgets the producer's id and
//!   refuses it for good while librdkafka retries forever; when the broker has been
//!   answering for [`STALL_AFTER`] and the batch is still unacknowledged, the pending
//!   deliveries are purged, the producer rebuilt and the rest sent again.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use domain::metadata::EventMetadata;
use futures::future::join_all;
use platform::cloudevents;
use platform::kafka::{
    client_config, ensure_topic, partition_count, KafkaLogs, KafkaSecurity, TopicSpec, WireEvent,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::postgres::PgListener;
use sqlx::types::Json;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::RelayConfig;
use crate::metrics::Metrics;

/// The channel the relay listens on.
pub const CHANNEL: &str = "boxoffice_outbox";

/// The advisory lock of the relay leader ("boxoffic" in ASCII). Advisory locks are per
/// database, so stores in different databases have different leaders.
const LEADER_LOCK: i64 = 0x626f_786f_6666_6963;

/// How often a follower tries to become leader.
const FOLLOWER_RETRY: Duration = Duration::from_secs(2);

/// While waiting for acknowledgements, how often the topic's existence is checked.
const TOPIC_WATCH: Duration = Duration::from_secs(5);

/// How long the broker may answer while a batch stays unacknowledged before the
/// producer is deemed stuck.
const STALL_AFTER: Duration = Duration::from_secs(20);

/// After SIGTERM, how long an in-flight batch may still take to be acknowledged.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The least time between two `NOTIFY`s of one process. Under load the relay is busy
/// anyway and a notification per commit would only cost a transaction each; when it is
/// idle, this is the most a notification waits.
const NOTIFY_EVERY: Duration = Duration::from_millis(5);

/// Sends one `NOTIFY` on [`CHANNEL`] after commits, coalescing bursts: however many
/// commits happen while a `NOTIFY` is in flight or within [`NOTIFY_EVERY`] of the last
/// one, one more follows.
pub async fn notify_after_commits(
    pool: PgPool,
    mut appended: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = appended.changed() => if changed.is_err() { return },
        }
        let sent = Instant::now();
        if let Err(err) = sqlx::query!("SELECT pg_notify($1, '')", CHANNEL)
            .execute(&pool)
            .await
        {
            // The relay's polling covers a lost notification.
            tracing::warn!(cause = %err, "cannot notify the outbox relay");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(NOTIFY_EVERY.saturating_sub(sent.elapsed())) => {}
        }
    }
}

/// The relay of one process.
pub struct Relay {
    pool: PgPool,
    brokers: String,
    security: KafkaSecurity,
    topic: TopicSpec,
    config: RelayConfig,
    metrics: Metrics,
}

/// One outbox row, ready to send.
struct Pending {
    wire: WireEvent,
    enqueued_at: DateTime<Utc>,
}

/// How a batch went.
struct Delivery {
    /// Positions the broker acknowledged.
    acked: Vec<i64>,
    /// The first failure, when some delivery failed.
    failure: Option<String>,
}

impl Relay {
    /// A relay for the store behind `pool`.
    pub fn new(
        pool: PgPool,
        brokers: String,
        security: KafkaSecurity,
        topic: TopicSpec,
        config: RelayConfig,
        metrics: Metrics,
    ) -> Self {
        Self {
            pool,
            brokers,
            security,
            topic,
            config,
            metrics,
        }
    }

    /// Follows, leads when it can, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut pause = Duration::from_millis(500);
        loop {
            let Some(lock) = self.become_leader(&shutdown).await else {
                return;
            };
            self.metrics.relay_leader.set(1);
            let outcome = self.lead(lock, &shutdown).await;
            self.metrics.relay_leader.set(0);
            match outcome {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(
                        cause = format!("{err:#}"),
                        "outbox relay stepped down; will try again"
                    );
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }

    /// Waits until this process holds the leader lock; `None` on shutdown.
    async fn become_leader(&self, shutdown: &CancellationToken) -> Option<PgConnection> {
        let mut conn: Option<PgConnection> = None;
        loop {
            if conn.is_none() {
                match PgConnection::connect_with(&self.pool.connect_options()).await {
                    Ok(c) => conn = Some(c),
                    Err(err) => tracing::warn!(cause = %err, "relay cannot reach the database"),
                }
            }
            if let Some(c) = conn.as_mut() {
                match sqlx::query_scalar!(
                    r#"SELECT pg_try_advisory_lock($1) AS "locked!""#,
                    LEADER_LOCK
                )
                .fetch_one(&mut *c)
                .await
                {
                    Ok(true) => return conn,
                    Ok(false) => {}
                    Err(err) => {
                        tracing::warn!(cause = %err, "relay lost its database connection");
                        conn = None;
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(FOLLOWER_RETRY) => {}
            }
        }
    }

    /// Publishes until `shutdown` (`Ok`) or until something fails (`Err`: step down and
    /// let whoever is first take over).
    async fn lead(
        &self,
        mut lock: PgConnection,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        tracing::info!(topic = %self.topic.name, "leading the outbox relay");
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        self.wait_for_topic(shutdown).await;
        if let Err(err) = self.skip_already_published(&mut lock).await {
            tracing::warn!(cause = format!("{err:#}"), "cannot read the topic's tail; rows published just before a crash may be published again");
        }
        let mut producer = self.producer()?;
        let mut backlog_counted: Option<Instant> = None;
        let mut pause = Duration::from_millis(200);

        while !shutdown.is_cancelled() {
            if backlog_counted.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                let backlog = sqlx::query!(
                    r#"SELECT count(*) AS "rows!",
                              coalesce(extract(epoch FROM clock_timestamp() - min(enqueued_at)), 0)::float8 AS "oldest_secs!"
                       FROM outbox"#
                )
                .fetch_one(&self.pool)
                .await?;
                self.metrics.outbox_backlog.set(backlog.rows);
                self.metrics
                    .outbox_oldest_age
                    .set(backlog.oldest_secs.max(0.0));
                backlog_counted = Some(Instant::now());
            }

            let batch = on_lock(next_batch(&mut lock, self.config.batch_size))
                .await
                .context("cannot read the outbox on the leader's connection")?;
            if batch.is_empty() {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    received = listener.recv() => { received.context("lost the LISTEN connection")?; }
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                }
                continue;
            }

            let sent = Instant::now();
            let delivery = self.publish(&producer, &batch, shutdown).await;
            self.metrics.relay_batch.observe(batch.len() as f64);
            self.metrics
                .relay_ack_seconds
                .observe(sent.elapsed().as_secs_f64());
            on_lock(retire(&mut lock, &delivery.acked))
                .await
                .context("cannot retire published rows on the leader's connection")?;
            let acked_at = Utc::now();
            for row in batch
                .iter()
                .filter(|r| delivery.acked.contains(&r.wire.position))
            {
                let waited = (acked_at - row.enqueued_at).to_std().unwrap_or_default();
                self.metrics.publish_seconds.observe(waited.as_secs_f64());
            }
            self.metrics
                .outbox_published
                .inc_by(delivery.acked.len() as u64);

            if let Some(failure) = delivery.failure {
                let failed = batch.len() - delivery.acked.len();
                self.metrics.publish_failures.inc_by(failed as u64);
                tracing::warn!(failed, cause = %failure, "deliveries failed; rebuilding the producer and sending again");
                producer = self.producer()?;
                self.wait_for_topic(shutdown).await;
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            } else {
                pause = Duration::from_millis(200);
                if (batch.len() as i64) < self.config.batch_size && !self.config.linger.is_zero() {
                    // Not a full batch: let the next one gather.
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(self.config.linger) => {}
                    }
                }
            }
        }
        tracing::info!("outbox relay stopped");
        // Ending the lock's session releases the lock.
        let _ = lock.close().await;
        Ok(())
    }

    /// Produces the batch in order and waits for every acknowledgement.
    async fn publish(
        &self,
        producer: &FutureProducer<KafkaLogs>,
        batch: &[Pending],
        shutdown: &CancellationToken,
    ) -> Delivery {
        let mut futures = Vec::with_capacity(batch.len());
        let mut failure = None;
        for row in batch {
            let value = match serde_json::to_vec(&row.wire) {
                Ok(value) => value,
                Err(err) => {
                    failure = Some(format!(
                        "cannot encode position {}: {err}",
                        row.wire.position
                    ));
                    break;
                }
            };
            // A CloudEvent in binary mode: attributes in headers, the envelope as value.
            let headers = cloudevents::Attributes::of(&row.wire).headers();
            let record = FutureRecord::to(&self.topic.name)
                .key(row.wire.aggregate_id.as_str())
                .payload(&value)
                .headers(headers);
            match producer.send_result(record) {
                Ok(delivery) => futures.push((row.wire.position, delivery)),
                Err((err, _)) => {
                    // Nothing after this row is sent, so nothing overtakes it.
                    failure = Some(format!(
                        "cannot enqueue position {}: {err}",
                        row.wire.position
                    ));
                    break;
                }
            }
        }

        let (positions, deliveries): (Vec<i64>, Vec<_>) = futures.into_iter().unzip();
        let mut all = std::pin::pin!(join_all(deliveries));
        // Since when the broker has been answering while the batch is still not
        // acknowledged.
        let mut broker_answering_since: Option<Instant> = None;
        let results = loop {
            tokio::select! {
                results = &mut all => break Some(results),
                () = shutdown.cancelled() => {
                    break tokio::time::timeout(SHUTDOWN_GRACE, &mut all).await.ok();
                }
                () = tokio::time::sleep(TOPIC_WATCH) => {
                    // Still waiting: is the broker there, and does it still know the topic?
                    match ensure_topic(&self.brokers, &self.security, &self.topic).await {
                        Err(err) => {
                            broker_answering_since = None;
                            tracing::warn!(cause = format!("{err:#}"), "waiting for the broker to come back");
                        }
                        Ok(()) => {
                            let since = *broker_answering_since.get_or_insert_with(Instant::now);
                            if since.elapsed() >= STALL_AFTER {
                                // A broker that lost its state (tansu's memory storage
                                // restarted) refuses this producer's id for good, and
                                // librdkafka retries forever. Fail what is pending; the
                                // caller rebuilds the producer and sends it again.
                                tracing::warn!(pending = positions.len(), "the broker answers but does not acknowledge; abandoning this producer");
                                producer.purge(PurgeConfig::default().queue().inflight());
                                break Some((&mut all).await);
                            }
                        }
                    }
                }
            }
        };
        let Some(results) = results else {
            return Delivery {
                acked: Vec::new(),
                failure: Some("shutting down before the broker acknowledged".into()),
            };
        };

        let mut acked = Vec::with_capacity(positions.len());
        for (position, result) in positions.into_iter().zip(results) {
            match result {
                Ok(Ok(_)) => acked.push(position),
                Ok(Err((err, _))) => {
                    failure.get_or_insert_with(|| {
                        format!("delivery of position {position} failed: {err}")
                    });
                }
                Err(_) => {
                    failure.get_or_insert_with(|| {
                        format!("delivery of position {position} was cancelled")
                    });
                }
            }
        }
        Delivery { acked, failure }
    }

    fn producer(&self) -> anyhow::Result<FutureProducer<KafkaLogs>> {
        client_config(&self.brokers, &self.security)
            .set("enable.idempotence", "true")
            // Turn a failure that could leave a gap in a partition into a fatal error
            // (the producer is then rebuilt and the unacknowledged rows sent again).
            .set("enable.gapless.guarantee", "true")
            // No local timeout: while the broker is away, wait rather than fail part of a
            // batch (see the module documentation).
            .set("message.timeout.ms", "0")
            .set("linger.ms", "5")
            // The Java client's key hashing, so other clients agree on partitions.
            .set("partitioner", "murmur2_random")
            .create_with_context(KafkaLogs)
            .context("cannot create the Kafka producer")
    }

    /// Creates the topic if needed, retrying until the broker answers or shutdown.
    async fn wait_for_topic(&self, shutdown: &CancellationToken) {
        let mut pause = Duration::from_millis(250);
        loop {
            match ensure_topic(&self.brokers, &self.security, &self.topic).await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(cause = format!("{err:#}"), "broker not ready for the relay")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// Deletes outbox rows whose events are already on the topic, published by a leader
    /// that died before deleting them. Only the last `batch_size` messages of each
    /// partition can be such rows: a leader has at most one batch in flight.
    async fn skip_already_published(&self, lock: &mut PgConnection) -> anyhow::Result<()> {
        let brokers = self.brokers.clone();
        let security = self.security.clone();
        let topic = self.topic.name.clone();
        let depth = self.config.batch_size;
        let positions = tokio::task::spawn_blocking(move || {
            read_tail_positions(&brokers, &security, &topic, depth)
        })
        .await
        .context("tail reader panicked")??;
        if positions.is_empty() {
            return Ok(());
        }
        let skipped = retire(lock, &positions).await?;
        if skipped > 0 {
            tracing::info!(
                skipped,
                "outbox rows were already on the topic; not publishing them again"
            );
        }
        Ok(())
    }
}

/// The positions in the last `depth` messages of every partition of `topic`.
fn read_tail_positions(
    brokers: &str,
    security: &KafkaSecurity,
    topic: &str,
    depth: i64,
) -> anyhow::Result<Vec<i64>> {
    const WAIT: Duration = Duration::from_secs(10);
    let consumer: BaseConsumer<KafkaLogs> = client_config(brokers, security)
        .set("group.id", "boxoffice-relay-tail")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create_with_context(KafkaLogs)?;
    let partitions = partition_count(consumer.client(), topic, WAIT).map_err(anyhow::Error::msg)?;
    // Where a partition ends is learnt from the fetch responses (PartitionEOF).
    // ListOffsets only gives the starting point: tansu answers it with the base offset
    // of the last batch plus one, which is never past the real end, so starting
    // `depth` before it reads at least the last `depth` messages.
    let mut assignment = TopicPartitionList::new();
    let mut open = HashSet::new();
    for partition in 0..i32::try_from(partitions)? {
        let (low, high) = consumer.fetch_watermarks(topic, partition, WAIT)?;
        if high > low {
            assignment.add_partition_offset(
                topic,
                partition,
                Offset::Offset(low.max(high - depth)),
            )?;
            open.insert(partition);
        }
    }
    if open.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + WAIT;
    let mut positions = Vec::new();
    while !open.is_empty() {
        if Instant::now() > deadline {
            bail!("timed out reading the last messages of {topic}");
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                open.remove(&partition);
            }
            Some(Err(err)) => return Err(err.into()),
            Some(Ok(message)) => {
                if let Some(Ok(wire)) = message.payload().map(serde_json::from_slice::<WireEvent>) {
                    positions.push(wire.position);
                }
            }
        }
    }
    Ok(positions)
}

/// How long a statement on the lock's connection may take. One that hangs (a network cut
/// the connection does not notice) must not keep a leader that cannot publish.
const ON_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// `statement`, given up (as a failure: the leader steps down) after
/// [`ON_LOCK_TIMEOUT`].
async fn on_lock<T, E>(
    statement: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(ON_LOCK_TIMEOUT, statement).await {
        Ok(result) => Ok(result?),
        Err(_) => bail!("no answer on the lock's connection within {ON_LOCK_TIMEOUT:?}"),
    }
}

/// The oldest unpublished rows, in position order. The leader reads them on the
/// connection that holds its lock.
async fn next_batch(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<Pending>> {
    let rows = sqlx::query!(
        r#"SELECT o.position, o.enqueued_at, e.aggregate_type, e.aggregate_id, e.sequence,
                  e.event_type, e.event_version, e.payload,
                  e.metadata AS "metadata: Json<EventMetadata>"
             FROM outbox o
             JOIN events e USING (aggregate_type, aggregate_id, sequence)
            ORDER BY o.position
            LIMIT $1"#,
        limit
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Pending {
            enqueued_at: row.enqueued_at,
            wire: WireEvent {
                position: row.position,
                aggregate_type: row.aggregate_type,
                aggregate_id: row.aggregate_id,
                sequence: row.sequence,
                event_type: row.event_type,
                event_version: row.event_version,
                payload: row.payload,
                metadata: row.metadata.0,
            },
        })
        .collect())
}

/// Deletes the outbox rows of published events, and in the same statement writes the
/// append receipt that names them from now on (stream, sequence, position, hash: see
/// the tamper-evidence migration). Returns how many rows it deleted. The leader runs it
/// on the connection that holds its lock, so the delete happens only while it leads.
async fn retire(conn: &mut PgConnection, positions: &[i64]) -> sqlx::Result<u64> {
    if positions.is_empty() {
        return Ok(0);
    }
    sqlx::query_scalar!(
        r#"WITH gone AS (DELETE FROM outbox WHERE position = ANY($1)
                       RETURNING position, aggregate_type, aggregate_id, sequence, hash),
              receipt AS (INSERT INTO append_receipts (positions, aggregate_types, aggregate_ids, sequences, hashes)
                          SELECT array_agg(position ORDER BY position), array_agg(aggregate_type ORDER BY position),
                                 array_agg(aggregate_id ORDER BY position), array_agg(sequence ORDER BY position),
                                 array_agg(hash ORDER BY position)
                            FROM gone
                          HAVING count(*) > 0)
         SELECT count(*) AS "n!" FROM gone"#,
        positions
    )
    .fetch_one(conn)
    .await
    .map(i64::unsigned_abs)
}
