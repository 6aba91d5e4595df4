//! The test harness: real processes, unique names, waits with deadlines (never sleeps as
//! synchronisation).
//!
//! Every test takes a [`Scope`], which names its own topics, consumer group, Redis key prefix,
//! dead-letter topic and users, so tests run in parallel against one broker and one Redis without
//! seeing each other.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The HS256 secret every test herald is started with.
pub(crate) const SECRET: &str = "herald-test-secret";

/// How long any single wait may take before the test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// Where the test infrastructure runs.
pub(crate) struct Infra {
    pub kafka: String,
    /// One Redis URL, or (when `redis_cluster`) the comma-separated URLs of a Redis Cluster.
    pub redis: String,
    /// herald is started with `--redis-cluster`.
    pub redis_cluster: bool,
}

/// The Kafka broker and Redis started by `scripts/test.sh` (`scripts/infra/up.sh`).
pub(crate) fn infra() -> Infra {
    let get = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run the suite with `bash scripts/test.sh`, which starts Kafka and Redis")
        })
    };
    Infra { kafka: get("HERALD_TEST_KAFKA"), redis: get("HERALD_TEST_REDIS"), redis_cluster: false }
}

/// Kafka and the 3-master Redis Cluster started by `scripts/test.sh`
/// (`scripts/infra/redis-cluster.sh`).
pub(crate) fn cluster_infra() -> Infra {
    let redis = std::env::var("HERALD_TEST_REDIS_CLUSTER").unwrap_or_else(|_| {
        panic!(
            "HERALD_TEST_REDIS_CLUSTER is not set: run the suite with `bash scripts/test.sh`, or start a cluster \
             with `scripts/infra/redis-cluster.sh start` and export HERALD_TEST_REDIS_CLUSTER=$(scripts/infra/redis-cluster.sh urls)"
        )
    });
    Infra { redis, redis_cluster: true, ..infra() }
}

/// Unique names for one test.
#[derive(Clone)]
pub(crate) struct Scope {
    pub id: String,
}

impl Scope {
    pub(crate) fn new(test: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        Scope { id: format!("{test}-{}-{nanos:x}-{count}", std::process::id()) }
    }

    pub(crate) fn topic(&self, notification: &str) -> String {
        format!("t.{}.{notification}", self.id)
    }

    pub(crate) fn dead_letter_topic(&self) -> String {
        format!("t.{}.dead-letter", self.id)
    }

    pub(crate) fn user(&self, name: &str) -> String {
        format!("{name}-{}", self.id)
    }

    pub(crate) fn batch(&self, name: &str) -> String {
        format!("batch-{name}-{}", self.id)
    }

    pub(crate) fn group(&self) -> String {
        format!("g.{}", self.id)
    }

    pub(crate) fn redis_prefix(&self) -> String {
        format!("test:{}:", self.id)
    }

    /// Every event topic of this scope plus its dead-letter topic.
    pub(crate) fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = herald::EVENTS.iter().map(|event| self.topic(event.notification)).collect();
        topics.push(self.dead_letter_topic());
        topics
    }

    /// The flags that point a production herald at this scope's names.
    pub(crate) fn production_args(&self, infra: &Infra) -> Vec<String> {
        let mut args = vec![
            "--kafka-brokers".into(),
            infra.kafka.clone(),
            "--redis-url".into(),
            infra.redis.clone(),
            "--kafka-group".into(),
            self.group(),
            "--redis-prefix".into(),
            self.redis_prefix(),
            "--dead-letter-topic".into(),
            self.dead_letter_topic(),
            // A scope's topics are its own, so "earliest" means "what this test produced". Tests
            // produce as soon as herald is ready, which can be before the group has assigned its
            // partitions; with the default (latest) such records would be skipped. Tests of the
            // default remove this pair (see `consumer_start`).
            "--start-from".into(),
            "earliest".into(),
            // The test tokens carry no `aud` or `iss` (see `token`).
            "--allow-unscoped-tokens".into(),
        ];
        if infra.redis_cluster {
            args.push("--redis-cluster".into());
        }
        for event in herald::EVENTS {
            args.push("--topic".into());
            args.push(format!("{}={}", event.notification, self.topic(event.notification)));
        }
        args
    }
}

