//! The reckoning: per fault window and per tab, what was lost, duplicated and misrouted; how long
//! consumption took to resume after each fault; whether every poison record was dead-lettered with
//! its reason; and the assertions.
//!
//! Definitions (also in docs/reliability.md):
//!
//! - A notification belongs to the window in which it was produced (handed to the Kafka producer).
//!   Windows: before the first fault; from each fault's start to the next fault's start; the last
//!   fault's from its start to its end plus the settling time; "after the last fault" from there to
//!   the end of producing.
//! - Every tab of the addressed user expects every notification Kafka took. A tab resumes: each
//!   socket after the first is opened with the id of the last notification the tab processed, and
//!   herald replays what it missed. **Lost** (after resume): it never arrived on any socket of
//!   that tab, live or replayed. Each loss is one of: **while disconnected** (no socket of the tab
//!   had been open for at least the connection margin when it was produced: the tab was
//!   reconnecting), **socket dropped** (a socket was connected when it was produced, and ended
//!   before it arrived), **socket held** (a socket was connected when it was produced and stayed
//!   open to the end of the run, and it never arrived). The last two are losses on a connected
//!   tab. Independently, a loss is **declared** when a later socket of the tab (opened after the
//!   notification was produced) was answered `recovered:false`: herald told the tab it could not
//!   prove nothing was missing, so the browser refreshes from the platform's APIs. Any other loss
//!   is **silent**.
//! - **Duplicated**: a notification whose `id` the tab had already processed (on any of its
//!   sockets); the tab drops it. **Repeated**: a notification of an event the tab had already
//!   received under another id (herald notified the same event twice).
//! - **Misrouted**: a notification of this run addressed to another user.
//! - **Resumes**, by the window in which the socket opened: how many sockets were opened with
//!   `since`, how many were answered `recovered:true` and `recovered:false`, the `missed` they
//!   announced and the replayed notifications that arrived. A socket opened with `since` whose first
//!   text frame is a notification rather than the `resumed` frame is **unanswered**.
//! - **Resume** after a fault: for every partition of the topic, the time from the fault's end to
//!   the first delivery (on any tab) of a notification of that partition produced after the end;
//!   the slowest partition is the fault's figure ("never" if a partition never delivered again).
//!   **Stall** is the same measured from the fault's start.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::faults::{Fault, FaultKind, Poison};
use crate::kafka::DeadLetter;
use crate::ledger::{Ledger, seconds};
use herald_loadgen::resume::Resumes;

use crate::tabs::{SocketRecord, TabRecord};

/// What the assertions need besides the records.
pub(crate) struct Rules {
    /// After the last fault's end, how long before its window closes and "after the last fault"
    /// begins.
    pub settle_ns: u64,
    /// A socket counts as connected this long after it opened (time for herald to subscribe it).
    pub margin_ns: u64,
    /// Consumption must resume within this long of each fault's end.
    pub resume_limit_ns: u64,
    pub assert_no_loss: bool,
    pub assert_no_duplicates: bool,
    /// The run's Redis keeps its data across its restart (append-only file), so history survives
    /// every fault and no resume may be answered `recovered:false`.
    pub history_persists: bool,
}

/// Counts of one window, one tab.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub(crate) struct Counts {
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub lost_while_disconnected: u64,
    pub lost_as_socket_dropped: u64,
    pub lost_on_held_socket: u64,
    /// Lost, but a later resume of the tab was answered `recovered:false`.
    pub lost_declared: u64,
    pub duplicated: u64,
    pub repeated: u64,
    pub misrouted: u64,
    /// Sockets of the tab opened with `since` in the window, and how many were answered
    /// `recovered:true` and `recovered:false`.
    pub resumes: u64,
    pub recovered: u64,
    pub not_recovered: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.expected += other.expected;
        self.received += other.received;
        self.lost += other.lost;
        self.lost_while_disconnected += other.lost_while_disconnected;
        self.lost_as_socket_dropped += other.lost_as_socket_dropped;
        self.lost_on_held_socket += other.lost_on_held_socket;
        self.lost_declared += other.lost_declared;
        self.duplicated += other.duplicated;
        self.repeated += other.repeated;
        self.misrouted += other.misrouted;
        self.resumes += other.resumes;
        self.recovered += other.recovered;
        self.not_recovered += other.not_recovered;
    }

    pub(crate) fn lost_connected(&self) -> u64 {
        self.lost - self.lost_while_disconnected
    }

    /// Lost with no `recovered:false` to tell the tab.
    pub(crate) fn lost_silent(&self) -> u64 {
        self.lost - self.lost_declared
    }
}

/// Counts one socket in its window's [`Resumes`], if it was opened with `since`.
fn count_resume(resumes: &mut Resumes, socket: &SocketRecord) {
    if let Some(resume) = &socket.resume {
        resumes.count(resume.answer, resume.replayed, resume.unanswered);
    }
}

