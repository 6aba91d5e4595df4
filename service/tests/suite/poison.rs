//! Records that cannot be delivered never stop delivery: a non-ASCII error text, a record of about
//! a megabyte, a record over the dead-letter topic's own limit, and a dead-letter topic that cannot
//! be written. Each is dead-lettered (whole, or as a prefix that says so), or herald says it is
//! not ready and why, or it exits with an error; it never skips the record silently.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Headers as _, OwnedMessage};
use serde_json::Value;

use super::harness::{
    Herald, Infra, Producer, Scope, assert_subscribed, class_created, create_topics, envelope, infra, read_topic,
    wait_metric, wait_topics_visible, wait_until,
};

/// The dead-letter headers of a record, as text.
fn headers(record: &OwnedMessage) -> BTreeMap<String, String> {
    record
        .headers()
        .expect("a dead letter has headers")
        .iter()
        .map(|header| {
            (header.key.to_owned(), String::from_utf8(header.value.unwrap_or_default().to_vec()).expect("UTF-8"))
        })
        .collect()
}

/// Creates the scope's dead-letter topic with topic-level `settings` before herald creates it.
async fn create_dead_letter_topic(infra: &Infra, scope: &Scope, settings: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &infra.kafka).create().unwrap();
    let topic = scope.dead_letter_topic();
    let mut new = NewTopic::new(&topic, 1, TopicReplication::Fixed(1));
    for (key, value) in settings {
        new = new.set(key, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    for result in admin.create_topics([&new], &options).await.unwrap() {
        result.unwrap_or_else(|(topic, error)| panic!("cannot create {topic}: {error}"));
    }
    wait_topics_visible(infra, &[topic]).await;
}

/// `/readyz` as (status, body).
async fn readiness(herald: &Herald) -> (u16, Value) {
    let response = reqwest::get(herald.url("/readyz")).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_non_ascii_event_type_is_dead_lettered_and_consumption_goes_on() {
    let infra = infra();
    let scope = Scope::new("poison-unicode");
    let herald = Herald::production(&scope, &infra, &[]).await;
    let teacher = scope.user("teacher");
    let mut socket = herald.connect(&teacher).await;
    assert_subscribed(&infra.redis, &teacher, 1).await;
    let producer = Producer::new(&infra);
    let topic = scope.topic("class_created");

    // A valid envelope whose event_type is "é" × 600: the error text quoting it is cut at 1024
    // bytes, which falls inside a character (the cut panicked and stopped all consumption).
    let poison = envelope("class_created", "basic", |value| value["event_type"] = Value::String("é".repeat(600)));
    let landed = producer.send_keyed(&topic, &teacher, &poison).await;
    let good = class_created(&teacher, &format!("after-{}", scope.id));
    producer.send_keyed(&topic, &teacher, &good).await;
    assert_eq!(socket.notification().await["event_id"], good["event_id"], "{}", herald.log_tail());

    let records = read_topic(&infra, &scope.dead_letter_topic(), 1).await;
    let headers = headers(&records[0]);
    assert_eq!(headers["herald.reason"], "unknown_event_type");
    assert!(headers["herald.error"].len() <= 1024 && headers["herald.error"].contains("éé"), "{headers:?}");
    assert_eq!(headers["herald.source.offset"], landed.offset.to_string());
    assert_eq!(readiness(&herald).await.0, 200, "the consumer still runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_of_1010000_bytes_that_is_not_json_is_dead_lettered_whole_with_default_settings() {
    const SIZE: usize = 1_010_000;
    let infra = infra();
    let scope = Scope::new("poison-large");
    let herald = Herald::production(&scope, &infra, &[]).await;
    let teacher = scope.user("teacher");
    let mut socket = herald.connect(&teacher).await;
    assert_subscribed(&infra.redis, &teacher, 1).await;
    let producer = Producer::new(&infra);
    let topic = scope.topic("class_created");

    let large: Vec<u8> = (0..SIZE).map(|index| b"not json "[index % 9]).collect();
    let landed = producer.send_to(&topic, None, Some(&teacher), Some(&large)).await;
    let good = class_created(&teacher, &format!("after-{}", scope.id));
    producer.send_keyed(&topic, &teacher, &good).await;
    assert_eq!(socket.notification().await["event_id"], good["event_id"], "{}", herald.log_tail());

    let records = read_topic(&infra, &scope.dead_letter_topic(), 1).await;
    let record = &records[0];
    assert_eq!(record.payload().map(<[u8]>::len), Some(SIZE), "the whole record is dead-lettered");
    assert_eq!(record.payload(), Some(large.as_slice()));
    assert_eq!(record.key(), Some(teacher.as_bytes()));
    let headers = headers(record);
    assert_eq!(headers["herald.reason"], "not_json");
    assert_eq!(headers["herald.source.topic"], topic);
    assert_eq!(headers["herald.source.partition"], landed.partition.to_string());
    assert_eq!(headers["herald.source.offset"], landed.offset.to_string());
    assert!(!headers.contains_key("herald.truncated"), "{headers:?}");
    wait_metric(&herald, "herald_records_dead_lettered_total{reason=\"not_json\"}", 1.0).await;
    assert_eq!(herald.metric("herald_dead_letter_failures_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_the_dead_letter_topics_limit_is_dead_lettered_as_a_prefix_that_says_so() {
    const SIZE: usize = 300_000;
    let infra = infra();
    let scope = Scope::new("poison-prefix");
    // The broker refuses records over 100,000 bytes on this dead-letter topic.
    create_dead_letter_topic(&infra, &scope, &[("max.message.bytes", "100000")]).await;
    let herald = Herald::production(&scope, &infra, &[]).await;
    let teacher = scope.user("teacher");
    let mut socket = herald.connect(&teacher).await;
    assert_subscribed(&infra.redis, &teacher, 1).await;
    let producer = Producer::new(&infra);
    let topic = scope.topic("class_created");

    let large: Vec<u8> = (0..SIZE).map(|index| (index % 251) as u8).collect();
    let landed = producer.send_to(&topic, None, Some(&teacher), Some(&large)).await;
    let good = class_created(&teacher, &format!("after-{}", scope.id));
    producer.send_keyed(&topic, &teacher, &good).await;
    assert_eq!(socket.notification().await["event_id"], good["event_id"], "{}", herald.log_tail());

    let records = read_topic(&infra, &scope.dead_letter_topic(), 1).await;
    let record = &records[0];
    let prefix = record.payload().expect("a prefix of the record");
    assert!(prefix.len() < 100_000 && !prefix.is_empty(), "{} bytes", prefix.len());
    assert_eq!(prefix, &large[..prefix.len()], "the first bytes of the record");
    let headers = headers(record);
    assert_eq!(headers["herald.truncated"], SIZE.to_string(), "the original length");
    assert_eq!(headers["herald.reason"], "not_json");
    assert_eq!(headers["herald.source.topic"], topic);
    assert_eq!(headers["herald.source.partition"], landed.partition.to_string());
    assert_eq!(headers["herald.source.offset"], landed.offset.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_topic_that_cannot_be_written_makes_herald_not_ready_until_it_can() {
    let infra = infra();
    let scope = Scope::new("poison-unwritable");
    // A dead-letter topic that does not exist, and a producer not allowed to create topics (as
    // with auto-creation off on the broker): every write fails until an operator creates it.
    let dead_letter_topic = format!("t.{}.missing-dead-letter", scope.id);
    let herald = Herald::production(
        &scope,
        &infra,
        &["--dead-letter-topic", &dead_letter_topic, "--kafka-producer-option", "allow.auto.create.topics=false"],
    )
    .await;
    let teacher = scope.user("teacher");
    let mut socket = herald.connect(&teacher).await;
    assert_subscribed(&infra.redis, &teacher, 1).await;
    let producer = Producer::new(&infra);
    let topic = scope.topic("class_created");

    let landed = producer.send_to(&topic, None, Some(&teacher), Some(b"not json")).await;
    let good = class_created(&teacher, &format!("after-{}", scope.id));
    let good_landed = producer.send_keyed(&topic, &teacher, &good).await;
    assert_eq!(good_landed.partition, landed.partition, "same key, same partition");

    // Bad input names nobody, so nothing waits for it: the record after it is delivered while it
    // is retried. It is not skipped: its offset, and so the good one's, is not committed.
    assert_eq!(socket.notification().await["event_id"], good["event_id"], "{}", herald.log_tail());
    wait_until("/readyz is 503 naming the dead-letter topic", || async {
        let (status, body) = readiness(&herald).await;
        status == 503 && body["checks"]["dead_letter"].as_str().is_some_and(|cause| cause.contains(&dead_letter_topic))
    })
    .await;
    let (_, body) = readiness(&herald).await;
    eprintln!("poison-unwritable: /readyz said {}", body["checks"]["dead_letter"]);
    assert!(herald.metric("herald_dead_letter_failures_total").await >= 1.0);
    assert_eq!(herald.metric("herald_ready_check{check=\"dead_letter\"}").await, 0.0);
    let committed = committed_offset(&infra, &scope.group(), &topic, landed.partition).await;
    assert!(committed.is_none_or(|offset| offset <= landed.offset), "committed {committed:?} past {landed:?}");

    // The operator creates the topic; the record is dead-lettered and both offsets are committed.
    create_topics(&infra, std::slice::from_ref(&dead_letter_topic)).await;
    let records = read_topic(&infra, &dead_letter_topic, 1).await;
    assert_eq!(records[0].payload(), Some(b"not json".as_slice()));
    assert_eq!(headers(&records[0])["herald.source.offset"], landed.offset.to_string());
    wait_until("/readyz is 200 again", || async { readiness(&herald).await.0 == 200 }).await;
    wait_until("both records are committed", || async {
        committed_offset(&infra, &scope.group(), &topic, landed.partition)
            .await
            .is_some_and(|offset| offset > good_landed.offset)
    })
    .await;
    assert_eq!(herald.metric("herald_notifications_published_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_gives_up_on_a_record_ends_the_process_with_an_error_naming_it() {
    let infra = infra();
    let scope = Scope::new("poison-give-up");
    // Kafka refuses this topic name: the dead letter can never be written, and after the bound
    // the consumer task ends; the process must not go on without it.
    let mut herald = Herald::production(
        &scope,
        &infra,
        &["--dead-letter-topic", "not a valid topic name!", "--dead-letter-timeout-seconds", "1"],
    )
    .await;
    let producer = Producer::new(&infra);
    let landed = producer.send_to(&scope.topic("class_created"), None, Some("key"), Some(b"not json")).await;

    let status = herald.exited().await;
    assert!(!status.success(), "herald exits non-zero: {status}");
    let log = std::fs::read_to_string(&herald.log).unwrap();
    let line = log
        .lines()
        .find(|line| line.contains("a background task ended unexpectedly"))
        .unwrap_or_else(|| panic!("no log line names the task:\n{}", herald.log_tail()));
    assert!(line.contains("consumer") && line.contains("dead-letter"), "{line}");
    assert!(log.contains("herald: the consumer task ended unexpectedly"), "{}", herald.log_tail());

    // Nothing was skipped: the group's committed offset is still at (not after) the record.
    let committed = committed_offset(&infra, &scope.group(), &scope.topic("class_created"), landed.partition).await;
    assert!(committed.is_none_or(|offset| offset <= landed.offset), "committed {committed:?} past {landed:?}");
}

/// The committed offset of `group` on one partition, if any.
async fn committed_offset(infra: &Infra, group: &str, topic: &str, partition: i32) -> Option<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let client: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &infra.kafka).set("group.id", group).create().unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition(topic, partition);
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let committed = client.committed_offsets(list, Duration::from_secs(10)).unwrap();
        committed
            .find_partition(&topic, partition)
            .and_then(|element| element.offset().to_raw())
            .filter(|offset| *offset >= 0)
    })
    .await
    .unwrap()
}
