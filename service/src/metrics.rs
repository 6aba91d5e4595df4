//! Prometheus metrics, served at `/metrics`.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Buckets for the stages of one record inside herald, from sub-millisecond to seconds.
const STAGE_BUCKETS: [f64; 14] =
    [0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Labels naming why something happened (a dead-letter reason, a close code).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Reason {
    pub reason: String,
}

/// Labels naming a readiness check (see `health`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CheckLabel {
    pub check: String,
}

/// Every metric herald exports. Cheap to clone: each metric is shared.
#[derive(Clone)]
pub(crate) struct Metrics {
    /// Open, authenticated WebSocket connections on this instance.
    pub connections: Gauge<i64, AtomicI64>,
    /// Connections closed, by reason (auth, quota, slow_client, idle, client, shutdown, expired,
    /// disconnected, draining: opened while the instance drained).
    pub connections_closed: Family<Reason, Counter<u64, AtomicU64>>,
    /// Notifications published (once per event, whatever the number of sockets).
    pub published: Counter<u64, AtomicU64>,
    /// Notification copies written to sockets.
    pub delivered: Counter<u64, AtomicU64>,
    /// Notifications not published again because an identical one already was.
    pub deduplicated: Counter<u64, AtomicU64>,
    /// Notifications parked until their batch's owner is known.
    pub parked: Counter<u64, AtomicU64>,
    /// Parked notifications that expired undelivered, by reason (ttl, overflow).
    pub parked_expired: Family<Reason, Counter<u64, AtomicU64>>,
    /// Records sent to the dead-letter topic (or rejected over HTTP), by reason.
    pub dead_lettered: Family<Reason, Counter<u64, AtomicU64>>,
    /// Attempts to write to the dead-letter topic that failed (each is retried).
    pub dead_letter_failures: Counter<u64, AtomicU64>,
    /// Records not delivered because they were older than `--max-event-age-seconds`.
    pub too_old: Counter<u64, AtomicU64>,
    /// Transient failures that paused consumption for a retry.
    pub retries: Counter<u64, AtomicU64>,
    /// Times the Redis subscriber lost its connection (an error, or a PING unanswered) and
    /// reconnected.
    pub subscriber_reconnects: Counter<u64, AtomicU64>,
    /// Handshakes that counted the user's connections on this instance only, because Redis did not
    /// answer (see `backend::redis::presence`).
    pub connection_limit_fallbacks: Counter<u64, AtomicU64>,
    /// Records behind the end of the assigned partitions, summed.
    pub consumer_lag: Gauge<i64, AtomicI64>,
    /// Records read from Kafka and handed to their partition's worker, not yet handled (at most
    /// `--consumer-in-flight` per partition).
    pub consumer_in_flight: Gauge<i64, AtomicI64>,
    /// Times a partition was paused because its window was full and records waited outside it.
    pub consumer_pauses: Counter<u64, AtomicU64>,
    /// Seconds from a record's Kafka timestamp to the consumer reading it: how far behind the
    /// producers herald reads (the broker, the fetch, the consumer's queue).
    pub kafka_to_read_seconds: Histogram,
    /// Seconds from the consumer reading a record to its handling starting: waiting for room in
    /// the partition's window, for the worker and for earlier records of the same user or batch.
    pub consumer_wait_seconds: Histogram,
    /// Seconds one notification takes to publish (or park): the backend's dedupe, history and
    /// fan-out, one Redis round trip or more.
    pub publish_seconds: Histogram,
    /// Seconds from a record's Kafka timestamp to its notification being written to a socket.
    pub kafka_to_socket_seconds: Histogram,
    /// Each readiness check: 1 passing, 0 failing (refreshed when `/readyz` or `/metrics` is read).
    pub ready_checks: Family<CheckLabel, Gauge<i64, AtomicI64>>,
}

