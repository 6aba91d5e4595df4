//! Parts shared by herald's two drivers, which both talk to herald from the outside the way
//! browsers and producers do:
//!
//! - `herald-loadgen` (`src/main.rs`): many connections, events at a fixed rate, delivery latency
//!   and completeness (`scripts/bench.sh`, `docs/benchmarks.md`);
//! - `herald-chaos` (`src/chaos/`): two or three herald instances and a Redis of its own, faults
//!   injected while every notification is counted per tab (`scripts/chaos.sh`,
//!   `docs/reliability.md`).
//!
//! Two more binaries serve the benchmark: `herald-refserver` (`src/refserver/`), the minimal
//! reference server `scripts/bench.sh` runs under the same load as herald, and `herald-benchplot`
//! (`src/benchplot/`), which compares the two servers' reports in tables and SVG charts.
//!
//! Shared: [`envelope`] (the ClassCreatedV1 envelopes both produce), [`marking`] (how each
//! event is marked and addressed, and Kafka's verdict on it), [`token`] (HS256 tokens),
//! [`wire`] (connection URLs, how closes and errors are worded), [`resume`] (the resuming
//! client: `since`, the `resumed` frame and its replay, dedupe by id), [`process`] (`/proc`
//! readings) and [`redis_info`] (Redis's `INFO`). [`centrifugo`] is the client's and producer's
//! side of Centrifugo's contract, for measuring that gateway under the same load.

pub mod centrifugo;
pub mod envelope;
pub mod marking;
pub mod process;
pub mod redis_info;
pub mod resume;
pub mod token;
pub mod wire;
