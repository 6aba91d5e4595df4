//! The embedded backend: one process, state in memory, fan-out straight into the hub.
//!
//! Same guarantees as Redis: a digest is remembered per recipient for its TTL (so memory is
//! bounded by the traffic of one TTL; the sweep forgets expired digests every few seconds), and a
//! batch never holds two parked copies of one notification. Each user's history is kept with the
//! same bounds and id rule as the Redis Stream (see `redis::scripts::PUBLISH_BATCH`): ids are
//! assigned, the message appended and the notification fanned out under one lock.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;

use super::{DedupeDigest, Delivery, HistoryBounds, Outgoing, Parking, now_unix_ms};
use crate::hub::{Hub, Outbound};
use crate::metrics::Metrics;
use crate::resume::{History, NotificationId, Since, message_with_id, nothing_lost_since_empty};

struct Parked {
    outgoing: Outgoing,
    expires_at_ms: u64,
}

/// One user's kept notifications, like the user's Redis Stream.
struct UserHistory {
    /// Oldest first.
    entries: VecDeque<(NotificationId, Utf8Bytes)>,
    /// The last id assigned, kept when every entry is trimmed so that ids still increase.
    last: NotificationId,
    /// When the last notification was added: the history is forgotten a TTL after it.
    written_ms: u64,
    /// Whether an entry was ever trimmed (like a Redis Stream's `entries-added` above its length).
    dropped: bool,
}

impl UserHistory {
    /// Drops what is over the bounds: the oldest beyond `size`, and those older than the TTL.
    fn trim(&mut self, bounds: HistoryBounds, now_ms: u64) {
        while self.entries.len() > bounds.size {
            self.entries.pop_front();
            self.dropped = true;
        }
        let min_ms = bounds.min_ms(now_ms);
        while self.entries.front().is_some_and(|(id, _)| id.ms < min_ms) {
            self.entries.pop_front();
            self.dropped = true;
        }
    }
}

#[derive(Default)]
struct State {
    /// batch → (owner, expires at).
    owners: HashMap<String, (String, u64)>,
    /// (recipient, dedupe digest) → expires at.
    seen: HashMap<(String, DedupeDigest), u64>,
    /// batch → notifications waiting for its owner, oldest first.
    parked: HashMap<String, VecDeque<Parked>>,
    /// user → kept notifications.
    histories: HashMap<String, UserHistory>,
}

pub(crate) struct MemoryBackend {
    state: Mutex<State>,
    hub: Arc<Hub>,
    parking: Parking,
    history: HistoryBounds,
    metrics: Metrics,
    /// When this backend started keeping histories: positions taken before it (by an earlier
    /// process) prove nothing.
    epoch_ms: u64,
}

