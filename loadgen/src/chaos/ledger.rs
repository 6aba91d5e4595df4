//! What was produced, when, to which partition, and when it was first delivered anywhere: shared
//! by the producer, the fault driver and every tab.
//!
//! A notification is told apart by its `data.class_id` (see [`herald_loadgen::marking`]; the
//! warm-up slot is the partition). Instants are nanoseconds since the ledger was made, on a
//! monotonic clock.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald_loadgen::marking::{Marking, SendState};

/// A time no event has: "never".
const NEVER: u64 = u64::MAX;

pub(crate) struct Ledger {
    origin: Instant,
    /// How this run marks its events, and whom each is addressed to.
    pub(crate) marking: Marking,
    /// When each event was handed to the producer (`NEVER`: not yet).
    sent_ns: Vec<AtomicU64>,
    state: Vec<AtomicU8>,
    /// The partition Kafka put each event in (-1: unknown).
    partition: Vec<AtomicI32>,
    /// When each event first arrived on any tab of its user (`NEVER`: not yet).
    first_delivery_ns: Vec<AtomicU64>,
    /// Warm-up events seen, by partition.
    warmup_seen: Vec<AtomicBool>,
    /// Copies of counted events that arrived on a tab of their user, first per socket.
    receipts: AtomicU64,
}

impl Ledger {
    pub(crate) fn new(run: &str, users: usize, events: u64, partitions: usize) -> Ledger {
        let marking = Marking::new("chaos", run, users, events, partitions);
        let events = usize::try_from(events).unwrap_or(usize::MAX);
        Ledger {
            origin: Instant::now(),
            marking,
            sent_ns: (0..events).map(|_| AtomicU64::new(NEVER)).collect(),
            state: (0..events).map(|_| AtomicU8::new(SendState::NotSent as u8)).collect(),
            partition: (0..events).map(|_| AtomicI32::new(-1)).collect(),
            first_delivery_ns: (0..events).map(|_| AtomicU64::new(NEVER)).collect(),
            warmup_seen: (0..partitions).map(|_| AtomicBool::new(false)).collect(),
            receipts: AtomicU64::new(0),
        }
    }

    /// A `class_id` for a poison record: never delivered, so never classified.
    pub(crate) fn poison_class_id(&self, name: &str) -> String {
        format!("{}poison-{name}", self.marking.prefix())
    }
    /// Nanoseconds since the ledger was made.
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(NEVER - 1)
    }

    /// Records that `seq` is being handed to the producer now.
    pub(crate) fn mark_sent(&self, seq: u64) {
        self.mark_sent_at(seq, self.now());
    }

    /// Records that `seq` was handed to the producer at `at`.
    pub(crate) fn mark_sent_at(&self, seq: u64, at: u64) {
        self.sent_ns[seq as usize].store(at, Ordering::Release);
        self.state[seq as usize].store(SendState::Enqueued as u8, Ordering::Release);
    }

    pub(crate) fn acknowledged(&self, seq: u64, partition: i32) {
        self.partition[seq as usize].store(partition, Ordering::Release);
        self.state[seq as usize].store(SendState::Acknowledged as u8, Ordering::Release);
    }

    pub(crate) fn failed(&self, seq: u64) {
        self.state[seq as usize].store(SendState::Failed as u8, Ordering::Release);
    }

    pub(crate) fn state(&self, seq: u64) -> SendState {
        match self.state[seq as usize].load(Ordering::Acquire) {
            1 => SendState::Enqueued,
            2 => SendState::Acknowledged,
            3 => SendState::Failed,
            _ => SendState::NotSent,
        }
    }

    /// Whether Kafka took (or may have taken) the event: those are the ones every tab expects.
    pub(crate) fn expected(&self, seq: u64) -> bool {
        matches!(self.state(seq), SendState::Enqueued | SendState::Acknowledged)
    }

    pub(crate) fn sent_at(&self, seq: u64) -> Option<u64> {
        Some(self.sent_ns[seq as usize].load(Ordering::Acquire)).filter(|at| *at != NEVER)
    }

    pub(crate) fn partition(&self, seq: u64) -> Option<i32> {
        Some(self.partition[seq as usize].load(Ordering::Acquire)).filter(|partition| *partition >= 0)
    }

    pub(crate) fn first_delivery(&self, seq: u64) -> Option<u64> {
        Some(self.first_delivery_ns[seq as usize].load(Ordering::Acquire)).filter(|at| *at != NEVER)
    }

    /// Records the first copy of `seq` on one socket of its user, at `at`.
    pub(crate) fn record_receipt(&self, seq: u64, at: u64) {
        self.receipts.fetch_add(1, Ordering::AcqRel);
        self.first_delivery_ns[seq as usize].fetch_min(at, Ordering::AcqRel);
    }

    pub(crate) fn receipts(&self) -> u64 {
        self.receipts.load(Ordering::Acquire)
    }

    /// Expected events that have not arrived on any tab yet.
    pub(crate) fn undelivered(&self) -> u64 {
        (0..self.marking.events()).filter(|seq| self.expected(*seq) && self.first_delivery(*seq).is_none()).count()
            as u64
    }

    pub(crate) fn see_warmup(&self, partition: usize) {
        self.warmup_seen[partition].store(true, Ordering::Release);
    }

    /// Partitions whose warm-up event has not arrived yet.
    pub(crate) fn warmups_missing(&self) -> Vec<usize> {
        (0..self.warmup_seen.len()).filter(|partition| !self.warmup_seen[*partition].load(Ordering::Acquire)).collect()
    }
}

/// Nanoseconds as seconds, for people.
pub(crate) fn seconds(nanos: u64) -> f64 {
    Duration::from_nanos(nanos).as_secs_f64()
}

#[cfg(test)]
mod tests {
    use herald_loadgen::marking::Tag;

    use super::*;

    #[test]
    fn class_ids_round_trip_and_other_runs_are_foreign() {
        let ledger = Ledger::new("ab12", 4, 10, 3);
        assert_eq!(ledger.marking.event_class_id(7), "chaos-ab12-7");
        assert_eq!(ledger.marking.classify("chaos-ab12-7"), Tag::Event(7));
        assert_eq!(ledger.marking.classify(&ledger.marking.warmup_class_id(2, 5)), Tag::Warmup(2));
        for foreign in [
            "chaos-ab12-10",
            "chaos-ab12-w3-0",
            "chaos-ffff-7",
            "chaos-ab12-",
            "chaos-ab12-poison-big",
            "lg-ab12-7",
            "",
        ] {
            assert_eq!(ledger.marking.classify(foreign), Tag::Foreign, "{foreign}");
        }
        assert_eq!(ledger.marking.classify(&ledger.poison_class_id("big")), Tag::Foreign);
        assert_eq!(ledger.marking.user_of(7), 3);
    }

    #[test]
    fn the_first_delivery_is_the_earliest() {
        let ledger = Ledger::new("r", 1, 2, 1);
        assert!(!ledger.expected(0));
        ledger.mark_sent(0);
        assert!(ledger.expected(0) && ledger.sent_at(0).is_some());
        ledger.acknowledged(0, 4);
        assert_eq!(ledger.partition(0), Some(4));
        assert_eq!(ledger.undelivered(), 1);
        ledger.record_receipt(0, 900);
        ledger.record_receipt(0, 500);
        ledger.record_receipt(0, 700);
        assert_eq!(ledger.first_delivery(0), Some(500));
        assert_eq!(ledger.receipts(), 3);
        assert_eq!(ledger.undelivered(), 0);
        ledger.mark_sent(1);
        ledger.failed(1);
        assert!(!ledger.expected(1));
    }
}
