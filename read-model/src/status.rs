//! Where each projection stands: live or rebuilding, how far behind the event store,
//! and the progress of its latest rebuild. Read by `projector status`,
//! `GET /v1/admin/projections` and the metrics.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::projection::Projection;
use crate::store::EventStore;
use crate::views::StoredName;

/// Whether queries read a projection's table while a rebuild prepares another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Applying new events; no rebuild asked for.
    Live,
    /// A rebuild is requested or running (queries still read the live table).
    Rebuilding,
}

/// Where a rebuild is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RebuildState {
    /// Asked for; a projector service takes it within a second.
    Requested,
    /// Filling the fresh table.
    Running,
    /// Swapped in.
    Done,
    /// Stopped; see `error`. The live table is as it was.
    Failed,
}

impl Phase {
    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Rebuilding => "rebuilding",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::fmt::Display for RebuildState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl RebuildState {
    /// The name in the API and in `projection_rebuilds.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// Requested or running: not over yet.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Requested | Self::Running)
    }
}

impl TryFrom<String> for RebuildState {
    type Error = domain::values::UnknownName;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        [Self::Requested, Self::Running, Self::Done, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or(domain::values::UnknownName(name))
    }
}

/// One projection's state.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProjectionStatus {
    /// The projection.
    pub name: Projection,
    /// Live, or rebuilding while a rebuild is requested or running.
    pub status: Phase,
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
    /// Where it is.
    #[sqlx(try_from = "String")]
    pub status: RebuildState,
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
    let mut statuses = Vec::with_capacity(Projection::ALL.len());
    for projection in Projection::ALL {
        statuses.push(one(read, store, projection).await?);
    }
    Ok(statuses)
}

async fn one(
    read: &PgPool,
    store: &EventStore,
    projection: Projection,
) -> anyhow::Result<ProjectionStatus> {
    let applied = sqlx::query!(
        "SELECT applied_position, applied_events, last_applied_at, last_event_at
           FROM projection_status WHERE name = $1",
        projection.name()
    )
    .fetch_one(read)
    .await?;
    let (applied_position, applied_events, last_applied_at, last_event_at) = (
        applied.applied_position,
        applied.applied_events,
        applied.last_applied_at,
        applied.last_event_at,
    );
    let lag = store
        .count_after(projection.aggregate_type(), applied_position)
        .await?;
    let lag_seconds = match last_event_at {
        Some(at) if lag > 0 => (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0,
        _ => 0.0,
    };
    let rebuild = latest_rebuild(read, projection).await?;
    let rebuilding = rebuild.as_ref().is_some_and(|r| r.status.is_open());
    Ok(ProjectionStatus {
        name: projection,
        status: if rebuilding {
            Phase::Rebuilding
        } else {
            Phase::Live
        },
        lag,
        lag_seconds,
        applied_events,
        last_applied_at,
        rebuild,
    })
}

/// The projection's latest rebuild.
pub async fn latest_rebuild(
    read: &PgPool,
    projection: Projection,
) -> sqlx::Result<Option<RebuildStatus>> {
    let rebuild = sqlx::query!(
        r#"SELECT id, status AS "status: StoredName<RebuildState>", events_done, events_total,
                  requested_at, started_at, finished_at, error
             FROM projection_rebuilds WHERE projection = $1 ORDER BY id DESC LIMIT 1"#,
        projection.name()
    )
    .fetch_optional(read)
    .await?;
    Ok(rebuild.map(|r| {
        let status = r.status.0;
        RebuildStatus {
            id: r.id,
            status,
            events_done: r.events_done,
            events_total: r.events_total,
            progress: match (status, r.events_total) {
                (RebuildState::Done, _) => 1.0,
                (_, Some(total)) if total > 0 => (r.events_done as f64 / total as f64).min(1.0),
                _ => 0.0,
            },
            requested_at: r.requested_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            error: r.error,
        }
    }))
}
