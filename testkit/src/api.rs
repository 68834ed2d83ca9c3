//! Talking to the services under test: tokens, requests, answers.

use std::time::Duration;

use platform::auth::{Jwt, Role};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::JWT_SECRET;

/// An answer: status, headers, JSON body (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as JSON.
    pub body: Value,
}

impl Answer {
    /// The error code of an error envelope ("" when there is none).
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// The `id` of an accepted command.
    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in the answer: {} {}", self.status, self.body))
            .to_owned()
    }

    /// The `X-Consistency-Token` of an accepted command.
    pub fn token(&self) -> String {
        self.headers["x-consistency-token"]
            .to_str()
            .expect("a token is ASCII")
            .to_owned()
    }
}

/// Reads an answer.
pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// A token for an admin (`admin-1`).
pub fn admin() -> String {
    Jwt::new(JWT_SECRET).issue("admin-1", Role::Admin, Duration::from_secs(600))
}

/// A token for a customer.
pub fn customer(sub: &str) -> String {
    Jwt::new(JWT_SECRET).issue(sub, Role::Customer, Duration::from_secs(600))
}

/// POSTs JSON with a bearer token and extra headers.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Answer {
    let mut request = client.post(url).bearer_auth(token).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    answer(request.send().await.expect("request failed")).await
}

/// GETs with a bearer token and extra headers.
pub async fn get(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = client.get(url).bearer_auth(token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    answer(request.send().await.expect("request failed")).await
}

/// Through the command API at `base` (a service's or the front door's address): a
/// location "Olympia" of 100 seats, then an event there; returns the event's id.
pub async fn schedule_event(client: &reqwest::Client, base: &str) -> String {
    let location = post(
        client,
        &format!("{base}/v1/locations"),
        &admin(),
        &[],
        &location_body("Olympia", 100),
    )
    .await;
    assert_eq!(location.status, StatusCode::CREATED, "{}", location.body);
    let event = post(
        client,
        &format!("{base}/v1/events"),
        &admin(),
        &[],
        &event_body(&location.id()),
    )
    .await;
    assert_eq!(event.status, StatusCode::CREATED, "{}", event.body);
    event.id()
}

/// A location body with one hall "Main" of `capacity` seats.
pub fn location_body(name: &str, capacity: u32) -> Value {
    json!({"name": name, "address": "28 Bd des Capucines", "country": "FR",
           "halls": [{"name": "Main", "capacity": capacity}]})
}

/// A schedule body for `location`'s hall "Main", starting in `days` days, 25.00 EUR.
pub fn event_body_in(location: &str, name: &str, days: i64) -> Value {
    let starts = chrono::Utc::now() + chrono::Duration::days(days);
    json!({
        "name": name,
        "location_id": location,
        "hall": "Main",
        "starts_at": starts.to_rfc3339(),
        "ends_at": (starts + chrono::Duration::hours(3)).to_rfc3339(),
        "price_cents": 2500,
        "currency": "EUR",
    })
}

/// [`event_body_in`] 30 days ahead, named "Jazz night".
pub fn event_body(location: &str) -> Value {
    event_body_in(location, "Jazz night", 30)
}
