//! The `notify` scenario: notifications per second from booking facts on the topic to
//! messages the SMTP server accepted, next to a bare lettre send loop to the same
//! server (the same messages, the same concurrency), measured before and after.
//!
//! It runs on a scratch database (created on the stack's Postgres server, dropped at
//! the end) seeded with `--bookings` confirmed bookings, each with sealed contact data,
//! whose facts are published on a fresh topic of the stack's broker before the
//! notifier starts: it then takes them in (Kafka), composes each message from the store
//! (booking, event, contact opened with the user's key), sends it through the stack's
//! SMTP server (`SMTP_URL`; scripts/up runs aiosmtpd) and records it, with its shipped
//! settings.

use std::time::{Duration, Instant};

use chrono::Utc;
use domain::booking::BookingFact;
use domain::metadata::EventMetadata;
use domain::personal::Contact;
use domain::values::Currency;
use futures::StreamExt;
use platform::kafka::{
    client_config, ensure_topic, KafkaLogs, KafkaSecurity, TopicSpec, WireEvent,
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::scratch::Scratch;

/// Options of the scenario.
#[derive(clap::Args)]
pub struct Args {
    /// Confirmed bookings to announce (one message each).
    #[arg(long, default_value_t = 2000)]
    bookings: usize,
    /// Customers they belong to (each has a key of their own).
    #[arg(long, default_value_t = 200)]
    customers: usize,
    /// The stack's database (the owner's); the scratch database is made on its server.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// The stack's broker (a loopback address).
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:29092")]
    kafka_brokers: String,
    /// The SMTP server (a loopback address): scripts/up's aiosmtpd.
    #[arg(long, env = "SMTP_URL", default_value = "smtp://127.0.0.1:2525")]
    smtp_url: String,
    /// Messages in flight at once and SMTP connections (NOTIFIER_CONCURRENCY and
    /// SMTP_POOL_SIZE; the baseline uses the same); default: the shipped settings.
    #[arg(long)]
    concurrency: Option<usize>,
    /// The longest the notifier may take for them all, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
}

/// Runs the scenario and prints the results.
pub async fn run(args: Args) -> anyhow::Result<()> {
    for place in [&args.smtp_url, &args.kafka_brokers] {
        anyhow::ensure!(
            place.contains("127.0.0.1") || place.contains("localhost"),
            "the benchmark sends only to loopback addresses, not {place}"
        );
    }
    let scratch = Scratch::create(&args.database_url, "bench_notify").await?;
    let outcome = measure(&args, &scratch.url).await;
    scratch.drop().await?;
    outcome
}

async fn measure(args: &Args, url: &str) -> anyhow::Result<()> {
    let store = platform::db::connect(url, 8).await?;
    platform::db::migrate_event_store(&store).await?;
    let log = platform::db::connect_in_schema(url, platform::db::NOTIFIER_SCHEMA, 4).await?;
    platform::db::migrate_notifier(&log).await?;
    // Everything seeded is news to this notifier.
    sqlx::query(
        "INSERT INTO progress (since_position, since_snapshot) VALUES (0, pg_current_snapshot())",
    )
    .execute(&log)
    .await?;

    println!("boxoffice bench: notify");
    println!(
        "  seeding {} confirmed bookings of {} customers (sealed contact data) in a scratch database",
        args.bookings, args.customers
    );
    seed(&store, args.bookings, args.customers).await?;
    let topic = TopicSpec {
        name: format!("bench.notify.{}", Uuid::new_v4().simple()),
        partitions: 6,
        replication: 1,
    };
    let facts = publish(&store, &args.kafka_brokers, &topic).await?;
    println!("  published {facts} facts on {}", topic.name);

    let mut config = notifier::Config::new(url, &args.smtp_url, &args.kafka_brokers, topic.clone());
    config.addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.group = format!("bench-notifier-{}", Uuid::new_v4().simple());
    if let Some(concurrency) = args.concurrency {
        config.send.concurrency = concurrency;
        config.smtp.pool_size = u32::try_from(concurrency)?;
    }
    let concurrency = config.send.concurrency;
    println!(
        "  target: notifier ({concurrency} in flight, SMTP pool {}), from the topic to 250 OK recorded",
        config.smtp.pool_size
    );
    println!("  baseline: a bare lettre send loop, the same messages, {concurrency} in flight, before and after\n");

    let before = baseline(&config, args.bookings).await?;
    let (taken, elapsed) = run_notifier(config.clone(), &log, args).await?;
    let after = baseline(&config, args.bookings).await?;

    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64().max(f64::EPSILON);
    let target = rate(args.bookings, elapsed);
    println!(
        "  notifier                 {target:>8.0} messages/s  ({} in {:.2} s; all taken in after {:.2} s)",
        args.bookings,
        elapsed.as_secs_f64(),
        taken.as_secs_f64()
    );
    for (when, took) in [("before", before), ("after", after)] {
        println!(
            "  baseline (lettre loop)   {:>8.0} messages/s  ({when}: {} in {:.2} s)",
            rate(args.bookings, took),
            args.bookings,
            took.as_secs_f64()
        );
    }
    let base = (rate(args.bookings, before) + rate(args.bookings, after)) / 2.0;
    println!(
        "\nsummary\n  notifier {target:.0} messages/s; baseline {base:.0} messages/s (mean of the two); ratio {:.2}",
        target / base
    );
    Ok(())
}

/// One event, and `bookings` streams of a request (with sealed contact) and a
/// confirmation, in the store.
async fn seed(store: &PgPool, bookings: usize, customers: usize) -> anyhow::Result<()> {
    let event_id = Uuid::new_v4();
    let starts = Utc::now() + chrono::Duration::days(30);
    let scheduled = json!({"EventScheduled": {
        "name": "Bench night", "location_id": Uuid::new_v4(), "location_name": "Olympia",
        "hall": "Main", "starts_at": starts, "ends_at": starts + chrono::Duration::hours(3),
        "price_cents": 2500, "currency": "EUR", "capacity": 100_000,
    }});
    // The shape the notifier reads, checked here rather than by a failed run.
    serde_json::from_value::<domain::event::EventFact>(scheduled.clone())?;
    let metadata = EventMetadata {
        recorded_at: Some(Utc::now().to_rfc3339()),
        ..EventMetadata::default()
    }
    .to_value();
    let mut rows: Vec<(String, String, i64, String, String, serde_json::Value)> = vec![(
        "event".into(),
        event_id.to_string(),
        1,
        "EventScheduled".into(),
        domain::FACT_VERSION.into(),
        scheduled,
    )];
    let mut keys = Vec::with_capacity(customers);
    for n in 0..customers.max(1) {
        let user = format!("bench-{n}");
        keys.push((
            user.clone(),
            platform::personal::current_key(store, &user).await?,
        ));
    }
    for n in 0..bookings {
        let booking_id = Uuid::new_v4();
        let (user, key) = &keys[n % keys.len()];
        let contact = Contact {
            name: Some(format!("Customer {n}")),
            email: Some(format!("customer{n}@example.com")),
        };
        let bound = platform::personal::associated_data(&booking_id.to_string(), user);
        let requested = BookingFact::BookingRequested {
            event_id,
            user_id: user.clone(),
            seats: 2,
            unit_price_cents: 2500,
            amount_cents: 5000,
            currency: Currency::parse("EUR").map_err(anyhow::Error::msg)?,
            payment_method: Some("pm_bench".into()),
            contact: Some(platform::personal::seal(key, &bound, &contact)),
        };
        for (sequence, fact) in [(1, requested), (2, BookingFact::BookingConfirmed)] {
            let event_type = cqrs_es::DomainEvent::event_type(&fact);
            let version = cqrs_es::DomainEvent::event_version(&fact);
            rows.push((
                "booking".into(),
                booking_id.to_string(),
                sequence,
                event_type,
                version,
                serde_json::to_value(fact)?,
            ));
        }
    }
    for chunk in rows.chunks(2000) {
        let mut tx = store.begin().await?;
        for (aggregate_type, id, sequence, event_type, version, payload) in chunk {
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(aggregate_type)
            .bind(id)
            .bind(sequence)
            .bind(event_type)
            .bind(version)
            .bind(payload)
            .bind(&metadata)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// Publishes every stored fact on `topic` as the relay does (key: the aggregate id).
async fn publish(store: &PgPool, brokers: &str, topic: &TopicSpec) -> anyhow::Result<usize> {
    ensure_topic(brokers, &KafkaSecurity::PLAINTEXT, topic).await?;
    let events: Vec<WireEvent> = sqlx::query_as(
        "SELECT position, aggregate_type, aggregate_id, sequence, event_type, event_version,
                payload, metadata FROM events ORDER BY position",
    )
    .fetch_all(store)
    .await?;
    let producer: FutureProducer<KafkaLogs> = client_config(brokers, &KafkaSecurity::PLAINTEXT)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create_with_context(KafkaLogs)?;
    let sends = events.iter().map(|event| {
        let producer = &producer;
        async move {
            let value = serde_json::to_vec(event)?;
            producer
                .send(
                    FutureRecord::to(&topic.name)
                        .key(&event.aggregate_id)
                        .payload(&value),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(err, _)| anyhow::anyhow!("cannot publish: {err}"))?;
            anyhow::Ok(())
        }
    });
    let results: Vec<_> = futures::stream::iter(sends).buffered(256).collect().await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(events.len())
}

/// Runs a notifier until every booking's message is recorded as sent. Returns when
/// every fact was taken in, and when every message was sent, from its start.
async fn run_notifier(
    config: notifier::Config,
    log: &PgPool,
    args: &Args,
) -> anyhow::Result<(Duration, Duration)> {
    let app = notifier::Application::build(config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(app.run(listener, shutdown.clone()));
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let mut taken = None;
    let outcome = loop {
        let (rows, sent): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE status = 'sent') FROM notifications",
        )
        .fetch_one(log)
        .await?;
        if taken.is_none() && rows as usize == args.bookings {
            taken = Some(started.elapsed());
        }
        if sent as usize == args.bookings {
            break Ok((taken.unwrap_or_default(), started.elapsed()));
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!(
                "only {sent} of {} sent after {} s",
                args.bookings,
                args.timeout_secs
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    shutdown.cancel();
    running.await??;
    outcome
}

/// Sends `count` messages like the notifier's (a confirmation with its calendar file)
/// through lettre's pooled transport, `concurrency` at a time. Returns how long it took.
async fn baseline(config: &notifier::Config, count: usize) -> anyhow::Result<Duration> {
    let transport =
        notifier::smtp::transport(&config.smtp.url, config.smtp.timeout, config.smtp.pool_size)?;
    let domain = config.mail_from.email.domain().to_owned();
    let view = notifier::mail::View {
        kind: notifier::mail::Kind::BookingConfirmed,
        customer: "Customer".into(),
        booking_id: Uuid::new_v4(),
        event_name: "Bench night".into(),
        venue: "Olympia".into(),
        hall: "Main".into(),
        starts_at: Utc::now(),
        ends_at: Utc::now(),
        seats: 2,
        amount_cents: 5000,
        refunded_cents: 0,
        currency: "EUR".into(),
        reason: None,
        organiser_note: None,
        was_confirmed: true,
        recorded_at: Utc::now(),
    };
    let rendered = view.render(&domain)?;
    let started = Instant::now();
    let failures = futures::stream::iter(0..count)
        .map(|n| {
            let (transport, rendered, from) = (&transport, rendered.clone(), &config.mail_from);
            let domain = &domain;
            async move {
                let to = format!("baseline{n}@example.com").parse().ok()?;
                let id = notifier::mail::message_id(Uuid::new_v4(), 2, domain);
                let message = notifier::mail::message(from, to, id, rendered).ok()?;
                match notifier::smtp::send(transport, message).await {
                    notifier::smtp::Outcome::Accepted => None,
                    other => Some(other),
                }
            }
        })
        .buffer_unordered(config.send.concurrency)
        .filter_map(|failed| async move { failed })
        .collect::<Vec<_>>()
        .await;
    anyhow::ensure!(
        failures.is_empty(),
        "the baseline's sends failed: {:?}",
        &failures[..failures.len().min(3)]
    );
    Ok(started.elapsed())
}
