//! - `harness`: starting herald, Kafka and WebSocket clients, unique names per test.
//! - `demo`: embedded mode's demo page: its token, its samples, loopback only, absent in production.
//! - `websocket`: authentication, close codes, limits and ping/pong (embedded mode).
//! - `kafka_flow`: every event to the right teacher, ownership, parking, duplicates, dead letters.
//! - `lookup`: batch owners found through the orchestrator's HTTP API.
//! - `resilience`: crash and restart, two instances in one group, graceful shutdown.
//! - `poison`: records that cannot be delivered, of any size, and a dead-letter topic that cannot
//!   be written: dead-lettered, not-ready, or the process ends; never skipped silently.
//! - `lifecycle`: token expiry and in-band refresh, the drain on SIGTERM, the per-user limit across
//!   instances, and disconnecting a user everywhere.
//! - `pipelined`: many users' records across partitions, many in flight at once, each arrives
//!   once and in order per user.
//! - `consumer_start`: where a new consumer group starts, and events too old to deliver.
//! - `redis_backend`: a silent subscriber connection is noticed and replaced; the key flows on a
//!   3-master Redis Cluster.
//! - `resume`: history and resume: missed notifications replayed exactly once after a
//!   reconnect (to the same or another instance, on one Redis or a cluster, embedded), and
//!   `recovered: false` when history was trimmed or lost.
//! - `trace_context`: the producer's trace context continues into exported spans.
//! - `asyncapi`: the generated AsyncAPI document is served at `/asyncapi.json`.

pub(crate) mod harness;

mod asyncapi;
mod consumer_start;
mod demo;
mod kafka_flow;
mod lifecycle;
mod lookup;
mod pipelined;
mod poison;
mod redis_backend;
mod resilience;
mod resume;
mod trace_context;
mod websocket;
