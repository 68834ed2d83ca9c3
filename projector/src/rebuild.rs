//! Rebuilding a projection from the event store while the live table keeps serving.
//!
//! 1. A fresh table, `<table>__rebuild`, is filled from every final event of the
//!    projection's aggregate type, in `(transaction_id, position)` order, in big chunks,
//!    by the same engine the live projection uses.
//! 2. What became visible meanwhile is applied too, without blocking anyone.
//!    Its secondary indexes are built once it is full.
//! 3. In one transaction: the live table is locked (queries wait a moment, they never
//!    see a half-built table), everything committed since the final cursor is applied,
//!    the live table is dropped and the fresh one renamed into its place, its indexes
//!    taking the names they had. The live projector's next write goes to the new table.
//!
//! One rebuild per projection at a time (a Postgres advisory lock). Progress is kept in
//! `projection_rebuilds`, where `GET /v1/admin/projections` and `projector status` read it.

use std::time::{Duration, Instant};

use sqlx::{Acquire, Connection, PgConnection, PgPool};

use read_model::engine::{apply_batch, rebuild_table, Target, PROJECTED_CHANNEL};
use read_model::store::{Cursor, EventStore};
use read_model::views::{BookingRow, EventRow, LocationRow, UserRow, View};
use read_model::Projection;

pub use read_model::rebuild::{request, RebuildError, RequestKey};

/// Events read per transaction while filling the fresh table.
const CHUNK: i64 = 10_000;

/// How far a rebuild got.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Events read so far.
    pub done: u64,
    /// Events to read, as counted at the start.
    pub total: u64,
}

/// What a finished rebuild did.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Events read from the store.
    pub events: u64,
    /// How long it took, swap included.
    pub elapsed: Duration,
}

