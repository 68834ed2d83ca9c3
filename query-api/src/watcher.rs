//! One watcher of the read models for every read-your-writes wait.
//!
//! A waiting request registers `(table, id, sequence)` and sleeps on a channel; it holds
//! no database connection. The watcher checks every awaited row at once, one query per
//! table, whenever something may have moved: the projector's `NOTIFY boxoffice_projected`
//! after each batch it commits, a new waiter (its write may be visible already), and, in
//! case a notification was lost (the listening connection dropped), a slow tick while
//! anyone waits. So 500 requests waiting on the same projection cost a few queries per
//! projected batch, not 500 polls every 50 ms.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The channel the projector notifies after each batch it commits.
pub const CHANNEL: &str = read_model::engine::PROJECTED_CHANNEL;

/// How often awaited rows are checked with no notification (a lost one costs at most
/// this much delay), and how long to wait before listening again after an error.
const TICK: Duration = Duration::from_millis(1000);

type Waiters = HashMap<(&'static str, Uuid), Vec<(i64, oneshot::Sender<()>)>>;

/// The shared watcher.
pub struct Watcher {
    waiters: Mutex<Waiters>,
    kick: Notify,
    /// Checks run (one query each), for the metric and the tests.
    pub checks: Counter,
    /// Requests waiting now.
    pub waiting: Gauge,
}

impl Watcher {
    /// A watcher; [`Watcher::run`] makes it watch.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            waiters: Mutex::new(HashMap::new()),
            kick: Notify::new(),
            checks: Counter::default(),
            waiting: Gauge::default(),
        })
    }

    /// Waits until row `id` of `table` has reached `sequence`, at most `timeout`.
    /// Returns whether it did.
    pub async fn wait(
        &self,
        table: &'static str,
        id: Uuid,
        sequence: i64,
        timeout: Duration,
    ) -> bool {
        let (sender, receiver) = oneshot::channel();
        self.lock()
            .entry((table, id))
            .or_default()
            .push((sequence, sender));
        self.waiting.inc();
        self.kick.notify_one();
        let reached = matches!(tokio::time::timeout(timeout, receiver).await, Ok(Ok(())));
        self.waiting.dec();
        // A timed-out waiter's sender is dropped at the next check (it is closed).
        reached
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Watches until `shutdown`: listens on [`CHANNEL`] and checks the awaited rows.
    pub async fn run(self: Arc<Self>, read: PgPool, shutdown: CancellationToken) {
        let mut listener: Option<PgListener> = None;
        loop {
            if listener.is_none() {
                listener = listen(&read).await;
            }
            // With nobody waiting and a live listener, only notifications need draining.
            let idle = self.lock().is_empty() && listener.is_some();
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.kick.notified() => {}
                () = tokio::time::sleep(TICK), if !idle => {}
                received = next(&mut listener) => {
                    if let Err(err) = received {
                        tracing::warn!(cause = %err, "lost the projection notifications; listening again");
                        listener = None;
                    }
                    // Notifications that queued up during the last check: one check
                    // covers them all.
                    while let Some(l) = listener.as_mut() {
                        match tokio::time::timeout(Duration::ZERO, l.recv()).await {
                            Ok(Ok(_)) => {}
                            Ok(Err(_)) => listener = None,
                            Err(_) => break,
                        }
                    }
                }
            }
            if let Err(err) = self.check(&read).await {
                tracing::warn!(cause = %err, "checking the read models for waiting requests failed");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(TICK) => {}
                }
            }
        }
    }

    /// Checks every awaited row, one query per table, and wakes those that arrived.
    async fn check(&self, read: &PgPool) -> sqlx::Result<()> {
        let mut by_table: HashMap<&'static str, Vec<Uuid>> = HashMap::new();
        {
            let mut waiters = self.lock();
            // Drop the waiters that gave up.
            waiters.retain(|_, list| {
                list.retain(|(_, sender)| !sender.is_closed());
                !list.is_empty()
            });
            for (table, id) in waiters.keys() {
                by_table.entry(table).or_default().push(*id);
            }
        }
        for (table, ids) in by_table {
            self.checks.inc();
            // The table is the waiter's, named at run time: runtime-bound.
            let reached: Vec<(Uuid, i64)> = sqlx::query_as(&format!(
                "SELECT id, last_sequence FROM {table} WHERE id = ANY($1)"
            ))
            .bind(&ids)
            .fetch_all(read)
            .await?;
            let mut waiters = self.lock();
            for (id, last_sequence) in reached {
                let Some(list) = waiters.get_mut(&(table, id)) else {
                    continue;
                };
                let (arrived, pending): (Vec<_>, Vec<_>) = list
                    .drain(..)
                    .partition(|(sequence, _)| *sequence <= last_sequence);
                *list = pending;
                for (_, sender) in arrived {
                    let _ = sender.send(());
                }
                if list.is_empty() {
                    waiters.remove(&(table, id));
                }
            }
        }
        Ok(())
    }
}

async fn listen(read: &PgPool) -> Option<PgListener> {
    let attempt = async {
        let mut listener = PgListener::connect_with(read).await?;
        listener.listen(CHANNEL).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    match attempt.await {
        Ok(listener) => Some(listener),
        Err(err) => {
            tracing::warn!(cause = %err, "cannot listen for projection notifications; checking every second");
            None
        }
    }
}

/// The next notification, or never when not listening.
async fn next(listener: &mut Option<PgListener>) -> sqlx::Result<()> {
    match listener {
        Some(listener) => listener.recv().await.map(drop),
        None => std::future::pending().await,
    }
}
