//! The Kafka side: ClassCreatedV1 envelopes (`herald_loadgen::envelope`) sent at a fixed rate;
//! for Centrifugo, with the headers that address each to its user's personal channel.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};

use herald_loadgen::centrifugo;
use herald_loadgen::envelope::envelope;

use crate::options::{Options, Protocol};
use crate::tracker::Tracker;
use herald_loadgen::marking::SendState;

/// Kafka delivery failures, by error text.
pub(crate) type Failures = Arc<Mutex<BTreeMap<String, u64>>>;

pub(crate) struct Producer {
    producer: FutureProducer,
    topic: String,
    event_type: String,
    source_service: String,
    /// With Centrifugo: the namespace of the personal channels each record is addressed to.
    personal_namespace: Option<String>,
    pub failures: Failures,
}

/// How the measured phase went on the producing side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendSummary {
    /// Events handed to the producer.
    pub sent: u64,
    /// From the first event handed over to the last.
    pub elapsed: Duration,
}

impl Producer {
    pub(crate) fn new(options: &Options) -> Result<Producer, KafkaError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &options.brokers)
            // Wait at most 1 ms to batch records. At 0 every record is its own produce request
            // once the rate is high: at 10,000/s that cost the broker a third more CPU than
            // batching, and on a shared machine the queueing it caused put p50 near 100 ms for
            // every server measured (docs/benchmarks.md). 1 ms adds at most 1 ms to a latency.
            .set("linger.ms", "1")
            // Fail a record within a run's time rather than librdkafka's default of 5 minutes.
            .set("message.timeout.ms", "30000");
        for (key, value) in &options.kafka_options {
            config.set(key, value);
        }
        Ok(Producer {
            producer: config.create()?,
            topic: options.topic.clone(),
            event_type: options.event_type.clone(),
            source_service: options.source_service.clone(),
            personal_namespace: (options.protocol == Protocol::Centrifugo).then(|| options.personal_namespace.clone()),
            failures: Arc::default(),
        })
    }

    /// Whether the brokers answer and know the topic.
    pub(crate) async fn check(&self) -> Result<(), String> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .map_err(|error| format!("cannot reach the Kafka brokers: {error}"))?;
            match metadata.topics().iter().find(|found| found.name() == topic) {
                Some(found) if found.error().is_none() && !found.partitions().is_empty() => Ok(()),
                _ => Err(format!("topic {topic:?} does not exist on the brokers; create it first")),
            }
        })
        .await
        .map_err(|error| error.to_string())?
    }

    /// Hands one event to the producer, waiting while librdkafka's queue is full.
    async fn send(&self, class_id: &str, user: &str, before_send: impl Fn()) -> Result<DeliveryFuture, KafkaError> {
        let payload = envelope(&self.event_type, &self.source_service, class_id, user, SystemTime::now());
        let mut record = FutureRecord::to(&self.topic).key(user).payload(&payload);
        if let Some(namespace) = &self.personal_namespace {
            let channel = centrifugo::personal_channel(namespace, user);
            record = record.headers(
                OwnedHeaders::new_with_capacity(2)
                    .insert(Header { key: centrifugo::CHANNELS_HEADER, value: Some(&channel) })
                    .insert(Header { key: centrifugo::IDEMPOTENCY_KEY_HEADER, value: Some(class_id) }),
            );
        }
        loop {
            before_send();
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// Sends one warm-up event, not timed; failures are left to the warm-up's deadline.
    pub(crate) async fn send_warmup(&self, class_id: &str, user: &str) -> Result<(), KafkaError> {
        self.send(class_id, user, || {}).await.map(drop)
    }

    /// Sends every measured event at `rate` per second, round-robin over `users`; acknowledgements
    /// are tracked in the background.
    pub(crate) async fn send_events(&self, tracker: &Arc<Tracker>, users: &[String], rate: f64) -> SendSummary {
        let start = Instant::now();
        let mut first = None;
        let mut last = start;
        let mut sent = 0;
        for seq in 0..tracker.marking.events() {
            // Absolute deadlines: a late wake-up is caught up by the next events, not carried.
            let due = start + Duration::from_secs_f64(seq as f64 / rate);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
            let class_id = tracker.marking.event_class_id(seq);
            let user = &users[tracker.marking.user_of(seq)];
            match self.send(&class_id, user, || tracker.mark_sent(seq)).await {
                Ok(delivery) => {
                    sent += 1;
                    let tracker = Arc::clone(tracker);
                    let failures = Arc::clone(&self.failures);
                    tokio::spawn(async move {
                        let failure = match delivery.await {
                            Ok(Ok(_)) => None,
                            Ok(Err((error, _))) => Some(error.to_string()),
                            Err(_) => Some("the producer dropped the record".to_owned()),
                        };
                        tracker.set_state(
                            seq,
                            if failure.is_some() { SendState::Failed } else { SendState::Acknowledged },
                        );
                        if let Some(failure) = failure {
                            *failures
                                .lock()
                                .unwrap_or_else(|poisoned| poisoned.into_inner())
                                .entry(failure)
                                .or_insert(0) += 1;
                        }
                    });
                }
                Err(error) => {
                    tracker.set_state(seq, SendState::Failed);
                    *self
                        .failures
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .entry(error.to_string())
                        .or_insert(0) += 1;
                }
            }
            first.get_or_insert_with(Instant::now);
            last = Instant::now();
        }
        SendSummary { sent, elapsed: first.map_or(Duration::ZERO, |first| last.duration_since(first)) }
    }

    /// Waits (up to `timeout`) for every record to be acknowledged or failed.
    pub(crate) async fn flush(&self, timeout: Duration) {
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
    }
}
