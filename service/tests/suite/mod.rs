//! - `harness`: starting herald, Kafka and WebSocket clients, unique names per test.
//! - `websocket`: authentication, close codes, limits and ping/pong (embedded mode).
//! - `kafka_flow`: every event to the right teacher, ownership, parking, duplicates, dead letters.
//! - `lookup`: batch owners found through the orchestrator's HTTP API.
//! - `resilience`: crash and restart, two instances in one group, graceful shutdown.
//! - `poison`: records that cannot be delivered, of any size, and a dead-letter topic that cannot
//!   be written: dead-lettered, not-ready, or the process ends; never skipped silently.
//! - `consumer_start`: where a new consumer group starts, and events too old to deliver.
//! - `redis_backend`: a silent subscriber connection is noticed and replaced; the key flows on a
//!   3-master Redis Cluster.
//! - `resume`: history and resume: missed notifications replayed exactly once after a
//!   reconnect (to the same or another instance, on one Redis or a cluster, embedded), and
//!   `recovered: false` when history was trimmed or lost.
//! - `trace_context`: the producer's trace context continues into exported spans.

pub(crate) mod harness;

mod consumer_start;
mod kafka_flow;
mod lookup;
mod poison;
mod redis_backend;
mod resilience;
mod resume;
mod trace_context;
mod websocket;
