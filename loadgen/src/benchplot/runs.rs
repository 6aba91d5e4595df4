//! One run's figures, read from a `herald-loadgen` report, and the comparison tables.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;

/// The servers a run can be of, in the order tables list them: herald, the reference server
/// (`herald-refserver`) and Centrifugo.
pub(crate) const SERVERS: [&str; 3] = ["herald", "reference", "centrifugo"];

/// What the comparison needs of one run.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub server: String,
    /// Events per second asked for, and produced.
    pub target_rate: f64,
    pub achieved_rate: f64,
    pub expected: u64,
    pub received: u64,
    /// Copies expected and not received, plus duplicates and misrouted ones.
    pub lost: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// `[percentile, ms]` pairs.
    pub cdf: Vec<[f64; 2]>,
    pub cpu_us_per_event: Option<f64>,
    pub rss_kib_per_idle_socket: Option<f64>,
    pub redis_cpu_us_per_event: Option<f64>,
    /// Lost a copy, or p99 over the limit.
    pub saturated: bool,
}

/// The parts of `herald-loadgen`'s report read here (`loadgen/src/report.rs`).
#[derive(Deserialize)]
struct Report {
    events: Events,
    copies: Copies,
    latency_ms: Option<Latency>,
    server: Option<Server>,
    redis: Option<Redis>,
}

#[derive(Deserialize)]
struct Events {
    target_rate: f64,
    achieved_rate: f64,
}

#[derive(Deserialize)]
struct Copies {
    expected: u64,
    received: u64,
    missing: u64,
    duplicates: u64,
    misrouted: u64,
}

#[derive(Deserialize)]
struct Latency {
    p50: f64,
    p99: f64,
    #[serde(default)]
    cdf: Vec<[f64; 2]>,
}

#[derive(Deserialize)]
struct Server {
    cpu_us_per_event: Option<f64>,
    rss_kib_per_idle_connection: Option<f64>,
}

#[derive(Deserialize)]
struct Redis {
    cpu_us_per_event: Option<f64>,
}

impl Run {
    /// Reads the report at `path`, a run of `server`.
    pub(crate) fn read(server: &str, path: &Path, max_p99_ms: f64) -> Result<Run, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {} ({server}'s run): {error}", path.display()))?;
        let report: Report = serde_json::from_str(&text)
            .map_err(|error| format!("{} is not a herald-loadgen report: {error}", path.display()))?;
        Ok(Run::from_report(server, report, max_p99_ms))
    }

    fn from_report(server: &str, report: Report, max_p99_ms: f64) -> Run {
        let lost = report.copies.missing + report.copies.duplicates + report.copies.misrouted;
        let p99 = report.latency_ms.as_ref().map(|latency| latency.p99);
        Run {
            server: server.to_owned(),
            target_rate: report.events.target_rate,
            achieved_rate: report.events.achieved_rate,
            expected: report.copies.expected,
            received: report.copies.received,
            lost,
            p50_ms: report.latency_ms.as_ref().map(|latency| latency.p50),
            p99_ms: p99,
            saturated: lost > 0 || p99.is_none_or(|p99| p99 > max_p99_ms),
            cdf: report.latency_ms.map(|latency| latency.cdf).unwrap_or_default(),
            cpu_us_per_event: report.server.as_ref().and_then(|server| server.cpu_us_per_event),
            rss_kib_per_idle_socket: report.server.as_ref().and_then(|server| server.rss_kib_per_idle_connection),
            redis_cpu_us_per_event: report.redis.and_then(|redis| redis.cpu_us_per_event),
        }
    }
}

fn figure(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |value| format!("{value:.digits$}"))
}

/// `a / b` to two digits, when both are known and `b` is not zero.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".to_owned(),
    }
}

/// The highest rate a server's runs sustained (no loss, p99 within the limit).
fn sustained(runs: &[Run], server: &str) -> Option<f64> {
    runs.iter().filter(|run| run.server == server && !run.saturated).map(|run| run.target_rate).reduce(f64::max)
}

