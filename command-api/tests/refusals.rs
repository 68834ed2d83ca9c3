//! Every refusal of API.md: its status, its code in the JSON envelope, and nothing
//! appended (no event, no outbox row, no idempotency record).

mod common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use domain::booking::BookingCommand;
use domain::event::{EventDetails, EventFact};
use domain::values::{Capacity, Currency, Name, PriceCents};
use platform::auth::{Jwt, Role};
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::{TestDb, JWT_SECRET};
use uuid::Uuid;

/// How a case sends its body.
enum Body {
    Json(Value),
    Raw {
        content_type: Option<&'static str>,
        bytes: Vec<u8>,
    },
}

struct Case {
    name: &'static str,
    method: reqwest::Method,
    path: String,
    /// The full Authorization header value, or none.
    authorization: Option<String>,
    headers: Vec<(&'static str, String)>,
    body: Body,
    status: StatusCode,
    code: &'static str,
}

fn post(
    name: &'static str,
    path: impl Into<String>,
    token: &str,
    body: Value,
    status: StatusCode,
    code: &'static str,
) -> Case {
    Case {
        name,
        method: reqwest::Method::POST,
        path: path.into(),
        authorization: Some(format!("Bearer {token}")),
        headers: vec![],
        body: Body::Json(body),
        status,
        code,
    }
}

fn raw(
    name: &'static str,
    path: &str,
    content_type: Option<&'static str>,
    bytes: Vec<u8>,
    status: StatusCode,
    code: &'static str,
) -> Case {
    Case {
        body: Body::Raw {
            content_type,
            bytes,
        },
        ..post(name, path, &admin(), Value::Null, status, code)
    }
}

fn unauthorized(name: &'static str, authorization: Option<String>) -> Case {
    Case {
        authorization,
        ..post(
            name,
            "/v1/locations",
            "",
            location_body(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
    }
}

fn location_body() -> Value {
    json!({"name": "Olympia", "address": "Paris", "country": "FR", "halls": [{"name": "Main", "capacity": 10}]})
}

fn expired_token() -> String {
    signed(json!({"sub": "admin-1", "role": "admin", "exp": Utc::now().timestamp() - 10}))
}

/// A token with these claims, signed with the test secret.
fn signed(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// An event that has already started, appended as a raw fact (the API would refuse to
/// schedule it).
async fn started_event(db: &TestDb, location: &str) -> String {
    let id = Uuid::now_v7().to_string();
    let fact = EventFact::EventScheduled(EventDetails {
        name: Name::parse("Matinee").unwrap(),
        location_id: location.parse().unwrap(),
        location_name: Name::parse("Olympia").unwrap(),
        hall: Name::parse("Main").unwrap(),
        starts_at: Utc::now() - chrono::Duration::hours(1),
        ends_at: Utc::now() + chrono::Duration::hours(1),
        price_cents: PriceCents::parse(100).unwrap(),
        currency: Currency::parse("EUR").unwrap(),
        capacity: Capacity::parse(10).unwrap(),
    });
    let mut conn = db.connect().await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('event', $1, 1, 'EventScheduled', '1.0', $2, '{}')",
    )
    .bind(&id)
    .bind(serde_json::to_value(&fact).unwrap())
    .execute(&mut conn)
    .await
    .unwrap();
    id
}

async fn booking(app: &TestApp, event: &str, user: &str) -> String {
    let answer = app
        .post(
            &format!("/v1/events/{event}/bookings"),
            &customer(user),
            &json!({"seats": 1, "card_token": "tok"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    answer.id()
}

async fn run_as_saga(app: &TestApp, booking: &str, command: BookingCommand) {
    let metadata = domain::metadata::EventMetadata {
        user_id: Some("system".to_owned()),
        ..Default::default()
    };
    app.state
        .bookings
        .execute(booking, command, &metadata)
        .await
        .unwrap();
}

/// What a refusal must leave untouched.
async fn footprint(db: &TestDb) -> (i64, i64, i64) {
    (
        db.scalar("SELECT count(*) FROM events").await,
        db.scalar("SELECT count(*) FROM outbox").await,
        db.scalar("SELECT count(*) FROM idempotency_keys").await,
    )
}

#[tokio::test]
async fn every_refusal_has_its_code_and_appends_nothing() {
    let db = TestDb::create().await;
    let app = TestApp::spawn(&db).await;

    // Given: a location (hall Main, 100 seats), a scheduled event, a cancelled event, a
    // started event, a pending booking, and a confirmed-then-cancelled booking.
    let location = app.location(100).await;
    let event = app
        .post("/v1/events", &admin(), &event_body(&location))
        .await
        .id();
    let cancelled_event = app
        .post("/v1/events", &admin(), &event_body(&location))
        .await
        .id();
    let cancel = app
        .post(
            &format!("/v1/events/{cancelled_event}/cancel"),
            &admin(),
            &json!({"reason": "storm"}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED);
    let started_event = started_event(&db, &location).await;
    let pending = booking(&app, &event, "alice").await;
    let confirmed = booking(&app, &event, "alice").await;
    run_as_saga(&app, &confirmed, BookingCommand::ConfirmBooking).await;
    let cancelled = booking(&app, &event, "alice").await;
    run_as_saga(&app, &cancelled, BookingCommand::ConfirmBooking).await;
    let cancel = app
        .post(
            &format!("/v1/bookings/{cancelled}/cancel"),
            &customer("alice"),
            &json!({}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED);

    let unknown = Uuid::new_v4();
    let a = admin();
    let bob = customer("bob");
    let with_event = |changes: Value| {
        let mut body = event_body(&location);
        for (k, v) in changes.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let starts = Utc::now() + chrono::Duration::days(3);
    use StatusCode as S;
    let cases = vec![
        // 401: missing, malformed, badly signed or expired token.
        unauthorized("no Authorization header", None),
        unauthorized("not a bearer token", Some("Basic YWRtaW46YWRtaW4=".into())),
        unauthorized("a malformed token", Some("Bearer not.a.jwt".into())),
        unauthorized(
            "a token signed with another secret",
            Some(format!(
                "Bearer {}",
                Jwt::new("another").issue("admin-1", Role::Admin, Duration::from_secs(60))
            )),
        ),
        unauthorized(
            "an expired token",
            Some(format!("Bearer {}", expired_token())),
        ),
        unauthorized(
            "a token not valid yet",
            Some(format!(
                "Bearer {}",
                signed(json!({"sub": "admin-1", "role": "admin",
                              "nbf": Utc::now().timestamp() + 60, "exp": Utc::now().timestamp() + 600}))
            )),
        ),
        unauthorized(
            "a token living longer than 24 h",
            Some(format!(
                "Bearer {}",
                signed(
                    json!({"sub": "admin-1", "role": "admin", "iat": Utc::now().timestamp(),
                              "exp": Utc::now().timestamp() + 25 * 3600})
                )
            )),
        ),
        // 403: the wrong role, someone else's booking.
        post(
            "a customer creates a location",
            "/v1/locations",
            &bob,
            location_body(),
            S::FORBIDDEN,
            "forbidden",
        ),
        post(
            "a customer adds a hall",
            format!("/v1/locations/{location}/halls"),
            &bob,
            json!({"name": "X", "capacity": 1}),
            S::FORBIDDEN,
            "forbidden",
        ),
        post(
            "a customer schedules an event",
            "/v1/events",
            &bob,
            event_body(&location),
            S::FORBIDDEN,
            "forbidden",
        ),
        post(
            "a customer cancels an event",
            format!("/v1/events/{event}/cancel"),
            &bob,
            json!({"reason": "x"}),
            S::FORBIDDEN,
            "forbidden",
        ),
        // 404: someone else's booking is answered as an unknown one, so that the
        // answer does not tell it exists.
        post(
            "bob cancels alice's booking",
            format!("/v1/bookings/{confirmed}/cancel"),
            &bob,
            json!({}),
            S::NOT_FOUND,
            "not_found",
        ),
        post(
            "bob cancels a booking that does not exist",
            format!("/v1/bookings/{unknown}/cancel"),
            &bob,
            json!({}),
            S::NOT_FOUND,
            "not_found",
        ),
        // 415, 413, 400: the body itself.
        raw(
            "no Content-Type",
            "/v1/locations",
            None,
            location_body().to_string().into_bytes(),
            S::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        raw(
            "Content-Type text/plain",
            "/v1/locations",
            Some("text/plain"),
            location_body().to_string().into_bytes(),
            S::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        raw(
            "a body over 64 KiB",
            "/v1/locations",
            Some("application/json"),
            json!({"name": "x".repeat(70_000), "address": "a", "country": "FR", "halls": []})
                .to_string()
                .into_bytes(),
            S::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        raw(
            "malformed JSON",
            "/v1/locations",
            Some("application/json"),
            b"{\"name\": ".to_vec(),
            S::BAD_REQUEST,
            "malformed_json",
        ),
        raw(
            "an empty body",
            "/v1/locations",
            Some("application/json"),
            Vec::new(),
            S::BAD_REQUEST,
            "malformed_json",
        ),
        raw(
            "deeply nested JSON",
            "/v1/locations",
            Some("application/json"),
            "[".repeat(10_000).into_bytes(),
            S::BAD_REQUEST,
            "malformed_json",
        ),
        Case {
            headers: vec![("idempotency-key", "k".repeat(201))],
            ..post(
                "an Idempotency-Key over 200 characters",
                "/v1/locations",
                &a,
                location_body(),
                S::BAD_REQUEST,
                "invalid_idempotency_key",
            )
        },
        // 422: validation of the body's shape and values.
        post(
            "a location without halls field",
            "/v1/locations",
            &a,
            json!({"name": "O", "address": "P", "country": "FR"}),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        post(
            "halls that are not a list",
            "/v1/locations",
            &a,
            json!({"name": "O", "address": "P", "country": "FR", "halls": "Main"}),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        post(
            "a hall of capacity 0",
            "/v1/locations",
            &a,
            json!({"name": "O", "address": "P", "country": "FR", "halls": [{"name": "Main", "capacity": 0}]}),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        post(
            "a blank location name",
            "/v1/locations",
            &a,
            json!({"name": "  ", "address": "P", "country": "FR", "halls": []}),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        post(
            "two halls of one name",
            "/v1/locations",
            &a,
            json!({"name": "O", "address": "P", "country": "FR", "halls": [{"name": "A", "capacity": 1}, {"name": "A", "capacity": 2}]}),
            S::UNPROCESSABLE_ENTITY,
            "duplicate_hall",
        ),
        post(
            "a hall with a negative capacity",
            format!("/v1/locations/{location}/halls"),
            &a,
            json!({"name": "Club", "capacity": -3}),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        post(
            "an event at an unknown location",
            "/v1/events",
            &a,
            with_event(json!({"location_id": unknown.to_string()})),
            S::UNPROCESSABLE_ENTITY,
            "unknown_location",
        ),
        post(
            "a location_id that is not a UUID",
            "/v1/events",
            &a,
            with_event(json!({"location_id": "olympia"})),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        post(
            "an event in an unknown hall",
            "/v1/events",
            &a,
            with_event(json!({"hall": "Attic"})),
            S::UNPROCESSABLE_ENTITY,
            "unknown_hall",
        ),
        post(
            "more seats than the hall",
            "/v1/events",
            &a,
            with_event(json!({"capacity": 101})),
            S::UNPROCESSABLE_ENTITY,
            "capacity_exceeds_hall",
        ),
        post(
            "an event ending before it starts",
            "/v1/events",
            &a,
            with_event(
                json!({"starts_at": starts.to_rfc3339(), "ends_at": (starts - chrono::Duration::hours(1)).to_rfc3339()}),
            ),
            S::UNPROCESSABLE_ENTITY,
            "ends_before_start",
        ),
        post(
            "an event starting in the past",
            "/v1/events",
            &a,
            with_event(
                json!({"starts_at": "2001-01-01T20:00:00Z", "ends_at": "2001-01-01T22:00:00Z"}),
            ),
            S::UNPROCESSABLE_ENTITY,
            "starts_in_past",
        ),
        post(
            "a time that is not RFC 3339",
            "/v1/events",
            &a,
            with_event(json!({"starts_at": "next friday"})),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        post(
            "a currency in lower case",
            "/v1/events",
            &a,
            with_event(json!({"currency": "eur"})),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        post(
            "a negative price",
            "/v1/events",
            &a,
            with_event(json!({"price_cents": -1})),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        post(
            "a capacity of zero",
            "/v1/events",
            &a,
            with_event(json!({"capacity": 0})),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        post(
            "a cancellation without reason",
            format!("/v1/events/{event}/cancel"),
            &a,
            json!({}),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        post(
            "zero seats",
            format!("/v1/events/{event}/bookings"),
            &bob,
            json!({"seats": 0, "card_token": "tok"}),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        post(
            "eleven seats",
            format!("/v1/events/{event}/bookings"),
            &bob,
            json!({"seats": 11, "card_token": "tok"}),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        post(
            "seats as text",
            format!("/v1/events/{event}/bookings"),
            &bob,
            json!({"seats": "two", "card_token": "tok"}),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        post(
            "a fraction of a seat",
            format!("/v1/events/{event}/bookings"),
            &bob,
            json!({"seats": 2.5, "card_token": "tok"}),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        post(
            "a huge number of seats",
            format!("/v1/events/{event}/bookings"),
            &bob,
            json!({"seats": 1e40, "card_token": "tok"}),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        post(
            "no card token",
            format!("/v1/events/{event}/bookings"),
            &bob,
            json!({"seats": 1}),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        post(
            "a card token with spaces",
            format!("/v1/events/{event}/bookings"),
            &bob,
            json!({"seats": 1, "card_token": "tok visa"}),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        post(
            "a body that is a list",
            format!("/v1/events/{event}/bookings"),
            &bob,
            json!([1, 2]),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        // 404: unknown ids and routes.
        post(
            "booking an unknown event",
            format!("/v1/events/{unknown}/bookings"),
            &bob,
            json!({"seats": 1, "card_token": "tok"}),
            S::NOT_FOUND,
            "not_found",
        ),
        post(
            "booking an event id that is not a UUID",
            "/v1/events/jazz-night/bookings",
            &bob,
            json!({"seats": 1, "card_token": "tok"}),
            S::NOT_FOUND,
            "not_found",
        ),
        post(
            "a hall for an unknown location",
            format!("/v1/locations/{unknown}/halls"),
            &a,
            json!({"name": "Club", "capacity": 5}),
            S::NOT_FOUND,
            "not_found",
        ),
        post(
            "cancelling an unknown event",
            format!("/v1/events/{unknown}/cancel"),
            &a,
            json!({"reason": "x"}),
            S::NOT_FOUND,
            "not_found",
        ),
        post(
            "cancelling an unknown booking",
            format!("/v1/bookings/{unknown}/cancel"),
            &bob,
            json!({}),
            S::NOT_FOUND,
            "not_found",
        ),
        post(
            "an unknown route",
            "/v1/nothing-here",
            &a,
            json!({}),
            S::NOT_FOUND,
            "not_found",
        ),
        Case {
            method: reqwest::Method::GET,
            ..post(
                "a GET on a command route",
                "/v1/locations",
                &a,
                json!({}),
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            )
        },
        // 409: the domain refuses.
        post(
            "booking a cancelled event",
            format!("/v1/events/{cancelled_event}/bookings"),
            &bob,
            json!({"seats": 1, "card_token": "tok"}),
            S::CONFLICT,
            "event_cancelled",
        ),
        post(
            "booking a started event",
            format!("/v1/events/{started_event}/bookings"),
            &bob,
            json!({"seats": 1, "card_token": "tok"}),
            S::CONFLICT,
            "event_started",
        ),
        post(
            "cancelling an event twice",
            format!("/v1/events/{cancelled_event}/cancel"),
            &a,
            json!({"reason": "again"}),
            S::CONFLICT,
            "already_cancelled",
        ),
        post(
            "a hall whose name is taken",
            format!("/v1/locations/{location}/halls"),
            &a,
            json!({"name": "Main", "capacity": 5}),
            S::CONFLICT,
            "hall_exists",
        ),
        post(
            "cancelling a pending booking",
            format!("/v1/bookings/{pending}/cancel"),
            &customer("alice"),
            json!({}),
            S::CONFLICT,
            "booking_not_confirmed",
        ),
        post(
            "cancelling a booking twice",
            format!("/v1/bookings/{cancelled}/cancel"),
            &customer("alice"),
            json!({}),
            S::CONFLICT,
            "already_cancelled",
        ),
    ];

    let client = app.client();
    for case in cases {
        let before = footprint(&db).await;
        let mut request = client.request(case.method.clone(), app.url(&case.path));
        if let Some(authorization) = &case.authorization {
            request = request.header("authorization", authorization);
        }
        for (name, value) in &case.headers {
            request = request.header(*name, value);
        }
        request = match case.body {
            Body::Json(body) => request.json(&body),
            Body::Raw {
                content_type,
                bytes,
            } => {
                let request = request.body(bytes);
                match content_type {
                    Some(ct) => request.header("content-type", ct),
                    None => request,
                }
            }
        };
        let answer = answer(request.send().await.unwrap()).await;
        assert_eq!(answer.status, case.status, "{}: {}", case.name, answer.body);
        assert_eq!(answer.code(), case.code, "{}: {}", case.name, answer.body);
        let message = answer.body["error"]["message"].as_str().unwrap_or("");
        assert!(!message.is_empty(), "{}: no message", case.name);
        if case.status == S::UNAUTHORIZED {
            assert_eq!(
                answer
                    .headers
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap()),
                Some("Bearer"),
                "{}",
                case.name
            );
            assert!(
                !message.contains("Error") && !message.contains("Kind"),
                "{}: a library's words: {message}",
                case.name
            );
        }
        if case.code == "validation_failed" {
            assert!(
                answer.body["error"]["details"].is_array(),
                "{}: no details",
                case.name
            );
        }
        assert_eq!(
            footprint(&db).await,
            before,
            "{}: something was appended",
            case.name
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn validation_details_name_every_bad_field() {
    let db = TestDb::create().await;
    let app = TestApp::spawn(&db).await;

    let answer = app
        .post(
            "/v1/locations",
            &admin(),
            &json!({"name": "", "address": "P", "country": "FR",
                    "halls": [{"name": "A", "capacity": 10}, {"name": "", "capacity": 0}]}),
        )
        .await;

    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = answer.body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "halls[1].name", "halls[1].capacity"]);
    app.stop().await;
}

/// Found by schemathesis: a command without fields took `[]` for `{}` (serde reads an
/// empty struct from an empty array) and erased a user.
#[tokio::test]
async fn a_body_that_is_not_an_object_is_refused_where_an_empty_object_is_expected() {
    let db = TestDb::create().await;
    let app = TestApp::spawn(&db).await;
    let before = footprint(&db).await;
    for body in [json!([]), json!(5), json!("x"), json!(null)] {
        let answer = app
            .post("/v1/admin/users/alice/erase", &admin(), &body)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            answer.body
        );
    }
    assert_eq!(footprint(&db).await, before, "nothing appended");
    let erased = app
        .post("/v1/admin/users/alice/erase", &admin(), &json!({}))
        .await;
    assert_eq!(erased.status, StatusCode::ACCEPTED, "{}", erased.body);
    app.stop().await;
}
