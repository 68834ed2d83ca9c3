//! The notifier binary killed with SIGKILL: nothing is lost, and the only duplicate is
//! the documented one: a message the SMTP server took just before the kill, whose end
//! the log had not recorded yet, is sent once more, with the same Message-ID.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use e2e::*;
use testkit::smtp::{Mail, SmtpSink};
use testkit::{eventually, roles};
use tokio::process::{Child, Command};
use uuid::Uuid;

mod common;
use common::*;

const PATIENCE: Duration = Duration::from_secs(90);
/// Messages in flight at once in the notifier under test.
const CONCURRENCY: usize = 4;

/// The notifier binary, run as a deployment runs it, sending to `sink`.
struct Notifier {
    env: Vec<(&'static str, String)>,
    child: Option<Child>,
}

impl Notifier {
    fn new(stack: &Stack, sink: &SmtpSink) -> Self {
        let env = vec![
            (
                "DATABASE_URL",
                roles::url_as(&stack.db.url, roles::NOTIFIER),
            ),
            ("SMTP_URL", sink.url()),
            ("MAIL_FROM", "boxoffice <tickets@boxoffice.test>".to_owned()),
            ("KAFKA_BROKERS", stack.brokers.clone()),
            ("KAFKA_TOPIC", stack.topic.name.clone()),
            (
                "NOTIFIER_GROUP",
                format!("bt-notifier-{}", Uuid::new_v4().simple()),
            ),
            (
                "NOTIFIER_ADDR",
                format!("127.0.0.1:{}", testkit::free_port()),
            ),
            ("NOTIFIER_SWEEP_MS", "500".to_owned()),
            ("NOTIFIER_CONCURRENCY", CONCURRENCY.to_string()),
            ("SMTP_TIMEOUT_MS", "6000".to_owned()),
            ("NOTIFIER_LEASE_MS", "12000".to_owned()),
            ("NOTIFIER_RETRY_BASE_MS", "200".to_owned()),
            ("NOTIFIER_RETRY_MAX_MS", "1000".to_owned()),
            ("LOG_FORMAT", "json".to_owned()),
        ];
        Self { env, child: None }
    }

    /// Starts the binary and waits until it is ready: facts recorded before its first
    /// start would be history to it.
    async fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_notifier"))
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the notifier binary");
        self.child = Some(child);
        let addr = &self
            .env
            .iter()
            .find(|(k, _)| *k == "NOTIFIER_ADDR")
            .expect("an address")
            .1;
        let ready = format!("http://{addr}/health/ready");
        let client = testkit::http();
        eventually(PATIENCE, "the notifier to be ready", || async {
            let answer = client.get(&ready).send().await.ok()?;
            answer.status().is_success().then_some(())
        })
        .await;
    }

    /// SIGKILL: no shutdown, no last commit.
    async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.expect("SIGKILL");
    }
}

async fn sent(stack: &Stack) -> i64 {
    stack
        .db
        .scalar("SELECT count(*) FROM notifier.notifications WHERE status = 'sent'")
        .await
}

/// Messages by Message-ID.
fn by_id(mails: &[Mail]) -> BTreeMap<String, Vec<&Mail>> {
    let mut ids: BTreeMap<String, Vec<&Mail>> = BTreeMap::new();
    for mail in mails {
        ids.entry(mail.message_id.clone()).or_default().push(mail);
    }
    ids
}

#[tokio::test]
async fn killed_mid_stream_the_notifier_loses_nothing() {
    const BOOKINGS: usize = 40;
    let stack = Stack::start().await;
    let sink = SmtpSink::start().await;
    let mut notifier = Notifier::new(&stack, &sink);
    notifier.start().await;
    let event = jazz_night(&stack).await;
    // Bookings keep coming while the notifier is killed, once some messages have gone
    // out (watched closely: they go fast), and come back.
    let booked = async {
        let mut bookings = Vec::new();
        for n in 0..BOOKINGS {
            let user = format!("fan{n}");
            let token = customer_with(&user, None, Some(&format!("{user}@example.com")));
            bookings.push(book(&stack, &event, &token, 1, "tok_visa").await);
        }
        bookings
    };
    let kill = async {
        let deadline = std::time::Instant::now() + PATIENCE;
        while sink.messages().len() < 5 {
            assert!(std::time::Instant::now() < deadline, "no messages");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        notifier.kill().await;
        sink.messages().len()
    };
    let (bookings, at_kill) = tokio::join!(booked, kill);
    assert!(
        at_kill < BOOKINGS,
        "the kill came after every message had gone"
    );
    notifier.start().await;
    eventually(PATIENCE, "every confirmation sent", || async {
        (sent(&stack).await == BOOKINGS as i64).then_some(())
    })
    .await;
    let mails = sink.messages();
    let ids = by_id(&mails);
    assert_eq!(
        ids.len(),
        BOOKINGS,
        "one message per booking ({at_kill} before the kill)"
    );
    for booking in &bookings {
        let id = format!("booking-{booking}.2@boxoffice.test");
        assert!(ids.contains_key(&id), "{id} arrived");
    }
    // A copy only of what was in flight at the kill, and at most one more each.
    let copies: Vec<_> = ids.values().filter(|same| same.len() > 1).collect();
    assert!(
        copies.len() <= CONCURRENCY,
        "{} messages twice",
        copies.len()
    );
    assert!(copies.iter().all(|same| same.len() == 2));
    notifier.kill().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_crash_between_the_smtp_answer_and_the_log_resends_once_with_the_same_message_id() {
    let stack = Stack::start().await;
    let sink = SmtpSink::start().await;
    let mut notifier = Notifier::new(&stack, &sink);
    notifier.start().await;
    let event = jazz_night(&stack).await;
    // The sink writes this message at once and answers 250 three seconds later.
    let token = customer_with("sam", None, Some("slow.sam@example.com"));
    let booking = book(&stack, &event, &token, 1, "tok_visa").await;
    sink.wait_for(1, PATIENCE).await;
    // The log may not record the answer yet.
    let mut blocker = stack.db.connect().await;
    let mut lock = sqlx::Connection::begin(&mut blocker).await.unwrap();
    sqlx::query("LOCK TABLE notifier.notifications IN SHARE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    // The 250 came: the notifier's record of it waits for the lock.
    eventually(PATIENCE, "the record to wait", || async {
        let waiting = stack
            .db
            .scalar(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND wait_event_type = 'Lock'
                    AND query LIKE '%UPDATE notifications%SET status%'",
            )
            .await;
        (waiting == 1).then_some(())
    })
    .await;
    notifier.kill().await;
    lock.rollback().await.unwrap();

    notifier.start().await;
    eventually(PATIENCE, "the notification recorded as sent", || async {
        (sent(&stack).await == 1).then_some(())
    })
    .await;
    let mails = sink.messages();
    assert_eq!(mails.len(), 2, "sent once more after the crash, not more");
    assert_eq!(
        mails[0].message_id,
        format!("booking-{booking}.2@boxoffice.test")
    );
    assert_eq!(mails[1].message_id, mails[0].message_id);
    assert_eq!(mails[1].subject, mails[0].subject);
    notifier.kill().await;
    stack.stop().await;
}
