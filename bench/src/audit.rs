//! The `audit` scenario, on a scratch database seeded with `--events` events:
//!
//! - export (query-api's NDJSON export, every page) and verify (the whole walk of the
//!   hash chain and the append receipts) in events/s, next to streaming the same rows
//!   out of the store;
//! - append throughput with the hash chain against without it (the chain's trigger
//!   disabled; the receipts are written by the relay, off the append path), in the
//!   same run, three ways:
//!   - through command-api (started in this process on the scratch database, without
//!     relay or sagas), `--http-clients` clients booking seats (every booking a new
//!     stream: no predecessor to look up);
//!   - the same clients each adding halls to a location of its own (every append looks
//!     its predecessor's hash up, the chain's dearest case);
//!   - raw: `--clients` connections each appending one event per statement to a stream
//!     of its own, through the statement command-api uses, with nothing else around
//!     (the chain's share of the database's own work).
//!
//!   Phases are short, many, and alternate (with, without, without, with, ...), each
//!   after a `CHECKPOINT`, so drift on a shared machine hits both alike; each round
//!   compares its two phases, and the median of the rounds' costs is reported next to
//!   the overall rates.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use domain::metadata::EventMetadata;
use platform::auth::{Jwt, Role};
use query_api::audit::export::Export;
use query_api::audit::verify;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bookings::{create_event, drive, measure_bookings, post, Load};
use crate::rebuild;
use crate::report::Measured;
use crate::scratch::Scratch;

/// Options of the scenario.
#[derive(clap::Args)]
pub struct Args {
    /// Events in the store to export and verify.
    #[arg(long, default_value_t = 100_000)]
    events: i64,
    /// Connections appending in the raw append phases.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Clients of command-api in its append phases.
    #[arg(long, default_value_t = 32)]
    http_clients: usize,
    /// Seconds per append phase.
    #[arg(long, default_value_t = 4)]
    seconds: u64,
    /// Pairs of append phases (one with the chain, one without each).
    #[arg(long, default_value_t = 6)]
    rounds: usize,
    /// The stack's database; the scratch database is created on the same server.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

/// Runs the scenario and prints the results.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let scratch = Scratch::create(&args.database_url, "bench_audit").await?;
    let outcome = measure(&args, &scratch.url).await;
    scratch.drop().await?;
    outcome
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(f64::EPSILON)
}

