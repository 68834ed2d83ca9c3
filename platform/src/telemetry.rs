//! Logs to stdout with `tracing`: human-readable by default, one JSON object per line
//! with `LOG_FORMAT=json`. The level comes from `RUST_LOG` (default `info`).
//!
//! Traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, every `tracing` span at the logged
//! levels is also an OpenTelemetry span, exported over OTLP/HTTP (protobuf, or JSON with
//! `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`) to `<endpoint>/v1/traces`, in batches, as
//! service `OTEL_SERVICE_NAME` (default: the binary's name). Unset, nothing is exported
//! and no exporter runs. The W3C `traceparent` carries a trace across processes: the
//! HTTP layer ([`crate::access_log`]) continues the caller's, the events keep it in
//! their metadata and the Kafka headers, and the projector, the sagas and the payment
//! gateway's client continue it with [`continue_trace`] and [`current_traceparent`].

use std::sync::OnceLock;
use std::time::Duration;

use domain::metadata::TraceParent;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::config::empty_is_unset;

/// How traces are sent to the OTLP endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf` (the OTLP default).
    HttpProtobuf,
    /// `http/json`.
    HttpJson,
}

impl std::str::FromStr for OtlpProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "http/protobuf" => Ok(Self::HttpProtobuf),
            "http/json" => Ok(Self::HttpJson),
            _ => Err("expected http/protobuf or http/json (grpc is not built in)".to_owned()),
        }
    }
}

impl std::fmt::Display for OtlpProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::HttpProtobuf => "http/protobuf",
            Self::HttpJson => "http/json",
        })
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For people.
    Pretty,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("pretty") {
            Ok(Self::Pretty)
        } else if s.eq_ignore_ascii_case("json") {
            Ok(Self::Json)
        } else {
            Err("expected pretty or json".to_owned())
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pretty => "pretty",
            Self::Json => "json",
        })
    }
}

/// The log settings of every service.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Logs")]
pub struct LogSettings {
    /// How log lines are written: `pretty` (for people) or `json` (one object per line).
    #[arg(long, env = "LOG_FORMAT", default_value_t = LogFormat::Pretty, value_parser = empty_is_unset::<LogFormat>())]
    pub log_format: LogFormat,
    /// Which log lines are written: a `tracing` filter, a level (`info`, `debug`, ...)
    /// or directives such as `info,command_api=debug`. An invalid filter means `info`.
    #[arg(long, env = "RUST_LOG", default_value = "info", value_parser = empty_is_unset::<String>())]
    pub rust_log: String,
    /// Where traces go: an OTLP/HTTP endpoint such as `http://jaeger:4318` (spans are
    /// posted to `<endpoint>/v1/traces`). Unset: no traces are exported.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = empty_is_unset::<String>())]
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// The OTLP encoding: `http/protobuf` or `http/json`.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", default_value_t = OtlpProtocol::HttpProtobuf, value_parser = empty_is_unset::<OtlpProtocol>())]
    pub otel_exporter_otlp_protocol: OtlpProtocol,
    /// The service's name in the traces (default: the binary's name).
    #[arg(long, env = "OTEL_SERVICE_NAME", value_parser = empty_is_unset::<String>())]
    pub otel_service_name: Option<String>,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            rust_log: "info".into(),
            otel_exporter_otlp_endpoint: None,
            otel_exporter_otlp_protocol: OtlpProtocol::HttpProtobuf,
            otel_service_name: None,
        }
    }
}

/// The exporting tracer provider, when traces are on (flushed by [`shutdown`]).
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber: logs, and traces when an endpoint is set. Calling
/// it twice (as tests do) is harmless: the first call wins.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_new(&settings.rust_log).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match settings.log_format {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_target(true)
            .boxed(),
        LogFormat::Pretty => fmt::layer().with_target(true).boxed(),
    };
    let traces = settings
        .otel_exporter_otlp_endpoint
        .as_deref()
        .filter(|_| PROVIDER.get().is_none())
        .and_then(|endpoint| match tracer_provider(settings, endpoint) {
            Ok(provider) => Some(provider),
            Err(err) => {
                eprintln!("traces are off: cannot export to {endpoint}: {err:#}");
                None
            }
        });
    let layer = traces
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("boxoffice")));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(layer)
        .try_init()
        .is_ok();
    if let (true, Some(provider)) = (installed, traces) {
        let _ = PROVIDER.set(provider);
    }
}

fn tracer_provider(settings: &LogSettings, endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let protocol = match settings.otel_exporter_otlp_protocol {
        OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
        OtlpProtocol::HttpJson => Protocol::HttpJson,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_protocol(protocol)
        .with_timeout(Duration::from_secs(5))
        .build()?;
    let name = settings.otel_service_name.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "boxoffice".to_owned())
    });
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(name).build())
        .build())
}

/// Whether traces are exported (an endpoint is set and the exporter runs).
pub fn enabled() -> bool {
    PROVIDER.get().is_some()
}

/// Sends the spans not exported yet (call once, as the process ends).
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(err) = provider.shutdown() {
            eprintln!("traces: the last spans may be lost: {err}");
        }
    }
}

/// The `traceparent` naming the current span, when traces are on (`None` when they
/// are off: there is no exported span to name).
pub fn current_traceparent() -> Option<TraceParent> {
    traceparent_of(&tracing::Span::current())
}

/// The `traceparent` naming `span`, when traces are on.
pub fn traceparent_of(span: &tracing::Span) -> Option<TraceParent> {
    let context = span.context();
    let span = context.span();
    let span = span.span_context();
    span.is_valid().then(|| {
        TraceParent::from_parts(
            u128::from_be_bytes(span.trace_id().to_bytes()),
            u64::from_be_bytes(span.span_id().to_bytes()),
            span.trace_flags().to_u8(),
        )
    })
}

/// Makes `span` a child of `parent` (a remote span: a caller's, or the one an event
/// was appended under), so that its trace goes on across processes.
pub fn continue_trace(span: &tracing::Span, parent: &TraceParent) {
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id_u128().to_be_bytes()),
        SpanId::from_bytes(parent.span_id_u64().to_be_bytes()),
        TraceFlags::new(parent.flags()),
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// [`init`] with the log settings of the environment (the defaults where they are not
/// valid): for tests, which have no command line of their own.
pub fn init_from_env() {
    let settings = crate::config::from_env::<LogSettings>("test").unwrap_or_default();
    init(&settings);
}