/// Creates topics with three partitions (idempotent).
pub(crate) async fn create_topics(infra: &Infra, topics: &[String]) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &infra.kafka).create().unwrap();
    let new: Vec<NewTopic<'_>> =
        topics.iter().map(|topic| NewTopic::new(topic, 3, TopicReplication::Fixed(1))).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    for result in admin.create_topics(&new, &options).await.unwrap() {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, error)) => panic!("cannot create topic {topic}: {error}"),
        }
    }
    wait_topics_visible(infra, topics).await;
}

/// A running herald process, killed when dropped.
pub(crate) struct Herald {
    child: tokio::process::Child,
    pub port: u16,
    pub log: PathBuf,
}

/// An unused local TCP port, below Linux's ephemeral range (32768-60999). Tests stop servers and
/// start them again on the same port while herald retries it; in that range the port can be taken
/// meanwhile as the source of an outgoing connection, even of one to that very port (a socket
/// connected to itself), and the server could not listen again.
pub(crate) fn free_port() -> u16 {
    const FIRST: u16 = 20_000;
    const COUNT: u16 = 6_000;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Each process starts elsewhere in the range, so suites running at once rarely try one port.
    let start = std::process::id() as u64;
    (0..COUNT)
        .map(|_| FIRST + ((start + NEXT.fetch_add(1, Ordering::Relaxed)) % u64::from(COUNT)) as u16)
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port in 20000-25999")
}