impl MemoryBackend {
    pub(crate) fn new(hub: Arc<Hub>, parking: Parking, history: HistoryBounds, metrics: Metrics) -> Self {
        let epoch_ms = now_unix_ms();
        MemoryBackend { state: Mutex::new(State::default()), hub, parking, history, metrics, epoch_ms }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is a single insert or remove, so a poisoned lock still holds consistent state.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks the key, assigns the id, appends to the user's history and fans out, under the state
    /// lock so that two copies cannot both pass and ids follow the order of publishing.
    fn publish_once(&self, state: &mut State, user: &str, outgoing: &Outgoing) -> Delivery {
        let now = now_unix_ms();
        let key = (user.to_owned(), outgoing.dedupe_digest);
        match state.seen.get(&key) {
            Some(expires_at) if *expires_at > now => return Delivery::Duplicate,
            _ => {}
        }
        state.seen.insert(key, now + outgoing.dedupe_ttl_seconds * 1000);
        // The same rule as the Redis Stream's `<ms>-*`: the record's ms, raised to the last id's.
        let first = NotificationId { ms: outgoing.origin_unix_ms, seq: 0 };
        let id = match state.histories.get(user) {
            Some(history) if outgoing.origin_unix_ms <= history.last.ms => history.last.next(),
            _ => first,
        };
        let history = state.histories.entry(user.to_owned()).or_insert_with(|| UserHistory {
            entries: VecDeque::new(),
            last: id,
            written_ms: now,
            dropped: false,
        });
        let message = Utf8Bytes::from(message_with_id(&id.to_string(), outgoing.body.as_str()));
        history.last = id;
        history.written_ms = now;
        history.entries.push_back((id, message.clone()));
        history.trim(self.history, now);
        self.hub.deliver(user, &Outbound { message, origin_unix_ms: Some(id.ms) });
        Delivery::Published { user: user.to_owned() }
    }

    /// Where `user`'s history stands (see `resume::position_frame`): its newest id, or the position
    /// of an empty history.
    pub(crate) fn position(&self, user: &str) -> NotificationId {
        let now = now_unix_ms();
        let mut state = self.lock();
        let newest = state.histories.get_mut(user).and_then(|history| {
            history.trim(self.history, now);
            history.entries.back().map(|(id, _)| *id)
        });
        newest.unwrap_or_else(|| NotificationId::empty_history(now))
    }

    /// `user`'s kept notifications after `since`.
    pub(crate) fn history(&self, user: &str, since: &Since) -> History {
        let now = now_unix_ms();
        let mut state = self.lock();
        let empty_since = match since {
            Since::Id(since) => since.empty_history_taken(),
            Since::Malformed => None,
        };
        let Some(history) = state.histories.get_mut(user) else {
            let recovered = empty_since.is_some_and(|taken| {
                nothing_lost_since_empty(taken, Some(self.epoch_ms), now, self.history.ttl_ms(), false)
            });
            return History { recovered, entries: Vec::new() };
        };
        history.trim(self.history, now);
        let (recovered, after) = match (since, empty_since) {
            (Since::Id(since), Some(taken)) => (
                nothing_lost_since_empty(taken, Some(self.epoch_ms), now, self.history.ttl_ms(), history.dropped),
                Some(*since),
            ),
            (Since::Id(since), None) => (history.entries.iter().any(|(id, _)| id == since), Some(*since)),
            (Since::Malformed, _) => (false, None),
        };
        let entries = history
            .entries
            .iter()
            .filter(|(id, _)| after.is_none_or(|after| *id > after))
            .map(|(id, message)| (*id, message.as_str().to_owned()))
            .collect();
        History { recovered, entries }
    }

    pub(crate) fn deliver_to_user(&self, user: &str, outgoing: &Outgoing) -> Delivery {
        let mut state = self.lock();
        self.publish_once(&mut state, user, outgoing)
    }

    pub(crate) fn deliver_to_batch_owner(&self, batch: &str, outgoing: &Outgoing) -> Delivery {
        let now = now_unix_ms();
        let mut state = self.lock();
        if let Some((owner, expires_at)) = state.owners.get(batch).cloned()
            && expires_at > now
        {
            return self.publish_once(&mut state, &owner, outgoing);
        }
        let queue = state.parked.entry(batch.to_owned()).or_default();
        if queue.iter().any(|parked| parked.outgoing.dedupe_digest == outgoing.dedupe_digest) {
            return Delivery::Duplicate;
        }
        queue.push_back(Parked { outgoing: outgoing.clone(), expires_at_ms: now + self.parking.ttl_seconds * 1000 });
        let mut overflow = 0;
        while queue.len() > self.parking.max_per_batch {
            queue.pop_front();
            overflow += 1;
        }
        Delivery::Parked { overflow }
    }

    pub(crate) fn learn_owner(&self, batch: &str, user: &str) -> u64 {
        let now = now_unix_ms();
        let mut state = self.lock();
        state.owners.insert(batch.to_owned(), (user.to_owned(), now + self.parking.owner_ttl_seconds * 1000));
        let parked = state.parked.remove(batch).unwrap_or_default();
        let mut published = 0;
        for entry in parked {
            if entry.expires_at_ms <= now {
                self.metrics.expired("ttl", 1);
            } else if matches!(self.publish_once(&mut state, user, &entry.outgoing), Delivery::Published { .. }) {
                published += 1;
            } else {
                self.metrics.deduplicated.inc();
            }
        }
        published
    }

    pub(crate) fn expire_parked(&self) -> u64 {
        let now = now_unix_ms();
        let mut state = self.lock();
        let mut expired = 0;
        state.parked.retain(|_, queue| {
            while queue.front().is_some_and(|entry| entry.expires_at_ms <= now) {
                queue.pop_front();
                expired += 1;
            }
            !queue.is_empty()
        });
        state.seen.retain(|_, expires_at| *expires_at > now);
        state.owners.retain(|_, (_, expires_at)| *expires_at > now);
        let bounds = self.history;
        state.histories.retain(|_, history| {
            history.trim(bounds, now);
            history.written_ms.saturating_add(bounds.ttl_seconds.saturating_mul(1000)) > now
        });
        expired
    }

    pub(crate) fn parked_batches(&self, limit: usize) -> Vec<String> {
        self.lock().parked.keys().take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(digest: u8, ttl_seconds: u64) -> Outgoing {
        sent_at(digest, ttl_seconds, now_unix_ms())
    }

    fn sent_at(digest: u8, ttl_seconds: u64, origin_unix_ms: u64) -> Outgoing {
        Outgoing {
            dedupe_digest: [digest; 16],
            dedupe_ttl_seconds: ttl_seconds,
            body: format!(r#""n":{digest}}}"#).into(),
            origin_unix_ms,
        }
    }

    fn backend() -> MemoryBackend {
        with_history(HistoryBounds { size: 100, ttl_seconds: 86_400 })
    }

    fn with_history(history: HistoryBounds) -> MemoryBackend {
        let (metrics, _) = Metrics::new();
        let hub = Hub::new(5, 8, None, metrics.clone());
        let parking = Parking { ttl_seconds: 60, max_per_batch: 10, owner_ttl_seconds: 60 };
        MemoryBackend::new(hub, parking, history, metrics)
    }

    fn ids(history: &History) -> Vec<String> {
        history.entries.iter().map(|(id, _)| id.to_string()).collect()
    }

    #[test]
    fn ids_follow_the_record_time_raised_to_the_last_id() {
        let memory = backend();
        let now = now_unix_ms();
        memory.deliver_to_user("a", &sent_at(1, 60, now));
        memory.deliver_to_user("a", &sent_at(2, 60, now));
        memory.deliver_to_user("a", &sent_at(3, 60, now - 5_000));
        memory.deliver_to_user("a", &sent_at(4, 60, now + 1));
        memory.deliver_to_user("b", &sent_at(5, 60, now - 5_000));
        let all = memory.history("a", &Since::Malformed);
        assert!(!all.recovered);
        assert_eq!(ids(&all), [format!("{now}-0"), format!("{now}-1"), format!("{now}-2"), format!("{}-0", now + 1)]);
        assert_eq!(all.entries[0].1, format!(r#"{{"id":"{now}-0","n":1}}"#));
        assert_eq!(ids(&memory.history("b", &Since::Malformed)), [format!("{}-0", now - 5_000)]);

        let since = Since::parse(&format!("{now}-1"));
        let after = memory.history("a", &since);
        assert!(after.recovered);
        assert_eq!(ids(&after), [format!("{now}-2"), format!("{}-0", now + 1)]);
        let unknown = memory.history("a", &Since::parse(&format!("{}-5", now - 1)));
        assert!(!unknown.recovered, "never issued");
        assert_eq!(unknown.entries.len(), 4, "everything newer is still sent");
        assert_eq!(memory.history("nobody", &since), History::default());
    }

    #[test]
    fn a_position_is_the_newest_id_or_an_empty_historys_and_resuming_from_it_proves_what_it_can() {
        let memory = with_history(HistoryBounds { size: 3, ttl_seconds: 60 });
        let empty = memory.position("a");
        assert!(empty.empty_history_taken().is_some_and(|taken| taken >= memory.epoch_ms), "{empty}");
        let since = Since::Id(empty);
        assert_eq!(memory.history("a", &since), History { recovered: true, entries: Vec::new() }, "nothing yet");
        let now = now_unix_ms();
        memory.deliver_to_user("a", &sent_at(1, 60, now - 5_000));
        memory.deliver_to_user("a", &sent_at(2, 60, now));
        let after = memory.history("a", &since);
        assert!(after.recovered, "nothing dropped after the position");
        assert_eq!(ids(&after), [format!("{}-0", now - 5_000), format!("{now}-0")]);
        assert_eq!(memory.position("a").to_string(), format!("{now}-0"), "the newest id");
        memory.deliver_to_user("a", &sent_at(3, 60, now));
        memory.deliver_to_user("a", &sent_at(4, 60, now));
        let trimmed = memory.history("a", &since);
        assert!(!trimmed.recovered, "one was trimmed after the position");
        assert_eq!(trimmed.entries.len(), 3);

        let before_start = Since::Id(NotificationId::empty_history(memory.epoch_ms - 1));
        assert!(!memory.history("b", &before_start).recovered, "taken before this backend kept histories");
        let too_old = Since::Id(NotificationId::empty_history(now - 60_000));
        assert!(!memory.history("b", &too_old).recovered, "a whole history may have been forgotten since");
        memory.deliver_to_user("c", &sent_at(5, 60, now - 120_000));
        assert!(memory.position("c").empty_history_taken().is_some(), "an entry past the TTL is no position");
    }

    #[test]
    fn history_is_bounded_by_count_and_age_and_ids_still_increase_without_one() {
        let memory = with_history(HistoryBounds { size: 3, ttl_seconds: 60 });
        let now = now_unix_ms();
        memory.deliver_to_user("a", &sent_at(0, 60, now - 120_000));
        assert!(memory.history("a", &Since::Malformed).entries.is_empty(), "older than the TTL at once");
        for digest in 1..=5 {
            memory.deliver_to_user("a", &sent_at(digest, 60, now));
        }
        let kept = memory.history("a", &Since::parse(&format!("{now}-0")));
        assert!(!kept.recovered, "trimmed by count");
        assert_eq!(ids(&kept), [format!("{now}-2"), format!("{now}-3"), format!("{now}-4")]);

        let none = with_history(HistoryBounds { size: 0, ttl_seconds: 60 });
        none.deliver_to_user("a", &sent_at(1, 60, now));
        none.deliver_to_user("a", &sent_at(2, 60, now - 1));
        assert!(none.history("a", &Since::Malformed).entries.is_empty());
        assert_eq!(none.lock().histories["a"].last.to_string(), format!("{now}-1"), "ids still increase");
    }

    #[test]
    fn a_digest_is_published_once_per_recipient_and_parked_once_per_batch() {
        let memory = backend();
        assert_eq!(memory.deliver_to_user("a", &outgoing(1, 60)), Delivery::Published { user: "a".into() });
        assert_eq!(memory.deliver_to_user("a", &outgoing(1, 60)), Delivery::Duplicate);
        assert_eq!(memory.deliver_to_user("b", &outgoing(1, 60)), Delivery::Published { user: "b".into() });
        assert_eq!(memory.deliver_to_batch_owner("batch", &outgoing(2, 60)), Delivery::Parked { overflow: 0 });
        assert_eq!(memory.deliver_to_batch_owner("batch", &outgoing(2, 60)), Delivery::Duplicate);
        assert_eq!(memory.learn_owner("batch", "a"), 1);
        assert_eq!(memory.deliver_to_batch_owner("batch", &outgoing(2, 60)), Delivery::Duplicate);
    }

    #[test]
    fn digests_are_forgotten_when_their_ttl_ends() {
        let memory = backend();
        for digest in 0..100 {
            memory.deliver_to_user("a", &outgoing(digest, 0));
        }
        memory.deliver_to_user("a", &outgoing(200, 60));
        memory.expire_parked();
        assert_eq!(memory.lock().seen.len(), 1, "only the digest still within its TTL is remembered");
    }
}
