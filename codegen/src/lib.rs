//! The herald generator: reads the JSON Schemas in `event-defs/` and writes Rust and TypeScript.
//!
//! This is a plain library so that `build.rs`, the `herald-codegen` command and the tests share one
//! engine:
//!
//! - [`load`] discovers the definition files in sorted order, resolves `$ref`s across files, names
//!   every type deterministically and checks everything, returning a [`Model`] or [`Diagnostics`]
//!   listing every problem with its file, JSON pointer and what to do;
//! - [`generate_rust`] and [`generate_typescript`] emit code from the same [`Model`], so the two
//!   cannot disagree;
//! - [`generate_asyncapi`] writes the AsyncAPI 3.0 document (the Kafka topics and the WebSocket
//!   protocol of `herald_runtime::protocol`) and [`catalogue_html`] the static HTML event catalogue,
//!   from the same [`Model`];
//! - [`fixtures`] writes every event's examples in the two byte forms producers emit, for tests;
//! - [`catalogue`] prints the events for people;
//! - [`compat`] compares two sets of definitions and classifies each change for herald (reading
//!   producers' envelopes) and browsers (reading notifications) as BACKWARD, FORWARD, FULL or NONE;
//! - [`rules`] holds the rules of `x-herald` that `herald-macros` applies to hand-written
//!   attributes too, and [`names`] the case conversions, so each lives in one place.
//!
//! Nothing here touches Kafka, Redis, git or the network; the only I/O is reading the definitions folder.

mod asyncapi;
mod catalogue;
pub mod compat;
mod diagnostic;
mod fixtures;
mod html;
mod load;
pub mod model;
pub mod names;
pub mod rules;
mod rust;
mod typescript;

pub use asyncapi::{ASYNCAPI_GENERATED, ASYNCAPI_PATH, CATALOGUE_HTML_PATH, generate_asyncapi};
pub use catalogue::catalogue;
pub use diagnostic::{Diagnostic, Diagnostics};
pub use fixtures::{FIXTURES_DIR, Fixture, Form, fixtures, python_json};
pub use html::catalogue_html;
pub use load::load;
pub use model::Model;
pub use rust::{RUST_HEADER, generate_rust};
pub use typescript::{TYPESCRIPT_HEADER, generate_typescript};

/// The definition files in `dir` (sorted), for `cargo:rerun-if-changed`.
pub fn definition_files(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    Ok(load::discover(dir)?.into_iter().map(|file| dir.join(file)).collect())
}
