//! The Kafka side of a run: its own topics (created at the start, deleted at the end), the counted
//! events produced at a steady rate, the poison records, and the dead-letter topic read back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::ledger::Ledger;

/// The largest record this run produces: the 1,010,000-byte poison record, with room to spare.
/// librdkafka refuses larger records than `message.max.bytes` (1,000,000 by default) itself.
const MAX_RECORD_BYTES: &str = "2000000";

pub(crate) struct Kafka {
    brokers: String,
    producer: FutureProducer,
}

/// A record Kafka took: where it landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Landed {
    pub partition: i32,
    pub offset: i64,
}

/// A record read back from the dead-letter topic: its `herald.*` headers.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetter {
    pub headers: BTreeMap<String, String>,
    pub bytes: usize,
}

impl DeadLetter {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

impl Kafka {
    pub(crate) fn new(brokers: &str) -> Result<Kafka, String> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            // Each record at once: the fault windows are measured from send times.
            .set("linger.ms", "0")
            // No duplicates of our own making: a duplicate seen by a tab is herald's.
            .set("enable.idempotence", "true")
            .set("message.max.bytes", MAX_RECORD_BYTES)
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(|error| format!("cannot create the Kafka producer for {brokers}: {error}"))?;
        Ok(Kafka { brokers: brokers.to_owned(), producer })
    }

    fn admin(&self) -> Result<AdminClient<DefaultClientContext>, String> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()
            .map_err(|error| format!("cannot create a Kafka admin client for {}: {error}", self.brokers))
    }

    /// Creates `topics` (name, partitions) and waits until the producer sees them all.
    pub(crate) async fn create_topics(&self, topics: &[(String, i32)]) -> Result<(), String> {
        let admin = self.admin()?;
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(name, partitions)| {
                NewTopic::new(name, *partitions, TopicReplication::Fixed(1)).set("max.message.bytes", MAX_RECORD_BYTES)
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results =
            admin.create_topics(&new, &options).await.map_err(|error| format!("cannot create topics: {error}"))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, error)) => return Err(format!("cannot create topic {topic}: {error}")),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for (name, partitions) in topics {
            loop {
                let producer = self.producer.clone();
                let topic = name.clone();
                let partitions = *partitions;
                let visible = tokio::task::spawn_blocking(move || {
                    producer.client().fetch_metadata(Some(&topic), Duration::from_secs(5)).ok().is_some_and(
                        |metadata| {
                            metadata.topics().iter().any(|found| {
                                found.name() == topic
                                    && found.error().is_none()
                                    && found.partitions().len() as i32 == partitions
                            })
                        },
                    )
                })
                .await
                .unwrap_or(false);
                if visible {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(format!("topic {name} was created but is not visible after 30 s"));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// Deletes `topics` (best effort: a run leaves nothing behind on a shared broker).
    pub(crate) async fn delete_topics(&self, topics: &[String]) -> Result<(), String> {
        let admin = self.admin()?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        admin.delete_topics(&names, &options).await.map_err(|error| format!("cannot delete topics: {error}"))?;
        Ok(())
    }

    /// Produces one record and waits for the broker's acknowledgement.
    pub(crate) async fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &str,
        value: &[u8],
    ) -> Result<Landed, String> {
        let mut record = FutureRecord::to(topic).key(key).payload(value);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        match self.producer.send(record, Duration::from_secs(10)).await {
            Ok(delivery) => Ok(Landed { partition: delivery.partition, offset: delivery.offset }),
            Err((error, _)) => Err(format!("cannot produce to {topic}: {error}")),
        }
    }

    /// Produces the counted events at `rate` per second: event `seq` to its user, keyed by the user
    /// id as the platform's producers key them. Acknowledgements are recorded in the ledger as
    /// they come. Returns when the last event was handed over.
    pub(crate) async fn send_events(
        &self,
        ledger: &Arc<Ledger>,
        topic: &str,
        event_type: &str,
        users: &[String],
        rate: f64,
    ) {
        let start = Instant::now();
        for seq in 0..ledger.marking.events() {
            // Absolute deadlines: a late wake-up is caught up by the next events, not carried.
            let due = start + Duration::from_secs_f64(seq as f64 / rate);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
            let user = &users[ledger.marking.user_of(seq)];
            let value = herald_loadgen::envelope::envelope(
                event_type,
                "herald-chaos",
                &ledger.marking.event_class_id(seq),
                user,
                SystemTime::now(),
            );
            let mut record = FutureRecord::to(topic).key(user.as_str()).payload(&value);
            let delivery = loop {
                ledger.mark_sent(seq);
                match self.producer.send_result(record) {
                    Ok(delivery) => break Some(delivery),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        record = returned;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err(_) => break None,
                }
            };
            let Some(delivery) = delivery else {
                ledger.failed(seq);
                continue;
            };
            let ledger = Arc::clone(ledger);
            tokio::spawn(async move {
                match delivery.await {
                    Ok(Ok(delivered)) => ledger.acknowledged(seq, delivered.partition),
                    _ => ledger.failed(seq),
                }
            });
        }
    }

    /// Waits (up to `timeout`) for every record to be acknowledged or failed.
    pub(crate) async fn flush(&self, timeout: Duration) {
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
    }

    /// Reads `topic` from the beginning until `done` says the records read so far are enough or
    /// `limit` passes; returns every record's headers.
    pub(crate) async fn read_dead_letters(
        &self,
        topic: &str,
        limit: Duration,
        done: impl Fn(&[DeadLetter]) -> bool,
    ) -> Result<Vec<DeadLetter>, String> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", format!("{topic}.reader"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(|error| format!("cannot create a Kafka consumer: {error}"))?;
        let metadata = {
            let consumer_topic = topic.to_owned();
            let probe: rdkafka::consumer::BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &self.brokers)
                .create()
                .map_err(|error| format!("cannot create a Kafka consumer: {error}"))?;
            tokio::task::spawn_blocking(move || {
                probe
                    .fetch_metadata(Some(&consumer_topic), Duration::from_secs(10))
                    .map(|metadata| metadata.topics().first().map_or(0, |found| found.partitions().len()))
            })
            .await
            .map_err(|error| error.to_string())?
            .map_err(|error| format!("cannot read the metadata of {topic}: {error}"))?
        };
        let mut assignment = TopicPartitionList::new();
        for partition in 0..metadata as i32 {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(|error| format!("cannot assign {topic}/{partition}: {error}"))?;
        }
        consumer.assign(&assignment).map_err(|error| format!("cannot assign {topic}: {error}"))?;
        let mut read = Vec::new();
        let deadline = Instant::now() + limit;
        while !done(&read) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // Errors (a partition not ready yet) and quiet seconds alike: keep reading until done.
            if let Ok(Ok(message)) = tokio::time::timeout(left.min(Duration::from_secs(1)), consumer.recv()).await {
                let headers = message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|header| {
                                let value = header.value.map(String::from_utf8_lossy).unwrap_or_default();
                                (header.key.to_owned(), value.into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                read.push(DeadLetter { headers, bytes: message.payload().map_or(0, <[u8]>::len) });
            }
        }
        Ok(read)
    }
}
