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

    /// Cancels the authorization under `key`, if there is one.
    async fn void(&self, key: &str) -> Result<(), Unavailable>;

    /// Gives back the payment under `key`, if it was taken.
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

    async fn settle(&self, key: &str, status: &str) -> Result<(), Unavailable> {
        self.call().await?;
        sqlx::query(
            "UPDATE simulated_payments SET status = $2, settled_at = now()
              WHERE key = $1 AND status = 'authorized'",
        )
        .bind(key)
        .bind(status)
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

    async fn void(&self, key: &str) -> Result<(), Unavailable> {
        self.settle(key, "voided").await
    }

    async fn refund(&self, key: &str) -> Result<(), Unavailable> {
        self.settle(key, "refunded").await
    }
}
