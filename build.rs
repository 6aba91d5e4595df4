//! Generates the event types from `event-defs/` into `OUT_DIR/events.rs`, and the AsyncAPI document
//! the service serves into `OUT_DIR/asyncapi.json`.
//!
//! Problems with the definitions are reported as `cargo::error=` lines, one per diagnostic, so that
//! cargo prints them as `error:` lines at the top of its output; the script then exits normally
//! (cargo fails the build because errors were logged), which keeps the `cargo:rerun-if-changed`
//! lines out of the failure report.

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let defs = root.join("event-defs");
    // The folder itself, so that an added or removed file regenerates; and every file, so that an
    // edit does. Printed even when loading fails, so that fixing a file reruns the script.
    println!("cargo:rerun-if-changed={}", defs.display());
    match herald_codegen::definition_files(&defs) {
        Ok(files) => {
            for file in files {
                println!("cargo:rerun-if-changed={}", file.display());
            }
        }
        Err(error) => {
            println!("cargo::error=cannot list {}: {error}; run cargo in the herald workspace", defs.display());
            return;
        }
    }
    let model = match herald_codegen::load(&defs) {
        Ok(model) => model,
        Err(diagnostics) => {
            for diagnostic in &diagnostics.0 {
                println!("cargo::error={}", diagnostic.one_line());
            }
            let count = diagnostics.0.len();
            println!(
                "cargo::error={count} problem{} in the event definitions; `cargo run -p herald-codegen -- check` lists them again",
                if count == 1 { "" } else { "s" }
            );
            return;
        }
    };
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let outputs = [
        ("events.rs", herald_codegen::generate_rust(&model)),
        ("asyncapi.json", herald_codegen::generate_asyncapi(&model)),
    ];
    for (name, text) in outputs {
        let out = out_dir.join(name);
        if let Err(error) = std::fs::write(&out, text) {
            println!("cargo::error=cannot write {}: {error}", out.display());
        }
    }
}
