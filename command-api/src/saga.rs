//! The saga runner: carries each booking through seat hold, payment and confirmation,
//! and compensates when a step fails. The decisions are the domain's
//! (`domain::saga::decide`); this module carries them out.
//!
//! - **State in Postgres.** A booking's saga is a row of `booking_sagas`, started by the
//!   append trigger in the transaction that records the booking (see the `0003_sagas`
//!   migration), and moved on by it when a cancellation arrives. Each row says the step,
//!   the hold's deadline, when it is next due.
//! - **Claims with leases.** Every command-api process runs a runner. A runner claims
//!   due rows (`FOR UPDATE SKIP LOCKED`, then a lease of [`LEASE`]), and carries each
//!   saga as far as it can go now, saving the step after every one. A runner killed
//!   mid-step leaves a lease that expires; another runner (or the same, restarted) takes
//!   the saga up at the step saved, and runs it again: every step is idempotent (the seat
//!   ledger and the booking ignore what already happened, the gateway takes the booking
//!   as its idempotency key). No seat is held twice, no card charged twice, no hold lost.
//! - **Fenced saves.** A fact from outside (a cancellation) bumps the row's version; a
//!   runner still busy with the old step finds its save refused and lets go.
//! - **Deadlines.** A saga waiting on the payment is never due later than its hold's
//!   deadline; at the deadline the hold is released and the booking rejected
//!   `hold_expired`. The deadline is stored, so it survives restarts.
//! - **The user first**: a confirmation confirms the booking before it captures the
//!   payment, and a release gives the seats back and rejects the booking before it
//!   voids the payment; the gateway call may then wait for an unreachable gateway
//!   (retried with back-off until it answers). A release that cannot have an
//!   authorization behind it (sold out, declined) does not call the gateway at all.
//! - **Event cancellations** have a row of their own: every booking holding seats of the
//!   event is rejected or cancelled (`event_cancelled`), which moves those bookings'
//!   sagas to release or refund.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use domain::booking::{Booking, BookingCommand, BookingError, BookingStatus, Reason};
use domain::event::{Event, EventCommand, EventError, RefusalReason, ReservationState};
use domain::saga::{self, decide, Decision, Observation, Step};
use domain::values::Seats;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::SagaConfig;
use crate::metrics::{Metrics, ReasonLabel, StatusLabel, StepLabels};
use crate::payment::{Authorization, PaymentGateway, Unavailable};
use crate::store::{AggregateStore, ExecuteError};

/// How long a claimed saga is this runner's before another may take it. A saga waiting
/// on the payment is leased until its hold's deadline (and a second) at most: a runner
/// that dies then does not keep a hold past its deadline, and a live one bounds its
/// gateway call by the deadline, so a successor never acts while it still might.
const LEASE: Duration = Duration::from_secs(10);

/// How often due sagas are looked for when nothing wakes the runner.
const POLL: Duration = Duration::from_millis(200);

/// The longest wait before a failed step is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// After SIGTERM, how long running sagas may take to reach a step boundary.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A claimed booking saga.
#[derive(Debug, Clone, sqlx::FromRow)]
struct BookingSaga {
    booking_id: String,
    event_id: String,
    seats: i32,
    amount_cents: i64,
    currency: String,
    card_token: String,
    correlation_id: String,
    step: String,
    reason: Option<String>,
    outcome: Option<String>,
    hold_deadline: Option<DateTime<Utc>>,
    attempts: i32,
    version: i64,
}

impl BookingSaga {
    fn step(&self) -> anyhow::Result<Step> {
        let mut stored = serde_json::json!({ "step": self.step });
        if let Some(reason) = &self.reason {
            stored["reason"] = reason.as_str().into();
        }
        if let Some(outcome) = &self.outcome {
            stored["outcome"] = outcome.as_str().into();
        }
        serde_json::from_value(stored)
            .with_context(|| format!("saga {} has an unknown step", self.booking_id))
    }
}

