//! The `hot-event` scenario: C clients race to book one event of S seats. Each client
//! books 1 to 4 seats, waits until the query API shows its booking confirmed or
//! rejected, and books again. Prints bookings/s to a final status, latency percentiles
//! (from the POST to the final status seen), and checks nothing was oversold.
//!
//! Baseline, in the same run: the same clients, each booking an event of its own (C
//! events of S seats), so the same path without the one aggregate they all contend for.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use platform::auth::{Jwt, Role};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::report::Measured;

/// Options of the scenario.
#[derive(clap::Args)]
pub struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seats of the hot event.
    #[arg(long, default_value_t = 5000)]
    seats: u32,
    /// Seconds each phase runs.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// How often a client looks at its booking, in milliseconds.
    #[arg(long, default_value_t = 10)]
    poll_ms: u64,
    /// command-api's address.
    #[arg(long, env = "COMMAND_API_ADDR", default_value = "127.0.0.1:8080")]
    command_api: String,
    /// query-api's address.
    #[arg(long, env = "QUERY_API_ADDR", default_value = "127.0.0.1:8081")]
    query_api: String,
    /// The secret the stack signs tokens with.
    #[arg(long, env = "BOXOFFICE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
}

/// What one phase did.
struct Phase {
    measured: Measured,
    confirmed: u64,
    rejected: u64,
    /// Seats of the confirmed bookings, per event.
    confirmed_seats: Vec<Arc<AtomicI64>>,
}

/// Runs the scenario and prints the results.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(30))
        .build()?;
    let jwt = Jwt::new(&args.jwt_secret);
    let command = format!("http://{}", args.command_api);
    let query = format!("http://{}", args.query_api);
    let duration = Duration::from_secs(args.seconds);
    let poll = Duration::from_millis(args.poll_ms);

    println!("boxoffice bench: hot event");
    println!(
        "  target: {} clients book 1-4 seats of ONE event of {} seats, each waiting for its booking's final status (query API, polled every {} ms), for {} s",
        args.clients, args.seats, args.poll_ms, args.seconds
    );
    println!(
        "  baseline: the same clients, each booking an event of its own, for {} s\n",
        args.seconds
    );

    let hot = create_events(&http, &command, &jwt, 1, args.seats).await?;
    let hot_phase = phase(
        &http,
        &command,
        &query,
        &jwt,
        &hot,
        args.clients,
        duration,
        poll,
    )
    .await?;
    let oversold = check(
        &http,
        &query,
        &jwt,
        &hot[0],
        args.seats,
        &hot_phase.confirmed_seats[0],
    )
    .await?;

    let spread = create_events(&http, &command, &jwt, args.clients, args.seats).await?;
    let spread_phase = phase(
        &http,
        &command,
        &query,
        &jwt,
        &spread,
        args.clients,
        duration,
        poll,
    )
    .await?;

    for (label, phase) in [
        ("hot event (one aggregate)", &hot_phase),
        ("baseline (one event each)", &spread_phase),
    ] {
        println!("  {}", phase.measured.line(label));
        println!(
            "  {:<28} {} confirmed, {} rejected",
            "", phase.confirmed, phase.rejected
        );
    }
    println!("  hot event: {oversold}");
    println!(
        "\nsummary\n  hot event {:.0} bookings/s to a final status, p99 {:.1} ms; baseline {:.0}/s, p99 {:.1} ms; ratio {:.2}; oversold: none",
        hot_phase.measured.rate(),
        hot_phase.measured.ms(0.99),
        spread_phase.measured.rate(),
        spread_phase.measured.ms(0.99),
        hot_phase.measured.rate() / spread_phase.measured.rate().max(f64::EPSILON)
    );
    Ok(())
}

async fn create_events(
    http: &reqwest::Client,
    base: &str,
    jwt: &Jwt,
    count: usize,
    seats: u32,
) -> anyhow::Result<Vec<String>> {
    let admin = jwt.issue("bench-admin", Role::Admin, Duration::from_secs(3600));
    let location = post(
        http,
        &format!("{base}/v1/locations"),
        &admin,
        &json!({"name": "Hot Arena", "address": "1 Rush Street", "country": "FR",
                "halls": [{"name": "Main", "capacity": seats}]}),
    )
    .await?["id"]
        .as_str()
        .context("no location id")?
        .to_owned();
    let starts = chrono::Utc::now() + chrono::Duration::days(30);
    let mut events = Vec::with_capacity(count);
    for i in 0..count {
        let event = post(
            http,
            &format!("{base}/v1/events"),
            &admin,
            &json!({"name": format!("Hot night {i}"), "location_id": location, "hall": "Main",
                    "starts_at": starts.to_rfc3339(), "ends_at": (starts + chrono::Duration::hours(2)).to_rfc3339(),
                    "price_cents": 4500, "currency": "EUR"}),
        )
        .await?;
        events.push(event["id"].as_str().context("no event id")?.to_owned());
    }
    Ok(events)
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let response = http.post(url).bearer_auth(token).json(body).send().await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{url} answered {status}: {body}");
    }
    Ok(body)
}