impl Herald {
    /// Starts herald with `args` (plus a listen address, and the test secret unless `args` give a
    /// public key) and waits until it is ready.
    pub(crate) async fn start(name: &str, args: &[String]) -> Herald {
        let port = free_port();
        let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("herald-logs");
        std::fs::create_dir_all(&logs).unwrap();
        let log = logs.join(format!("{name}-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let secret: &[&str] =
            if args.iter().any(|arg| arg == "--jwt-public-key") { &[] } else { &["--jwt-secret", SECRET] };
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--log-format", "text"])
            .args(secret)
            .args(args)
            .env("RUST_LOG", "info,rdkafka=warn")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("the herald binary starts");
        let herald = Herald { child, port, log };
        herald.wait_ready().await;
        herald
    }

    /// An embedded herald (no Kafka, no Redis).
    pub(crate) async fn embedded(name: &str, args: &[&str]) -> Herald {
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        Herald::start(name, &args).await
    }

    /// A production herald consuming `scope`'s topics; creates them first.
    pub(crate) async fn production(scope: &Scope, infra: &Infra, extra: &[&str]) -> Herald {
        create_topics(infra, &scope.topics()).await;
        let mut args = scope.production_args(infra);
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        Herald::start(&scope.id, &args).await
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn ws_url(&self, query: &str) -> String {
        format!("ws://127.0.0.1:{}/ws{query}", self.port)
    }

    /// The last lines of the log, for failure messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub(crate) async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(response) = client.get(self.url("/readyz")).send().await
                && response.status().is_success()
            {
                return;
            }
            assert!(started.elapsed() < DEADLINE, "herald did not become ready:\n{}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Connects a WebSocket for `user` with a valid token.
    pub(crate) async fn connect(&self, user: &str) -> Client {
        let url = self.ws_url(&format!("?token={}", token(user)));
        Client::connect(url).await.unwrap_or_else(|error| panic!("connect {user}: {error}\n{}", self.log_tail()))
    }

    /// POSTs an envelope to `/v1/events`.
    pub(crate) async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = reqwest::Client::new().post(self.url("/v1/events")).body(body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The value of one metric series (`name` with its labels, as in the exposition).
    pub(crate) async fn metric(&self, series: &str) -> f64 {
        let text = reqwest::get(self.url("/metrics")).await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .map_or(0.0, |value| value.trim().parse().unwrap())
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub(crate) async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("still running").to_string();
        let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        tokio::time::timeout(DEADLINE, self.child.wait()).await.expect("herald exits after SIGTERM").unwrap()
    }

    /// Waits (up to [`DEADLINE`]) for the process to exit by itself.
    pub(crate) async fn exited(&mut self) -> std::process::ExitStatus {
        match tokio::time::timeout(DEADLINE, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("herald did not exit before the deadline:\n{}", self.log_tail()),
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub(crate) async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }
}

/// An HS256 token for `user`, valid for an hour.
pub(crate) fn token(user: &str) -> String {
    token_with(SECRET, serde_json::json!({ "sub": user, "exp": now() + 3600, "iat": now() }))
}

/// A token with arbitrary claims, signed HS256 with `secret`.
pub(crate) fn token_with(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A WebSocket client. The `position` frame herald sends first on a socket opened with
/// `?position=1` is kept aside ([`Client::position`]), never returned by [`Client::receive`].
pub(crate) struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    position: Option<String>,
    /// Whether a text frame other than `position` came.
    other_text: bool,
}

/// What a client saw next.
#[derive(Debug)]
pub(crate) enum Received {
    Text(Value),
    Closed(u16, String),
}

impl Client {
    pub(crate) async fn connect(
        request: impl IntoClientRequest + Unpin,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let (socket, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Client { socket, position: None, other_text: false })
    }

    /// The `since` of the `position` frame, which must be the socket's first text frame.
    pub(crate) async fn position(&mut self) -> String {
        while self.position.is_none() {
            assert!(!self.other_text, "a text frame came before the position frame");
            if let Received::Closed(code, reason) = self.receive_any().await {
                panic!("closed with {code} {reason} while waiting for the position frame");
            }
        }
        self.position.clone().unwrap()
    }

    /// The next text frame other than `position`, or the close, skipping pings and pongs; fails
    /// after [`DEADLINE`].
    pub(crate) async fn receive(&mut self) -> Received {
        loop {
            let received = self.receive_any().await;
            if !matches!(&received, Received::Text(value) if value["type"] == "position") {
                return received;
            }
        }
    }

    /// The next text frame (recording a `position` frame) or close.
    pub(crate) async fn receive_any(&mut self) -> Received {
        let next = async {
            loop {
                match self.socket.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let value: Value = serde_json::from_str(&text).unwrap();
                        if value["type"] == "position" {
                            assert!(!self.other_text, "the position frame comes first: {value}");
                            assert!(self.position.is_none(), "one position frame: {value}");
                            self.position = Some(value["since"].as_str().expect("a position's since").to_owned());
                        } else {
                            self.other_text = true;
                        }
                        return Received::Text(value);
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return frame.map_or(Received::Closed(1005, String::new()), |frame| {
                            Received::Closed(u16::from(frame.code), frame.reason.to_string())
                        });
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Received::Closed(1006, error.to_string()),
                    None => return Received::Closed(1006, "stream ended".into()),
                }
            }
        };
        tokio::time::timeout(DEADLINE, next).await.expect("nothing arrived before the deadline")
    }

    /// The next notification; fails if the socket closes instead.
    pub(crate) async fn notification(&mut self) -> Value {
        match self.receive().await {
            Received::Text(value) => value,
            Received::Closed(code, reason) => panic!("closed with {code} {reason} while waiting for a notification"),
        }
    }

    /// The close code and reason; fails if a message arrives instead.
    pub(crate) async fn closed(&mut self) -> (u16, String) {
        match self.receive().await {
            Received::Closed(code, reason) => (code, reason),
            Received::Text(value) => panic!("expected a close, got {value}"),
        }
    }

    pub(crate) async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::Text(text.into())).await.unwrap();
    }

    pub(crate) async fn close(mut self) {
        let _ = self
            .socket
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }
}

/// Produces records to Kafka and waits for each acknowledgement.
pub(crate) struct Producer {
    producer: FutureProducer,
}

impl Producer {
    pub(crate) fn new(infra: &Infra) -> Producer {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &infra.kafka)
            .set("linger.ms", "0")
            .set("message.max.bytes", "2000000")
            .create()
            .unwrap();
        Producer { producer }
    }

    pub(crate) async fn send(&self, topic: &str, key: Option<&str>, value: Option<&[u8]>) {
        self.send_to(topic, None, key, value).await;
    }

    /// Produces an envelope to the topic of its event in `scope`, keyed like real producers (by
    /// batch or user id when the payload has one).
    pub(crate) async fn send_envelope(&self, scope: &Scope, notification: &str, envelope: &Value) {
        let bytes = serde_json::to_vec(envelope).unwrap();
        self.send(&scope.topic(notification), envelope_key(envelope).as_deref(), Some(&bytes)).await;
    }
}

/// A fixture envelope (`tests/fixtures/envelopes/{notification}/{case}.compact.json`) with a fresh
/// `event_id`, changed by `edit`.
pub(crate) fn envelope(notification: &str, case: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let path = fixtures().join(notification).join(format!("{case}.compact.json"));
    let mut value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    value["event_id"] = Value::String(fresh_uuid());
    edit(&mut value);
    value
}

/// Posts `count` files provisioned for `batch`, whose owner herald does not know yet, to an
/// embedded herald; asserts each is parked and returns their envelopes in order.
pub(crate) async fn park_files(herald: &Herald, batch: &str, count: usize) -> Vec<Value> {
    let mut parked = Vec::with_capacity(count);
    for file in 0..count {
        let provisioned = envelope("essay_content_provisioned", "basic", |value| {
            value["data"]["entity_id"] = Value::from(batch);
            value["data"]["file_upload_id"] = Value::from(format!("file-{file}"));
        });
        let (status, response) = herald.post(serde_json::to_vec(&provisioned).unwrap()).await;
        assert_eq!((status, response["delivery"].as_str()), (202, Some("parked")), "{response}");
        parked.push(provisioned);
    }
    parked
}

/// The envelope fixtures: `tests/fixtures/envelopes/` of the workspace.
pub(crate) fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/envelopes")
}

/// A class_created envelope for `user` with its own class id: the event most tests send.
pub(crate) fn class_created(user: &str, class_id: &str) -> Value {
    envelope("class_created", "basic", |value| {
        value["data"]["user_id"] = Value::String(user.to_owned());
        value["data"]["class_id"] = Value::String(class_id.to_owned());
    })
}

/// A random-enough UUID (version 4 layout) for event ids.
pub(crate) fn fresh_uuid() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mixed = nanos ^ (count.rotate_left(32)) ^ u64::from(std::process::id());
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (mixed >> 32) as u32,
        (mixed >> 16) as u16,
        (count & 0xfff) as u16,
        (nanos & 0xfff) as u16,
        (nanos ^ count) & 0xffff_ffff_ffff
    )
}

