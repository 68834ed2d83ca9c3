//! The saga runner: carries each booking through seat hold, payment and confirmation,
//! and compensates when a step fails. The decisions are the domain's
//! (`domain::saga::decide`); which fact starts or moves a saga is the domain's too
//! (`domain::policy`). This module carries them out.
//!
//! - **State in Postgres.** A booking's saga is a row of `booking_sagas`, written by
//!   command-api in the statement that records the booking (see [`crate::append`]), and
//!   moved on there when a cancellation arrives. Each row says the step, the hold's
//!   deadline, when it is next due, and the payment intent once authorized.
//! - **Claims with leases.** Every command-api process runs a runner. A runner claims
//!   due rows (`FOR UPDATE SKIP LOCKED`, then a lease of [`LEASE`] and a lease token of
//!   its own), and carries each saga as far as it can go now, saving the step after
//!   every one. A runner killed mid-step leaves a lease that expires; another runner (or
//!   the same, restarted) takes the saga up at the step saved, and runs it again: every
//!   step is idempotent (the seat ledger and the booking ignore what already happened,
//!   the gateway takes the booking as its idempotency key). No seat is held twice, no
//!   card charged twice, no hold lost.
//! - **Fencing.** A fact from outside (a cancellation) moves the row and bumps its
//!   version, but leaves the lease to its holder. Before every call to the gateway the
//!   runner proves, in one statement, that it still holds the lease and the saga has
//!   not moved, and stretches the lease over the call ([`SagaRunner::fence`]); its saves
//!   are refused once the version moved, and then it lets go of the lease. So a runner
//!   that lost its lease cannot act on the gateway or save, and no two runners ever act
//!   on one saga at once: a release starts only after an authorization in flight has
//!   ended. An authorization this side gave up waiting for may still land at the
//!   gateway later; the release voids by key, which the gateway keeps, so such a late
//!   authorization is refused there ("the void wins").
//! - **Deadlines.** A saga waiting on the payment is never due later than its hold's
//!   deadline; at the deadline the hold is released and the booking rejected
//!   `hold_expired`. The deadline is stored, so it survives restarts.
//! - **The user first**: a confirmation confirms the booking before it captures the
//!   payment, and a release gives the seats back and rejects the booking before it
//!   voids the payment; the gateway call may then wait for an unreachable gateway
//!   (retried with back-off until it answers). A release that cannot have an
//!   authorization behind it (sold out, declined) does not call the gateway at all, nor
//!   does anything for a free booking.
//! - **Event cancellations** have a row of their own: every booking holding seats of the
//!   event is rejected or cancelled (`event_cancelled`), which moves those bookings'
//!   sagas to release or refund.
//!
//! What the saga does not see (an authorization whose answer was lost for good, a
//! capture never made) the reconciliation sweep finds in the gateway's books
//! ([`crate::reconcile`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use domain::booking::{Booking, BookingCommand, BookingError, BookingStatus, Reason};
use domain::event::{Event, EventCommand, EventError, RefusalReason, ReservationState};
use domain::metadata::EventMetadata;
use domain::saga::{self, decide, Decision, Observation, Step};
use domain::values::Seats;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::config::SagaConfig;
use crate::metrics::{Metrics, ReasonLabel, StatusLabel, StepLabels};
use crate::payment::{Authorization, AuthorizeRequest, GatewayClient, GatewayError};
use crate::store::{AggregateStore, ExecuteError};

/// How long a claimed saga is this runner's before another may take it; a gateway call
/// stretches it over the call ([`SagaRunner::fence`]). A saga waiting on the payment is
/// leased until its hold's deadline (and a second) at most: a runner that dies then
/// does not keep a hold past its deadline, and a live one bounds its gateway call by
/// the deadline, so a successor never acts while it still might.
const LEASE: Duration = Duration::from_secs(10);

/// The `user_id` of the facts a saga records.
const SAGA_USER: &str = "system:saga";

/// What a fenced call's lease covers besides the call itself.
const FENCE_MARGIN: Duration = Duration::from_secs(1);

/// How often due sagas are looked for when nothing wakes the runner.
const POLL: Duration = Duration::from_millis(200);

