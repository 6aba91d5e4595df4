//! The Kafka consumer: at-least-once, pipelined, in order where order matters, nothing skipped
//! silently.
//!
//! - Partitions are handled at once, and within a partition up to `--consumer-in-flight` records
//!   (512 by default) are in flight. Order is kept where it matters: records of one partition that
//!   share an ordering key (see [`order::ordering_keys`]: the user the record notifies, and the
//!   batch it is about when it names a batch) are handled one after the other in offset order;
//!   records sharing no key run at once. So a user's notifications from one partition are
//!   published in record order, and parking, ownership and release see a batch's records in
//!   record order. Records that are dead-lettered share one key, so they reach the dead-letter
//!   topic in the order they were read. Records of different partitions (so of different topics)
//!   are not ordered with each other, as before; nor is a record for a batch with one that names
//!   the batch's owner without naming the batch (the owner is known only once it is handled).
//! - An offset is stored only when its record and every earlier record of the partition were
//!   published, parked, dead-lettered or skipped as too old (the contiguous prefix of handled
//!   records, [`offsets::OffsetTracker`]); librdkafka commits stored offsets periodically and on
//!   rebalance (`enable.auto.offset.store=false`), so a crash or a rebalance can redeliver a record
//!   but never lose one. Redelivered records are deduplicated downstream.
//! - Back-pressure: at most `--consumer-in-flight` records of a partition are handed to its worker;
//!   records read beyond that wait in order outside the window, and when 4 × that many (at least
//!   256) wait, the partition is paused (librdkafka stops fetching it; what it fetched ahead is
//!   fetched again) until they are all in the window. Nothing is buffered without bound.
//! - A transient fault (Redis or the broker unreachable) retries the same record with backoff; it
//!   never skips it and never ends the process. Records of its keys wait for it.
//! - Bad input goes to the dead-letter topic with the original key and bytes and headers naming
//!   the reason and the source topic, partition and offset; then its offset may be stored. A
//!   record too large for the broker's limit on the dead-letter topic is dead-lettered as a bounded
//!   prefix (64 KiB, or no bytes at all if the topic refuses even that) with `herald.truncated`
//!   naming its original length.
//! - When the dead-letter topic cannot be written, the consumer retries the record with backoff,
//!   the `dead_letter` readiness check fails with the error (until no record is failing), and
//!   `herald_dead_letter_failures_total` counts each failed attempt. After
//!   `--dead-letter-timeout-seconds` the consumer gives up and returns an error, which ends the
//!   process with a non-zero status (see `lib.rs`): the record is never skipped.
//! - A new consumer group starts where `--start-from` says (latest by default), and a record whose
//!   Kafka timestamp is older than `--max-event-age-seconds` is not delivered: it is counted in
//!   `herald_events_too_old_total`, logged, and its offset stored.
//! - Shutdown stops reading, lets records in the middle of a Redis call finish, interrupts retries
//!   and records waiting for their turn (their offsets are not stored, so they are redelivered),
//!   then commits.
//! - Rebalance: when a partition is revoked, its records still in flight are abandoned (retries
//!   and waits stop) and can no longer store an offset (the revoke takes the partition's offset
//!   lock before librdkafka commits): the next owner starts from the last stored prefix and
//!   handles the rest again, deduplicated downstream. A partition assigned again starts afresh.

mod offsets;
mod order;
mod producer;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use herald::EventEnvelope;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message, Statistics, TopicPartitionList};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::offsets::OffsetTracker;
use self::order::{KeyedOrder, Turn};
use self::producer::DeadLetterProducer;
use crate::backend::{Unavailable, now_unix_ms};
use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, ProcessError};

/// The longest `herald.error` header, in bytes: enough to say what was wrong, bounded whatever
/// the producer wrote (the text quotes producer fields such as `event_type`).
pub(crate) const MAX_ERROR_HEADER_BYTES: usize = 1024;

/// How many bytes of a record are kept when the whole record is over the broker's limit for the
/// dead-letter topic (far below any broker's limit, and enough to recognise the record).
pub(crate) const TRUNCATED_PREFIX_BYTES: usize = 64 * 1024;

/// Room for the dead-letter headers and Kafka's framing on top of the largest record herald reads.
const DEAD_LETTER_HEADROOM_BYTES: usize = 64 * 1024;

/// The readiness check that fails while the dead-letter topic cannot be written.
pub(crate) const DEAD_LETTER_CHECK: &str = "dead_letter";

/// The readiness check that fails while the consumer loop is not running.
pub(crate) const CONSUMER_CHECK: &str = "consumer";

/// The consumer's librdkafka callbacks: consumer lag from the statistics, and revoking
/// partitions before librdkafka commits their offsets.
pub(crate) struct Callbacks {
    metrics: Metrics,
    partitions: Arc<Partitions>,
}

impl ClientContext for Callbacks {
    fn stats(&self, statistics: Statistics) {
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|topic| topic.partitions.values())
            .filter(|partition| partition.partition >= 0)
            .map(|partition| partition.consumer_lag.max(0))
            .sum();
        self.metrics.consumer_lag.set(lag);
    }
}

impl ConsumerContext for Callbacks {
    /// Runs inside the consumer's poll, before librdkafka unassigns the partitions and commits
    /// what was stored for them: from here on, their records in flight store nothing.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            for element in revoked.elements() {
                if let Some(partition) = self.partitions.remove(element.topic(), element.partition()) {
                    partition.revoke(consumer);
                }
            }
        }
    }
}

