//! History and resume: a client that reconnects with the last id it processed gets every
//! notification it missed, in order and exactly once, then the live ones; or is told
//! `recovered: false` when herald cannot prove nothing is missing (history trimmed, Redis flushed).
//!
//! Counting is by `event_id` and `id`: every test checks that what arrived over both connections
//! is each produced event exactly once, in the order produced, with strictly increasing ids.

use serde_json::{Value, json};

use super::harness::{
    Client, Herald, Infra, Producer, Received, Scope, class_created, cluster_infra, envelope, free_port, infra,
    park_files, token, wait_until,
};

/// A notification id `"<ms>-<seq>"` as the ordered pair.
fn id_of(message: &Value) -> (u64, u64) {
    let id = message["id"].as_str().unwrap_or_else(|| panic!("no id in {message}"));
    let (ms, seq) = id.split_once('-').unwrap_or_else(|| panic!("id {id} is not <ms>-<seq>"));
    (ms.parse().unwrap(), seq.parse().unwrap())
}

/// Opens `/ws` for `user` with `?since=` when given, else with `?position=1` (so the socket's
/// first frame is its position, which `Client::position` reads and `Client::receive` skips).
async fn connect(herald: &Herald, user: &str, since: Option<&str>) -> Client {
    let query = match since {
        Some(since) => format!("?token={}&since={since}", token(user)),
        None => format!("?token={}&position=1", token(user)),
    };
    Client::connect(herald.ws_url(&query)).await.unwrap_or_else(|error| panic!("connect {user}: {error}"))
}

