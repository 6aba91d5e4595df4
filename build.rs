//! Generates the event types from `event-defs/` into `OUT_DIR/events.rs`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let defs = root.join("event-defs");
    // The folder itself, so that an added or removed file regenerates; and every file, so that an edit does.
    println!("cargo:rerun-if-changed={}", defs.display());
    match herald_codegen::definition_files(&defs) {
        Ok(files) => {
            for file in files {
                println!("cargo:rerun-if-changed={}", file.display());
            }
        }
        Err(error) => {
            eprintln!("error: cannot list {}: {error}", defs.display());
            return ExitCode::FAILURE;
        }
    }
    let model = match herald_codegen::load(&defs) {
        Ok(model) => model,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return ExitCode::FAILURE;
        }
    };
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("events.rs");
    if let Err(error) = std::fs::write(&out, herald_codegen::generate_rust(&model)) {
        eprintln!("error: cannot write {}: {error}", out.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
