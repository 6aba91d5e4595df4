//! The Kafka side: one consumer, one record at a time, each turned into herald's notification for
//! ClassCreatedV1 and handed to the recipient's sockets.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::App;

/// Creates the consumer and subscribes it to `topics`. Offsets are auto-committed.
pub(crate) fn subscribe(
    brokers: &str,
    group: &str,
    topics: &[String],
    options: &[(String, String)],
) -> Result<StreamConsumer, String> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers).set("group.id", group).set("enable.partition.eof", "false");
    for (key, value) in options {
        config.set(key, value);
    }
    let consumer: StreamConsumer =
        config.create().map_err(|error| format!("cannot create the Kafka consumer for {brokers}: {error}"))?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).map_err(|error| format!("cannot subscribe to {topics:?}: {error}"))?;
    Ok(consumer)
}

/// How often the consumer writes its own view of the lag to standard error.
const LAG_REPORT_EVERY: Duration = Duration::from_secs(5);

/// Consumes until the consumer fails for good; records that are not ClassCreatedV1 envelopes
/// are skipped (and counted on standard error, once per thousand). Every [`LAG_REPORT_EVERY`] it
/// writes how far behind the records' Kafka timestamps it handed them to the sockets (herald's
/// `herald_kafka_to_socket_seconds`, roughly), so a slow run can be told apart: is the consumer
/// behind, or the path after it?
pub(crate) async fn consume(consumer: StreamConsumer, app: Arc<App>, notification: Arc<str>) -> Result<(), String> {
    let mut skipped: u64 = 0;
    // 1 ms to 10 min, 2 significant digits.
    let mut lag_ms = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000, 2)
        .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid"));
    let mut window = Instant::now();
    loop {
        let record = match consumer.recv().await {
            Ok(record) => record,
            Err(error) => {
                // librdkafka retries broker errors itself; report them and go on, as herald does.
                eprintln!("herald-refserver: Kafka: {error}");
                continue;
            }
        };
        let ms = record.timestamp().to_millis().and_then(|ms| u64::try_from(ms).ok()).unwrap_or_else(now_ms);
        let delivered = record.payload().and_then(|payload| deliver(&app, &notification, payload, ms));
        lag_ms.saturating_record(now_ms().saturating_sub(ms).max(1));
        if window.elapsed() >= LAG_REPORT_EVERY {
            eprintln!(
                "herald-refserver: {} records in {:.1} s; Kafka timestamp to sockets: p50 {} ms, p99 {} ms, max {} ms",
                lag_ms.len(),
                window.elapsed().as_secs_f64(),
                lag_ms.value_at_quantile(0.5),
                lag_ms.value_at_quantile(0.99),
                lag_ms.max()
            );
            lag_ms.reset();
            window = Instant::now();
        }
        if delivered.is_none() {
            skipped += 1;
            if skipped % 1000 == 1 {
                eprintln!("herald-refserver: skipped {skipped} records that are not ClassCreatedV1 envelopes");
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(0))
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event_id: &'a RawValue,
    #[serde(borrow)]
    event_timestamp: &'a RawValue,
    #[serde(borrow, default)]
    correlation_id: Option<&'a RawValue>,
    #[serde(borrow)]
    data: ClassCreated<'a>,
}

/// The payload: the recipient, and the fields herald forwards for `class_created`
/// (`event-defs/class_created.json`, `x-herald.notification.fields`), kept as raw JSON.
#[derive(Deserialize, Serialize)]
struct ClassCreated<'a> {
    #[serde(skip_serializing)]
    user_id: String,
    #[serde(borrow)]
    class_id: &'a RawValue,
    #[serde(borrow)]
    class_designation: &'a RawValue,
    #[serde(borrow)]
    course_codes: &'a RawValue,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    timestamp: Option<&'a RawValue>,
}

/// herald's notification message (`herald_runtime::notification`), keys in its order.
#[derive(Serialize)]
struct Frame<'a> {
    id: &'a str,
    event: &'a str,
    data: &'a ClassCreated<'a>,
    event_id: &'a RawValue,
    category: &'static str,
    priority: &'static str,
    timestamp: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<&'a RawValue>,
}

/// Hands one record to its user's sockets; `None` when it is not a ClassCreatedV1 envelope.
fn deliver(app: &App, notification: &str, payload: &[u8], ms: u64) -> Option<usize> {
    let envelope: Envelope<'_> = serde_json::from_slice(payload).ok()?;
    let sockets = app.hub.deliver(&envelope.data.user_id, ms, |id| encode(notification, &envelope, id));
    Some(sockets)
}

fn encode(notification: &str, envelope: &Envelope<'_>, id: &str) -> Utf8Bytes {
    let frame = Frame {
        id,
        event: notification,
        data: &envelope.data,
        event_id: envelope.event_id,
        category: "class_management",
        priority: "standard",
        timestamp: envelope.event_timestamp,
        correlation_id: envelope.correlation_id,
    };
    // Strings and JSON that already parsed: serializing cannot fail.
    Utf8Bytes::from(serde_json::to_string(&frame).unwrap_or_else(|error| unreachable!("notification: {error}")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use herald_loadgen::resume::{Incoming, read_frame};

    use super::*;

    #[test]
    fn a_loadgen_envelope_becomes_a_notification_the_loadgen_reads() {
        let now = UNIX_EPOCH + Duration::from_micros(1_754_036_053_512_331);
        let payload = herald_loadgen::envelope::envelope("huleedu.class.created.v1", "t", "lg-r-7", "user-3", now);
        let envelope: Envelope<'_> = serde_json::from_slice(&payload).unwrap();
        assert_eq!(envelope.data.user_id, "user-3");
        let text = encode("class_created", &envelope, "1754036053512-0");
        assert_eq!(
            read_frame(&text),
            Incoming::Notification {
                id: Some("1754036053512-0".into()),
                event: "class_created".into(),
                class_id: Some("lg-r-7".into()),
            }
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["data"]["course_codes"], serde_json::json!(["ENG5"]));
        assert!(value["data"].get("user_id").is_none());
        assert_eq!(value["timestamp"], "2025-08-01T08:14:13.512331Z");
        assert!(text.starts_with(r#"{"id":"1754036053512-0","event":"class_created","data":{"class_id":"lg-r-7""#));
    }
}
