//! What the notifier's test binaries share: customers with contact claims, bookings
//! through command-api, and waiting for their status.

// Each test binary uses some of these.
#![allow(dead_code)]

use std::time::Duration;

use e2e::*;
use platform::auth::{Claims, Jwt, Role};
use reqwest::StatusCode;
use serde_json::json;
use testkit::JWT_SECRET;
use uuid::Uuid;

/// A customer token with the contact claims given.
pub fn customer_with(user: &str, name: Option<&str>, email: Option<&str>) -> String {
    let mut claims = Claims::new(user, Role::Customer, Duration::from_secs(600));
    claims.name = name.map(str::to_owned);
    claims.email = email.map(str::to_owned);
    Jwt::new(JWT_SECRET).sign(claims)
}

/// A location "Olympia" of 50 seats and an event there ("Jazz night", 25.00 EUR a
/// seat, 30 days ahead); the event's id.
pub async fn jazz_night(stack: &Stack) -> String {
    let location = stack.location("Olympia", 50).await;
    stack.event(&event_body(&location)).await.id()
}

/// Books `seats` of `event` for the holder of `token`; returns the booking's id.
pub async fn book(stack: &Stack, event: &str, token: &str, seats: u32, card: &str) -> Uuid {
    let answer = stack
        .command(
            &format!("/v1/events/{event}/bookings"),
            token,
            &json!({"seats": seats, "card_token": card}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    answer.id().parse().expect("a booking id")
}

/// Waits until the query API shows `booking` with `status`.
pub async fn until_status(stack: &Stack, booking: Uuid, user: &str, status: &str) {
    stack
        .eventually(
            &format!("/v1/bookings/{booking}"),
            &customer(user),
            &format!("booking {booking} to be {status}"),
            |a| a.status == StatusCode::OK && a.body["status"] == status,
        )
        .await;
}

/// One seat of `event` for `user`, whose token carries `email` and no name, paid with
/// a card that is accepted; waits until it is confirmed.
pub async fn confirmed_booking(stack: &Stack, event: &str, user: &str, email: &str) -> Uuid {
    let token = customer_with(user, None, Some(email));
    let booking = book(stack, event, &token, 1, "tok_visa").await;
    until_status(stack, booking, user, "confirmed").await;
    booking
}
