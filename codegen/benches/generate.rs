//! The generator's own run time on the real definitions: load and validate `event-defs/`, then emit
//! Rust (formatted) and TypeScript. Prints the median and worst of the runs.
//!
//! `cargo bench -p herald-codegen`

use std::path::Path;
use std::time::{Duration, Instant};

fn main() {
    let defs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../event-defs");
    let runs = 50;
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    let mut sizes = (0, 0, 0);
    for _ in 0..runs {
        let start = Instant::now();
        let model = herald_codegen::load(&defs).unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
        let rust = herald_codegen::generate_rust(&model);
        let typescript = herald_codegen::generate_typescript(&model);
        times.push(start.elapsed());
        sizes = (model.events.len(), rust.len(), typescript.len());
    }
    times.sort();
    let (events, rust, typescript) = sizes;
    println!(
        "generate ({events} events, {} files): median {:.2} ms, max {:.2} ms over {runs} runs; {rust} bytes of Rust, {typescript} bytes of TypeScript",
        herald_codegen::definition_files(&defs).map(|files| files.len()).unwrap_or_default(),
        times[runs / 2].as_secs_f64() * 1e3,
        times[runs - 1].as_secs_f64() * 1e3,
    );
}
