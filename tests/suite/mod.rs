//! - `envelopes`: every example envelope of every definition, in both producer forms, parses,
//!   routes, round-trips and is handled; the checked-in fixture files are fresh.
//! - `catalogue`: the generated catalogue constants.
//! - `compile`: generated Rust snapshots compile; a custom event left unimplemented does not.
//! - `typescript`: the checked-in TypeScript is fresh and passes `tsc --strict`.
//! - `asyncapi`: the checked-in AsyncAPI document and HTML catalogue are fresh, the crate serves
//!   the same document, and `@asyncapi/parser` accepts it.
//! - `add_event`: a scratch copy with one more schema grows everything without Rust edits.

mod add_event;
mod asyncapi;
mod catalogue;
mod compile;
mod envelopes;
mod typescript;

use std::path::{Path, PathBuf};

/// The workspace root.
pub(crate) fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The model of the workspace's `event-defs/`, which the crate under test was generated from.
pub(crate) fn model() -> herald_codegen::Model {
    herald_codegen::load(&root().join("event-defs")).unwrap_or_else(|diagnostics| panic!("{diagnostics}"))
}

/// The files of a folder, sorted.
pub(crate) fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| entry.expect("readable entry").path())
        .collect();
    entries.sort();
    entries
}
