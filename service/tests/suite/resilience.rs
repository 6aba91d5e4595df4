//! herald under failure: killed mid-stream, two instances in one consumer group, graceful shutdown,
//! and Redis going away and coming back.
//!
//! "Sentinel" records for the traffic's user are produced after the traffic, to every partition of
//! the topic: records of one partition for one user are handled in order and one Redis connection
//! receives publishes in order, so once every sentinel has been seen, everything the traffic
//! published has been seen too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::harness::{
    ChannelObserver, Client, Herald, Infra, Producer, Scope, assert_subscribed, class_created, create_topics,
    free_port, infra, wait_group_stable, wait_metric, wait_subscribers, wait_until,
};

/// Partitions of every test topic (see `harness::create_topics`).
const PARTITIONS: i32 = 3;

/// Produces one class_created sentinel for `user` to each partition of the class_created topic;
/// returns their class ids.
async fn send_sentinels(producer: &Producer, scope: &Scope, user: &str) -> BTreeSet<String> {
    let topic = scope.topic("class_created");
    let mut ids = BTreeSet::new();
    for partition in 0..PARTITIONS {
        let class_id = format!("sentinel-{partition}-{}", scope.id);
        let bytes = serde_json::to_vec(&class_created(user, &class_id)).unwrap();
        producer.send_to(&topic, Some(partition), Some(&class_id), Some(&bytes)).await;
        ids.insert(class_id);
    }
    ids
}

fn class_id(notification: &Value) -> String {
    assert_eq!(notification["event"], "class_created", "{notification}");
    notification["data"]["class_id"].as_str().unwrap().to_owned()
}

