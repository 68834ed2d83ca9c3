//! Logs to stdout with `tracing`: human-readable by default, one JSON object per line
//! with `LOG_FORMAT=json`. The level comes from `RUST_LOG` (default `info`).

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::empty_is_unset;

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
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            rust_log: "info".into(),
        }
    }
}

/// Installs the global subscriber. Calling it twice (as tests do) is harmless.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_new(&settings.rust_log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_target(true);
    let _ = match settings.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// [`init`] with the log settings of the environment (the defaults where they are not
/// valid): for tests, which have no command line of their own.
pub fn init_from_env() {
    let settings = crate::config::from_env::<LogSettings>("test").unwrap_or_default();
    init(&settings);
}
