//! Taking booking facts in: which fact is worth a message, and the transaction that
//! records it in the sent log together with how far each booking's stream was taken.
//!
//! Kafka and the sweep both bring facts here. A fact at or below its stream's recorded
//! sequence was taken already (a replay, a second consumer group, a broker that lost
//! its data and got everything again from the relay): nothing happens. A fact further
//! on than the next one means Kafka skipped some (tansu does, resuming inside a stored
//! batch): the missing ones are read from the store, the truth, and taken in first.

use std::collections::{HashMap, HashSet};

use domain::booking::{BookingFact, Reason};
use platform::kafka::WireEvent;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::app::Context;
use crate::mail::{message_id, Kind};

/// Which message, if any, a booking fact calls for. `cancel_reason` is why the booking
/// was cancelled, when an earlier fact of its stream cancelled it.
///
/// An event's cancellation reaches each booking as that booking's own fact (rejected,
/// or cancelled then refunded, with the reason `event_cancelled`): that fact is the
/// one message the customer gets about it, sent once the money is settled.
pub fn calls_for(fact: &BookingFact, cancel_reason: Option<Reason>) -> Option<Kind> {
    match fact {
        BookingFact::BookingConfirmed => Some(Kind::BookingConfirmed),
        BookingFact::BookingRejected {
            reason: Reason::EventCancelled,
        } => Some(Kind::EventCancelled),
        BookingFact::BookingRejected { .. } => Some(Kind::BookingRejected),
        BookingFact::BookingRefunded { .. } => match cancel_reason {
            Some(Reason::EventCancelled) => Some(Kind::EventCancelled),
            _ => Some(Kind::BookingCancelled),
        },
        // The cancellation is told when the refund is done, in one message.
        BookingFact::BookingRequested { .. } | BookingFact::BookingCancelled { .. } => None,
    }
}

/// A stored booking fact, decoded as this build reads it.
pub fn decode(event: &WireEvent) -> anyhow::Result<BookingFact> {
    anyhow::ensure!(
        domain::upcast::readable(&event.event_type, &event.event_version),
        "{} {} is newer than this build reads",
        event.event_type,
        event.event_version
    );
    let payload = domain::upcast::upcast(
        event.event_type.clone(),
        event.event_version.clone(),
        event.payload.clone(),
    );
    Ok(serde_json::from_value(payload)?)
}

/// What one intake did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Intake {
    /// Facts taken in for the first time (gap fills included).
    pub facts: u64,
    /// Notifications recorded.
    pub notifications: u64,
}

/// Where a stream stands.
#[derive(Debug, Clone, Copy, Default)]
struct Stream {
    sequence: i64,
    cancel_reason: Option<Reason>,
}

/// Takes the booking facts among `events` in, inside `tx` (the caller commits, and
/// only then lets Kafka's offsets move on).
pub async fn take_in(
    tx: &mut Transaction<'_, Postgres>,
    ctx: &Context,
    events: &[WireEvent],
) -> anyhow::Result<Intake> {
    let mut by_booking: Vec<(Uuid, Vec<&WireEvent>)> = Vec::new();
    for event in events.iter().filter(|e| e.aggregate_type == "booking") {
        let Ok(id) = event.aggregate_id.parse::<Uuid>() else {
            tracing::error!(aggregate_id = %event.aggregate_id, "a booking whose id is not a UUID; skipped");
            continue;
        };
        match by_booking.iter_mut().find(|(b, _)| *b == id) {
            Some((_, list)) => list.push(event),
            None => by_booking.push((id, vec![event])),
        }
    }
    if by_booking.is_empty() {
        return Ok(Intake::default());
    }
    // Every statement below locks and writes rows in booking-id order, so the consumer
    // and the sweep (or two processes) taking in the same new bookings wait for each
    // other instead of deadlocking.
    by_booking.sort_by_key(|(id, _)| *id);
    let ids: Vec<Uuid> = by_booking.iter().map(|(id, _)| *id).collect();
    let rows: Vec<(Uuid, i64, Option<String>)> = sqlx::query_as(
        "SELECT booking_id, sequence, cancel_reason FROM streams
          WHERE booking_id = ANY($1) ORDER BY booking_id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    let mut streams: HashMap<Uuid, Stream> = rows
        .into_iter()
        .map(|(id, sequence, reason)| {
            let cancel_reason = reason.and_then(|r| serde_json::from_value(r.into()).ok());
            (
                id,
                Stream {
                    sequence,
                    cancel_reason,
                },
            )
        })
        .collect();

    let mut intake = Intake::default();
    let mut notes = Notes::default();
    let batch: Vec<i64> = by_booking
        .iter()
        .flat_map(|(_, events)| events.iter().map(|e| e.position))
        .collect();
    let mut late = late_news(ctx, batch).await?;
    let mut moved: Vec<Uuid> = Vec::new();
    for (id, stream_events) in &by_booking {
        let mut stream = streams.get(id).copied().unwrap_or_default();
        let before = stream.sequence;
        'facts: for event in stream_events {
            if event.sequence <= stream.sequence {
                continue; // taken already
            }
            let mut next: Vec<WireEvent> = Vec::new();
            if event.sequence > stream.sequence + 1 {
                next = ctx
                    .store
                    .stream("booking", *id, stream.sequence, event.sequence - 1)
                    .await?;
                late.extend(late_news(ctx, next.iter().map(|e| e.position).collect()).await?);
            }
            next.push((*event).clone());
            for fact in &next {
                // A fact this build cannot read (a newer version, in a rolling deploy),
                // or a gap the store cannot fill: the stream stops here and the other
                // bookings go on. Its next fact brings it back (a newer build reads it).
                let stopped = if fact.sequence != stream.sequence + 1 {
                    Some(format!("the store lacks fact {}", stream.sequence + 1))
                } else {
                    let news = fact.position > ctx.since.position || late.contains(&fact.position);
                    step(ctx, *id, fact, news, &mut stream, &mut notes)
                        .err()
                        .map(|e| format!("{e:#}"))
                };
                if let Some(cause) = stopped {
                    tracing::error!(booking = %id, sequence = fact.sequence, %cause, "a booking's stream stops here until it can be read");
                    break 'facts;
                }
                intake.facts += 1;
            }
        }
        if stream.sequence > before {
            streams.insert(*id, stream);
            moved.push(*id);
        }
    }

    if !notes.booking_ids.is_empty() {
        intake.notifications = sqlx::query(
            "INSERT INTO notifications (booking_id, sequence, position, kind, message_id)
             SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::text[])
             ON CONFLICT (booking_id, sequence) DO NOTHING",
        )
        .bind(&notes.booking_ids)
        .bind(&notes.sequences)
        .bind(&notes.positions)
        .bind(&notes.kinds)
        .bind(&notes.message_ids)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    if !moved.is_empty() {
        let sequences: Vec<i64> = moved.iter().map(|id| streams[id].sequence).collect();
        let reasons: Vec<Option<String>> = moved
            .iter()
            .map(|id| streams[id].cancel_reason.map(|r| r.as_str().to_owned()))
            .collect();
        // A stream never goes back: the sweep and the consumer may race on a new one.
        sqlx::query(
            "INSERT INTO streams (booking_id, sequence, cancel_reason)
             SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[])
             ON CONFLICT (booking_id) DO UPDATE
                SET sequence = EXCLUDED.sequence, cancel_reason = EXCLUDED.cancel_reason
              WHERE streams.sequence < EXCLUDED.sequence",
        )
        .bind(&moved)
        .bind(&sequences)
        .bind(&reasons)
        .execute(&mut **tx)
        .await?;
    }
    Ok(intake)
}

