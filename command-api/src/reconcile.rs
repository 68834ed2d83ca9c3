//! The reconciliation sweep: our bookings checked against the payment gateway's books,
//! as payment integrations do, for what the sagas cannot see.
//!
//! Every `BOXOFFICE_RECONCILE_EVERY_SECS`, one command-api process (the one that gets a
//! Postgres advisory lock) pages through the gateway's **authorized** intents older
//! than `BOXOFFICE_RECONCILE_AFTER_SECS` (younger ones are still their sagas' business)
//! that this store created (their metadata names it: a gateway account may serve other
//! stores, whose payments are none of ours), and reads each one's booking (the intent's
//! key is the booking id) from the event store, the truth:
//!
//! | booking | the intent | finding |
//! | --- | --- | --- |
//! | confirmed | captured (the saga's capture never happened) | `captured` |
//! | rejected or cancelled | voided (the money must not stay held) | `voided` |
//! | none of ours | voided | `orphaned` |
//! | pending | left to the saga (its deadline ends it) | none |
//!
//! Each finding is counted in `boxoffice_reconciliation_findings{finding}` and logged.
//! Every action is idempotent at the gateway, so a sweep racing a saga doing the same
//! thing does no harm. An intent the sweep cannot settle now (the gateway failing on
//! it) is logged and left for the next pass; the others are still settled.

use std::time::{Duration, Instant};

use chrono::Utc;
use domain::booking::{Booking, BookingStatus};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::PaymentConfig;
use crate::metrics::{FindingLabel, Metrics};
use crate::payment::{GatewayClient, GatewayError, Intent, IntentStatus};
use crate::store::AggregateStore;

/// The advisory lock one sweeper holds while it sweeps ("bxreconc" in ASCII).
const SWEEP_LOCK: i64 = 0x6278_7265_636f_6e63;

/// What the sweep found about an intent, and mended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// A confirmed booking's payment was never captured: captured now.
    Captured,
    /// A rejected or cancelled booking's payment was still held: voided now.
    Voided,
    /// A payment of this store for no booking in it: voided now.
    Orphaned,
}

impl Finding {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Captured => "captured",
            Self::Voided => "voided",
            Self::Orphaned => "orphaned",
        }
    }
}

/// What one pass found, by finding.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Authorized intents looked at (old enough).
    pub checked: u64,
    /// Confirmed bookings whose payment was captured by the sweep.
    pub captured: u64,
    /// Rejected or cancelled bookings whose authorization was voided.
    pub voided: u64,
    /// Authorizations for no booking of ours, voided.
    pub orphaned: u64,
    /// Intents that could not be settled in this pass (tried again in the next).
    pub failed: u64,
}

/// The sweep of one process.
pub struct Reconciler {
    pool: PgPool,
    bookings: AggregateStore<Booking>,
    gateway: GatewayClient,
    config: PaymentConfig,
    metrics: Metrics,
}

impl Reconciler {
    /// A sweep over the store behind `pool` and the gateway behind `gateway`.
    pub fn new(
        pool: PgPool,
        bookings: AggregateStore<Booking>,
        gateway: GatewayClient,
        config: PaymentConfig,
        metrics: Metrics,
    ) -> Self {
        Self {
            pool,
            bookings,
            gateway,
            config,
            metrics,
        }
    }

    /// Sweeps every `reconcile_every` until `shutdown` (never when that is zero).
    pub async fn run(self, shutdown: CancellationToken) {
        if self.config.reconcile_every.is_zero() {
            return;
        }
        let mut every = tokio::time::interval(self.config.reconcile_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            match self.sweep_once(&shutdown).await {
                Ok(None) => {} // another process sweeps
                Ok(Some(pass)) => {
                    if pass.captured + pass.voided + pass.orphaned > 0 {
                        tracing::warn!(?pass, "reconciliation mended payments out of line");
                    } else {
                        tracing::debug!(?pass, "reconciliation found the books in line");
                    }
                }
                Err(err) => {
                    tracing::warn!(
                        cause = format!("{err:#}"),
                        "reconciliation pass failed; next one will try again"
                    );
                }
            }
        }
    }

