//! How both drivers mark what they produce, so that every frame a socket receives names the event
//! it came from: the envelope's `data.class_id` is `{prefix}{seq}` for a counted event and
//! `{prefix}w{slot}-{attempt}` for a warm-up event, and event `seq` is addressed to user
//! `seq % users`. The prefix carries the run id, which keeps frames of an earlier run (a server
//! replaying an old backlog) apart: they are foreign, never duplicates.

/// Kafka's verdict on one produced event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SendState {
    /// Not handed to the producer yet.
    NotSent = 0,
    /// Handed to the producer; no delivery report yet.
    Enqueued = 1,
    /// The broker acknowledged it.
    Acknowledged = 2,
    /// The producer gave up on it.
    Failed = 3,
}

/// What a `class_id` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// A counted event, by sequence number.
    Event(u64),
    /// A warm-up event, by its slot (the loadgen's warm-up index, the chaos run's partition).
    Warmup(usize),
    /// Not this run's.
    Foreign,
}

/// One run's marking: its prefix and how many users, events and warm-up slots it has.
#[derive(Debug, Clone)]
pub struct Marking {
    prefix: String,
    users: usize,
    events: u64,
    warmups: usize,
}

impl Marking {
    /// The marking of run `run` of a driver whose class ids start with `driver` (e.g. `lg`).
    pub fn new(driver: &str, run: &str, users: usize, events: u64, warmups: usize) -> Marking {
        Marking { prefix: format!("{driver}-{run}-"), users, events, warmups }
    }

    /// What every class id of this run starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Users events are addressed to.
    pub fn users(&self) -> usize {
        self.users
    }

    /// Counted events.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The user index an event is addressed to (round-robin).
    pub fn user_of(&self, seq: u64) -> usize {
        (seq % self.users as u64) as usize
    }

    /// The class id of counted event `seq`.
    pub fn event_class_id(&self, seq: u64) -> String {
        format!("{}{seq}", self.prefix)
    }

    /// The class id of a warm-up event for `slot`, attempt `attempt`.
    pub fn warmup_class_id(&self, slot: usize, attempt: u32) -> String {
        format!("{}w{slot}-{attempt}", self.prefix)
    }

    /// What `class_id` names.
    pub fn classify(&self, class_id: &str) -> Tag {
        let Some(rest) = class_id.strip_prefix(&self.prefix) else { return Tag::Foreign };
        if let Some(warmup) = rest.strip_prefix('w') {
            return match warmup.split('-').next().and_then(|slot| slot.parse::<usize>().ok()) {
                Some(slot) if slot < self.warmups => Tag::Warmup(slot),
                _ => Tag::Foreign,
            };
        }
        match rest.parse::<u64>() {
            Ok(seq) if seq < self.events => Tag::Event(seq),
            _ => Tag::Foreign,
        }
    }
}
