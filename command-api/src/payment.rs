//! The payment gateway: a port, and the simulated adapter boxoffice runs with.
//!
//! Every call names the booking as its idempotency key, as real gateways allow: asking
//! twice for the same authorization, void or refund does it once. That is what lets a
//! saga step that crashed half-way simply run again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;

/// The gateway's answer to an authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorization {
    /// The money is held for us.
    Authorized,
    /// The card was refused.
    Declined,
}

/// The gateway could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("the payment gateway is unavailable: {0}")]
pub struct Unavailable(pub String);

/// A payment gateway. Callers bound each call with a timeout.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Authorizes `amount_cents` on the card, once per `key`.
    async fn authorize(
        &self,
        key: &str,
        amount_cents: i64,
        currency: &str,
        card_token: &str,
    ) -> Result<Authorization, Unavailable>;

    /// Takes the money authorized under `key` (once, however often asked). Until it is
    /// captured an authorization is only a hold on the card, which lapses.
    async fn capture(&self, key: &str) -> Result<(), Unavailable>;

    /// Cancels the authorization under `key`, if there is one not yet captured.
    async fn void(&self, key: &str) -> Result<(), Unavailable>;

    /// Gives back the payment under `key`: refunds what was captured, voids what was
    /// only authorized.
    async fn refund(&self, key: &str) -> Result<(), Unavailable>;
}

/// The simulated gateway of DESIGN.md: a card token starting with `tok_decline` is
/// declined, `tok_timeout` never answers, any other is authorized. Each call takes
/// `PAYMENT_LATENCY_MS`. Its books are the `simulated_payments` table, so a payment
/// is never taken twice, across restarts too, and tests can audit them. Tests can make
/// it unreachable.
pub struct SimulatedGateway {
    pool: PgPool,
    latency: Duration,
    reachable: AtomicBool,
}

impl SimulatedGateway {
    /// A gateway keeping its books in `pool`'s database.
    pub fn new(pool: PgPool, latency: Duration) -> Self {
        Self {
            pool,
            latency,
            reachable: AtomicBool::new(true),
        }
    }

    /// Makes every call fail (false) or work again (true), as a network outage would.
    pub fn set_reachable(&self, reachable: bool) {
        self.reachable.store(reachable, Ordering::SeqCst);
    }

    async fn call(&self) -> Result<(), Unavailable> {
        if !self.reachable.load(Ordering::SeqCst) {
            return Err(Unavailable("connection refused (simulated outage)".into()));
        }
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        Ok(())
    }

    /// Moves the payment under `key` along whichever of `moves` (from status, to
    /// status) starts at its status; a payment anywhere else (moved already, or never
    /// authorized) is left alone, which makes every call idempotent.
    async fn settle(&self, key: &str, moves: &[(&str, &str)]) -> Result<(), Unavailable> {
        self.call().await?;
        let (from, to): (Vec<&str>, Vec<&str>) = moves.iter().copied().unzip();
        sqlx::query(
            "UPDATE simulated_payments p
                SET status = m.to_status,
                    captured_at = CASE WHEN m.to_status = 'captured' THEN now() ELSE p.captured_at END,
                    settled_at = CASE WHEN m.to_status = 'captured' THEN p.settled_at ELSE now() END
               FROM unnest($2::text[], $3::text[]) AS m(from_status, to_status)
              WHERE p.key = $1 AND p.status = m.from_status",
        )
        .bind(key)
        .bind(from)
        .bind(to)
        .execute(&self.pool)
        .await
        .map_err(|err| Unavailable(err.to_string()))?;
        Ok(())
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn authorize(
        &self,
        key: &str,
        amount_cents: i64,
        currency: &str,
        card_token: &str,
    ) -> Result<Authorization, Unavailable> {
        self.call().await?;
        if card_token.starts_with("tok_timeout") {
            std::future::pending::<()>().await;
        }
        if card_token.starts_with("tok_decline") {
            return Ok(Authorization::Declined);
        }
        sqlx::query(
            "INSERT INTO simulated_payments (key, card_token, amount_cents, currency, status)
             VALUES ($1, $2, $3, $4, 'authorized')
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(card_token)
        .bind(amount_cents)
        .bind(currency)
        .execute(&self.pool)
        .await
        .map_err(|err| Unavailable(err.to_string()))?;
        Ok(Authorization::Authorized)
    }

    async fn capture(&self, key: &str) -> Result<(), Unavailable> {
        self.settle(key, &[("authorized", "captured")]).await
    }

    async fn void(&self, key: &str) -> Result<(), Unavailable> {
        self.settle(key, &[("authorized", "voided")]).await
    }

    async fn refund(&self, key: &str) -> Result<(), Unavailable> {
        self.settle(key, &[("captured", "refunded"), ("authorized", "voided")])
            .await
    }
}
