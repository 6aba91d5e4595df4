//! `herald-chaos`: herald under faults, with every notification counted. `scripts/chaos.sh` builds
//! and runs it; `docs/reliability.md` gives its figures and definitions.
//!
//! One run:
//!
//! 1. creates topics of its own in the given Kafka (one per notification, so no other traffic
//!    reaches its instances, and a dead-letter topic), starts a Redis of its own on a free loopback
//!    port, and two herald instances in production mode sharing one consumer group;
//! 2. opens `--users` × `--tabs` WebSockets spread over both instances; a tab whose socket ends
//!    reconnects with backoff to an instance the balancer sees ready (`balancer`, `tabs`);
//! 3. warms up (one event per partition, resent until it arrives, so every partition is known to
//!    be consumed), then produces `--events` ClassCreatedV1 events at `--rate`, event `seq` to user
//!    `seq % users` (`data.user_id`), marked by a unique `data.class_id` (`ledger`, `kafka`);
//! 4. meanwhile injects the faults at fixed fractions of the producing phase (`faults`): SIGKILL
//!    and restart of an instance, a Redis restart, a 5 s Redis SIGSTOP, a rebalance (a third
//!    instance joins the group), three poison records;
//! 5. drains, reads the dead-letter topic back, stops everything it started, and reports per
//!    fault window and per tab what was lost, duplicated and misrouted, how long consumption took
//!    to resume after each fault, and the assertions (`report`).
//!
//! Exit status: 0 when every assertion held, 2 when one failed, 1 when the run could not be made.

mod balancer;
mod cluster;
mod faults;
mod kafka;
mod ledger;
mod options;
mod report;
mod tabs;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::balancer::Balancer;
use crate::cluster::{Cluster, HeraldSetup};
use crate::faults::{Fault, FaultKind, Injector, Poison};
use crate::kafka::Kafka;
use crate::ledger::Ledger;
use crate::options::{Options, Persistence};
use crate::report::{Reckoning, Rules};
use crate::tabs::{TabRecord, Tabs};

/// The notification counted: its event carries the recipient in `data.user_id`.
const NOTIFICATION: &str = "class_created";

/// How long a herald instance may take to be ready at start-up.
const START_LIMIT: Duration = Duration::from_secs(60);

/// How long all tabs may take to open their first socket.
const OPEN_LIMIT: Duration = Duration::from_secs(60);

/// How long the warm-up may take, and how often it resends what has not arrived.
const WARMUP_LIMIT: Duration = Duration::from_secs(60);
const WARMUP_ROUND: Duration = Duration::from_secs(2);

/// Handshakes in flight at once.
const CONNECT_CONCURRENCY: usize = 32;

/// How long the dead-letter topic is read for the poison records.
const DEAD_LETTER_LIMIT: Duration = Duration::from_secs(20);

fn main() -> ExitCode {
    let options = Options::parse();
    if let Err(error) = options.validate() {
        eprintln!("herald-chaos: {error}");
        return ExitCode::from(1);
    }
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        progress(&format!("cannot raise the open-files limit: {error}"));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("herald-chaos: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(options)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(error) => {
            eprintln!("herald-chaos: {error}");
            ExitCode::from(1)
        }
    }
}

fn progress(message: &str) {
    eprintln!("[chaos] {message}");
}

/// One notification of the event definitions: its name and default topic.
struct Definition {
    notification: String,
    event_type: String,
}

/// Every notification herald knows, from the `x-herald` block of each event definition.
fn definitions(folder: &Path) -> Result<Vec<Definition>, String> {
    let entries = std::fs::read_dir(folder).map_err(|error| format!("cannot read {}: {error}", folder.display()))?;
    let mut definitions = Vec::new();
    for entry in entries {
        let path = entry.map_err(|error| error.to_string())?.path();
        if path.extension().is_none_or(|extension| extension != "json") {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        let schema: serde_json::Value =
            serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))?;
        let herald = &schema["x-herald"];
        if let (Some(notification), Some(event_type)) =
            (herald["notification"]["name"].as_str(), herald["event"]["event_type"].as_str())
        {
            definitions.push(Definition { notification: notification.to_owned(), event_type: event_type.to_owned() });
        }
    }
    definitions.sort_by(|a, b| a.notification.cmp(&b.notification));
    if !definitions.iter().any(|definition| definition.notification == NOTIFICATION) {
        return Err(format!("{} defines no {NOTIFICATION} notification", folder.display()));
    }
    Ok(definitions)
}