/// Waits until `check` holds, polling, failing after [`DEADLINE`] with `what`.
pub(crate) async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < DEADLINE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// Helpers for the Kafka-flow and resilience tests. Everything below only adds to the harness above.

/// Where a produced record landed, from the broker's acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Landed {
    pub partition: i32,
    pub offset: i64,
}

impl Producer {
    /// Produces one record, to `partition` when given (else partitioned by key), waits for the
    /// acknowledgement and says where it landed.
    pub(crate) async fn send_to(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&str>,
        value: Option<&[u8]>,
    ) -> Landed {
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        let delivery = self.producer.send(record, Duration::from_secs(10)).await.map_err(|(error, _)| error).unwrap();
        Landed { partition: delivery.partition, offset: delivery.offset }
    }

    /// Produces an envelope to `topic` with an explicit key (so it shares a partition with other
    /// records of that key) and says where it landed.
    pub(crate) async fn send_keyed(&self, topic: &str, key: &str, envelope: &Value) -> Landed {
        self.send_to(topic, None, Some(key), Some(&serde_json::to_vec(envelope).unwrap())).await
    }
}

/// The record key [`Producer::send_envelope`] gives an envelope.
pub(crate) fn envelope_key(envelope: &Value) -> Option<String> {
    ["batch_id", "entity_id", "parent_id", "user_id", "created_by_user_id"]
        .iter()
        .find_map(|field| envelope["data"][field].as_str())
        .map(str::to_owned)
}

