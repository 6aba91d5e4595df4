//! `herald-benchplot`: compares herald's benchmark runs with the reference server's
//! (`herald-refserver`), and with Centrifugo's when there are any, under the same load, from the
//! `report.json` files `herald-loadgen` wrote.
//! `scripts/bench.sh` runs it after its runs; `docs/benchmarks.md` shows its output.
//!
//! It prints (and with `--out` writes to `comparison.md`) Markdown tables: every run's
//! figures (rate, delivered and lost copies, p50/p99 latency, server CPU per event, RSS per idle
//! socket, whether the server saturated), and for each rate herald and another server both ran,
//! herald's figures as ratios to that server's. With `--out` it also draws, as SVG:
//!
//! - `latency-cdf.svg`: the latency distribution of every run (produce → socket, log ms), one line
//!   per run, herald solid, the reference dashed and Centrifugo dotted, a colour per rate; the
//!   vertical axis is in "nines" (p0, p90, p99, p99.9, p99.99) so the tail is as wide as the body;
//! - `throughput-p99.svg`: p99 latency (log ms) against the rate achieved, one line per server,
//!   saturated runs marked with a cross.
//!
//! Runs are given as `SERVER=PATH` (`herald=target/bench/…/herald-2000/report.json`); a run
//! saturated its server when a copy was lost or its p99 was over `--max-p99-ms`.
//!
//! Exit status: 0, or 1 when a report cannot be read or a chart cannot be written.

mod charts;
mod runs;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::runs::Run;

/// herald-benchplot: herald's benchmark runs next to the other servers', as tables of
/// figures and ratios and as SVG charts (latency CDF, throughput against p99).
#[derive(Debug, Parser)]
#[command(name = "herald-benchplot", version, about, long_about = None)]
struct Options {
    /// Runs as SERVER=PATH of a herald-loadgen report.json; SERVER is `herald`, `reference` or
    /// `centrifugo`.
    #[arg(required = true, value_parser = parse_run)]
    runs: Vec<(String, PathBuf)>,

    /// Folder to write comparison.md, latency-cdf.svg and throughput-p99.svg into.
    #[arg(long)]
    out: Option<PathBuf>,

    /// A run whose p99 is over this (in ms) saturated its server, as does one that lost a copy.
    #[arg(long, default_value_t = 1000.0)]
    max_p99_ms: f64,

    /// A line under the charts' titles (e.g. the command that produced the runs).
    #[arg(long, default_value = "")]
    caption: String,
}

fn parse_run(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((server, path)) if runs::SERVERS.contains(&server) => Ok((server.to_owned(), PathBuf::from(path))),
        _ => Err(format!("expected SERVER=PATH with SERVER one of {}, got {text:?}", runs::SERVERS.join(", "))),
    }
}

fn main() -> ExitCode {
    let options = Options::parse();
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herald-benchplot: {error}");
            ExitCode::from(1)
        }
    }
}

fn run(options: &Options) -> Result<(), String> {
    let runs = options
        .runs
        .iter()
        .map(|(server, path)| Run::read(server, path, options.max_p99_ms))
        .collect::<Result<Vec<Run>, String>>()?;
    let tables = runs::tables(&runs, options.max_p99_ms);
    print!("{tables}");
    if let Some(out) = &options.out {
        std::fs::create_dir_all(out).map_err(|error| format!("cannot create {}: {error}", out.display()))?;
        let write = |name: &str, text: &str| {
            let path = out.join(name);
            std::fs::write(&path, text).map_err(|error| format!("cannot write {}: {error}", path.display()))
        };
        write("comparison.md", &tables)?;
        write("latency-cdf.svg", &charts::latency_cdf(&runs, &options.caption)?)?;
        write("throughput-p99.svg", &charts::throughput_p99(&runs, options.max_p99_ms, &options.caption)?)?;
    }
    Ok(())
}
