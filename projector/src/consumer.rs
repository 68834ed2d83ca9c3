//! The Kafka consumer: the fast path from the topic to the read models.
//!
//! Messages are taken in batches (whatever arrived, up to `PROJECTOR_BATCH`), applied in
//! one read-model transaction together with each row's sequence, and only after that
//! commit are the batch's Kafka offsets committed. A crash between the two redelivers
//! the batch, which changes nothing. Several projector processes in one consumer group
//! share the partitions.

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
use crate::metrics::Source;
use read_model::engine::{apply_batch, Target};
use read_model::Projection;

/// Consumes until `shutdown`, with a fresh consumer after the broker went away or the
/// consumer went quiet while the store moved on.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    loop {
        let Some(consumer) = connect(&ctx, &shutdown).await else {
            break;
        };
        let ended = consume(&ctx, &consumer, &shutdown).await;
        // Closing a consumer may wait on the broker: not on this thread.
        tokio::task::spawn_blocking(move || drop(consumer));
        match ended {
            Ended::Shutdown => break,
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
    tracing::info!("consumer stopped");
}

/// Why [`consume`] returned.
enum Ended {
    Shutdown,
    /// The broker is away. A consumer kept across the outage keeps metadata (topic
    /// ids) that a broker which lost its data no longer knows, and librdkafka 2.12 has
    /// been seen to crash on it with tansu: the next consumer starts afresh.
    BrokerAway,
    /// Nothing from Kafka for a while, yet the sweep found events it should have
    /// brought (seen after the broker lost its data).
    Stalled,
}

async fn consume(
    ctx: &Context,
    consumer: &StreamConsumer<KafkaLogs>,
    shutdown: &CancellationToken,
) -> Ended {
    let stall = (ctx.config.sweep_interval * 2).max(Duration::from_secs(1));
    let mut last_message = Instant::now();
    let mut pause = Duration::from_millis(100);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => return Ended::Shutdown,
            message = consumer.recv() => message,
            _ = tick.tick() => {
                let assigned = consumer.assignment().map_or(0, |a| a.count());
                ctx.metrics.assigned_partitions.set(i64::try_from(assigned).unwrap_or(0));
                continue;
            }
            () = ctx.kafka_behind.notified() => {
                if last_message.elapsed() >= stall {
                    tracing::warn!(silent_for = ?last_message.elapsed(), "Kafka brings nothing while the store has new events; reconnecting");
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
                // The topic may not exist yet: wait and retry.
                tracing::warn!(cause = %err, "cannot consume");
                tokio::select! {
                    () = shutdown.cancelled() => return Ended::Shutdown,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
        }
        last_message = Instant::now();
        pause = Duration::from_millis(100);
        // Whatever else has already arrived joins the batch.
        while batch.len() < ctx.config.batch_size {
            match tokio::time::timeout(Duration::from_millis(1), consumer.recv()).await {
                Ok(Ok(message)) => batch.add(&message),
                _ => break,
            }
        }
        ctx.metrics.consumed.inc_by(batch.len() as u64);
        if !apply_until_done(ctx, &batch.events, shutdown).await {
            // Shutting down: the batch is not committed and will be redelivered.
            return Ended::Shutdown;
        }
        if let Err(err) = consumer.commit(
            &commit_list(&ctx.config.topic.name, &batch.next_offsets),
            CommitMode::Async,
        ) {
            // The next commit covers these offsets; at worst they are redelivered.
            tracing::warn!(cause = %err, "cannot commit offsets");
        }
    }
}

/// A consumer subscribed to the topic, retrying until it can be made or shutdown.
async fn connect(ctx: &Context, shutdown: &CancellationToken) -> Option<StreamConsumer<KafkaLogs>> {
    let mut pause = Duration::from_millis(200);
    loop {
        match create(ctx) {
            Ok(consumer) => {
                tracing::info!(topic = %ctx.config.topic.name, group = %ctx.config.group, "consuming");
                return Some(consumer);
            }
            Err(err) => tracing::error!(
                cause = format!("{err:#}"),
                "cannot create the Kafka consumer"
            ),
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(10));
    }
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

/// Applies `events` in one transaction, retrying on failure until it works. Returns
/// false when shutdown came first.
async fn apply_until_done(
    ctx: &Context,
    events: &[WireEvent],
    shutdown: &CancellationToken,
) -> bool {
    let mut pause = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        match apply(ctx, events).await {
            Ok(()) => {
                ctx.metrics
                    .apply_seconds
                    .get_or_create(&Source { source: "kafka" })
                    .observe(started.elapsed().as_secs_f64());
                return true;
            }
            Err(err) => {
                tracing::warn!(cause = format!("{err:#}"), "cannot apply a batch; retrying")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

async fn apply(ctx: &Context, events: &[WireEvent]) -> anyhow::Result<()> {
    // With traces on, each event gets a span in the trace of the request that appended
    // it, open while its batch is applied (the events of a batch share one transaction).
    let _spans = platform::telemetry::enabled().then(|| apply_spans(events));
    let mut tx = ctx.read.begin().await?;
    let applied = apply_batch(&mut tx, &ctx.store, Target::Live, events).await?;
    tx.commit().await?;
    ctx.metrics.record(&applied);
    Ok(())
}

/// One span per event (`apply <EventType>`), a child of the span the event was
/// appended under (its `traceparent`).
fn apply_spans(events: &[WireEvent]) -> Vec<tracing::Span> {
    events
        .iter()
        .map(|event| {
            let span = tracing::info_span!(
                "apply",
                otel.name = %format_args!("apply {}", event.event_type),
                otel.kind = "consumer",
                boxoffice.position = event.position,
                boxoffice.aggregate_type = %event.aggregate_type,
            );
            if let Some(parent) = event.metadata.trace_parent() {
                platform::telemetry::continue_trace(&span, &parent);
            }
            span
        })
        .collect()
}

/// Messages taken together, and the offsets to commit once they are applied.
#[derive(Default)]
struct Batch {
    events: Vec<WireEvent>,
    next_offsets: BTreeMap<i32, i64>,
}

impl Batch {
    fn add(&mut self, message: &impl Message) {
        self.next_offsets
            .insert(message.partition(), message.offset() + 1);
        let (partition, offset) = (message.partition(), message.offset());
        // The CloudEvents headers tell what a message is before its value is decoded
        // (messages published before the relay sent them have none; they are decoded).
        let attributes = Attributes::read(message.headers());
        if let Some(attributes) = &attributes {
            if !attributes.is_json() {
                tracing::error!(partition, offset, content_type = ?attributes.content_type, "a message that is not JSON; skipped");
                return;
            }
            if attributes
                .aggregate_type()
                .and_then(Projection::consuming)
                .is_none()
            {
                return; // no projection reads this aggregate type
            }
        }
        // Skipped messages' offsets are committed with the rest: the sweep reads the
        // store, the truth, and applies whatever the read models lack.
        match message.payload().map(serde_json::from_slice::<WireEvent>) {
            Some(Ok(event))
                if attributes
                    .as_ref()
                    .and_then(Attributes::position)
                    .is_none_or(|position| position == event.position) =>
            {
                self.events.push(event)
            }
            Some(Ok(event)) => tracing::error!(
                partition,
                offset,
                position = event.position,
                ce_id = attributes.map(|a| a.id),
                "a message whose ce_id is not its position; skipped"
            ),
            _ => tracing::error!(
                partition,
                offset,
                "a message that is not a stored event; skipped"
            ),
        }
    }

    fn len(&self) -> usize {
        self.events.len()
    }
}
