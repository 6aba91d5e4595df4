//! The dead-letter producer: rdkafka's `BaseProducer`, whose delivery reports a thread of its own
//! collects, each answering the send waiting for it.
//!
//! Not rdkafka's `FutureProducer`: its polling thread asks librdkafka for 100 ms of events at a
//! time, and rdkafka (0.39) passes what is left of a window as whole milliseconds, rounded down.
//! Once less than a millisecond is left, it polls with a zero timeout in a loop until the window
//! ends: the last millisecond of every 100 ms, about 1% of a core on every instance, idle or not
//! (docs/benchmarks.md, "One worker thread, and the dead-letter poller"). The thread here asks for
//! [`POLL_WINDOW`] at a time, so the same loop costs a thousandth of that. Delivery reports are
//! handed over as they come, whatever the window.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::oneshot;

/// How long one poll of the polling thread may wait for events; also how long the thread may
/// outlive the producer's owner.
const POLL_WINDOW: Duration = Duration::from_secs(1);

/// Where a record's delivery report goes.
type Reply = Box<oneshot::Sender<KafkaResult<()>>>;

/// Hands each delivery report to the send that waits for it.
struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Reply;

    fn delivery(&self, report: &DeliveryResult<'_>, reply: Reply) {
        // The send may have stopped waiting (the consumer is stopping): nobody is left to tell.
        let _ = reply.send(report.as_ref().map(drop).map_err(|(error, _)| error.clone()));
    }
}

pub(super) struct DeadLetterProducer {
    producer: Arc<BaseProducer<Reports>>,
    /// Tells the polling thread to end after its current window.
    stop: Arc<AtomicBool>,
}

impl DeadLetterProducer {
    /// Creates the producer from `config` and starts its polling thread.
    pub(super) fn create(config: &ClientConfig) -> KafkaResult<Self> {
        let producer: Arc<BaseProducer<Reports>> = Arc::new(config.create_with_context(Reports)?);
        let stop = Arc::new(AtomicBool::new(false));
        std::thread::Builder::new()
            .name("herald-dlq-poll".to_owned())
            .spawn({
                let (producer, stop) = (Arc::clone(&producer), Arc::clone(&stop));
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        producer.poll(POLL_WINDOW);
                    }
                }
            })
            .map_err(|error| KafkaError::ClientCreation(format!("cannot start the dead-letter poller: {error}")))?;
        Ok(DeadLetterProducer { producer, stop })
    }

    /// Sends one record to `topic` and waits for its delivery report: the broker's
    /// acknowledgement, or librdkafka's failure (within `message.timeout.ms`). A record librdkafka
    /// cannot even queue fails at once.
    pub(super) async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: OwnedHeaders,
    ) -> KafkaResult<()> {
        let (reply, report) = oneshot::channel();
        let mut record: BaseRecord<'_, [u8], [u8], Reply> =
            BaseRecord::with_opaque_to(topic, Box::new(reply)).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        self.producer.send(record).map_err(|(error, _)| error)?;
        // librdkafka reports every record it queued, failures included; a report that never
        // comes means the producer was destroyed first.
        report.await.unwrap_or(Err(KafkaError::Canceled))
    }
}

impl Drop for DeadLetterProducer {
    fn drop(&mut self) {
        // Not joined: stopping waits for the end of the thread's window. The thread drops the
        // producer last, which destroys it (what it still holds is reported as failed, to sends
        // that are gone by then).
        self.stop.store(true, Ordering::Relaxed);
    }
}
