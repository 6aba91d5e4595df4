//! From record bytes to a published notification: route, handle, find the teacher, publish once.
//!
//! Kafka records and HTTP-ingested events take this same path. The outcome tells the caller what
//! to do with the record: commit it, dead-letter it, or (on a transient fault) retry it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use herald::runtime::Notification;
use herald::{EventEnvelope, EventHandler};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, Delivery, Outgoing, Unavailable};
use crate::consumer::Source;
use crate::metrics::Metrics;

/// Why a record was not delivered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProcessError {
    /// The record can never be delivered: dead-letter it and move on.
    #[error("{message}")]
    Invalid { reason: &'static str, message: String },
    /// A dependency is down: retry the same record later, never skip it.
    #[error(transparent)]
    Transient(#[from] Unavailable),
}

/// What happened to a record that was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Published (or parked) as notification `name`.
    Handled { name: &'static str, delivery: Delivery },
    /// The event names nobody who could ever be notified (no user and no batch).
    NoRecipient { name: &'static str },
}

/// Finds batch owners through the batch orchestrator's HTTP API.
struct OwnerLookup {
    client: reqwest::Client,
    /// `{URL}` of `--owner-lookup-url`; the batch path is appended segment by segment.
    base_url: reqwest::Url,
}

impl OwnerLookup {
    /// The owner of `batch`, or `None` when the orchestrator does not know it or cannot be reached
    /// within the client's timeout (the notification then stays parked; the sweeper asks again).
    async fn owner_of(&self, batch: &str) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct PipelineState {
            user_id: Option<String>,
        }
        let url = self.url_for(batch)?;
        let response = match self.client.get(url).send().await {
            Ok(response) if response.status().is_success() => response,
            Ok(response) => {
                tracing::debug!(batch, status = response.status().as_u16(), "owner lookup found nothing");
                return None;
            }
            Err(error) => {
                tracing::warn!(batch, %error, "owner lookup failed");
                return None;
            }
        };
        let state: PipelineState = response.json().await.ok()?;
        state.user_id.filter(|user| herald::runtime::event::is_real_user_id(user))
    }

    /// `{URL}/internal/v1/batches/{batch}/pipeline-state` with the batch id escaped as exactly one
    /// path segment (`/`, `?`, `#`, `%` and spaces included). `None` for `.` and `..`, which a URL
    /// cannot carry as a segment (they would name another path): such a batch is never looked up.
    fn url_for(&self, batch: &str) -> Option<reqwest::Url> {
        if matches!(batch, "" | "." | "..") {
            return None;
        }
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .ok()?
            .pop_if_empty()
            .extend(["internal", "v1", "batches"])
            .push(batch)
            .push("pipeline-state");
        Some(url)
    }
}

/// Asks for batch owners beside the consumer: the pipeline parks a notification whose owner is
/// unknown and returns at once, and [`OwnerLookups::request`] only queues its batch. A slow batch
/// orchestrator then delays the notifications waiting for it, never the records behind them.
///
/// At most one lookup per batch is in flight; lookups run at most `--owner-lookup-concurrency` at a
/// time, each bounded by `--owner-lookup-timeout-seconds`. An answer releases the batch's parked
/// notifications (`Backend::learn_owner`); no answer leaves them parked for the sweeper to ask again.
pub(crate) struct OwnerLookups {
    /// Batches queued or being looked up; a request for one of them adds nothing.
    in_flight: Arc<std::sync::Mutex<HashSet<String>>>,
    /// Unbounded, but never holds a batch twice (see `in_flight`): at most one entry per parked batch.
    queue: mpsc::UnboundedSender<String>,
}

/// The task that runs the lookups [`OwnerLookups`] queues (see [`OwnerLookupRunner::run`]).
pub(crate) struct OwnerLookupRunner {
    lookup: Arc<OwnerLookup>,
    in_flight: Arc<std::sync::Mutex<HashSet<String>>>,
    queue: mpsc::UnboundedReceiver<String>,
    concurrency: Arc<tokio::sync::Semaphore>,
}

/// Builds the lookup queue and its runner for `base_url`, or says why the URL cannot be used.
pub(crate) fn owner_lookups(
    base_url: &str,
    concurrency: usize,
    timeout: Duration,
) -> Result<(OwnerLookups, OwnerLookupRunner), String> {
    let base_url = reqwest::Url::parse(base_url).map_err(|error| {
        format!("--owner-lookup-url {base_url:?} is not a URL ({error}); give e.g. http://host:port")
    })?;
    if base_url.cannot_be_a_base() || !matches!(base_url.scheme(), "http" | "https") {
        return Err(format!("--owner-lookup-url {base_url} must be an http:// or https:// URL"));
    }
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|error| format!("cannot build the owner lookup HTTP client: {error}"))?;
    let in_flight = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let (queue, receiver) = mpsc::unbounded_channel();
    let lookups = OwnerLookups { in_flight: Arc::clone(&in_flight), queue };
    let runner = OwnerLookupRunner {
        lookup: Arc::new(OwnerLookup { client, base_url }),
        in_flight,
        queue: receiver,
        concurrency: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
    };
    Ok((lookups, runner))
}