/// The partitions this instance handles records of, by topic and partition number. The consumer
/// loop adds one when its first record arrives; a revoke removes it.
#[derive(Default)]
struct Partitions {
    by_name: Mutex<HashMap<(String, i32), Arc<Partition>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change under these locks is a single step, so a panic elsewhere leaves them consistent.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Partitions {
    fn insert(&self, partition: Arc<Partition>) {
        lock(&self.by_name).insert((partition.topic.clone(), partition.number), partition);
    }

    fn remove(&self, topic: &str, number: i32) -> Option<Arc<Partition>> {
        lock(&self.by_name).remove(&(topic.to_owned(), number))
    }
}

/// One assigned partition, from its first record to its revoke (a partition assigned again is a
/// new `Partition`).
struct Partition {
    topic: String,
    number: i32,
    /// The tracker of handled offsets, and whether the partition is still this instance's. A
    /// record stores its offset while holding this lock, and a revoke takes it to clear `owned`,
    /// so no store can follow the revoke.
    offsets: Mutex<Offsets>,
    /// Cancelled when the partition is revoked or the consumer stops: retries and waits for a
    /// turn end, and the records they belong to are not stored.
    abandoned: CancellationToken,
    /// One permit per record received and not yet handled (`--consumer-in-flight`).
    window: Arc<Semaphore>,
    /// Whether the consumer paused fetching the partition because its window is full.
    paused: AtomicBool,
}

struct Offsets {
    tracker: OffsetTracker,
    owned: bool,
}

impl Partition {
    fn new(topic: &str, number: i32, in_flight: usize, stop: &CancellationToken) -> Arc<Self> {
        Arc::new(Partition {
            topic: topic.to_owned(),
            number,
            offsets: Mutex::new(Offsets { tracker: OffsetTracker::default(), owned: true }),
            abandoned: stop.child_token(),
            window: Arc::new(Semaphore::new(in_flight)),
            paused: AtomicBool::new(false),
        })
    }

    fn list(&self) -> TopicPartitionList {
        let mut list = TopicPartitionList::with_capacity(1);
        list.add_partition(&self.topic, self.number);
        list
    }

    /// The partition is no longer this instance's: nothing of it is stored any more, its records
    /// in flight are abandoned, and a pause is lifted (librdkafka keeps a partition's pause across
    /// assignments, and whoever gets it next must read it).
    fn revoke<C: Consumer<X>, X: ConsumerContext>(&self, consumer: &C) {
        lock(&self.offsets).owned = false;
        self.abandoned.cancel();
        if self.paused.swap(false, Ordering::SeqCst)
            && let Err(error) = consumer.resume(&self.list())
        {
            tracing::warn!(%error, topic = %self.topic, partition = self.number, "cannot resume a revoked partition");
        }
        tracing::info!(topic = %self.topic, partition = self.number, "partition revoked; its records in flight are left to the next owner");
    }

    /// Notes that the record at `offset` arrived, in offset order.
    fn begin(&self, offset: i64) {
        if let Err(error) = lock(&self.offsets).tracker.begin(offset) {
            // librdkafka hands a partition's records over in offset order; if it ever did not,
            // the record is handled but its offset never stored (redelivered later, deduplicated).
            tracing::warn!(topic = %self.topic, partition = self.number, offset = error.offset, newest = error.newest, "record out of offset order; its offset will not be stored");
        }
    }

    /// The record at `offset` is handled: stores the partition's handled prefix if it grew and
    /// the partition is still this instance's.
    fn complete<C: Consumer<X>, X: ConsumerContext>(&self, consumer: &C, offset: i64) {
        let mut offsets = lock(&self.offsets);
        if !offsets.owned {
            return;
        }
        if let Some(last) = offsets.tracker.complete(offset)
            // librdkafka stores `last + 1`, the next record to read.
            && let Err(error) = consumer.store_offset(&self.topic, self.number, last)
        {
            tracing::warn!(%error, topic = %self.topic, partition = self.number, offset = last, "cannot store offset; records may be redelivered");
        }
    }
}

pub(crate) struct Kafka {
    consumer: StreamConsumer<Callbacks>,
    producer: DeadLetterProducer,
    dead_letter_topic: String,
    max_record_bytes: usize,
    /// Records older than this (by Kafka timestamp) are skipped; `None` delivers any age.
    max_event_age: Option<Duration>,
    /// How long one record may wait for the dead-letter topic before the consumer gives up;
    /// `None` waits for ever.
    dead_letter_timeout: Option<Duration>,
    /// `--consumer-in-flight`: records of one partition received and not yet handled.
    in_flight: usize,
    /// Shared with the rebalance callback, which revokes partitions.
    partitions: Arc<Partitions>,
    /// Records currently failing to be dead-lettered: `dead_letter` is ready again only when
    /// none is.
    dead_letter_failing: AtomicUsize,
}

/// What a record's handling shares with every other record's.
struct Handling {
    pipeline: Arc<Pipeline>,
    metrics: Metrics,
    health: Health,
    /// Where a record that cannot be dead-lettered in time reports it, ending the consumer.
    fatal: mpsc::UnboundedSender<String>,
}

/// A record admitted to its partition's window; the permit is given back when it is handled or
/// abandoned.
struct Admitted {
    message: OwnedMessage,
    /// When the consumer loop read it.
    read_at: Instant,
    permit: OwnedSemaphorePermit,
    counted: InFlight,
}

/// Counts a record in `herald_consumer_records_in_flight` from its admission until it is dropped,
/// handled or abandoned.
struct InFlight(prometheus_client::metrics::gauge::Gauge<i64, std::sync::atomic::AtomicI64>);

impl InFlight {
    fn new(metrics: &Metrics) -> Self {
        metrics.consumer_in_flight.inc();
        InFlight(metrics.consumer_in_flight.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The consumer loop's side of one partition.
struct Feed {
    partition: Arc<Partition>,
    /// To the partition's worker, in offset order. Each record in it holds a window permit, so it
    /// holds at most `--consumer-in-flight` records.
    queue: mpsc::UnboundedSender<Admitted>,
    /// Records received while the window was full (librdkafka may hand over a few it fetched
    /// before the pause took effect), admitted first once the window has room.
    held: VecDeque<(OwnedMessage, Instant)>,
}

/// A record as its partition's worker found it, before it is handled.
enum Prepared {
    /// Older than `--max-event-age-seconds`: counted and skipped.
    TooOld { age_ms: u64 },
    /// Bad input: dead-letter it.
    Invalid(DeadLetter<'static>),
    /// The routed event, for the first attempt (a retry routes the bytes again).
    Routed(Box<EventEnvelope<herald::Event>>),
}

/// Why a record is dead-lettered, with the error text.
#[derive(Debug)]
pub(crate) struct DeadLetter<'a> {
    pub reason: &'a str,
    pub message: String,
}

/// Where a record came from, as the dead-letter headers name it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl<'a> Source<'a> {
    fn of(message: &'a OwnedMessage) -> Self {
        Source { topic: message.topic(), partition: message.partition(), offset: message.offset() }
    }
}

/// What is written to the dead-letter topic for one record.
#[derive(Debug)]
pub(crate) struct DeadLetterRecord<'a> {
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// `herald.reason`, `herald.error`, `herald.source.*` and, for a prefix, `herald.truncated`.
    pub headers: Vec<(&'static str, String)>,
}

/// The dead-letter record for a record from `source`: its key and bytes unchanged, or only the
/// first `keep_bytes` bytes when given (the whole record was over the broker's limit), with
/// headers that stay bounded and valid UTF-8 whatever the producer wrote.
pub(crate) fn dead_letter_record<'a>(
    source: Source<'_>,
    key: Option<&'a [u8]>,
    payload: Option<&'a [u8]>,
    dead_letter: &DeadLetter<'_>,
    keep_bytes: Option<usize>,
) -> DeadLetterRecord<'a> {
    let mut headers = vec![
        ("herald.reason", cut_at_char_boundary(dead_letter.reason, 64).to_owned()),
        ("herald.error", cut_at_char_boundary(&dead_letter.message, MAX_ERROR_HEADER_BYTES).to_owned()),
        // Kafka topic names are at most 249 ASCII characters; the cut only guards the bound.
        ("herald.source.topic", cut_at_char_boundary(source.topic, 255).to_owned()),
        ("herald.source.partition", source.partition.to_string()),
        ("herald.source.offset", source.offset.to_string()),
    ];
    let payload = match (payload, keep_bytes) {
        (Some(bytes), Some(keep)) if bytes.len() > keep => {
            // The bytes are the producer's, not text: a prefix is cut at any byte.
            headers.push(("herald.truncated", bytes.len().to_string()));
            Some(&bytes[..keep])
        }
        (payload, _) => payload,
    };
    DeadLetterRecord { key, payload, headers }
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a character boundary.
pub(crate) fn cut_at_char_boundary(text: &str, max_bytes: usize) -> &str {
    &text[..text.floor_char_boundary(max_bytes)]
}

/// How a record ended up handled.
enum Handled {
    /// Published, parked, dead-lettered or skipped: store its offset.
    Done,
    /// Shutdown or a revoke interrupted a retry: do not store the offset, so the record is
    /// redelivered.
    Interrupted,
}

/// Which librdkafka client a setting is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Consumer,
    Producer,
    Both,
}

/// librdkafka's consumer-only settings (marked `C` in its CONFIGURATION.md).
const CONSUMER_ONLY: &[&str] = &[
    "group.id",
    "group.instance.id",
    "group.protocol",
    "group.protocol.type",
    "group.remote.assignor",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "coordinator.query.interval.ms",
    "max.poll.interval.ms",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.wait.max.ms",
    "fetch.queue.backoff.ms",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
    "fetch.min.bytes",
    "fetch.error.backoff.ms",
    "isolation.level",
    "enable.partition.eof",
    "check.crcs",
    "consume.callback.max.messages",
];

/// librdkafka's producer-only settings (marked `P` in its CONFIGURATION.md).
const PRODUCER_ONLY: &[&str] = &[
    "transactional.id",
    "transaction.timeout.ms",
    "enable.idempotence",
    "enable.gapless.guarantee",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.ms",
    "linger.ms",
    "message.send.max.retries",
    "retries",
    "retry.backoff.ms",
    "retry.backoff.max.ms",
    "queue.buffering.backpressure.threshold",
    "compression.codec",
    "compression.type",
    "compression.level",
    "batch.num.messages",
    "batch.size",
    "delivery.report.only.error",
    "sticky.partitioning.linger.ms",
    "request.required.acks",
    "acks",
    "request.timeout.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "partitioner",
];

/// Which client a `--kafka-option` setting goes to: the one it is for, or both (connection,
/// security and the other settings every client has).
fn client_of(key: &str) -> Client {
    if CONSUMER_ONLY.contains(&key) {
        Client::Consumer
    } else if PRODUCER_ONLY.contains(&key) {
        Client::Producer
    } else {
        Client::Both
    }
}

/// Whether the dead-letter topic refused a record for its size (the producer's own check or the
/// broker's `max.message.bytes` for the topic).
fn too_large(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge)
    )
}