/// The names a run owns on the shared broker.
struct Names {
    run: String,
    /// (notification, topic).
    topics: Vec<(String, String)>,
    counted_topic: String,
    counted_event_type: String,
    dead_letter_topic: String,
}

async fn run(options: Options) -> Result<bool, String> {
    std::fs::create_dir_all(&options.out)
        .map_err(|error| format!("cannot create {}: {error}", options.out.display()))?;
    let definitions = definitions(&options.event_defs)?;
    let run = format!("{:08x}", uuid::Uuid::new_v4().as_u128() as u32);
    let topic = |notification: &str| format!("chaos-{run}.{notification}");
    let counted = definitions
        .iter()
        .find(|definition| definition.notification == NOTIFICATION)
        .ok_or_else(|| format!("no {NOTIFICATION} definition"))?;
    let names = Names {
        topics: definitions
            .iter()
            .map(|definition| (definition.notification.clone(), topic(&definition.notification)))
            .collect(),
        counted_topic: topic(NOTIFICATION),
        counted_event_type: counted.event_type.clone(),
        dead_letter_topic: topic("dead-letter"),
        run,
    };
    let kafka = Arc::new(Kafka::new(&options.kafka)?);
    let mut to_create: Vec<(String, i32)> = names
        .topics
        .iter()
        .map(|(_, topic)| (topic.clone(), if *topic == names.counted_topic { options.partitions } else { 1 }))
        .collect();
    to_create.push((names.dead_letter_topic.clone(), 1));
    progress(&format!("run {}: creating {} topics on {}", names.run, to_create.len(), options.kafka));
    kafka.create_topics(&to_create).await?;
    let result = run_on_topics(&options, &names, &kafka).await;
    if !options.keep_topics {
        let topics: Vec<String> = to_create.into_iter().map(|(topic, _)| topic).collect();
        if let Err(error) = kafka.delete_topics(&topics).await {
            progress(&format!("warning: {error}"));
        }
    }
    result
}

#[derive(Serialize)]
struct JsonReport<'a> {
    run: &'a str,
    date: String,
    users: usize,
    tabs_per_user: usize,
    events: u64,
    target_rate: f64,
    achieved_rate: f64,
    faults: &'a [Fault],
    fault_error: Option<&'a str>,
    herald_exits: Vec<String>,
    herald_panics: Vec<String>,
    #[serde(flatten)]
    reckoning: &'a Reckoning,
    passed: bool,
}

