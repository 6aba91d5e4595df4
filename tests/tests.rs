//! herald's integration tests: one binary for the whole root package (see `suite/`).

// Tests fail loudly on purpose: a panic with the failing value is the report.
#![allow(clippy::unwrap_used)]

mod suite;
