//! The gateway's HTTP API against the real Postgres: each test has a database of its
//! own and a gateway in process on port 0.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use testkit::api::{answer, Answer};
use testkit::gateway::{self, Gateway};
use testkit::{eventually, TestDb};

const WAIT: Duration = Duration::from_secs(10);
/// How long a test waits for an answer that must not come.
const NO_ANSWER_WINDOW: Duration = Duration::from_millis(500);

struct Harness {
    db: TestDb,
    gw: Gateway,
    client: Client,
    key: Option<String>,
}

impl Harness {
    async fn start() -> Self {
        let db = TestDb::create().await;
        let gw = gateway::start_gateway(&db).await;
        Self::with(db, gw, None)
    }

    async fn start_with_key(key: &str) -> Self {
        let db = TestDb::create().await;
        let mut config = gateway::config(&db);
        config.api_key = Some(key.to_owned());
        let gw = Gateway::start(config).await;
        Self::with(db, gw, Some(key.to_owned()))
    }

    fn with(db: TestDb, gw: Gateway, key: Option<String>) -> Self {
        Self {
            db,
            gw,
            client: testkit::http(),
            key,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, self.gw.url(path));
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    async fn create(&self, key: &str, body: &Value) -> Answer {
        let request = self
            .request(reqwest::Method::POST, "/v1/payment_intents")
            .header("Idempotency-Key", key)
            .json(body);
        answer(request.send().await.expect("request failed")).await
    }

    /// A POST with no body at all.
    async fn post(&self, path: &str) -> Answer {
        let request = self.request(reqwest::Method::POST, path);
        answer(request.send().await.expect("request failed")).await
    }

    async fn get(&self, path: &str) -> Answer {
        let request = self.request(reqwest::Method::GET, path);
        answer(request.send().await.expect("request failed")).await
    }

    /// `POST /v1/payment_methods` with `body` (sent as is, as JSON), with `key` when
    /// given.
    async fn tokenize_raw(&self, key: Option<&str>, body: &str) -> Text {
        let mut request = self
            .request(reqwest::Method::POST, "/v1/payment_methods")
            .header("Content-Type", "application/json")
            .body(body.to_owned());
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        Text::of(request).await
    }

    async fn tokenize(&self, key: Option<&str>, card_token: &str) -> Text {
        let body = json!({ "card_token": card_token }).to_string();
        self.tokenize_raw(key, &body).await
    }

    /// Tokenizes `card_token` (no key) and gives the payment method's id.
    async fn payment_method(&self, card_token: &str) -> String {
        let created = self.tokenize(None, card_token).await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.text);
        created.body["id"].as_str().unwrap().to_owned()
    }

    async fn get_text(&self, path: &str) -> Text {
        Text::of(self.request(reqwest::Method::GET, path)).await
    }