impl Kafka {
    pub(crate) fn connect(
        config: &Config,
        brokers: &str,
        metrics: Metrics,
    ) -> Result<Arc<Self>, rdkafka::error::KafkaError> {
        // Fetches keep librdkafka's defaults (`fetch.min.bytes` 1, `fetch.wait.max.ms` 500):
        // the broker answers as soon as one record is there, so a record is read within a
        // round trip of being written, and an idle consumer sends two fetches a second.
        // librdkafka names every assigned partition in each fetch (it has no incremental fetch
        // sessions), so a fetch costs the broker in proportion to the partitions, and under
        // heavy load fetches become frequent and small. Where one instance is assigned many
        // partitions at thousands of events a second on a small broker, asking for a batch
        // (`--kafka-consumer-option fetch.min.bytes=65536 --kafka-consumer-option
        // fetch.wait.max.ms=10`) trades up to 10 ms of latency for less broker and herald CPU
        // (docs/benchmarks.md, "The topics a server consumes").
        let mut consumer_config = ClientConfig::new();
        consumer_config
            .set("bootstrap.servers", brokers)
            .set("group.id", &config.kafka_group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", config.start_from.as_offset_reset())
            .set("statistics.interval.ms", "5000")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            // A subscribed topic created after start-up (producers often create topics on first
            // publish) is only noticed at the next metadata refresh: every 5 minutes by default.
            .set("topic.metadata.refresh.interval.ms", "10000");
        let mut producer_config = ClientConfig::new();
        // The producer must accept any record the consumer may hand it (up to --max-record-bytes,
        // plus headers); the broker's limit for the topic may still refuse it, which `dead_letter`
        // handles by writing a prefix. librdkafka's own ceiling is 1,000,000,000.
        let max_message_bytes =
            (config.max_record_bytes.saturating_add(DEAD_LETTER_HEADROOM_BYTES)).clamp(1_000_000, 1_000_000_000);
        producer_config
            .set("bootstrap.servers", brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.max.bytes", max_message_bytes.to_string())
            // A dead letter that cannot be written within this fails back to the retry loop, which
            // reports it (readiness, metric) instead of waiting inside librdkafka for 5 minutes.
            .set("message.timeout.ms", "10000")
            // A missing dead-letter topic is reported as such ("Unknown topic") rather than as a
            // timeout: librdkafka otherwise holds the record for 30 s waiting for the topic.
            .set("topic.metadata.propagation.max.ms", "5000");
        for (key, value) in &config.kafka_options {
            // A setting librdkafka knows for one client only would make the other log CONFWARN.
            match client_of(key) {
                Client::Consumer => consumer_config.set(key, value),
                Client::Producer => producer_config.set(key, value),
                Client::Both => {
                    consumer_config.set(key, value);
                    producer_config.set(key, value)
                }
            };
        }
        for (key, value) in &config.kafka_consumer_options {
            consumer_config.set(key, value);
        }
        for (key, value) in &config.kafka_producer_options {
            producer_config.set(key, value);
        }
        let partitions = Arc::new(Partitions::default());
        let consumer: StreamConsumer<Callbacks> =
            consumer_config.create_with_context(Callbacks { metrics, partitions: Arc::clone(&partitions) })?;
        let topics = config.topics();
        let topic_names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topic_names)?;
        tracing::info!(
            topics = ?topic_names,
            group = %config.kafka_group,
            start_from = config.start_from.as_offset_reset(),
            max_event_age_seconds = config.max_event_age_seconds,
            "subscribed"
        );
        Ok(Arc::new(Kafka {
            consumer,
            producer: DeadLetterProducer::create(&producer_config)?,
            dead_letter_topic: config.dead_letter_topic.clone(),
            max_record_bytes: config.max_record_bytes,
            max_event_age: (config.max_event_age_seconds > 0)
                .then(|| Duration::from_secs(config.max_event_age_seconds)),
            dead_letter_timeout: (config.dead_letter_timeout_seconds > 0)
                .then(|| Duration::from_secs(config.dead_letter_timeout_seconds)),
            in_flight: config.consumer_in_flight.max(1),
            partitions,
            dead_letter_failing: AtomicUsize::new(0),
        }))
    }

    /// Whether the broker answers a metadata request.
    pub(crate) async fn ready(self: &Arc<Self>) -> Result<(), String> {
        let kafka = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            kafka.consumer.fetch_metadata(None, Duration::from_secs(2)).map(drop).map_err(|error| error.to_string())
        })
        .await
        .map_err(|error| error.to_string())?
    }

    /// Consumes until `shutdown`, then commits what was handled. Returns an error only when it
    /// gives up on a record it could not dead-letter: the caller ends the process, so an
    /// orchestrator restarts it and the record is handled again, never skipped.
    ///
    /// This loop only reads records and hands each to its partition's worker
    /// ([`Kafka::work`]), pausing a partition whose window is full; the worker routes records in
    /// offset order and runs them, many at once ([`Kafka::run_record`]).
    pub(crate) async fn run(
        self: Arc<Self>,
        pipeline: Arc<Pipeline>,
        metrics: Metrics,
        health: Health,
        shutdown: CancellationToken,
    ) -> Result<(), String> {
        health.pass(CONSUMER_CHECK);
        health.pass(DEAD_LETTER_CHECK);
        // Cancelled when this loop ends for any reason: every partition's work is abandoned.
        let stop = shutdown.child_token();
        let (fatal, mut fatal_errors) = mpsc::unbounded_channel();
        let handling = Arc::new(Handling { pipeline, metrics, health: health.clone(), fatal });
        let mut feeds: HashMap<(String, i32), Feed> = HashMap::new();
        // One task per paused partition, ending when its window has room again.
        let mut room: JoinSet<Arc<Partition>> = JoinSet::new();
        let mut error_backoff = Duration::from_millis(100);
        let mut outcome = Ok(());
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => break,
                Some(error) = fatal_errors.recv() => {
                    outcome = Err(error);
                    break;
                }
                Some(Ok(partition)) = room.join_next(), if !room.is_empty() => {
                    self.refill(&mut feeds, &mut room, &partition, &handling.metrics);
                    continue;
                }
                message = self.consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => {
                    error_backoff = Duration::from_millis(100);
                    message.detach()
                }
                Err(KafkaError::MessageConsumption(
                    code @ (RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic),
                )) => {
                    // A subscribed topic does not exist (yet). librdkafka reports this once per
                    // topic, queued with the records of the other topics, and keeps consuming
                    // those: pausing here would stall them (13 missing topics held consumption
                    // back for over 40 s with the doubling backoff below).
                    tracing::warn!(error = %code, "a subscribed topic is not available; consuming the others");
                    continue;
                }
                Err(error) => {
                    // Broker gone, rebalance in progress: librdkafka recovers
                    // by itself; wait a little so an outage does not spin.
                    tracing::warn!(%error, "kafka consumer error");
                    if !crate::pause(&shutdown, &mut error_backoff).await {
                        break;
                    }
                    continue;
                }
            };
            self.admit(message, Instant::now(), &mut feeds, &mut room, &stop, &handling);
        }
        health.fail(CONSUMER_CHECK, "the consumer has stopped");
        // Retries and waits for a turn end; records in the middle of a Redis call finish and
        // store their offsets. Each record holds a permit of its partition's window until then.
        stop.cancel();
        room.abort_all();
        let windows: Vec<Arc<Semaphore>> = feeds.into_values().map(|feed| Arc::clone(&feed.partition.window)).collect();
        let whole_window = u32::try_from(self.in_flight).unwrap_or(u32::MAX);
        for window in windows {
            // The semaphore is never closed.
            let _all_handled_or_abandoned = window.acquire_many(whole_window).await;
        }
        let kafka = Arc::clone(&self);
        let committed =
            tokio::task::spawn_blocking(move || kafka.consumer.commit_consumer_state(CommitMode::Sync)).await;
        match committed {
            Ok(Ok(())) => tracing::info!("offsets committed"),
            // Nothing stored since the last commit is reported as an error by librdkafka.
            Ok(Err(error)) => tracing::info!(%error, "final commit"),
            Err(error) => tracing::warn!(%error, "final commit did not run"),
        }
        outcome
    }

    /// Hands `message` to its partition's worker if the partition's window has room; otherwise
    /// holds it (in order) until the window has room, and pauses the partition while it holds
    /// [`Kafka::hold_limit`] records.
    fn admit(
        self: &Arc<Self>,
        message: OwnedMessage,
        read_at: Instant,
        feeds: &mut HashMap<(String, i32), Feed>,
        room: &mut JoinSet<Arc<Partition>>,
        stop: &CancellationToken,
        handling: &Arc<Handling>,
    ) {
        let name = (message.topic().to_owned(), message.partition());
        let feed = match feeds.get_mut(&name) {
            // A revoked partition's feed is replaced: the partition was assigned again.
            Some(feed) if !feed.partition.abandoned.is_cancelled() => feed,
            _ => {
                let partition = Partition::new(&name.0, name.1, self.in_flight, stop);
                self.partitions.insert(Arc::clone(&partition));
                let (queue, records) = mpsc::unbounded_channel();
                tokio::spawn(Arc::clone(self).work(Arc::clone(&partition), records, Arc::clone(handling)));
                feeds.entry(name).insert_entry(Feed { partition, queue, held: VecDeque::new() }).into_mut()
            }
        };
        if feed.held.is_empty()
            && let Ok(permit) = Arc::clone(&feed.partition.window).try_acquire_owned()
        {
            // The worker only stops when the partition is abandoned; then the record is dropped
            // with it and redelivered to the next owner.
            let counted = InFlight::new(&handling.metrics);
            let _ = feed.queue.send(Admitted { message, read_at, permit, counted });
            return;
        }
        feed.held.push_back((message, read_at));
        if feed.held.len() == 1 {
            // Whenever records are held, one task waits for room in the window.
            self.wait_for_room(room, &feed.partition);
        }
        if feed.held.len() >= self.hold_limit() && !feed.partition.paused.swap(true, Ordering::SeqCst) {
            // Pausing is not free (librdkafka drops what it fetched ahead and fetches it again on
            // resume), so it happens only once the held records reach their bound.
            handling.metrics.consumer_pauses.inc();
            if let Err(error) = self.consumer.pause(&feed.partition.list()) {
                tracing::warn!(%error, topic = %feed.partition.topic, partition = feed.partition.number, "cannot pause a full partition");
            }
        }
    }

    /// How many records of a partition may wait outside its full window before it is paused.
    fn hold_limit(&self) -> usize {
        self.in_flight.saturating_mul(4).max(256)
    }

    /// Waits in `room` until a quarter of `partition`'s window is free (or it is abandoned).
    fn wait_for_room(&self, room: &mut JoinSet<Arc<Partition>>, partition: &Arc<Partition>) {
        let quarter = u32::try_from((self.in_flight / 4).max(1)).unwrap_or(u32::MAX);
        let partition = Arc::clone(partition);
        room.spawn(async move {
            tokio::select! {
                // The permits go back at once: this only waits for them to be free.
                _ = Arc::clone(&partition.window).acquire_many_owned(quarter) => {}
                () = partition.abandoned.cancelled() => {}
            }
            partition
        });
    }

    /// `partition`'s window has room: admits its held records and, once none is left, resumes it
    /// if it was paused.
    fn refill(
        &self,
        feeds: &mut HashMap<(String, i32), Feed>,
        room: &mut JoinSet<Arc<Partition>>,
        partition: &Arc<Partition>,
        metrics: &Metrics,
    ) {
        let Some(feed) = feeds.get_mut(&(partition.topic.clone(), partition.number)) else { return };
        if !Arc::ptr_eq(&feed.partition, partition) || partition.abandoned.is_cancelled() {
            // Revoked meanwhile: the held records belong to the next owner (the revoke lifted
            // the pause).
            if Arc::ptr_eq(&feed.partition, partition) {
                feed.held.clear();
            }
            return;
        }
        while let Some((message, read_at)) = feed.held.pop_front() {
            match Arc::clone(&partition.window).try_acquire_owned() {
                Ok(permit) => {
                    let counted = InFlight::new(metrics);
                    let _ = feed.queue.send(Admitted { message, read_at, permit, counted });
                }
                Err(_) => {
                    feed.held.push_front((message, read_at));
                    self.wait_for_room(room, partition);
                    return;
                }
            }
        }
        if partition.paused.swap(false, Ordering::SeqCst)
            && let Err(error) = self.consumer.resume(&partition.list())
        {
            tracing::warn!(%error, topic = %partition.topic, partition = partition.number, "cannot resume a partition");
        }
    }

    /// One partition's worker: takes its records in offset order, routes each, and runs it
    /// ([`Kafka::run_record`]) once the records it must follow (same user or batch) are handled.
    /// Stops taking records when the partition is abandoned, and ends once those it started are
    /// done.
    ///
    /// The worker drives its records itself rather than spawning a task for each: a record's
    /// state is large, and a spawned task's memory is cache-aligned, which glibc's allocator
    /// serves slowly (a tenth of the process's CPU at 5,000 records a second).
    async fn work(
        self: Arc<Self>,
        partition: Arc<Partition>,
        mut records: mpsc::UnboundedReceiver<Admitted>,
        handling: Arc<Handling>,
    ) {
        let mut order = KeyedOrder::new(self.in_flight);
        let mut running = FuturesUnordered::new();
        loop {
            let admitted = tokio::select! {
                () = partition.abandoned.cancelled() => break,
                Some(()) = running.next(), if !running.is_empty() => continue,
                admitted = records.recv() => match admitted {
                    Some(admitted) => admitted,
                    None => break,
                },
            };
            partition.begin(admitted.message.offset());
            let (prepared, origin) = self.prepare(&admitted.message, &handling.metrics);
            let keys = match &prepared {
                Prepared::Routed(envelope) => order::ordering_keys(&envelope.data),
                Prepared::Invalid(_) => vec![order::DEAD_LETTER_KEY.to_owned()],
                Prepared::TooOld { .. } => Vec::new(),
            };
            let (waits, turn) = order.admit(keys);
            running.push(self.run_record(&partition, admitted, prepared, origin, (waits, turn), &handling));
        }
        // Records waiting for their turn see the abandonment and end; those in the middle of a
        // Redis call finish and store their offsets.
        while running.next().await.is_some() {}
    }

    /// Reads what the record is without waiting for anything: too old, bad input or an event;
    /// with its origin time (its Kafka timestamp, or now when it has none).
    fn prepare(&self, message: &OwnedMessage, metrics: &Metrics) -> (Prepared, u64) {
        let timestamp = message.timestamp().to_millis().and_then(|ms| u64::try_from(ms).ok());
        let now = now_unix_ms();
        if let Some(timestamp) = timestamp {
            metrics.kafka_to_read_seconds.observe(now.saturating_sub(timestamp) as f64 / 1000.0);
        }
        if let (Some(max_age), Some(timestamp)) = (self.max_event_age, timestamp) {
            let age_ms = now.saturating_sub(timestamp);
            if u128::from(age_ms) > max_age.as_millis() {
                return (Prepared::TooOld { age_ms }, now);
            }
        }
        let prepared = match message.payload() {
            None => Prepared::Invalid(DeadLetter { reason: "empty", message: "the record has no value".into() }),
            Some(bytes) if bytes.len() > self.max_record_bytes => Prepared::Invalid(DeadLetter {
                reason: "oversized",
                message: format!("{} bytes is over the limit of {}", bytes.len(), self.max_record_bytes),
            }),
            Some(bytes) => match herald::route(bytes) {
                Ok(envelope) => Prepared::Routed(Box::new(envelope)),
                Err(error) => Prepared::Invalid(DeadLetter { reason: error.reason(), message: error.to_string() }),
            },
        };
        (prepared, timestamp.unwrap_or(now))
    }

    /// One record's task: waits for its turn, handles it, and stores the partition's handled
    /// prefix. An interrupted record stores nothing and never lets the records after it run.
    async fn run_record(
        &self,
        partition: &Partition,
        admitted: Admitted,
        prepared: Prepared,
        origin_unix_ms: u64,
        (waits, turn): (Vec<Turn>, Turn),
        handling: &Handling,
    ) {
        let Admitted { message, read_at, permit, counted } = admitted;
        let record = async {
            for wait in waits {
                tokio::select! {
                    _ = wait.wait() => {}
                    // The record before it was interrupted or the partition revoked: this one
                    // is redelivered after it.
                    () = partition.abandoned.cancelled() => return,
                }
            }
            handling.metrics.consumer_wait_seconds.observe(read_at.elapsed().as_secs_f64());
            match self.handle(&message, prepared, origin_unix_ms, handling, &partition.abandoned).await {
                Ok(Handled::Done) => {
                    partition.complete(&self.consumer, message.offset());
                    // Set only now: a record is handled when it is, and nothing of it is left.
                    let _ = turn.set(());
                }
                // Shutdown or revoke in the middle of a retry: the offset is not stored, so the
                // record is redelivered to whoever consumes next.
                Ok(Handled::Interrupted) => {}
                Err(error) => {
                    let _ = handling.fatal.send(error);
                }
            }
        };
        // The block holds the record's message and turn: both are gone before its permit and its
        // in-flight count are released.
        record.await;
        drop((permit, counted));
    }

    /// Handles one record until it is published, parked, dead-lettered or skipped as too old.
    async fn handle(
        &self,
        message: &OwnedMessage,
        prepared: Prepared,
        origin_unix_ms: u64,
        handling: &Handling,
        stop: &CancellationToken,
    ) -> Result<Handled, String> {
        let Handling { pipeline, metrics, .. } = handling;
        let source = Source::of(message);
        // The routed path logs in the pipeline's `event` span, which names the record; the rare
        // paths log in a `record` span of their own.
        let record_span = || {
            tracing::info_span!("record", topic = source.topic, partition = source.partition, offset = source.offset)
        };
        let dead_letter = match prepared {
            Prepared::TooOld { age_ms } => {
                let _record = record_span().entered();
                metrics.too_old.inc();
                tracing::warn!(
                    age_seconds = age_ms / 1000,
                    max_event_age_seconds = self.max_event_age.map_or(0, |age| age.as_secs()),
                    "record older than --max-event-age-seconds; not delivered"
                );
                return Ok(Handled::Done);
            }
            Prepared::Invalid(dead_letter) => dead_letter,
            Prepared::Routed(envelope) => match pipeline.handle(envelope, origin_unix_ms, Some(source)).await {
                Ok(_) => return Ok(Handled::Done),
                Err(ProcessError::Invalid { reason, message }) => DeadLetter { reason, message },
                // Boxed, like the dead-letter path below: the retry's timers would otherwise be
                // carried by every record.
                Err(ProcessError::Transient(error)) => {
                    let retry = self.retry(message, error, origin_unix_ms, handling, stop);
                    match Box::pin(tracing::Instrument::instrument(retry, record_span())).await {
                        Ok(handled) => return Ok(handled),
                        Err(dead_letter) => dead_letter,
                    }
                }
            },
        };
        // Boxed: this rare path's state would otherwise be carried by every record.
        let written = self.dead_letter_until_written(message, &dead_letter, handling, stop);
        Box::pin(tracing::Instrument::instrument(written, record_span())).await
    }

    /// Handles `message` again after `error`, with a growing pause between attempts, until it is
    /// handled, turns out to be bad input (returned to be dead-lettered), or the process stops.
    async fn retry(
        &self,
        message: &OwnedMessage,
        mut error: Unavailable,
        origin_unix_ms: u64,
        handling: &Handling,
        stop: &CancellationToken,
    ) -> Result<Handled, DeadLetter<'static>> {
        let source = Source::of(message);
        let mut backoff = Duration::from_millis(100);
        loop {
            handling.metrics.retries.inc();
            tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "transient failure; retrying the same record");
            if !crate::pause(stop, &mut backoff).await {
                return Ok(Handled::Interrupted);
            }
            // Dispatch consumed the event: route the bytes again.
            match handling.pipeline.process(message.payload().unwrap_or_default(), origin_unix_ms, Some(source)).await {
                Ok(_) => return Ok(Handled::Done),
                Err(ProcessError::Invalid { reason, message }) => return Err(DeadLetter { reason, message }),
                Err(ProcessError::Transient(again)) => error = again,
            }
        }
    }

    /// Writes `message` to the dead-letter topic, retrying until it is written, the process
    /// stops, or `--dead-letter-timeout-seconds` gives up.
    async fn dead_letter_until_written(
        &self,
        message: &OwnedMessage,
        dead_letter: &DeadLetter<'_>,
        handling: &Handling,
        stop: &CancellationToken,
    ) -> Result<Handled, String> {
        let Handling { metrics, health, .. } = handling;
        let source = Source::of(message);
        let mut backoff = Duration::from_millis(100);
        let mut failing_since: Option<Instant> = None;
        let handled = loop {
            match self.dead_letter(source, message.key(), message.payload(), dead_letter).await {
                Ok(truncated) => {
                    if failing_since.is_some() && self.dead_letter_failing.fetch_sub(1, Ordering::SeqCst) == 1 {
                        health.pass(DEAD_LETTER_CHECK);
                        tracing::info!(topic = %self.dead_letter_topic, "the dead-letter topic is writable again");
                    }
                    metrics.dead_letter(dead_letter.reason);
                    tracing::warn!(
                        reason = dead_letter.reason,
                        error = %cut_at_char_boundary(&dead_letter.message, MAX_ERROR_HEADER_BYTES),
                        truncated,
                        "record dead-lettered"
                    );
                    return Ok(Handled::Done);
                }
                Err(error) => {
                    metrics.dead_letter_failures.inc();
                    if failing_since.is_none() {
                        self.dead_letter_failing.fetch_add(1, Ordering::SeqCst);
                    }
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    let waited = since.elapsed();
                    let cause = format!(
                        "cannot write to dead-letter topic {:?} for {} s: {error}",
                        self.dead_letter_topic,
                        waited.as_secs()
                    );
                    health.fail(DEAD_LETTER_CHECK, cause.clone());
                    if let Some(timeout) = self.dead_letter_timeout
                        && waited >= timeout
                    {
                        break Err(format!(
                            "{cause}; gave up after --dead-letter-timeout-seconds={} without skipping the record \
                             (fix the topic, its permissions or --dead-letter-topic; the record is handled again \
                             after the restart)",
                            timeout.as_secs()
                        ));
                    }
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "cannot write to the dead-letter topic; retrying");
                    if !crate::pause(stop, &mut backoff).await {
                        break Ok(Handled::Interrupted);
                    }
                }
            }
        };
        // Given up or interrupted while failing: the check stays failed (nothing proved the
        // topic writable), but this record no longer counts.
        self.dead_letter_failing.fetch_sub(1, Ordering::SeqCst);
        handled
    }

    /// Writes the record, unchanged, to the dead-letter topic and waits for the broker's ack; when
    /// it is refused for its size, writes a bounded prefix instead. Returns whether it was cut.
    async fn dead_letter(
        &self,
        source: Source<'_>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        dead_letter: &DeadLetter<'_>,
    ) -> Result<bool, KafkaError> {
        let whole = dead_letter_record(source, key, payload, dead_letter, None);
        match self.send(&whole).await {
            Ok(()) => Ok(false),
            Err(error) if too_large(&error) => {
                tracing::warn!(%error, bytes = payload.map_or(0, <[u8]>::len), "the dead-letter topic refused the whole record; writing a prefix");
                // A topic whose limit is below even the prefix still gets the headers, which name
                // the source record.
                let mut refused = error;
                for keep in [TRUNCATED_PREFIX_BYTES, 0] {
                    let prefix = dead_letter_record(source, key, payload, dead_letter, Some(keep));
                    match self.send(&prefix).await {
                        Ok(()) => return Ok(true),
                        Err(error) if too_large(&error) => refused = error,
                        Err(error) => return Err(error),
                    }
                }
                Err(refused)
            }
            Err(error) => Err(error),
        }
    }

    async fn send(&self, record: &DeadLetterRecord<'_>) -> Result<(), KafkaError> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (key, value) in &record.headers {
            headers = headers.insert(Header { key, value: Some(value.as_str()) });
        }
        self.producer.send(&self.dead_letter_topic, record.key, record.payload, headers).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use proptest::test_runner::{Config as ProptestConfig, TestRunner};
    use serde_json::Value;

    use super::*;
    use crate::backend::{Backend, MemoryBackend, Parking};
    use crate::hub::Hub;

    /// The most the five bounded headers (plus `herald.truncated`) can add up to.
    const MAX_HEADERS_BYTES: usize = 64 + MAX_ERROR_HEADER_BYTES + 255 + 11 + 20 + 20 + 128;

    fn source() -> Source<'static> {
        Source { topic: "huleedu.class.created.v1", partition: 2, offset: 41 }
    }

    fn headers(record: &DeadLetterRecord<'_>) -> BTreeMap<&'static str, String> {
        record.headers.iter().cloned().collect()
    }

    /// The checks every dead-letter record must pass, whatever the input.
    fn check_bounded(record: &DeadLetterRecord<'_>) {
        let total: usize = record.headers.iter().map(|(key, value)| key.len() + value.len()).sum();
        assert!(total <= MAX_HEADERS_BYTES, "headers of {total} bytes: {:?}", record.headers);
        for (key, value) in &record.headers {
            // The header goes to Kafka as bytes; a consumer reading it back must get UTF-8.
            assert!(std::str::from_utf8(value.as_bytes()).is_ok(), "{key}");
        }
        assert!(headers(record)["herald.error"].len() <= MAX_ERROR_HEADER_BYTES);
    }

    #[test]
    fn a_long_non_ascii_error_is_cut_at_a_character_boundary() {
        // Byte 1024 falls inside the 512th "é" of the quoted event_type: `String::truncate(1024)`
        // panicked here and took the consumer task with it.
        let event_type = "é".repeat(600);
        let message = format!("no event definition claims event_type {event_type:?}");
        let dead_letter = DeadLetter { reason: "unknown_event_type", message };
        let record = dead_letter_record(source(), Some(b"key"), Some(b"{}"), &dead_letter, None);
        check_bounded(&record);
        let error = &headers(&record)["herald.error"];
        assert!(error.len() > MAX_ERROR_HEADER_BYTES - 4 && error.ends_with('é'), "{error}");
    }

    #[test]
    fn kafka_options_go_to_the_client_they_are_for() {
        fn check(key: &str, expected: Client) {
            assert_eq!(client_of(key), expected, "{key}");
        }
        check("auto.offset.reset", Client::Consumer);
        check("fetch.max.bytes", Client::Consumer);
        check("compression.type", Client::Producer);
        check("linger.ms", Client::Producer);
        check("security.protocol", Client::Both);
        check("sasl.mechanisms", Client::Both);
        check("bootstrap.servers", Client::Both);
    }

    #[test]
    fn cuts_land_on_character_boundaries() {
        fn check(text: &str, max: usize, expected: &str) {
            assert_eq!(cut_at_char_boundary(text, max), expected, "{text:?} cut at {max}");
        }
        check("", 0, "");
        check("abc", 10, "abc");
        check("abc", 2, "ab");
        check("éé", 3, "é");
        check("éé", 4, "éé");
        check("😀x", 3, "");
        check("😀x", 4, "😀");
    }

    #[test]
    fn a_record_over_the_brokers_limit_becomes_a_prefix_naming_its_length() {
        let payload = vec![0xff_u8; 200_000];
        let dead_letter = DeadLetter { reason: "not_json", message: "not JSON: expected value".into() };
        let whole = dead_letter_record(source(), None, Some(&payload), &dead_letter, None);
        assert_eq!(whole.payload.map(<[u8]>::len), Some(200_000));
        assert!(!headers(&whole).contains_key("herald.truncated"));
        let prefix = dead_letter_record(source(), None, Some(&payload), &dead_letter, Some(TRUNCATED_PREFIX_BYTES));
        assert_eq!(prefix.payload, Some(&payload[..TRUNCATED_PREFIX_BYTES]));
        let headers = headers(&prefix);
        assert_eq!(headers["herald.truncated"], "200000");
        assert_eq!(headers["herald.source.topic"], "huleedu.class.created.v1");
        assert_eq!(headers["herald.source.partition"], "2");
        assert_eq!(headers["herald.source.offset"], "41");
        check_bounded(&prefix);
        // A record already under the prefix length is written whole, without the header.
        let small = dead_letter_record(source(), None, Some(b"x"), &dead_letter, Some(TRUNCATED_PREFIX_BYTES));
        assert!(!self::headers(&small).contains_key("herald.truncated"));
    }

    /// Any string, weighted towards long non-ASCII ones (the kind that broke the byte cut).
    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            proptest::collection::vec(any::<char>(), 0..900).prop_map(String::from_iter),
            (any::<char>(), 0..1200_usize).prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
        ]
    }

    /// Arbitrary JSON values, with arbitrary strings as keys and values.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any_text().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(any_text(), inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// The fixture envelopes (`tests/fixtures/envelopes/*/*.compact.json`): real producer shapes.
    fn fixture_envelopes() -> Vec<Value> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/envelopes");
        let mut envelopes = Vec::new();
        for event in std::fs::read_dir(&root).unwrap().flatten() {
            let Ok(files) = std::fs::read_dir(event.path()) else { continue };
            for file in files.flatten() {
                let path = file.path();
                if path.to_string_lossy().ends_with(".compact.json")
                    && let Ok(value) = serde_json::from_slice::<Value>(&std::fs::read(&path).unwrap())
                {
                    envelopes.push(value);
                }
            }
        }
        envelopes.sort_by_key(Value::to_string);
        assert!(envelopes.len() >= 13, "the fixture envelopes were not found under {}", root.display());
        envelopes
    }

    /// Replaces string leaves of `value` with `replacements`, in order, while they last: every
    /// field of an envelope (event_type, ids, timestamps, data fields) gets arbitrary text.
    fn replace_strings(value: &mut Value, replacements: &mut impl Iterator<Item = Option<String>>) {
        match value {
            Value::String(text) => {
                if let Some(Some(replacement)) = replacements.next() {
                    *text = replacement;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| replace_strings(item, replacements)),
            Value::Object(map) => map.values_mut().for_each(|item| replace_strings(item, replacements)),
            _ => {}
        }
    }

    /// Runs `bytes` through the service's real path (route → dispatch → the record handler over
    /// the embedded backend) and, when it is bad input, through dead-letter formatting.
    fn check_any_input(runtime: &tokio::runtime::Runtime, pipeline: &Pipeline, bytes: &[u8]) {
        let outcome = runtime.block_on(pipeline.process(bytes, 1_754_036_053_512, None));
        match outcome {
            Ok(_) => {}
            Err(ProcessError::Invalid { reason, message }) => {
                let dead_letter = DeadLetter { reason, message };
                let record = dead_letter_record(source(), Some(bytes), Some(bytes), &dead_letter, None);
                check_bounded(&record);
                assert_eq!(record.payload, Some(bytes), "the original bytes are dead-lettered");
                let prefix = dead_letter_record(source(), None, Some(bytes), &dead_letter, Some(16));
                check_bounded(&prefix);
                assert!(prefix.payload.is_some_and(|payload| payload.len() <= 16));
            }
            Err(ProcessError::Transient(error)) => panic!("the embedded backend is never unavailable: {error}"),
        }
    }

    fn embedded_pipeline() -> Arc<Pipeline> {
        let (metrics, _) = Metrics::new();
        let hub = Hub::new(5, 8, None, metrics.clone());
        let parking = Parking { ttl_seconds: 60, max_per_batch: 10, owner_ttl_seconds: 60 };
        let backend = Backend::Memory(Arc::new(MemoryBackend::new(
            hub,
            parking,
            crate::backend::HistoryBounds { size: 100, ttl_seconds: 86_400 },
            metrics.clone(),
        )));
        Pipeline::new(backend, metrics, None)
    }

    /// Bounded so that the three properties run in a few seconds in CI.
    fn runner() -> TestRunner {
        TestRunner::new(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })
    }

    #[test]
    fn no_input_bytes_panic_route_dispatch_or_dead_lettering() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let pipeline = embedded_pipeline();
        runner()
            .run(&proptest::collection::vec(any::<u8>(), 0..4096), |bytes| {
                check_any_input(&runtime, &pipeline, &bytes);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn no_json_document_panics_route_dispatch_or_dead_lettering() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let pipeline = embedded_pipeline();
        runner()
            .run(&any_json(), |value| {
                check_any_input(&runtime, &pipeline, value.to_string().as_bytes());
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn no_envelope_with_arbitrary_text_in_its_fields_panics_route_dispatch_or_dead_lettering() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let pipeline = embedded_pipeline();
        let envelopes = fixture_envelopes();
        let strategy = (
            0..envelopes.len(),
            proptest::collection::vec(proptest::option::weighted(0.3, any_text()), 0..40),
            proptest::option::of(any_text()),
            any::<bool>(),
        );
        runner()
            .run(&strategy, |(index, replacements, event_type, keep_known_type)| {
                let mut envelope = envelopes[index].clone();
                let original_type = envelope["event_type"].clone();
                replace_strings(&mut envelope, &mut replacements.into_iter());
                // Half the cases keep a known event_type so that the payload reaches its schema
                // and the generated handler; the others name any event_type at all.
                if keep_known_type {
                    envelope["event_type"] = original_type;
                } else if let Some(event_type) = event_type {
                    envelope["event_type"] = Value::String(event_type);
                }
                check_any_input(&runtime, &pipeline, envelope.to_string().as_bytes());
                Ok(())
            })
            .unwrap();
        // The case from the report, always run: a valid envelope whose event_type is "é" × 600.
        let mut envelope = envelopes[0].clone();
        envelope["event_type"] = Value::String("é".repeat(600));
        check_any_input(&runtime, &pipeline, envelope.to_string().as_bytes());
    }
}
