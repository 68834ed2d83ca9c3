//! Personal and card data, looked for everywhere a user of boxoffice could find it.
//!
//! A customer books with a card token and contact data nobody else has; the saga runs,
//! the booking is cancelled and refunded, the bookings are rebuilt, the store is
//! exported and audited. Then the card token is searched for in every table (but the
//! payment gateway's own books, the one place allowed to hold it), on the topic, in the
//! export, in every HTTP answer and in every log line of every service: it is nowhere.
//! The customer is erased; their contact data is then nowhere in clear text either,
//! while the hash chain still verifies, and their next booking gets a new key.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::*;
use platform::auth::{Claims, Jwt, Role};
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::{eventually, read_topic, JWT_SECRET};

const CARD: &str = "tok_visa_privacy_5e9f1c7a";
const NAME: &str = "Zelda Privacyname";
const EMAIL: &str = "zelda.privacy@example.org";
const USER: &str = "zelda";

/// Every log line of every service in this test process.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Captures every service's logs, at debug level (more than they say in production),
    /// for the rest of the test.
    fn capture() -> Self {
        let logs = Self::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .json()
            .with_env_filter("debug,librdkafka=info,rdkafka=info")
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the test's subscriber is the first");
        logs
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// A customer token carrying the contact claims.
fn zelda() -> String {
    let mut claims = Claims::new(USER, Role::Customer, Duration::from_secs(600));
    claims.name = Some(NAME.into());
    claims.email = Some(EMAIL.into());
    Jwt::new(JWT_SECRET).sign(claims)
}

/// Every HTTP answer of the test, as text.
#[derive(Default)]
struct Answers(Vec<String>);

impl Answers {
    fn keep(&mut self, answer: &Answer) -> Value {
        self.0.push(answer.body.to_string());
        answer.body.clone()
    }
}

/// The rows of every table of the store and the read models, as text, that contain
/// `needle` (the payment gateway's schema is left out when `with_gateway` is false).
async fn tables_with(stack: &Stack, needle: &str, with_gateway: bool) -> Vec<String> {
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables
          WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&stack.db.pool)
    .await
    .unwrap();
    let mut found = Vec::new();
    for (schema, table) in tables {
        if schema == "payment_gateway" && !with_gateway {
            continue;
        }
        let hits: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM \"{schema}\".\"{table}\" t WHERE t::text ILIKE $1"
        ))
        .bind(format!("%{needle}%"))
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
        if hits > 0 {
            found.push(format!("{schema}.{table}"));
        }
    }
    found
}