async fn measure(args: &Args, url: &str) -> anyhow::Result<()> {
    let pool = platform::db::connect(url, args.clients as u32 + 2).await?;
    platform::db::migrate_event_store(&pool).await?;
    println!("boxoffice bench: audit");
    println!(
        "  seeding {} booking events in a scratch database (through the chain triggers)",
        args.events
    );
    rebuild::seed(&pool, args.events / 2).await?;
    sqlx::query("VACUUM ANALYZE events").execute(&pool).await?;

    let before = rebuild::stream(&pool).await?;
    let started = Instant::now();
    let mut export = Export::start(pool.clone(), 0, None).await?;
    let (mut exported, mut bytes) = (0u64, 0usize);
    while let Some(page) = export.next_page().await? {
        exported += page.iter().filter(|b| **b == b'\n').count() as u64;
        bytes += page.len();
    }
    let export_time = started.elapsed();
    anyhow::ensure!(
        exported == before.0,
        "exported {exported} of {} events",
        before.0
    );

    let started = Instant::now();
    let report = verify::verify(&pool, &|_| {}).await?;
    let verify_time = started.elapsed();
    anyhow::ensure!(report.ok, "verify found problems: {:?}", report.problems);
    let after = rebuild::stream(&pool).await?;

    println!(
        "  export (NDJSON)            {:>9.0} events/s  ({exported} events, {:.1} MB, in {:.2} s)",
        rate(exported, export_time),
        bytes as f64 / 1e6,
        export_time.as_secs_f64()
    );
    println!(
        "  verify (chain + receipts)  {:>9.0} events/s  ({} events, {} receipts and outbox rows, in {:.2} s)",
        rate(report.checked_events, verify_time),
        report.checked_events,
        report.checked_receipts,
        verify_time.as_secs_f64()
    );
    let baseline = (rate(before.0, before.1) + rate(after.0, after.1)) / 2.0;
    println!(
        "  baseline (streamed SELECT) {baseline:>9.0} rows/s    (mean of one before and one after)"
    );

    // Appends, with and without the chain.
    sqlx::query("ALTER TABLE events ALTER COLUMN hash DROP NOT NULL")
        .execute(&pool)
        .await?;
    let seconds = Duration::from_secs(args.seconds);
    let api = CommandApi::start(url).await?;
    println!(
        "\n  appends through command-api: {} clients, {} s per phase after 2 s of warm-up",
        args.http_clients, args.seconds
    );
    let event = create_event(&api.http, &api.base, &api.jwt).await?;
    let bookings = compare(&pool, args.rounds, "bookings (new streams)", || {
        measure_bookings(
            &api.http,
            &api.base,
            &api.jwt,
            &event,
            Load {
                clients: args.http_clients,
                warmup: Duration::from_secs(2),
                duration: seconds,
            },
            false,
        )
    })
    .await?;
    let halls = compare(&pool, args.rounds, "halls (streams growing)", || {
        add_halls(&api, args.http_clients, seconds)
    })
    .await?;
    api.stop().await?;

    println!(
        "\n  raw appends: {} connections, one event per statement, {} s per phase",
        args.clients, args.seconds
    );
    let raw = compare(&pool, args.rounds, "raw statement", || async {
        appends(&pool, args.clients, seconds).await
    })
    .await?;

    println!(
        "\nsummary\n  export {:.0} events/s, verify {:.0} events/s; baseline streamed SELECT {baseline:.0} rows/s",
        rate(exported, export_time),
        rate(report.checked_events, verify_time),
    );
    println!("  appends/s with the chain and without it (all phases), and what the chain costs:");
    println!(
        "    {:<24} {:>7}  {:>7}  {:>7}  {:>7}  rounds (sorted)",
        "", "with", "without", "overall", "median"
    );
    for (label, c) in [
        ("command-api, bookings", bookings),
        ("command-api, halls", halls),
        ("raw statement", raw),
    ] {
        let rounds: Vec<String> = c
            .round_costs
            .iter()
            .map(|cost| format!("{:.1}", cost * 100.0))
            .collect();
        println!(
            "    {label:<24} {:>7.0}  {:>7.0}  {:>6.1}%  {:>6.1}%  {}",
            c.with,
            c.without,
            (1.0 - c.with / c.without) * 100.0,
            c.median_cost() * 100.0,
            rounds.join(" ")
        );
    }
    Ok(())
}

/// What the chain cost in one comparison: the rates with and without it over all
/// phases, and the median of the rounds' own costs.
struct Comparison {
    with: f64,
    without: f64,
    /// Each round's cost, `1 - with / without`, sorted.
    round_costs: Vec<f64>,
}

impl Comparison {
    fn median_cost(&self) -> f64 {
        let costs = &self.round_costs;
        match costs.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => costs[n / 2],
            n => (costs[n / 2 - 1] + costs[n / 2]) / 2.0,
        }
    }
}

/// Runs `measure` in `rounds` pairs of phases, one with the chain's trigger and one
/// without, alternating which goes first.
///
/// The machines this runs on are shared: a phase can lose a third of its speed to a
/// neighbour or to a checkpoint that happens to fall in it. So every phase starts
/// right after a `CHECKPOINT` (each pays for the same fresh full-page writes), the
/// phases are short and many, and each round's cost compares two adjacent phases;
/// the median of those costs is the figure that a single bad phase cannot move.
async fn compare<M, Fut>(
    pool: &PgPool,
    rounds: usize,
    label: &str,
    mut measure: M,
) -> anyhow::Result<Comparison>
where
    M: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Measured>>,
{
    let (mut with, mut without) = (Measured::new(), Measured::new());
    let mut round_costs = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        let mut rates = [0.0; 2];
        for chained in order {
            let toggle = if chained { "ENABLE" } else { "DISABLE" };
            sqlx::query(&format!("ALTER TABLE events {toggle} TRIGGER events_chain"))
                .execute(pool)
                .await?;
            sqlx::query("CHECKPOINT").execute(pool).await?;
            let measured = measure().await?;
            let phase = if chained {
                "with chain"
            } else {
                "without chain"
            };
            println!("    {label:<24} {}", measured.line(phase));
            rates[usize::from(chained)] = measured.rate();
            let total = if chained { &mut with } else { &mut without };
            total.merge(&measured);
            total.elapsed += measured.elapsed;
        }
        round_costs.push(1.0 - rates[1] / rates[0]);
    }
    sqlx::query("ALTER TABLE events ENABLE TRIGGER events_chain")
        .execute(pool)
        .await?;
    round_costs.sort_by(f64::total_cmp);
    Ok(Comparison {
        with: with.rate(),
        without: without.rate(),
        round_costs,
    })
}

