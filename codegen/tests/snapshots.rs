//! Snapshot tests: each folder in `tests/fixtures/` is a set of definitions; its generated Rust,
//! TypeScript and AsyncAPI document, or its diagnostics, are compared with `tests/snapshots/`. The Rust snapshots are
//! compiled by the root package's tests (`tests/compile.rs`).
//!
//! To accept a change in output: `EXPECTORATE=overwrite cargo test -p herald-codegen`.

use std::path::Path;

mod compat;

fn fixture_names() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/fixtures exists")
        .map(|entry| entry.expect("readable entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn fixtures_match_their_snapshots() {
    let names = fixture_names();
    assert!(names.len() >= 4, "expected the fixture folders, found {names:?}");
    for name in names {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(&name);
        match herald_codegen::load(&dir) {
            Ok(model) => {
                expectorate::assert_contents(
                    format!("tests/snapshots/{name}.rs"),
                    &herald_codegen::generate_rust(&model),
                );
                expectorate::assert_contents(
                    format!("tests/snapshots/{name}.ts"),
                    &herald_codegen::generate_typescript(&model),
                );
                expectorate::assert_contents(
                    format!("tests/snapshots/{name}.asyncapi.json"),
                    &herald_codegen::generate_asyncapi(&model),
                );
            }
            Err(diagnostics) => {
                expectorate::assert_contents(
                    format!("tests/snapshots/{name}.diagnostics.txt"),
                    &format!("{diagnostics}\n"),
                );
            }
        }
    }
}

#[test]
fn the_broken_fixture_reports_every_problem_without_panicking() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken");
    let diagnostics = herald_codegen::load(&dir).expect_err("the broken fixture must not load");
    assert!(diagnostics.0.len() >= 15, "expected every problem to be reported, got:\n{diagnostics}");
    for diagnostic in &diagnostics.0 {
        assert!(diagnostic.file.starts_with("broken/"), "{diagnostic}");
        assert!(!diagnostic.message.is_empty(), "{diagnostic}");
    }
}

#[test]
fn the_collision_fixture_names_both_places() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/collision");
    let diagnostics = herald_codegen::load(&dir).expect_err("two types named Details must not load").to_string();
    assert!(diagnostics.contains("collision/second_event.json#/properties/details"), "{diagnostics}");
    assert!(diagnostics.contains("collision/first_event.json#/properties/details"), "{diagnostics}");
}

#[test]
fn output_is_deterministic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minimal");
    let first = herald_codegen::load(&dir).expect("minimal loads");
    let second = herald_codegen::load(&dir).expect("minimal loads");
    assert_eq!(herald_codegen::generate_rust(&first), herald_codegen::generate_rust(&second));
    assert_eq!(herald_codegen::generate_typescript(&first), herald_codegen::generate_typescript(&second));
    assert_eq!(herald_codegen::generate_asyncapi(&first), herald_codegen::generate_asyncapi(&second));
    assert_eq!(herald_codegen::catalogue_html(&first), herald_codegen::catalogue_html(&second));
}

#[test]
fn a_missing_folder_is_a_diagnostic() {
    let diagnostics = herald_codegen::load(Path::new("/nonexistent/event-defs")).expect_err("no folder");
    assert!(diagnostics.to_string().contains("cannot list the definitions folder"), "{diagnostics}");
}

/// Every name Rust reserves or the generated code defines is refused where it is written, so the
/// generated code never fails in rustc instead.
#[test]
fn reserved_names_are_located_diagnostics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reserved");
    let diagnostics = herald_codegen::load(&dir).expect_err("reserved names must not load");
    let located: Vec<(String, String)> =
        diagnostics.0.iter().map(|diagnostic| (diagnostic.file.clone(), diagnostic.pointer.clone())).collect();
    for (file, pointer) in [
        ("reserved/self_type.json", ""),
        ("reserved/self_type.json", "/properties/kind/enum/0"),
        ("reserved/self_type.json", "/properties/kind/enum/1"),
        ("reserved/self_type.json", "/properties/nested"),
        ("reserved/self_type.json", "/x-herald/notification/name"),
        ("reserved/generated_names.json", ""),
        ("reserved/generated_names.json", "/properties/other"),
        ("reserved/generated_names.json", "/x-herald/notification/name"),
    ] {
        assert!(
            located.iter().any(|(f, p)| f == file && p == pointer),
            "no diagnostic at {file}#{pointer}:\n{diagnostics}"
        );
    }
    for diagnostic in &diagnostics.0 {
        assert!(!diagnostic.help.is_empty(), "every diagnostic says what to do: {diagnostic}");
    }
}
