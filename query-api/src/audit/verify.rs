//! Verifying the store against its hash chain and its append receipts.
//!
//! Two walks over one snapshot of the store (a read-only repeatable-read transaction):
//!
//! 1. **Streams**, in primary-key order: each event's hash must be the hash of its
//!    stream's previous event and its own content (the database recomputes it with the
//!    same function the append trigger used), and sequences must go 1, 2, 3, ...
//!    A changed event fails the first check; a deleted one leaves a gap.
//! 2. **Receipts**: every appended event is named with its stream, sequence, position
//!    and hash outside its stream: by its outbox row until the relay published it, then
//!    by the receipt the relay wrote when it deleted those rows. An event a receipt names that is gone
//!    was deleted (this is how the deleted last event of a stream shows: nothing in the
//!    chain points at it); an event no receipt names was inserted behind the store's
//!    back; one that sits at another sequence than its receipt says was reordered; one
//!    whose hash differs from its receipt's had its hash rewritten.
//!
//! **Redacted events** (the card tokens taken out of old `BookingRequested` facts by
//! migration 0010) keep the hash they were appended with, so the chain still links
//! through them and their receipts still name them. Their content now hashes to
//! something else, which the store recorded in the open: an `EventsRedacted` fact on the
//! stream `store/redactions`, itself chained and receipted like every event, names each
//! redacted event's position and the hash of its content as the redaction left it. A
//! redacted event is intact when its content hashes to exactly that, and is counted as
//! redacted; any other change to it (or a "redaction" no such fact names) is tampering.
//!
//! A problem names the event (stream, sequence, position) and what happened to it. One
//! change often shows in both walks (two swapped events fail their hashes and their
//! receipts): each event is reported once, under the most telling kind.

use std::collections::{BTreeMap, HashMap};

use futures::TryStreamExt;
use serde::Serialize;
use sqlx::PgPool;

/// What happened to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Its content (or its hash) is not what was appended.
    Modified,
    /// It sits at another place of its stream than it was appended at.
    Reordered,
    /// It was appended, and is gone.
    Deleted,
    /// It was never appended through the store.
    Inserted,
}

/// One event that is not as it was appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// What happened.
    pub kind: ProblemKind,
    /// Its stream.
    pub aggregate_type: String,
    /// Its stream.
    pub aggregate_id: String,
    /// Its sequence (for a deleted event, the one it had).
    pub sequence: i64,
    /// Its position, when known.
    pub position: Option<i64>,
    /// In words.
    pub detail: String,
}

/// The outcome of a walk.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// No problem found.
    pub ok: bool,
    /// Events walked.
    pub checked_events: u64,
    /// Append receipts and outbox rows walked.
    pub checked_receipts: u64,
    /// Events redacted in the open (named by an `EventsRedacted` fact) and intact since.
    pub redacted_events: u64,
    /// What was found, by stream and sequence; at most [`MAX_PROBLEMS`].
    pub problems: Vec<Problem>,
    /// More problems were found than are listed.
    pub problems_truncated: bool,
}

/// The most problems a report lists (a wholesale rewrite would otherwise list them all).
pub const MAX_PROBLEMS: usize = 1000;

/// How far a walk has got, for progress bars: events walked so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// Which walk found a problem: the streams' chain, or the receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Chain,
    Receipt,
}

type Key = (String, String, i64);

/// Problems by event, each once.
#[derive(Default)]
struct Found {
    problems: BTreeMap<Key, (Source, Problem)>,
    truncated: bool,
}

impl Found {
    fn add(&mut self, source: Source, problem: Problem) {
        let key = (
            problem.aggregate_type.clone(),
            problem.aggregate_id.clone(),
            problem.sequence,
        );
        let full = self.problems.len() >= MAX_PROBLEMS;
        match self.problems.get_mut(&key) {
            // A receipt's finding is the more telling one (it knows what was appended);
            // among its own, the first one stays.
            Some(existing) => {
                if existing.0 == Source::Chain && source == Source::Receipt {
                    *existing = (source, problem);
                }
            }
            None if full => self.truncated = true,
            None => {
                self.problems.insert(key, (source, problem));
            }
        }
    }

