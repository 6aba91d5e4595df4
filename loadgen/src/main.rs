//! `herald-loadgen`: the load generator behind `scripts/bench.sh` and `docs/benchmarks.md`.
//!
//! It measures a herald-compatible server from the outside, the way browsers and producers see it:
//!
//! 1. open `--connections` WebSocket connections (`ws://HOST/ws?token=JWT`), spread round-robin
//!    over `--users` users, and count how many were refused and why (with `--protocol centrifugo`,
//!    Centrifugo's endpoint and `connect` command instead: `herald_loadgen::centrifugo`);
//! 2. send a few warm-up events until each arrives, so the server's consumer is known to be
//!    assigned and the whole path to work before anything is timed;
//! 3. produce `--events` ClassCreatedV1 envelopes at `--rate` per second to Kafka, round-robin over
//!    the users, keyed by user id, each with a unique `class_id`;
//! 4. match every notification frame to its event by `data.class_id`, time it from the moment the
//!    event was handed to the Kafka producer, and check that every connection of the addressed user
//!    got exactly one copy;
//! 5. wait up to `--drain` seconds for stragglers and print the report (`--json` for one object).
//!
//! Parts: `options` (flags), `tokens` (users and JWTs), `producer` (the rate), `sockets`
//! (connection tasks), `tracker` (what was sent and seen), `report`; envelopes, token signing,
//! close wording and `/proc` readings come from the crate's library, shared with `herald-chaos`.
//!
//! Exit status: 0 when the run was complete (every connection held, every copy exactly once), 2
//! when it ran but was not complete, 1 when it could not run.

mod options;
mod producer;
mod report;
mod sockets;
mod tokens;
mod tracker;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use herald_loadgen::process;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::options::{Options, Protocol};
use crate::producer::Producer;
use crate::report::{Connections, Copies, Events, Latency, Loadgen, RedisUse, Report, Server, round};
use crate::sockets::{ConnectionOutcome, Dial};
use crate::tracker::Tracker;
use herald_loadgen::marking::SendState;
use herald_loadgen::redis_info::RedisReading;

/// Users that receive a warm-up event. Several, spread over the users, so that their keys land on
/// more than one partition.
const WARMUP_USERS: usize = 8;

/// The longest `--wait-for` waits for its file.
const WAIT_FOR_LIMIT: Duration = Duration::from_secs(600);

/// How long a warm-up round waits before sending the missing warm-up events again.
const WARMUP_ROUND: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let options = Options::parse();
    if let Err(error) = options.validate() {
        eprintln!("herald-loadgen: {error}");
        return ExitCode::from(1);
    }
    // Thousands of sockets need thousands of descriptors; the soft limit is often 1024.
    let nofile_limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            eprintln!("herald-loadgen: cannot raise the open-files limit: {error}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft)
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("herald-loadgen: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(options.clone(), nofile_limit)) {
        Ok(report) => {
            let json = serde_json::to_string(&report).unwrap_or_else(|error| unreachable!("report: {error}"));
            if let Some(path) = &options.json_file
                && let Err(error) = std::fs::write(path, format!("{json}\n"))
            {
                eprintln!("herald-loadgen: cannot write {}: {error}", path.display());
            }
            if options.json {
                println!("{json}");
            } else {
                print!("{}", report.text());
            }
            if report.complete { ExitCode::SUCCESS } else { ExitCode::from(2) }
        }
        Err(error) => {
            eprintln!("herald-loadgen: {error}");
            ExitCode::from(1)
        }
    }
}

fn progress(message: &str) {
    eprintln!("[loadgen] {message}");
}

