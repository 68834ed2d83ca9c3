//! Kafka over TLS: the relay, the projector and the sagas reach a broker that speaks
//! TLS only (tansu behind a TLS proxy, `testkit::tls_broker`), set up by the same
//! settings a managed cluster takes (`KAFKA_SECURITY_PROTOCOL=ssl`,
//! `KAFKA_SSL_CA_LOCATION`). The projector's sweep of the store is off, so a booking
//! reaches the read model only through the topic.

use std::time::Duration;

use e2e::*;
use platform::kafka::{client_config, partition_count, KafkaLogs, KafkaSecurity};
use rdkafka::consumer::{BaseConsumer, Consumer};
use testkit::tls_broker::TlsBroker;

#[tokio::test]
async fn a_booking_travels_through_a_broker_that_speaks_tls_only() {
    let broker = TlsBroker::start().await;
    let stack = Stack::start_with(Options {
        brokers: Some(broker.brokers()),
        kafka_security: broker.security(),
        sweep: Duration::ZERO,
        ..Options::default()
    })
    .await;
    let location = stack.location("Olympia", 100).await;
    let event = stack.event(&event_body(&location)).await.id();
    let booking = stack.book(&event, "alice", 2).await.id();

    let shown = stack
        .eventually(
            &format!("/v1/bookings/{booking}"),
            &customer("alice"),
            "the booking confirmed in the read model, through the TLS topic",
            |answer| answer.body["status"] == "confirmed",
        )
        .await;
    assert_eq!(shown.body["seats"], 2);
    stack.published().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_brokers_certificate_gets_nothing() {
    let broker = TlsBroker::start().await;
    let topic = testkit::unique_topic();
    let brokers = broker.brokers();
    let trusted = broker.security();
    let untrusted = KafkaSecurity {
        // The system's CA store, which does not know the test's CA.
        kafka_ssl_ca_location: None,
        ..trusted.clone()
    };
    platform::kafka::ensure_topic(&brokers, &trusted, &topic)
        .await
        .expect("a client trusting the CA creates the topic");

    let ask = |security: KafkaSecurity| {
        let (brokers, name) = (brokers.clone(), topic.name.clone());
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer<KafkaLogs> = client_config(&brokers, &security)
                .set("group.id", "bt-tls")
                .create_with_context(KafkaLogs)
                .expect("a client");
            partition_count(consumer.client(), &name, Duration::from_secs(5))
        })
    };
    assert_eq!(ask(trusted).await.unwrap(), Ok(topic.partitions as usize));
    let refused = ask(untrusted).await.unwrap();
    assert!(refused.is_err(), "{refused:?}");
    let plaintext = ask(KafkaSecurity::PLAINTEXT).await.unwrap();
    assert!(plaintext.is_err(), "{plaintext:?}");
}
