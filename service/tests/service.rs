//! End-to-end tests of the herald binary against a real Kafka broker, a real Redis and real
//! WebSocket clients. `scripts/test.sh` starts the infrastructure and exports `HERALD_TEST_KAFKA` and
//! `HERALD_TEST_REDIS`; see `suite/harness.rs`.

// Tests fail loudly on purpose: a panic with the failing value is the report.
#![allow(clippy::unwrap_used)]

mod suite;
