//! What was sent and what arrived, shared by the producer and every connection task.
//!
//! Events are told apart by their `class_id` (see [`herald_loadgen::marking`]). Send instants are
//! kept here, in the process, as nanoseconds on a monotonic clock, so latency is not affected by
//! wall-clock steps.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use herald_loadgen::marking::{Marking, SendState};

pub(crate) struct Tracker {
    origin: Instant,
    /// How this run marks its events, and whom each is addressed to.
    pub(crate) marking: Marking,
    /// Nanoseconds after `origin` at which each event was handed to the producer, plus one (0: not
    /// yet).
    sent_at: Vec<AtomicU64>,
    state: Vec<AtomicU8>,
    /// The slowest copy of each event so far, in µs (0: none arrived).
    slowest_us: Vec<AtomicU64>,
    warmup_seen: Vec<AtomicBool>,
    /// Produce-to-receive latency of every copy that arrived on a connection of its user, in µs.
    latency_us: Mutex<Histogram<u64>>,
    /// Distinct copies that arrived on a connection of their user.
    received: AtomicU64,
    /// Connections of each user that are open now.
    open_per_user: Vec<AtomicU32>,
}

impl Tracker {
    pub(crate) fn new(run: &str, users: usize, events: u64, warmups: usize) -> Tracker {
        let marking = Marking::new("lg", run, users, events, warmups);
        let events = usize::try_from(events).unwrap_or(usize::MAX);
        Tracker {
            origin: Instant::now(),
            marking,
            sent_at: (0..events).map(|_| AtomicU64::new(0)).collect(),
            state: (0..events).map(|_| AtomicU8::new(SendState::NotSent as u8)).collect(),
            slowest_us: (0..events).map(|_| AtomicU64::new(0)).collect(),
            warmup_seen: (0..warmups).map(|_| AtomicBool::new(false)).collect(),
            // 1 µs to 10 min at 3 significant digits; later values are clamped, not lost.
            latency_us: Mutex::new(
                Histogram::new_with_bounds(1, 600_000_000, 3)
                    .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid")),
            ),
            received: AtomicU64::new(0),
            open_per_user: (0..users).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records that `seq` is being handed to the producer now.
    pub(crate) fn mark_sent(&self, seq: u64) {
        let index = seq as usize;
        self.sent_at[index].store(self.now_nanos().saturating_add(1), Ordering::Release);
        self.state[index].store(SendState::Enqueued as u8, Ordering::Release);
    }

    pub(crate) fn set_state(&self, seq: u64, state: SendState) {
        self.state[seq as usize].store(state as u8, Ordering::Release);
    }

    pub(crate) fn state(&self, seq: u64) -> SendState {
        match self.state[seq as usize].load(Ordering::Acquire) {
            1 => SendState::Enqueued,
            2 => SendState::Acknowledged,
            3 => SendState::Failed,
            _ => SendState::NotSent,
        }
    }

    /// Records the first copy of `seq` on one connection of its user.
    pub(crate) fn record_receipt(&self, seq: u64) {
        self.received.fetch_add(1, Ordering::AcqRel);
        let sent = self.sent_at[seq as usize].load(Ordering::Acquire);
        if sent == 0 {
            return;
        }
        let micros = (self.now_nanos().saturating_sub(sent - 1) / 1000).max(1);
        self.slowest_us[seq as usize].fetch_max(micros, Ordering::AcqRel);
        let mut histogram = self.latency_us.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        histogram.saturating_record(micros);
    }

    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::Acquire)
    }

