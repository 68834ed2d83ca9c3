//! The sender: works through the sent log's due notifications, composes each from the
//! store (the booking's facts, its event, the contact opened with the user's key),
//! hands it to the SMTP server, and records how it ended.
//!
//! A notification is claimed with a lease (`NOTIFIER_LEASE_MS`) only when one of the
//! `NOTIFIER_CONCURRENCY` slots is free to send it at once; the whole SMTP exchange is
//! bounded by `SMTP_TIMEOUT_MS`, well within the lease. The record of its end is fenced
//! by the attempt: a sender whose lease ran out records nothing over another's. A
//! sender that dies between the SMTP server's answer and that record leaves the lease
//! to run out; the notification is then sent again, with the same `Message-ID`: at most
//! one resend per crash, of the messages in flight then. Each notification waits for
//! its own next attempt, and a slow one holds one slot: one customer's failing mail
//! holds up nobody else's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use domain::booking::{BookingFact, Reason};
use domain::event::{EventDetails, EventFact};
use domain::personal::SealedContact;
use lettre::message::Mailbox;
use rand::Rng;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::Context;
use crate::intake::decode;
use crate::log::{self, Claimed, End};
use crate::mail::{self, Kind, View};
use crate::metrics::AttemptLabels;
use crate::smtp::Outcome;

/// Sends until `shutdown`, then waits for the messages in flight (each bounded by
/// `SMTP_TIMEOUT_MS`).
///
/// A notification is claimed only when a slot is free to send it at once, so its lease
/// runs while it is being sent, never while it waits behind others; and a slow answer
/// holds one slot, not the rest of the mail.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let events = Arc::new(EventCache::default());
    let slots = Arc::new(Semaphore::new(ctx.config.send.concurrency));
    let mut in_flight = JoinSet::new();
    while !shutdown.is_cancelled() {
        while in_flight.try_join_next().is_some() {}
        let free = slots.available_permits();
        let claimed = if free == 0 {
            Vec::new()
        } else {
            match log::claim(&ctx.log, free as i64, ctx.config.send.lease).await {
                Ok(claimed) => claimed,
                Err(err) => {
                    tracing::warn!(cause = %err, "cannot take notifications to send");
                    Vec::new()
                }
            }
        };
        let took = claimed.len();
        for claim in claimed {
            // Only this loop takes slots: one is free for each claim.
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                break;
            };
            let (ctx, events) = (ctx.clone(), events.clone());
            in_flight.spawn(async move {
                send_one(&ctx, &events, &claim).await;
                drop(slot);
            });
        }
        if took > 0 && took == free {
            // Every slot is busy: go on when one is free.
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = slots.acquire() => {}
            }
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = ctx.wake.notified() => {}
            // Retries come due on their own.
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    while in_flight.join_next().await.is_some() {}
}

