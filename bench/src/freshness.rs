//! The `freshness` scenario: how long from a command accepted to its effect visible
//! through the query API, at a fixed command rate; next to the raw round trip of a
//! message produced to and consumed from the same broker at the same rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use platform::auth::{Jwt, Role};
use platform::kafka::{client_config, ensure_topic, KafkaLogs, KafkaSecurity, TopicSpec};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::report::Measured;

/// Options of the scenario.
#[derive(clap::Args)]
pub struct Args {
    /// Commands (and baseline messages) per second.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds at the same rate before measuring (not counted).
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// How often a pending booking is looked for, in milliseconds.
    #[arg(long, default_value_t = 2)]
    poll_ms: u64,
    /// command-api's address.
    #[arg(long, env = "COMMAND_API_ADDR", default_value = "127.0.0.1:8080")]
    command_api: String,
    /// query-api's address.
    #[arg(long, env = "QUERY_API_ADDR", default_value = "127.0.0.1:8081")]
    query_api: String,
    /// The broker the stack uses (for the baseline).
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    kafka_brokers: String,
    /// The secret the stack signs tokens with.
    #[arg(long, env = "BOXOFFICE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
}

/// Runs the scenario and prints the results.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .timeout(Duration::from_secs(30))
        .build()?;
    let jwt = Jwt::new(&args.jwt_secret);
    let command = format!("http://{}", args.command_api);
    let query = format!("http://{}", args.query_api);
    let event = crate::bookings::create_event(&http, &command, &jwt).await?;
    let duration = Duration::from_secs(args.seconds);
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);

    println!("boxoffice bench: freshness");
    println!("  target: POST a booking at {}/s for {}s after {}s of warm-up; from its 202 until GET /v1/bookings/{{id}} shows it (polled every {} ms)", args.rate, args.seconds, args.warmup, args.poll_ms);
    println!("  baseline: produce a message to a fresh topic on the same broker at the same rate; from send until a consumer has it (fetch.wait.max.ms 10, as the projector)\n");

    let poll = Duration::from_millis(args.poll_ms);
    let warmup = Duration::from_secs(args.warmup);
    measure_freshness(
        &http, &command, &query, &jwt, &event, interval, warmup, poll,
    )
    .await?;
    let fresh = measure_freshness(
        &http, &command, &query, &jwt, &event, interval, duration, poll,
    )
    .await?;
    let baseline = measure_round_trip(&args.kafka_brokers, interval, warmup, duration).await?;
    println!("  {}", fresh.line("freshness (command → query)"));
    println!("  {}", baseline.line("baseline (produce → consume)"));
    println!(
        "\nsummary\n  freshness p50 {:.1} ms, p99 {:.1} ms; baseline p50 {:.1} ms, p99 {:.1} ms (same run, {}/s)",
        fresh.ms(0.5),
        fresh.ms(0.99),
        baseline.ms(0.5),
        baseline.ms(0.99),
        args.rate
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn measure_freshness(
    http: &reqwest::Client,
    command: &str,
    query: &str,
    jwt: &Jwt,
    event: &str,
    interval: Duration,
    duration: Duration,
    poll: Duration,
) -> anyhow::Result<Measured> {
    // A customer per booking: the fairness limits (rate, held seats) never refuse one.
    let run = Uuid::new_v4().simple().to_string();
    let mut sent = 0u64;
    let results = Arc::new(Mutex::new(Measured::new()));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + duration;
    let mut tasks = Vec::new();
    while Instant::now() < end {
        ticker.tick().await;
        sent += 1;
        let token = Arc::new(jwt.issue(
            &format!("fresh-{run}-{sent}"),
            Role::Customer,
            Duration::from_secs(3600),
        ));
        let (http, results) = (http.clone(), results.clone());
        let book = format!("{command}/v1/events/{event}/bookings");
        let query = query.to_owned();
        tasks.push(tokio::spawn(async move {
            let outcome = async {
                let response = http
                    .post(&book)
                    .bearer_auth(token.as_str())
                    .json(&json!({"seats": 1, "card_token": "tok_bench"}))
                    .send()
                    .await?;
                if response.status() != reqwest::StatusCode::ACCEPTED {
                    bail!("booking answered {}", response.status());
                }
                let accepted = Instant::now();
                let body: Value = response.json().await?;
                let id = body["id"].as_str().context("no id")?.to_owned();
                let url = format!("{query}/v1/bookings/{id}");
                loop {
                    let seen = http.get(&url).bearer_auth(token.as_str()).send().await?;
                    if seen.status().is_success() {
                        return Ok(accepted.elapsed());
                    }
                    if accepted.elapsed() > Duration::from_secs(30) {
                        bail!("not visible after 30 s");
                    }
                    tokio::time::sleep(poll).await;
                }
            }
            .await;
            let mut results = results.lock().await;
            match outcome {
                Ok(latency) => results.record(latency),
                Err(err) => {
                    results.errors += 1;
                    eprintln!("  freshness: {err:#}");
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let mut measured = Arc::try_unwrap(results)
        .map_err(|_| anyhow::anyhow!("still shared"))?
        .into_inner();
    measured.elapsed = duration;
    Ok(measured)
}

async fn measure_round_trip(
    brokers: &str,
    interval: Duration,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let topic = format!("bench.round-trip.{}", Uuid::new_v4().simple());
    ensure_topic(
        brokers,
        &KafkaSecurity::PLAINTEXT,
        &TopicSpec {
            name: topic.clone(),
            partitions: 6,
            replication: 1,
        },
    )
    .await?;
    let consumer: StreamConsumer<KafkaLogs> = client_config(brokers, &KafkaSecurity::PLAINTEXT)
        .set("group.id", format!("bench-{}", Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create_with_context(KafkaLogs)?;
    consumer.subscribe(&[&topic])?;
    let producer: FutureProducer<KafkaLogs> = client_config(brokers, &KafkaSecurity::PLAINTEXT)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create_with_context(KafkaLogs)?;
    let origin = Instant::now();
    // Wait until the group has given the consumer its partitions.
    let settle = Instant::now() + Duration::from_secs(30);
    while consumer.assignment().map_or(0, |a| a.count()) < 6 {
        if Instant::now() > settle {
            bail!("the baseline consumer got no partitions");
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
    }

    let skip = (warmup.as_secs_f64() / interval.as_secs_f64()) as usize;
    let count = skip + (duration.as_secs_f64() / interval.as_secs_f64()) as usize;
    let receiver = tokio::spawn(async move {
        let mut measured = Measured::new();
        let mut received = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        while received < count && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
                Ok(Ok(message)) => {
                    let sent: u64 = message
                        .payload()
                        .and_then(|p| std::str::from_utf8(p).ok())
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    let now = origin.elapsed().as_micros() as u64;
                    if received >= skip {
                        measured.record(Duration::from_micros(now.saturating_sub(sent)));
                    }
                    received += 1;
                }
                _ => continue,
            }
        }
        measured.errors = (count - received) as u64;
        measured
    });
    let mut ticker = tokio::time::interval(interval);
    let mut pending = Vec::with_capacity(count);
    for i in 0..count {
        ticker.tick().await;
        let payload = (origin.elapsed().as_micros() as u64).to_string();
        let key = format!("k{i}");
        pending.push(
            producer
                .send_result(FutureRecord::to(&topic).key(&key).payload(&payload))
                .map_err(|(e, _)| e)?,
        );
    }
    for delivery in pending {
        let _ = delivery.await;
    }
    let mut measured = receiver.await?;
    measured.elapsed = duration;
    Ok(measured)
}
