//! Where each projection stands: live or rebuilding, how far behind the event store,
//! and the progress of its latest rebuild. Read by `projector status`,
//! `GET /v1/admin/projections` and the metrics.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::engine::{aggregate_type, PROJECTIONS};
use crate::store::EventStore;

/// One projection's state.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProjectionStatus {
    /// `locations`, `events` or `bookings`.
    pub name: String,
    /// `live`, or `rebuilding` while a rebuild is requested or running.
    pub status: &'static str,
    /// Events in the store past what the projection applied.
    pub lag: i64,
    /// How far behind that is in time: the age of the newest event applied, when
    /// something is left to apply; 0 when caught up.
    pub lag_seconds: f64,
    /// Events applied since the projection's table was created.
    pub applied_events: i64,
    /// When the projector last applied something, by its clock.
    pub last_applied_at: Option<DateTime<Utc>>,
    /// The latest rebuild, if there was one.
    pub rebuild: Option<RebuildStatus>,
}

/// A rebuild and how far it got.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RebuildStatus {
    /// Its id.
    pub id: i64,
    /// `requested`, `running`, `done` or `failed`.
    pub status: String,
    /// Events read from the store so far.
    pub events_done: i64,
    /// Events to read, as counted when it started.
    pub events_total: Option<i64>,
    /// `events_done / events_total`, 0 to 1.
    #[sqlx(skip)]
    pub progress: f64,
    /// When it was asked for.
    pub requested_at: DateTime<Utc>,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Every projection's state.
pub async fn all(read: &PgPool, store: &EventStore) -> anyhow::Result<Vec<ProjectionStatus>> {
    let mut statuses = Vec::with_capacity(PROJECTIONS.len());
    for name in PROJECTIONS {
        statuses.push(one(read, store, name).await?);
    }
    Ok(statuses)
}

async fn one(
    read: &PgPool,
    store: &EventStore,
    name: &'static str,
) -> anyhow::Result<ProjectionStatus> {
    let (applied_position, applied_events, last_applied_at, last_event_at): (
        i64,
        i64,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    ) = sqlx::query_as(
        "SELECT applied_position, applied_events, last_applied_at, last_event_at
           FROM projection_status WHERE name = $1",
    )
    .bind(name)
    .fetch_one(read)
    .await?;
    let aggregate = aggregate_type(name).unwrap_or_default();
    let lag = store.count_after(aggregate, applied_position).await?;
    let lag_seconds = match last_event_at {
        Some(at) if lag > 0 => (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0,
        _ => 0.0,
    };
    let rebuild = latest_rebuild(read, name).await?;
    let rebuilding = rebuild
        .as_ref()
        .is_some_and(|r| r.status == "requested" || r.status == "running");
    Ok(ProjectionStatus {
        name: name.to_owned(),
        status: if rebuilding { "rebuilding" } else { "live" },
        lag,
        lag_seconds,
        applied_events,
        last_applied_at,
        rebuild,
    })
}

/// The projection's latest rebuild.
pub async fn latest_rebuild(read: &PgPool, name: &str) -> sqlx::Result<Option<RebuildStatus>> {
    let rebuild: Option<RebuildStatus> = sqlx::query_as(
        "SELECT id, status, events_done, events_total, requested_at, started_at, finished_at, error
           FROM projection_rebuilds WHERE projection = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(name)
    .fetch_optional(read)
    .await?;
    Ok(rebuild.map(|mut r| {
        r.progress = match (r.status.as_str(), r.events_total) {
            ("done", _) => 1.0,
            (_, Some(total)) if total > 0 => (r.events_done as f64 / total as f64).min(1.0),
            _ => 0.0,
        };
        r
    }))
}