/// `clients` clients book `events` (client i books event i mod n) for `duration`.
#[allow(clippy::too_many_arguments)]
async fn phase(
    http: &reqwest::Client,
    command: &str,
    query: &str,
    jwt: &Jwt,
    events: &[String],
    clients: usize,
    duration: Duration,
    poll: Duration,
) -> anyhow::Result<Phase> {
    let confirmed_seats: Vec<Arc<AtomicI64>> =
        events.iter().map(|_| Arc::new(AtomicI64::new(0))).collect();
    let end = Instant::now() + duration;
    let run = Uuid::new_v4().simple().to_string();
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let event = events[client % events.len()].clone();
        let tally = confirmed_seats[client % events.len()].clone();
        let mut customers =
            crate::bookings::Customers::new(jwt, format!("hot-{run}-{client}"), false);
        let (http, book, query) = (
            http.clone(),
            format!("{command}/v1/events/{event}/bookings"),
            query.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut measured = Measured::new();
            let (mut confirmed, mut rejected) = (0u64, 0u64);
            let mut n = client as u32;
            while Instant::now() < end {
                n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let seats = 1 + (n >> 16) % 4;
                let token = customers.next().to_owned();
                let started = Instant::now();
                let outcome = async {
                    let booked = post(
                        &http,
                        &book,
                        &token,
                        &json!({"seats": seats, "card_token": "tok_visa"}),
                    )
                    .await?;
                    let id = booked["id"].as_str().context("no booking id")?.to_owned();
                    let url = format!("{query}/v1/bookings/{id}");
                    loop {
                        let shown = http.get(&url).bearer_auth(&token).send().await?;
                        if shown.status().is_success() {
                            let body: Value = shown.json().await?;
                            match body["status"].as_str() {
                                Some("confirmed") => return anyhow::Ok(true),
                                Some("rejected") => return anyhow::Ok(false),
                                _ => {}
                            }
                        }
                        ensure!(
                            started.elapsed() < Duration::from_secs(60),
                            "no final status after 60 s"
                        );
                        tokio::time::sleep(poll).await;
                    }
                }
                .await;
                match outcome {
                    Ok(true) => {
                        measured.record(started.elapsed());
                        confirmed += 1;
                        tally.fetch_add(i64::from(seats), Ordering::Relaxed);
                    }
                    Ok(false) => {
                        measured.record(started.elapsed());
                        rejected += 1;
                    }
                    Err(err) => {
                        measured.errors += 1;
                        eprintln!("  client {client}: {err:#}");
                    }
                }
            }
            (measured, confirmed, rejected)
        }));
    }
    let mut total = Measured::new();
    let (mut confirmed, mut rejected) = (0, 0);
    for task in tasks {
        let (measured, c, r) = task.await?;
        total.merge(&measured);
        confirmed += c;
        rejected += r;
    }
    total.elapsed = duration;
    Ok(Phase {
        measured: total,
        confirmed,
        rejected,
        confirmed_seats,
    })
}

/// Nothing oversold: no seat held once every booking is final, sold seats are exactly
/// the confirmed bookings' seats, and no more than the capacity.
async fn check(
    http: &reqwest::Client,
    query: &str,
    jwt: &Jwt,
    event: &str,
    seats: u32,
    confirmed: &AtomicI64,
) -> anyhow::Result<String> {
    let token = jwt.issue("bench-check", Role::Customer, Duration::from_secs(600));
    let shown: Value = http
        .get(format!("{query}/v1/events/{event}"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    let (held, sold) = (
        shown["seats_held"].as_i64().unwrap_or(-1),
        shown["seats_sold"].as_i64().unwrap_or(-1),
    );
    let confirmed = confirmed.load(Ordering::Relaxed);
    ensure!(
        held == 0,
        "seats still held after every booking is final: {shown}"
    );
    ensure!(
        sold <= i64::from(seats),
        "OVERSOLD: {sold} of {seats} seats sold"
    );
    ensure!(
        sold == confirmed,
        "sold {sold} seats, but confirmed bookings hold {confirmed}"
    );
    Ok(format!(
        "{sold} of {seats} seats sold, exactly the confirmed bookings' seats, none held"
    ))
}
