//! Metrics with prometheus-client, served as OpenMetrics text on `GET /metrics`.

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics` for a registry that is complete (nothing registers after this).
pub fn metrics_router<S: Clone + Send + Sync + 'static>(registry: Arc<Registry>) -> Router<S> {
    Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                let mut body = String::new();
                match encode(&mut body, &registry) {
                    Ok(()) => ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
                    Err(err) => {
                        tracing::error!(cause = %err, "cannot encode metrics");
                        StatusCode::INTERNAL_SERVER_ERROR.into_response()
                    }
                }
            }
        }),
    )
}

/// A latency histogram in seconds, from 0.5 ms to about 16 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 16,
    ))
}

/// The state of a connection pool, read at each scrape:
/// `boxoffice_db_pool_connections{pool, state="idle"|"in_use"}` and
/// `boxoffice_db_pool_max_connections{pool}`. Register one per pool with
/// [`register_pools`].
#[derive(Debug)]
struct Pools(Vec<(&'static str, sqlx::PgPool)>);

impl prometheus_client::collector::Collector for Pools {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::gauge::ConstGauge;
        use prometheus_client::metrics::MetricType;

        let mut connections = encoder.encode_descriptor(
            "boxoffice_db_pool_connections",
            "Connections of the pool, idle or in use",
            None,
            MetricType::Gauge,
        )?;
        for (name, pool) in &self.0 {
            let open = i64::from(pool.size());
            let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
            for (state, value) in [("idle", idle), ("in_use", (open - idle).max(0))] {
                let labels = [("pool", *name), ("state", state)];
                ConstGauge::new(value).encode(connections.encode_family(&labels)?)?;
            }
        }
        let mut max = encoder.encode_descriptor(
            "boxoffice_db_pool_max_connections",
            "The most connections the pool opens",
            None,
            MetricType::Gauge,
        )?;
        for (name, pool) in &self.0 {
            let labels = [("pool", *name)];
            ConstGauge::new(i64::from(pool.options().get_max_connections()))
                .encode(max.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Exports the state of `pools` (name, pool), read at each scrape (see [`Pools`]).
pub fn register_pools(registry: &mut Registry, pools: Vec<(&'static str, sqlx::PgPool)>) {
    registry.register_collector(Box::new(Pools(pools)));
}
