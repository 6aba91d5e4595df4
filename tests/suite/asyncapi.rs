//! The checked-in AsyncAPI document and HTML catalogue are what the generator makes today, the
//! document is the one the crate serves, and the AsyncAPI project's own parser accepts it.

use std::process::Command;

use super::{model, root};

const REGENERATE: &str = "cargo run -p herald-codegen -- asyncapi";

#[track_caller]
fn check_fresh(relative: &str, fresh: &str) {
    let path = root().join(relative);
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(current == fresh, "{} is stale: run `{REGENERATE}` and commit the result", path.display());
}

#[test]
fn checked_in_asyncapi_document_is_fresh() {
    check_fresh(herald_codegen::ASYNCAPI_PATH, &herald_codegen::generate_asyncapi(&model()));
}

#[test]
fn checked_in_html_catalogue_is_fresh() {
    check_fresh(herald_codegen::CATALOGUE_HTML_PATH, &herald_codegen::catalogue_html(&model()));
}

#[test]
fn the_crate_serves_the_generated_document() {
    assert_eq!(herald::ASYNCAPI, herald_codegen::generate_asyncapi(&model()));
}

/// The page reads offline: nothing is fetched from elsewhere when it is opened.
#[test]
fn html_catalogue_loads_nothing_from_the_network() {
    let html = herald_codegen::catalogue_html(&model());
    for needle in ["<script", "<link", "@import", "src=\"http", "url(http", "url(//"] {
        assert!(!html.contains(needle), "the catalogue contains {needle:?}");
    }
    for info in herald::EVENTS {
        assert!(html.contains(&format!("id=\"{}\"", info.notification)), "{} has a section", info.notification);
    }
}

/// `clients/asyncapi/test/validate.test.mjs`: `@asyncapi/parser` reports no error.
#[test]
fn asyncapi_document_passes_the_asyncapi_parser() {
    let package = root().join("clients/asyncapi");
    assert!(
        package.join("node_modules/@asyncapi/parser/package.json").exists(),
        "@asyncapi/parser is not installed: run `bash scripts/setup-typescript.sh` (scripts/test.sh does)"
    );
    let output = Command::new("node").args(["--test", "test/"]).current_dir(&package).output().expect("node runs");
    assert!(
        output.status.success(),
        "the AsyncAPI parser refused {}:\n{}{}",
        herald_codegen::ASYNCAPI_PATH,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