/// How many times each class id was seen.
fn tally(notifications: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for notification in notifications {
        *counts.entry(class_id(notification)).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_stream_and_restarted_every_event_is_published_exactly_once() {
    const N: usize = 100;
    let infra = infra();
    let scope = Scope::new("kill-restart");
    let teacher = scope.user("teacher");
    let observer = ChannelObserver::subscribe(&infra.redis, &format!("ws:{teacher}")).await;
    let mut first = Herald::production(&scope, &infra, &[]).await;

    // The first half is produced while the first instance consumes, spread over partitions by key;
    // it is killed once it has published at least 30. The second half is produced after the
    // restart. The first instance committed nothing or some of what it published (offsets are
    // committed every second), so the second one receives some records again.
    let producer = Producer::new(&infra);
    let topic = scope.topic("class_created");
    let class_ids: Vec<String> = (0..N).map(|index| format!("class-{index}-{}", scope.id)).collect();
    let (first_half, second_half) = class_ids.split_at(N / 2);
    for class_id in first_half {
        let bytes = serde_json::to_vec(&class_created(&teacher, class_id)).unwrap();
        producer.send_to(&topic, None, Some(class_id), Some(&bytes)).await;
    }
    wait_until("herald published 30 notifications", || async { observer.messages().len() >= 30 }).await;
    first.kill().await;
    let seen_at_kill = observer.messages().len();

    let second = Herald::production(&scope, &infra, &[]).await;
    for class_id in second_half {
        let bytes = serde_json::to_vec(&class_created(&teacher, class_id)).unwrap();
        producer.send_to(&topic, None, Some(class_id), Some(&bytes)).await;
    }
    wait_until("every class id was published", || async { tally(&observer.messages()).len() >= N }).await;
    let sentinels = send_sentinels(&producer, &scope, &teacher).await;
    wait_until("every sentinel was published", || async {
        let seen = tally(&observer.messages());
        sentinels.iter().all(|sentinel| seen.contains_key(sentinel))
    })
    .await;

    let counts = tally(&observer.messages());
    let duplicates: Vec<(&String, &usize)> = counts.iter().filter(|(_, count)| **count > 1).collect();
    let redelivered = second.metric("herald_notifications_deduplicated_total").await;
    eprintln!(
        "kill-restart: {seen_at_kill} of {N} published before SIGKILL; the second instance suppressed {redelivered} \
         redelivered records; {} published twice",
        duplicates.len()
    );
    assert!(duplicates.is_empty(), "published more than once: {duplicates:?}");
    for class_id in &class_ids {
        assert_eq!(counts.get(class_id), Some(&1), "{class_id} was not published exactly once");
    }
    assert_eq!(counts.len(), N + sentinels.len(), "nothing else was published: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_in_one_group_deliver_to_every_connection_exactly_once() {
    two_instances_deliver_to_every_connection(infra()).await;
}

/// The body of `two_instances_in_one_group_deliver_to_every_connection_exactly_once`, against
/// single Redis or Redis Cluster.
pub(super) async fn two_instances_deliver_to_every_connection(infra: Infra) {
    const M: usize = 60;
    let scope = Scope::new("two-instances");
    let a = Herald::production(&scope, &infra, &[]).await;
    let b = Herald::production(&scope, &infra, &[]).await;
    let teacher = scope.user("teacher");
    let mut sockets = [a.connect(&teacher).await, a.connect(&teacher).await, b.connect(&teacher).await];
    assert_subscribed(&infra.redis, &teacher, 2).await;
    // Both instances hold partitions, so each publishes some of the notifications.
    wait_group_stable(&infra, &scope.group(), 2).await;

    let producer = Producer::new(&infra);
    let topic = scope.topic("class_created");
    let class_ids: BTreeSet<String> = (0..M).map(|index| format!("class-{index}-{}", scope.id)).collect();
    for class_id in &class_ids {
        let bytes = serde_json::to_vec(&class_created(&teacher, class_id)).unwrap();
        producer.send_to(&topic, None, Some(class_id), Some(&bytes)).await;
    }
    let sentinels = send_sentinels(&producer, &scope, &teacher).await;

    for (index, socket) in sockets.iter_mut().enumerate() {
        let mut received = Vec::new();
        let mut missing = sentinels.clone();
        while !missing.is_empty() {
            let notification = socket.notification().await;
            missing.remove(&class_id(&notification));
            received.push(notification);
        }
        let counts = tally(&received);
        let expected: BTreeSet<String> = class_ids.union(&sentinels).cloned().collect();
        assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), expected, "socket {index} missed or got extra");
        let duplicates: Vec<_> = counts.iter().filter(|(_, count)| **count > 1).collect();
        assert!(duplicates.is_empty(), "socket {index} received duplicates: {duplicates:?}");
    }

    let total = (M + sentinels.len()) as f64;
    wait_until("A and B together published every notification", || async {
        a.metric("herald_notifications_published_total").await + b.metric("herald_notifications_published_total").await
            == total
    })
    .await;
    let (from_a, from_b) = (
        a.metric("herald_notifications_published_total").await,
        b.metric("herald_notifications_published_total").await,
    );
    eprintln!("two-instances: A published {from_a}, B published {from_b}");
    assert!(from_a > 0.0 && from_b > 0.0, "both instances consume: A {from_a}, B {from_b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_with_1012_commits_and_exits() {
    const SHUTDOWN_BOUND: Duration = Duration::from_secs(10);
    let infra = infra();
    let scope = Scope::new("sigterm");
    let teacher = scope.user("teacher");
    let mut herald = Herald::production(&scope, &infra, &["--shutdown-timeout-seconds", "10"]).await;
    let mut socket = herald.connect(&teacher).await;
    assert_subscribed(&infra.redis, &teacher, 1).await;
    let producer = Producer::new(&infra);
    let topic = scope.topic("class_created");

    let handled = class_created(&teacher, &format!("handled-{}", scope.id));
    producer.send_keyed(&topic, &teacher, &handled).await;
    assert_eq!(socket.notification().await["event_id"], handled["event_id"]);

    let started = Instant::now();
    let status = herald.terminate().await;
    let took = started.elapsed();
    assert!(status.success(), "herald exits with success after SIGTERM: {status}\n{}", herald.log_tail());
    assert!(took < SHUTDOWN_BOUND, "herald took {took:?} to stop, over the bound of {SHUTDOWN_BOUND:?}");
    let (code, reason) = socket.closed().await;
    assert_eq!(code, 1012, "{reason}");
    assert!(reason.contains("SERVICE_RESTART"), "{reason}");

    // The next instance in the group starts after the committed offset: it does not handle the
    // record again. The sentinel shares its partition, so it is handled after it would have been.
    let next = Herald::production(&scope, &infra, &[]).await;
    let mut socket = next.connect(&teacher).await;
    assert_subscribed(&infra.redis, &teacher, 1).await;
    let sentinel = class_created(&teacher, &format!("sentinel-{}", scope.id));
    producer.send_keyed(&topic, &teacher, &sentinel).await;
    assert_eq!(socket.notification().await["event_id"], sentinel["event_id"]);
    wait_metric(&next, "herald_notifications_published_total", 1.0).await;
    assert_eq!(
        next.metric("herald_notifications_deduplicated_total").await,
        0.0,
        "the record handled before SIGTERM was handled again:\n{}",
        next.log_tail()
    );
}

/// A redis-server of one test's own, so that it can be killed without disturbing other tests.
pub(super) struct RedisServer {
    child: tokio::process::Child,
    port: u16,
}

impl RedisServer {
    pub(super) async fn start(port: u16) -> RedisServer {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("redis-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("redis.log")).unwrap();
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts (install it with scripts/infra/up.sh)");
        let server = RedisServer { child, port };
        let url = server.url();
        wait_until(&format!("redis-server answers on port {port}"), || async {
            let Ok(client) = redis::Client::open(url.as_str()) else { return false };
            let Ok(mut connection) = client.get_multiplexed_async_connection().await else { return false };
            redis::cmd("PING").query_async::<String>(&mut connection).await.is_ok()
        })
        .await;
        server
    }

    pub(super) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(super) async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_comes_back_subscriptions_are_restored_and_the_socket_catches_up() {
    let kafka = infra().kafka;
    let port = free_port();
    let redis = RedisServer::start(port).await;
    let own = Infra { kafka, redis: redis.url(), redis_cluster: false };
    let scope = Scope::new("redis-back");
    let herald = Herald::production(&scope, &own, &[]).await;
    let teacher = scope.user("teacher");
    let mut socket: Client = herald.connect(&teacher).await;
    assert_subscribed(&own.redis, &teacher, 1).await;
    let producer = Producer::new(&own);
    let topic = scope.topic("class_created");

    let before = class_created(&teacher, &format!("before-{}", scope.id));
    producer.send_keyed(&topic, &teacher, &before).await;
    assert_eq!(socket.notification().await["event_id"], before["event_id"]);

    // Redis goes away; a record produced now cannot be published, so the consumer retries it.
    redis.kill().await;
    let during = class_created(&teacher, &format!("during-{}", scope.id));
    producer.send_keyed(&topic, &teacher, &during).await;
    wait_until("the consumer retried while Redis was down", || async {
        herald.metric("herald_transient_retries_total").await > 0.0
    })
    .await;

    let _redis = RedisServer::start(port).await;
    wait_subscribers(&own.redis, &teacher, 1).await;
    let after = class_created(&teacher, &format!("after-{}", scope.id));
    producer.send_keyed(&topic, &teacher, &after).await;

    // `during` is published before `after` (same partition), maybe before the subscriber was back,
    // when Redis pub/sub delivers it to nobody: the socket catches up from the history before it
    // writes live notifications again. This Redis restarted without its data, so the socket is
    // also told plainly that what came before may be lost.
    let mut frames = Vec::new();
    while frames.last().is_none_or(|frame: &serde_json::Value| frame["event_id"] != after["event_id"]) {
        frames.push(socket.notification().await);
    }
    assert_eq!(
        (&frames[0]["type"], &frames[0]["recovered"]),
        (&serde_json::json!("resumed"), &serde_json::json!(false)),
        "the catch-up comes first and says the history was lost: {frames:?}"
    );
    assert!(frames[0]["missed"].as_u64().is_some_and(|missed| missed <= 1), "{frames:?}");
    let events: Vec<&serde_json::Value> = frames[1..].iter().map(|frame| &frame["event_id"]).collect();
    assert_eq!(events, [&during["event_id"], &after["event_id"]], "each once, in order: {frames:?}");
    wait_metric(&herald, "herald_notifications_published_total", 3.0).await;
}

/// A topic that does not exist yet is reported by librdkafka once per topic, queued among the
/// records of the other topics; the consumer must not pause on each report. (It did: with thirteen
/// missing topics and a doubling backoff, consumption stalled for over 40 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_before_its_topics_exist_herald_consumes_them_once_created() {
    let infra = infra();
    let scope = Scope::new("late-topics");
    let herald = Herald::start(&scope.id, &scope.production_args(&infra)).await;
    let teacher = scope.user("teacher");
    let mut socket = herald.connect(&teacher).await;
    assert_subscribed(&infra.redis, &teacher, 1).await;
    create_topics(&infra, &scope.topics()).await;
    let producer = Producer::new(&infra);
    let created = class_created(&teacher, &format!("late-{}", scope.id));
    producer.send_keyed(&scope.topic("class_created"), &teacher, &created).await;
    assert_eq!(socket.notification().await["event_id"], created["event_id"]);
}