/// The two Markdown tables: every run, and herald's ratios to the reference per rate.
pub(crate) fn tables(runs: &[Run], max_p99_ms: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| events/s (achieved) | server | copies delivered / expected | lost | p50 ms | p99 ms | server CPU µs/event | \
         Redis CPU µs/event | RSS KiB/idle socket | saturated |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut ordered: Vec<&Run> = runs.iter().collect();
    ordered.sort_by(|a, b| {
        a.target_rate.total_cmp(&b.target_rate).then_with(|| server_rank(&a.server).cmp(&server_rank(&b.server)))
    });
    for run in &ordered {
        let _ = writeln!(
            out,
            "| {} ({:.0}) | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} |",
            run.target_rate,
            run.achieved_rate,
            run.server,
            run.received,
            run.expected,
            run.lost,
            figure(run.p50_ms, 2),
            figure(run.p99_ms, 2),
            figure(run.cpu_us_per_event, 1),
            figure(run.redis_cpu_us_per_event, 1),
            figure(run.rss_kib_per_idle_socket, 2),
            if run.saturated { "yes" } else { "no" },
        );
    }
    let rates: BTreeSet<u64> = runs.iter().map(|run| run.target_rate.to_bits()).collect();
    let mut rates: Vec<f64> = rates.into_iter().map(f64::from_bits).collect();
    rates.sort_by(f64::total_cmp);
    for other in &SERVERS[1..] {
        let mut ratios = String::new();
        for &rate in &rates {
            let find = |server: &str| runs.iter().find(|run| run.server == server && run.target_rate == rate);
            let (Some(herald), Some(other)) = (find("herald"), find(other)) else { continue };
            let _ = writeln!(
                ratios,
                "| {rate} | {} | {} | {} | {} | {} |",
                ratio(herald.p50_ms, other.p50_ms),
                ratio(herald.p99_ms, other.p99_ms),
                ratio(herald.cpu_us_per_event, other.cpu_us_per_event),
                ratio(herald.redis_cpu_us_per_event, other.redis_cpu_us_per_event),
                ratio(herald.rss_kib_per_idle_socket, other.rss_kib_per_idle_socket),
            );
        }
        // Without a rate both servers ran (that server not run, or one failed), there is nothing
        // to divide.
        if !ratios.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "| events/s | p50 herald / {other} | p99 herald / {other} | CPU per event | Redis CPU per event | \
                 RSS per idle socket |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
            out.push_str(&ratios);
        }
    }
    let _ = writeln!(out);
    for server in SERVERS {
        if runs.iter().any(|run| run.server == server) {
            let _ = writeln!(
                out,
                "{server}: highest rate sustained (0 lost, p99 ≤ {max_p99_ms} ms): {}",
                sustained(runs, server).map_or_else(|| "none of the rates run".to_owned(), |rate| format!("{rate}/s"))
            );
        }
    }
    out
}

pub(crate) fn server_rank(server: &str) -> usize {
    SERVERS.iter().position(|known| *known == server).unwrap_or(SERVERS.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rate: f64, missing: u64, p99: f64, cpu: f64) -> Report {
        serde_json::from_value(serde_json::json!({
            "events": {"target_rate": rate, "achieved_rate": rate},
            "copies": {"expected": 100, "received": 100 - missing, "missing": missing, "duplicates": 0, "misrouted": 0},
            "latency_ms": {"p50": p99 / 4.0, "p99": p99, "cdf": [[0.0, 1.0], [99.0, p99]]},
            "server": {"cpu_us_per_event": cpu, "rss_kib_per_idle_connection": 8.0},
            "redis": null,
        }))
        .unwrap()
    }

    #[test]
    fn saturation_ratios_and_the_sustained_rate() {
        let runs = vec![
            Run::from_report("herald", report(1000.0, 0, 8.0, 40.0), 1000.0),
            Run::from_report("reference", report(1000.0, 0, 4.0, 10.0), 1000.0),
            Run::from_report("herald", report(2000.0, 3, 9.0, 40.0), 1000.0),
            Run::from_report("reference", report(2000.0, 0, 1500.0, 10.0), 1000.0),
        ];
        assert!(!runs[0].saturated && !runs[1].saturated);
        assert!(runs[2].saturated, "a lost copy saturates");
        assert!(runs[3].saturated, "a p99 over the limit saturates");
        let text = tables(&runs, 1000.0);
        assert!(text.contains("| 1000 | 2.00× | 2.00× | 4.00× | – | 1.00× |"), "{text}");
        assert!(text.contains("herald: highest rate sustained (0 lost, p99 ≤ 1000 ms): 1000/s"), "{text}");
        assert!(text.contains("| 2000 (2000) | herald | 97 / 100 | 3 |"), "{text}");
        let alone = tables(&runs[..1], 1000.0);
        assert!(!alone.contains("herald / reference"), "no ratios without a reference run: {alone}");
    }
}
