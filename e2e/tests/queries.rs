//! Every query of API.md against the whole system: commands in, Kafka, projector, the
//! query API out. Filters, pagination that stays stable while rows are inserted, and
//! who may see what.

use e2e::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The ids of a list answer's items.
fn ids(answer: &Answer) -> Vec<String> {
    answer.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {} {}", answer.status, answer.body))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// GET with the consistency token of `write`: the write is visible on the first try.
async fn seen(stack: &Stack, path: &str, token: &str, write: &Answer) -> Answer {
    let answer = stack
        .query_with(path, token, &[("x-consistency-token", &write.token())])
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
    answer
}

#[tokio::test]
async fn locations_one_and_all_with_stable_pagination() {
    let stack = Stack::start().await;
    let user = customer("carol");
    let mut created = Vec::new();
    for name in ["Olympia", "Bataclan", "Zenith"] {
        let answer = stack
            .command("/v1/locations", &admin(), &location_body(name, 100))
            .await;
        created.push(answer);
    }
    let last = created.last().unwrap();
    let hall = stack
        .command(
            &format!("/v1/locations/{}/halls", last.id()),
            &admin(),
            &json!({"name": "Club", "capacity": 20}),
        )
        .await;

    let one = seen(
        &stack,
        &format!("/v1/locations/{}", last.id()),
        &user,
        &hall,
    )
    .await;
    assert_eq!(
        one.body,
        json!({"id": last.id(), "name": "Zenith", "address": "28 Bd des Capucines", "country": "FR",
               "halls": [{"name": "Main", "capacity": 100}, {"name": "Club", "capacity": 20}]})
    );

    let first_page = seen(&stack, "/v1/locations?limit=2", &user, last).await;
    assert_eq!(ids(&first_page), [created[0].id(), created[1].id()]);
    // A location created between two pages lands after the cursor, not in a page
    // already sent.
    let late = stack
        .command("/v1/locations", &admin(), &location_body("Cigale", 10))
        .await;
    let cursor = first_page.body["next_cursor"].as_str().unwrap();
    let second_page = seen(
        &stack,
        &format!("/v1/locations?limit=2&cursor={cursor}"),
        &user,
        &late,
    )
    .await;
    assert_eq!(ids(&second_page), [created[2].id(), late.id()]);
    assert!(
        second_page.body["next_cursor"].is_null(),
        "nothing follows the last page"
    );

    for (path, status, code) in [
        (
            format!("/v1/locations/{}", uuid::Uuid::now_v7()),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/v1/locations/olympia".to_owned(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/v1/locations?limit=0".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "/v1/locations?limit=201".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "/v1/locations?limit=ten".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "/v1/locations?cursor=zzz".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
    ] {
        let answer = stack.query(&path, &user).await;
        assert_eq!(
            (answer.status, answer.code()),
            (status, code),
            "{path}: {}",
            answer.body
        );
    }
    let anonymous = stack
        .client
        .get(stack.query.url("/v1/locations"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    stack.stop().await;
}

#[tokio::test]
async fn events_with_every_filter_and_pagination() {
    let stack = Stack::start().await;
    let user = customer("carol");
    let paris = stack.location("Olympia", 500).await;
    let lyon = stack.location("Halle Tony Garnier", 800).await;
    let jazz = stack
        .event(&event_body_in(&paris, "Jazz night", 10))
        .await
        .id();
    let rock = stack
        .event(&event_body_in(&paris, "Rock night", 20))
        .await
        .id();
    let mut brunch_body = event_body_in(&lyon, "JAZZ brunch", 30);
    brunch_body["capacity"] = json!(300);
    let brunch = stack.event(&brunch_body).await.id();
    let cancel = stack
        .command(
            &format!("/v1/events/{rock}/cancel"),
            &admin(),
            &json!({"reason": "illness"}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED);

    let one = seen(&stack, &format!("/v1/events/{rock}"), &user, &cancel).await;
    assert_eq!(one.body["status"], "cancelled");
    assert_eq!(one.body["location_id"], paris.as_str());
    assert_eq!(one.body["location_name"], "Olympia");
    assert_eq!(one.body["hall"], "Main");
    assert_eq!(one.body["capacity"], 500);
    assert_eq!(
        (
            &one.body["seats_held"],
            &one.body["seats_sold"],
            &one.body["seats_available"]
        ),
        (&json!(0), &json!(0), &json!(500))
    );
    assert_eq!(
        (&one.body["price_cents"], &one.body["currency"]),
        (&json!(2500), &json!("EUR"))
    );
    assert!(one.body["starts_at"].as_str().unwrap().ends_with('Z'));

    let day = |n: i64| {
        (chrono::Utc::now() + chrono::Duration::days(n))
            .to_rfc3339()
            .replace('+', "%2B")
    };
    for (query, expected) in [
        ("".to_owned(), vec![&jazz, &rock, &brunch]),
        (format!("location_id={paris}"), vec![&jazz, &rock]),
        ("q=jazz".to_owned(), vec![&jazz, &brunch]),
        ("q=NIGHT".to_owned(), vec![&jazz, &rock]),
        ("q=%25".to_owned(), vec![]),
        (format!("starts_after={}", day(15)), vec![&rock, &brunch]),
        (format!("starts_before={}", day(25)), vec![&jazz, &rock]),
        (
            format!("starts_after={}&starts_before={}", day(15), day(25)),
            vec![&rock],
        ),
        ("status=cancelled".to_owned(), vec![&rock]),
        ("status=scheduled".to_owned(), vec![&jazz, &brunch]),
        (
            format!("location_id={paris}&status=scheduled&q=jazz"),
            vec![&jazz],
        ),
    ] {
        let answer = stack.query(&format!("/v1/events?{query}"), &user).await;
        assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.body);
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        assert_eq!(ids(&answer), expected, "{query}");
    }

    // One page at a time, in start order.
    let mut seen_ids = Vec::new();
    let mut path = "/v1/events?limit=1".to_owned();
    loop {
        let page = stack.query(&path, &user).await;
        seen_ids.extend(ids(&page));
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/events?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen_ids, [jazz.clone(), rock.clone(), brunch.clone()]);

    for query in [
        "status=done",
        "location_id=paris",
        "starts_after=tomorrow",
        "limit=-1",
        "cursor=00",
    ] {
        let answer = stack.query(&format!("/v1/events?{query}"), &user).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {}",
            answer.body
        );
        assert_eq!(answer.code(), "validation_failed");
    }
    stack.stop().await;
}

#[tokio::test]
async fn bookings_are_shown_to_their_owner_and_admins() {
    let stack = Stack::start_with(Options {
        // Bookings stay as recorded: this test is about the read side.
        sagas: false,
        ..Options::default()
    })
    .await;
    let location = stack.location("Olympia", 100).await;
    let event = stack.event(&event_body(&location)).await.id();
    let first = stack.book(&event, "alice", 2).await;
    let _bob = stack.book(&event, "bob", 1).await;
    let second = stack.book(&event, "alice", 3).await;

    let mine = seen(
        &stack,
        &format!("/v1/bookings/{}", first.id()),
        &customer("alice"),
        &first,
    )
    .await;
    let body = &mine.body;
    assert_eq!(body["id"], first.id().as_str());
    assert_eq!(body["event_id"], event.as_str());
    assert_eq!(body["user_id"], "alice");
    assert_eq!(
        (&body["seats"], &body["amount_cents"], &body["currency"]),
        (&json!(2), &json!(5000), &json!("EUR"))
    );
    assert_eq!(
        (&body["status"], &body["reason"], &body["refunded"]),
        (&json!("pending"), &Value::Null, &json!(false))
    );
    assert_eq!(body["history"].as_array().unwrap().len(), 1);
    assert_eq!(body["history"][0]["status"], "pending");
    assert_eq!(body["created_at"], body["updated_at"]);

    let as_admin = stack
        .query(&format!("/v1/bookings/{}", first.id()), &admin())
        .await;
    assert_eq!(as_admin.status, StatusCode::OK);
    // Someone else's booking is answered exactly as an unknown one: nothing tells bob
    // that alice's exists.
    let as_bob = stack
        .query(&format!("/v1/bookings/{}", first.id()), &customer("bob"))
        .await;
    let unknown = stack
        .query(
            &format!("/v1/bookings/{}", uuid::Uuid::now_v7()),
            &customer("bob"),
        )
        .await;
    assert_eq!(
        (as_bob.status, as_bob.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    assert_eq!(
        (as_bob.status, &as_bob.body),
        (unknown.status, &unknown.body)
    );

    // Alice's own bookings, newest first, a page at a time.
    let page = seen(
        &stack,
        "/v1/users/me/bookings?limit=1",
        &customer("alice"),
        &second,
    )
    .await;
    assert_eq!(ids(&page), [second.id()]);
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let next = stack
        .query(
            &format!("/v1/users/me/bookings?limit=1&cursor={cursor}"),
            &customer("alice"),
        )
        .await;
    assert_eq!(ids(&next), [first.id()]);
    let all = stack
        .query("/v1/users/me/bookings", &customer("alice"))
        .await;
    assert_eq!(ids(&all), [second.id(), first.id()]);
    let nobodys = stack
        .query("/v1/users/me/bookings", &customer("dave"))
        .await;
    assert_eq!(ids(&nobodys), Vec::<String>::new());
    stack.stop().await;
}

#[tokio::test]
async fn projections_are_listed_for_admins_only() {
    let stack = Stack::start().await;
    stack.location("Olympia", 10).await;
    stack.caught_up().await;

    let list = stack.query("/v1/admin/projections", &admin()).await;
    let forbidden = stack
        .query("/v1/admin/projections", &customer("carol"))
        .await;
    let unknown = testkit::api::post(
        &stack.client,
        &stack.query.url("/v1/admin/projections/payments/rebuild"),
        &admin(),
        &[],
        &json!({}),
    )
    .await;

    assert_eq!(list.status, StatusCode::OK);
    let names: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["locations", "events", "bookings", "users"]);
    let locations = &list.body[0];
    assert_eq!(
        (&locations["status"], &locations["lag"]),
        (&json!("live"), &json!(0))
    );
    assert!(locations["last_applied_at"].is_string());
    assert!(locations["rebuild"].is_null());
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    stack.stop().await;
}