fn lock_batches(batches: &std::sync::Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    // Every change is one insert or remove, so a panic elsewhere cannot leave the set inconsistent.
    batches.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl OwnerLookups {
    /// Queues a lookup of `batch`'s owner unless one is already queued or running. Never waits.
    pub(crate) fn request(&self, batch: &str) {
        let mut in_flight = lock_batches(&self.in_flight);
        if in_flight.insert(batch.to_owned()) && self.queue.send(batch.to_owned()).is_err() {
            // The runner has stopped (shutdown): nothing will look it up.
            in_flight.remove(batch);
        }
    }
}

/// Removes a batch from the in-flight set when its lookup ends, however it ends.
struct InFlight {
    batches: Arc<std::sync::Mutex<HashSet<String>>>,
    batch: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock_batches(&self.batches).remove(&self.batch);
    }
}

impl OwnerLookupRunner {
    /// Runs queued lookups until `stop`, at most `--owner-lookup-concurrency` at once; an answer
    /// releases the batch's parked notifications through `pipeline`.
    pub(crate) async fn run(mut self, pipeline: Arc<Pipeline>, stop: CancellationToken) {
        let mut running = tokio::task::JoinSet::new();
        loop {
            let batch = tokio::select! {
                () = stop.cancelled() => return,
                Some(_) = running.join_next(), if !running.is_empty() => continue,
                batch = self.queue.recv() => match batch {
                    Some(batch) => batch,
                    None => return,
                },
            };
            let guard = InFlight { batches: Arc::clone(&self.in_flight), batch };
            let permit = tokio::select! {
                () = stop.cancelled() => return,
                permit = Arc::clone(&self.concurrency).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    // The semaphore is never closed.
                    Err(_) => return,
                },
            };
            let (lookup, pipeline) = (Arc::clone(&self.lookup), Arc::clone(&pipeline));
            running.spawn(async move {
                let _permit = permit;
                let batch = guard.batch.as_str();
                if let Some(owner) = lookup.owner_of(batch).await {
                    pipeline.owner_found(batch, &owner).await;
                }
                drop(guard);
            });
        }
    }
}

pub(crate) struct Pipeline {
    backend: Backend,
    metrics: Metrics,
    lookups: Option<OwnerLookups>,
}