/// How many connections are subscribed to `user`'s channel on the Redis at `redis_url` (`PUBSUB
/// NUMSUB ws:{user}`). Each herald instance holds one subscription per user with sockets on it.
/// A comma-separated `redis_url` names a Redis Cluster, as herald's `--redis-url` does with
/// `--redis-cluster`: there the channel is the sharded `ws:{u<shard>}:{user}`, counted with `PUBSUB
/// SHARDNUMSUB` on every node (only the node owning its slot has subscribers).
pub(crate) async fn subscribers(redis_url: &str, user: &str) -> Option<i64> {
    let urls: Vec<&str> = redis_url.split(',').collect();
    let (command, channel) =
        if urls.len() > 1 { ("SHARDNUMSUB", cluster_channel(user)) } else { ("NUMSUB", format!("ws:{user}")) };
    let mut total = 0;
    for url in urls {
        let client = redis::Client::open(url).ok()?;
        let mut connection = client.get_multiplexed_async_connection().await.ok()?;
        let (_, count): (String, i64) =
            redis::cmd("PUBSUB").arg(command).arg(&channel).query_async(&mut connection).await.ok()?;
        total += count;
    }
    Some(total)
}

/// `user`'s channel on a Redis Cluster: `ws:{u<shard>}:{user}`, the shard being 64-bit FNV-1a of
/// the user id modulo 1024 (herald's `backend::redis::keys`).
pub(crate) fn cluster_channel(user: &str) -> String {
    let hash = user
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    format!("ws:{{u{}}}:{user}", hash % 1024)
}

/// Waits until `at_least` connections listen on `ws:{user}`: a socket is registered and its
/// instance's subscriber has subscribed, so a notification published now reaches it.
pub(crate) async fn wait_subscribers(redis_url: &str, user: &str, at_least: i64) {
    wait_until(&format!("{at_least} subscribers listen on ws:{user}"), || async {
        subscribers(redis_url, user).await.is_some_and(|count| count >= at_least)
    })
    .await;
}

/// Asserts, without waiting, that `at_least` connections listen on `ws:{user}`: herald completes a
/// WebSocket handshake only once its instance listens to the user's channel, so a socket that is
/// open is already subscribed.
pub(crate) async fn assert_subscribed(redis_url: &str, user: &str, at_least: i64) {
    let count = subscribers(redis_url, user).await;
    assert!(
        count.is_some_and(|count| count >= at_least),
        "ws:{user} has {count:?} subscribers right after the handshake"
    );
}

