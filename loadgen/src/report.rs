//! The report: what was held, sent and received, how fast, and what the server's memory did. Printed
//! as text for people or as one JSON object (`--json`) for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// When the run ended (RFC 3339, UTC).
    pub date: String,
    /// The WebSocket endpoint, without any token.
    pub url: String,
    pub topic: String,
    pub event_type: String,
    pub users: usize,
    pub connections: Connections,
    pub events: Events,
    pub copies: Copies,
    /// Produce-to-receive latency of every copy that arrived; absent when none did.
    pub latency_ms: Option<Latency>,
    /// Present with `--server-pid`.
    pub server: Option<Server>,
    /// Present with `--redis-addr`.
    pub redis: Option<RedisUse>,
    pub loadgen: Loadgen,
    /// Every connection opened and held, and every expected copy arrived exactly once.
    pub complete: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct Connections {
    pub requested: usize,
    /// Handshakes that succeeded.
    pub opened: u64,
    /// Handshakes that failed, by reason.
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    /// Opened, then closed before events were sent (a rejected token or quota closes right away).
    pub closed_early: BTreeMap<String, u64>,
    /// Open when the measured events started.
    pub held: u64,
    /// Closed by the server or the network while events were sent or drained, and not reopened,
    /// by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Sockets that ended and were opened again with `since`, by why they ended.
    pub resumed_after: BTreeMap<String, u64>,
    /// Seconds from the first handshake to the last.
    pub open_seconds: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Events {
    pub requested: u64,
    /// Handed to the Kafka producer.
    pub sent: u64,
    /// Kafka delivery failures, by reason.
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    pub target_rate: f64,
    /// Events per second between the first send and the last.
    pub achieved_rate: f64,
    pub send_seconds: f64,
    /// Seconds the warm-up took (the server's consumer joining its group, usually).
    pub warmup_seconds: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Copies {
    /// One per held connection of the addressed user, for every event Kafka did not fail.
    pub expected: u64,
    /// Distinct copies that arrived on a connection of their user.
    pub received: u64,
    pub missing: u64,
    /// Notifications whose id the connection had already processed (dropped by it).
    pub duplicates: u64,
    /// Events that arrived again on a connection under another id.
    pub repeated: u64,
    /// Notifications whose id was not newer than the connection's last one.
    pub out_of_order: u64,
    /// Events that arrived on at least one connection of their user.
    pub events_delivered: u64,
    /// How sockets reopened with `since` were answered.
    pub resumes: herald_loadgen::resume::Resumes,
    /// This run's events that arrived on another user's connection.
    pub misrouted: u64,
    /// Text frames that were not this run's notifications.
    pub foreign: u64,
    /// Seconds waited after the last send until every copy arrived (or the drain limit).
    pub drain_seconds: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Latency {
    pub copies: u64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
    pub target_ms: f64,
    /// Share of received copies that arrived within the target, in percent.
    pub within_target_percent: f64,
    /// Events with at least one copy slower than the target, by the second of the measured phase
    /// in which they were sent.
    pub events_over_target_by_second: BTreeMap<u64, u64>,
    /// The distribution as `[percentile, ms]` pairs, denser towards the tail (for the latency CDF
    /// `herald-benchplot` draws): [`CDF_POINTS`] + 1 points from p0 to p99.99, then the maximum.
    pub cdf: Vec<[f64; 2]>,
}

/// Points of the latency distribution kept in the report, from p0 to p99.99.
const CDF_POINTS: u32 = 80;

impl Latency {
    /// Summarizes a histogram of microseconds; `None` when it is empty.
    pub(crate) fn from_micros(histogram: &Histogram<u64>, target_ms: f64) -> Option<Latency> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| round(micros as f64 / 1000.0, 2);
        let target_micros = (target_ms * 1000.0) as u64;
        let within = histogram.count_between(0, target_micros);
        Some(Latency {
            copies: histogram.len(),
            min: ms(histogram.min()),
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: round(histogram.mean() / 1000.0, 2),
            target_ms,
            within_target_percent: round(100.0 * within as f64 / histogram.len() as f64, 3),
            events_over_target_by_second: BTreeMap::new(),
            cdf: cdf(histogram),
        })
    }
}

/// Quantiles `1 - 10^(-4 i / CDF_POINTS)` (evenly spaced in "nines", p0 to p99.99) and the maximum.
fn cdf(histogram: &Histogram<u64>) -> Vec<[f64; 2]> {
    let mut points: Vec<[f64; 2]> = (0..=CDF_POINTS)
        .map(|step| {
            let quantile = 1.0 - 10f64.powf(-4.0 * f64::from(step) / f64::from(CDF_POINTS));
            [round(quantile * 100.0, 4), round(histogram.value_at_quantile(quantile) as f64 / 1000.0, 3)]
        })
        .collect();
    points.push([100.0, round(histogram.max() as f64 / 1000.0, 3)]);
    points
}

#[derive(Debug, Serialize)]
pub(crate) struct Server {
    pub pid: u32,
    pub rss_kib_before: Option<u64>,
    pub rss_kib_connections_open: Option<u64>,
    pub rss_kib_end: Option<u64>,
    /// (RSS with connections open − RSS before) / connections held.
    pub rss_kib_per_idle_connection: Option<f64>,
    /// What the second half of the connections added to the RSS, per connection of that half:
    /// an idle connection's cost without what the first connections cost once. `None` with
    /// fewer than two connections.
    pub rss_kib_per_idle_connection_added: Option<f64>,
    /// CPU seconds the server used while the connections were opened.
    pub cpu_seconds_opening: Option<f64>,
    /// CPU seconds the server used from the first measured event to the end of the drain.
    pub cpu_seconds_measured: Option<f64>,
    /// `cpu_seconds_measured` per event delivered, in µs.
    pub cpu_us_per_event: Option<f64>,
    /// `cpu_seconds_measured` per copy received, in µs.
    pub cpu_us_per_copy: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct RedisUse {
    pub address: String,
    pub pid: u32,
    /// `used_memory` when the measured events started, and after the drain.
    pub used_memory_before: u64,
    pub used_memory_end: u64,
    /// Growth of `used_memory` per event delivered.
    pub used_memory_bytes_per_event: Option<f64>,
    /// CPU seconds Redis used from the first measured event to the end of the drain.
    pub cpu_seconds_measured: Option<f64>,
    /// `cpu_seconds_measured` per event delivered, in µs.
    pub cpu_us_per_event: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Loadgen {
    /// This process's RSS while every connection was open.
    pub rss_kib_connections_open: Option<u64>,
    pub cpu_seconds: Option<f64>,
    /// The open-files limit after raising the soft limit to the hard one.
    pub nofile_limit: u64,
}

pub(crate) fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "?".to_owned(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0))
}

fn reasons(out: &mut String, label: &str, counts: &BTreeMap<String, u64>) {
    for (reason, count) in counts {
        let _ = writeln!(out, "    {label}: {count} × {reason}");
    }
}

impl Report {
    /// The report for people.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        let c = &self.connections;
        let e = &self.events;
        let p = &self.copies;
        let _ = writeln!(out, "herald-loadgen report, {}", self.date);
        let _ = writeln!(out, "  server        {} (topic {}, event_type {})", self.url, self.topic, self.event_type);
        let _ = writeln!(
            out,
            "  connections   {} held of {} requested, over {} users; {} handshakes failed; opened in {:.2} s",
            c.held, c.requested, self.users, c.failed, c.open_seconds
        );
        reasons(&mut out, "handshake failed", &c.failures);
        reasons(&mut out, "closed before sending", &c.closed_early);
        reasons(&mut out, "dropped during the run", &c.dropped);
        reasons(&mut out, "ended, reopened with since", &c.resumed_after);
        let _ = writeln!(
            out,
            "  events        {} of {} sent in {:.2} s: {:.1}/s (target {}/s); Kafka failures {}; warm-up {:.2} s",
            e.sent, e.requested, e.send_seconds, e.achieved_rate, e.target_rate, e.failed, e.warmup_seconds
        );
        reasons(&mut out, "kafka", &e.failures);
        let _ = writeln!(
            out,
            "  copies        expected {}, received {}, missing {}, duplicates by id {}, repeated {}, misrouted {}, foreign {} \
             (drained {:.2} s)",
            p.expected, p.received, p.missing, p.duplicates, p.repeated, p.misrouted, p.foreign, p.drain_seconds
        );
        if p.resumes.resumes > 0 || p.out_of_order > 0 {
            let r = &p.resumes;
            let _ = writeln!(
                out,
                "  resumes       {} ({} recovered:true, {} recovered:false, {} unanswered), {} missed, {} replayed; {} ids out of order",
                r.resumes, r.recovered, r.not_recovered, r.unanswered, r.missed, r.replayed, p.out_of_order
            );
        }
        match &self.latency_ms {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "  latency ms    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (min {}, mean {}); {}% of {} copies within {} ms",
                    l.p50, l.p90, l.p99, l.p999, l.max, l.min, l.mean, l.within_target_percent, l.copies, l.target_ms
                );
                if !l.events_over_target_by_second.is_empty() {
                    let seconds: Vec<String> = l
                        .events_over_target_by_second
                        .iter()
                        .map(|(second, count)| format!("{count} in s{second}"))
                        .collect();
                    let total: u64 = l.events_over_target_by_second.values().sum();
                    let _ = writeln!(
                        out,
                        "    {total} events had a copy over {} ms, by second of sending: {}",
                        l.target_ms,
                        seconds.join(", ")
                    );
                }
            }
            None => {
                let _ = writeln!(out, "  latency ms    no copy arrived");
            }
        }
        if let Some(s) = &self.server {
            let kib = |value: Option<f64>| value.map_or_else(|| "?".to_owned(), |kib| format!("{kib:.1} KiB"));
            let _ = writeln!(
                out,
                "  server rss    pid {}: before {}, connections open {}, end {}; {} per idle connection, {} each \
                 for the second half",
                s.pid,
                mib(s.rss_kib_before),
                mib(s.rss_kib_connections_open),
                mib(s.rss_kib_end),
                kib(s.rss_kib_per_idle_connection),
                kib(s.rss_kib_per_idle_connection_added),
            );
            let seconds = |value: Option<f64>| value.map_or_else(|| "?".to_owned(), |value| format!("{value:.2} s"));
            let micros = |value: Option<f64>| value.map_or_else(|| "?".to_owned(), |value| format!("{value:.1} µs"));
            let _ = writeln!(
                out,
                "  server cpu    {} while opening connections, {} while sending and draining: {} per event delivered \
                 ({} events), {} per copy",
                seconds(s.cpu_seconds_opening),
                seconds(s.cpu_seconds_measured),
                micros(s.cpu_us_per_event),
                p.events_delivered,
                micros(s.cpu_us_per_copy)
            );
        }
        if let Some(r) = &self.redis {
            let _ = writeln!(
                out,
                "  redis         {} (pid {}): used_memory {} → {} bytes, {} bytes per event; cpu {} s, {} µs per event",
                r.address,
                r.pid,
                r.used_memory_before,
                r.used_memory_end,
                r.used_memory_bytes_per_event.map_or_else(|| "?".to_owned(), |bytes| format!("{bytes:.1}")),
                r.cpu_seconds_measured.map_or_else(|| "?".to_owned(), |value| format!("{value:.2}")),
                r.cpu_us_per_event.map_or_else(|| "?".to_owned(), |value| format!("{value:.1}"))
            );
        }
        let _ = writeln!(
            out,
            "  loadgen       rss {} with connections open, cpu {}, open-files limit {}",
            mib(self.loadgen.rss_kib_connections_open),
            self.loadgen.cpu_seconds.map_or_else(|| "?".to_owned(), |value| format!("{value:.2} s")),
            self.loadgen.nofile_limit
        );
        let verdict = if self.complete {
            "complete: every connection held (or resumed recovered:true), every expected copy arrived exactly once"
        } else {
            "INCOMPLETE: see failed connections, missing or duplicated copies above"
        };
        let _ = writeln!(out, "  result        {verdict}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_summary_in_milliseconds() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).unwrap();
        for micros in [1_000, 2_000, 3_000, 150_000] {
            histogram.record(micros).unwrap();
        }
        let latency = Latency::from_micros(&histogram, 100.0).unwrap();
        assert_eq!(latency.copies, 4);
        assert_eq!(latency.p50, 2.0);
        assert_eq!(latency.within_target_percent, 75.0);
        assert!((149.9..=150.1).contains(&latency.max), "{}", latency.max);
        assert_eq!(latency.cdf.len(), CDF_POINTS as usize + 2);
        assert_eq!(latency.cdf[0][0], 0.0);
        assert!((0.99..=1.01).contains(&latency.cdf[0][1]), "{:?}", latency.cdf[0]);
        assert!(latency.cdf.windows(2).all(|pair| pair[0][0] <= pair[1][0] && pair[0][1] <= pair[1][1]));
        assert_eq!(latency.cdf.last().map(|point| point[0]), Some(100.0));
        assert!(Latency::from_micros(&Histogram::<u64>::new(3).unwrap(), 100.0).is_none());
    }
}