async fn export(stack: &Stack) -> String {
    stack
        .client
        .get(stack.query.url("/v1/audit/export"))
        .bearer_auth(admin())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn topic_text(stack: &Stack) -> String {
    read_topic(&stack.brokers, &stack.relay_topic)
        .await
        .iter()
        .map(|(_, wire)| serde_json::to_string(wire).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn card_and_contact_data_are_nowhere_they_should_not_be_and_erasure_shreds_contacts() {
    let logs = Logs::capture();
    let stack = Stack::start().await;
    let mut answers = Answers::default();
    let location = stack.location("Olympia", 50).await;
    let event = stack.event(&event_body(&location)).await.id();

    // Book, with a key; the saga confirms and captures.
    let booked = testkit::api::post(
        &stack.client,
        &stack.command.url(&format!("/v1/events/{event}/bookings")),
        &zelda(),
        &[("idempotency-key", "zelda-1")],
        &json!({"seats": 2, "card_token": CARD}),
    )
    .await;
    assert_eq!(booked.status, StatusCode::ACCEPTED, "{}", booked.body);
    answers.keep(&booked);
    let booking = booked.id();
    let path = format!("/v1/bookings/{booking}");
    let confirmed = stack
        .eventually(&path, &zelda(), "the confirmation", |a| {
            a.body["status"] == "confirmed"
        })
        .await;
    // Its owner sees the contact data it was booked with.
    assert_eq!(
        answers.keep(&confirmed)["contact"],
        json!({"erased": false, "name": NAME, "email": EMAIL})
    );
    // Cancelled and refunded.
    let cancelled = stack
        .command(
            &format!("/v1/bookings/{booking}/cancel"),
            &zelda(),
            &json!({}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::ACCEPTED);
    answers.keep(&cancelled);
    let refunded = stack
        .eventually(&path, &zelda(), "the refund", |a| {
            a.body["refunded"] == true
        })
        .await;
    answers.keep(&refunded);
    eventually(
        Duration::from_secs(20),
        "the refund at the gateway",
        || async {
            (stack.gateway.status_by_key(&booking).await.as_deref() == Some("refunded"))
                .then_some(())
        },
    )
    .await;

    // A rebuild, the audit and the export.
    let rebuild = testkit::api::post(
        &stack.client,
        &stack.query.url("/v1/admin/projections/bookings/rebuild"),
        &admin(),
        &[],
        &json!({}),
    )
    .await;
    assert_eq!(rebuild.status, StatusCode::ACCEPTED, "{}", rebuild.body);
    answers.keep(&rebuild);
    let done = stack
        .eventually("/v1/admin/projections", &admin(), "the rebuild", |a| {
            a.body[2]["rebuild"]["status"] == "done"
        })
        .await;
    answers.keep(&done);
    for audit in [
        format!("/v1/audit/streams/booking/{booking}"),
        format!("/v1/audit/streams/booking/{booking}/state"),
        format!("/v1/audit/streams/booking/{booking}/state?at_sequence=1"),
        "/v1/audit/verify".to_owned(),
        "/v1/users/me/bookings".to_owned(),
    ] {
        let token = if audit.starts_with("/v1/users") {
            zelda()
        } else {
            admin()
        };
        let answer = stack.query(&audit, &token).await;
        assert_eq!(answer.status, StatusCode::OK, "{audit}: {}", answer.body);
        answers.keep(&answer);
    }
    stack.published().await;
    let exported = export(&stack).await;
    let topic = topic_text(&stack).await;

    // The card token: at the gateway, and nowhere else.
    assert_eq!(tables_with(&stack, CARD, false).await, Vec::<String>::new());
    assert!(
        !tables_with(&stack, CARD, true).await.is_empty(),
        "the gateway keeps it"
    );
    assert!(!topic.is_empty() && !topic.contains(CARD), "the topic");
    assert!(
        !exported.is_empty() && !exported.contains(CARD),
        "the export"
    );
    for answer in &answers.0 {
        assert!(!answer.contains(CARD), "an HTTP answer: {answer}");
    }
    // Nor a plain hash of the request that carried it: the fingerprint of a request is
    // kept keyed, with its idempotency key only, never in the facts.
    let plain = platform::http::fingerprint(
        "POST",
        &format!("/v1/events/{event}/bookings"),
        &json!({"seats": 2, "card_token": CARD}),
    );
    assert_eq!(
        tables_with(&stack, &plain, true).await,
        Vec::<String>::new()
    );
    assert!(
        !topic.contains("request_fingerprint") && !exported.contains("request_fingerprint"),
        "no fingerprint in the facts"
    );
    let text = logs.text();
    assert!(
        text.contains("command-api listening") && text.contains("payment-gateway listening"),
        "the services' logs are captured"
    );
    assert!(!text.contains(CARD), "the logs");
    // The contact data is stored and published sealed only.
    for clear in [NAME, EMAIL] {
        assert_eq!(
            tables_with(&stack, clear, true).await,
            Vec::<String>::new(),
            "{clear}"
        );
        assert!(
            !topic.contains(clear) && !exported.contains(clear),
            "{clear}"
        );
    }

    // Erased.
    let erase_path = format!("/v1/admin/users/{USER}/erase");
    let erased = stack.command(&erase_path, &admin(), &json!({})).await;
    assert_eq!(erased.status, StatusCode::ACCEPTED, "{}", erased.body);
    let again = stack.command(&erase_path, &admin(), &json!({})).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "erasing is idempotent");
    let shown = stack
        .eventually(&path, &zelda(), "the erasure to show", |a| {
            a.body["contact"]["erased"] == true
        })
        .await;
    let mut after = vec![shown.body.to_string()];
    for (audit, token) in [
        (format!("/v1/audit/streams/booking/{booking}"), admin()),
        (
            format!("/v1/audit/streams/booking/{booking}/state"),
            admin(),
        ),
        ("/v1/users/me/bookings".to_owned(), zelda()),
    ] {
        let answer = stack.query(&audit, &token).await;
        assert_eq!(answer.status, StatusCode::OK);
        after.push(answer.body.to_string());
    }
    let state = stack
        .query(
            &format!("/v1/audit/streams/booking/{booking}/state"),
            &admin(),
        )
        .await;
    assert_eq!(
        state.body["state"]["state"]["contact"],
        json!({"erased": true, "name": null, "email": null})
    );
    // The users projection records it; a rebuild of it gives the same.
    let users = stack.query("/v1/admin/projections", &admin()).await;
    assert_eq!(users.body[3]["name"], "users");
    let verified = stack.query("/v1/audit/verify", &admin()).await;
    assert_eq!(verified.body["ok"], true, "{}", verified.body);
    stack.published().await;
    let exported = export(&stack).await;
    let topic = topic_text(&stack).await;
    for clear in [NAME, EMAIL] {
        assert_eq!(
            tables_with(&stack, clear, true).await,
            Vec::<String>::new(),
            "{clear}"
        );
        assert!(!topic.contains(clear), "{clear} on the topic");
        assert!(!exported.contains(clear), "{clear} in the export");
        for answer in &after {
            assert!(!answer.contains(clear), "{clear} in an answer: {answer}");
        }
        assert!(!logs.text().contains(clear), "{clear} in the logs");
    }
    // The key is gone: no row of user_keys holds a secret for zelda.
    let live_keys = stack
        .db
        .scalar("SELECT count(*) FROM user_keys WHERE user_id = 'zelda' AND secret IS NOT NULL")
        .await;
    assert_eq!(live_keys, 0);

    // Her next booking is sealed under a new key, and shown to her.
    let next = testkit::api::post(
        &stack.client,
        &stack.command.url(&format!("/v1/events/{event}/bookings")),
        &zelda(),
        &[],
        &json!({"seats": 1, "card_token": CARD}),
    )
    .await;
    assert_eq!(next.status, StatusCode::ACCEPTED);
    let shown = stack
        .eventually(
            &format!("/v1/bookings/{}", next.id()),
            &zelda(),
            "her next booking",
            |a| a.status == StatusCode::OK,
        )
        .await;
    assert_eq!(
        shown.body["contact"],
        json!({"erased": false, "name": NAME, "email": EMAIL})
    );
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT contact ->> 'key_id' FROM read_models.booking_view WHERE user_id = 'zelda' ORDER BY id",
    )
    .fetch_all(&stack.db.pool)
    .await
    .unwrap();
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0], keys[1], "a new key after the erasure");
    stack.stop().await;
}