async fn run(options: Options, nofile_limit: u64) -> Result<Report, String> {
    let identities = tokens::identities(&options)?;
    let users = identities.len();
    let user_ids: Vec<String> = identities.iter().map(|identity| identity.user.clone()).collect();
    if options.connections as u64 + 64 > nofile_limit {
        progress(&format!(
            "warning: {} connections need more descriptors than the open-files limit of {nofile_limit} allows",
            options.connections
        ));
    }
    let producer = Producer::new(&options).map_err(|error| format!("cannot create the Kafka producer: {error}"))?;
    producer.check().await?;

    let run_id = format!("{:08x}", uuid::Uuid::new_v4().as_u128() as u32);
    let warmups = users.min(WARMUP_USERS);
    let tracker = Arc::new(Tracker::new(&run_id, users, options.events, warmups));
    let server_pid = options.server_pid;
    let rss_before = server_pid.and_then(|pid| process::rss_kib(Some(pid)));
    let cpu_before = server_pid.and_then(|pid| process::cpu_seconds(Some(pid)));

    // 1. Connections.
    progress(&format!(
        "run {run_id}: opening {} connections for {users} users to {}",
        options.connections,
        options.url.join(", ")
    ));
    let (handshakes, mut handshake_results) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let dial = Arc::new(Dial {
        gate: Arc::new(Semaphore::new(options.connect_concurrency)),
        timeout: Options::seconds(options.connect_timeout),
        handshakes,
        stop: stop.clone(),
        // Centrifugo publishes the envelope itself: it is matched by its event type.
        notification: Arc::from(match options.protocol {
            Protocol::Herald => options.notification.as_str(),
            Protocol::Centrifugo => options.event_type.as_str(),
        }),
        protocol: options.protocol,
        read_buffer_bytes: options.read_buffer_kib * 1024,
        resume: !options.no_resume && options.protocol == Protocol::Herald,
    });
    let opening = Instant::now();
    let mut tasks = JoinSet::new();
    let urls: Arc<[String]> = options.url.clone().into();
    // With the server's pid, the connections open in two halves and its RSS is read after each:
    // what the second half added is what one more idle connection costs, without what the first
    // connections cost once (allocator caches, maps sized for the first users).
    let halves = match server_pid {
        Some(_) if options.connections >= 2 => vec![options.connections / 2, options.connections],
        _ => vec![options.connections],
    };
    let (mut opened, mut failed) = (0u64, 0u64);
    let mut last_progress = Instant::now();
    let mut half_open: Option<(u64, u64)> = None;
    let mut settling = Duration::ZERO;
    let mut started = 0;
    for end in halves {
        for index in started..end {
            let user = index % users;
            tasks.spawn(sockets::connection(
                user,
                (Arc::clone(&urls), index),
                identities[user].token.clone(),
                Arc::clone(&tracker),
                Arc::clone(&dial),
            ));
        }
        for _ in started..end {
            match handshake_results.recv().await {
                Some(Ok(())) => opened += 1,
                Some(Err(_)) => failed += 1,
                None => break,
            }
            if last_progress.elapsed() >= Duration::from_secs(2) {
                progress(&format!("{opened} open, {failed} failed of {}", options.connections));
                last_progress = Instant::now();
            }
        }
        started = end;
        if end < options.connections {
            let settled = Instant::now();
            tokio::time::sleep(Options::seconds(options.settle)).await;
            settling = settled.elapsed();
            half_open =
                server_pid.and_then(|pid| process::rss_kib(Some(pid))).map(|rss| (rss, tracker.open_connections()));
        }
    }
    let open_seconds = opening.elapsed().saturating_sub(settling).as_secs_f64();
    tokio::time::sleep(Options::seconds(options.settle)).await;
    let rss_open = server_pid.and_then(|pid| process::rss_kib(Some(pid)));
    let cpu_opened = server_pid.and_then(|pid| process::cpu_seconds(Some(pid)));
    let loadgen_rss_open = process::rss_kib(None);
    let held_now = tracker.open_connections();
    progress(&format!("{held_now} connections open ({failed} handshakes failed) after {open_seconds:.2} s"));

    if held_now == 0 {
        return Err(abandon("no connection stayed open", &stop, tasks).await);
    }

    // 2. Warm-up.
    let warmup_started = Instant::now();
    if let Err(error) = warm_up(&producer, &tracker, &user_ids, Options::seconds(options.warmup_timeout)).await {
        return Err(abandon(&error, &stop, tasks).await);
    }
    let warmup_seconds = warmup_started.elapsed().as_secs_f64();
    progress(&format!(
        "warm-up arrived after {warmup_seconds:.2} s; sending {} events at {}/s",
        options.events, options.rate
    ));

    if let Some(path) = &options.wait_for {
        progress(&format!("waiting for {} before sending", path.display()));
        let waiting = Instant::now();
        while !path.exists() {
            if waiting.elapsed() > WAIT_FOR_LIMIT {
                let error = format!("{} did not appear within {} s", path.display(), WAIT_FOR_LIMIT.as_secs());
                return Err(abandon(&error, &stop, tasks).await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // 3. Measured events.
    let measuring_from = tracker.elapsed();
    let cpu_measuring = server_pid.and_then(|pid| process::cpu_seconds(Some(pid)));
    let redis_measuring = redis_reading(options.redis_addr.as_deref()).await;
    let copies_per_user = tracker.open_per_user();
    let summary = producer.send_events(&tracker, &user_ids, options.rate).await;

    // 4. Drain: until every expected copy arrived, or the limit.
    let drain_started = Instant::now();
    let drain_limit = Options::seconds(options.drain);
    loop {
        let expected: u64 = (0..tracker.marking.events())
            .filter(|seq| matches!(tracker.state(*seq), SendState::Enqueued | SendState::Acknowledged))
            .map(|seq| u64::from(copies_per_user[tracker.marking.user_of(seq)]))
            .sum();
        if tracker.received() >= expected || drain_started.elapsed() >= drain_limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_seconds = drain_started.elapsed().as_secs_f64();
    let rss_end = server_pid.and_then(|pid| process::rss_kib(Some(pid)));
    let cpu_end = server_pid.and_then(|pid| process::cpu_seconds(Some(pid)));
    let redis_end = redis_reading(options.redis_addr.as_deref()).await;
    progress(&format!("drained in {drain_seconds:.2} s; closing connections"));

    // 5. Close, collect, report.
    stop.cancel();
    let mut outcomes = Vec::with_capacity(options.connections);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) => return Err(format!("a connection task failed: {error}")),
        }
    }
    producer.flush(Duration::from_secs(5)).await;

    let copies = count_copies(&tracker, &outcomes, measuring_from, drain_seconds);
    let connections = Connections {
        requested: options.connections,
        opened,
        failed,
        failures: sockets::tally(outcomes.iter().filter_map(|outcome| outcome.failed.as_deref())),
        closed_early: sockets::tally(outcomes.iter().filter_map(|outcome| match &outcome.ended {
            Some((why, at)) if *at <= measuring_from => Some(why.as_str()),
            _ => None,
        })),
        held: outcomes.iter().filter(|outcome| held_when_measuring(outcome, measuring_from)).count() as u64,
        dropped: sockets::tally(outcomes.iter().filter_map(|outcome| match &outcome.ended {
            Some((why, at)) if *at > measuring_from => Some(why.as_str()),
            _ => None,
        })),
        resumed_after: sockets::tally(
            outcomes.iter().flat_map(|outcome| outcome.resumed_after.iter().map(|(why, _)| why.as_str())),
        ),
        open_seconds: round(open_seconds, 3),
    };
    let failures = producer.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    let events = Events {
        requested: options.events,
        sent: summary.sent,
        failed: failures.values().sum(),
        failures,
        target_rate: options.rate,
        achieved_rate: if summary.elapsed.is_zero() {
            0.0
        } else {
            // n events span n − 1 intervals.
            round(summary.sent.saturating_sub(1) as f64 / summary.elapsed.as_secs_f64(), 1)
        },
        send_seconds: round(summary.elapsed.as_secs_f64(), 3),
        warmup_seconds: round(warmup_seconds, 3),
    };
    let delivered_events = copies.events_delivered;
    let per_event =
        |seconds: f64| (delivered_events > 0).then(|| round(seconds * 1_000_000.0 / delivered_events as f64, 1));
    let server_cpu_measured = cpu_measuring.zip(cpu_end).map(|(before, after)| after - before);
    let redis = match (redis_measuring, redis_end) {
        (Some((before, cpu_before)), Some((after, cpu_after))) => Some(RedisUse {
            address: options.redis_addr.clone().unwrap_or_default(),
            pid: after.process_id,
            used_memory_before: before.used_memory,
            used_memory_end: after.used_memory,
            used_memory_bytes_per_event: per_event_bytes(before.used_memory, after.used_memory, delivered_events),
            cpu_seconds_measured: cpu_before.zip(cpu_after).map(|(before, after)| round(after - before, 2)),
            cpu_us_per_event: cpu_before.zip(cpu_after).and_then(|(before, after)| per_event(after - before)),
        }),
        _ => None,
    };
    let server = server_pid.map(|pid| Server {
        pid,
        rss_kib_before: rss_before,
        rss_kib_connections_open: rss_open,
        rss_kib_end: rss_end,
        rss_kib_per_idle_connection: match (rss_before, rss_open) {
            (Some(before), Some(open)) if connections.held > 0 => {
                Some(round((open as f64 - before as f64) / connections.held as f64, 2))
            }
            _ => None,
        },
        rss_kib_per_idle_connection_added: match (half_open, rss_open) {
            (Some((half, held_half)), Some(open)) if connections.held > held_half => {
                Some(round((open as f64 - half as f64) / (connections.held - held_half) as f64, 2))
            }
            _ => None,
        },
        cpu_seconds_opening: cpu_before.zip(cpu_opened).map(|(before, after)| round(after - before, 2)),
        cpu_seconds_measured: server_cpu_measured.map(|seconds| round(seconds, 2)),
        cpu_us_per_event: server_cpu_measured.and_then(per_event),
        cpu_us_per_copy: server_cpu_measured
            .and_then(|seconds| (copies.received > 0).then(|| round(seconds * 1e6 / copies.received as f64, 1))),
    });
    let complete = connections.failed == 0
        && connections.closed_early.is_empty()
        && connections.dropped.is_empty()
        && connections.held == options.connections as u64
        && events.failed == 0
        && events.sent == events.requested
        && copies.missing == 0
        && copies.duplicates == 0
        && copies.repeated == 0
        && copies.misrouted == 0
        && copies.resumes.not_recovered == 0
        && copies.resumes.unanswered == 0;
    Ok(Report {
        date: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        url: options.url.join(","),
        topic: options.topic.clone(),
        event_type: options.event_type.clone(),
        users,
        connections,
        events,
        copies,
        latency_ms: Latency::from_micros(&tracker.latency(), options.target_ms).map(|latency| Latency {
            events_over_target_by_second: tracker.late_by_second(Options::seconds(options.target_ms / 1000.0)),
            ..latency
        }),
        server,
        redis,
        loadgen: Loadgen {
            rss_kib_connections_open: loadgen_rss_open,
            cpu_seconds: process::cpu_seconds(None),
            nofile_limit,
        },
        complete,
    })
}

/// Closes every connection and returns `error` followed by why connections failed or closed.
async fn abandon(error: &str, stop: &CancellationToken, mut tasks: JoinSet<ConnectionOutcome>) -> String {
    stop.cancel();
    let mut outcomes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        outcomes.extend(joined.ok());
    }
    let reasons = sockets::tally(
        outcomes
            .iter()
            .filter_map(|outcome| outcome.failed.as_deref().or(outcome.ended.as_ref().map(|(why, _)| why.as_str()))),
    );
    let mut message = format!("{error} ({} connections)", outcomes.len());
    for (reason, count) in reasons {
        message.push_str(&format!("\n  {count} × {reason}"));
    }
    message
}

/// Sends a warm-up event to a few users and resends the missing ones every round until each has
/// arrived somewhere. A consumer that has just joined its group may start after the first ones
/// (with `auto.offset.reset=latest` it never sees them), hence the resending.
async fn warm_up(producer: &Producer, tracker: &Tracker, users: &[String], timeout: Duration) -> Result<(), String> {
    let started = Instant::now();
    let slots = tracker.warmups_missing().len();
    for attempt in 0u32.. {
        let missing = tracker.warmups_missing();
        if missing.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(format!(
                "{} of {slots} warm-up notifications did not arrive within {:.0} s; check that the server consumes \
                 the topic, accepts these tokens (same secret) and maps the event to the notification name given",
                missing.len(),
                timeout.as_secs_f64()
            ));
        }
        for slot in missing {
            // Spread the warm-up users over all users, so that their keys reach several partitions.
            let user = &users[slot * users.len() / slots];
            if let Err(error) = producer.send_warmup(&tracker.marking.warmup_class_id(slot, attempt), user).await {
                progress(&format!("warm-up send failed: {error}"));
            }
        }
        let round_started = Instant::now();
        while round_started.elapsed() < WARMUP_ROUND && !tracker.warmups_missing().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    unreachable!("the warm-up loop ends by returning")
}

/// Whether a connection was open when the measured events started.
fn held_when_measuring(outcome: &ConnectionOutcome, measuring_from: Duration) -> bool {
    outcome.failed.is_none() && outcome.ended.as_ref().is_none_or(|(_, at)| *at > measuring_from)
}

/// Expected and received copies from every connection's record: each connection held when the
/// measured events started expects one copy of every event addressed to its user that Kafka took.
fn count_copies(
    tracker: &Tracker,
    outcomes: &[ConnectionOutcome],
    measuring_from: Duration,
    drain_seconds: f64,
) -> Copies {
    let users = tracker.marking.users() as u64;
    let mut copies = Copies {
        expected: 0,
        received: 0,
        missing: 0,
        duplicates: 0,
        repeated: 0,
        out_of_order: 0,
        misrouted: 0,
        foreign: 0,
        events_delivered: 0,
        resumes: herald_loadgen::resume::Resumes::default(),
        drain_seconds: round(drain_seconds, 3),
    };
    let mut delivered = vec![false; usize::try_from(tracker.marking.events()).unwrap_or(usize::MAX)];
    for outcome in outcomes {
        for (slot, seq) in (outcome.user as u64..tracker.marking.events()).step_by(users as usize).enumerate() {
            if outcome.seen.contains(slot) {
                delivered[seq as usize] = true;
            }
        }
        copies.duplicates += outcome.duplicates;
        copies.repeated += outcome.repeated;
        copies.out_of_order += outcome.out_of_order;
        copies.resumes.add(&outcome.resumes);
        copies.misrouted += outcome.misrouted;
        copies.foreign += outcome.foreign;
        copies.received += outcome.distinct;
        if !held_when_measuring(outcome, measuring_from) {
            continue;
        }
        for seq in (outcome.user as u64..tracker.marking.events()).step_by(users as usize) {
            if !matches!(tracker.state(seq), SendState::Enqueued | SendState::Acknowledged) {
                continue;
            }
            copies.expected += 1;
            if !outcome.seen.contains((seq / users) as usize) {
                copies.missing += 1;
            }
        }
    }
    copies.events_delivered = delivered.iter().filter(|delivered| **delivered).count() as u64;
    copies
}

/// Redis's `INFO` and CPU time now, when `--redis-addr` is given and answers.
async fn redis_reading(address: Option<&str>) -> Option<(RedisReading, Option<f64>)> {
    match herald_loadgen::redis_info::read(address?).await {
        Ok(reading) => Some((reading, process::cpu_seconds(Some(reading.process_id)))),
        Err(error) => {
            progress(&format!("warning: {error}"));
            None
        }
    }
}

/// Growth of Redis's memory per delivered event, in bytes.
fn per_event_bytes(before: u64, after: u64, events: u64) -> Option<f64> {
    (events > 0).then(|| round((after as f64 - before as f64) / events as f64, 1))
}
