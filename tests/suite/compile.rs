//! Generated Rust compiles: the snapshots of codegen's fixtures pass under `#![deny(warnings)]`, and
//! a handler that leaves a custom event unimplemented fails to compile.
//!
//! To accept a changed compiler message: `TRYBUILD=overwrite cargo test --test tests compile`.

#[test]
fn generated_snapshots_compile_and_custom_events_must_be_implemented() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/compile-pass/*.rs");
    cases.compile_fail("tests/compile-fail/*.rs");
}