impl Pipeline {
    pub(crate) fn new(backend: Backend, metrics: Metrics, lookups: Option<OwnerLookups>) -> Arc<Self> {
        Arc::new(Pipeline { backend, metrics, lookups })
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Routes and handles one record. `origin_unix_ms` is the record's Kafka timestamp (or the time
    /// it was received over HTTP); `source` is the Kafka record it came from, if any.
    pub(crate) async fn process(
        &self,
        bytes: &[u8],
        origin_unix_ms: u64,
        source: Option<Source<'_>>,
    ) -> Result<Outcome, ProcessError> {
        self.handle(Box::new(route(bytes)?), origin_unix_ms, source).await
    }

    /// Handles one routed event (see [`route`]) in the `event` span, which also names the Kafka
    /// record (`topic`, `partition`, `offset`) when there is one: one span per record, because at
    /// the default log level each span costs more than a fifth of handling the record.
    pub(crate) async fn handle(
        &self,
        envelope: Box<EventEnvelope<herald::Event>>,
        origin_unix_ms: u64,
        source: Option<Source<'_>>,
    ) -> Result<Outcome, ProcessError> {
        let span = tracing::info_span!(
            "event",
            topic = source.map(|source| source.topic),
            partition = source.map(|source| source.partition),
            offset = source.map(|source| source.offset),
            event_id = %envelope.event_id,
            event_type = %envelope.event_type,
            correlation_id = %envelope.correlation_id,
            trace_id = tracing::field::Empty,
            parent_span_id = tracing::field::Empty,
        );
        if let Some(parent) = trace_parent(&envelope) {
            let remote = opentelemetry::trace::TraceContextExt::span(&parent).span_context().clone();
            span.record("trace_id", remote.trace_id().to_string())
                .record("parent_span_id", remote.span_id().to_string());
            // Only fails if the span was already entered, which it has not been.
            let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(&span, parent);
        }
        let handler = RecordHandler { pipeline: self, origin_unix_ms };
        // Boxed: the generated dispatch holds the largest event's state, and the consumer keeps
        // hundreds of records in flight; kilobytes in each record's state cost more than one box.
        tracing::Instrument::instrument(Box::pin(herald::dispatch(&handler, *envelope)), span).await
    }

    /// Publishes one notification, learning and using batch ownership as needed.
    async fn deliver(&self, notification: Notification, origin_unix_ms: u64) -> Result<Outcome, ProcessError> {
        if let Some((batch, user)) = &notification.batch_owner {
            let released = self.backend.learn_owner(batch, user).await?;
            if released > 0 {
                self.metrics.published.inc_by(released);
                tracing::info!(batch, user, released, "batch owner learnt; parked notifications delivered");
            }
        }
        // The id is assigned when the backend publishes (see `backend`): it is the notification's
        // place in the user's history.
        let outgoing = Outgoing {
            dedupe_digest: crate::backend::dedupe_digest(&notification.payload_digest),
            dedupe_ttl_seconds: notification.dedupe_ttl_seconds,
            body: Utf8Bytes::from(utf8(notification.encode_body())),
            origin_unix_ms,
        };
        let name = notification.name;
        let publishing = std::time::Instant::now();
        let delivery = match (&notification.user, &notification.batch) {
            (Some(user), _) => self.backend.deliver_to_user(user, &outgoing).await?,
            (None, Some(batch)) => {
                let delivery = self.backend.deliver_to_batch_owner(batch, &outgoing).await?;
                // Parked at once; the lookup runs beside the consumer (see `OwnerLookups`).
                if matches!(delivery, Delivery::Parked { .. })
                    && let Some(lookups) = &self.lookups
                {
                    lookups.request(batch);
                }
                delivery
            }
            (None, None) => {
                self.metrics.expired("no_recipient", 1);
                tracing::warn!(notification = name, "event names no user and no batch; nobody can be notified");
                return Ok(Outcome::NoRecipient { name });
            }
        };
        self.metrics.publish_seconds.observe(publishing.elapsed().as_secs_f64());
        // Each notification's outcome is logged at debug: at info, a line per notification cost
        // more CPU than handling it (docs/benchmarks.md); the metrics count every outcome.
        match &delivery {
            Delivery::Published { user } => {
                self.metrics.published.inc();
                tracing::debug!(notification = name, user, "published");
            }
            Delivery::Duplicate => {
                self.metrics.deduplicated.inc();
                tracing::debug!(notification = name, "duplicate suppressed");
            }
            Delivery::Parked { overflow } => {
                self.metrics.parked.inc();
                if *overflow > 0 {
                    self.metrics.expired("overflow", *overflow);
                    tracing::warn!(
                        batch = notification.batch,
                        overflow,
                        "parked notifications expired early: too many for one batch"
                    );
                }
                tracing::debug!(
                    notification = name,
                    batch = notification.batch,
                    "parked until the batch owner is known"
                );
            }
        }
        Ok(Outcome::Handled { name, delivery })
    }

    /// One pass of the parking sweeper: expire what is due and retry owner lookups.
    pub(crate) async fn sweep(&self) -> Result<(), Unavailable> {
        let expired = self.backend.expire_parked().await?;
        if expired > 0 {
            self.metrics.expired("ttl", expired);
            tracing::warn!(expired, "parked notifications expired: their batch owner never became known");
        }
        if let Some(lookups) = &self.lookups {
            for batch in self.backend.parked_batches(100).await? {
                lookups.request(&batch);
            }
        }
        Ok(())
    }

    /// A lookup answered: learning the owner publishes what is parked for the batch. A backend
    /// outage leaves the notifications parked; the sweeper's next lookup tries again.
    async fn owner_found(&self, batch: &str, owner: &str) {
        match self.backend.learn_owner(batch, owner).await {
            Ok(released) => {
                self.metrics.published.inc_by(released);
                tracing::info!(batch, user = owner, released, "batch owner found by lookup");
            }
            Err(error) => tracing::warn!(batch, %error, "batch owner found but not recorded; will ask again"),
        }
    }
}

/// Parses record bytes into the envelope of their event; bad input is [`ProcessError::Invalid`].
pub(crate) fn route(bytes: &[u8]) -> Result<EventEnvelope<herald::Event>, ProcessError> {
    herald::route(bytes).map_err(|error| ProcessError::Invalid { reason: error.reason(), message: error.to_string() })
}

/// The handler for one record: the generated trait methods call `deliver` for every declarative
/// event and return its [`Outcome`]; unknown event types are invalid input.
struct RecordHandler<'a> {
    pipeline: &'a Pipeline,
    origin_unix_ms: u64,
}