/// Runs the sagas of this process.
pub struct SagaRunner {
    pool: PgPool,
    events: AggregateStore<Event>,
    bookings: AggregateStore<Booking>,
    gateway: Arc<dyn PaymentGateway>,
    config: SagaConfig,
    metrics: Metrics,
}

impl SagaRunner {
    /// A runner on the store behind `pool`.
    pub fn new(
        pool: PgPool,
        events: AggregateStore<Event>,
        bookings: AggregateStore<Booking>,
        gateway: Arc<dyn PaymentGateway>,
        config: SagaConfig,
        metrics: Metrics,
    ) -> Self {
        Self {
            pool,
            events,
            bookings,
            gateway,
            config,
            metrics,
        }
    }

    /// Claims and runs due sagas until `shutdown`; wakes when this process appends.
    pub async fn run(
        self: Arc<Self>,
        mut appended: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) {
        let mut running = JoinSet::new();
        let mut counted = Instant::now() - Duration::from_secs(60);
        while !shutdown.is_cancelled() {
            while running.try_join_next().is_some() {}
            let room = self.config.concurrency.saturating_sub(running.len());
            if room > 0 {
                match self.claim_bookings(room).await {
                    Ok(sagas) => {
                        for saga in sagas {
                            running.spawn(self.clone().drive(saga));
                        }
                    }
                    Err(err) => tracing::warn!(cause = format!("{err:#}"), "cannot claim sagas"),
                }
                match self.claim_cancellations().await {
                    Ok(events) => {
                        for event in events {
                            running.spawn(self.clone().cancel_event(event));
                        }
                    }
                    Err(err) => tracing::warn!(
                        cause = format!("{err:#}"),
                        "cannot claim event cancellations"
                    ),
                }
            }
            if counted.elapsed() > Duration::from_secs(2) {
                if let Ok(n) = sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM booking_sagas WHERE step <> 'done'",
                )
                .fetch_one(&self.pool)
                .await
                {
                    self.metrics.sagas_in_flight.set(n);
                }
                counted = Instant::now();
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                changed = appended.changed(), if room > 0 => {
                    if changed.is_err() { break }
                    // Let a burst of appends become one claim.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                _ = running.join_next(), if !running.is_empty() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
        // Sagas save after every step; the ones still running get a moment to reach
        // a step boundary, the rest are taken up again when their lease expires.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        running.abort_all();
        tracing::info!("saga runner stopped");
    }

    async fn claim_bookings(&self, limit: usize) -> anyhow::Result<Vec<BookingSaga>> {
        Ok(sqlx::query_as(
            // A claim bumps the version too: saves of an earlier holder whose lease ran
            // out are refused.
            "UPDATE booking_sagas
                SET version = version + 1,
                    lease_until = CASE WHEN step = 'authorize' AND hold_deadline IS NOT NULL
                                       THEN least(now() + make_interval(secs => $2), hold_deadline + interval '1 second')
                                       ELSE now() + make_interval(secs => $2) END
              WHERE booking_id IN (
                    SELECT booking_id FROM booking_sagas
                     WHERE step <> 'done' AND due_at <= now()
                       AND (lease_until IS NULL OR lease_until < now())
                     ORDER BY due_at
                     LIMIT $1
                       FOR UPDATE SKIP LOCKED)
             RETURNING booking_id, event_id, seats, amount_cents, currency, card_token, correlation_id,
                       step, reason, outcome, hold_deadline, attempts, version",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(LEASE.as_secs_f64())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Carries one saga as far as it goes now.
    async fn drive(self: Arc<Self>, mut saga: BookingSaga) {
        loop {
            let step = match saga.step() {
                Ok(step) => step,
                Err(err) => {
                    tracing::error!(cause = format!("{err:#}"), "cannot read a saga");
                    return;
                }
            };
            if let Step::Done { .. } = step {
                return;
            }
            let observed = self.carry_out(&saga, step).await;
            let name = step.name();
            let saved = match observed.map(|o| (o, decide(step, o))) {
                Err(err) => {
                    self.count_step(name, "failed");
                    tracing::warn!(booking_id = %saga.booking_id, step = name, cause = format!("{err:#}"), "saga step failed; will try again");
                    self.retry(&mut saga, step, Some(format!("{err:#}"))).await
                }
                Ok((observation, Decision::Retry)) => {
                    self.count_step(name, "retried");
                    tracing::debug!(booking_id = %saga.booking_id, step = name, ?observation, "saga step to try again");
                    self.retry(&mut saga, step, None).await
                }
                Ok((_, Decision::Go(next))) => {
                    self.count_step(name, "advanced");
                    let saved = self.advance(&mut saga, next).await;
                    if saved.as_ref().is_ok_and(|s| *s) {
                        self.note(next);
                    }
                    saved.map(|s| s && !matches!(next, Step::Done { .. }))
                }
            };
            match saved {
                Ok(true) => {}       // on to the next step at once
                Ok(false) => return, // due later, done, or moved on by a cancellation
                Err(err) => {
                    tracing::warn!(booking_id = %saga.booking_id, cause = format!("{err:#}"), "cannot save a saga; its lease will expire");
                    return;
                }
            }
        }
    }

    /// Metrics for a step just entered.
    fn note(&self, step: Step) {
        match step {
            Step::Release { reason } => {
                self.metrics
                    .compensations
                    .get_or_create(&ReasonLabel {
                        reason: reason.as_str(),
                    })
                    .inc();
                if reason == Reason::HoldExpired {
                    self.metrics.deadlines_fired.inc();
                }
            }
            Step::Refund => {
                self.metrics
                    .compensations
                    .get_or_create(&ReasonLabel {
                        reason: "cancelled",
                    })
                    .inc();
            }
            Step::Done { outcome } => {
                self.metrics
                    .bookings_final
                    .get_or_create(&StatusLabel {
                        status: outcome.as_str(),
                    })
                    .inc();
            }
            _ => {}
        }
    }

    fn count_step(&self, step: &'static str, outcome: &'static str) {
        self.metrics
            .saga_steps
            .get_or_create(&StepLabels { step, outcome })
            .inc();
    }

    /// Saves `next` and keeps the lease. Returns false when the saga was moved on from
    /// outside meanwhile (the save is refused; the saga is taken up again as it now is).
    async fn advance(&self, saga: &mut BookingSaga, next: Step) -> anyhow::Result<bool> {
        let hold_deadline = match next {
            Step::Authorize => Some(Utc::now() + chrono::Duration::from_std(self.config.hold_ttl)?),
            _ => saga.hold_deadline,
        };
        let (reason, outcome) = match next {
            Step::Release { reason } => (Some(reason.as_str().to_owned()), None),
            Step::Done { outcome } => (saga.reason.clone(), Some(outcome.as_str().to_owned())),
            _ => (None, None),
        };
        let saved = sqlx::query(
            "UPDATE booking_sagas
                SET step = $3, reason = $4, outcome = $5, hold_deadline = $6, attempts = 0,
                    due_at = now(), last_error = NULL, updated_at = now(),
                    lease_until = CASE WHEN $3 = 'done' THEN NULL
                                       WHEN $6::timestamptz IS NOT NULL AND $3 = 'authorize'
                                       THEN least(now() + make_interval(secs => $7), $6 + interval '1 second')
                                       ELSE now() + make_interval(secs => $7) END
              WHERE booking_id = $1 AND version = $2",
        )
        .bind(&saga.booking_id)
        .bind(saga.version)
        .bind(next.name())
        .bind(&reason)
        .bind(&outcome)
        .bind(hold_deadline)
        .bind(LEASE.as_secs_f64())
        .execute(&self.pool)
        .await?
        .rows_affected();
        saga.step = next.name().to_owned();
        saga.reason = reason;
        saga.outcome = outcome;
        saga.hold_deadline = hold_deadline;
        saga.attempts = 0;
        Ok(saved == 1)
    }

    /// Saves the saga to run `step` again later, with back-off; a hold's deadline is
    /// never passed by. Always ends this runner's turn.
    async fn retry(
        &self,
        saga: &mut BookingSaga,
        step: Step,
        error: Option<String>,
    ) -> anyhow::Result<bool> {
        let attempts = saga.attempts.saturating_add(1);
        let backoff = Duration::from_millis(100u64.saturating_mul(1 << attempts.clamp(0, 9)))
            .min(MAX_BACKOFF);
        let mut due = Utc::now() + chrono::Duration::from_std(backoff)?;
        if let (Step::Authorize, Some(deadline)) = (step, saga.hold_deadline) {
            due = due.min(deadline);
        }
        sqlx::query(
            "UPDATE booking_sagas SET attempts = $3, due_at = $4, lease_until = NULL, last_error = $5, updated_at = now()
              WHERE booking_id = $1 AND version = $2",
        )
        .bind(&saga.booking_id)
        .bind(saga.version)
        .bind(attempts)
        .bind(due)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(false)
    }

    /// A gateway call that gives up after `PAYMENT_TIMEOUT_MS`, as unavailable (the
    /// step is retried; void and refund are idempotent at the gateway).
    async fn bounded(
        &self,
        call: impl std::future::Future<Output = Result<(), Unavailable>>,
    ) -> Result<(), Unavailable> {
        tokio::time::timeout(self.config.payment_timeout, call)
            .await
            .unwrap_or_else(|_| Err(Unavailable("the gateway did not answer in time".into())))
    }

    fn metadata(&self, saga: &BookingSaga, step: Step) -> HashMap<String, String> {
        HashMap::from([
            ("user_id".to_owned(), "system:saga".to_owned()),
            ("correlation_id".to_owned(), saga.correlation_id.clone()),
            (
                "causation_id".to_owned(),
                format!("saga:{}:{}", saga.booking_id, step.name()),
            ),
        ])
    }

    /// Does what `step` says, and tells what it saw.
    async fn carry_out(&self, saga: &BookingSaga, step: Step) -> anyhow::Result<Observation> {
        let booking_id: Uuid = saga
            .booking_id
            .parse()
            .context("a booking id that is not a UUID")?;
        let metadata = self.metadata(saga, step);
        match step {
            Step::Reserve => {
                if !self.pending(&saga.booking_id).await? {
                    return Ok(Observation::BookingClosed);
                }
                let seats = Seats::parse(i64::from(saga.seats))
                    .map_err(|e| anyhow!("stored seats: {e}"))?;
                let command = EventCommand::ReserveSeats { booking_id, seats };
                event_result(
                    self.events
                        .execute(&saga.event_id, command, &metadata)
                        .await,
                )?;
                // The ledger as just appended: no round trip.
                let line = self
                    .events
                    .read_recent(&saga.event_id, Duration::from_secs(1), |event, _| {
                        event.reservation(booking_id)
                    })
                    .await?;
                Ok(match line.map(|l| (l.state, l.refused)) {
                    Some((ReservationState::Held | ReservationState::Sold, _)) => {
                        Observation::SeatsHeld
                    }
                    Some((ReservationState::Refused, reason)) => {
                        Observation::SeatsRefused(reason.unwrap_or(RefusalReason::SoldOut))
                    }
                    Some((ReservationState::Released, _)) => Observation::SeatsGone,
                    None => return Err(anyhow!("the event recorded no line for the booking")),
                })
            }
            Step::Authorize => {
                if !self.pending(&saga.booking_id).await? {
                    return Ok(Observation::BookingClosed);
                }
                let deadline = saga
                    .hold_deadline
                    .context("a saga authorizing without a deadline")?;
                let left = (deadline - Utc::now()).to_std().unwrap_or_default();
                if left.is_zero() {
                    return Ok(Observation::DeadlinePassed);
                }
                let call = self.gateway.authorize(
                    &saga.booking_id,
                    saga.amount_cents,
                    &saga.currency,
                    &saga.card_token,
                );
                Ok(
                    match tokio::time::timeout(self.config.payment_timeout.min(left), call).await {
                        Ok(Ok(Authorization::Authorized)) => Observation::PaymentAuthorized,
                        Ok(Ok(Authorization::Declined)) => Observation::PaymentDeclined,
                        Ok(Err(unavailable)) => {
                            tracing::info!(booking_id = %saga.booking_id, cause = %unavailable, "payment gateway unavailable");
                            Observation::GatewayUnavailable
                        }
                        Err(_) if Utc::now() >= deadline => Observation::DeadlinePassed,
                        Err(_) => Observation::GatewayUnavailable,
                    },
                )
            }
            Step::Confirm => {
                let sold = self
                    .events
                    .execute(
                        &saga.event_id,
                        EventCommand::SellSeats { booking_id },
                        &metadata,
                    )
                    .await;
                if let Err(ExecuteError::Domain(EventError::NotHeld(_))) = sold {
                    return Ok(Observation::SeatsGone);
                }
                event_result(sold)?;
                match self
                    .bookings
                    .execute(&saga.booking_id, BookingCommand::ConfirmBooking, &metadata)
                    .await
                {
                    Err(ExecuteError::Domain(BookingError::NotPending(_))) => {
                        return Ok(Observation::BookingClosed)
                    }
                    other => booking_result(other)?,
                }
                // Confirmed, as the user sees it; now take the money. Until the gateway
                // answers, the step is run again (the ledger and the booking ignore what
                // they already did) and the capture asked again.
                if let Err(unavailable) = self.bounded(self.gateway.capture(&saga.booking_id)).await
                {
                    tracing::info!(booking_id = %saga.booking_id, cause = %unavailable, "cannot capture the payment yet");
                    return Ok(Observation::GatewayUnavailable);
                }
                Ok(Observation::Confirmed)
            }
            Step::Release { reason } => {
                // Seats and the booking first: the user learns at once. The payment is
                // voided after (an authorization may have gone through unseen, during a
                // timeout), retried until the gateway takes it.
                let release = EventCommand::ReleaseSeats { booking_id };
                event_result(
                    self.events
                        .execute(&saga.event_id, release, &metadata)
                        .await,
                )?;
                let reject = BookingCommand::RejectBooking { reason };
                match self
                    .bookings
                    .execute(&saga.booking_id, reject, &metadata)
                    .await
                {
                    // Closed otherwise already (rejected or cancelled with its event).
                    Err(ExecuteError::Domain(BookingError::NotPending(_))) => {}
                    other => booking_result(other)?,
                }
                if saga::voids_payment(reason) {
                    if let Err(unavailable) =
                        self.bounded(self.gateway.void(&saga.booking_id)).await
                    {
                        tracing::info!(booking_id = %saga.booking_id, cause = %unavailable, "cannot void the payment yet");
                        return Ok(Observation::GatewayUnavailable);
                    }
                }
                Ok(Observation::Compensated)
            }
            Step::Refund => {
                let release = EventCommand::ReleaseSeats { booking_id };
                event_result(
                    self.events
                        .execute(&saga.event_id, release, &metadata)
                        .await,
                )?;
                if let Err(unavailable) = self.bounded(self.gateway.refund(&saga.booking_id)).await
                {
                    tracing::info!(booking_id = %saga.booking_id, cause = %unavailable, "cannot refund yet");
                    return Ok(Observation::GatewayUnavailable);
                }
                let refund = BookingCommand::RecordRefund {
                    amount_cents: saga.amount_cents,
                };
                booking_result(
                    self.bookings
                        .execute(&saga.booking_id, refund, &metadata)
                        .await,
                )
                .map(|()| Observation::Compensated)
            }
            Step::Done { .. } => Ok(Observation::Compensated),
        }
    }

    /// Whether the booking is still pending.
    async fn pending(&self, booking_id: &str) -> anyhow::Result<bool> {
        let status = self
            .bookings
            .read(booking_id, |booking, _| booking.state().map(|s| s.status))
            .await?;
        Ok(status == Some(BookingStatus::Pending))
    }

    async fn claim_cancellations(&self) -> anyhow::Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "UPDATE event_cancellation_sagas SET lease_until = now() + make_interval(secs => $1)
              WHERE event_id IN (
                    SELECT event_id FROM event_cancellation_sagas
                     WHERE NOT done AND due_at <= now() AND (lease_until IS NULL OR lease_until < now())
                     LIMIT 8
                       FOR UPDATE SKIP LOCKED)
             RETURNING event_id, correlation_id",
        )
        .bind(LEASE.as_secs_f64())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Rejects or cancels every booking holding seats of a cancelled event.
    async fn cancel_event(self: Arc<Self>, (event_id, correlation_id): (String, String)) {
        let outcome = async {
            let holders: Vec<Uuid> = self
                .events
                .read(&event_id, |event, _| event.seat_holders().collect())
                .await?;
            let metadata = HashMap::from([
                ("user_id".to_owned(), "system:saga".to_owned()),
                ("correlation_id".to_owned(), correlation_id.clone()),
                (
                    "causation_id".to_owned(),
                    format!("saga:event:{event_id}:cancel"),
                ),
            ]);
            for booking in &holders {
                booking_result(
                    self.bookings
                        .execute(
                            &booking.to_string(),
                            BookingCommand::CancelForEvent,
                            &metadata,
                        )
                        .await,
                )?;
            }
            anyhow::Ok(holders.len())
        }
        .await;
        let saved = match outcome {
            Ok(bookings) => {
                self.count_step("cancel_event", "advanced");
                tracing::info!(%event_id, bookings, "event cancelled: its bookings are being compensated");
                sqlx::query("UPDATE event_cancellation_sagas SET done = true, lease_until = NULL, updated_at = now() WHERE event_id = $1")
                    .bind(&event_id)
                    .execute(&self.pool)
                    .await
            }
            Err(err) => {
                self.count_step("cancel_event", "failed");
                tracing::warn!(%event_id, cause = format!("{err:#}"), "cannot cancel the event's bookings yet");
                sqlx::query(
                    "UPDATE event_cancellation_sagas
                        SET attempts = attempts + 1, last_error = $2, lease_until = NULL, updated_at = now(),
                            due_at = now() + make_interval(secs => least(30, 0.1 * 2 ^ least(attempts, 9)))
                      WHERE event_id = $1",
                )
                .bind(&event_id)
                .bind(format!("{err:#}"))
                .execute(&self.pool)
                .await
            }
        };
        if let Err(err) = saved {
            tracing::warn!(%event_id, cause = %err, "cannot save an event cancellation; its lease will expire");
        }
    }
}

/// An event command's outcome: a refusal here is a bug or a corrupt store, not a
/// decision, so it is an error (logged, retried with back-off).
fn event_result(
    outcome: Result<crate::store::Committed, ExecuteError<EventError>>,
) -> anyhow::Result<()> {
    outcome.map(drop).map_err(|err| anyhow!("event: {err}"))
}

/// A booking command's outcome, likewise.
fn booking_result(
    outcome: Result<crate::store::Committed, ExecuteError<BookingError>>,
) -> anyhow::Result<()> {
    outcome.map(drop).map_err(|err| anyhow!("booking: {err}"))
}