impl Report {
    /// Events per second.
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Rebuilds `name` now. `requested` is the id of a requested rebuild this runs (from the
/// service's worker); without it (the CLI) a new one is recorded.
pub async fn run(
    read: &PgPool,
    store: &EventStore,
    projection: Projection,
    requested: Option<i64>,
    on_progress: &(dyn Fn(Progress) + Sync),
) -> Result<Report, RebuildError> {
    match projection {
        Projection::Locations => run_view::<LocationRow>(read, store, requested, on_progress).await,
        Projection::Events => run_view::<EventRow>(read, store, requested, on_progress).await,
        Projection::Bookings => run_view::<BookingRow>(read, store, requested, on_progress).await,
        Projection::Users => run_view::<UserRow>(read, store, requested, on_progress).await,
    }
}

async fn run_view<V: View>(
    read: &PgPool,
    store: &EventStore,
    requested: Option<i64>,
    on_progress: &(dyn Fn(Progress) + Sync),
) -> Result<Report, RebuildError> {
    // The lock lives as long as this connection, which is not returned to the pool.
    let mut lock = read.acquire().await?.detach();
    let locked = sqlx::query_scalar!(
        r#"SELECT pg_try_advisory_lock(hashtext('boxoffice.rebuild.' || $1)) AS "locked!""#,
        V::PROJECTION.name()
    )
    .fetch_one(&mut lock)
    .await?;
    if !locked {
        return Err(RebuildError::Busy(V::PROJECTION.name().to_owned()));
    }
    let id = match requested {
        Some(id) => {
            let taken = sqlx::query!(
                "UPDATE projection_rebuilds SET status = 'running', started_at = now()
                  WHERE id = $1 AND status = 'requested'",
                id
            )
            .execute(&mut lock)
            .await?
            .rows_affected();
            if taken == 0 {
                let _ = lock.close().await;
                return Err(RebuildError::Busy(V::PROJECTION.name().to_owned()));
            }
            id
        }
        None => {
            sqlx::query_scalar!(
                "INSERT INTO projection_rebuilds (projection, status, started_at)
                 VALUES ($1, 'running', now()) RETURNING id",
                V::PROJECTION.name()
            )
            .fetch_one(&mut lock)
            .await?
        }
    };
    tracing::info!(projection = %V::PROJECTION, rebuild = id, "rebuild started");

    let outcome = rebuild::<V>(read, store, &mut lock, id, on_progress).await;
    match &outcome {
        Ok(report) => {
            sqlx::query!(
                "UPDATE projection_rebuilds SET status = 'done', finished_at = now(), events_done = $2 WHERE id = $1",
                id,
                i64::try_from(report.events).unwrap_or(i64::MAX)
            )
            .execute(&mut lock)
            .await?;
            tracing::info!(
                projection = %V::PROJECTION,
                rebuild = id,
                events = report.events,
                rate = report.rate(),
                "rebuild done"
            );
        }
        Err(err) => {
            tracing::error!(
                projection = %V::PROJECTION,
                rebuild = id,
                cause = format!("{err:#}"),
                "rebuild failed"
            );
            sqlx::query!(
                "UPDATE projection_rebuilds SET status = 'failed', finished_at = now(), error = $2 WHERE id = $1",
                id,
                format!("{err:#}")
            )
            .execute(&mut lock)
            .await?;
            // The shadow table's name is the view's, known at run time.
            sqlx::query(&format!("DROP TABLE IF EXISTS {}", rebuild_table(V::TABLE)))
                .execute(&mut lock)
                .await?;
        }
    }
    let _ = lock.close().await;
    outcome.map_err(RebuildError::Failed)
}

async fn rebuild<V: View>(
    read: &PgPool,
    store: &EventStore,
    lock: &mut PgConnection,
    id: i64,
    on_progress: &(dyn Fn(Progress) + Sync),
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let live = V::TABLE;
    let fresh = rebuild_table(V::TABLE);
    let types = [V::AGGREGATE_TYPE];
    let total = u64::try_from(store.count(V::AGGREGATE_TYPE).await?).unwrap_or(0);
    sqlx::query!(
        "UPDATE projection_rebuilds SET events_total = $2 WHERE id = $1",
        id,
        i64::try_from(total).unwrap_or(i64::MAX)
    )
    .execute(&mut *lock)
    .await?;
    // The fresh table starts with its primary key only (the upserts need it); the other
    // indexes are built once it is full. These statements and the swap's below name
    // the view's tables, known at run time: runtime-bound.
    sqlx::query(&format!("DROP TABLE IF EXISTS {fresh}"))
        .execute(read)
        .await?;
    sqlx::query(&format!(
        "CREATE TABLE {fresh} (LIKE {live} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)"
    ))
    .execute(read)
    .await?;
    sqlx::query(&format!("ALTER TABLE {fresh} ADD PRIMARY KEY (id)"))
        .execute(read)
        .await?;
    inherit_rights(read, live, &fresh).await?;

    // 1. Every final event. The next chunk is read from the store while this one is
    //    applied.
    let mut cursor = Cursor::default();
    let mut done = 0u64;
    on_progress(Progress { done, total });
    let mut chunk = store.final_after(cursor, &types, CHUNK).await?;
    while let Some((last, _)) = chunk.last().cloned() {
        let more = chunk.len() as i64 == CHUNK;
        let events: Vec<_> = chunk.into_iter().map(|(_, e)| e).collect();
        let apply = async {
            let mut tx = read.begin().await?;
            apply_batch(&mut tx, store, Target::Rebuild, &events).await?;
            tx.commit().await?;
            anyhow::Ok(())
        };
        let prefetch = async {
            if more {
                store.final_after(last, &types, CHUNK).await
            } else {
                Ok(Vec::new())
            }
        };
        let (applied, next) = tokio::join!(apply, prefetch);
        applied?;
        cursor = last;
        chunk = next?;
        done += events.len() as u64;
        sqlx::query!(
            "UPDATE projection_rebuilds SET events_done = $2 WHERE id = $1",
            id,
            i64::try_from(done).unwrap_or(i64::MAX)
        )
        .execute(&mut *lock)
        .await?;
        on_progress(Progress {
            done,
            total: total.max(done),
        });
    }

    // 2. The live table's other indexes, under provisional names; then what committed
    //    meanwhile, without holding anyone up. The cursor stays where the final events
    //    end: an event committing later may sort before these.
    let mut conn = read.acquire().await?;
    let live_indexes = indexes(&mut conn, live).await?;
    for index in live_indexes.iter().filter(|i| !i.primary) {
        // The live index's own definition, read from the catalog: runtime-bound.
        sqlx::query(&index.definition_for(live, &fresh))
            .execute(&mut *conn)
            .await?;
    }
    let mut tx = conn.begin().await?;
    apply_visible::<V>(&mut tx, store, cursor).await?;
    tx.commit().await?;

    // 3. The swap, the indexes taking the names they had (tables and indexes named at
    //    run time: runtime-bound).
    let mut tx = conn.begin().await?;
    sqlx::query(&format!("LOCK TABLE {live} IN ACCESS EXCLUSIVE MODE"))
        .execute(&mut *tx)
        .await?;
    apply_visible::<V>(&mut tx, store, cursor).await?;
    sqlx::query(&format!("DROP TABLE {live}"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("ALTER TABLE {fresh} RENAME TO {live}"))
        .execute(&mut *tx)
        .await?;
    for index in &live_indexes {
        let provisional = if index.primary {
            format!("{fresh}_pkey")
        } else {
            rebuild_table(&index.name)
        };
        sqlx::query(&format!(
            "ALTER INDEX {provisional} RENAME TO {}",
            index.name
        ))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query!("SELECT pg_notify($1, '')", PROJECTED_CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    on_progress(Progress { done, total: done });
    Ok(Report {
        events: done,
        elapsed: started.elapsed(),
    })
}

/// Applies every visible event of `V` after `from` to the fresh table.
async fn apply_visible<V: View>(
    conn: &mut PgConnection,
    store: &EventStore,
    from: Cursor,
) -> anyhow::Result<()> {
    let mut cursor = from;
    loop {
        let batch = store
            .visible_after(cursor, &[V::AGGREGATE_TYPE], CHUNK)
            .await?;
        let Some((last, _)) = batch.last().cloned() else {
            return Ok(());
        };
        cursor = last;
        let events: Vec<_> = batch.into_iter().map(|(_, e)| e).collect();
        apply_batch(conn, store, Target::Rebuild, &events).await?;
        if (events.len() as i64) < CHUNK {
            return Ok(());
        }
    }
}

/// An index of a live table.
struct Index {
    name: String,
    primary: bool,
    definition: String,
}

impl Index {
    /// The statement creating this index on `fresh` instead of `live`, under the
    /// provisional name `<name>__rebuild`.
    fn definition_for(&self, live: &str, fresh: &str) -> String {
        self.definition
            .replacen(
                &format!(" {} ON ", self.name),
                &format!(" {} ON ", rebuild_table(&self.name)),
                1,
            )
            .replacen(&format!(".{live} USING "), &format!(".{fresh} USING "), 1)
    }
}

/// The indexes of `table` and the statements that created them.
async fn indexes(conn: &mut PgConnection, table: &str) -> sqlx::Result<Vec<Index>> {
    sqlx::query_as!(
        Index,
        r#"SELECT i.relname::text AS "name!", x.indisprimary AS "primary",
                  pg_get_indexdef(i.oid) AS "definition!"
             FROM pg_index x
             JOIN pg_class i ON i.oid = x.indexrelid
             JOIN pg_class t ON t.oid = x.indrelid
            WHERE t.relname = $1 AND t.relnamespace = current_schema()::regnamespace
            ORDER BY 1"#,
        table
    )
    .fetch_all(conn)
    .await
}

/// Marks rebuilds left `running` by a process that died as failed.
pub async fn fail_abandoned(read: &PgPool) -> sqlx::Result<()> {
    let running =
        sqlx::query!("SELECT id, projection FROM projection_rebuilds WHERE status = 'running'")
            .fetch_all(read)
            .await?;
    for rebuild in running {
        let (id, projection) = (rebuild.id, rebuild.projection);
        let mut conn = read.acquire().await?;
        let free = sqlx::query_scalar!(
            r#"SELECT pg_try_advisory_lock(hashtext('boxoffice.rebuild.' || $1)) AS "locked!""#,
            &projection
        )
        .fetch_one(&mut *conn)
        .await?;
        if free {
            sqlx::query!(
                "UPDATE projection_rebuilds SET status = 'failed', finished_at = now(),
                        error = 'interrupted: the process running it stopped'
                  WHERE id = $1 AND status = 'running'",
                id
            )
            .execute(&mut *conn)
            .await?;
            sqlx::query!(
                "SELECT pg_advisory_unlock(hashtext('boxoffice.rebuild.' || $1))",
                &projection
            )
            .fetch_one(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Gives the fresh table the live one's owner and readers. A rebuild run by another
/// database user than the projector's (an operator with the owner's URL) must still
/// leave a table the projector may swap out next time and query-api may read.
async fn inherit_rights(read: &PgPool, live: &str, fresh: &str) -> sqlx::Result<()> {
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    // `$1::text::regclass`: the name is bound as text (as the runtime binding did), so
    // the macro's check wants a `&str`, not a `regclass`.
    let row = sqlx::query!(
        r#"SELECT pg_get_userbyid(relowner)::text AS "owner!", current_user::text AS "me!"
             FROM pg_class WHERE oid = $1::text::regclass"#,
        live
    )
    .fetch_one(read)
    .await?;
    let (owner, me) = (row.owner, row.me);
    if owner != me {
        // Role names, read from the catalog, in the statement's text: runtime-bound.
        sqlx::query(&format!("ALTER TABLE {fresh} OWNER TO {}", quote(&owner)))
            .execute(read)
            .await?;
    }
    let readers = sqlx::query_scalar!(
        r#"SELECT DISTINCT pg_get_userbyid(a.grantee)::text AS "reader!"
             FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.oid = $1::text::regclass AND a.privilege_type = 'SELECT'
              AND a.grantee <> c.relowner AND a.grantee <> 0"#,
        live
    )
    .fetch_all(read)
    .await?;
    for reader in readers {
        // Likewise a role name in the text.
        sqlx::query(&format!("GRANT SELECT ON {fresh} TO {}", quote(&reader)))
            .execute(read)
            .await?;
    }
    Ok(())
}
