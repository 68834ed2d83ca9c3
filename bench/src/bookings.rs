//! The `bookings` scenario: booking requests against command-api, next to the raw commit
//! rate of one-row INSERTs into an events-shaped table with as many connections.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use domain::metadata::EventMetadata;
use platform::auth::{Claims, Jwt, Role};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

use crate::report::Measured;

/// Options of the scenario.
#[derive(clap::Args)]
pub struct Args {
    /// Concurrent clients, comma separated: one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "8,32")]
    clients: Vec<usize>,
    /// Seconds measured per run.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds of load before each run's measurement starts (not counted).
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// command-api's address, `host:port`.
    #[arg(long, env = "COMMAND_API_ADDR", default_value = "127.0.0.1:8080")]
    command_api: String,
    /// The event store's database (the baseline table is created and dropped there).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// The secret the stack signs tokens with.
    #[arg(long, env = "BOXOFFICE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Also measure customers whose tokens carry contact data (`name`, `email`), which
    /// each booking seals under its user's key: a second run, after the first has
    /// drained, to set the encryption's cost beside the figure without it.
    #[arg(long)]
    contact: bool,
}

/// Runs the scenario and prints the table.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let base = format!("http://{}", args.command_api);
    let jwt = Jwt::new(&args.jwt_secret);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;
    let event = create_event(&http, &base, &jwt).await?;
    let warmup = Duration::from_secs(args.warmup);
    let duration = Duration::from_secs(args.seconds);

    println!("boxoffice bench: bookings");
    println!("  target: POST {base}/v1/events/{event}/bookings, 1 seat; each customer books {BOOKINGS_PER_CUSTOMER} times, then a new one");
    println!(
        "  (so the per-customer rate limit and held-seat cap run on every request and refuse none)"
    );
    println!("  baseline: one-row INSERT + COMMIT into an events-shaped table, one connection per client");
    println!(
        "  each run: {}s warm-up, then {}s measured\n",
        args.warmup, args.seconds
    );
    let load = |clients| Load {
        clients,
        warmup,
        duration,
    };
    let mut summary = Vec::new();
    for &clients in &args.clients {
        let bookings = measure_bookings(&http, &base, &jwt, &event, load(clients), false).await?;
        // The stack goes on working after the last answer (the relay, the projector, and
        // the sagas when they run); the baseline must not share the machine with that.
        let mut drained = wait_until_idle(&args.database_url).await?;
        if args.contact {
            let sealed = measure_bookings(&http, &base, &jwt, &event, load(clients), true).await?;
            println!("clients = {clients}, customers with contact data (sealed per user)");
            println!("  {}", sealed.line("bookings with contact"));
            println!(
                "  {:.0}/s without contact data just before: {:+.1}%",
                bookings.rate(),
                100.0 * (sealed.rate() / bookings.rate().max(f64::EPSILON) - 1.0)
            );
            drained = wait_until_idle(&args.database_url).await?;
        }
        let baseline = measure_inserts(&args.database_url, clients, warmup, duration).await?;
        let ratio = bookings.rate() / baseline.rate().max(f64::EPSILON);
        println!("clients = {clients}");
        println!("  {}", bookings.line("bookings (command-api)"));
        println!("  {}", baseline.line("baseline (raw INSERT)"));
        println!("  ratio bookings/baseline: {ratio:.2}");
        println!(
            "  (the outbox and the sagas drained {:.1} s after the last booking; the baseline ran after that)\n",
            drained.as_secs_f64()
        );
        summary.push((
            clients,
            bookings.rate(),
            bookings.ms(0.99),
            baseline.rate(),
            ratio,
        ));
    }
    println!("summary");
    println!(
        "  {:>7}  {:>11}  {:>12}  {:>11}  {:>6}",
        "clients", "bookings/s", "p99 ms", "inserts/s", "ratio"
    );
    for (clients, rate, p99, baseline, ratio) in summary {
        println!("  {clients:>7}  {rate:>11.0}  {p99:>12.2}  {baseline:>11.0}  {ratio:>6.2}");
    }
    Ok(())
}

