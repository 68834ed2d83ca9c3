//! `otlp-sink`: an OTLP/HTTP endpoint that takes every export and counts it, for
//! measuring the services with trace export on (`OTEL_EXPORTER_OTLP_ENDPOINT`) where no
//! collector runs. Loopback only; it stops by itself after `--seconds` and prints what
//! it received.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;

/// Options of the sink.
#[derive(clap::Args)]
pub struct Args {
    /// Where to listen (a loopback address).
    #[arg(long, default_value = "127.0.0.1:4318")]
    addr: SocketAddr,
    /// How long to run before stopping by itself.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
}

#[derive(Default)]
struct Counts {
    exports: AtomicU64,
    bytes: AtomicU64,
}

/// Runs the sink until `--seconds` have passed.
pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.addr.ip().is_loopback(),
        "the sink listens on loopback only"
    );
    let counts = Arc::new(Counts::default());
    let app = Router::new()
        .route("/v1/traces", post(take))
        .with_state(counts.clone());
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    println!(
        "otlp-sink: OTEL_EXPORTER_OTLP_ENDPOINT=http://{} (stops after {} s)",
        args.addr, args.seconds
    );
    let stop = tokio::time::sleep(Duration::from_secs(args.seconds));
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await?;
    println!(
        "otlp-sink: {} exports, {} bytes",
        counts.exports.load(Ordering::Relaxed),
        counts.bytes.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn take(State(counts): State<Arc<Counts>>, body: Bytes) -> &'static str {
    counts.exports.fetch_add(1, Ordering::Relaxed);
    counts.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    ""
}