/// Proves the socket is registered and in its loop: a ping is answered.
async fn ping(client: &mut Client) {
    client.send_text(r#"{"type":"ping"}"#).await;
    assert_eq!(client.notification().await, json!({ "type": "pong" }));
}

/// Reads the `resumed` frame and the `missed` notifications after it; returns `recovered` and them.
async fn resumed(client: &mut Client) -> (bool, Vec<Value>) {
    let frame = client.notification().await;
    assert_eq!(frame["type"], "resumed", "the first frame answers the resume: {frame}");
    let missed = frame["missed"].as_u64().unwrap_or_else(|| panic!("no missed count in {frame}"));
    let mut notifications = Vec::new();
    for _ in 0..missed {
        notifications.push(client.notification().await);
    }
    (frame["recovered"].as_bool().unwrap(), notifications)
}

/// Asserts the notifications are exactly the events `expected` (by event id), in that order, with
/// strictly increasing ids.
fn assert_exactly(what: &str, received: &[Value], expected: &[Value]) {
    let got: Vec<&Value> = received.iter().map(|message| &message["event_id"]).collect();
    let want: Vec<&Value> = expected.iter().map(|event| &event["event_id"]).collect();
    assert_eq!(got, want, "{what}: the events, in order");
    for pair in received.windows(2) {
        assert!(id_of(&pair[0]) < id_of(&pair[1]), "{what}: ids increase: {} then {}", pair[0]["id"], pair[1]["id"]);
    }
}

/// Produces `count` class_created events for `user` through Kafka, in order (one key, one partition).
async fn produce(producer: &Producer, scope: &Scope, user: &str, label: &str, count: usize) -> Vec<Value> {
    let mut events = Vec::new();
    for index in 0..count {
        let event = class_created(user, &format!("class-{label}-{index}"));
        producer.send_envelope(scope, "class_created", &event).await;
        events.push(event);
    }
    events
}

/// Waits until the heralds together published `count` notifications.
async fn wait_published(heralds: &[&Herald], count: f64) {
    wait_until(&format!("{count} notifications are published"), || async {
        let mut total = 0.0;
        for herald in heralds {
            total += herald.metric("herald_notifications_published_total").await;
        }
        total >= count
    })
    .await;
}

/// The scenario of the issue: a tab connected to `first` processes one notification and goes
/// away; 50 are produced meanwhile; it reconnects to `second` (the same instance or another)
/// with `since` and gets exactly those 50, in order, then live ones. Then the same with the
/// resume frame, with a live notification written before the frame.
async fn a_tab_resumes_with_nothing_missing(scope: &Scope, infra: &Infra, first: &Herald, second: &Herald) {
    let producer = Producer::new(infra);
    let teacher = scope.user("teacher");
    let heralds: Vec<&Herald> = if first.port == second.port { vec![first] } else { vec![first, second] };

    let mut tab = connect(first, &teacher, None).await;
    ping(&mut tab).await;
    let seen = produce(&producer, scope, &teacher, "seen", 1).await;
    let last = tab.notification().await;
    assert_exactly("live before the disconnect", std::slice::from_ref(&last), &seen);
    tab.close().await;

    let missed = produce(&producer, scope, &teacher, "missed", 50).await;
    wait_published(&heralds, 51.0).await;
    let since = last["id"].as_str().unwrap();
    let mut tab = connect(second, &teacher, Some(since)).await;
    let (recovered, replayed) = resumed(&mut tab).await;
    assert!(recovered, "since {since} is kept");
    assert_exactly("replayed after ?since", &replayed, &missed);
    let live = produce(&producer, scope, &teacher, "live", 1).await;
    let next = tab.notification().await;
    assert_exactly(
        "live after the replay",
        &[replayed.last().unwrap().clone(), next.clone()],
        &[missed.last().unwrap().clone(), live[0].clone()],
    );
    tab.close().await;

    // The resume frame: a notification published after the socket opened is written live before
    // the client's frame arrives; the replay must not repeat it.
    let missed = produce(&producer, scope, &teacher, "missed-again", 5).await;
    wait_published(&heralds, 57.0).await;
    let mut tab = connect(first, &teacher, None).await;
    ping(&mut tab).await;
    let early = produce(&producer, scope, &teacher, "early", 1).await;
    let early_message = tab.notification().await;
    assert_exactly("live before the resume frame", std::slice::from_ref(&early_message), &early);
    tab.send_text(&json!({ "type": "resume", "since": next["id"] }).to_string()).await;
    let (recovered, replayed) = resumed(&mut tab).await;
    assert!(recovered);
    assert_exactly("replayed after the resume frame", &replayed, &missed);
    // A second resume frame is ignored (once per connection): the next frame is a pong.
    tab.send_text(&json!({ "type": "resume", "since": next["id"] }).to_string()).await;
    ping(&mut tab).await;
    let live = produce(&producer, scope, &teacher, "live-again", 1).await;
    let message = tab.notification().await;
    assert_exactly("live after the frame's replay", std::slice::from_ref(&message), &live);
    assert!(id_of(&message) > id_of(&early_message));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_tab_gets_the_50_it_missed_in_order_then_live() {
    let infra = infra();
    let scope = Scope::new("resume-one");
    let herald = Herald::production(&scope, &infra, &[]).await;
    a_tab_resumes_with_nothing_missing(&scope, &infra, &herald, &herald).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_that_reconnects_to_another_instance_gets_the_same() {
    let infra = infra();
    let scope = Scope::new("resume-two");
    let first = Herald::production(&scope, &infra, &[]).await;
    let second = Herald::production(&scope, &infra, &[]).await;
    a_tab_resumes_with_nothing_missing(&scope, &infra, &first, &second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_works_on_a_redis_cluster() {
    let infra = cluster_infra();
    let scope = Scope::new("resume-cluster");
    let first = Herald::production(&scope, &infra, &[]).await;
    let second = Herald::production(&scope, &infra, &[]).await;
    a_tab_resumes_with_nothing_missing(&scope, &infra, &first, &second).await;
}

/// `--history-size 10`: a tab that missed 20 is told `recovered: false` and gets the 10 kept.
/// A malformed `since` gets everything kept, also with `recovered: false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_since_trimmed_from_the_history_is_not_recovered() {
    let infra = infra();
    let scope = Scope::new("resume-trimmed");
    let herald = Herald::production(&scope, &infra, &["--history-size", "10"]).await;
    let producer = Producer::new(&infra);
    let teacher = scope.user("teacher");
    let mut tab = connect(&herald, &teacher, None).await;
    let empty = tab.position().await;
    ping(&mut tab).await;
    produce(&producer, &scope, &teacher, "seen", 1).await;
    let last = tab.notification().await;
    tab.close().await;
    let missed = produce(&producer, &scope, &teacher, "missed", 20).await;
    wait_published(&[&herald], 21.0).await;

    let mut tab = connect(&herald, &teacher, Some(&empty)).await;
    let (recovered, replayed) = resumed(&mut tab).await;
    assert!(!recovered, "11 were trimmed after the position of the empty history, {empty}");
    assert_exactly("the kept ones, after an empty history's position", &replayed, &missed[10..]);
    tab.close().await;

    let mut tab = connect(&herald, &teacher, Some(last["id"].as_str().unwrap())).await;
    let (recovered, replayed) = resumed(&mut tab).await;
    assert!(!recovered, "since was trimmed");
    assert_exactly("the kept ones", &replayed, &missed[10..]);
    tab.close().await;

    let mut tab = connect(&herald, &teacher, Some("not-an-id")).await;
    let (recovered, replayed) = resumed(&mut tab).await;
    assert!(!recovered);
    assert_exactly("everything kept, for a malformed since", &replayed, &missed[10..]);
}

/// A redis-server of this test's own, so that the test may flush it.
struct OwnRedis {
    child: std::process::Child,
    url: String,
}

impl OwnRedis {
    async fn start() -> OwnRedis {
        let port = free_port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts (install it with scripts/infra/packages.sh)");
        let url = format!("redis://127.0.0.1:{port}");
        wait_until("the test's own redis-server answers", || async {
            let Ok(client) = redis::Client::open(url.as_str()) else { return false };
            let Ok(mut connection) = client.get_multiplexed_async_connection().await else { return false };
            redis::cmd("PING").query_async::<String>(&mut connection).await.is_ok()
        })
        .await;
        OwnRedis { child, url }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// History lost (Redis flushed, as a restart without persistence would): `recovered: false`, also
/// from the position of an empty history, and live notifications flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_lost_with_redis_is_not_recovered() {
    let redis = OwnRedis::start().await;
    let infra = Infra { redis: redis.url.clone(), ..infra() };
    let scope = Scope::new("resume-flushed");
    let herald = Herald::production(&scope, &infra, &[]).await;
    let producer = Producer::new(&infra);
    let teacher = scope.user("teacher");
    let mut tab = connect(&herald, &teacher, None).await;
    let empty = tab.position().await;
    ping(&mut tab).await;
    produce(&producer, &scope, &teacher, "seen", 1).await;
    let last = tab.notification().await;
    tab.close().await;
    produce(&producer, &scope, &teacher, "missed", 3).await;
    wait_published(&[&herald], 4.0).await;
    let mut connection =
        redis::Client::open(redis.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("FLUSHALL").query_async(&mut connection).await.unwrap();

    let mut tab = connect(&herald, &teacher, Some(&empty)).await;
    let (recovered, replayed) = resumed(&mut tab).await;
    assert!(!recovered, "the history is gone, and the position {empty} was taken before");
    assert!(replayed.is_empty(), "{replayed:?}");
    tab.close().await;

    let mut tab = connect(&herald, &teacher, Some(last["id"].as_str().unwrap())).await;
    let (recovered, replayed) = resumed(&mut tab).await;
    assert!(!recovered, "the history is gone");
    assert!(replayed.is_empty(), "{replayed:?}");
    let live = produce(&producer, &scope, &teacher, "live", 1).await;
    let message = tab.notification().await;
    assert_exactly("live after a lost history", std::slice::from_ref(&message), &live);
}

/// Where notifications for the position tests come from: Kafka, or `POST /v1/events`.
enum Source<'a> {
    Kafka(&'a Infra, &'a Scope),
    Http,
}

impl Source<'_> {
    /// Publishes `count` class_created events for `user` through `herald`, in order, and waits
    /// until herald published them all (`total` since it started).
    async fn publish(&self, herald: &Herald, user: &str, label: &str, count: usize, total: f64) -> Vec<Value> {
        match self {
            Source::Kafka(infra, scope) => {
                let events = produce(&Producer::new(infra), scope, user, label, count).await;
                wait_published(&[herald], total).await;
                events
            }
            Source::Http => {
                let events: Vec<Value> =
                    (0..count).map(|index| class_created(user, &format!("class-{label}-{index}"))).collect();
                for event in &events {
                    post(herald, event).await;
                }
                events
            }
        }
    }
}

/// A tab that processed nothing before its socket ended resumes from the `position` frame: first
/// from the position of the user's empty history, then from the newest id. Each time it gets
/// exactly what was published while it was away, `recovered: true`, then live ones.
async fn a_tab_that_processed_nothing_resumes_from_its_position(herald: &Herald, user: &str, source: Source<'_>) {
    let mut tab = connect(herald, user, None).await;
    let empty = tab.position().await;
    assert!(empty.starts_with("0-"), "a user with no history yet: {empty}");
    ping(&mut tab).await;
    tab.close().await;
    let away = source.publish(herald, user, "away", 3, 3.0).await;

    let mut tab = connect(herald, user, Some(&empty)).await;
    let (recovered, replayed) = resumed(&mut tab).await;
    assert!(recovered, "nothing was dropped after the empty history's position {empty}");
    assert_exactly("replayed after the empty history's position", &replayed, &away);
    tab.close().await;

    let mut tab = connect(herald, user, None).await;
    let newest = tab.position().await;
    assert_eq!(newest, replayed.last().unwrap()["id"].as_str().unwrap(), "the position is the newest id");
    ping(&mut tab).await;
    tab.close().await;
    let away = source.publish(herald, user, "away-again", 2, 5.0).await;

    let mut tab = connect(herald, user, Some(&newest)).await;
    let (recovered, replayed) = resumed(&mut tab).await;
    assert!(recovered, "the newest id {newest} is kept");
    assert_exactly("replayed after the newest id", &replayed, &away);
    let live = source.publish(herald, user, "live", 1, 6.0).await;
    assert_exactly("live after the replay", &[tab.notification().await], &live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_that_processed_nothing_resumes_from_its_position_in_redis() {
    let infra = infra();
    let scope = Scope::new("resume-position");
    let herald = Herald::production(&scope, &infra, &[]).await;
    a_tab_that_processed_nothing_resumes_from_its_position(
        &herald,
        &scope.user("teacher"),
        Source::Kafka(&infra, &scope),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_that_processed_nothing_resumes_from_its_position_in_memory() {
    let herald = Herald::embedded("resume-position-embedded", &[]).await;
    let user = Scope::new("resume-position-embedded").user("teacher");
    a_tab_that_processed_nothing_resumes_from_its_position(&herald, &user, Source::Http).await;
}

/// POSTs `event` to an embedded herald and expects it published.
async fn post(herald: &Herald, event: &Value) {
    let (status, response) = herald.post(serde_json::to_vec(event).unwrap()).await;
    assert_eq!((status, &response["delivery"]), (202, &json!("published")), "{response}");
}

/// Embedded mode keeps the history in memory, with the same protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_mode_resumes_too() {
    let herald = Herald::embedded("resume-embedded", &[]).await;
    let teacher = Scope::new("resume-embedded").user("teacher");
    let mut tab = connect(&herald, &teacher, None).await;
    ping(&mut tab).await;
    post(&herald, &class_created(&teacher, "class-seen")).await;
    let last = tab.notification().await;
    tab.close().await;
    let missed: Vec<Value> = (0..5).map(|index| class_created(&teacher, &format!("class-missed-{index}"))).collect();
    for event in &missed {
        post(&herald, event).await;
    }
    let mut tab = connect(&herald, &teacher, Some(last["id"].as_str().unwrap())).await;
    let (recovered, replayed) = resumed(&mut tab).await;
    assert!(recovered);
    assert_exactly("replayed in embedded mode", &replayed, &missed);
    let live = class_created(&teacher, "class-live");
    post(&herald, &live).await;
    let message = tab.notification().await;
    assert_exactly("live", std::slice::from_ref(&message), &[live]);
    // No `since`: the position (the newest id), then live only, no resumed frame.
    let mut positioned = connect(&herald, &teacher, None).await;
    assert_eq!(positioned.position().await, message["id"].as_str().unwrap());
    ping(&mut positioned).await;
    // Neither `since` nor `position`: live only, nothing before the pong.
    let query = format!("?token={}", token(&teacher));
    let mut plain = Client::connect(herald.ws_url(&query)).await.unwrap();
    plain.send_text(r#"{"type":"ping"}"#).await;
    match plain.receive_any().await {
        Received::Text(value) => assert_eq!(value, json!({ "type": "pong" }), "no position frame unasked"),
        Received::Closed(code, reason) => panic!("closed with {code} {reason}"),
    }
}

/// A burst beyond the send queue closes the socket with 4002; resuming from the last id processed
/// gets the rest: every notification exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_closed_with_4002_resumes_with_nothing_missing() {
    let herald = Herald::embedded("resume-slow", &["--send-queue", "1", "--history-size", "200"]).await;
    let scope = Scope::new("resume-slow");
    let teacher = scope.user("teacher");
    let batch = scope.batch("burst");
    let mut tab = connect(&herald, &teacher, None).await;
    ping(&mut tab).await;
    let anchor = class_created(&teacher, "class-anchor");
    post(&herald, &anchor).await;
    let mut received = vec![tab.notification().await];
    let mut expected = vec![anchor];

    expected.extend(park_files(&herald, &batch, 100).await);
    // Learning the owner releases the parked ones, then publishes this one.
    let owner = envelope("batch_file_added", "basic", |value| {
        value["data"]["batch_id"] = json!(batch);
        value["data"]["user_id"] = json!(teacher);
        value["data"]["file_upload_id"] = json!("file-owner");
    });
    post(&herald, &owner).await;
    expected.push(owner);

    let (code, reason) = loop {
        match tab.receive().await {
            Received::Text(message) => received.push(message),
            Received::Closed(code, reason) => break (code, reason),
        }
    };
    assert_eq!(code, 4002, "{reason}");
    let reason: Value = serde_json::from_str(&reason).unwrap();
    assert_eq!(reason["error_code"], "SLOW_CONSUMER");
    assert!(received.len() < expected.len(), "the queue overflowed");

    let since = received.last().unwrap()["id"].as_str().unwrap().to_owned();
    let mut tab = connect(&herald, &teacher, Some(&since)).await;
    let (recovered, replayed) = resumed(&mut tab).await;
    assert!(recovered);
    received.extend(replayed);
    assert_exactly("before the close and after the resume", &received, &expected);
}

/// A deploy: the tab's instance drains on SIGTERM (1012 with `retry_after_ms`) while events keep
/// coming; the other instance of the group consumes them; the tab reconnects there with the last
/// id it processed and ends up with every event exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_drained_by_a_deploy_resumes_on_the_other_instance_with_nothing_missing() {
    let infra = infra();
    let scope = Scope::new("resume-drain");
    let mut draining = Herald::production(&scope, &infra, &["--drain-seconds", "1"]).await;
    let staying = Herald::production(&scope, &infra, &[]).await;
    let producer = Producer::new(&infra);
    let teacher = scope.user("teacher");
    let mut tab = connect(&draining, &teacher, None).await;
    ping(&mut tab).await;
    let seen = produce(&producer, &scope, &teacher, "seen", 1).await;
    let mut received = vec![tab.notification().await];
    assert_exactly("live before the deploy", &received, &seen);

    draining.signal_terminate();
    let sent = produce(&producer, &scope, &teacher, "during-deploy", 20).await;
    let reason = loop {
        match tab.receive().await {
            Received::Text(message) => received.push(message),
            Received::Closed(code, reason) => {
                assert_eq!(code, 1012, "{reason}");
                break reason;
            }
        }
    };
    let retry_after = serde_json::from_str::<Value>(&reason).unwrap()["retry_after_ms"].as_u64();
    assert!(retry_after.is_some(), "the drain says when to come back: {reason}");
    let status = draining.exited().await;
    assert!(status.success(), "the drained instance exits cleanly: {status}");

    let since = received.last().unwrap()["id"].as_str().unwrap().to_owned();
    let mut tab = connect(&staying, &teacher, Some(&since)).await;
    let (recovered, replayed) = resumed(&mut tab).await;
    assert!(recovered, "since {since} is kept");
    received.extend(replayed);
    while received.len() < 1 + sent.len() {
        received.push(tab.notification().await);
    }
    let expected: Vec<Value> = seen.into_iter().chain(sent).collect();
    assert_exactly("every event across the deploy", &received, &expected);
}
