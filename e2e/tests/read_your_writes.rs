//! Read your writes: a GET with a command's consistency token sees that command's
//! effect on the first try, or answers 503 `not_caught_up` with `Retry-After`.

use std::time::Duration;

use e2e::*;
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
async fn five_hundred_waiting_reads_hold_no_connection_and_cost_a_few_queries_in_all() {
    let mut stack = Stack::start().await;
    let location = stack.location("Olympia", 100).await;
    let event = stack.event(&event_body(&location)).await.id();
    stack.caught_up().await;
    stack.stop_projector().await;
    let booking = stack.book(&event, "alice", 1).await;
    let watcher = stack.query_state.watcher.clone();
    let checks_before = watcher.checks.get();

    let url = stack.query.url(&format!("/v1/bookings/{}", booking.id()));
    let token = booking.token();
    let waits: Vec<_> = (0..500)
        .map(|_| {
            let (client, url, token) = (stack.client.clone(), url.clone(), token.clone());
            tokio::spawn(async move {
                let headers = [
                    ("x-consistency-token", token.as_str()),
                    ("x-consistency-timeout-ms", "30000"),
                ];
                testkit::api::get(&client, &url, &customer("alice"), &headers).await
            })
        })
        .collect();
    testkit::eventually(Duration::from_secs(20), "500 reads waiting", || async {
        (watcher.waiting.get() == 500).then_some(())
    })
    .await;
    // Meanwhile other reads answer as usual: the waits hold no read connection.
    for _ in 0..20 {
        let other = stack
            .query(&format!("/v1/events/{event}"), &customer("bob"))
            .await;
        assert_eq!(other.status, StatusCode::OK, "{}", other.body);
    }

    stack.start_projector().await;
    for wait in waits {
        let answer = wait.await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
    // One query per projection with waiters, per arrival burst, projected batch or
    // tick, shared by all waiting: fewer queries than waits in all (polling each read
    // every 50 ms cost about 200 per read).
    let checks = watcher.checks.get() - checks_before;
    assert!(checks <= 500, "{checks} queries for 500 waits");
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

/// How many consistency waits query-api has done, whatever their outcome.
async fn waits(stack: &Stack) -> f64 {
    let text = stack
        .client
        .get(stack.query.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("boxoffice_consistency_wait_seconds_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn someone_elses_booking_is_unknown_token_or_not_and_nothing_waits_for_it() {
    let mut stack = Stack::start().await;
    let location = stack.location("Olympia", 100).await;
    let event = stack.event(&event_body(&location)).await.id();
    // Nothing becomes visible from now on: any wait would run to its timeout.
    stack.stop_projector().await;
    let alices = stack.book(&event, "alice", 1).await;
    let unknown = uuid::Uuid::now_v7();
    let unknown_token = format!("booking:{unknown}:1");
    let waits_before = waits(&stack).await;

    let with_her_token = stack
        .query_with(
            &format!("/v1/bookings/{}", alices.id()),
            &customer("bob"),
            &[
                ("x-consistency-token", &alices.token()),
                ("x-consistency-timeout-ms", "3000"),
            ],
        )
        .await;
    let without = stack
        .query(&format!("/v1/bookings/{}", alices.id()), &customer("bob"))
        .await;
    let not_there = stack
        .query_with(
            &format!("/v1/bookings/{unknown}"),
            &customer("bob"),
            &[
                ("x-consistency-token", &unknown_token),
                ("x-consistency-timeout-ms", "3000"),
            ],
        )
        .await;
    for answer in [&with_her_token, &without] {
        assert_eq!(
            (answer.status, &answer.body),
            (not_there.status, &not_there.body)
        );
    }
    assert_eq!(not_there.status, StatusCode::NOT_FOUND);

    // Her token on a read of bob's own is refused as a token naming nothing is.
    let her_token_elsewhere = stack
        .query_with(
            "/v1/users/me/bookings",
            &customer("bob"),
            &[("x-consistency-token", &alices.token())],
        )
        .await;
    let nothing_token = stack
        .query_with(
            "/v1/users/me/bookings",
            &customer("bob"),
            &[("x-consistency-token", &unknown_token)],
        )
        .await;
    assert_eq!(
        (her_token_elsewhere.status, her_token_elsewhere.code()),
        (StatusCode::BAD_REQUEST, "invalid_consistency_token")
    );
    assert_eq!(
        (her_token_elsewhere.status, &her_token_elsewhere.body),
        (nothing_token.status, &nothing_token.body)
    );
    // Nor whether someone's data was erased: the token of an erasure is refused to
    // anyone but admins (and that user), alike.
    let erased = stack
        .command(
            "/v1/admin/users/carol/erase",
            &admin(),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(erased.status, StatusCode::ACCEPTED, "{}", erased.body);
    let probe = stack
        .query_with(
            "/v1/users/me/bookings",
            &customer("bob"),
            &[("x-consistency-token", &erased.token())],
        )
        .await;
    assert_eq!(
        (probe.status, &probe.body),
        (nothing_token.status, &nothing_token.body)
    );
    assert_eq!(waits(&stack).await, waits_before, "something waited");

    // Alice herself still waits for her write (and gets 503 while it is not there).
    let hers = stack
        .query_with(
            &format!("/v1/bookings/{}", alices.id()),
            &customer("alice"),
            &[
                ("x-consistency-token", &alices.token()),
                ("x-consistency-timeout-ms", "200"),
            ],
        )
        .await;
    assert_eq!(hers.status, StatusCode::SERVICE_UNAVAILABLE);
    stack.stop().await;
}