async fn run_on_topics(options: &Options, names: &Names, kafka: &Arc<Kafka>) -> Result<bool, String> {
    let redis_port = cluster::free_port()?;
    let mut herald_args: Vec<String> = vec![
        "--kafka-brokers".into(),
        options.kafka.clone(),
        "--redis-url".into(),
        format!("redis://127.0.0.1:{redis_port}"),
        "--jwt-secret".into(),
        options.jwt_secret.clone(),
        "--jwt-audience".into(),
        options.jwt_audience.clone(),
        "--jwt-issuer".into(),
        options.jwt_issuer.clone(),
        "--kafka-group".into(),
        format!("chaos-{}", names.run),
        "--redis-prefix".into(),
        format!("chaos-{}:", names.run),
        "--dead-letter-topic".into(),
        names.dead_letter_topic.clone(),
        // The group is new and its topics are the run's own: read them from their start, so that
        // nothing produced before the consumers were assigned is skipped.
        "--kafka-option".into(),
        "auto.offset.reset=earliest".into(),
        "--log-format".into(),
        "text".into(),
    ];
    for (notification, topic) in &names.topics {
        herald_args.push("--topic".into());
        herald_args.push(format!("{notification}={topic}"));
    }
    herald_args.extend(options.herald_args.iter().cloned());
    let setup =
        HeraldSetup { binary: options.herald.clone(), args: herald_args, log_level: options.herald_log.clone() };
    let mut cluster =
        Cluster::new(&options.out, options.redis_server.clone(), options.redis_persistence, redis_port, setup, 3)?;
    cluster.start_redis()?;
    progress(&format!(
        "Redis on port {redis_port}; starting herald-0 and herald-1 on ports {:?}",
        &cluster.herald_ports[..2]
    ));
    for instance in 0..2 {
        cluster.start_herald(instance, "start")?;
    }
    for instance in 0..2 {
        cluster.wait_ready(instance, START_LIMIT).await?;
    }

    let ledger = Arc::new(Ledger::new(&names.run, options.users, options.events, options.partitions as usize));
    let balancer = Arc::new(Balancer::new(cluster.herald_ports.clone()));
    balancer.enable(0);
    balancer.enable(1);
    let stop = CancellationToken::new();
    tokio::spawn(Arc::clone(&balancer).watch(stop.clone()));

    // Tabs: a quarter of the users have both tabs on herald-0, a quarter both on herald-1, half one
    // on each.
    let users: Vec<String> = (0..options.users).map(|user| format!("chaos-{}-user-{user}", names.run)).collect();
    let (first_open, mut first_opens) = mpsc::unbounded_channel();
    let shared = Arc::new(Tabs {
        ledger: Arc::clone(&ledger),
        balancer: Arc::clone(&balancer),
        gate: Semaphore::new(CONNECT_CONCURRENCY),
        notification: NOTIFICATION.to_owned(),
        stop: stop.clone(),
        first_open,
    });
    let mut tab_tasks = JoinSet::new();
    for (user, id) in users.iter().enumerate() {
        let token = herald_loadgen::token::sign(
            &options.jwt_secret,
            id,
            Some(&options.jwt_audience),
            Some(&options.jwt_issuer),
            3600,
        )?;
        for tab in 0..options.tabs {
            let instance = match user % 4 {
                0 => 0,
                1 => 1,
                _ => tab % 2,
            };
            tab_tasks.spawn(tabs::tab(user, tab, instance, token.clone(), Arc::clone(&shared)));
        }
    }
    let tab_count = options.users * options.tabs;
    progress(&format!("opening {tab_count} tabs for {} users", options.users));
    let opening = Instant::now();
    let mut opened = 0;
    while opened < tab_count {
        match tokio::time::timeout(OPEN_LIMIT.saturating_sub(opening.elapsed()), first_opens.recv()).await {
            Ok(Some(_)) => opened += 1,
            _ => break,
        }
    }
    if opened < tab_count {
        stop.cancel();
        return Err(format!(
            "only {opened} of {tab_count} tabs opened a socket within {} s; see {}/herald-*.log",
            OPEN_LIMIT.as_secs(),
            options.out.display()
        ));
    }
    progress(&format!("{opened} tabs open after {:.1} s; warming up", opening.elapsed().as_secs_f64()));
    // Let herald subscribe the last sockets before anything counts.
    tokio::time::sleep(Duration::from_millis(options.connected_margin_ms)).await;
    warm_up(kafka, &ledger, names, &users).await?;

    // Produce, and inject the faults meanwhile.
    let producing_from = ledger.now();
    let producing = Duration::from_secs_f64(options.producing_seconds());
    progress(&format!(
        "producing {} notifications at {}/s ({:.0} s) with faults {:?}",
        options.events,
        options.rate,
        producing.as_secs_f64(),
        options.faults.iter().map(|fault| fault.name()).collect::<Vec<_>>()
    ));
    let schedule: Vec<(FaultKind, Duration)> = FaultKind::SCHEDULE
        .iter()
        .filter(|(kind, _)| options.faults.contains(kind))
        .map(|(kind, fraction)| (*kind, producing.mul_f64(*fraction)))
        .collect();
    let mut injector = Injector {
        cluster,
        balancer: Arc::clone(&balancer),
        ledger: Arc::clone(&ledger),
        kafka: Arc::clone(kafka),
        topic: names.counted_topic.clone(),
        partitions: options.partitions,
        user: users[0].clone(),
    };
    let started = Instant::now();
    // Ends supervision: herald instances that end by themselves are started again, as an
    // orchestrator would, until the run has drained.
    let drained = CancellationToken::new();
    let fault_task = {
        let drained = drained.clone();
        tokio::spawn(async move {
            let mut faults = Vec::new();
            let mut poisons = Vec::new();
            let mut error = None;
            for (kind, at) in schedule {
                match supervise(&mut injector.cluster, Some(started + at), &drained).await {
                    Ok(true) => {}
                    Ok(false) => {
                        error = Some(format!("fault {} was not injected: the run ended first", kind.name()));
                        break;
                    }
                    Err(why) => {
                        error = Some(why);
                        break;
                    }
                }
                progress(&format!("fault {} at {:.1} s", kind.name(), started.elapsed().as_secs_f64()));
                match injector.inject(kind, &mut poisons).await {
                    Ok(fault) => {
                        progress(&format!("  {} (until {:.1} s)", fault.detail, started.elapsed().as_secs_f64()));
                        faults.push(fault);
                    }
                    Err(why) => {
                        error = Some(format!("fault {} could not be injected: {why}", kind.name()));
                        break;
                    }
                }
            }
            if error.is_none()
                && let Err(why) = supervise(&mut injector.cluster, None, &drained).await
            {
                error = Some(why);
            }
            (injector, faults, poisons, error)
        })
    };
    kafka.send_events(&ledger, &names.counted_topic, &names.counted_event_type, &users, options.rate).await;
    let producing_took = started.elapsed();
    kafka.flush(Duration::from_secs(10)).await;
    progress(&format!("produced in {:.1} s; draining", producing_took.as_secs_f64()));
    drain(&ledger, Duration::from_secs_f64(options.drain)).await;
    drained.cancel();
    let (injector, faults, poisons, fault_error) =
        fault_task.await.map_err(|error| format!("the fault task failed: {error}"))?;
    let mut cluster = injector.cluster;
    let dead_letters = kafka
        .read_dead_letters(&names.dead_letter_topic, DEAD_LETTER_LIMIT, |read| {
            poisons.iter().all(|poison| {
                read.iter().any(|record| {
                    record.header("herald.source.partition") == Some(poison.partition.to_string().as_str())
                        && record.header("herald.source.offset") == Some(poison.offset.to_string().as_str())
                })
            })
        })
        .await?;

    stop.cancel();
    let mut tab_records: Vec<TabRecord> = Vec::with_capacity(tab_count);
    while let Some(joined) = tab_tasks.join_next().await {
        tab_records.push(joined.map_err(|error| format!("a tab task failed: {error}"))?);
    }
    tab_records.sort_by_key(|record| (record.user, record.tab));
    let unexpected = {
        cluster.check_exits();
        cluster.unexpected_exits.clone()
    };
    let ended = tokio::task::block_in_place(|| cluster.shut_down());
    let panics = cluster.panics();
    drop(cluster);

    let rules = Rules {
        settle_ns: Duration::from_secs_f64(options.settle).as_nanos() as u64,
        margin_ns: options.connected_margin_ms * 1_000_000,
        resume_limit_ns: Duration::from_secs_f64(options.resume_limit).as_nanos() as u64,
        assert_no_loss: options.assert_no_loss,
        assert_no_duplicates: options.assert_no_duplicates,
        history_persists: options.redis_persistence == Persistence::Aof,
    };
    let observed = report::Observed {
        ledger: &ledger,
        tabs: &tab_records,
        producing_from,
        faults: &faults,
        poisons: &poisons,
        dead_letters: &dead_letters,
        poison_topic: &names.counted_topic,
    };
    let reckoning = report::reckon(&observed, &rules);
    let herald_exits: Vec<String> = unexpected
        .iter()
        .map(|(instance, status)| format!("herald-{instance} ended by itself ({status}) and was started again"))
        .chain(ended.iter().map(|(instance, status)| format!("herald-{instance} after SIGTERM: {status}")))
        .collect();
    let passed = reckoning.passed() && fault_error.is_none();
    let achieved_rate = options.events.saturating_sub(1) as f64 / producing_took.as_secs_f64().max(f64::EPSILON);
    let text = text_report(
        options,
        names,
        &reckoning,
        &faults,
        &poisons,
        producing_from,
        achieved_rate,
        &herald_exits,
        &panics,
        fault_error.as_deref(),
        passed,
    );
    print!("{text}");
    let json = JsonReport {
        run: &names.run,
        date: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        users: options.users,
        tabs_per_user: options.tabs,
        events: options.events,
        target_rate: options.rate,
        achieved_rate,
        faults: &faults,
        fault_error: fault_error.as_deref(),
        herald_exits,
        herald_panics: panics,
        reckoning: &reckoning,
        passed,
    };
    let json = serde_json::to_string_pretty(&json).map_err(|error| format!("cannot write the report: {error}"))?;
    for (file, contents) in [("report.txt", text), ("report.json", json), ("tabs.csv", reckoning.tabs_csv())] {
        let path = options.out.join(file);
        std::fs::write(&path, contents).map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }
    Ok(passed)
}