/// Waits until a metric series of `herald` has `value`.
pub(crate) async fn wait_metric(herald: &Herald, series: &str, value: f64) {
    let mut last = f64::NAN;
    let started = Instant::now();
    loop {
        last = if let Ok(response) = reqwest::get(herald.url("/metrics")).await
            && let Ok(text) = response.text().await
        {
            text.lines()
                .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
                .map_or(0.0, |text| text.trim().parse().unwrap())
        } else {
            last
        };
        if last == value {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "timed out waiting until {series} is {value} (last seen {last}):\n{}",
            herald.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every message published on one Redis channel since [`ChannelObserver::subscribe`] returned,
/// parsed as JSON: what herald published, independent of any socket.
pub(crate) struct ChannelObserver {
    messages: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ChannelObserver {
    /// Subscribes to `channel` and returns once Redis has confirmed the subscription.
    pub(crate) async fn subscribe(redis_url: &str, channel: &str) -> ChannelObserver {
        let client = redis::Client::open(redis_url).unwrap();
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub.subscribe(channel).await.unwrap();
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&messages);
        let task = tokio::spawn(async move {
            let mut stream = pubsub.into_on_message();
            while let Some(message) = stream.next().await {
                let value: Value = serde_json::from_slice(message.get_payload_bytes()).unwrap();
                sink.lock().unwrap().push(value);
            }
        });
        ChannelObserver { messages, task }
    }

    /// What was published so far, in order.
    pub(crate) fn messages(&self) -> Vec<Value> {
        self.messages.lock().unwrap().clone()
    }
}

impl Drop for ChannelObserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads `count` records of `topic` from the beginning with a fresh consumer group.
pub(crate) async fn read_topic(infra: &Infra, topic: &str, count: usize) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::Message as _;
    use rdkafka::consumer::{Consumer as _, StreamConsumer};
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &infra.kafka)
        .set("group.id", format!("reader.{topic}.{}", fresh_uuid()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut records = Vec::new();
    let started = Instant::now();
    while records.len() < count {
        let remaining = DEADLINE.saturating_sub(started.elapsed());
        match tokio::time::timeout(remaining, consumer.recv()).await {
            Ok(Ok(message)) => records.push(message.detach()),
            Ok(Err(error)) => panic!("reading {topic}: {error}"),
            Err(_) => panic!("read {} of {count} records of {topic} before the deadline", records.len()),
        }
    }
    records.sort_by_key(|record| (record.partition(), record.offset()));
    records
}

/// Waits until consumer group `group` is stable with `members` members, so that every member
/// holds partitions before records are produced.
pub(crate) async fn wait_group_stable(infra: &Infra, group: &str, members: usize) {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &infra.kafka).create().unwrap();
    let client = std::sync::Arc::new(client);
    wait_until(&format!("group {group} is stable with {members} members"), || {
        let client = std::sync::Arc::clone(&client);
        let group = group.to_owned();
        async move {
            tokio::task::spawn_blocking(move || {
                client.fetch_group_list(Some(&group), Duration::from_secs(5)).is_ok_and(|list| {
                    list.groups().iter().any(|found| found.state() == "Stable" && found.members().len() == members)
                })
            })
            .await
            .unwrap()
        }
    })
    .await;
}

/// Waits until the broker's metadata lists every topic with leaders for all its partitions. A
/// created topic can be missing from metadata for a moment; a herald whose first metadata misses
/// its topics only finds them at its next metadata refresh.
pub(crate) async fn wait_topics_visible(infra: &Infra, topics: &[String]) {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &infra.kafka).create().unwrap();
    let client = std::sync::Arc::new(client);
    let topics = std::sync::Arc::new(topics.to_vec());
    wait_until("the created topics appear in the broker's metadata", || {
        let (client, topics) = (std::sync::Arc::clone(&client), std::sync::Arc::clone(&topics));
        async move {
            tokio::task::spawn_blocking(move || {
                let Ok(metadata) = client.fetch_metadata(None, Duration::from_secs(5)) else { return false };
                topics.iter().all(|name| {
                    metadata.topics().iter().any(|topic| {
                        topic.name() == name
                            && topic.error().is_none()
                            && !topic.partitions().is_empty()
                            && topic.partitions().iter().all(|partition| partition.leader() >= 0)
                    })
                })
            })
            .await
            .unwrap()
        }
    })
    .await;
}

impl Herald {
    /// Sends SIGTERM without waiting for the process to exit (see [`Herald::exited`]): for tests
    /// that watch what herald does while it drains.
    pub(crate) fn signal_terminate(&self) {
        let pid = self.child.id().expect("still running").to_string();
        let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
    }
}
