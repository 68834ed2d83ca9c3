//! What tests ask of the payment gateway besides running it ([`crate::gateway`]): its
//! fault switch, its books, its request counts.

use serde_json::{json, Value};

use crate::gateway::Gateway;

impl Gateway {
    /// Sets the fault mode (`normal`, `unavailable`, `hang`, `lose_answer`) and latency
    /// of the gateway's payment intents (authorize, capture, void, refund), as
    /// `PUT /admin/faults` with `"scope": "intents"` does: booking requests still get
    /// their payment method, the payments behind them fail or are slow.
    pub async fn set_faults(&self, mode: &str, latency_ms: u64) {
        self.put_faults(mode, latency_ms, "intents").await;
    }

    /// The same for every request of the gateway, payment methods included.
    pub async fn set_faults_everywhere(&self, mode: &str, latency_ms: u64) {
        self.put_faults(mode, latency_ms, "all").await;
    }

    async fn put_faults(&self, mode: &str, latency_ms: u64, scope: &str) {
        let answer = crate::http()
            .put(self.url("/admin/faults"))
            .json(&json!({"mode": mode, "latency_ms": latency_ms, "scope": scope}))
            .send()
            .await
            .expect("the gateway does not answer");
        assert!(
            answer.status().is_success(),
            "cannot set the gateway's faults: {}",
            answer.status()
        );
    }

    /// The status of the intent under `key`, if the gateway knows one (read from its
    /// books, so that no fault mode gets in the way).
    pub async fn status_by_key(&self, key: &str) -> Option<String> {
        self.intent_by_key(key)
            .await
            .map(|intent| intent.status.as_str().to_owned())
    }

    /// Authorizes a payment under `key` directly at the gateway, with `metadata`, as
    /// another client would; the intent.
    pub async fn authorize(&self, key: &str, amount: i64, card: &str, metadata: Value) -> Value {
        crate::http()
            .post(self.url("/v1/payment_intents"))
            .header("Idempotency-Key", key)
            .json(
                &json!({"amount": amount, "currency": "EUR", "payment_method": card,
                          "metadata": metadata}),
            )
            .send()
            .await
            .expect("the gateway does not answer")
            .json()
            .await
            .expect("an intent")
    }

    /// How many requests of `operation` the gateway has handled to the end, whatever
    /// their answer (`payment_gateway_requests_total` on `/metrics`).
    pub async fn requests(&self, operation: &str) -> u64 {
        self.metric("payment_gateway_requests_total{", operation)
            .await
    }

    /// How many requests of `operation` the gateway is carrying out now, hung ones
    /// included (`payment_gateway_requests_in_flight`).
    pub async fn in_flight(&self, operation: &str) -> u64 {
        self.metric("payment_gateway_requests_in_flight{", operation)
            .await
    }

    /// The sum of the samples of a metric (named up to its `{`) for `operation`.
    async fn metric(&self, prefix: &str, operation: &str) -> u64 {
        let text = crate::http()
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("the gateway does not answer")
            .text()
            .await
            .unwrap_or_default();
        let label = format!("operation=\"{operation}\"");
        text.lines()
            .filter(|line| line.starts_with(prefix) && line.contains(&label))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}