impl Metrics {
    pub(crate) fn new() -> (Self, Registry) {
        let metrics = Metrics {
            connections: Gauge::default(),
            connections_closed: Family::default(),
            published: Counter::default(),
            delivered: Counter::default(),
            deduplicated: Counter::default(),
            parked: Counter::default(),
            parked_expired: Family::default(),
            dead_lettered: Family::default(),
            dead_letter_failures: Counter::default(),
            too_old: Counter::default(),
            retries: Counter::default(),
            subscriber_reconnects: Counter::default(),
            connection_limit_fallbacks: Counter::default(),
            consumer_lag: Gauge::default(),
            consumer_in_flight: Gauge::default(),
            consumer_pauses: Counter::default(),
            kafka_to_read_seconds: Histogram::new(STAGE_BUCKETS),
            consumer_wait_seconds: Histogram::new(STAGE_BUCKETS),
            publish_seconds: Histogram::new(STAGE_BUCKETS),
            kafka_to_socket_seconds: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            ready_checks: Family::default(),
        };
        let mut registry = Registry::with_prefix("herald");
        registry.register("connections", "Open authenticated WebSocket connections", metrics.connections.clone());
        registry.register("connections_closed", "Connections closed, by reason", metrics.connections_closed.clone());
        registry.register("notifications_published", "Notifications published", metrics.published.clone());
        registry.register(
            "notifications_delivered",
            "Notification copies written to sockets",
            metrics.delivered.clone(),
        );
        registry.register(
            "notifications_deduplicated",
            "Duplicate notifications suppressed",
            metrics.deduplicated.clone(),
        );
        registry.register(
            "notifications_parked",
            "Notifications parked awaiting a batch owner",
            metrics.parked.clone(),
        );
        registry.register(
            "notifications_parked_expired",
            "Parked notifications expired undelivered",
            metrics.parked_expired.clone(),
        );
        registry.register("records_dead_lettered", "Records dead-lettered, by reason", metrics.dead_lettered.clone());
        registry.register(
            "dead_letter_failures",
            "Failed attempts to write to the dead-letter topic",
            metrics.dead_letter_failures.clone(),
        );
        registry.register(
            "events_too_old",
            "Records not delivered because they were older than --max-event-age-seconds",
            metrics.too_old.clone(),
        );
        registry.register("transient_retries", "Transient failures retried", metrics.retries.clone());
        registry.register("consumer_lag", "Kafka records not yet consumed", metrics.consumer_lag.clone());
        registry.register(
            "consumer_records_in_flight",
            "Kafka records handed to their partition's worker and not yet handled",
            metrics.consumer_in_flight.clone(),
        );
        registry.register(
            "consumer_partition_pauses",
            "Times a partition was paused because records waited outside its full window",
            metrics.consumer_pauses.clone(),
        );
        registry.register(
            "kafka_to_read_seconds",
            "Time from a record's Kafka timestamp to the consumer reading it",
            metrics.kafka_to_read_seconds.clone(),
        );
        registry.register(
            "consumer_wait_seconds",
            "Time from reading a record to starting to handle it (window, worker, earlier records of its user or batch)",
            metrics.consumer_wait_seconds.clone(),
        );
        registry.register(
            "publish_seconds",
            "Time to publish or park one notification in the backend",
            metrics.publish_seconds.clone(),
        );
        registry.register(
            "kafka_to_socket_seconds",
            "Latency from Kafka record timestamp to socket write",
            metrics.kafka_to_socket_seconds.clone(),
        );
        registry.register(
            "ready_check",
            "Readiness checks: 1 passing, 0 failing, by check",
            metrics.ready_checks.clone(),
        );
        registry.register(
            "redis_subscriber_reconnects",
            "Times the Redis subscriber lost its connection (error or unanswered PING) and reconnected",
            metrics.subscriber_reconnects.clone(),
        );
        registry.register(
            "connection_limit_fallbacks",
            "Handshakes that counted the user's connections on this instance only because Redis did not answer",
            metrics.connection_limit_fallbacks.clone(),
        );
        (metrics, registry)
    }

    pub(crate) fn ready_check(&self, check: &str, passing: bool) {
        self.ready_checks.get_or_create(&CheckLabel { check: check.to_owned() }).set(i64::from(passing));
    }

    pub(crate) fn dead_letter(&self, reason: &str) {
        self.dead_lettered.get_or_create(&Reason { reason: reason.to_owned() }).inc();
    }

    pub(crate) fn closed(&self, reason: &str) {
        self.connections_closed.get_or_create(&Reason { reason: reason.to_owned() }).inc();
    }

    pub(crate) fn expired(&self, reason: &str, count: u64) {
        self.parked_expired.get_or_create(&Reason { reason: reason.to_owned() }).inc_by(count);
    }
}