    pub(crate) fn latency(&self) -> Histogram<u64> {
        self.latency_us.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Events whose slowest copy took longer than `limit`, counted by the whole second of the
    /// measured phase in which they were sent: shows whether slow deliveries are spread out or
    /// come in bursts (a pause somewhere on the path).
    pub(crate) fn late_by_second(&self, limit: Duration) -> BTreeMap<u64, u64> {
        let limit_us = u64::try_from(limit.as_micros()).unwrap_or(u64::MAX);
        let first_sent = self.sent_at.first().map_or(0, |sent| sent.load(Ordering::Acquire));
        let mut late = BTreeMap::new();
        for (sent, slowest) in self.sent_at.iter().zip(&self.slowest_us) {
            let (sent, slowest) = (sent.load(Ordering::Acquire), slowest.load(Ordering::Acquire));
            if sent != 0 && slowest > limit_us {
                *late.entry(sent.saturating_sub(first_sent) / 1_000_000_000).or_insert(0) += 1;
            }
        }
        late
    }

    pub(crate) fn see_warmup(&self, slot: usize) {
        self.warmup_seen[slot].store(true, Ordering::Release);
    }

    /// Warm-up slots that have not been seen yet.
    pub(crate) fn warmups_missing(&self) -> Vec<usize> {
        (0..self.warmup_seen.len()).filter(|slot| !self.warmup_seen[*slot].load(Ordering::Acquire)).collect()
    }

    pub(crate) fn connection_opened(&self, user: usize) {
        self.open_per_user[user].fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn connection_closed(&self, user: usize) {
        self.open_per_user[user].fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn open_connections(&self) -> u64 {
        self.open_per_user.iter().map(|count| u64::from(count.load(Ordering::Acquire))).sum()
    }

    /// Open connections of each user now.
    pub(crate) fn open_per_user(&self) -> Vec<u32> {
        self.open_per_user.iter().map(|count| count.load(Ordering::Acquire)).collect()
    }

    /// Time since the tracker was made.
    pub(crate) fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// Which of one user's events a connection has seen: bit `seq / users`.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    words: Vec<u64>,
}

impl Seen {
    /// Marks `index`; false if it was already marked.
    pub(crate) fn insert(&mut self, index: usize) -> bool {
        let (word, bit) = (index / 64, index % 64);
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        let fresh = self.words[word] & (1 << bit) == 0;
        self.words[word] |= 1 << bit;
        fresh
    }

    pub(crate) fn contains(&self, index: usize) -> bool {
        self.words.get(index / 64).is_some_and(|word| word & (1 << (index % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use herald_loadgen::marking::Tag;

    use super::*;

    #[test]
    fn class_ids_round_trip_and_other_runs_are_foreign() {
        let tracker = Tracker::new("ab12", 4, 10, 2);
        assert_eq!(tracker.marking.event_class_id(7), "lg-ab12-7");
        assert_eq!(tracker.marking.classify("lg-ab12-7"), Tag::Event(7));
        assert_eq!(tracker.marking.classify(&tracker.marking.warmup_class_id(1, 3)), Tag::Warmup(1));
        for foreign in ["lg-ab12-10", "lg-ab12-w2-0", "lg-ffff-7", "lg-ab12-", "lg-ab12-x", "class-1", ""] {
            assert_eq!(tracker.marking.classify(foreign), Tag::Foreign, "{foreign}");
        }
        assert_eq!(tracker.marking.user_of(7), 3);
    }

    #[test]
    fn receipts_are_timed_from_the_send() {
        let tracker = Tracker::new("r", 1, 2, 0);
        tracker.mark_sent(0);
        assert_eq!(tracker.state(0), SendState::Enqueued);
        std::thread::sleep(Duration::from_millis(2));
        tracker.record_receipt(0);
        let latency = tracker.latency();
        assert_eq!(latency.len(), 1);
        assert!(latency.max() >= 2000, "{} µs", latency.max());
        assert_eq!(tracker.received(), 1);
        assert_eq!(tracker.late_by_second(Duration::from_millis(1)), BTreeMap::from([(0, 1)]));
        assert!(tracker.late_by_second(Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn seen_marks_once() {
        let mut seen = Seen::default();
        assert!(seen.insert(130));
        assert!(!seen.insert(130));
        assert!(seen.contains(130));
        assert!(!seen.contains(129));
        assert!(!seen.contains(100_000));
    }
}