/// command-api in this process on the scratch database: appends only (no relay, no
/// sagas, no broker).
struct CommandApi {
    base: String,
    http: reqwest::Client,
    jwt: Jwt,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    gateway: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl CommandApi {
    async fn start(database_url: &str) -> anyhow::Result<Self> {
        let secret = Uuid::new_v4().to_string();
        let shutdown = CancellationToken::new();
        // A booking request exchanges its card token at the payment gateway: one of its
        // own on the scratch database.
        let payments =
            payment_gateway::Application::build(payment_gateway::Config::new(database_url)).await?;
        let payments_listener =
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let payments_url = format!("http://{}", payments_listener.local_addr()?);
        let gateway = tokio::spawn(payments.run(payments_listener, shutdown.clone()));
        let mut config = command_api::Config::new(database_url, &secret);
        config.payment.url = payments_url;
        config.addr = SocketAddr::from(([127, 0, 0, 1], 0));
        // Appends only: no relay (and so no broker), no sagas.
        config.relay.enabled = false;
        config.saga.enabled = false;
        let app = command_api::Application::build(config).await?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let base = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(app.run(listener, shutdown.clone()));
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            base,
            http,
            jwt: Jwt::new(&secret),
            shutdown,
            server,
            gateway,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.server.await.context("command-api panicked")??;
        self.gateway.await.context("the payment gateway panicked")?
    }
}

/// `clients` admins, each adding halls to a location of its own for `length` (after
/// 2 s of warm-up): every append extends a stream that already has events.
async fn add_halls(api: &CommandApi, clients: usize, length: Duration) -> anyhow::Result<Measured> {
    let admin = api
        .jwt
        .issue("bench-admin", Role::Admin, Duration::from_secs(3600));
    let mut locations = Vec::with_capacity(clients);
    for client in 0..clients {
        let id = post(
            &api.http,
            &format!("{}/v1/locations", api.base),
            &admin,
            &json!({"name": format!("Hall bench {client}"), "address": "1 Load Street", "country": "FR",
                    "halls": [{"name": "Hall 0", "capacity": 100}]}),
        )
        .await?;
        locations.push(Arc::new(format!("{}/v1/locations/{id}/halls", api.base)));
    }
    drive(clients, Duration::from_secs(2), length, |client| {
        let (http, url, token) = (api.http.clone(), locations[client].clone(), admin.clone());
        let mut hall = 0u64;
        move || {
            hall += 1;
            let request = http
                .post(url.as_str())
                .bearer_auth(&token)
                .json(&json!({"name": format!("Hall {hall}"), "capacity": 100}))
                .send();
            async move {
                let response = request.await?;
                if response.status() != reqwest::StatusCode::CREATED {
                    bail!("answered {}", response.status());
                }
                Ok(())
            }
        }
    })
    .await
}

/// Appends for `length` from `clients` connections; how many, in how long.
async fn appends(pool: &PgPool, clients: usize, length: Duration) -> anyhow::Result<Measured> {
    let deadline = Instant::now() + length;
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let stream = format!("bench-{}", Uuid::new_v4());
                let mut measured = Measured::new();
                let mut sequence = 0i64;
                while Instant::now() < deadline {
                    sequence += 1;
                    // The size of a real fact and its metadata.
                    let payload = json!({"HallAdded": {"hall": {"name": format!("Hall {sequence}"), "capacity": 250}}});
                    let metadata = EventMetadata {
                        user_id: Some("bench-admin".into()),
                        correlation_id: Some(Uuid::new_v4().to_string()),
                        causation_id: Some(Uuid::new_v4().to_string()),
                        recorded_at: Some("2030-01-01T00:00:00.000000Z".into()),
                        ..EventMetadata::default()
                    }
                    .to_value();
                    let began = Instant::now();
                    sqlx::query(command_api::append::APPEND_SQL)
                        .bind(["location"])
                        .bind([&stream])
                        .bind([sequence])
                        .bind(["HallAdded"])
                        .bind(["1.0"])
                        .bind([payload])
                        .bind([metadata])
                        // No sagas or keys: a location's fact starts none.
                        .bind(json!([]))
                        .bind(json!([]))
                        .bind(json!([]))
                        .bind(json!([]))
                        .bind(json!([]))
                        .execute(&pool)
                        .await?;
                    measured.record(began.elapsed());
                }
                anyhow::Ok(measured)
            })
        })
        .collect();
    let mut total = Measured::new();
    for task in tasks {
        total.merge(&task.await??);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}
