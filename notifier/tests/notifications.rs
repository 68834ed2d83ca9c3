//! The notifier against the whole system and a real SMTP server (aiosmtpd, one per
//! test): customers get one message per turn of their booking, whatever happens to the
//! SMTP server, the notifier or the topic; erased users and users without an address
//! get nothing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use e2e::*;
use reqwest::StatusCode;
use serde_json::json;
use testkit::service::{serve, Running};
use testkit::smtp::{Mail, SmtpSink};
use testkit::{eventually, roles};
use uuid::Uuid;

mod common;
use common::*;

/// Long enough for a saga and a retry or two on this machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// The notifier's configuration for `stack`, sending to `smtp`: its own login, its own
/// consumer group, quick retries.
fn config(stack: &Stack, smtp: &str) -> notifier::Config {
    let mut config = notifier::Config::new(
        &roles::url_as(&stack.db.url, roles::NOTIFIER),
        smtp,
        &stack.brokers,
        stack.topic.clone(),
    );
    config.kafka_security = stack.kafka_security.clone();
    config.group = format!("bt-notifier-{}", Uuid::new_v4().simple());
    config.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.sweep_interval = Duration::from_millis(500);
    config.smtp.timeout = Duration::from_secs(2);
    config.send.lease = Duration::from_secs(5);
    config.send.retry_base = Duration::from_millis(200);
    config.send.retry_max = Duration::from_secs(1);
    config
}

async fn start(config: notifier::Config) -> (Running, Arc<notifier::Context>) {
    let app = notifier::Application::build(config)
        .await
        .expect("notifier");
    let ctx = app.context();
    (serve(|l, s| app.run(l, s)).await, ctx)
}

/// The sent log's rows by status.
async fn log_counts(stack: &Stack) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT status, count(*) FROM notifier.notifications GROUP BY status",
    )
    .fetch_all(&stack.db.pool)
    .await
    .expect("the sent log")
    .into_iter()
    .collect()
}

/// Waits until the sent log has `expected` rows by status (and nothing else).
async fn until_log(stack: &Stack, expected: &[(&str, i64)]) {
    let expected: BTreeMap<String, i64> = expected
        .iter()
        .map(|(s, n)| ((*s).to_owned(), *n))
        .collect();
    eventually(
        PATIENCE,
        &format!("the sent log to be {expected:?}"),
        || async { (log_counts(stack).await == expected).then_some(()) },
    )
    .await;
}

/// The messages to `address`, in arrival order.
fn to<'a>(mails: &'a [Mail], address: &str) -> Vec<&'a Mail> {
    mails
        .iter()
        .filter(|m| m.delivered_to.iter().any(|d| d == address))
        .collect()
}

/// The booking's sequence of the fact a message announces, from its Message-ID.
fn announced(mail: &Mail, booking: Uuid) -> i64 {
    let id = mail.message_id.trim_matches(|c| c == '<' || c == '>');
    let rest = id
        .strip_prefix(&format!("booking-{booking}."))
        .unwrap_or_else(|| panic!("{id} is not about booking {booking}"));
    let (sequence, domain) = rest.split_once('@').expect("an id with a domain");
    assert_eq!(domain, "boxoffice.test");
    sequence.parse().expect("a sequence")
}