    /// An event right after one the receipts caught (its hash rewritten, or moved to
    /// another sequence) fails its chain check through no fault of its own: its link
    /// points at a hash that is no longer there. Drop that echo.
    fn drop_echoes(&mut self) {
        let echoes: Vec<Key> = self
            .problems
            .iter()
            .filter(|(_, (source, problem))| {
                *source == Source::Chain && problem.kind == ProblemKind::Modified
            })
            .filter(|((t, i, s), _)| {
                self.problems
                    .get(&(t.clone(), i.clone(), s - 1))
                    .is_some_and(|(source, _)| *source == Source::Receipt)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in echoes {
            self.problems.remove(&key);
        }
    }
}

/// Walks the store. `progress` hears how many events were walked, now and then.
pub async fn verify(pool: &PgPool, progress: Progress<'_>) -> sqlx::Result<Report> {
    let mut tx = pool.begin().await?;
    sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let mut found = Found::default();

    // 1. Every stream against its chain.
    let redactions = recorded_redactions(&mut tx).await?;
    let mut checked_events = 0u64;
    let mut redacted_events = 0u64;
    {
        let mut rows = sqlx::query!(
            r#"SELECT e.aggregate_type AS "aggregate_type!", e.aggregate_id AS "aggregate_id!",
                      e.sequence AS "sequence!", e.position AS "position!", e.hash AS "hash!",
                      lag(e.sequence) OVER stream AS previous_sequence,
                      boxoffice_event_hash(lag(e.hash) OVER stream, e.aggregate_type, e.aggregate_id,
                                           e.sequence, e.position, e.event_type, e.event_version,
                                           e.payload, e.metadata) AS "content_hash!"
                 FROM events e
               WINDOW stream AS (PARTITION BY e.aggregate_type, e.aggregate_id ORDER BY e.sequence)
                ORDER BY e.aggregate_type, e.aggregate_id, e.sequence"#
        )
        .fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            checked_events += 1;
            if checked_events.is_multiple_of(10_000) {
                progress(checked_events);
            }
            let aggregate_type = row.aggregate_type;
            let aggregate_id = row.aggregate_id;
            let sequence = row.sequence;
            let position = row.position;
            let previous = row.previous_sequence;
            let expected = previous.unwrap_or(0) + 1;
            if sequence > expected {
                // A gap: the events in it were deleted. This event's link cannot be
                // checked (its predecessor is gone); the receipts still vouch for it.
                for missing in expected..sequence.min(expected + MAX_PROBLEMS as i64) {
                    found.add(
                        Source::Chain,
                        Problem {
                            kind: ProblemKind::Deleted,
                            aggregate_type: aggregate_type.clone(),
                            aggregate_id: aggregate_id.clone(),
                            sequence: missing,
                            position: None,
                            detail: format!(
                                "sequence {missing} is missing: the stream goes from {} to {sequence}",
                                expected - 1
                            ),
                        },
                    );
                }
            } else {
                let stored = row.hash;
                let content = row.content_hash;
                let redaction = redactions.get(&position);
                if stored == content {
                    continue;
                }
                if redaction == Some(&content) {
                    redacted_events += 1;
                    continue;
                }
                found.add(
                    Source::Chain,
                    Problem {
                        kind: ProblemKind::Modified,
                        aggregate_type,
                        aggregate_id,
                        sequence,
                        position: Some(position),
                        detail: if redaction.is_some() {
                            "it was redacted, and changed since: its content is not what the redaction left".into()
                        } else {
                            "its hash does not match its content and the previous event's hash".into()
                        },
                    },
                );
            }
        }
    }
    progress(checked_events);

    // 2. Every receipt against the events, and every event against the receipts. Only
    // the disagreements come back.
    let checked_receipts = sqlx::query_scalar!(
        r#"SELECT (SELECT count(*) FROM append_receipts) + (SELECT count(*) FROM outbox) AS "n!""#
    )
    .fetch_one(&mut *tx)
    .await?;
    {
        // A full join: every column may be NULL (the `?` overrides say so).
        let mut rows = sqlx::query!(
            r#"WITH appended AS (
                 SELECT a.*
                   FROM append_receipts r,
                        unnest(r.positions, r.aggregate_types, r.aggregate_ids, r.sequences, r.hashes)
                            AS a(position, aggregate_type, aggregate_id, sequence, hash)
                  UNION ALL
                 SELECT position, aggregate_type, aggregate_id, sequence, hash FROM outbox)
             SELECT a.position AS "a_position?", a.aggregate_type AS "a_type?", a.aggregate_id AS "a_id?",
                    a.sequence AS "a_sequence?",
                    e.position AS "e_position?", e.aggregate_type AS "e_type?", e.aggregate_id AS "e_id?",
                    e.sequence AS "e_sequence?",
                    a.hash IS NOT DISTINCT FROM e.hash AS same_hash
               FROM appended a
               FULL JOIN events e ON e.position = a.position
              WHERE a.position IS NULL OR e.position IS NULL
                 OR (a.aggregate_type, a.aggregate_id, a.sequence, a.hash)
                    IS DISTINCT FROM (e.aggregate_type, e.aggregate_id, e.sequence, e.hash)
              ORDER BY coalesce(a.position, e.position)"#
        )
        .fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            let appended = row.a_position;
            let stored = row.e_position;
            let a = (row.a_type, row.a_id, row.a_sequence);
            let e = (row.e_type, row.e_id, row.e_sequence);
            let problem = match (appended, stored, a, e) {
                (Some(position), None, (Some(t), Some(i), Some(s)), _) => Problem {
                    kind: ProblemKind::Deleted,
                    aggregate_type: t,
                    aggregate_id: i,
                    sequence: s,
                    position: Some(position),
                    detail: format!("appended at position {position}, and gone"),
                },
                (None, Some(position), _, (Some(t), Some(i), Some(s))) => Problem {
                    kind: ProblemKind::Inserted,
                    aggregate_type: t,
                    aggregate_id: i,
                    sequence: s,
                    position: Some(position),
                    detail: "no append receipt names it: it was not appended through the store"
                        .into(),
                },
                (
                    Some(position),
                    Some(_),
                    (Some(at), Some(ai), Some(as_)),
                    (Some(t), Some(i), Some(s)),
                ) if (&at, &ai, as_) != (&t, &i, s) => Problem {
                    kind: ProblemKind::Reordered,
                    aggregate_type: t.clone(),
                    aggregate_id: i.clone(),
                    sequence: s,
                    position: Some(position),
                    detail: if (&at, &ai) == (&t, &i) {
                        format!("appended as sequence {as_}, now sequence {s}")
                    } else {
                        format!("appended as sequence {as_} of {at}/{ai}, now in {t}/{i}")
                    },
                },
                (Some(position), Some(_), _, (Some(t), Some(i), Some(s))) => Problem {
                    kind: ProblemKind::Modified,
                    aggregate_type: t,
                    aggregate_id: i,
                    sequence: s,
                    position: Some(position),
                    detail: "its hash is not the one recorded when it was appended".into(),
                },
                _ => continue,
            };
            found.add(Source::Receipt, problem);
        }
    }
    tx.commit().await?;

    found.drop_echoes();
    let problems: Vec<Problem> = found.problems.into_values().map(|(_, p)| p).collect();
    Ok(Report {
        ok: problems.is_empty() && !found.truncated,
        checked_events,
        checked_receipts: u64::try_from(checked_receipts).unwrap_or(0),
        redacted_events,
        problems,
        problems_truncated: found.truncated,
    })
}

/// The redactions the store recorded in its own history: position → the hash of the
/// redacted event's content as the redaction left it. Read from the `EventsRedacted`
/// facts (chained and receipted, so a forged one is itself found), never from the
/// `redactions` table, a convenience for exports that anyone who can write to the
/// events could write to as well.
async fn recorded_redactions(conn: &mut sqlx::PgConnection) -> sqlx::Result<HashMap<i64, Vec<u8>>> {
    let rows = sqlx::query!(
        r#"SELECT entry ->> 'position' AS "position?", entry ->> 'hash' AS "hash?"
           FROM events,
                jsonb_array_elements(CASE jsonb_typeof(payload -> 'EventsRedacted' -> 'events')
                                     WHEN 'array' THEN payload -> 'EventsRedacted' -> 'events'
                                     ELSE '[]' END) AS entry
          WHERE aggregate_type = 'store' AND aggregate_id = 'redactions'
            AND event_type = 'EventsRedacted'"#
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| Some((row.position?.parse().ok()?, hex_decode(&row.hash?)?)))
        .collect())
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