    /// One pass, when no other process is sweeping (`None` then).
    pub async fn sweep_once(&self, shutdown: &CancellationToken) -> anyhow::Result<Option<Pass>> {
        // A session lock on one pooled connection, held for the pass: a process that
        // dies mid-pass drops the connection, and the lock with it.
        let mut conn = self.pool.acquire().await?;
        let locked = sqlx::query_scalar!(
            r#"SELECT pg_try_advisory_lock($1) AS "locked!""#,
            SWEEP_LOCK
        )
        .fetch_one(&mut *conn)
        .await?;
        if !locked {
            return Ok(None);
        }
        let outcome = self.sweep(shutdown).await;
        if let Err(err) = sqlx::query!("SELECT pg_advisory_unlock($1)", SWEEP_LOCK)
            .fetch_one(&mut *conn)
            .await
        {
            // The connection must not go back to the pool holding the lock.
            conn.close_on_drop();
            return Err(err.into());
        }
        let pass = outcome?;
        self.metrics.reconciliation_passes.inc();
        Ok(Some(pass))
    }

    async fn sweep(&self, shutdown: &CancellationToken) -> anyhow::Result<Pass> {
        let started = Instant::now();
        let budget = self.gateway.call_budget();
        let older_than = Utc::now() - chrono::Duration::from_std(self.config.reconcile_after)?;
        let mut pass = Pass::default();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .gateway
                .list(IntentStatus::Authorized, cursor.as_deref(), budget)
                .await?;
            let store = self.gateway.store();
            let ours = page
                .data
                .iter()
                .filter(|i| i.created <= older_than && i.created_by(store));
            for intent in ours {
                if shutdown.is_cancelled() {
                    return Ok(pass);
                }
                pass.checked += 1;
                match self.settle(intent, budget).await {
                    Ok(None) => {}
                    Ok(Some(finding)) => {
                        match finding {
                            Finding::Captured => pass.captured += 1,
                            Finding::Voided => pass.voided += 1,
                            Finding::Orphaned => pass.orphaned += 1,
                        }
                        self.metrics
                            .reconciliation_findings
                            .get_or_create(&FindingLabel {
                                finding: finding.as_str(),
                            })
                            .inc();
                    }
                    Err(err) => {
                        pass.failed += 1;
                        tracing::warn!(intent = %intent.id, booking_id = %intent.idempotency_key, cause = format!("{err:#}"), "reconciliation cannot settle an intent now; the next pass will try again");
                    }
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        tracing::debug!(elapsed = ?started.elapsed(), "reconciliation pass done");
        Ok(pass)
    }

    /// Brings one authorized intent in line with its booking; the finding, if any.
    async fn settle(&self, intent: &Intent, budget: Duration) -> anyhow::Result<Option<Finding>> {
        let status = match Uuid::parse_str(&intent.idempotency_key) {
            Ok(id) => {
                self.bookings
                    .read(&id.to_string(), |booking, _| {
                        booking.state().map(|state| state.status)
                    })
                    .await?
            }
            Err(_) => None,
        };
        let (finding, done) = match status {
            Some(BookingStatus::Pending) => return Ok(None),
            Some(BookingStatus::Confirmed) => (
                Finding::Captured,
                self.gateway.capture(&intent.id, budget).await.map(drop),
            ),
            Some(BookingStatus::Rejected | BookingStatus::Cancelled) => (
                Finding::Voided,
                self.gateway.void(&intent.id, budget).await.map(drop),
            ),
            None => (
                Finding::Orphaned,
                self.gateway.void(&intent.id, budget).await.map(drop),
            ),
        };
        match done {
            Ok(()) => {
                tracing::warn!(intent = %intent.id, booking_id = %intent.idempotency_key, finding = finding.as_str(), ?status, "reconciliation: payment out of line with its booking, mended");
                Ok(Some(finding))
            }
            // Moved on since it was listed (the saga got there first): in line now.
            Err(GatewayError::Refused { status: 409, .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }
}