/// One value of the notifier's metrics (a sample line of its /metrics).
async fn metric(stack: &Stack, notifier: &Running, sample: &str) -> f64 {
    let text = stack
        .client
        .get(notifier.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn every_turn_of_a_booking_reaches_its_customer_once() {
    let stack = Stack::start().await;
    let sink = SmtpSink::start().await;
    let (notifier, _) = start(config(&stack, &sink.url())).await;
    let location = stack.location("Olympia", 50).await;
    let gala = stack
        .event(&testkit::api::event_body_in(
            &location,
            "Gala, the \"big\" night",
            30,
        ))
        .await
        .id();
    let storm = stack
        .event(&testkit::api::event_body_in(&location, "Open air", 40))
        .await
        .id();

    let ada = customer_with("ada", Some("Ada Lovelace"), Some("ada@example.com"));
    let confirmed = book(&stack, &gala, &ada, 2, "tok_visa").await;
    let bob = customer_with("bob", Some("Bob"), Some("bob@example.com"));
    let declined = book(&stack, &gala, &bob, 1, "tok_decline_card").await;
    let cy = customer_with("cy", None, Some("cy@example.com"));
    let cancelled = book(&stack, &gala, &cy, 3, "tok_visa").await;
    until_status(&stack, confirmed, "ada", "confirmed").await;
    until_status(&stack, declined, "bob", "rejected").await;
    until_status(&stack, cancelled, "cy", "confirmed").await;
    let cancel = stack
        .command(&format!("/v1/bookings/{cancelled}/cancel"), &cy, &json!({}))
        .await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED, "{}", cancel.body);

    // An event cancelled with a paid booking and one whose payment never answers.
    let dan = customer_with("dan", Some("Dan"), Some("dan@example.com"));
    let paid = book(&stack, &storm, &dan, 1, "tok_visa").await;
    until_status(&stack, paid, "dan", "confirmed").await;
    let eve = customer_with("eve", Some("Eve"), Some("eve@example.com"));
    let pending = book(&stack, &storm, &eve, 4, "tok_timeout").await;
    stack
        .eventually(
            &format!("/v1/events/{storm}"),
            &customer("watcher"),
            "eve's seats held",
            |a| a.body["seats_held"] == 4,
        )
        .await;
    let cancel = stack
        .command(
            &format!("/v1/events/{storm}/cancel"),
            &admin(),
            &json!({"reason": "A storm is forecast"}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED, "{}", cancel.body);

    // ada 1, bob 1, cy 2, dan 2, eve 1.
    until_log(&stack, &[("sent", 7)]).await;
    let mails = sink.wait_for(7, PATIENCE).await;
    assert_eq!(mails.len(), 7, "one message per turn, no more");
    for mail in &mails {
        assert_eq!(mail.from, "boxoffice <tickets@boxoffice.test>");
        assert!(
            mail.html.is_some() && mail.text.is_some(),
            "{}",
            mail.subject
        );
    }

    // The confirmation: what was booked, and the show in a calendar file.
    let [ada_mail] = to(&mails, "ada@example.com")[..] else {
        panic!("one message for ada");
    };
    assert!(ada_mail.to.contains("Ada Lovelace"), "{}", ada_mail.to);
    assert_eq!(
        ada_mail.subject,
        "Your tickets for Gala, the \"big\" night are confirmed"
    );
    let text = ada_mail.text.as_deref().unwrap();
    for needle in [
        "Hello Ada Lovelace",
        "Olympia, Main",
        "Seats:    2",
        "50.00 EUR",
        &confirmed.to_string(),
    ] {
        assert!(text.contains(needle), "{needle:?} in\n{text}");
    }
    assert_eq!(announced(ada_mail, confirmed), 2);
    let [calendar] = &ada_mail.attachments[..] else {
        panic!("one attachment: {:?}", ada_mail.attachments);
    };
    assert!(
        calendar.content_type.starts_with("text/calendar"),
        "{}",
        calendar.content_type
    );
    let show = parse_calendar(&calendar.body);
    let starts = stack
        .query(&format!("/v1/events/{gala}"), &customer("watcher"))
        .await
        .body["starts_at"]
        .as_str()
        .expect("starts_at")
        .parse::<chrono::DateTime<chrono::Utc>>()
        .expect("a time");
    assert_eq!(show["DTSTART"], starts.format("%Y%m%dT%H%M%SZ").to_string());
    assert_eq!(show["SUMMARY"], "Gala\\, the \"big\" night");
    assert_eq!(show["UID"], format!("booking-{confirmed}@boxoffice.test"));

    let [bob_mail] = to(&mails, "bob@example.com")[..] else {
        panic!("one message for bob");
    };
    assert_eq!(
        bob_mail.subject,
        "Your booking for Gala, the \"big\" night did not go through"
    );
    assert!(bob_mail
        .text
        .as_deref()
        .unwrap()
        .contains("your card was declined"));
    assert!(bob_mail.attachments.is_empty());

    let cy_mails = to(&mails, "cy@example.com");
    let subjects: Vec<&str> = cy_mails.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "Your tickets for Gala, the \"big\" night are confirmed",
            "Your booking for Gala, the \"big\" night is cancelled and refunded"
        ]
    );
    assert!(cy_mails[1]
        .text
        .as_deref()
        .unwrap()
        .contains("We have refunded 75.00 EUR"));
    // No name in the token: greeted by address.
    assert!(cy_mails[1]
        .text
        .as_deref()
        .unwrap()
        .contains("Hello cy@example.com"));

    let dan_mails = to(&mails, "dan@example.com");
    let subjects: Vec<&str> = dan_mails.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "Your tickets for Open air are confirmed",
            "Open air is cancelled"
        ]
    );
    let text = dan_mails[1].text.as_deref().unwrap();
    assert!(text.contains("we have refunded 25.00 EUR"), "{text}");
    assert!(text.contains("A storm is forecast"), "{text}");

    let [eve_mail] = to(&mails, "eve@example.com")[..] else {
        panic!("one message for eve: the cancellation, not also a rejection");
    };
    assert_eq!(eve_mail.subject, "Open air is cancelled");
    // It announces the booking's rejection: request, then rejected.
    assert_eq!(announced(eve_mail, pending), 2);
    let text = eve_mail.text.as_deref().unwrap();
    assert!(text.contains("you have not been charged"), "{text}");
    assert!(!text.contains("refunded"), "{text}");

    // Every message names its own fact.
    let mut ids: Vec<&str> = mails.iter().map(|m| m.message_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 7);
    assert_eq!(
        metric(
            &stack,
            &notifier,
            "boxoffice_notifier_notifications_total{kind=\"event_cancelled\",outcome=\"sent\"}"
        )
        .await,
        2.0
    );
    // The log keeps no address.
    let clear: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifier.notifications t WHERE t::text ILIKE '%example.com%'",
    )
    .fetch_one(&stack.db.pool)
    .await
    .unwrap();
    assert_eq!(clear, 0);
    notifier.stop().await;
    stack.stop().await;
}