    async fn set_faults(&self, mode: &str, latency_ms: u64) {
        let request = self
            .request(reqwest::Method::PUT, "/admin/faults")
            .json(&json!({"mode": mode, "latency_ms": latency_ms}));
        let answer = answer(request.send().await.expect("request failed")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(
            answer.body,
            json!({"mode": mode, "latency_ms": latency_ms, "scope": "all"})
        );
    }

    /// The status under `key`, from the books (faults do not apply).
    async fn status_by_key(&self, key: &str) -> Option<String> {
        let intent = self.gw.intent_by_key(key).await?;
        Some(intent.status.as_str().to_owned())
    }

    async fn rows(&self, condition: &str) -> i64 {
        rows(&self.db, condition).await
    }

    /// Payment methods in the books matching `condition`.
    async fn methods(&self, condition: &str) -> i64 {
        self.db
            .scalar(&format!(
                "SELECT count(*) FROM payment_gateway.payment_methods WHERE {condition}"
            ))
            .await
    }

    /// The value of a metric sample (0 when it is not there yet).
    async fn metric(&self, sample: &str) -> f64 {
        let text = self
            .client
            .get(self.gw.url("/metrics"))
            .send()
            .await
            .expect("metrics request failed")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until `n` requests of `operation` are in flight.
    async fn until_in_flight(&self, operation: &str, n: f64) {
        let sample = format!("payment_gateway_requests_in_flight{{operation=\"{operation}\"}}");
        eventually(WAIT, "the request to be in flight", || {
            let sample = sample.clone();
            async move { (self.metric(&sample).await >= n).then_some(()) }
        })
        .await;
    }
}

/// An answer as its text (to check what it does not contain) and as JSON.
struct Text {
    status: StatusCode,
    text: String,
    body: Value,
}

impl Text {
    async fn of(request: reqwest::RequestBuilder) -> Self {
        let response = request.send().await.expect("request failed");
        let status = response.status();
        let text = response.text().await.expect("no body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self { status, text, body }
    }

    fn assert_error(&self, http: StatusCode, code: &str) {
        assert_eq!(self.status, http, "{}", self.text);
        assert_eq!(self.body["error"]["code"], code, "{}", self.text);
        assert!(self.body["error"]["message"].is_string(), "{}", self.text);
    }
}

/// Rows in the books matching `condition`, straight from the database.
async fn rows(db: &TestDb, condition: &str) -> i64 {
    db.scalar(&format!(
        "SELECT count(*) FROM payment_gateway.payment_intents WHERE {condition}"
    ))
    .await
}

fn card(payment_method: &str) -> Value {
    json!({"amount": 2500, "currency": "EUR", "payment_method": payment_method,
           "metadata": {"booking_id": "b-1"}})
}

fn status(answer: &Answer) -> &str {
    answer.body["status"]
        .as_str()
        .unwrap_or_else(|| panic!("no status: {} {}", answer.status, answer.body))
}

fn assert_ok(answer: &Answer, expected_status: &str) {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(status(answer), expected_status, "{}", answer.body);
}

fn assert_error(answer: &Answer, http: StatusCode, code: &str) {
    assert_eq!(answer.status, http, "{}", answer.body);
    assert_eq!(answer.code(), code, "{}", answer.body);
    assert!(
        answer.body["error"]["message"].is_string(),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn a_card_is_authorized_and_the_intent_reads_back_without_its_token() {
    let h = Harness::start().await;

    let created = h.create("order-1", &card("tok_visa")).await;

    assert_ok(&created, "authorized");
    let intent = &created.body;
    let id = intent["id"].as_str().unwrap();
    assert!(id.starts_with("pi_") && id.len() == 35, "{id}");
    assert_eq!(intent["object"], "payment_intent");
    assert_eq!(intent["idempotency_key"], "order-1");
    assert_eq!(intent["amount"], 2500);
    assert_eq!(intent["currency"], "EUR");
    assert_eq!(intent["decline_code"], Value::Null);
    assert_eq!(intent["metadata"], json!({"booking_id": "b-1"}));
    for field in ["created", "updated"] {
        let time = intent[field].as_str().unwrap();
        assert!(time.ends_with('Z'), "{time}");
        chrono::DateTime::parse_from_rfc3339(time).unwrap();
    }
    assert!(intent.get("payment_method").is_none(), "{intent}");
    assert!(!intent.to_string().contains("tok_visa"));
    let by_id = h.get(&format!("/v1/payment_intents/{id}")).await;
    assert_eq!(by_id.body, *intent);
    let by_key = h.get("/v1/payment_intents/by_key/order-1").await;
    assert_eq!(by_key.body, *intent);
    // The gateway is the one place that keeps the token.
    assert_eq!(h.rows("payment_method = 'tok_visa'").await, 1);
    assert_eq!(
        h.metric("payment_gateway_intent_transitions_total{to=\"authorized\"}")
            .await,
        1.0
    );
    assert_eq!(
        h.metric("payment_gateway_requests_total{operation=\"create\",status=\"200\"}")
            .await,
        1.0
    );
    h.gw.stop().await;
}

#[tokio::test]
async fn declined_cards_carry_their_code() {
    let h = Harness::start().await;

    let plain = h.create("d-1", &card("tok_decline")).await;
    let funds = h
        .create("d-2", &card("tok_decline_insufficient_funds"))
        .await;

    assert_ok(&plain, "declined");
    assert_eq!(plain.body["decline_code"], "card_declined");
    assert_ok(&funds, "declined");
    assert_eq!(funds.body["decline_code"], "insufficient_funds");
    h.gw.stop().await;
}

#[tokio::test]
async fn the_same_request_again_gets_the_same_intent_as_it_is_now() {
    let h = Harness::start().await;
    let first = h.create("k", &card("tok_visa")).await;
    let id = first.body["id"].as_str().unwrap().to_owned();

    // Same body, other key order and whitespace.
    let raw = r#"{ "metadata": {"booking_id": "b-1"}, "payment_method": "tok_visa",
                   "currency": "EUR", "amount": 2500 }"#;
    let again = h
        .request(reqwest::Method::POST, "/v1/payment_intents")
        .header("Idempotency-Key", "k")
        .header("Content-Type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    let again = answer(again).await;

    assert_eq!(again.body, first.body);
    let captured = h.post(&format!("/v1/payment_intents/{id}/capture")).await;
    assert_ok(&captured, "captured");
    let replay = h.create("k", &card("tok_visa")).await;
    assert_ok(&replay, "captured");
    assert_eq!(replay.body["id"], id.as_str());
    assert_eq!(h.rows("true").await, 1);
    h.gw.stop().await;
}

#[tokio::test]
async fn a_key_used_for_another_request_is_refused() {
    let h = Harness::start().await;
    h.create("k", &card("tok_visa")).await;

    let mut other = card("tok_visa");
    other["amount"] = json!(9900);
    let reused = h.create("k", &other).await;

    assert_error(&reused, StatusCode::CONFLICT, "idempotency_key_reused");
    assert_eq!(h.rows("true").await, 1);
    assert_eq!(h.rows("amount = 2500").await, 1);
    h.gw.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_creates_with_one_key_make_one_intent() {
    let h = Harness::start().await;

    let body = card("tok_visa");
    let answers = futures::future::join_all((0..50).map(|_| h.create("race", &body))).await;

    let ids: HashSet<String> = answers
        .iter()
        .map(|a| {
            assert_ok(a, "authorized");
            a.body["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(h.rows("true").await, 1);
    assert_eq!(
        h.metric("payment_gateway_intent_transitions_total{to=\"authorized\"}")
            .await,
        1.0
    );
    h.gw.stop().await;
}

#[tokio::test]
async fn capture_cancel_and_refund_move_intents_once_and_refuse_what_they_cannot() {
    let h = Harness::start().await;
    let new = |key: &'static str, token: &'static str| {
        let h = &h;
        async move {
            h.create(key, &card(token)).await.body["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let act = |id: String, action: &'static str| {
        let h = &h;
        async move { h.post(&format!("/v1/payment_intents/{id}/{action}")).await }
    };
    let conflict = |answer: Answer, named: &str| {
        assert_error(
            &answer,
            StatusCode::CONFLICT,
            "payment_intent_unexpected_state",
        );
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{message}");
        assert_eq!(
            answer.body["error"]["details"]["payment_intent"]["status"],
            named
        );
    };

    // authorized → captured → refunded, each asked twice.
    let paid = new("paid", "tok_visa").await;
    assert_ok(&act(paid.clone(), "capture").await, "captured");
    assert_ok(&act(paid.clone(), "capture").await, "captured");
    conflict(act(paid.clone(), "cancel").await, "captured");
    assert_ok(&act(paid.clone(), "refund").await, "refunded");
    assert_ok(&act(paid.clone(), "refund").await, "refunded");
    conflict(act(paid.clone(), "capture").await, "refunded");
    conflict(act(paid.clone(), "cancel").await, "refunded");

    // authorized → voided, asked twice; a voided intent cannot be captured.
    let dropped = new("dropped", "tok_visa").await;
    assert_ok(&act(dropped.clone(), "cancel").await, "voided");
    assert_ok(&act(dropped.clone(), "cancel").await, "voided");
    assert_ok(&act(dropped.clone(), "refund").await, "voided");
    conflict(act(dropped.clone(), "capture").await, "voided");

    // A declined intent refuses everything.
    let declined = new("declined", "tok_decline").await;
    for action in ["capture", "cancel", "refund"] {
        conflict(act(declined.clone(), action).await, "declined");
    }

    // `{}` is a body as good as none; an unknown id is 404.
    let with_body = h
        .request(
            reqwest::Method::POST,
            &format!("/v1/payment_intents/{paid}/refund"),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_ok(&answer(with_body).await, "refunded");
    let unknown = act("pi_00000000000000000000000000000000".into(), "capture").await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "resource_missing");
    let unknown = h.get("/v1/payment_intents/nope").await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "resource_missing");
    assert_eq!(
        h.metric("payment_gateway_intent_transitions_total{to=\"refunded\"}")
            .await,
        1.0
    );
    h.gw.stop().await;
}

#[tokio::test]
async fn refunding_an_authorization_voids_it() {
    let h = Harness::start().await;
    let id = h.create("k", &card("tok_visa")).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let refunded = h.post(&format!("/v1/payment_intents/{id}/refund")).await;

    assert_ok(&refunded, "voided");
    h.gw.stop().await;
}

#[tokio::test]
async fn a_key_cancelled_before_its_create_never_authorizes() {
    let h = Harness::start().await;

    let cancelled = h
        .post("/v1/payment_intents/by_key/lost%2Fkey%201/cancel")
        .await;
    let late_create = h.create("lost/key 1", &card("tok_visa")).await;

    assert_ok(&cancelled, "voided");
    let tombstone = &cancelled.body;
    assert_eq!(tombstone["idempotency_key"], "lost/key 1");
    assert_eq!(tombstone["amount"], Value::Null);
    assert_eq!(tombstone["currency"], Value::Null);
    assert_eq!(tombstone["metadata"], json!({}));
    assert_eq!(late_create.body, *tombstone);
    let read = h.get("/v1/payment_intents/by_key/lost%2Fkey%201").await;
    assert_eq!(read.body, *tombstone);
    let again = h
        .post("/v1/payment_intents/by_key/lost%2Fkey%201/cancel")
        .await;
    assert_eq!(again.body, *tombstone);
    let id = tombstone["id"].as_str().unwrap();
    let capture = h.post(&format!("/v1/payment_intents/{id}/capture")).await;
    assert_error(
        &capture,
        StatusCode::CONFLICT,
        "payment_intent_unexpected_state",
    );
    assert_eq!(h.rows("status = 'authorized'").await, 0);
    assert_eq!(h.rows("true").await, 1);
    assert_eq!(
        h.status_by_key("lost/key 1").await.as_deref(),
        Some("voided")
    );
    assert!(h.gw.intent_by_key("never used").await.is_none());
    h.gw.stop().await;
}

#[tokio::test]
async fn a_technical_cancel_voids_an_authorization_and_leaves_settled_intents_alone() {
    let h = Harness::start().await;
    let authorized = h.create("a", &card("tok_visa")).await;
    let declined = h.create("d", &card("tok_decline")).await;
    let captured = h.create("c", &card("tok_visa")).await;
    let captured_id = captured.body["id"].as_str().unwrap();
    h.post(&format!("/v1/payment_intents/{captured_id}/capture"))
        .await;

    let voided = h.post("/v1/payment_intents/by_key/a/cancel").await;
    let voided_again = h.post("/v1/payment_intents/by_key/a/cancel").await;
    let still_declined = h.post("/v1/payment_intents/by_key/d/cancel").await;
    let refused = h.post("/v1/payment_intents/by_key/c/cancel").await;

    assert_ok(&voided, "voided");
    assert_eq!(voided.body["id"], authorized.body["id"]);
    assert_eq!(voided.body["amount"], 2500);
    assert_eq!(voided_again.body, voided.body);
    assert_eq!(still_declined.body, declined.body);
    assert_error(
        &refused,
        StatusCode::CONFLICT,
        "payment_intent_unexpected_state",
    );
    assert!(refused.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("captured"));
    let too_long = h
        .post(&format!(
            "/v1/payment_intents/by_key/{}/cancel",
            "k".repeat(201)
        ))
        .await;
    assert_error(
        &too_long,
        StatusCode::BAD_REQUEST,
        "invalid_idempotency_key",
    );
    h.gw.stop().await;
}

#[tokio::test]
async fn a_create_racing_a_technical_cancel_of_its_key_never_stays_authorized() {
    let h = Harness::start().await;
    let keys: Vec<String> = (0..20).map(|i| format!("race-{i}")).collect();

    let body = &card("tok_visa");
    let harness = &h;
    let races = keys.iter().map(|key| async move {
        let h = harness;
        let path = format!("/v1/payment_intents/by_key/{key}/cancel");
        let cancel = h.post(&path);
        let create = h.create(key, body);
        let (cancelled, created) = tokio::join!(cancel, create);
        (key, cancelled, created)
    });
    let outcomes = futures::future::join_all(races).await;

    for (key, cancelled, created) in outcomes {
        assert_ok(&cancelled, "voided");
        // Either the create came first (authorized, then voided by the cancel) or the
        // tombstone did (the create got it); the key ends voided either way.
        assert_eq!(created.status, StatusCode::OK, "{}", created.body);
        assert_eq!(created.body["id"], cancelled.body["id"], "{key}");
        assert!(
            ["authorized", "voided"].contains(&status(&created)),
            "{}",
            created.body
        );
        assert_eq!(h.status_by_key(key).await.as_deref(), Some("voided"));
    }
    assert_eq!(h.rows("true").await, 20);
    h.gw.stop().await;
}

#[tokio::test]
async fn gateways_starting_together_share_one_schema_and_its_migrations() {
    let db = TestDb::create().await;

    let (a, b) = tokio::join!(
        Gateway::start(gateway::config(&db)),
        Gateway::start(gateway::config(&db))
    );

    assert_eq!(
        db.scalar("SELECT count(*) FROM payment_gateway._sqlx_migrations")
            .await,
        // Every migration of migrations/payment_gateway, once.
        std::fs::read_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../migrations/payment_gateway"
        ))
        .unwrap()
        .count() as i64
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_tables WHERE tablename = '_sqlx_migrations'")
            .await,
        1
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_list_pages_with_a_cursor_and_filters_by_status() {
    let h = Harness::start().await;
    let mut all = Vec::new();
    let mut authorized = Vec::new();
    for i in 0..25 {
        let id = h.create(&format!("k{i}"), &card("tok_visa")).await.body["id"]
            .as_str()
            .unwrap()
            .to_owned();
        if i % 3 == 0 {
            h.post(&format!("/v1/payment_intents/{id}/capture")).await;
        } else {
            authorized.push(id.clone());
        }
        all.push(id);
    }

    let walk = |query: &'static str, limit: usize| {
        let h = &h;
        async move {
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut path = format!("/v1/payment_intents?limit={limit}{query}");
                if let Some(cursor) = &cursor {
                    path.push_str(&format!("&cursor={cursor}"));
                }
                let page = h.get(&path).await;
                assert_eq!(page.status, StatusCode::OK, "{}", page.body);
                assert_eq!(page.body["object"], "list");
                let data = page.body["data"].as_array().unwrap();
                assert!(data.len() <= limit);
                seen.extend(data.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
                match page.body["next_cursor"].as_str() {
                    Some(next) => {
                        assert_eq!(page.body["has_more"], true);
                        cursor = Some(next.to_owned());
                    }
                    None => {
                        assert_eq!(page.body["has_more"], false);
                        return seen;
                    }
                }
            }
        }
    };

    assert_eq!(walk("&status=authorized", 4).await, authorized);
    assert_eq!(walk("", 7).await, all);
    assert_eq!(walk("", 100).await, all);
    let captured = walk("&status=captured", 3).await;
    assert_eq!(captured.len(), 9);
    let default_page = h.get("/v1/payment_intents").await;
    assert_eq!(default_page.body["data"].as_array().unwrap().len(), 10);
    assert_eq!(default_page.body["has_more"], true);
    let none = h.get("/v1/payment_intents?status=refunded").await;
    assert_eq!(
        none.body,
        json!({"object": "list", "data": [], "has_more": false, "next_cursor": null})
    );
    h.gw.stop().await;
}

#[tokio::test]
async fn bad_list_parameters_are_named() {
    let h = Harness::start().await;

    for (query, field) in [
        ("status=paid", "status"),
        ("status=", "status"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=zz", "cursor"),
        ("cursor=", "cursor"),
    ] {
        let answer = h.get(&format!("/v1/payment_intents?{query}")).await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        assert_eq!(
            answer.body["error"]["details"][0]["field"], field,
            "{query}"
        );
    }
    h.gw.stop().await;
}

#[tokio::test]
async fn with_a_key_set_every_api_request_needs_it() {
    let h = Harness::start_with_key("sk_test_gateway").await;
    let anonymous = |method: reqwest::Method, path: &str| {
        h.client
            .request(method, h.gw.url(path))
            .header("Idempotency-Key", "k")
            .json(&card("tok_visa"))
    };

    for (method, path) in [
        (reqwest::Method::POST, "/v1/payment_intents"),
        (reqwest::Method::GET, "/v1/payment_intents"),
        (reqwest::Method::POST, "/v1/payment_methods"),
        (
            reqwest::Method::GET,
            "/v1/payment_methods/pm_00000000000000000000000000000000",
        ),
        (reqwest::Method::GET, "/admin/faults"),
    ] {
        let missing = answer(anonymous(method.clone(), path).send().await.unwrap()).await;
        assert_error(&missing, StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(missing.headers["www-authenticate"], "Bearer");
        let wrong = anonymous(method, path).bearer_auth("sk_test_gatewaY");
        let wrong = answer(wrong.send().await.unwrap()).await;
        assert_error(&wrong, StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(wrong.headers["www-authenticate"], "Bearer");
    }
    assert_eq!(h.rows("true").await, 0);
    assert_eq!(h.methods("true").await, 0);
    assert_ok(&h.create("k", &card("tok_visa")).await, "authorized");
    let pm = h.payment_method("tok_visa").await;
    assert_eq!(
        h.get_text(&format!("/v1/payment_methods/{pm}"))
            .await
            .status,
        StatusCode::OK
    );
    let open = h.client.get(h.gw.url("/health/live")).send().await.unwrap();
    assert_eq!(open.status(), StatusCode::OK);
    let ready = h
        .client
        .get(h.gw.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let metrics = h.client.get(h.gw.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    h.gw.stop().await;
}

#[tokio::test]
async fn without_a_key_set_none_is_needed() {
    let h = Harness::start().await;

    let plain = h
        .client
        .get(h.gw.url("/admin/faults"))
        .send()
        .await
        .unwrap();

    assert_eq!(plain.status(), StatusCode::OK);
    assert_eq!(
        plain.json::<Value>().await.unwrap(),
        json!({"mode": "normal", "latency_ms": 0, "scope": "all"})
    );
    h.gw.stop().await;
}

#[tokio::test]
async fn unavailable_answers_503_and_does_nothing() {
    let h = Harness::start().await;
    h.set_faults("unavailable", 0).await;

    let refused = h.create("k", &card("tok_visa")).await;

    assert_error(
        &refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    );
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(h.rows("true").await, 0);
    let tokenize = h.tokenize(Some("pm-k"), "tok_visa").await;
    tokenize.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    assert_eq!(h.methods("true").await, 0);
    let live = h.client.get(h.gw.url("/health/live")).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    h.set_faults("normal", 0).await;
    assert_ok(&h.create("k", &card("tok_visa")).await, "authorized");
    h.gw.stop().await;
}

#[tokio::test]
async fn faults_scoped_to_intents_leave_payment_methods_alone() {
    let h = Harness::start().await;
    let request = h
        .request(reqwest::Method::PUT, "/admin/faults")
        .json(&json!({"mode": "unavailable", "latency_ms": 0, "scope": "intents"}));
    let set = answer(request.send().await.unwrap()).await;
    assert_eq!(
        set.body,
        json!({"mode": "unavailable", "latency_ms": 0, "scope": "intents"})
    );

    // The card is exchanged as usual; the payment itself is refused.
    let tokenized = h.tokenize(Some("pm-k"), "tok_visa").await;
    assert_eq!(tokenized.status, StatusCode::OK);
    let refused = h.create("k", &card("tok_visa")).await;
    assert_error(
        &refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    );
    assert_eq!(h.rows("true").await, 0);
    let bad_scope = h
        .request(reqwest::Method::PUT, "/admin/faults")
        .json(&json!({"mode": "normal", "latency_ms": 0, "scope": "charges"}));
    assert_error(
        &answer(bad_scope.send().await.unwrap()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    h.gw.stop().await;
}

/// Sends a create that is expected to get no answer within [`NO_ANSWER_WINDOW`].
async fn create_unanswered(h: &Harness, key: &str, token: &str) {
    send_unanswered(h, key, &card(token)).await;
}

/// Sends a create of `body` that is expected to get no answer within
/// [`NO_ANSWER_WINDOW`].
async fn send_unanswered(h: &Harness, key: &str, body: &Value) {
    let outcome = h
        .request(reqwest::Method::POST, "/v1/payment_intents")
        .header("Idempotency-Key", key)
        .json(body)
        .timeout(NO_ANSWER_WINDOW)
        .send()
        .await;
    match outcome {
        Ok(response) => panic!("an answer came: {}", response.status()),
        Err(err) => assert!(err.is_timeout(), "{err}"),
    }
}

#[tokio::test]
async fn hang_never_answers_and_does_nothing() {
    let h = Harness::start().await;
    h.set_faults("hang", 0).await;

    create_unanswered(&h, "k", "tok_visa").await;

    assert_eq!(h.rows("true").await, 0);
    h.set_faults("normal", 0).await;
    assert_eq!(h.get("/v1/payment_intents").await.status, StatusCode::OK);
    h.gw.stop().await;
}

#[tokio::test]
async fn lose_answer_does_the_work_but_never_answers() {
    let h = Harness::start().await;
    h.set_faults("lose_answer", 0).await;

    create_unanswered(&h, "k", "tok_visa").await;

    let recorded = eventually(WAIT, "the intent to be recorded", || async {
        h.status_by_key("k").await
    })
    .await;
    assert_eq!(recorded, "authorized");
    assert_eq!(h.rows("true").await, 1);
    h.set_faults("normal", 0).await;
    assert_ok(&h.create("k", &card("tok_visa")).await, "authorized");
    h.gw.stop().await;
}

#[tokio::test]
async fn latency_delays_every_api_answer() {
    let h = Harness::start().await;
    h.set_faults("normal", 300).await;

    let started = Instant::now();
    let created = h.create("k", &card("tok_visa")).await;
    let took = started.elapsed();

    assert_ok(&created, "authorized");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    h.gw.stop().await;
}

#[tokio::test]
async fn a_mode_switched_during_the_latency_applies_to_the_waiting_request() {
    let h = Harness::start().await;
    h.set_faults("normal", 60_000).await;
    let waiting = tokio::spawn({
        let request = h
            .request(reqwest::Method::POST, "/v1/payment_intents")
            .header("Idempotency-Key", "k")
            .json(&card("tok_visa"));
        async move { answer(request.send().await.expect("request failed")).await }
    });
    h.until_in_flight("create", 1.0).await;

    h.set_faults("unavailable", 60_000).await;
    // Shutdown cuts the latency short; the request then finds the mode in force.
    h.gw.stop().await;

    let answer = waiting.await.unwrap();
    assert_error(
        &answer,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    );
    assert_eq!(rows(&h.db, "true").await, 0);
}

#[tokio::test]
async fn tok_timeout_never_answers_and_records_nothing() {
    let h = Harness::start().await;

    create_unanswered(&h, "k", "tok_timeout").await;

    assert_eq!(h.rows("true").await, 0);
    h.gw.stop().await;
}

#[tokio::test]
async fn shutdown_completes_with_a_hung_request_in_flight() {
    let h = Harness::start().await;
    let hung = tokio::spawn(
        h.request(reqwest::Method::POST, "/v1/payment_intents")
            .header("Idempotency-Key", "k")
            .json(&card("tok_timeout"))
            .send(),
    );
    h.until_in_flight("create", 1.0).await;

    tokio::time::timeout(WAIT, h.gw.stop())
        .await
        .expect("shutdown did not complete");

    // The connection was closed without an answer.
    let outcome = hung.await.unwrap();
    assert!(outcome.is_err(), "an answer came: {outcome:?}");
    assert_eq!(rows(&h.db, "true").await, 0);
}

#[tokio::test]
async fn bad_requests_get_the_error_envelope() {
    let h = Harness::start().await;
    let raw = |key: Option<&str>, content_type: &str, body: String| {
        let mut request = h
            .request(reqwest::Method::POST, "/v1/payment_intents")
            .header("Content-Type", content_type)
            .body(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        async move { answer(request.send().await.unwrap()).await }
    };

    let malformed = raw(Some("k"), "application/json", "{\"amount\": ".into()).await;
    assert_error(&malformed, StatusCode::BAD_REQUEST, "malformed_json");
    let text = raw(Some("k"), "text/plain", card("tok_visa").to_string()).await;
    assert_error(
        &text,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let huge = raw(Some("k"), "application/json", "x".repeat(70 * 1024)).await;
    assert_error(&huge, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let keyless = raw(None, "application/json", card("tok_visa").to_string()).await;
    assert_error(
        &keyless,
        StatusCode::BAD_REQUEST,
        "idempotency_key_required",
    );
    let long_key = "k".repeat(201);
    let bad_key = raw(Some(&long_key), "application/json", "{}".into()).await;
    assert_error(&bad_key, StatusCode::BAD_REQUEST, "invalid_idempotency_key");
    let array = raw(Some("k"), "application/json", "[]".into()).await;
    assert_error(
        &array,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let invalid = h
        .create(
            "k",
            &json!({"amount": "12", "currency": "eur", "payment_method": "tok visa"}),
        )
        .await;
    assert_error(
        &invalid,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let fields: Vec<&str> = invalid.body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["amount", "currency", "payment_method"]);
    assert!(!invalid.body.to_string().contains("tok visa"));
    assert_eq!(h.rows("true").await, 0);

    let id = h.create("ok", &card("tok_visa")).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let action = |content_type: &'static str, body: &'static str| {
        let request = h
            .request(
                reqwest::Method::POST,
                &format!("/v1/payment_intents/{id}/capture"),
            )
            .header("Content-Type", content_type)
            .body(body);
        async move { answer(request.send().await.unwrap()).await }
    };
    assert_error(
        &action("application/json", "[1]").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_error(
        &action("text/plain", "capture it").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    assert_error(
        &action("application/json", "{").await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
    );
    assert_ok(&action("text/plain", "").await, "captured");

    let unknown = h.get("/v1/charges").await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found");
    let wrong_method = h
        .request(reqwest::Method::DELETE, "/v1/payment_intents")
        .send()
        .await
        .unwrap();
    assert_error(
        &answer(wrong_method).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    for faults in [
        json!({"mode": "normal"}),
        json!({"latency_ms": 0}),
        json!({"mode": "slow", "latency_ms": 0}),
        json!({"mode": "hang", "latency_ms": 600_001}),
        json!({"mode": "hang", "latency_ms": -1}),
    ] {
        let put = h
            .request(reqwest::Method::PUT, "/admin/faults")
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert_error(
            &answer(put).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
    }
    assert_eq!(
        h.get("/admin/faults").await.body,
        json!({"mode": "normal", "latency_ms": 0, "scope": "all"})
    );
    h.gw.stop().await;
}

// Payment methods.

fn assert_method(method: &Value) {
    let id = method["id"].as_str().unwrap_or_else(|| panic!("{method}"));
    assert!(id.starts_with("pm_") && id.len() == 35, "{id}");
    assert_eq!(method["object"], "payment_method");
    let created = method["created"].as_str().unwrap();
    assert!(created.ends_with('Z'), "{created}");
    chrono::DateTime::parse_from_rfc3339(created).unwrap();
    let fields: HashSet<&str> = method
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        HashSet::from(["id", "object", "created"]),
        "{method}"
    );
}

#[tokio::test]
async fn a_payment_method_authorizes_as_its_card_and_never_shows_it() {
    let h = Harness::start().await;
    let token = "tok_visa_4242_secret";

    let created = h.tokenize(None, token).await;

    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    assert_method(&created.body);
    assert!(!created.text.contains(token), "{}", created.text);
    let pm = created.body["id"].as_str().unwrap().to_owned();
    let read = h.get_text(&format!("/v1/payment_methods/{pm}")).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_eq!(read.body, created.body);
    assert!(!read.text.contains(token), "{}", read.text);
    assert_eq!(
        h.methods(&format!("id = '{pm}' AND card_token = '{token}'"))
            .await,
        1
    );

    let intent = h.create("order-1", &card(&pm)).await;

    assert_ok(&intent, "authorized");
    assert_eq!(intent.body["decline_code"], Value::Null);
    assert!(
        intent.body.get("payment_method").is_none(),
        "{}",
        intent.body
    );
    assert!(!intent.body.to_string().contains(token));
    // The intent keeps the card token itself, resolved from the payment method.
    assert_eq!(h.rows(&format!("payment_method = '{token}'")).await, 1);
    assert_eq!(h.rows("payment_method LIKE 'pm\\_%'").await, 0);
    // A replay names the payment method again; naming its token is another request.
    let replay = h.create("order-1", &card(&pm)).await;
    assert_eq!(replay.body, intent.body);
    let by_token = h.create("order-1", &card(token)).await;
    assert_error(&by_token, StatusCode::CONFLICT, "idempotency_key_reused");
    // A payment method is reusable.
    let second = h.create("order-2", &card(&pm)).await;
    assert_ok(&second, "authorized");
    assert_ne!(second.body["id"], intent.body["id"]);
    let id = intent.body["id"].as_str().unwrap();
    assert_ok(
        &h.post(&format!("/v1/payment_intents/{id}/capture")).await,
        "captured",
    );
    assert_eq!(h.rows("true").await, 2);
    assert_eq!(h.methods("true").await, 1);
    assert_eq!(
        h.metric(
            "payment_gateway_requests_total{operation=\"create_payment_method\",status=\"200\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        h.metric(
            "payment_gateway_requests_total{operation=\"retrieve_payment_method\",status=\"200\"}"
        )
        .await,
        1.0
    );
    h.gw.stop().await;
}

#[tokio::test]
async fn a_payment_method_of_a_declining_card_tokenizes_and_is_declined_with_its_code() {
    let h = Harness::start().await;
    let funds = h.payment_method("tok_decline_insufficient_funds").await;
    let plain = h.payment_method("tok_decline").await;

    let declined = h.create("d-1", &card(&funds)).await;
    let plainly = h.create("d-2", &card(&plain)).await;

    assert_ok(&declined, "declined");
    assert_eq!(declined.body["decline_code"], "insufficient_funds");
    assert_ok(&plainly, "declined");
    assert_eq!(plainly.body["decline_code"], "card_declined");
    assert_eq!(
        h.rows("payment_method = 'tok_decline_insufficient_funds' AND status = 'declined'")
            .await,
        1
    );
    h.gw.stop().await;
}

#[tokio::test]
async fn a_payment_method_of_a_timing_out_card_tokenizes_at_once_and_its_create_hangs() {
    let h = Harness::start().await;
    let started = Instant::now();
    let created = h.tokenize(Some("pm-timeout"), "tok_timeout").await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    assert!(started.elapsed() < WAIT);
    let pm = created.body["id"].as_str().unwrap().to_owned();

    send_unanswered(&h, "k", &card(&pm)).await;

    assert_eq!(h.rows("true").await, 0);
    // The hanging request holds no connection and no lock: the payment method still
    // serves, and the key is still free.
    let read = h.get_text(&format!("/v1/payment_methods/{pm}")).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_ok(&h.create("other", &card("tok_visa")).await, "authorized");
    assert!(h.gw.intent_by_key("k").await.is_none());
    h.gw.stop().await;
}

#[tokio::test]
async fn an_unknown_payment_method_is_refused_and_nothing_is_recorded() {
    let h = Harness::start().await;
    let expected = json!([{"field": "payment_method", "message": "no such payment method"}]);

    for unknown in ["pm_00000000000000000000000000000000", "pm_", "pm_tok_visa"] {
        let refused = h.create("k", &card(unknown)).await;
        assert_error(
            &refused,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        assert_eq!(refused.body["error"]["details"], expected, "{unknown}");
    }

    assert_eq!(h.rows("true").await, 0);
    assert!(h.gw.intent_by_key("k").await.is_none());
    // The key was not used: a good request with it goes through.
    let pm = h.payment_method("tok_visa").await;
    assert_ok(&h.create("k", &card(&pm)).await, "authorized");
    // And an unknown payment method under a used key changes nothing.
    let refused = h
        .create("k", &card("pm_00000000000000000000000000000000"))
        .await;
    assert_error(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_eq!(h.rows("true").await, 1);
    h.gw.stop().await;
}

#[tokio::test]
async fn a_payment_method_key_answers_the_same_request_with_the_same_payment_method() {
    let h = Harness::start().await;

    let first = h.tokenize(Some("pm-1"), "tok_visa").await;
    let again = h
        .tokenize_raw(Some("pm-1"), "{ \"card_token\" :\n  \"tok_visa\" }")
        .await;
    let other = h.tokenize(Some("pm-1"), "tok_mastercard").await;
    let extra_field = h
        .tokenize_raw(
            Some("pm-1"),
            &json!({"card_token": "tok_visa", "x": 1}).to_string(),
        )
        .await;

    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_method(&first.body);
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body, first.body);
    other.assert_error(StatusCode::CONFLICT, "idempotency_key_reused");
    assert!(!other.text.contains("tok_mastercard"), "{}", other.text);
    extra_field.assert_error(StatusCode::CONFLICT, "idempotency_key_reused");
    assert_eq!(h.methods("true").await, 1);
    assert_eq!(h.methods("card_token = 'tok_mastercard'").await, 0);

    // Keys are apart from the intents'.
    let pm = first.body["id"].as_str().unwrap();
    assert_ok(&h.create("pm-1", &card(pm)).await, "authorized");
    // Without a key, every request makes a new one.
    let a = h.payment_method("tok_visa").await;
    let b = h.payment_method("tok_visa").await;
    assert_ne!(a, b);
    assert_eq!(h.methods("true").await, 3);

    // Twenty at once with one key: one payment method.
    let answers =
        futures::future::join_all((0..20).map(|_| h.tokenize(Some("race"), "tok_amex"))).await;
    let ids: HashSet<String> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.status, StatusCode::OK, "{}", a.text);
            a.body["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(h.methods("idempotency_key = 'race'").await, 1);
    h.gw.stop().await;
}

#[tokio::test]
async fn bad_payment_method_requests_get_the_error_envelope_and_never_the_token() {
    let h = Harness::start().await;
    let token = "tok_secret_4242";
    let send = |content_type: &'static str, body: String| {
        let request = h
            .request(reqwest::Method::POST, "/v1/payment_methods")
            .header("Content-Type", content_type)
            .body(body);
        Text::of(request)
    };

    let text = send("text/plain", json!({"card_token": token}).to_string()).await;
    text.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let none = send("application/json", String::new()).await;
    none.assert_error(StatusCode::BAD_REQUEST, "malformed_json");
    let malformed = send("application/json", format!("{{\"card_token\": \"{token}")).await;
    malformed.assert_error(StatusCode::BAD_REQUEST, "malformed_json");
    assert!(!malformed.text.contains(token), "{}", malformed.text);
    let huge = send("application/json", "x".repeat(70 * 1024)).await;
    huge.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let bad_key = h.tokenize(Some(&"k".repeat(201)), token).await;
    bad_key.assert_error(StatusCode::BAD_REQUEST, "invalid_idempotency_key");

    for (body, field) in [
        (json!({}), "card_token"),
        (json!({"card_token": null}), "card_token"),
        (json!({"card_token": ""}), "card_token"),
        (json!({"card_token": 4242}), "card_token"),
        (json!({"card_token": "tok_secret 4242"}), "card_token"),
        (json!({"card_token": "tok_sécret_4242"}), "card_token"),
        (
            json!({"card_token": format!("{token}{}", "x".repeat(200))}),
            "card_token",
        ),
        (json!({"card_token": [token]}), "card_token"),
        (json!(token), ""),
        (json!([token]), ""),
    ] {
        let refused = send("application/json", body.to_string()).await;
        refused.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(
            refused.body["error"]["details"][0]["field"], field,
            "{}",
            refused.text
        );
        assert!(!refused.text.contains("secret"), "{}", refused.text);
    }
    assert_eq!(h.methods("true").await, 0);

    // 200 visible ASCII characters is the most.
    let longest = h.tokenize(None, &"t".repeat(200)).await;
    assert_eq!(longest.status, StatusCode::OK, "{}", longest.text);

    for path in [
        "/v1/payment_methods/pm_00000000000000000000000000000000".to_owned(),
        format!("/v1/payment_methods/{token}"),
        "/v1/payment_methods/%FF".to_owned(),
    ] {
        let unknown = h.get_text(&path).await;
        unknown.assert_error(StatusCode::NOT_FOUND, "resource_missing");
        assert!(!unknown.text.contains(token), "{}", unknown.text);
    }
    let wrong_method = h
        .request(reqwest::Method::GET, "/v1/payment_methods")
        .send()
        .await
        .unwrap();
    assert_error(
        &answer(wrong_method).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    h.gw.stop().await;
}

#[tokio::test]
async fn concurrent_creates_naming_one_payment_method_with_one_key_make_one_intent() {
    let h = Harness::start().await;
    let pm = h.payment_method("tok_visa").await;

    let body = card(&pm);
    let answers = futures::future::join_all((0..30).map(|_| h.create("race", &body))).await;

    let ids: HashSet<String> = answers
        .iter()
        .map(|a| {
            assert_ok(a, "authorized");
            a.body["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(h.rows("true").await, 1);
    h.gw.stop().await;
}