/// A location with one big hall and an event in it, so no run sells out. Returns the
/// event's id.
pub async fn create_event(http: &reqwest::Client, base: &str, jwt: &Jwt) -> anyhow::Result<String> {
    let admin = jwt.issue("bench-admin", Role::Admin, Duration::from_secs(3600));
    let location = post(
        http,
        &format!("{base}/v1/locations"),
        &admin,
        &json!({"name": "Bench Arena", "address": "1 Load Street", "country": "FR",
                "halls": [{"name": "Main", "capacity": 1_000_000}]}),
    )
    .await
    .context("cannot create the bench location: is the stack running (scripts/up)?")?;
    let starts = chrono::Utc::now() + chrono::Duration::days(60);
    let event = post(
        http,
        &format!("{base}/v1/events"),
        &admin,
        &json!({"name": "Bench night", "location_id": location, "hall": "Main",
                "starts_at": starts.to_rfc3339(),
                "ends_at": (starts + chrono::Duration::hours(3)).to_rfc3339(),
                "price_cents": 1000, "currency": "EUR"}),
    )
    .await?;
    Ok(event)
}

pub(crate) async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> anyhow::Result<String> {
    let response = http.post(url).bearer_auth(token).json(body).send().await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{url} answered {status}: {body}");
    }
    Ok(body["id"].as_str().unwrap_or_default().to_owned())
}

/// Bookings one bench customer sends before the next takes over.
const BOOKINGS_PER_CUSTOMER: u64 = 4;

/// The customers of one bench client, as the fairness limits expect customers to be:
/// each sends [`BOOKINGS_PER_CUSTOMER`] bookings of a seat or few, then a new one takes
/// over. So every request goes through the per-customer rate limit (a burst of 20) and
/// the held-seat cap (10 a customer and event), and none is refused by them: the figure
/// includes their cost, not their refusals.
pub(crate) struct Customers {
    jwt: Jwt,
    prefix: String,
    contact: bool,
    sent: u64,
    token: String,
}

impl Customers {
    pub(crate) fn new(jwt: &Jwt, prefix: String, contact: bool) -> Self {
        Self {
            jwt: jwt.clone(),
            prefix,
            contact,
            sent: 0,
            token: String::new(),
        }
    }

    /// The token for the next booking.
    pub(crate) fn next(&mut self) -> &str {
        if self.sent.is_multiple_of(BOOKINGS_PER_CUSTOMER) {
            let user = format!("{}-{}", self.prefix, self.sent / BOOKINGS_PER_CUSTOMER);
            let mut claims = Claims::new(&user, Role::Customer, Duration::from_secs(3600));
            if self.contact {
                claims.name = Some(format!("Bench Customer {user}"));
                claims.email = Some(format!("{user}@bench.example"));
            }
            self.token = self.jwt.sign(claims);
        }
        self.sent += 1;
        &self.token
    }
}

/// How much load a measurement puts on the stack, for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// Concurrent clients.
    pub clients: usize,
    /// Load before the measurement starts (not counted).
    pub warmup: Duration,
    /// How long it is measured.
    pub duration: Duration,
}

pub(crate) async fn measure_bookings(
    http: &reqwest::Client,
    base: &str,
    jwt: &Jwt,
    event: &str,
    load: Load,
    contact: bool,
) -> anyhow::Result<Measured> {
    let Load {
        clients,
        warmup,
        duration,
    } = load;
    let url = Arc::new(format!("{base}/v1/events/{event}/bookings"));
    let run = Uuid::new_v4().simple().to_string();
    drive(clients, warmup, duration, |client| {
        let http = http.clone();
        let url = url.clone();
        let mut customers = Customers::new(jwt, format!("bench-{run}-{client}"), contact);
        move || {
            let request = http
                .post(url.as_str())
                .bearer_auth(customers.next())
                .json(&json!({"seats": 1, "card_token": "tok_bench"}))
                .send();
            async move {
                let response = request.await?;
                if response.status() != reqwest::StatusCode::ACCEPTED {
                    bail!("answered {}", response.status());
                }
                Ok(())
            }
        }
    })
    .await
}