/// The properties of the one VEVENT of an iCalendar file, parsed by the `ical` crate.
fn parse_calendar(body: &[u8]) -> BTreeMap<String, String> {
    let mut calendars = ical::IcalParser::new(body);
    let calendar = calendars
        .next()
        .expect("a calendar")
        .expect("a calendar that parses");
    assert!(calendars.next().is_none(), "one calendar");
    let [event] = &calendar.events[..] else {
        panic!("one event: {:?}", calendar.events);
    };
    event
        .properties
        .iter()
        .map(|p| (p.name.clone(), p.value.clone().unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn mail_waits_while_the_smtp_server_is_down_and_arrives_once_when_it_is_back() {
    let stack = Stack::start().await;
    let mut sink = SmtpSink::start().await;
    sink.stop().await;
    let (notifier, _) = start(config(&stack, &sink.url())).await;
    let event = jazz_night(&stack).await;
    // Bookings do not wait for mail.
    let mut bookings = Vec::new();
    for user in ["ann", "ben", "col"] {
        let email = format!("{user}@example.com");
        bookings.push((user, confirmed_booking(&stack, &event, user, &email).await));
    }
    // The notifier tried, failed for now, and will try again.
    eventually(PATIENCE, "failed attempts", || async {
        let attempts: i64 = sqlx::query_scalar(
            "SELECT coalesce(min(attempts), 0)::bigint FROM notifier.notifications WHERE status = 'pending'",
        )
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
        (attempts >= 2 && log_counts(&stack).await.get("pending") == Some(&3)).then_some(())
    })
    .await;
    assert!(
        metric(
            &stack,
            &notifier,
            "boxoffice_notifier_send_attempts_total{result=\"temporary\"}"
        )
        .await
            >= 6.0
    );

    sink.restart().await;
    until_log(&stack, &[("sent", 3)]).await;
    let mails = sink.wait_for(3, PATIENCE).await;
    for (user, _) in &bookings {
        assert_eq!(
            to(&mails, &format!("{user}@example.com")).len(),
            1,
            "{user}"
        );
    }
    assert_eq!(mails.len(), 3);
    notifier.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn an_erased_user_gets_no_mail_not_even_for_facts_in_flight() {
    let stack = Stack::start().await;
    let mut sink = SmtpSink::start().await;
    // Mail cannot go out yet: the notifications are in flight when the user is erased.
    sink.stop().await;
    let (notifier, _) = start(config(&stack, &sink.url())).await;
    let event = jazz_night(&stack).await;
    let zoe = customer_with("zoe", Some("Zoe"), Some("zoe@example.com"));
    let kept = customer_with("kim", Some("Kim"), Some("kim@example.com"));
    let first = book(&stack, &event, &zoe, 1, "tok_visa").await;
    let second = book(&stack, &event, &zoe, 1, "tok_decline_card").await;
    let other = book(&stack, &event, &kept, 1, "tok_visa").await;
    until_status(&stack, first, "zoe", "confirmed").await;
    until_status(&stack, second, "zoe", "rejected").await;
    until_status(&stack, other, "kim", "confirmed").await;
    until_log(&stack, &[("pending", 3)]).await;

    let erased = stack
        .command("/v1/admin/users/zoe/erase", &admin(), &json!({}))
        .await;
    assert!(erased.status.is_success(), "{}", erased.body);
    sink.restart().await;
    until_log(&stack, &[("erased", 2), ("sent", 1)]).await;
    let mails = sink.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].delivered_to, ["kim@example.com"]);
    assert_eq!(
        metric(
            &stack,
            &notifier,
            "boxoffice_notifier_notifications_total{kind=\"booking_confirmed\",outcome=\"erased\"}"
        )
        .await,
        1.0
    );
    notifier.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_customer_without_an_address_gets_nothing_and_it_is_counted() {
    let stack = Stack::start().await;
    let sink = SmtpSink::start().await;
    let (notifier, _) = start(config(&stack, &sink.url())).await;
    let event = jazz_night(&stack).await;
    // A name but no e-mail claim, and no contact claims at all.
    let named = customer_with("nora", Some("Nora"), None);
    let bare = customer("otto");
    let a = book(&stack, &event, &named, 1, "tok_visa").await;
    let b = book(&stack, &event, &bare, 1, "tok_visa").await;
    until_status(&stack, a, "nora", "confirmed").await;
    until_status(&stack, b, "otto", "confirmed").await;
    until_log(&stack, &[("no_contact", 2)]).await;
    assert_eq!(
        metric(
            &stack,
            &notifier,
            "boxoffice_notifier_notifications_total{kind=\"booking_confirmed\",outcome=\"no_contact\"}"
        )
        .await,
        2.0
    );
    assert!(sink.messages().is_empty());
    notifier.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_refused_message_is_parked_listed_and_can_be_retried() {
    let stack = Stack::start().await;
    let sink = SmtpSink::start().await;
    let (notifier, ctx) = start(config(&stack, &sink.url())).await;
    let event = jazz_night(&stack).await;
    let refused = confirmed_booking(&stack, &event, "gil", "reject.gil@example.com").await;
    confirmed_booking(&stack, &event, "fay", "fay@example.com").await;
    // A 550 is not tried again and again: parked at the first answer.
    until_log(&stack, &[("parked", 1), ("sent", 1)]).await;
    let status = notifier::log::status(&ctx.log).await.unwrap();
    let [parked] = &status.parked[..] else {
        panic!("one parked: {status:?}");
    };
    assert_eq!((parked.booking_id, parked.attempts), (refused, 1));
    let error = parked.last_error.as_deref().unwrap();
    assert!(error.contains("550"), "{error}");
    assert!(
        !error.contains("example.com"),
        "no address in the log: {error}"
    );
    eventually(PATIENCE, "the parked gauge", || async {
        (metric(&stack, &notifier, "boxoffice_notifier_parked").await == 1.0).then_some(())
    })
    .await;

    // An operator's retry sends it again (and the server refuses it again).
    assert_eq!(
        notifier::log::retry_parked(&ctx.log, Some(refused))
            .await
            .unwrap(),
        1
    );
    eventually(PATIENCE, "the second refusal", || async {
        let status = notifier::log::status(&ctx.log).await.unwrap();
        (status.parked.len() == 1
            && status.parked[0].attempts == 1
            && metric(
                &stack,
                &notifier,
                "boxoffice_notifier_send_attempts_total{result=\"permanent\"}",
            )
            .await
                == 2.0)
            .then_some(())
    })
    .await;
    assert_eq!(sink.messages().len(), 1);
    notifier.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn replaying_the_topic_sends_nothing_twice_and_a_resend_is_the_same_message() {
    let stack = Stack::start().await;
    let sink = SmtpSink::start().await;
    let (notifier, ctx) = start(config(&stack, &sink.url())).await;
    let event = jazz_night(&stack).await;
    let first = confirmed_booking(&stack, &event, "rex", "rex@example.com").await;
    until_log(&stack, &[("sent", 1)]).await;
    notifier.stop().await;
    let second = confirmed_booking(&stack, &event, "rex", "rex@example.com").await;
    stack.published().await;

    // A notifier of a new consumer group, on a topic of one partition where the whole
    // history comes again before the second booking's facts, and no sweep: the second
    // booking's message arrives after the replay was read.
    let facts: Vec<_> = testkit::read_topic(&stack.brokers, &stack.relay_topic)
        .await
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    let (replayed, later): (Vec<_>, Vec<_>) = facts
        .into_iter()
        .partition(|e| e.aggregate_id != second.to_string());
    let mut topic = testkit::unique_topic();
    topic.partitions = 1;
    testkit::create_topic(&stack.brokers, &topic).await;
    testkit::produce(&stack.brokers, &topic.name, &replayed).await;
    testkit::produce(&stack.brokers, &topic.name, &later).await;
    let mut replay = config(&stack, &sink.url());
    replay.topic = topic;
    replay.sweep_interval = Duration::ZERO;
    let (notifier, _) = start(replay).await;
    until_log(&stack, &[("sent", 2)]).await;
    let mails = sink.wait_for(2, PATIENCE).await;
    assert_eq!(mails.len(), 2, "the replayed fact was not sent again");
    assert_eq!(announced(&mails[1], second), 2);

    // On purpose: the same message again.
    assert_eq!(notifier::log::resend(&ctx.log, first).await.unwrap(), 1);
    let mails = sink.wait_for(3, PATIENCE).await;
    assert_eq!(mails[2].message_id, mails[0].message_id);
    assert_eq!(mails[2].subject, mails[0].subject);
    until_log(&stack, &[("sent", 2)]).await;
    notifier.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn facts_from_before_the_first_run_are_history_and_not_mailed() {
    let stack = Stack::start().await;
    let sink = SmtpSink::start().await;
    let event = jazz_night(&stack).await;
    // Confirmed before any notifier ran.
    let booking = confirmed_booking(&stack, &event, "old", "old@example.com").await;
    let token = customer_with("old", None, Some("old@example.com"));
    stack.published().await;

    let (notifier, _) = start(config(&stack, &sink.url())).await;
    let cancel = stack
        .command(
            &format!("/v1/bookings/{booking}/cancel"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED, "{}", cancel.body);
    // The refund is news; the confirmation, read with it from the store, is not.
    until_log(&stack, &[("sent", 1)]).await;
    let mails = sink.wait_for(1, PATIENCE).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(
        mails[0].subject,
        "Your booking for Jazz night is cancelled and refunded"
    );
    assert_eq!(announced(&mails[0], booking), 4);
    notifier.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn facts_kafka_skipped_are_filled_from_the_store() {
    let stack = Stack::start().await;
    let sink = SmtpSink::start().await;
    // The notifier reads a topic only the test writes, and never sweeps: whatever it
    // sends, it learnt from these messages or from the store because of them. One
    // partition: the messages are read in the order written.
    let mut topic = testkit::unique_topic();
    topic.partitions = 1;
    testkit::create_topic(&stack.brokers, &topic).await;
    let mut config = config(&stack, &sink.url());
    config.topic = topic.clone();
    config.sweep_interval = Duration::ZERO;
    let (notifier, _) = start(config).await;

    let event = jazz_night(&stack).await;
    let booking = confirmed_booking(&stack, &event, "una", "una@example.com").await;
    let token = customer_with("una", None, Some("una@example.com"));
    let cancel = stack
        .command(
            &format!("/v1/bookings/{booking}/cancel"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED, "{}", cancel.body);
    stack
        .eventually(
            &format!("/v1/bookings/{booking}"),
            &customer("una"),
            "the refund",
            |a| a.body["refunded"] == true,
        )
        .await;
    stack.published().await;
    // The topic brings the booking's last fact alone, as tansu does to a consumer
    // resuming inside a stored batch.
    let facts: Vec<_> = testkit::read_topic(&stack.brokers, &stack.relay_topic)
        .await
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.aggregate_id == booking.to_string())
        .collect();
    assert_eq!(
        facts
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        [
            "BookingRequested",
            "BookingConfirmed",
            "BookingCancelled",
            "BookingRefunded"
        ]
    );
    testkit::produce(&stack.brokers, &topic.name, &facts[3..]).await;

    until_log(&stack, &[("sent", 2)]).await;
    let mails = sink.wait_for(2, PATIENCE).await;
    let subjects: Vec<&str> = mails.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "Your tickets for Jazz night are confirmed",
            "Your booking for Jazz night is cancelled and refunded"
        ]
    );
    // Delivered again, the same facts change nothing; a later booking's confirmation,
    // behind them on the partition, shows they were read.
    testkit::produce(&stack.brokers, &topic.name, &facts).await;
    let later = confirmed_booking(&stack, &event, "una", "una@example.com").await;
    stack.published().await;
    let later_facts: Vec<_> = testkit::read_topic(&stack.brokers, &stack.relay_topic)
        .await
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.aggregate_id == later.to_string())
        .collect();
    testkit::produce(&stack.brokers, &topic.name, &later_facts).await;
    until_log(&stack, &[("sent", 3)]).await;
    let mails = sink.wait_for(3, PATIENCE).await;
    assert_eq!(mails.len(), 3);
    assert_eq!(announced(&mails[2], later), 2);
    notifier.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_fact_kafka_never_brought_is_found_by_the_sweep() {
    let stack = Stack::start().await;
    let sink = SmtpSink::start().await;
    // A topic nobody writes: everything comes from the sweep of the store.
    let topic = testkit::unique_topic();
    testkit::create_topic(&stack.brokers, &topic).await;
    let mut config = config(&stack, &sink.url());
    config.topic = topic;
    let (notifier, _) = start(config).await;
    let event = jazz_night(&stack).await;
    let booking = confirmed_booking(&stack, &event, "vic", "vic@example.com").await;
    until_log(&stack, &[("sent", 1)]).await;
    let mails = sink.wait_for(1, PATIENCE).await;
    assert_eq!(mails[0].delivered_to, ["vic@example.com"]);
    assert_eq!(announced(&mails[0], booking), 2);
    assert!(
        metric(
            &stack,
            &notifier,
            "boxoffice_notifier_facts_total{source=\"sweep\"}"
        )
        .await
            >= 2.0
    );
    notifier.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_broker_that_restarts_empty_loses_no_mail_and_repeats_none() {
    let mut broker = testkit::PrivateBroker::start().await;
    let stack = Stack::start_with(Options {
        brokers: Some(broker.brokers()),
        ..Options::default()
    })
    .await;
    let sink = SmtpSink::start().await;
    let settings = config(&stack, &sink.url());
    let (notifier, _) = start(settings.clone()).await;
    let event = jazz_night(&stack).await;
    let mut bookings = Vec::new();
    let book_one = |user: &'static str| {
        let (stack, event) = (&stack, &event);
        async move { confirmed_booking(stack, event, user, &format!("{user}@example.com")).await }
    };
    bookings.push(book_one("ann").await);
    until_log(&stack, &[("sent", 1)]).await;

    // Facts the broker takes while the notifier is away, then loses with the rest
    // (the notifier's committed offsets too).
    notifier.stop().await;
    bookings.push(book_one("ben").await);
    bookings.push(book_one("cat").await);
    stack.published().await;
    broker.restart().await;
    bookings.push(book_one("dov").await);
    let (notifier, _) = start(settings).await;

    until_log(&stack, &[("sent", 4)]).await;
    let mails = sink.wait_for(4, PATIENCE).await;
    assert_eq!(mails.len(), 4, "no message twice");
    for (booking, user) in bookings.iter().zip(["ann", "ben", "cat", "dov"]) {
        let [mail] = to(&mails, &format!("{user}@example.com"))[..] else {
            panic!("one message for {user}");
        };
        assert_eq!(announced(mail, *booking), 2);
    }
    notifier.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_customer_whose_mail_keeps_failing_holds_up_nobody_else() {
    let stack = Stack::start().await;
    let sink = SmtpSink::start().await;
    let mut config = config(&stack, &sink.url());
    // Time for the slow answer (3 s): sid's message is sent, once, after it.
    config.smtp.timeout = Duration::from_secs(6);
    config.send.lease = Duration::from_secs(15);
    let (notifier, _) = start(config).await;
    let event = jazz_night(&stack).await;
    // 451 for this one, every time; then a slow server for that one.
    let first = confirmed_booking(&stack, &event, "dee", "defer.dee@example.com").await;
    confirmed_booking(&stack, &event, "sid", "slow.sid@example.com").await;
    // While sid's answer takes seconds and dee's keeps failing, the others go out.
    for user in ["fay", "gus", "hal"] {
        let token = customer_with(user, None, Some(&format!("{user}@example.com")));
        book(&stack, &event, &token, 1, "tok_visa").await;
    }
    eventually(PATIENCE, "the others' messages", || async {
        let mails = sink.messages();
        ["fay", "gus", "hal"]
            .iter()
            .all(|u| to(&mails, &format!("{u}@example.com")).len() == 1)
            .then_some(())
    })
    .await;
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM notifier.notifications WHERE booking_id = $1")
            .bind(first)
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
    assert_eq!(status, "pending", "a 451 is tried again, not given up on");
    assert!(attempts >= 1);
    until_log(&stack, &[("sent", 4), ("pending", 1)]).await;
    assert_eq!(
        to(&sink.messages(), "slow.sid@example.com").len(),
        1,
        "the slow answer came in time: sent once"
    );
    notifier.stop().await;
    stack.stop().await;
}

/// An answer the timeout cut off still arrives, later, on that connection. It must
/// never be read as the answer to a later message's commands: the answers would then
/// be one behind, and a message recorded sent on answers that were not its own.
#[tokio::test]
async fn an_answer_the_timeout_cut_off_is_never_read_as_a_later_messages() {
    let stack = Stack::start().await;
    let sink = SmtpSink::start().await;
    let mut config = config(&stack, &sink.url());
    // One message at a time, on one connection at most; the server answers slow.sid
    // after 3 s, past the 2 s the exchange may take: every attempt times out.
    config.send.concurrency = 1;
    config.smtp.pool_size = 1;
    config.send.max_attempts = 3;
    assert!(config.smtp.timeout < Duration::from_secs(3));
    let (notifier, _) = start(config).await;
    let event = jazz_night(&stack).await;
    let booking = confirmed_booking(&stack, &event, "sid", "slow.sid@example.com").await;
    until_log(&stack, &[("parked", 1)]).await;
    let (attempts, error): (i32, String) = sqlx::query_as(
        "SELECT attempts, last_error FROM notifier.notifications WHERE booking_id = $1",
    )
    .bind(booking)
    .fetch_one(&stack.db.pool)
    .await
    .unwrap();
    assert_eq!(attempts, 3);
    assert_eq!(error, "no answer from the SMTP server in time");
    notifier.stop().await;
    stack.stop().await;
}

/// A fact whose transaction was still running when the notifier first started, and
/// committed after it, is news, though its position is below every position the start
/// saw committed (positions are taken at insert, transactions commit in any order).
/// A cut by position alone would take it for history and never mail it.
#[tokio::test]
async fn a_fact_committing_across_the_first_start_is_mailed() {
    let stack = Stack::start().await;
    let sink = SmtpSink::start().await;
    let event = jazz_night(&stack).await;
    // Both before any notifier ran: history.
    let ann = confirmed_booking(&stack, &event, "ann", "ann@example.com").await;
    let bob = confirmed_booking(&stack, &event, "bob", "bob@example.com").await;
    let cancel = stack
        .command(
            &format!("/v1/bookings/{bob}/cancel"),
            &customer_with("bob", None, Some("bob@example.com")),
            &json!({}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED, "{}", cancel.body);
    stack
        .eventually(
            &format!("/v1/bookings/{bob}"),
            &customer("bob"),
            "bob's refund",
            |a| a.body["refunded"] == true,
        )
        .await;

    // Ann's booking is cancelled and refunded in a transaction that takes its
    // positions now and commits only after the notifier's first start (the facts as
    // bob's, the metadata as her confirmation's).
    let mut late = stack.db.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'booking', $1, b.sequence, b.event_type, b.event_version, b.payload,
                (SELECT metadata FROM events WHERE aggregate_type = 'booking' AND aggregate_id = $1 AND sequence = 2)
           FROM events b
          WHERE b.aggregate_type = 'booking' AND b.aggregate_id = $2 AND b.sequence IN (3, 4)
          ORDER BY b.sequence",
    )
    .bind(ann.to_string())
    .bind(bob.to_string())
    .execute(&mut *late)
    .await
    .unwrap();
    // A later fact commits first.
    stack.location("Odeon", 10).await;
    stack.published().await;
    let (notifier, _) = start(config(&stack, &sink.url())).await;
    let (late_position, since_position): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT max(position) FROM events WHERE aggregate_id = $1), since_position
           FROM notifier.progress",
    )
    .bind(ann.to_string())
    .fetch_one(&mut *late)
    .await
    .unwrap();
    assert!(
        late_position < since_position,
        "{late_position} {since_position}"
    );
    late.commit().await.unwrap();

    until_log(&stack, &[("sent", 1)]).await;
    let mails = sink.wait_for(1, PATIENCE).await;
    assert_eq!(mails[0].delivered_to, ["ann@example.com"]);
    assert_eq!(
        mails[0].subject,
        "Your booking for Jazz night is cancelled and refunded"
    );
    assert_eq!(announced(&mails[0], ann), 4);
    notifier.stop().await;
    stack.stop().await;
}

/// A sender that stalled past its lease finds its notification taken over by another.
/// Its late report (the SMTP server said 451 to it) must not make the message due
/// again while the second sender is sending it, or a third would send it too.
#[tokio::test]
async fn a_late_report_from_a_sender_whose_lease_ran_out_changes_nothing() {
    use notifier::log::{claim, record, End};
    let db = testkit::TestDb::create().await;
    platform::db::migrate_event_store(&db.pool).await.unwrap();
    let log = platform::db::connect_in_schema(&db.url, platform::db::NOTIFIER_SCHEMA, 4)
        .await
        .unwrap();
    platform::db::migrate_notifier(&log).await.unwrap();
    let booking = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO notifications (booking_id, sequence, position, kind, message_id)
         VALUES ($1, 2, 7, $2, '<booking-test.2@boxoffice.test>')",
    )
    .bind(booking)
    .bind(notifier::mail::Kind::BookingConfirmed.as_str())
    .execute(&log)
    .await
    .unwrap();

    let stalled = claim(&log, 1, Duration::from_millis(200)).await.unwrap();
    assert_eq!(stalled.len(), 1);
    let second = eventually(PATIENCE, "the first lease to run out", || async {
        claim(&log, 1, Duration::from_secs(60)).await.unwrap().pop()
    })
    .await;
    assert_eq!(second.attempts, 2);

    let report = End::Retry {
        after: Duration::ZERO,
        error: "451 try again later".into(),
    };
    assert!(
        !record(&log, &stalled[0], &report).await.unwrap(),
        "the stalled sender's report is not taken"
    );
    assert!(
        claim(&log, 1, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty(),
        "nobody else may take it while the second sender holds it"
    );
    assert!(record(&log, &second, &End::Sent).await.unwrap());
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM notifications WHERE booking_id = $1")
            .bind(booking)
            .fetch_one(&log)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("sent", 2));
}
