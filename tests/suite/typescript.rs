//! The checked-in TypeScript is what the generator makes today, and it type-checks strictly.

use std::process::Command;

use super::root;

const REGENERATE: &str = "cargo run -p herald-codegen -- typescript";

#[test]
fn checked_in_typescript_is_fresh() {
    let model = herald_codegen::load(&root().join("event-defs")).unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    let fresh = herald_codegen::generate_typescript(&model);
    let path = root().join("clients/typescript/src/events.ts");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(current == fresh, "{} is stale: run `{REGENERATE}` and commit the result", path.display());
}

#[test]
fn typescript_passes_tsc_strict() {
    let package = root().join("clients/typescript");
    let tsc = package.join("node_modules/.bin/tsc");
    assert!(tsc.exists(), "TypeScript is not installed: run `bash scripts/setup-typescript.sh` (scripts/test.sh does)");
    let output = Command::new(&tsc).arg("-p").arg(package.join("tsconfig.json")).output().expect("tsc runs");
    assert!(
        output.status.success(),
        "tsc --strict failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
