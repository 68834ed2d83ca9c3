//! The Kafka consumer, in the notifier's own consumer group: the fast path from the
//! topic to the sent log.
//!
//! Messages are taken in batches; a batch's facts are taken in (see [`crate::intake`])
//! in one transaction, and only after it commits are the batch's offsets committed. A
//! crash between the two redelivers the batch, which then changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::cloudevents::Attributes;
use platform::kafka::{batch_consumer, commit_list, wait_for_topic, KafkaLogs, WireEvent};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::Message;
use tokio_util::sync::CancellationToken;

use crate::app::Context;
use crate::intake::take_in;
use crate::metrics::SourceLabels;

/// Messages taken together, at most.
const BATCH: usize = 500;

/// Consumes until `shutdown`, with a fresh consumer after the broker went away or the
/// consumer went quiet while the store moved on (as the projector does, for the same
/// reasons: a broker that lost its data).
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    loop {
        let consumer = loop {
            match create(&ctx) {
                Ok(consumer) => break consumer,
                Err(err) => tracing::error!(
                    cause = format!("{err:#}"),
                    "cannot create the Kafka consumer"
                ),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        };
        tracing::info!(topic = %ctx.config.topic.name, group = %ctx.config.group, "consuming");
        let ended = consume(&ctx, &consumer, &shutdown).await;
        // Closing a consumer may wait on the broker: not on this thread.
        tokio::task::spawn_blocking(move || drop(consumer));
        match ended {
            Ended::Shutdown => return,
            Ended::Stalled => {}
            Ended::BrokerAway => {
                let config = &ctx.config;
                wait_for_topic(
                    &config.kafka_brokers,
                    &config.kafka_security,
                    &config.topic,
                    &shutdown,
                )
                .await
            }
        }
    }
}

enum Ended {
    Shutdown,
    BrokerAway,
    Stalled,
}

fn create(ctx: &Context) -> anyhow::Result<StreamConsumer<KafkaLogs>> {
    batch_consumer(
        &ctx.config.kafka_brokers,
        &ctx.config.kafka_security,
        &ctx.config.group,
        &ctx.config.topic.name,
        ctx.config.fetch_wait,
    )
}

async fn consume(
    ctx: &Context,
    consumer: &StreamConsumer<KafkaLogs>,
    shutdown: &CancellationToken,
) -> Ended {
    let stall = (ctx.config.sweep_interval * 2).max(Duration::from_secs(1));
    let mut last_message = Instant::now();
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => return Ended::Shutdown,
            message = consumer.recv() => message,
            () = ctx.kafka_behind.notified() => {
                if last_message.elapsed() >= stall {
                    tracing::warn!(silent_for = ?last_message.elapsed(), "Kafka brings nothing while the store has new facts; reconnecting");
                    return Ended::Stalled;
                }
                continue;
            }
        };
        let mut batch = Batch::default();
        match first {
            Ok(message) => batch.add(&message),
            Err(err) if err.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) => {
                tracing::warn!(cause = %err, "the broker is away; reconnecting when it is back");
                return Ended::BrokerAway;
            }
            Err(err) => {
                tracing::warn!(cause = %err, "cannot consume");
                tokio::select! {
                    () = shutdown.cancelled() => return Ended::Shutdown,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
        }
        last_message = Instant::now();
        while batch.events.len() < BATCH {
            match tokio::time::timeout(Duration::from_millis(1), consumer.recv()).await {
                Ok(Ok(message)) => batch.add(&message),
                _ => break,
            }
        }
        if !take_in_until_done(ctx, &batch.events, shutdown).await {
            return Ended::Shutdown; // not committed: redelivered
        }
        if let Err(err) = consumer.commit(
            &commit_list(&ctx.config.topic.name, &batch.next_offsets),
            CommitMode::Async,
        ) {
            tracing::warn!(cause = %err, "cannot commit offsets");
        }
    }
}

/// Takes `events` in, retrying until it works; false when shutdown came first.
async fn take_in_until_done(
    ctx: &Context,
    events: &[WireEvent],
    shutdown: &CancellationToken,
) -> bool {
    let mut pause = Duration::from_millis(100);
    loop {
        let attempt = async {
            let mut tx = ctx.log.begin().await?;
            let intake = take_in(&mut tx, ctx, events).await?;
            tx.commit().await?;
            anyhow::Ok(intake)
        };
        match attempt.await {
            Ok(intake) => {
                ctx.metrics
                    .facts
                    .get_or_create(&SourceLabels { source: "kafka" })
                    .inc_by(intake.facts);
                if intake.notifications > 0 {
                    ctx.wake.notify_one();
                }
                return true;
            }
            Err(err) => {
                tracing::warn!(
                    cause = format!("{err:#}"),
                    "cannot take a batch in; retrying"
                )
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Messages taken together, and the offsets to commit once they are taken in.
#[derive(Default)]
struct Batch {
    events: Vec<WireEvent>,
    next_offsets: BTreeMap<i32, i64>,
}

impl Batch {
    fn add(&mut self, message: &impl Message) {
        self.next_offsets
            .insert(message.partition(), message.offset() + 1);
        // Only bookings' facts matter here; the headers tell without decoding.
        if let Some(attributes) = Attributes::read(message.headers()) {
            if attributes.aggregate_type() != Some("booking") {
                return;
            }
        }
        match message.payload().map(serde_json::from_slice::<WireEvent>) {
            Some(Ok(event)) => self.events.push(event),
            // The sweep reads the store and takes in whatever this skipped.
            _ => tracing::error!(
                partition = message.partition(),
                offset = message.offset(),
                "a message that is not a stored event; skipped"
            ),
        }
    }
}
