//! The Kafka consumer: at-least-once, in order, nothing skipped.
//!
//! - Records are handled one at a time in the order they arrive, so per-partition order is kept.
//! - An offset is stored only after its record was published, parked or dead-lettered; librdkafka
//!   commits stored offsets periodically and on rebalance (`enable.auto.offset.store=false`), so a
//!   crash or a rebalance can redeliver a record but never lose one. Redelivered records are
//!   deduplicated downstream.
//! - A transient fault (Redis or the broker unreachable) retries the same record with backoff; it
//!   never skips it and never ends the process.
//! - Bad input goes to the dead-letter topic with the original key and bytes and headers naming
//!   the reason and the source topic, partition and offset; then the consumer moves on.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, ClientContext, Message, Statistics};
use tokio_util::sync::CancellationToken;

use crate::backend::now_unix_ms;
use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, ProcessError};

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
}

/// Why a record is dead-lettered, with the error text.
struct DeadLetter<'a> {
    reason: &'a str,
    message: String,
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
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "5000")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            // A subscribed topic created after start-up (producers often create topics on first
            // publish) is only noticed at the next metadata refresh: every 5 minutes by default.
            .set("topic.metadata.refresh.interval.ms", "10000");
        let mut producer_config = ClientConfig::new();
        producer_config.set("bootstrap.servers", brokers).set("acks", "all").set("enable.idempotence", "true");
        for (key, value) in &config.kafka_options {
            consumer_config.set(key, value);
            producer_config.set(key, value);
        }
        let consumer: StreamConsumer<LagContext> = consumer_config.create_with_context(LagContext { metrics })?;
        let topics = config.topics();
        let topic_names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topic_names)?;
        tracing::info!(topics = ?topic_names, group = %config.kafka_group, "subscribed");
        Ok(Arc::new(Kafka {
            consumer,
            producer: producer_config.create()?,
            dead_letter_topic: config.dead_letter_topic.clone(),
            max_record_bytes: config.max_record_bytes,
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

    /// Consumes until `shutdown`, then commits what was handled.
    pub(crate) async fn run(
        self: Arc<Self>,
        pipeline: Arc<Pipeline>,
        metrics: Metrics,
        health: Health,
        shutdown: CancellationToken,
    ) {
        health.pass("consumer");
        let mut error_backoff = Duration::from_millis(100);
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
                Err(rdkafka::error::KafkaError::MessageConsumption(
                    code @ (rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition
                    | rdkafka::types::RDKafkaErrorCode::UnknownTopic),
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
                tracing::Instrument::instrument(self.handle(&message, &pipeline, &metrics, &shutdown), span).await;
            if !handled {
                // Shutting down in the middle of a retry: the offset is not stored, so the record
                // is redelivered to whoever consumes next.
                break;
            }
            if let Err(error) = self.consumer.store_offset_from_message(&message) {
                tracing::warn!(%error, "cannot store offset; the record may be redelivered");
            }
        }
        health.fail("consumer", "the consumer has stopped");
        let kafka = Arc::clone(&self);
        let committed =
            tokio::task::spawn_blocking(move || kafka.consumer.commit_consumer_state(CommitMode::Sync)).await;
        match committed {
            Ok(Ok(())) => tracing::info!("offsets committed"),
            // Nothing stored since the last commit is reported as an error by librdkafka.
            Ok(Err(error)) => tracing::info!(%error, "final commit"),
            Err(error) => tracing::warn!(%error, "final commit did not run"),
        }
    }

    /// Handles one record until it is published, parked or dead-lettered; false if shutdown
    /// interrupted a retry.
    async fn handle(
        &self,
        message: &rdkafka::message::BorrowedMessage<'_>,
        pipeline: &Pipeline,
        metrics: &Metrics,
        shutdown: &CancellationToken,
    ) -> bool {
        let origin = message.timestamp().to_millis().and_then(|ms| u64::try_from(ms).ok()).unwrap_or_else(now_unix_ms);
        let mut backoff = Duration::from_millis(100);
        loop {
            let failure = match message.payload() {
                None => Err(DeadLetter { reason: "empty", message: "the record has no value".into() }),
                Some(bytes) if bytes.len() > self.max_record_bytes => Err(DeadLetter {
                    reason: "oversized",
                    message: format!("{} bytes is over the limit of {}", bytes.len(), self.max_record_bytes),
                }),
                Some(bytes) => match pipeline.process(bytes, origin).await {
                    Ok(_) => Ok(()),
                    Err(ProcessError::Invalid { reason, message }) => Err(DeadLetter { reason, message }),
                    Err(ProcessError::Transient(error)) => {
                        metrics.retries.inc();
                        tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "transient failure; retrying the same record");
                        if !crate::pause(shutdown, &mut backoff).await {
                            return false;
                        }
                        continue;
                    }
                },
            };
            let Err(dead_letter) = failure else { return true };
            match self.dead_letter(message, &dead_letter).await {
                Ok(()) => {
                    metrics.dead_letter(dead_letter.reason);
                    tracing::warn!(reason = dead_letter.reason, error = %dead_letter.message, "record dead-lettered");
                    return true;
                }
                Err(error) => {
                    metrics.retries.inc();
                    tracing::warn!(%error, "cannot write to the dead-letter topic; retrying");
                    if !crate::pause(shutdown, &mut backoff).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Writes the record, unchanged, to the dead-letter topic and waits for the broker's ack.
    async fn dead_letter(
        &self,
        message: &rdkafka::message::BorrowedMessage<'_>,
        dead_letter: &DeadLetter<'_>,
    ) -> Result<(), String> {
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let mut error_text = dead_letter.message.clone();
        error_text.truncate(1024);
        let headers = OwnedHeaders::new()
            .insert(Header { key: "herald.reason", value: Some(dead_letter.reason) })
            .insert(Header { key: "herald.error", value: Some(error_text.as_str()) })
            .insert(Header { key: "herald.source.topic", value: Some(message.topic()) })
            .insert(Header { key: "herald.source.partition", value: Some(partition.as_str()) })
            .insert(Header { key: "herald.source.offset", value: Some(offset.as_str()) });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.dead_letter_topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        self.producer.send(record, Duration::from_secs(10)).await.map(drop).map_err(|(error, _)| error.to_string())
    }
}