impl EventHandler for RecordHandler<'_> {
    type Output = Outcome;
    type Error = ProcessError;

    async fn deliver(&self, notification: Notification) -> Result<Outcome, ProcessError> {
        self.pipeline.deliver(notification, self.origin_unix_ms).await
    }

    async fn handle_unknown(&self, envelope: &EventEnvelope<Box<RawValue>>) -> Result<Outcome, ProcessError> {
        Err(ProcessError::Invalid {
            reason: "unknown_event_type",
            message: format!("no event definition claims event_type {:?}", envelope.event_type),
        })
    }
}

/// The producer's span, from the envelope's W3C trace context (`metadata.traceparent` and
/// `tracestate`), so that the span handling the event continues the producer's trace.
fn trace_parent<D>(envelope: &EventEnvelope<D>) -> Option<opentelemetry::Context> {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    let metadata = envelope.metadata.as_ref()?.as_ref()?;
    let mut carrier = std::collections::HashMap::new();
    carrier.insert("traceparent".to_owned(), metadata.traceparent.clone()?);
    if let Some(state) = &metadata.tracestate {
        carrier.insert("tracestate".to_owned(), state.clone());
    }
    let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
    parent.span().span_context().is_valid().then_some(parent)
}

/// serde_json writes UTF-8, so this never copies; the fallback only guards the type conversion.
fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;
    use crate::backend::{MemoryBackend, Parking};
    use crate::hub::Hub;

    #[tokio::test]
    async fn a_traceparent_becomes_the_parent_of_the_span_that_handles_the_event() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let _default = tracing::subscriber::set_default(subscriber);
        let (metrics, _) = Metrics::new();
        let hub = Hub::new(5, 8, None, metrics.clone());
        let parking = Parking { ttl_seconds: 60, max_per_batch: 10, owner_ttl_seconds: 60 };
        let backend = Backend::Memory(Arc::new(MemoryBackend::new(
            hub,
            parking,
            crate::backend::HistoryBounds { size: 100, ttl_seconds: 86_400 },
            metrics.clone(),
        )));
        let pipeline = Pipeline::new(backend, metrics, None);

        let envelope = include_bytes!("../../tests/fixtures/envelopes/batch_file_removed/traced.compact.json");
        let outcome = pipeline.process(envelope, 0, None).await.unwrap();
        assert!(matches!(outcome, Outcome::Handled { name: "batch_file_removed", .. }), "{outcome:?}");

        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let span = spans.iter().find(|span| span.name == "event").expect("the event span was exported");
        // metadata.traceparent = 00-b1051ff33be4f55e51665cd9f067b895-62d1c427e16c0d06-01
        assert_eq!(span.span_context.trace_id().to_string(), "b1051ff33be4f55e51665cd9f067b895");
        assert_eq!(span.parent_span_id.to_string(), "62d1c427e16c0d06");
        assert_eq!(span.span_context.trace_state().header(), "rojo=00f067aa0ba902b7");
    }

    #[test]
    fn a_transient_error_keeps_its_cause_as_its_source() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let error = ProcessError::from(Unavailable::from(redis::RedisError::from(refused)));
        assert!(error.to_string().starts_with("redis: "), "{error}");
        let source = std::error::Error::source(&error).expect("the Redis error is the source");
        assert!(source.to_string().contains("connection refused"), "{source}");
    }

    #[test]
    fn a_batch_id_is_one_escaped_path_segment_of_the_lookup_url() {
        let (_, runner) = owner_lookups("http://orchestrator:8080/base/", 1, Duration::from_secs(1)).unwrap();
        let check = |batch: &str, expected: Option<&str>| {
            let url = runner.lookup.url_for(batch).map(|url| url.to_string());
            assert_eq!(url.as_deref(), expected, "batch {batch:?}");
        };
        check("b-1", Some("http://orchestrator:8080/base/internal/v1/batches/b-1/pipeline-state"));
        check(
            "a/b?c#d%e f",
            Some("http://orchestrator:8080/base/internal/v1/batches/a%2Fb%3Fc%23d%25e%20f/pipeline-state"),
        );
        check("../admin", Some("http://orchestrator:8080/base/internal/v1/batches/..%2Fadmin/pipeline-state"));
        check("..", None);
        check(".", None);
        assert!(owner_lookups("orchestrator:8080", 1, Duration::from_secs(1)).is_err(), "no scheme");
        assert!(owner_lookups("not a url", 1, Duration::from_secs(1)).is_err());
    }
}
