//! The Kafka consumer: at-least-once, in order, nothing skipped silently.
//!
//! - Records are handled one at a time in the order they arrive, so per-partition order is kept.
//! - An offset is stored only after its record was published, parked, dead-lettered or skipped as
//!   too old; librdkafka commits stored offsets periodically and on rebalance
//!   (`enable.auto.offset.store=false`), so a crash or a rebalance can redeliver a record but never
//!   lose one. Redelivered records are deduplicated downstream.
//! - A transient fault (Redis or the broker unreachable) retries the same record with backoff; it
//!   never skips it and never ends the process.
//! - Bad input goes to the dead-letter topic with the original key and bytes and headers naming
//!   the reason and the source topic, partition and offset; then the consumer moves on. A record
//!   too large for the broker's limit on the dead-letter topic is dead-lettered as a bounded prefix
//!   (64 KiB, or no bytes at all if the topic refuses even that) with `herald.truncated` naming its
//!   original length.
//! - When the dead-letter topic cannot be written, the consumer retries the same record with
//!   backoff, the `dead_letter` readiness check fails with the error, and
//!   `herald_dead_letter_failures_total` counts each failed attempt. After
//!   `--dead-letter-timeout-seconds` the consumer gives up and returns an error, which ends the
//!   process with a non-zero status (see `lib.rs`): the record is never skipped.
//! - A new consumer group starts where `--start-from` says (latest by default), and a record whose
//!   Kafka timestamp is older than `--max-event-age-seconds` is not delivered: it is counted in
//!   `herald_events_too_old_total`, logged, and its offset stored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message, Statistics};
use tokio_util::sync::CancellationToken;

use crate::backend::now_unix_ms;
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

/// Reports consumer lag from librdkafka's statistics.
pub(crate) struct LagContext {
    metrics: Metrics,
}

impl ClientContext for LagContext {
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

impl ConsumerContext for LagContext {}

pub(crate) struct Kafka {
    pub consumer: StreamConsumer<LagContext>,
    producer: FutureProducer,
    dead_letter_topic: String,
    max_record_bytes: usize,
    /// Records older than this (by Kafka timestamp) are skipped; `None` delivers any age.
    max_event_age: Option<Duration>,
    /// How long one record may wait for the dead-letter topic before the consumer gives up;
    /// `None` waits for ever.
    dead_letter_timeout: Option<Duration>,
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
    /// Shutdown interrupted a retry: do not store the offset, so the record is redelivered.
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
        let consumer: StreamConsumer<LagContext> = consumer_config.create_with_context(LagContext { metrics })?;
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
            producer: producer_config.create()?,
            dead_letter_topic: config.dead_letter_topic.clone(),
            max_record_bytes: config.max_record_bytes,
            max_event_age: (config.max_event_age_seconds > 0)
                .then(|| Duration::from_secs(config.max_event_age_seconds)),
            dead_letter_timeout: (config.dead_letter_timeout_seconds > 0)
                .then(|| Duration::from_secs(config.dead_letter_timeout_seconds)),
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
    pub(crate) async fn run(
        self: Arc<Self>,
        pipeline: Arc<Pipeline>,
        metrics: Metrics,
        health: Health,
        shutdown: CancellationToken,
    ) -> Result<(), String> {
        health.pass(CONSUMER_CHECK);
        health.pass(DEAD_LETTER_CHECK);
        let mut error_backoff = Duration::from_millis(100);
        let mut outcome = Ok(());
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => break,
                message = self.consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => {
                    error_backoff = Duration::from_millis(100);
                    message
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
            let span = tracing::info_span!(
                "record",
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset()
            );
            let handled =
                tracing::Instrument::instrument(self.handle(&message, &pipeline, &metrics, &health, &shutdown), span)
                    .await;
            match handled {
                Ok(Handled::Done) => {}
                // Shutting down in the middle of a retry: the offset is not stored, so the record
                // is redelivered to whoever consumes next.
                Ok(Handled::Interrupted) => break,
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
            if let Err(error) = self.consumer.store_offset_from_message(&message) {
                tracing::warn!(%error, "cannot store offset; the record may be redelivered");
            }
        }
        health.fail(CONSUMER_CHECK, "the consumer has stopped");
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

    /// Handles one record until it is published, parked, dead-lettered or skipped as too old.
    async fn handle(
        &self,
        message: &rdkafka::message::BorrowedMessage<'_>,
        pipeline: &Pipeline,
        metrics: &Metrics,
        health: &Health,
        shutdown: &CancellationToken,
    ) -> Result<Handled, String> {
        let timestamp = message.timestamp().to_millis().and_then(|ms| u64::try_from(ms).ok());
        let now = now_unix_ms();
        if let (Some(max_age), Some(timestamp)) = (self.max_event_age, timestamp) {
            let age_ms = now.saturating_sub(timestamp);
            if u128::from(age_ms) > max_age.as_millis() {
                metrics.too_old.inc();
                tracing::warn!(
                    age_seconds = age_ms / 1000,
                    max_event_age_seconds = max_age.as_secs(),
                    "record older than --max-event-age-seconds; not delivered"
                );
                return Ok(Handled::Done);
            }
        }
        let origin = timestamp.unwrap_or(now);
        let mut backoff = Duration::from_millis(100);
        let dead_letter = loop {
            let failure = match message.payload() {
                None => DeadLetter { reason: "empty", message: "the record has no value".into() },
                Some(bytes) if bytes.len() > self.max_record_bytes => DeadLetter {
                    reason: "oversized",
                    message: format!("{} bytes is over the limit of {}", bytes.len(), self.max_record_bytes),
                },
                Some(bytes) => match pipeline.process(bytes, origin).await {
                    Ok(_) => return Ok(Handled::Done),
                    Err(ProcessError::Invalid { reason, message }) => DeadLetter { reason, message },
                    Err(ProcessError::Transient(error)) => {
                        metrics.retries.inc();
                        tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "transient failure; retrying the same record");
                        if !crate::pause(shutdown, &mut backoff).await {
                            return Ok(Handled::Interrupted);
                        }
                        continue;
                    }
                },
            };
            break failure;
        };
        let source = Source { topic: message.topic(), partition: message.partition(), offset: message.offset() };
        let mut backoff = Duration::from_millis(100);
        let mut failing_since: Option<Instant> = None;
        loop {
            match self.dead_letter(source, message.key(), message.payload(), &dead_letter).await {
                Ok(truncated) => {
                    if failing_since.is_some() {
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
                        return Err(format!(
                            "{cause}; gave up after --dead-letter-timeout-seconds={} without skipping the record \
                             (fix the topic, its permissions or --dead-letter-topic; the record is handled again \
                             after the restart)",
                            timeout.as_secs()
                        ));
                    }
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "cannot write to the dead-letter topic; retrying");
                    if !crate::pause(shutdown, &mut backoff).await {
                        return Ok(Handled::Interrupted);
                    }
                }
            }
        }
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
        let mut future: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.dead_letter_topic).headers(headers);
        if let Some(key) = record.key {
            future = future.key(key);
        }
        if let Some(payload) = record.payload {
            future = future.payload(payload);
        }
        self.producer.send(future, Duration::from_secs(10)).await.map(drop).map_err(|(error, _)| error)
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
        let outcome = runtime.block_on(pipeline.process(bytes, 1_754_036_053_512));
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
