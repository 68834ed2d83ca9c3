//! The store as NDJSON: one stored event a line, every event exactly once, resumable.
//!
//! Order: by appending transaction, then position: the order the projector's sweep and
//! rebuilds walk (see `read_model::store`). It is the order in which events became
//! final: an export stops before the oldest transaction that may still add events
//! ([`read_model::store::horizon`]), so no event can ever appear behind what it sent, and each stream's events come in sequence order.
//! Plain position order could not promise that: positions are taken at insert time and
//! transactions commit in any order.
//!
//! Resuming: `after` is the position of the last line received; the export goes on from
//! that event's place in the order. An export cut at any point (a dropped connection)
//! and resumed this way sends every event exactly once.
//!
//! Memory: events are read a page at a time by key (no long-lived cursor or
//! transaction), and each page is handed to the HTTP body before the next is read, so
//! an export of any size holds one page.

use futures::Stream;
use sqlx::PgPool;

/// Events read per page.
pub const PAGE: i64 = 1000;

/// Why an export cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// `after` names no stored event.
    #[error("no stored event has position {0}")]
    UnknownPosition(i64),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// An export under way.
pub struct Export {
    pool: PgPool,
    /// The (transaction, position) of the last event sent.
    cursor: (i64, i64),
    /// Transactions from this one on may still have been adding events when the export
    /// started.
    horizon: i64,
    /// Events still to send, when limited.
    remaining: Option<u64>,
}

impl Export {
    /// An export of the events after position `after` (0: from the start), at most
    /// `limit` of them.
    pub async fn start(pool: PgPool, after: i64, limit: Option<u64>) -> Result<Self, ExportError> {
        let cursor = if after == 0 {
            (0, 0)
        } else {
            let transaction = sqlx::query_scalar!(
                r#"SELECT (transaction_id::text)::bigint AS "transaction_id!" FROM events WHERE position = $1"#,
                after
            )
            .fetch_optional(&pool)
            .await?;
            (
                transaction.ok_or(ExportError::UnknownPosition(after))?,
                after,
            )
        };
        let horizon = read_model::store::horizon(&pool).await?;
        Ok(Self {
            pool,
            cursor,
            horizon,
            remaining: limit,
        })
    }

    /// The next lines, or `None` at the end.
    pub async fn next_page(&mut self) -> sqlx::Result<Option<Vec<u8>>> {
        let page = match self.remaining {
            Some(0) => return Ok(None),
            Some(n) => PAGE.min(i64::try_from(n).unwrap_or(PAGE)),
            None => PAGE,
        };
        // The line is built by Postgres (json, not jsonb: keys stay in this order), so
        // payloads are not parsed and printed again here.
        let rows = sqlx::query!(
            r#"SELECT (e.transaction_id::text)::bigint AS "transaction_id!", e.position,
                    json_build_object('position', e.position, 'aggregate_type', e.aggregate_type,
                                      'aggregate_id', e.aggregate_id, 'sequence', e.sequence,
                                      'event_type', e.event_type, 'event_version', e.event_version,
                                      'payload', e.payload, 'metadata', e.metadata,
                                      'hash', encode(e.hash, 'hex'),
                                      'redacted', CASE WHEN r.position IS NOT NULL
                                                  THEN json_build_object('reason', r.reason, 'content_hash', encode(r.redacted_hash, 'hex'),
                                                                         'at', r.redacted_at) END)::text AS "line!"
               FROM events e
               LEFT JOIN redactions r ON r.position = e.position
              WHERE (e.transaction_id, e.position) > ((($1::bigint)::text)::xid8, $2)
                AND e.transaction_id < (($3::bigint)::text)::xid8
              ORDER BY e.transaction_id, e.position
              LIMIT $4"#,
            self.cursor.0,
            self.cursor.1,
            self.horizon,
            page
        )
        .fetch_all(&self.pool)
        .await?;
        let Some(last) = rows.last() else {
            return Ok(None);
        };
        self.cursor = (last.transaction_id, last.position);
        if let Some(remaining) = &mut self.remaining {
            *remaining = remaining.saturating_sub(rows.len() as u64);
        }
        let mut out = Vec::with_capacity(rows.len() * 512);
        for row in &rows {
            out.extend_from_slice(row.line.as_bytes());
            out.push(b'\n');
        }
        Ok(Some(out))
    }

    /// The lines as a stream of chunks, a page each.
    pub fn into_stream(self) -> impl Stream<Item = sqlx::Result<Vec<u8>>> + Send {
        futures::stream::try_unfold(self, |mut export| async move {
            Ok(export.next_page().await?.map(|page| (page, export)))
        })
    }
}
