//! Where herald starts reading: a new consumer group does not replay what the topics retain, and
//! a record older than `--max-event-age-seconds` is never delivered (it is counted and committed).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

use super::harness::{
    Herald, Received, Scope, assert_subscribed, class_created, create_topics, infra, wait_group_stable, wait_metric,
};

/// Produces `envelope` keyed by `key` with the Kafka timestamp `timestamp_ms`, as a producer
/// whose record waited (or whose clock is behind) would.
async fn send_with_timestamp(kafka: &str, topic: &str, key: &str, envelope: &Value, timestamp_ms: i64) {
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", kafka).create().unwrap();
    let bytes = serde_json::to_vec(envelope).unwrap();
    let record = FutureRecord::to(topic).key(key).payload(&bytes).timestamp(timestamp_ms);
    producer.send(record, Duration::from_secs(10)).await.map_err(|(error, _)| error).unwrap();
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_group_starts_at_the_latest_offset_by_default() {
    let infra = infra();
    let scope = Scope::new("start-latest");
    let teacher = scope.user("teacher");
    let topic = scope.topic("class_created");
    create_topics(&infra, &scope.topics()).await;
    // Retained before herald's group exists: a fresh deployment must not replay it.
    let old = class_created(&teacher, &format!("retained-{}", scope.id));
    send_with_timestamp(&infra.kafka, &topic, &teacher, &old, now_ms()).await;

    // The harness starts from earliest; this test runs herald with the default.
    let mut args = scope.production_args(&infra);
    let flag = args.iter().position(|arg| arg == "--start-from").expect("the harness sets --start-from");
    args.drain(flag..flag + 2);
    let herald = Herald::start(&scope.id, &args).await;
    let mut socket = herald.connect(&teacher).await;
    assert_subscribed(&infra.redis, &teacher, 1).await;
    wait_group_stable(&infra, &scope.group(), 1).await;

    // "Latest" is fixed when the consumer first fetches a partition, a moment after the group is
    // stable: a sentinel produced before that is skipped too. So sentinels (same key, so the same
    // partition, after the retained record) are produced until one arrives; the first notification
    // must be a sentinel, never the retained record.
    let mut sentinels = Vec::new();
    let first = loop {
        assert!(sentinels.len() < 15, "no sentinel arrived:\n{}", herald.log_tail());
        let sentinel = class_created(&teacher, &format!("sentinel-{}-{}", sentinels.len(), scope.id));
        send_with_timestamp(&infra.kafka, &topic, &teacher, &sentinel, now_ms()).await;
        sentinels.push(sentinel);
        if let Ok(received) = tokio::time::timeout(Duration::from_secs(2), socket.receive()).await {
            break received;
        }
    };
    let Received::Text(first) = first else { panic!("the socket closed: {first:?}") };
    assert_ne!(first["event_id"], old["event_id"], "the retained record was replayed");
    assert!(
        sentinels.iter().any(|sentinel| sentinel["event_id"] == first["event_id"]),
        "the first notification is a sentinel: {first}"
    );
    assert_eq!(herald.metric("herald_events_too_old_total").await, 0.0, "skipped by position, not by age");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_older_than_the_max_event_age_is_skipped_counted_and_committed() {
    let infra = infra();
    let scope = Scope::new("too-old");
    let mut herald = Herald::production(&scope, &infra, &["--max-event-age-seconds", "300"]).await;
    let teacher = scope.user("teacher");
    let mut socket = herald.connect(&teacher).await;
    assert_subscribed(&infra.redis, &teacher, 1).await;
    let topic = scope.topic("class_created");

    let old = class_created(&teacher, &format!("an-hour-old-{}", scope.id));
    send_with_timestamp(&infra.kafka, &topic, &teacher, &old, now_ms() - 3_600_000).await;
    let fresh = class_created(&teacher, &format!("fresh-{}", scope.id));
    send_with_timestamp(&infra.kafka, &topic, &teacher, &fresh, now_ms()).await;

    // The old record is not delivered (it names the same teacher, but a record skipped as too
    // old is never published, whenever it is handled).
    assert_eq!(socket.notification().await["event_id"], fresh["event_id"], "{}", herald.log_tail());
    wait_metric(&herald, "herald_events_too_old_total", 1.0).await;
    assert_eq!(herald.metric("herald_notifications_published_total").await, 1.0);

    // Its offset was stored: the next instance of the group does not see it again.
    assert!(herald.terminate().await.success());
    let next = Herald::production(&scope, &infra, &["--max-event-age-seconds", "300"]).await;
    let mut socket = next.connect(&teacher).await;
    assert_subscribed(&infra.redis, &teacher, 1).await;
    let sentinel = class_created(&teacher, &format!("sentinel-{}", scope.id));
    send_with_timestamp(&infra.kafka, &topic, &teacher, &sentinel, now_ms()).await;
    assert_eq!(socket.notification().await["event_id"], sentinel["event_id"]);
    assert_eq!(next.metric("herald_events_too_old_total").await, 0.0, "the old record was committed");
}