/// The notifications an intake records, column by column.
#[derive(Default)]
struct Notes {
    booking_ids: Vec<Uuid>,
    sequences: Vec<i64>,
    positions: Vec<i64>,
    kinds: Vec<&'static str>,
    message_ids: Vec<String>,
}

/// Of `positions`, those of facts recorded around the notifier's first start that
/// are news all the same: at or before its `since.position`, but of a transaction its
/// first snapshot did not see committed (it committed after the start).
async fn late_news(ctx: &Context, mut positions: Vec<i64>) -> sqlx::Result<HashSet<i64>> {
    positions.retain(|p| *p <= ctx.since.position);
    if positions.is_empty() {
        return Ok(HashSet::new());
    }
    let late: Vec<i64> = sqlx::query_scalar(
        "SELECT position FROM events
          WHERE position = ANY($1) AND NOT pg_visible_in_snapshot(transaction_id, $2::pg_snapshot)",
    )
    .bind(&positions)
    .bind(&ctx.since.snapshot)
    .fetch_all(ctx.store.pool())
    .await?;
    Ok(late.into_iter().collect())
}

/// Takes one fact, the next of its stream, in; `news` when it happened after the
/// notifier first ran.
fn step(
    ctx: &Context,
    booking_id: Uuid,
    event: &WireEvent,
    news: bool,
    stream: &mut Stream,
    notes: &mut Notes,
) -> anyhow::Result<()> {
    let fact = decode(event)
        .map_err(|err| anyhow::anyhow!("booking {booking_id} fact {}: {err:#}", event.sequence))?;
    if let BookingFact::BookingCancelled { reason } = fact {
        stream.cancel_reason = Some(reason);
    }
    // Facts recorded before the notifier first ran are history, not news.
    if news {
        if let Some(kind) = calls_for(&fact, stream.cancel_reason) {
            notes.booking_ids.push(booking_id);
            notes.sequences.push(event.sequence);
            notes.positions.push(event.position);
            notes.kinds.push(kind.as_str());
            notes
                .message_ids
                .push(message_id(booking_id, event.sequence, &ctx.mail_domain));
        }
    }
    stream.sequence = event.sequence;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_turn_of_a_booking_calls_for_one_message_at_most() {
        let refunded = BookingFact::BookingRefunded { amount_cents: 100 };
        let cases = [
            (
                BookingFact::BookingConfirmed,
                None,
                Some(Kind::BookingConfirmed),
            ),
            (
                BookingFact::BookingRejected {
                    reason: Reason::SoldOut,
                },
                None,
                Some(Kind::BookingRejected),
            ),
            (
                BookingFact::BookingRejected {
                    reason: Reason::EventCancelled,
                },
                None,
                Some(Kind::EventCancelled),
            ),
            (
                BookingFact::BookingCancelled {
                    reason: Reason::CancelledByUser,
                },
                None,
                None,
            ),
            (
                refunded.clone(),
                Some(Reason::CancelledByUser),
                Some(Kind::BookingCancelled),
            ),
            (
                refunded,
                Some(Reason::EventCancelled),
                Some(Kind::EventCancelled),
            ),
        ];
        for (fact, reason, expected) in cases {
            assert_eq!(
                calls_for(&fact, reason),
                expected,
                "{fact:?} after {reason:?}"
            );
        }
    }
}
