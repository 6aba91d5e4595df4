//! The embedded backend: one process, state in memory, fan-out straight into the hub.
//!
//! Same guarantees as Redis: a digest is remembered per recipient for its TTL (so memory is
//! bounded by the traffic of one TTL; the sweep forgets expired digests every few seconds), and a
//! batch never holds two parked copies of one notification.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{DedupeDigest, Delivery, Outgoing, Parking, now_unix_ms, origin_unix_ms};
use crate::hub::{Hub, Outbound};
use crate::metrics::Metrics;

struct Parked {
    outgoing: Outgoing,
    expires_at_ms: u64,
}

#[derive(Default)]
struct State {
    /// batch → (owner, expires at).
    owners: HashMap<String, (String, u64)>,
    /// (recipient, dedupe digest) → expires at.
    seen: HashMap<(String, DedupeDigest), u64>,
    /// batch → notifications waiting for its owner, oldest first.
    parked: HashMap<String, VecDeque<Parked>>,
}

pub(crate) struct MemoryBackend {
    state: Mutex<State>,
    hub: Arc<Hub>,
    parking: Parking,
    metrics: Metrics,
}

impl MemoryBackend {
    pub(crate) fn new(hub: Arc<Hub>, parking: Parking, metrics: Metrics) -> Self {
        MemoryBackend { state: Mutex::new(State::default()), hub, parking, metrics }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is a single insert or remove, so a poisoned lock still holds consistent state.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks the key and fans out, under the state lock so that two copies cannot both pass.
    fn publish_once(&self, state: &mut State, user: &str, outgoing: &Outgoing) -> Delivery {
        let now = now_unix_ms();
        let key = (user.to_owned(), outgoing.dedupe_digest);
        match state.seen.get(&key) {
            Some(expires_at) if *expires_at > now => return Delivery::Duplicate,
            _ => {}
        }
        state.seen.insert(key, now + outgoing.dedupe_ttl_seconds * 1000);
        let outbound =
            Outbound { message: outgoing.message.clone(), origin_unix_ms: origin_unix_ms(outgoing.message.as_bytes()) };
        self.hub.deliver(user, &outbound);
        Delivery::Published { user: user.to_owned() }
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
        Outgoing { dedupe_digest: [digest; 16], dedupe_ttl_seconds: ttl_seconds, message: "{}".into() }
    }

    fn backend() -> MemoryBackend {
        let (metrics, _) = Metrics::new();
        let hub = Hub::new(5, 8, None, metrics.clone());
        MemoryBackend::new(hub, Parking { ttl_seconds: 60, max_per_batch: 10, owner_ttl_seconds: 60 }, metrics)
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