/// One resume answered `recovered:false`: when, where and why (its window).
#[derive(Debug, Serialize)]
pub(crate) struct NotRecovered {
    pub user: usize,
    pub tab: usize,
    pub instance: usize,
    /// Seconds since producing began at which the socket opened.
    pub at_seconds: f64,
    /// The window it opened in: the fault that caused it, usually.
    pub window: String,
    pub since: String,
    pub missed: u64,
    /// Whether the run's Redis had been restarted before (its history lost, when it does not
    /// persist).
    pub after_redis_restart: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct Window {
    pub name: String,
    /// Seconds since producing began.
    pub from_seconds: f64,
    pub to_seconds: Option<f64>,
    /// Notifications produced in the window (that Kafka took).
    pub notifications: u64,
    pub totals: Counts,
    /// Tabs that lost at least one notification.
    pub tabs_losing: u64,
    /// Notifications lost on at least one tab, by the partition they were produced to (a
    /// partition that stopped shows here).
    pub lost_by_partition: BTreeMap<i32, u64>,
    /// Sockets opened with `since` in the window, and how they were answered.
    pub resumes: Resumes,
    /// Every tab with anything to report: (user, tab, counts).
    #[serde(skip)]
    pub tabs: Vec<(usize, usize, Counts)>,
    /// Whether this window is "after the last fault" (its connected losses are asserted).
    pub after_last_fault: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct Resume {
    pub fault: String,
    /// From the fault's end to the first delivery, slowest partition; `None`: never.
    pub resume_seconds: Option<f64>,
    /// From the fault's start, slowest partition; `None`: never.
    pub stall_seconds: Option<f64>,
    /// Partitions that never delivered a notification produced after the fault's end.
    pub partitions_never_resumed: Vec<i32>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PoisonCheck {
    #[serde(flatten)]
    pub poison: Poison,
    /// `herald.reason` of its dead-letter record; `None` when no record names it as its source.
    pub dead_letter_reason: Option<String>,
    pub dead_letter_bytes: Option<usize>,
    pub ok: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct Assertion {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Reckoning {
    pub windows: Vec<Window>,
    pub resume: Vec<Resume>,
    pub poison: Vec<PoisonCheck>,
    /// Dead-letter records that name no poison record as their source, by reason.
    pub other_dead_letters: BTreeMap<String, u64>,
    pub misrouted_warmups: u64,
    /// Every resume answered `recovered:false`.
    pub not_recovered: Vec<NotRecovered>,
    /// Sockets opened with `since` before producing began (warm-up), and how they were answered.
    pub resumes_before_producing: Resumes,
    /// Notifications of any kind (warm-up ones too) whose id the tab had already processed.
    pub duplicate_ids: u64,
    /// Notifications whose id was not newer than the tab's last one.
    pub out_of_order: u64,
    pub reconnections: u64,
    /// Why sockets ended during the run, by reason.
    pub socket_ends: BTreeMap<String, u64>,
    pub failed_handshakes: BTreeMap<String, u64>,
    /// Notifications Kafka refused.
    pub production_failures: u64,
    pub assertions: Vec<Assertion>,
}

impl Reckoning {
    pub(crate) fn passed(&self) -> bool {
        self.assertions.iter().all(|assertion| assertion.passed)
    }
}

/// Where each window starts and ends (ledger nanoseconds; `None`: open-ended) and its name.
fn window_bounds(producing_from: u64, faults: &[Fault], settle_ns: u64) -> Vec<(String, u64, Option<u64>)> {
    let Some(last) = faults.last() else { return vec![("no faults".to_owned(), producing_from, None)] };
    let mut bounds = vec![("before the first fault".to_owned(), producing_from, Some(faults[0].start_ns))];
    for pair in faults.windows(2) {
        bounds.push((pair[0].kind.name().to_owned(), pair[0].start_ns, Some(pair[1].start_ns)));
    }
    let settled = last.end_ns + settle_ns;
    bounds.push((last.kind.name().to_owned(), last.start_ns, Some(settled)));
    bounds.push(("after the last fault".to_owned(), settled, None));
    bounds
}

/// Everything a run recorded.
pub(crate) struct Observed<'a> {
    pub ledger: &'a Ledger,
    pub tabs: &'a [TabRecord],
    /// When producing began (ledger nanoseconds).
    pub producing_from: u64,
    pub faults: &'a [Fault],
    pub poisons: &'a [Poison],
    pub dead_letters: &'a [DeadLetter],
    /// The topic the poison records were produced to.
    pub poison_topic: &'a str,
}

pub(crate) fn reckon(observed: &Observed<'_>, rules: &Rules) -> Reckoning {
    let Observed { ledger, tabs, producing_from, faults, poisons, dead_letters, poison_topic } = *observed;
    let bounds = window_bounds(producing_from, faults, rules.settle_ns);
    let window_at = |at: u64| -> Option<usize> {
        bounds.iter().position(|(_, from, to)| at >= *from && to.is_none_or(|to| at < to))
    };
    let window_of = |seq: u64| -> Option<usize> { window_at(ledger.sent_at(seq)?) };
    let events_of_window: Vec<u64> = {
        let mut counts = vec![0; bounds.len()];
        for seq in (0..ledger.marking.events()).filter(|seq| ledger.expected(*seq)) {
            if let Some(window) = window_of(seq) {
                counts[window] += 1;
            }
        }
        counts
    };
    let users = ledger.marking.users();
    let mut lost_by_partition: Vec<BTreeMap<i32, BTreeSet<u64>>> = vec![BTreeMap::new(); bounds.len()];
    let mut per_window_tabs: Vec<Vec<(usize, usize, Counts)>> = vec![Vec::new(); bounds.len()];
    let mut resumes = vec![Resumes::default(); bounds.len()];
    let mut resumes_before_producing = Resumes::default();
    for tab in tabs {
        let mut counts = vec![Counts::default(); bounds.len()];
        let received: BTreeSet<u64> =
            tab.sockets.iter().flat_map(|socket| socket.received.iter().map(|(seq, _)| *seq)).collect();
        for seq in (tab.user as u64..ledger.marking.events()).step_by(users) {
            if !ledger.expected(seq) {
                continue;
            }
            let (Some(window), Some(sent)) = (window_of(seq), ledger.sent_at(seq)) else { continue };
            counts[window].expected += 1;
            if received.contains(&seq) {
                counts[window].received += 1;
            } else {
                counts[window].lost += 1;
                lost_by_partition[window].entry(ledger.partition(seq).unwrap_or(-1)).or_default().insert(seq);
                if tab.sockets.iter().any(|socket| socket.opened_ns >= sent && socket.recovered() == Some(false)) {
                    counts[window].lost_declared += 1;
                }
                let connected: Vec<_> =
                    tab.sockets.iter().filter(|socket| socket.connected_at(sent, rules.margin_ns)).collect();
                if connected.is_empty() {
                    counts[window].lost_while_disconnected += 1;
                } else if connected.iter().any(|socket| socket.closed.is_none()) {
                    counts[window].lost_on_held_socket += 1;
                } else {
                    counts[window].lost_as_socket_dropped += 1;
                }
            }
        }
        for socket in &tab.sockets {
            for seq in &socket.duplicated {
                if let Some(window) = window_of(*seq) {
                    counts[window].duplicated += 1;
                }
            }
            for seq in &socket.repeated {
                if let Some(window) = window_of(*seq) {
                    counts[window].repeated += 1;
                }
            }
            for seq in &socket.misrouted {
                if let Some(window) = window_of(*seq) {
                    counts[window].misrouted += 1;
                }
            }
            match window_at(socket.opened_ns) {
                Some(window) => {
                    count_resume(&mut resumes[window], socket);
                    if socket.resume.is_some() {
                        counts[window].resumes += 1;
                        counts[window].recovered += u64::from(socket.recovered() == Some(true));
                        counts[window].not_recovered += u64::from(socket.recovered() == Some(false));
                    }
                }
                None => count_resume(&mut resumes_before_producing, socket),
            }
        }
        for (window, counts) in counts.into_iter().enumerate() {
            per_window_tabs[window].push((tab.user, tab.tab, counts));
        }
    }
    let last_fault_window = if faults.is_empty() { usize::MAX } else { bounds.len() - 1 };
    let windows: Vec<Window> = bounds
        .iter()
        .zip(per_window_tabs)
        .enumerate()
        .map(|(index, ((name, from, to), tabs))| {
            let mut totals = Counts::default();
            for (_, _, counts) in &tabs {
                totals.add(counts);
            }
            Window {
                name: name.clone(),
                from_seconds: seconds(from.saturating_sub(producing_from)),
                to_seconds: to.map(|to| seconds(to.saturating_sub(producing_from))),
                notifications: events_of_window[index],
                tabs_losing: tabs.iter().filter(|(_, _, counts)| counts.lost > 0).count() as u64,
                lost_by_partition: lost_by_partition[index]
                    .iter()
                    .map(|(partition, lost)| (*partition, lost.len() as u64))
                    .collect(),
                totals,
                resumes: resumes[index],
                tabs,
                after_last_fault: index == last_fault_window,
            }
        })
        .collect();

    let resume: Vec<Resume> = faults.iter().map(|fault| resume_after(ledger, fault)).collect();

    let poison: Vec<PoisonCheck> = poisons
        .iter()
        .map(|poison| {
            let found = dead_letters.iter().find(|record| names_source(record, poison_topic, poison));
            let reason = found.and_then(|record| record.header("herald.reason")).map(str::to_owned);
            PoisonCheck {
                ok: reason.as_deref() == Some(poison.reason),
                dead_letter_reason: reason,
                dead_letter_bytes: found.map(|record| record.bytes),
                poison: poison.clone(),
            }
        })
        .collect();
    let mut other_dead_letters = BTreeMap::new();
    for record in
        dead_letters.iter().filter(|record| !poisons.iter().any(|poison| names_source(record, poison_topic, poison)))
    {
        *other_dead_letters
            .entry(record.header("herald.reason").unwrap_or("(no herald.reason)").to_owned())
            .or_insert(0) += 1;
    }

    let mut socket_ends = BTreeMap::new();
    let mut failed_handshakes = BTreeMap::new();
    let mut reconnections = 0;
    for tab in tabs {
        reconnections += tab.sockets.len().saturating_sub(1) as u64;
        for (why, count) in &tab.failed_handshakes {
            *failed_handshakes.entry(why.clone()).or_insert(0) += count;
        }
        for socket in &tab.sockets {
            if let Some((_, why)) = &socket.closed {
                *socket_ends.entry(format!("herald-{}: {why}", socket.instance)).or_insert(0) += 1;
            }
        }
    }
    let misrouted_warmups = tabs.iter().flat_map(|tab| &tab.sockets).map(|socket| socket.misrouted_warmups).sum();
    let duplicate_ids = tabs.iter().flat_map(|tab| &tab.sockets).map(|socket| socket.duplicate_ids).sum();
    let out_of_order = tabs.iter().flat_map(|tab| &tab.sockets).map(|socket| socket.out_of_order).sum();
    let redis_restarted = faults.iter().find(|fault| fault.kind == FaultKind::RedisRestart).map(|fault| fault.start_ns);
    let not_recovered: Vec<NotRecovered> = tabs
        .iter()
        .flat_map(|tab| tab.sockets.iter().map(move |socket| (tab, socket)))
        .filter_map(|(tab, socket)| {
            let resume = socket.resume.as_ref()?;
            let (false, missed) = resume.answer? else { return None };
            Some(NotRecovered {
                user: tab.user,
                tab: tab.tab,
                instance: socket.instance,
                at_seconds: seconds(socket.opened_ns.saturating_sub(producing_from)),
                window: window_at(socket.opened_ns)
                    .map_or_else(|| "before producing".to_owned(), |window| bounds[window].0.clone()),
                since: resume.since.clone(),
                missed,
                after_redis_restart: redis_restarted.is_some_and(|restarted| socket.opened_ns >= restarted),
            })
        })
        .collect();
    let production_failures = (0..ledger.marking.events())
        .filter(|seq| ledger.sent_at(*seq).is_some() && !ledger.expected(*seq))
        .count() as u64;

    let mut reckoning = Reckoning {
        windows,
        resume,
        poison,
        other_dead_letters,
        misrouted_warmups,
        not_recovered,
        resumes_before_producing,
        duplicate_ids,
        out_of_order,
        reconnections,
        socket_ends,
        failed_handshakes,
        production_failures,
        assertions: Vec::new(),
    };
    reckoning.assertions = assertions(&reckoning, rules);
    reckoning
}

/// Whether a dead-letter record names `poison` as its source.
fn names_source(record: &DeadLetter, topic: &str, poison: &Poison) -> bool {
    record.header("herald.source.topic") == Some(topic)
        && record.header("herald.source.partition") == Some(poison.partition.to_string().as_str())
        && record.header("herald.source.offset") == Some(poison.offset.to_string().as_str())
}

fn resume_after(ledger: &Ledger, fault: &Fault) -> Resume {
    // Per partition: the earliest first delivery of a notification produced after `from`, and
    // whether any was produced at all.
    let first_after = |from: u64| -> BTreeMap<i32, Option<u64>> {
        let mut first: BTreeMap<i32, Option<u64>> = BTreeMap::new();
        for seq in 0..ledger.marking.events() {
            let (Some(sent), Some(partition)) = (ledger.sent_at(seq), ledger.partition(seq)) else { continue };
            if sent < from {
                continue;
            }
            let entry = first.entry(partition).or_insert(None);
            if let Some(delivered) = ledger.first_delivery(seq) {
                *entry = Some(entry.map_or(delivered, |earlier| earlier.min(delivered)));
            }
        }
        first
    };
    let slowest = |from: u64| -> (Option<f64>, Vec<i32>) {
        let first = first_after(from);
        let never: Vec<i32> = first.iter().filter(|(_, at)| at.is_none()).map(|(partition, _)| *partition).collect();
        if !never.is_empty() || first.is_empty() {
            return (None, never);
        }
        let slowest = first.values().flatten().map(|at| at.saturating_sub(from)).max().unwrap_or(0);
        (Some(seconds(slowest)), never)
    };
    let (resume_seconds, partitions_never_resumed) = slowest(fault.end_ns);
    let (stall_seconds, _) = slowest(fault.start_ns);
    Resume { fault: fault.kind.name().to_owned(), resume_seconds, stall_seconds, partitions_never_resumed }
}

fn assertions(reckoning: &Reckoning, rules: &Rules) -> Vec<Assertion> {
    let mut assertions = Vec::new();
    let misrouted: u64 =
        reckoning.windows.iter().map(|window| window.totals.misrouted).sum::<u64>() + reckoning.misrouted_warmups;
    assertions.push(Assertion {
        name: "0 misrouted (cross-user)".into(),
        passed: misrouted == 0,
        detail: format!("{misrouted} notifications arrived on another user's socket"),
    });
    let bad: Vec<String> = reckoning
        .poison
        .iter()
        .filter(|check| !check.ok)
        .map(|check| match &check.dead_letter_reason {
            None => format!(
                "{} ({}/{}): not in the dead-letter topic",
                check.poison.name, check.poison.partition, check.poison.offset
            ),
            Some(reason) => format!("{}: reason {reason:?}, expected {:?}", check.poison.name, check.poison.reason),
        })
        .collect();
    assertions.push(Assertion {
        name: "every poison record dead-lettered with its reason".into(),
        passed: bad.is_empty(),
        detail: if bad.is_empty() {
            format!("{} of {}", reckoning.poison.len(), reckoning.poison.len())
        } else {
            bad.join("; ")
        },
    });
    let limit = seconds(rules.resume_limit_ns);
    let slow: Vec<String> = reckoning
        .resume
        .iter()
        .filter(|resume| resume.resume_seconds.is_none_or(|seconds| seconds > limit))
        .map(|resume| match resume.resume_seconds {
            Some(seconds) => format!("{} after {seconds:.1} s", resume.fault),
            None => format!("{}: never on partitions {:?}", resume.fault, resume.partitions_never_resumed),
        })
        .collect();
    assertions.push(Assertion {
        name: format!("consumption resumed within {limit:.0} s of each fault"),
        passed: slow.is_empty(),
        detail: if slow.is_empty() { "every partition of every fault".into() } else { slow.join("; ") },
    });
    if let Some(after) = reckoning.windows.iter().find(|window| window.after_last_fault) {
        let lost = after.totals.lost_connected();
        let tabs = after.tabs.iter().filter(|(_, _, counts)| counts.lost_connected() > 0).count();
        assertions.push(Assertion {
            name: "nothing produced after the last fault lost on a connected tab".into(),
            passed: lost == 0 && after.notifications > 0,
            detail: if after.notifications == 0 {
                "no notification was produced after the last fault had settled: lengthen the run".into()
            } else {
                format!(
                    "{lost} copies lost on connected tabs ({tabs} tabs losing any), of {} notifications",
                    after.notifications
                )
            },
        });
    }
    if rules.assert_no_loss {
        assertions.extend(loss_assertions(reckoning, rules));
    }
    if rules.assert_no_duplicates {
        let duplicated: u64 = reckoning.windows.iter().map(|window| window.totals.duplicated).sum();
        assertions.push(Assertion {
            name: "0 duplicates by id on every tab (--assert-no-duplicates)".into(),
            passed: reckoning.duplicate_ids == 0,
            detail: format!(
                "{} notifications whose id the tab had already processed ({duplicated} of them counted events)",
                reckoning.duplicate_ids
            ),
        });
        let repeated: u64 = reckoning.windows.iter().map(|window| window.totals.repeated).sum();
        if rules.history_persists {
            // Dedupe marks live in the same Redis as history: when it keeps its data, no event may be
            // notified twice, under any id.
            assertions.push(Assertion {
                name: "no event notified twice under another id (--assert-no-duplicates; Redis keeps its data)".into(),
                passed: repeated == 0,
                detail: format!("{repeated} copies of events a tab had already received under another id"),
            });
        }
    }
    assertions
}

/// With `--assert-no-loss`: 0 lost after resume on every tab in every window, every resume
/// answered as the contract says, and `recovered:false` only where the history was really lost.
fn loss_assertions(reckoning: &Reckoning, rules: &Rules) -> Vec<Assertion> {
    let mut assertions = Vec::new();
    let mut totals = Counts::default();
    let mut resumes = reckoning.resumes_before_producing;
    for window in &reckoning.windows {
        totals.add(&window.totals);
        resumes.add(&window.resumes);
    }
    let losing: Vec<String> = reckoning
        .windows
        .iter()
        .filter(|window| window.totals.lost > 0)
        .map(|window| format!("{}: {} ({} declared)", window.name, window.totals.lost, window.totals.lost_declared))
        .collect();
    let by_window = if losing.is_empty() { String::new() } else { format!("; {}", losing.join(", ")) };
    if rules.history_persists {
        assertions.push(Assertion {
            name: "0 lost after resume on every tab, in every window (--assert-no-loss; history survives every fault)"
                .into(),
            passed: totals.lost == 0,
            detail: format!(
                "{} lost: {} silent, {} declared by recovered:false{by_window}",
                totals.lost,
                totals.lost_silent(),
                totals.lost_declared
            ),
        });
    } else {
        assertions.push(Assertion {
            name: "0 lost after resume on every tab, in every window, but what a recovered:false declared \
                   (--assert-no-loss; Redis without persistence)"
                .into(),
            passed: totals.lost_silent() == 0,
            detail: format!(
                "{} silent, {} declared by recovered:false (counted, not silent){by_window}",
                totals.lost_silent(),
                totals.lost_declared
            ),
        });
    }
    assertions.push(Assertion {
        name: "every resume answered first by one resumed frame".into(),
        passed: resumes.unanswered == 0,
        detail: format!(
            "{} resumes ({} recovered:true, {} recovered:false); {} sockets opened with since got a notification \
             before any resumed frame",
            resumes.resumes, resumes.recovered, resumes.not_recovered, resumes.unanswered
        ),
    });
    let unexpected: Vec<&NotRecovered> =
        reckoning.not_recovered.iter().filter(|resume| rules.history_persists || !resume.after_redis_restart).collect();
    let mut windows: BTreeMap<&str, u64> = BTreeMap::new();
    for resume in &unexpected {
        *windows.entry(resume.window.as_str()).or_insert(0) += 1;
    }
    assertions.push(Assertion {
        name: if rules.history_persists {
            "every resume recovered:true (Redis keeps history across its restart)".into()
        } else {
            "recovered:false only after the Redis restart lost the history".into()
        },
        passed: unexpected.is_empty(),
        detail: if unexpected.is_empty() {
            format!("{} recovered:false, each after the history was lost", reckoning.not_recovered.len())
        } else {
            format!("{} recovered:false where history was kept, by window: {windows:?}", unexpected.len())
        },
    });
    assertions
}

/// Most tabs listed per window in the text report (all are in tabs.csv).
const WORST_TABS: usize = 5;

impl Reckoning {
    pub(crate) fn text(&self, faults: &[Fault], producing_from: u64) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "faults (seconds since producing began):");
        for fault in faults {
            let _ = writeln!(
                out,
                "  {:<14} {:>6.1} → {:>6.1}  {}",
                fault.kind.name(),
                seconds(fault.start_ns.saturating_sub(producing_from)),
                seconds(fault.end_ns.saturating_sub(producing_from)),
                fault.detail
            );
        }
        let _ = writeln!(out, "\nper window (a notification belongs to the window it was produced in):");
        let _ = writeln!(
            out,
            "  {:<24} {:>12} {:>8} {:>8} {:>7} {:>12} {:>8} {:>6} {:>8} {:>11} {:>10} {:>8} {:>9}",
            "window",
            "seconds",
            "produced",
            "expected",
            "lost",
            "disconnected",
            "dropped",
            "held",
            "declared",
            "tabs losing",
            "duplicated",
            "repeated",
            "misrouted"
        );
        for window in &self.windows {
            let span = match window.to_seconds {
                Some(to) => format!("{:.1}-{to:.1}", window.from_seconds),
                None => format!("{:.1}-end", window.from_seconds),
            };
            let _ = writeln!(
                out,
                "  {:<24} {:>12} {:>8} {:>8} {:>7} {:>12} {:>8} {:>6} {:>8} {:>11} {:>10} {:>8} {:>9}",
                window.name,
                span,
                window.notifications,
                window.totals.expected,
                window.totals.lost,
                window.totals.lost_while_disconnected,
                window.totals.lost_as_socket_dropped,
                window.totals.lost_on_held_socket,
                window.totals.lost_declared,
                window.tabs_losing,
                window.totals.duplicated,
                window.totals.repeated,
                window.totals.misrouted
            );
            let resumes = &window.resumes;
            if resumes.resumes > 0 {
                let _ = writeln!(
                    out,
                    "      resumes (sockets opened with since in this window): {} — {} recovered:true, {} recovered:false, \
                     {} missed announced, {} replayed, {} unanswered",
                    resumes.resumes,
                    resumes.recovered,
                    resumes.not_recovered,
                    resumes.missed,
                    resumes.replayed,
                    resumes.unanswered
                );
            }
            let trouble = |counts: &Counts| counts.lost + counts.duplicated + counts.repeated + counts.misrouted;
            let mut worst: Vec<&(usize, usize, Counts)> =
                window.tabs.iter().filter(|(_, _, counts)| trouble(counts) > 0).collect();
            worst.sort_by_key(|(user, tab, counts)| (std::cmp::Reverse(trouble(counts)), *user, *tab));
            for (user, tab, counts) in worst.iter().take(WORST_TABS) {
                let _ = writeln!(
                    out,
                    "      user {user:>3} tab {tab}: {} lost ({} disconnected, {} dropped, {} held; {} declared), \
                     {} duplicated, {} repeated, {} misrouted of {}; {} resumes ({} recovered:false)",
                    counts.lost,
                    counts.lost_while_disconnected,
                    counts.lost_as_socket_dropped,
                    counts.lost_on_held_socket,
                    counts.lost_declared,
                    counts.duplicated,
                    counts.repeated,
                    counts.misrouted,
                    counts.expected,
                    counts.resumes,
                    counts.not_recovered
                );
            }
            if worst.len() > WORST_TABS {
                let _ = writeln!(out, "      … {} more tabs (tabs.csv)", worst.len() - WORST_TABS);
            }
            if !window.lost_by_partition.is_empty() {
                let _ = writeln!(out, "      notifications lost, by partition: {:?}", window.lost_by_partition);
            }
        }
        let _ = writeln!(
            out,
            "\nresume after each fault (slowest partition; first delivery of a notification produced after the fault):"
        );
        let show = |value: Option<f64>| value.map_or_else(|| "never".to_owned(), |seconds| format!("{seconds:.2} s"));
        for resume in &self.resume {
            let _ = writeln!(
                out,
                "  {:<14} from end {:>9}   from start {:>9}{}",
                resume.fault,
                show(resume.resume_seconds),
                show(resume.stall_seconds),
                if resume.partitions_never_resumed.is_empty() {
                    String::new()
                } else {
                    format!("   partitions never resumed: {:?}", resume.partitions_never_resumed)
                }
            );
        }
        let _ = writeln!(out, "\ndead-letter topic:");
        if self.poison.is_empty() {
            let _ = writeln!(out, "  no poison records were injected");
        }
        for check in &self.poison {
            let _ = writeln!(
                out,
                "  {} {:<16} {:<44} partition {} offset {:<6} → {}",
                if check.ok { "ok  " } else { "FAIL" },
                check.poison.name,
                check.poison.description,
                check.poison.partition,
                check.poison.offset,
                match (&check.dead_letter_reason, check.dead_letter_bytes) {
                    (Some(reason), Some(bytes)) =>
                        format!("herald.reason={reason} ({bytes} bytes), expected {}", check.poison.reason),
                    _ => format!("missing, expected herald.reason={}", check.poison.reason),
                }
            );
        }
        if !self.other_dead_letters.is_empty() {
            let _ = writeln!(out, "  other dead-letter records: {:?}", self.other_dead_letters);
        }
        let before = &self.resumes_before_producing;
        if before.resumes > 0 {
            let _ = writeln!(
                out,
                "\nresumes before producing began: {} — {} recovered:true, {} recovered:false, {} unanswered",
                before.resumes, before.recovered, before.not_recovered, before.unanswered
            );
        }
        let _ = writeln!(out, "\nrecovered:false resumes: {}", self.not_recovered.len());
        for resume in self.not_recovered.iter().take(WORST_TABS * 2) {
            let _ = writeln!(
                out,
                "  user {:>3} tab {} on herald-{} at {:.1} s ({}{}): since {}, {} missed sent",
                resume.user,
                resume.tab,
                resume.instance,
                resume.at_seconds,
                resume.window,
                if resume.after_redis_restart { ", after the Redis restart" } else { "" },
                resume.since,
                resume.missed
            );
        }
        if self.not_recovered.len() > WORST_TABS * 2 {
            let _ = writeln!(out, "  … {} more (report.json)", self.not_recovered.len() - WORST_TABS * 2);
        }
        let _ = writeln!(
            out,
            "ids: {} duplicates by id (dropped by the tabs), {} out of order",
            self.duplicate_ids, self.out_of_order
        );
        let _ = writeln!(out, "\nsockets: {} reconnections", self.reconnections);
        for (why, count) in &self.socket_ends {
            let _ = writeln!(out, "  {count:>5} × ended: {why}");
        }
        for (why, count) in &self.failed_handshakes {
            let _ = writeln!(out, "  {count:>5} × handshake failed: {why}");
        }
        if self.production_failures > 0 {
            let _ = writeln!(
                out,
                "  {} notifications refused by Kafka (not expected by any tab)",
                self.production_failures
            );
        }
        let _ = writeln!(out, "\nassertions:");
        for assertion in &self.assertions {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                if assertion.passed { "PASS" } else { "FAIL" },
                assertion.name,
                assertion.detail
            );
        }
        out
    }

    /// One line per window and tab: `window,user,tab,expected,received,lost,...`.
    pub(crate) fn tabs_csv(&self) -> String {
        let mut out = String::from(
            "window,user,tab,expected,received,lost,lost_while_disconnected,lost_as_socket_dropped,\
             lost_on_held_socket,lost_declared,duplicated,repeated,misrouted,resumes,recovered,not_recovered\n",
        );
        for window in &self.windows {
            for (user, tab, counts) in &window.tabs {
                let _ = writeln!(
                    out,
                    "{},{user},{tab},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    window.name,
                    counts.expected,
                    counts.received,
                    counts.lost,
                    counts.lost_while_disconnected,
                    counts.lost_as_socket_dropped,
                    counts.lost_on_held_socket,
                    counts.lost_declared,
                    counts.duplicated,
                    counts.repeated,
                    counts.misrouted,
                    counts.resumes,
                    counts.recovered,
                    counts.not_recovered
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tabs::ResumeRecord;

    fn socket(opened_ns: u64, closed: Option<u64>, received: &[u64]) -> SocketRecord {
        SocketRecord {
            instance: 0,
            opened_ns,
            closed: closed.map(|at| (at, "closed by the server: 1012".to_owned())),
            resume: None,
            received: received.iter().map(|seq| (*seq, 0)).collect(),
            duplicated: Vec::new(),
            repeated: Vec::new(),
            duplicate_ids: 0,
            out_of_order: 0,
            misrouted: Vec::new(),
            misrouted_warmups: 0,
        }
    }

    fn rules() -> Rules {
        Rules {
            settle_ns: 50,
            margin_ns: 10,
            resume_limit_ns: 1000,
            assert_no_loss: false,
            assert_no_duplicates: false,
            history_persists: true,
        }
    }

    /// A ledger of one user whose events were sent at `sent` (all to partition 0), delivered
    /// first at `delivered` (0: never).
    fn ledger(sent: &[u64], delivered: &[u64]) -> Ledger {
        let ledger = Ledger::new("t", 1, sent.len() as u64, 1);
        for (seq, (sent, delivered)) in sent.iter().zip(delivered).enumerate() {
            ledger.mark_sent_at(seq as u64, *sent);
            ledger.acknowledged(seq as u64, 0);
            if *delivered > 0 {
                ledger.record_receipt(seq as u64, *delivered);
            }
        }
        ledger
    }

    fn fault(kind: FaultKind, start_ns: u64, end_ns: u64) -> Fault {
        Fault { kind, start_ns, end_ns, detail: String::new() }
    }

    fn tab(sockets: Vec<SocketRecord>) -> TabRecord {
        TabRecord { user: 0, tab: 0, sockets, failed_handshakes: BTreeMap::new() }
    }

    fn observed<'a>(
        ledger: &'a Ledger,
        tabs: &'a [TabRecord],
        faults: &'a [Fault],
        poisons: &'a [Poison],
        dead_letters: &'a [DeadLetter],
    ) -> Observed<'a> {
        Observed { ledger, tabs, producing_from: 100, faults, poisons, dead_letters, poison_topic: "topic" }
    }

    fn verdicts(reckoning: &Reckoning) -> Vec<(&str, bool)> {
        reckoning.assertions.iter().map(|assertion| (assertion.name.as_str(), assertion.passed)).collect()
    }

    /// Events at 100 to 600; a kill from 200 to 300, settled at 350. The first socket (open since
    /// 0) drops at 250; the second opens at 335 (connected from 345).
    #[test]
    fn losses_are_counted_per_window_and_told_apart() {
        let ledger = ledger(&[100, 200, 300, 340, 500, 600], &[105, 0, 0, 0, 505, 605]);
        let record = tab(vec![socket(0, Some(250), &[0]), socket(335, None, &[4, 5])]);
        let faults = [fault(FaultKind::Kill, 200, 300)];
        let reckoning = reckon(&observed(&ledger, &[record], &faults, &[], &[]), &rules());
        let names: Vec<&str> = reckoning.windows.iter().map(|window| window.name.as_str()).collect();
        assert_eq!(names, ["before the first fault", "kill", "after the last fault"]);
        assert_eq!(reckoning.windows[0].totals, Counts { expected: 1, received: 1, ..Counts::default() });
        // 200: the first socket was connected and dropped before it arrived; 300: disconnected;
        // 340: the second socket was open, but for less than the margin.
        assert_eq!(
            reckoning.windows[1].totals,
            Counts { expected: 3, lost: 3, lost_while_disconnected: 2, lost_as_socket_dropped: 1, ..Counts::default() }
        );
        assert_eq!((reckoning.windows[1].from_seconds, reckoning.windows[1].to_seconds), (100e-9, Some(250e-9)));
        assert_eq!(reckoning.windows[2].totals, Counts { expected: 2, received: 2, ..Counts::default() });
        assert!(reckoning.windows[2].after_last_fault);
        // The first delivery of an event sent after the end (300, 340 and 500 on partition 0) came
        // at 505.
        assert_eq!(reckoning.resume[0].resume_seconds, Some(205e-9));
        assert_eq!(reckoning.resume[0].stall_seconds, Some(305e-9));
        assert!(verdicts(&reckoning).iter().all(|(_, passed)| *passed), "{:?}", verdicts(&reckoning));
    }

    #[test]
    fn a_loss_on_a_held_socket_after_the_last_fault_fails_and_a_silent_partition_never_resumes() {
        let ledger = ledger(&[100, 200], &[0, 0]);
        let record = tab(vec![socket(0, None, &[])]);
        let faults = [fault(FaultKind::Poison, 100, 100)];
        let poison =
            Poison { name: "schema", description: "", reason: "invalid_payload", bytes: 1, partition: 0, offset: 7 };
        let dead_letter = |reason: &str| DeadLetter {
            headers: [
                ("herald.reason", reason),
                ("herald.source.topic", "topic"),
                ("herald.source.partition", "0"),
                ("herald.source.offset", "7"),
            ]
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect(),
            bytes: 1,
        };
        let dead_letters = [dead_letter("invalid_payload")];
        let reckoning =
            reckon(&observed(&ledger, &[record], &faults, std::slice::from_ref(&poison), &dead_letters), &rules());
        assert_eq!(
            verdicts(&reckoning),
            [
                ("0 misrouted (cross-user)", true),
                ("every poison record dead-lettered with its reason", true),
                ("consumption resumed within 0 s of each fault", false),
                ("nothing produced after the last fault lost on a connected tab", false),
            ]
        );
        assert_eq!(reckoning.resume[0].partitions_never_resumed, [0]);
        assert_eq!(reckoning.windows[1].totals.lost_on_held_socket, 1);
        // The wrong reason, or none, fails.
        let record = tab(vec![socket(0, None, &[])]);
        let dead_letters = [dead_letter("not_json")];
        let reckoning = reckon(&observed(&ledger, &[record], &faults, &[poison], &dead_letters), &rules());
        assert!(!reckoning.poison[0].ok);
        assert_eq!(reckoning.other_dead_letters.len(), 0);
    }

    /// A Redis restart from 200 to 300 (settled at 350). The first socket drops at 250; the second
    /// opens at 335 with `since` and is answered `recovered:false`: what was produced before it
    /// opened and never came is declared; the rest must have come.
    fn after_a_lost_history(answer: (bool, u64), unanswered: bool) -> (Ledger, TabRecord, [Fault; 1]) {
        let ledger = ledger(&[100, 200, 300, 340, 500, 600], &[105, 0, 0, 345, 505, 605]);
        let mut resumed = socket(335, None, &[3, 4, 5]);
        resumed.resume = Some(ResumeRecord { since: "105-0".into(), answer: Some(answer), unanswered, replayed: 0 });
        let record = tab(vec![socket(0, Some(250), &[0]), resumed]);
        (ledger, record, [fault(FaultKind::RedisRestart, 200, 300)])
    }

    fn strict(history_persists: bool) -> Rules {
        Rules { assert_no_loss: true, assert_no_duplicates: true, history_persists, ..rules() }
    }

    #[test]
    fn a_loss_a_recovered_false_declared_is_allowed_only_when_redis_keeps_nothing() {
        let (ledger, record, faults) = after_a_lost_history((false, 0), false);
        let records = [record];
        let reckoning = reckon(&observed(&ledger, &records, &faults, &[], &[]), &strict(false));
        let window = &reckoning.windows[1];
        assert_eq!((window.name.as_str(), window.totals.lost, window.totals.lost_declared), ("redis-restart", 2, 2));
        assert_eq!(window.totals.lost_silent(), 0);
        assert_eq!(window.resumes, Resumes { resumes: 1, not_recovered: 1, ..Resumes::default() });
        assert_eq!((window.totals.resumes, window.totals.recovered, window.totals.not_recovered), (1, 0, 1));
        assert!(
            reckoning.tabs_csv().contains("redis-restart,0,0,3,1,2,1,1,0,2,0,0,0,1,0,1\n"),
            "{}",
            reckoning.tabs_csv()
        );
        assert_eq!(reckoning.not_recovered.len(), 1);
        assert!(reckoning.not_recovered[0].after_redis_restart);
        assert_eq!(reckoning.not_recovered[0].window, "redis-restart");
        let failed = |reckoning: &Reckoning| -> Vec<String> {
            reckoning
                .assertions
                .iter()
                .filter(|assertion| !assertion.passed)
                .map(|assertion| assertion.name.clone())
                .collect()
        };
        assert!(failed(&reckoning).is_empty(), "{:?}", failed(&reckoning));
        // With a Redis that keeps its data, the same run fails twice: a loss, and a recovered:false.
        let reckoning = reckon(&observed(&ledger, &records, &faults, &[], &[]), &strict(true));
        let failed = failed(&reckoning);
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(failed[0].starts_with("0 lost after resume"), "{failed:?}");
        assert!(failed[1].starts_with("every resume recovered:true"), "{failed:?}");
    }

    #[test]
    fn a_silent_loss_or_an_unanswered_resume_fails() {
        // recovered:true, yet two notifications never came: silent.
        let (ledger, record, faults) = after_a_lost_history((true, 0), false);
        let reckoning = reckon(&observed(&ledger, &[record], &faults, &[], &[]), &strict(false));
        assert_eq!(reckoning.windows[1].totals.lost_silent(), 2);
        assert!(!reckoning.assertions.iter().find(|assertion| assertion.name.starts_with("0 lost")).unwrap().passed);
        // A notification before the resumed frame.
        let (ledger, record, faults) = after_a_lost_history((false, 0), true);
        let reckoning = reckon(&observed(&ledger, &[record], &faults, &[], &[]), &strict(false));
        let answered =
            reckoning.assertions.iter().find(|assertion| assertion.name.starts_with("every resume answered"));
        assert!(!answered.unwrap().passed);
    }

    #[test]
    fn duplicates_by_id_and_repeated_events_are_counted_per_tab() {
        let ledger = ledger(&[100, 200], &[105, 205]);
        let mut first = socket(0, Some(150), &[0]);
        first.duplicate_ids = 1;
        first.duplicated = vec![0];
        let mut second = socket(160, None, &[1]);
        second.repeated = vec![0];
        let reckoning = reckon(&observed(&ledger, &[tab(vec![first, second])], &[], &[], &[]), &strict(true));
        assert_eq!((reckoning.windows[0].totals.duplicated, reckoning.windows[0].totals.repeated), (1, 1));
        assert_eq!(reckoning.duplicate_ids, 1);
        let failed: Vec<&str> = reckoning
            .assertions
            .iter()
            .filter(|assertion| !assertion.passed)
            .map(|assertion| assertion.name.as_str())
            .collect();
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(failed[0].starts_with("0 duplicates by id"), "{failed:?}");
        assert!(failed[1].starts_with("no event notified twice"), "{failed:?}");
    }
}