/// The longest wait before a failed step is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// After SIGTERM, how long running sagas may take to reach a step boundary.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A claimed booking saga.
#[derive(Debug, Clone)]
struct BookingSaga {
    booking_id: String,
    event_id: String,
    seats: i32,
    amount_cents: i64,
    currency: String,
    /// How to pay: the gateway's payment method.
    payment_method: Option<String>,
    /// The card token of a booking requested before payment methods existed (migration
    /// 0010), kept only until the saga is past its authorization.
    card_token: Option<String>,
    correlation_id: String,
    /// The trace of the request that started or last moved the saga (its steps are
    /// spans of it); none for sagas started before traces were kept.
    traceparent: Option<String>,
    step: String,
    reason: Option<String>,
    outcome: Option<String>,
    hold_deadline: Option<DateTime<Utc>>,
    attempts: i32,
    version: i64,
    lease_token: Option<Uuid>,
    payment_intent: Option<String>,
    /// The last failure, and how many times in a row the step failed that way.
    last_error: Option<String>,
    same_failures: i32,
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

/// The runner no longer holds the saga (its lease ran out, or a fact moved the saga):
/// it must not act on it any more.
#[derive(Debug, thiserror::Error)]
#[error("the saga's lease is no longer this runner's")]
struct Fenced;

/// How a step's save went.
enum Saved {
    /// On to the next step at once.
    Continue,
    /// Due later, or done.
    Stop,
    /// Refused: the saga moved (or the lease ran out) meanwhile.
    Refused,
}

/// Runs the sagas of this process.
pub struct SagaRunner {
    pool: PgPool,
    events: AggregateStore<Event>,
    bookings: AggregateStore<Booking>,
    gateway: GatewayClient,
    config: SagaConfig,
    metrics: Metrics,
}

impl SagaRunner {
    /// A runner on the store behind `pool`.
    pub fn new(
        pool: PgPool,
        events: AggregateStore<Event>,
        bookings: AggregateStore<Booking>,
        gateway: GatewayClient,
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
                if let Ok(counts) = sqlx::query!(
                    r#"SELECT count(*) FILTER (WHERE step <> 'done') AS "in_flight!",
                              (SELECT count(*) FROM booking_sagas WHERE parked_at IS NOT NULL)
                            + (SELECT count(*) FROM event_cancellation_sagas WHERE parked_at IS NOT NULL)
                              AS "parked!"
                         FROM booking_sagas WHERE step <> 'done'"#,
                )
                .fetch_one(&self.pool)
                .await
                {
                    self.metrics.sagas_in_flight.set(counts.in_flight);
                    self.metrics.sagas_parked.set(counts.parked);
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
        // A claim bumps the version too: saves of an earlier holder whose lease ran out
        // are refused.
        Ok(sqlx::query_as!(
            BookingSaga,
            "UPDATE booking_sagas
                SET version = version + 1,
                    lease_token = gen_random_uuid(),
                    lease_until = CASE WHEN step = 'authorize' AND hold_deadline IS NOT NULL
                                       THEN greatest(least(now() + make_interval(secs => $2), hold_deadline + interval '1 second'),
                                                     now() + interval '2 seconds')
                                       ELSE now() + make_interval(secs => $2) END
              WHERE booking_id IN (
                    SELECT booking_id FROM booking_sagas
                     WHERE step <> 'done' AND due_at <= now() AND parked_at IS NULL
                       AND (lease_until IS NULL OR lease_until < now())
                     ORDER BY due_at
                     LIMIT $1
                       FOR UPDATE SKIP LOCKED)
             RETURNING booking_id, event_id, seats, amount_cents, currency, payment_method, card_token, correlation_id,
                       traceparent, step, reason, outcome, hold_deadline, attempts, version, lease_token, payment_intent,
                       last_error, same_failures",
            i64::try_from(limit).unwrap_or(i64::MAX),
            LEASE.as_secs_f64(),
        )
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
            // Each step is a span of the saga's trace; the facts it appends carry it on.
            let span = tracing::info_span!(
                "saga step",
                otel.name = %format_args!("saga {}", step.name()),
                boxoffice.booking_id = %saga.booking_id,
            );
            if let Some(parent) = saga.traceparent.as_deref().and_then(|t| t.parse().ok()) {
                platform::telemetry::continue_trace(&span, &parent);
            }
            let observed = self.carry_out(&mut saga, step).instrument(span).await;
            let name = step.name();
            let saved = match observed.map(|o| (o, decide(step, o))) {
                Err(err) if err.is::<Fenced>() => {
                    self.count_step(name, "fenced");
                    tracing::info!(booking_id = %saga.booking_id, step = name, "the saga moved on or its lease ran out; letting go");
                    self.let_go(&saga).await;
                    return;
                }
                Err(err) => {
                    self.count_step(name, "failed");
                    tracing::warn!(booking_id = %saga.booking_id, correlation_id = %saga.correlation_id, step = name, cause = format!("{err:#}"), "saga step failed; will try again");
                    self.retry(&mut saga, step, Some(format!("{err:#}"))).await
                }
                Ok((observation, Decision::Retry)) => {
                    self.count_step(name, "retried");
                    tracing::debug!(booking_id = %saga.booking_id, step = name, ?observation, "saga step to try again");
                    self.retry(&mut saga, step, None).await
                }
                Ok((_, Decision::Go(next))) => {
                    let saved = self.advance(&mut saga, next).await;
                    if matches!(saved, Ok(Saved::Continue | Saved::Stop)) {
                        self.count_step(name, "advanced");
                        self.note(next);
                    }
                    saved
                }
            };
            match saved {
                Ok(Saved::Continue) => {}
                Ok(Saved::Stop) => return,
                Ok(Saved::Refused) => {
                    self.count_step(name, "refused");
                    tracing::info!(booking_id = %saga.booking_id, step = name, "the saga moved on meanwhile; its save is refused and the runner lets go");
                    self.let_go(&saga).await;
                    return;
                }
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

    /// Saves `next` and keeps the lease (lets it go when the saga is done). Refused
    /// when the saga was moved on from outside meanwhile (it is taken up again as it now
    /// is, once this runner lets go).
    async fn advance(&self, saga: &mut BookingSaga, next: Step) -> anyhow::Result<Saved> {
        let hold_deadline = match next {
            Step::Authorize => Some(Utc::now() + chrono::Duration::from_std(self.config.hold_ttl)?),
            _ => saga.hold_deadline,
        };
        let (reason, outcome) = match next {
            Step::Release { reason } => (Some(reason.as_str().to_owned()), None),
            Step::Done { outcome } => (saga.reason.clone(), Some(outcome.as_str().to_owned())),
            _ => (None, None),
        };
        let saved = sqlx::query!(
            "UPDATE booking_sagas
                SET step = $3, reason = $4, outcome = $5, hold_deadline = $6, attempts = 0,
                    payment_intent = $8, due_at = now(), last_error = NULL, same_failures = 0,
                    updated_at = now(),
                    card_token = CASE WHEN $3 IN ('reserve', 'authorize', 'confirm') THEN card_token END,
                    lease_token = CASE WHEN $3 = 'done' THEN NULL ELSE lease_token END,
                    lease_until = CASE WHEN $3 = 'done' THEN NULL
                                       WHEN $6::timestamptz IS NOT NULL AND $3 = 'authorize'
                                       THEN greatest(least(now() + make_interval(secs => $7), $6 + interval '1 second'),
                                                     now() + interval '2 seconds')
                                       ELSE now() + make_interval(secs => $7) END
              WHERE booking_id = $1 AND version = $2",
            &saga.booking_id,
            saga.version,
            next.name(),
            reason.as_deref(),
            outcome.as_deref(),
            hold_deadline,
            LEASE.as_secs_f64(),
            saga.payment_intent.as_deref(),
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        saga.step = next.name().to_owned();
        saga.reason = reason;
        saga.outcome = outcome;
        saga.hold_deadline = hold_deadline;
        saga.attempts = 0;
        saga.last_error = None;
        saga.same_failures = 0;
        Ok(match (saved, next) {
            (0, _) => Saved::Refused,
            (_, Step::Done { .. }) => Saved::Stop,
            _ => Saved::Continue,
        })
    }

    /// Saves the saga to run `step` again later, with back-off, and lets go of the
    /// lease; a hold's deadline is never passed by. Refused when the saga moved.
    async fn retry(
        &self,
        saga: &mut BookingSaga,
        step: Step,
        error: Option<String>,
    ) -> anyhow::Result<Saved> {
        let attempts = saga.attempts.saturating_add(1);
        let backoff = Duration::from_millis(100u64.saturating_mul(1 << attempts.clamp(0, 9)))
            .min(MAX_BACKOFF);
        let mut due = Utc::now() + chrono::Duration::from_std(backoff)?;
        if let (Step::Authorize, Some(deadline)) = (step, saga.hold_deadline) {
            due = due.min(deadline);
        }
        // A step that fails the same way again and again is parked, not spun for ever:
        // an operator looks at it and retries it (`POST /v1/admin/sagas/{id}/retry`).
        let same_failures = match &error {
            None => 0,
            Some(e) if saga.last_error.as_ref() == Some(e) => saga.same_failures.saturating_add(1),
            Some(_) => 1,
        };
        let park = self.config.park_after > 0
            && u32::try_from(same_failures).is_ok_and(|n| n >= self.config.park_after);
        if park {
            tracing::error!(booking_id = %saga.booking_id, correlation_id = %saga.correlation_id, step = step.name(), same_failures, cause = ?error, "saga parked: its step keeps failing the same way");
        }
        let saved = sqlx::query!(
            "UPDATE booking_sagas
                SET attempts = $3, due_at = $4, lease_until = NULL, lease_token = NULL, last_error = $5,
                    same_failures = $6, parked_at = CASE WHEN $7 THEN now() END, updated_at = now()
              WHERE booking_id = $1 AND version = $2",
            &saga.booking_id,
            saga.version,
            attempts,
            due,
            error,
            same_failures,
            park,
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(if saved == 1 {
            Saved::Stop
        } else {
            Saved::Refused
        })
    }

    /// Gives up this runner's lease, when it still holds it: the saga is due again for
    /// whoever claims it next (at once, when a fact moved it).
    async fn let_go(&self, saga: &BookingSaga) {
        let Some(token) = saga.lease_token else {
            return;
        };
        if let Err(err) = sqlx::query!(
            "UPDATE booking_sagas SET lease_until = NULL, lease_token = NULL
              WHERE booking_id = $1 AND lease_token = $2",
            &saga.booking_id,
            token,
        )
        .execute(&self.pool)
        .await
        {
            tracing::warn!(booking_id = %saga.booking_id, cause = %err, "cannot let go of a saga; its lease will expire");
        }
    }

    /// Proves, right before a gateway call, that this runner still holds the saga and
    /// nothing moved it, and stretches the lease over the call (`budget`, and a
    /// margin). Fails with [`Fenced`] otherwise: the call must not be made.
    async fn fence(&self, saga: &BookingSaga, budget: Duration) -> anyhow::Result<()> {
        let held = sqlx::query!(
            "UPDATE booking_sagas
                SET lease_until = greatest(lease_until, now() + make_interval(secs => $4))
              WHERE booking_id = $1 AND version = $2 AND lease_token = $3 AND lease_until > now()",
            &saga.booking_id,
            saga.version,
            saga.lease_token,
            (budget + FENCE_MARGIN).as_secs_f64(),
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        if held == 1 {
            Ok(())
        } else {
            Err(Fenced.into())
        }
    }

    fn metadata(&self, saga: &BookingSaga, step: Step) -> EventMetadata {
        EventMetadata {
            user_id: Some(SAGA_USER.to_owned()),
            correlation_id: Some(saga.correlation_id.clone()),
            causation_id: Some(format!("saga:{}:{}", saga.booking_id, step.name())),
            // The step's span with traces on, else the trace the saga runs in.
            traceparent: platform::telemetry::current_traceparent()
                .map(|t| t.to_string())
                .or_else(|| saga.traceparent.clone()),
            ..EventMetadata::default()
        }
    }

    /// Does what `step` says, and tells what it saw.
    async fn carry_out(&self, saga: &mut BookingSaga, step: Step) -> anyhow::Result<Observation> {
        let booking_id: Uuid = saga
            .booking_id
            .parse()
            .context("a booking id that is not a UUID")?;
        let metadata = self.metadata(saga, step);
        let charges = saga::charges(saga.amount_cents);
        match step {
            Step::Reserve => {
                if !self.pending(&saga.booking_id).await? {
                    return Ok(Observation::BookingClosed);
                }
                let seats = Seats::parse(i64::from(saga.seats))
                    .map_err(|e| anyhow!("stored seats: {e}"))?;
                let command = EventCommand::ReserveSeats { booking_id, seats };
                match self
                    .events
                    .execute(&saga.event_id, command, &metadata)
                    .await
                {
                    // Refused: nothing was appended to the event; the booking's
                    // rejection records why.
                    Err(ExecuteError::Domain(EventError::SeatsRefused(reason))) => {
                        return Ok(Observation::SeatsRefused(reason));
                    }
                    outcome => event_result(outcome)?,
                }
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
                if !charges {
                    return Ok(Observation::PaymentAuthorized);
                }
                // The call never outlasts the hold, nor the lease the fence gives it.
                let budget = self.gateway.call_budget().min(left);
                let Some(payment_method) =
                    saga.payment_method.as_ref().or(saga.card_token.as_ref())
                else {
                    // Nothing to pay with (cannot happen for a booking of ours): the hold
                    // runs out and the booking is rejected.
                    tracing::warn!(booking_id = %saga.booking_id, "a booking without a payment method");
                    return Ok(Observation::GatewayUnavailable);
                };
                self.fence(saga, budget).await?;
                let request = AuthorizeRequest {
                    key: &saga.booking_id,
                    amount_cents: saga.amount_cents,
                    currency: &saga.currency,
                    payment_method,
                    correlation_id: &saga.correlation_id,
                };
                Ok(match self.gateway.authorize(&request, budget).await {
                    Ok(Authorization::Authorized(intent)) => {
                        saga.payment_intent = Some(intent);
                        Observation::PaymentAuthorized
                    }
                    Ok(Authorization::Declined) => Observation::PaymentDeclined,
                    Ok(Authorization::Voided) => {
                        // Only a release voids a booking's key, and a release runs only
                        // once this saga moved on: this runner is late, and its save
                        // will be refused.
                        tracing::warn!(booking_id = %saga.booking_id, correlation_id = %saga.correlation_id, "the payment was voided before it could be authorized");
                        Observation::PaymentDeclined
                    }
                    Err(GatewayError::Unavailable(cause)) => {
                        tracing::info!(booking_id = %saga.booking_id, %cause, "payment gateway unavailable");
                        if Utc::now() >= deadline {
                            Observation::DeadlinePassed
                        } else {
                            Observation::GatewayUnavailable
                        }
                    }
                    Err(refused) => {
                        // An answer that is not a decision on the card (a 4xx: our key,
                        // our URL, a key reused; a malformed body) says nothing about
                        // the card, and may even hide an authorization. So it is not a
                        // decline: the step is tried again, logged each time, and if it
                        // never succeeds the hold's deadline rejects the booking
                        // `hold_expired`, whose release voids whatever the key holds.
                        tracing::warn!(booking_id = %saga.booking_id, correlation_id = %saga.correlation_id, cause = %refused, "the payment gateway refused the authorization; will try again until the hold's deadline");
                        Observation::GatewayUnavailable
                    }
                })
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
                if charges {
                    let budget = self.gateway.call_budget();
                    let Some(intent) = self.intent_to_capture(saga, budget).await? else {
                        return Ok(Observation::GatewayUnavailable);
                    };
                    if let Some(intent) = intent {
                        self.fence(saga, budget).await?;
                        let captured = self.gateway.capture(&intent, budget).await;
                        if settled(saga, "capture", captured)?.is_none() {
                            return Ok(Observation::GatewayUnavailable);
                        }
                    }
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
                if charges && saga::voids_payment(reason) {
                    // By key: voids what is authorized, and what is still on its way.
                    let budget = self.gateway.call_budget();
                    self.fence(saga, budget).await?;
                    let voided = self.gateway.void_key(&saga.booking_id, budget).await;
                    if settled(saga, "void", voided)?.is_none() {
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
                if charges {
                    let budget = self.gateway.call_budget();
                    self.fence(saga, budget).await?;
                    let found = self.intent(saga, budget).await;
                    let Some(intent) = settled(saga, "refund", found)? else {
                        return Ok(Observation::GatewayUnavailable);
                    };
                    match intent {
                        Some(intent) => {
                            self.fence(saga, budget).await?;
                            let refunded = self.gateway.refund(&intent, budget).await;
                            if settled(saga, "refund", refunded)?.is_none() {
                                return Ok(Observation::GatewayUnavailable);
                            }
                        }
                        // The gateway never saw this booking's payment (taken by the
                        // simulator of before migration 0009): nothing to give back.
                        None => {
                            tracing::warn!(booking_id = %saga.booking_id, correlation_id = %saga.correlation_id, "the gateway has no payment for this booking; nothing to refund");
                        }
                    }
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

    /// The booking's payment intent: as saved at its authorization, or looked up by
    /// key (a runner that died between the authorization and its save). Fenced: it is a
    /// gateway call.
    async fn intent(
        &self,
        saga: &mut BookingSaga,
        budget: Duration,
    ) -> Result<Option<String>, GatewayError> {
        if saga.payment_intent.is_none() {
            saga.payment_intent = self
                .gateway
                .find_by_key(&saga.booking_id, budget)
                .await?
                .map(|intent| intent.id);
        }
        Ok(saga.payment_intent.clone())
    }

    /// The intent a confirmed booking's capture takes: its own, or, when the gateway
    /// has none under the booking's key (a booking whose authorization the simulator
    /// of before migration 0009 made), one authorized now, under that key. `None` when
    /// the gateway is unavailable (try again); `Some(None)` when there is nothing to
    /// capture: the card, asked now, is declined, which is logged and counted for
    /// people to settle (the booking stays confirmed; the seats are sold).
    async fn intent_to_capture(
        &self,
        saga: &mut BookingSaga,
        budget: Duration,
    ) -> anyhow::Result<Option<Option<String>>> {
        self.fence(saga, budget).await?;
        let found = self.intent(saga, budget).await;
        let Some(found) = settled(saga, "capture", found)? else {
            return Ok(None);
        };
        if found.is_some() {
            return Ok(Some(found));
        }
        let payment_method = saga
            .payment_method
            .clone()
            .or_else(|| saga.card_token.clone())
            .context("a confirmed booking with nothing to pay with")?;
        self.fence(saga, budget).await?;
        let request = AuthorizeRequest {
            key: &saga.booking_id,
            amount_cents: saga.amount_cents,
            currency: &saga.currency,
            payment_method: &payment_method,
            correlation_id: &saga.correlation_id,
        };
        let authorized = self.gateway.authorize(&request, budget).await;
        Ok(match settled(saga, "capture", authorized)? {
            None => None,
            Some(Authorization::Authorized(intent)) => {
                saga.payment_intent = Some(intent.clone());
                Some(Some(intent))
            }
            Some(Authorization::Declined | Authorization::Voided) => {
                self.metrics.payments_uncollectable.inc();
                tracing::error!(booking_id = %saga.booking_id, correlation_id = %saga.correlation_id, "a confirmed booking's payment cannot be taken: the card is declined now; settle it by hand");
                Some(None)
            }
        })
    }

    /// Whether the booking is still pending.
    async fn pending(&self, booking_id: &str) -> anyhow::Result<bool> {
        let status = self
            .bookings
            .read(booking_id, |booking, _| booking.state().map(|s| s.status))
            .await?;
        Ok(status == Some(BookingStatus::Pending))
    }

    async fn claim_cancellations(&self) -> anyhow::Result<Vec<Cancellation>> {
        Ok(sqlx::query_as!(
            Cancellation,
            "UPDATE event_cancellation_sagas SET lease_until = now() + make_interval(secs => $1)
              WHERE event_id IN (
                    SELECT event_id FROM event_cancellation_sagas
                     WHERE NOT done AND due_at <= now() AND parked_at IS NULL
                       AND (lease_until IS NULL OR lease_until < now())
                     LIMIT 8
                       FOR UPDATE SKIP LOCKED)
             RETURNING event_id, correlation_id, last_error, same_failures",
            LEASE.as_secs_f64(),
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Rejects or cancels every booking holding seats of a cancelled event. A big event
    /// takes a while: the lease is renewed as the pass goes, and a booking that cannot
    /// be cancelled now (a conflict that outlasted the store's retries) does not stop
    /// the others; the pass runs again for what is left (a booking already cancelled is
    /// a no-op).
    async fn cancel_event(self: Arc<Self>, saga: Cancellation) {
        let Cancellation {
            event_id,
            correlation_id,
            ..
        } = &saga;
        let outcome = async {
            let holders: Vec<Uuid> = self
                .events
                .read(event_id, |event, _| event.seat_holders().collect())
                .await?;
            let metadata = EventMetadata {
                user_id: Some(SAGA_USER.to_owned()),
                correlation_id: Some(correlation_id.clone()),
                causation_id: Some(format!("saga:event:{event_id}:cancel")),
                ..EventMetadata::default()
            };
            let mut renewed = Instant::now();
            let mut failed = Vec::new();
            for booking in &holders {
                if renewed.elapsed() > LEASE / 3 {
                    self.renew_cancellation(event_id).await?;
                    renewed = Instant::now();
                }
                let done = self
                    .bookings
                    .execute(
                        &booking.to_string(),
                        BookingCommand::CancelForEvent,
                        &metadata,
                    )
                    .await;
                if let Err(err) = booking_result(done) {
                    failed.push(format!("{booking}: {err:#}"));
                }
            }
            match failed.first() {
                None => anyhow::Ok(holders.len()),
                Some(first) => Err(anyhow!(
                    "{} of {} bookings not cancelled yet (first: {first})",
                    failed.len(),
                    holders.len()
                )),
            }
        }
        .await;
        let saved = match outcome {
            Ok(bookings) => {
                self.count_step("cancel_event", "advanced");
                tracing::info!(%event_id, bookings, "event cancelled: its bookings are being compensated");
                sqlx::query!(
                        "UPDATE event_cancellation_sagas SET done = true, lease_until = NULL, updated_at = now() WHERE event_id = $1",
                        event_id,
                    )
                    .execute(&self.pool)
                    .await
            }
            Err(err) => {
                self.count_step("cancel_event", "failed");
                let error = format!("{err:#}");
                let same_failures = if saga.last_error.as_ref() == Some(&error) {
                    saga.same_failures.saturating_add(1)
                } else {
                    1
                };
                let park = self.config.park_after > 0
                    && u32::try_from(same_failures).is_ok_and(|n| n >= self.config.park_after);
                if park {
                    tracing::error!(%event_id, same_failures, cause = %error, "event cancellation parked: it keeps failing the same way");
                } else {
                    tracing::warn!(%event_id, cause = %error, "cannot cancel all the event's bookings yet");
                }
                sqlx::query!(
                    "UPDATE event_cancellation_sagas
                        SET attempts = attempts + 1, last_error = $2, lease_until = NULL, updated_at = now(),
                            same_failures = $3, parked_at = CASE WHEN $4 THEN now() END,
                            due_at = now() + make_interval(secs => least(30, 0.1 * 2 ^ least(attempts, 9)))
                      WHERE event_id = $1",
                    event_id,
                    &error,
                    same_failures,
                    park,
                )
                .execute(&self.pool)
                .await
            }
        };
        if let Err(err) = saved {
            tracing::warn!(%event_id, cause = %err, "cannot save an event cancellation; its lease will expire");
        }
    }

    /// Stretches an event cancellation's lease while its pass runs.
    async fn renew_cancellation(&self, event_id: &str) -> anyhow::Result<()> {
        sqlx::query!(
            "UPDATE event_cancellation_sagas SET lease_until = now() + make_interval(secs => $2)
              WHERE event_id = $1",
            event_id,
            LEASE.as_secs_f64(),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// A claimed event cancellation.
#[derive(Debug)]
struct Cancellation {
    event_id: String,
    correlation_id: String,
    last_error: Option<String>,
    same_failures: i32,
}

/// A gateway call's result for a saga step: the answer, `None` when the gateway is
/// unavailable (the step waits and is tried again), or an error when it refused (logged
/// with the booking's correlation id, the step retried with back-off).
fn settled<T>(
    saga: &BookingSaga,
    what: &str,
    result: Result<T, GatewayError>,
) -> anyhow::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(GatewayError::Unavailable(cause)) => {
            tracing::info!(booking_id = %saga.booking_id, %cause, "{what}: the payment gateway is unavailable; will try again");
            Ok(None)
        }
        Err(refused) => {
            tracing::warn!(booking_id = %saga.booking_id, correlation_id = %saga.correlation_id, cause = %refused, "{what}: the payment gateway refused");
            Err(anyhow!("{what}: {refused}"))
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
