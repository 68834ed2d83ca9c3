//! The payment gateway in this process, on a port of its own, keeping its books in the
//! `payment_gateway` schema of a [`TestDb`].

use payment_gateway::intent::Intent;
use payment_gateway::{Application, Config};
use sqlx::PgPool;

use crate::service::{serve, Running};
use crate::TestDb;

/// A payment gateway running in this process.
pub struct Gateway {
    /// `http://127.0.0.1:port`, without a trailing slash.
    pub base_url: String,
    /// The API key it requires, if any.
    pub api_key: Option<String>,
    /// Its books (`search_path` is the `payment_gateway` schema).
    pub pool: PgPool,
    running: Running,
}

/// The gateway's defaults on `db`: no API key, no latency.
pub fn config(db: &TestDb) -> Config {
    Config::new(&db.url)
}

/// Starts a gateway on `db` with the defaults of [`config`].
pub async fn start_gateway(db: &TestDb) -> Gateway {
    Gateway::start(config(db)).await
}

impl Gateway {
    /// Starts a gateway with `config` (its `addr` is ignored: port 0 on loopback), once
    /// its schema is migrated.
    pub async fn start(config: Config) -> Self {
        let api_key = config.api_key.clone();
        let app = Application::build(config)
            .await
            .expect("cannot build the payment gateway");
        let pool = app.pool().clone();
        let running = serve(move |listener, shutdown| app.run(listener, shutdown)).await;
        Self {
            base_url: format!("http://{}", running.addr),
            api_key,
            pool,
            running,
        }
    }

    /// The base URL + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// The intent (or tombstone) under `key`, straight from the books, so that faults
    /// and the API key do not apply.
    pub async fn intent_by_key(&self, key: &str) -> Option<Intent> {
        payment_gateway::store::by_key(&self.pool, key)
            .await
            .expect("cannot read the gateway's books")
    }

    /// Stops it as SIGTERM would (requests left hanging end without an answer), and
    /// waits until it has.
    pub async fn stop(self) {
        self.running.stop().await;
    }

    /// Drops it on the floor, as a crash would.
    pub fn abort(self) {
        self.running.abort();
    }
}