/// Sends one claimed notification and records how it ended.
async fn send_one(ctx: &Context, events: &EventCache, claim: &Claimed) {
    let end = deliver(ctx, events, claim).await;
    // A lost record means a resend when the lease runs out: worth a few tries.
    let mut pause = Duration::from_millis(100);
    for attempt in 1.. {
        match log::record(&ctx.log, claim, &end).await {
            Ok(true) => break,
            Ok(false) => {
                // Another sender took it after our lease ran out, or an operator
                // asked for it again: its record is theirs.
                tracing::warn!(booking = %claim.booking_id, sequence = claim.sequence, "a notification moved on while it was being sent; its end is not recorded");
                return;
            }
            Err(err) if attempt < 5 => {
                tracing::warn!(cause = %err, booking = %claim.booking_id, "cannot record a notification's end; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(err) => {
                // The lease runs out and it is sent again, with the same Message-ID.
                tracing::error!(cause = %err, booking = %claim.booking_id, "cannot record a notification's end");
                return;
            }
        }
    }
    let kind = claim.kind.as_str();
    match &end {
        End::Sent => ctx.metrics.ended(kind, "sent"),
        End::Parked(_) => ctx.metrics.ended(kind, "parked"),
        End::NoContact => ctx.metrics.ended(kind, "no_contact"),
        End::Erased => ctx.metrics.ended(kind, "erased"),
        End::Retry { .. } => {}
    }
}

/// Composes and sends one notification.
async fn deliver(ctx: &Context, events: &EventCache, claim: &Claimed) -> End {
    let composed = match compose(ctx, events, claim).await {
        Ok(composed) => composed,
        Err(err) => return retry_or_park(ctx, claim, format!("cannot compose: {err:#}")),
    };
    let message = match composed {
        Composed::Message(message) => message,
        Composed::NoContact => return End::NoContact,
        Composed::Erased => return End::Erased,
    };
    let started = Instant::now();
    let outcome = ctx.mailer.send(*message).await;
    ctx.metrics
        .send_seconds
        .observe(started.elapsed().as_secs_f64());
    let result = match outcome {
        Outcome::Accepted => "accepted",
        Outcome::Temporary(_) => "temporary",
        Outcome::Permanent(_) => "permanent",
    };
    ctx.metrics
        .attempts
        .get_or_create(&AttemptLabels { result })
        .inc();
    match outcome {
        Outcome::Accepted => End::Sent,
        Outcome::Permanent(answer) => {
            tracing::warn!(booking = %claim.booking_id, kind = claim.kind.as_str(), %answer, "the SMTP server refused a message for good; parked");
            End::Parked(answer)
        }
        Outcome::Temporary(answer) => retry_or_park(ctx, claim, answer),
    }
}

/// Another attempt later (doubling waits, with jitter), or parked after the last.
fn retry_or_park(ctx: &Context, claim: &Claimed, error: String) -> End {
    let send = &ctx.config.send;
    if claim.attempts >= send.max_attempts {
        tracing::warn!(booking = %claim.booking_id, attempts = claim.attempts, %error, "a message kept failing; parked");
        return End::Parked(error);
    }
    let doublings = u32::try_from(claim.attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    let wait = send
        .retry_base
        .saturating_mul(1 << doublings)
        .min(send.retry_max);
    // Up to a fifth less, so messages failing together do not come back together.
    let jitter = rand::rng().random_range(0.8..=1.0);
    tracing::info!(booking = %claim.booking_id, attempts = claim.attempts, %error, "sending failed for now; trying again later");
    End::Retry {
        after: wait.mul_f64(jitter),
        error,
    }
}

/// What composing gave.
enum Composed {
    Message(Box<lettre::Message>),
    /// The booking carries no e-mail address.
    NoContact,
    /// The user's key is destroyed: their contact data is gone, and so is the mail.
    Erased,
}

/// What a booking's facts up to the announced one say.
struct Booking {
    event_id: Uuid,
    user_id: String,
    seats: u32,
    amount_cents: i64,
    currency: String,
    contact: Option<SealedContact>,
    reason: Option<Reason>,
    refunded_cents: i64,
    was_confirmed: bool,
    recorded_at: DateTime<Utc>,
}

async fn compose(ctx: &Context, events: &EventCache, claim: &Claimed) -> anyhow::Result<Composed> {
    let booking = booking(ctx, claim).await?;
    let Some(sealed) = &booking.contact else {
        return Ok(Composed::NoContact);
    };
    let keys = platform::personal::keys(ctx.store.pool(), &[sealed.key_id]).await?;
    let Some(key) = keys.get(&sealed.key_id) else {
        return Ok(Composed::Erased);
    };
    let bound =
        platform::personal::associated_data(&claim.booking_id.to_string(), &booking.user_id);
    let contact = platform::personal::open(key, &bound, sealed)
        .ok_or_else(|| anyhow::anyhow!("the contact data does not open with its key"))?;
    let Some(email) = contact.email.as_deref().and_then(|e| e.parse().ok()) else {
        return Ok(Composed::NoContact);
    };
    let to = Mailbox::new(contact.name.clone(), email);
    let event = events.details(ctx, booking.event_id).await?;
    let organiser_note = if claim.kind == Kind::EventCancelled {
        events.cancellation(ctx, booking.event_id).await?
    } else {
        None
    };
    let view = View {
        kind: claim.kind,
        customer: contact.name.clone().unwrap_or_else(|| to.email.to_string()),
        booking_id: claim.booking_id,
        event_name: event.name.to_string(),
        venue: event.location_name.to_string(),
        hall: event.hall.to_string(),
        starts_at: event.starts_at,
        ends_at: event.ends_at,
        seats: booking.seats,
        amount_cents: booking.amount_cents,
        refunded_cents: booking.refunded_cents,
        currency: booking.currency,
        reason: booking.reason,
        organiser_note,
        was_confirmed: booking.was_confirmed,
        recorded_at: booking.recorded_at,
    };
    let rendered = view.render(&ctx.mail_domain)?;
    let message = mail::message(
        &ctx.config.mail_from,
        to,
        claim.message_id.clone(),
        rendered,
    )?;
    Ok(Composed::Message(Box::new(message)))
}

/// The booking as its facts up to the announced one tell it.
async fn booking(ctx: &Context, claim: &Claimed) -> anyhow::Result<Booking> {
    let facts = ctx
        .store
        .stream("booking", claim.booking_id, 0, claim.sequence)
        .await?;
    let mut booking: Option<Booking> = None;
    for event in &facts {
        let fact = decode(event)?;
        if let BookingFact::BookingRequested {
            event_id,
            user_id,
            seats,
            amount_cents,
            currency,
            contact,
            ..
        } = fact
        {
            booking = Some(Booking {
                event_id,
                user_id,
                seats,
                amount_cents,
                currency: currency.as_str().to_owned(),
                contact,
                reason: None,
                refunded_cents: 0,
                was_confirmed: false,
                recorded_at: Utc::now(),
            });
            continue;
        }
        let Some(b) = booking.as_mut() else {
            anyhow::bail!("booking {} has facts before its request", claim.booking_id);
        };
        match fact {
            BookingFact::BookingConfirmed => b.was_confirmed = true,
            BookingFact::BookingRejected { reason } | BookingFact::BookingCancelled { reason } => {
                b.reason = Some(reason)
            }
            BookingFact::BookingRefunded { amount_cents } => b.refunded_cents = amount_cents,
            BookingFact::BookingRequested { .. } => {}
        }
        if event.sequence == claim.sequence {
            b.recorded_at = event.metadata.recorded_time().unwrap_or_else(Utc::now);
        }
    }
    let booking = booking
        .ok_or_else(|| anyhow::anyhow!("booking {} is not in the store", claim.booking_id))?;
    anyhow::ensure!(
        facts.last().map(|e| e.sequence) == Some(claim.sequence),
        "booking {} lacks fact {} in the store",
        claim.booking_id,
        claim.sequence
    );
    Ok(booking)
}

/// Events as they were scheduled, and why they were cancelled: facts that never change
/// once recorded, kept so that a thousand bookings of one event read its stream once.
#[derive(Default)]
pub struct EventCache {
    details: Mutex<HashMap<Uuid, Arc<EventDetails>>>,
    cancellations: Mutex<HashMap<Uuid, Option<String>>>,
}

/// Entries kept at most; then the cache starts over.
const CACHE: usize = 10_000;

impl EventCache {
    async fn details(&self, ctx: &Context, event_id: Uuid) -> anyhow::Result<Arc<EventDetails>> {
        if let Some(found) = lock(&self.details).get(&event_id) {
            return Ok(found.clone());
        }
        let first = ctx.store.stream("event", event_id, 0, 1).await?;
        let fact = first
            .first()
            .ok_or_else(|| anyhow::anyhow!("event {event_id} is not in the store"))?;
        let payload = domain::upcast::upcast(
            fact.event_type.clone(),
            fact.event_version.clone(),
            fact.payload.clone(),
        );
        let EventFact::EventScheduled(details) = serde_json::from_value(payload)? else {
            anyhow::bail!("event {event_id} does not start with its scheduling");
        };
        let details = Arc::new(details);
        let mut cache = lock(&self.details);
        if cache.len() >= CACHE {
            cache.clear();
        }
        cache.insert(event_id, details.clone());
        Ok(details)
    }

    /// The organiser's reason, once the event is cancelled.
    async fn cancellation(&self, ctx: &Context, event_id: Uuid) -> anyhow::Result<Option<String>> {
        if let Some(found) = lock(&self.cancellations).get(&event_id) {
            return Ok(found.clone());
        }
        let reason = log::event_cancellation(ctx.store.pool(), event_id).await?;
        let mut cache = lock(&self.cancellations);
        if cache.len() >= CACHE {
            cache.clear();
        }
        if reason.is_some() {
            cache.insert(event_id, reason.clone());
        }
        Ok(reason)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
