//! Read your writes: a GET with a command's consistency token sees that command's
//! effect on the first try, or answers 503 `not_caught_up` with `Retry-After`.

mod common;

use common::*;
use reqwest::StatusCode;

#[tokio::test]
async fn a_booking_is_seen_on_the_first_try_with_its_token() {
    let stack = Stack::start().await;
    let location = stack.location("Olympia", 100).await;
    let event = stack.event(&event_body(&location)).await;
    let shown = stack
        .query_with(
            &format!("/v1/events/{}", event.id()),
            &customer("alice"),
            &[("x-consistency-token", &event.token())],
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK);

    for _ in 0..20 {
        let booking = stack.book(&event.id(), "alice", 1).await;

        let answer = stack
            .query_with(
                &format!("/v1/bookings/{}", booking.id()),
                &customer("alice"),
                &[("x-consistency-token", &booking.token())],
            )
            .await;

        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(answer.body["id"], booking.id().as_str());
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_write_the_read_models_lack_is_503_not_caught_up_until_they_have_it() {
    let mut stack = Stack::start().await;
    let location = stack.location("Olympia", 100).await;
    let event = stack.event(&event_body(&location)).await.id();
    stack.stop_projector().await;
    let booking = stack.book(&event, "alice", 1).await;
    let path = format!("/v1/bookings/{}", booking.id());

    let waited = stack
        .query_with(
            &path,
            &customer("alice"),
            &[
                ("x-consistency-token", &booking.token()),
                ("x-consistency-timeout-ms", "300"),
            ],
        )
        .await;

    assert_eq!(waited.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(waited.code(), "not_caught_up");
    assert_eq!(waited.headers["retry-after"], "1");

    stack.start_projector().await;
    let later = stack
        .query_with(
            &path,
            &customer("alice"),
            &[("x-consistency-token", &booking.token())],
        )
        .await;
    assert_eq!(later.status, StatusCode::OK, "{}", later.body);
    stack.stop().await;
}

#[tokio::test]
async fn a_malformed_token_or_timeout_is_a_400() {
    let stack = Stack::start().await;
    for (token, timeout, code) in [
        ("not-a-token", "100", "invalid_consistency_token"),
        (
            "invoice:0192e4d2-0000-7000-8000-000000000000:1",
            "100",
            "invalid_consistency_token",
        ),
        (
            "booking:0192e4d2-0000-7000-8000-000000000000:0",
            "100",
            "invalid_consistency_token",
        ),
        (
            "booking:0192e4d2-0000-7000-8000-000000000000:1",
            "soon",
            "invalid_consistency_timeout",
        ),
    ] {
        let answer = stack
            .query_with(
                "/v1/events",
                &customer("alice"),
                &[
                    ("x-consistency-token", token),
                    ("x-consistency-timeout-ms", timeout),
                ],
            )
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::BAD_REQUEST, code),
            "{token}"
        );
    }
    stack.stop().await;
}