/// Waits until the outbox is empty and the booking sagas are finished, or stand still
/// (no saga worker runs: `BOXOFFICE_SAGAS_ENABLED=false`); how long that took. Gives up
/// after five minutes (and says so).
async fn wait_until_idle(database_url: &str) -> anyhow::Result<Duration> {
    const PATIENCE: Duration = Duration::from_secs(300);
    const STANDING_STILL: Duration = Duration::from_secs(2);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await?;
    let started = Instant::now();
    let mut unchanged_since = (Instant::now(), -1i64);
    loop {
        let (outbox, sagas): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM booking_sagas WHERE step <> 'done')",
        )
        .fetch_one(&pool)
        .await?;
        if sagas != unchanged_since.1 {
            unchanged_since = (Instant::now(), sagas);
        }
        let sagas_idle = sagas == 0 || unchanged_since.0.elapsed() >= STANDING_STILL;
        if outbox == 0 && sagas_idle {
            break;
        }
        if started.elapsed() > PATIENCE {
            eprintln!("  still {outbox} outbox rows and {sagas} sagas after {PATIENCE:?}: measuring the baseline anyway");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.close().await;
    Ok(started.elapsed())
}

async fn measure_inserts(
    database_url: &str,
    clients: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(clients)?)
        .connect(database_url)
        .await?;
    sqlx::query("DROP TABLE IF EXISTS bench_baseline")
        .execute(&pool)
        .await?;
    // The same columns, defaults, keys and indexes as `events`; no trigger.
    sqlx::query("CREATE TABLE bench_baseline (LIKE events INCLUDING ALL)")
        .execute(&pool)
        .await?;
    // The hash is the chain trigger's to fill, and the baseline has no trigger.
    sqlx::query("ALTER TABLE bench_baseline ALTER COLUMN hash DROP NOT NULL")
        .execute(&pool)
        .await?;
    // A payload and metadata the size of a real BookingRequested.
    let payload = json!({"BookingRequested": {"event_id": Uuid::new_v4(), "user_id": "bench-user-0000",
        "seats": 1, "amount_cents": 1000, "currency": "EUR", "card_token": "tok_bench"}});
    let metadata = EventMetadata {
        user_id: Some("bench-user-0000".into()),
        correlation_id: Some(Uuid::new_v4().to_string()),
        causation_id: Some(Uuid::new_v4().to_string()),
        recorded_at: Some(chrono::Utc::now().to_rfc3339()),
        ..EventMetadata::default()
    }
    .to_value();
    let measured = drive(clients, warmup, duration, |_| {
        let pool: PgPool = pool.clone();
        let (payload, metadata) = (payload.clone(), metadata.clone());
        let conn = Arc::new(tokio::sync::Mutex::new(None));
        move || {
            let (pool, payload, metadata, conn) = (pool.clone(), payload.clone(), metadata.clone(), conn.clone());
            async move {
                // Each client keeps one connection for the whole run.
                let mut guard = conn.lock().await;
                if guard.is_none() {
                    *guard = Some(pool.acquire().await?);
                }
                let conn = guard.as_mut().context("no connection")?;
                sqlx::query(
                    "INSERT INTO bench_baseline (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                     VALUES ('booking', $1, 1, 'BookingRequested', '1.0', $2, $3)",
                )
                .bind(Uuid::now_v7().to_string())
                .bind(&payload)
                .bind(&metadata)
                .execute(&mut **conn)
                .await?;
                Ok(())
            }
        }
    })
    .await;
    sqlx::query("DROP TABLE IF EXISTS bench_baseline")
        .execute(&pool)
        .await?;
    pool.close().await;
    measured
}

/// Runs `clients` loops of `op` for `warmup + duration`, recording only after the
/// warm-up. `make(client)` builds each client's operation.
pub(crate) async fn drive<M, F, Fut>(
    clients: usize,
    warmup: Duration,
    duration: Duration,
    make: M,
) -> anyhow::Result<Measured>
where
    M: Fn(usize) -> F,
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let mut op = make(client);
        tasks.push(tokio::spawn(async move {
            let mut measured = Measured::new();
            let mut first_error = None;
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                let outcome = op().await;
                if began < measure_from {
                    continue;
                }
                match outcome {
                    Ok(()) => measured.record(began.elapsed()),
                    Err(err) => {
                        measured.errors += 1;
                        first_error.get_or_insert(err);
                    }
                }
            }
            (measured, first_error)
        }));
    }
    let mut total = Measured::new();
    for task in tasks {
        let (measured, first_error) = task.await?;
        if let Some(err) = first_error {
            eprintln!("  a client saw errors, first: {err:#}");
        }
        total.merge(&measured);
    }
    total.elapsed = duration;
    Ok(total)
}