#[allow(clippy::too_many_arguments)]
fn text_report(
    options: &Options,
    names: &Names,
    reckoning: &Reckoning,
    faults: &[Fault],
    poisons: &[Poison],
    producing_from: u64,
    achieved_rate: f64,
    herald_exits: &[String],
    panics: &[String],
    fault_error: Option<&str>,
    passed: bool,
) -> String {
    let mut out = format!(
        "herald-chaos run {}: {} users × {} tabs, {} notifications at {:.0}/s (achieved {achieved_rate:.1}/s), {} poison records\n\n",
        names.run,
        options.users,
        options.tabs,
        options.events,
        options.rate,
        poisons.len()
    );
    out.push_str(&reckoning.text(faults, producing_from));
    if let Some(error) = fault_error {
        out.push_str(&format!("  FAIL every fault injected: {error}\n"));
    }
    out.push_str("\nherald instances:\n");
    for exit in herald_exits {
        out.push_str(&format!("  {exit}\n"));
    }
    for panic in panics {
        out.push_str(&format!("  panic: {panic}\n"));
    }
    out.push_str(&format!(
        "\n{} (logs and tabs.csv in {})\n",
        if passed { "PASSED" } else { "FAILED" },
        options.out.display()
    ));
    out
}

/// Starts again every herald instance that ended by itself, every half second, until `until` (or,
/// without one, until `done`). False when `done` came first.
async fn supervise(cluster: &mut Cluster, until: Option<Instant>, done: &CancellationToken) -> Result<bool, String> {
    loop {
        for instance in tokio::task::block_in_place(|| cluster.restart_exited())? {
            progress(&format!("herald-{instance} ended by itself; started it again"));
        }
        let pause = match until {
            Some(until) if until <= Instant::now() => return Ok(true),
            Some(until) => until.saturating_duration_since(Instant::now()).min(Duration::from_millis(500)),
            None => Duration::from_millis(500),
        };
        tokio::select! {
            () = done.cancelled() => return Ok(false),
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Sends one warm-up event to each partition and resends the missing ones every round until each
/// has arrived: then every partition is known to be consumed and the whole path to work.
async fn warm_up(kafka: &Kafka, ledger: &Ledger, names: &Names, users: &[String]) -> Result<(), String> {
    let started = Instant::now();
    for attempt in 0u32.. {
        let missing = ledger.warmups_missing();
        if missing.is_empty() {
            progress(&format!("warm-up arrived on every partition after {:.1} s", started.elapsed().as_secs_f64()));
            return Ok(());
        }
        if started.elapsed() >= WARMUP_LIMIT {
            return Err(format!(
                "warm-up events of partitions {missing:?} did not arrive within {} s; is herald consuming {}?",
                WARMUP_LIMIT.as_secs(),
                names.counted_topic
            ));
        }
        for partition in missing {
            let user = &users[partition % users.len()];
            let value = herald_loadgen::envelope::envelope(
                &names.counted_event_type,
                "herald-chaos",
                &ledger.marking.warmup_class_id(partition, attempt),
                user,
                SystemTime::now(),
            );
            if let Err(error) = kafka.send(&names.counted_topic, Some(partition as i32), user, &value).await {
                progress(&format!("warm-up send failed: {error}"));
            }
        }
        let round = Instant::now();
        while round.elapsed() < WARMUP_ROUND && !ledger.warmups_missing().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    unreachable!("the warm-up loop ends by returning")
}

/// Waits until every notification Kafka took has arrived somewhere and no copy arrived for two
/// seconds, or nothing arrived for ten seconds (a partition that stopped is not coming back), or
/// `limit`.
async fn drain(ledger: &Ledger, limit: Duration) {
    let started = Instant::now();
    let mut last = (ledger.receipts(), Instant::now());
    while started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let receipts = ledger.receipts();
        if receipts != last.0 {
            last = (receipts, Instant::now());
            continue;
        }
        let quiet = last.1.elapsed();
        if quiet >= Duration::from_secs(10) || (quiet >= Duration::from_secs(2) && ledger.undelivered() == 0) {
            break;
        }
    }
    progress(&format!(
        "drained after {:.1} s; {} notifications never arrived anywhere",
        started.elapsed().as_secs_f64(),
        ledger.undelivered()
    ));
}
