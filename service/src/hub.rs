//! The connections this instance holds, and in-process fan-out to them.
//!
//! A notification arrives once per instance (from Redis, or directly in embedded mode) as encoded
//! bytes; the hub hands the same `Bytes` to every connection of its user. Nothing is serialized per
//! socket and no lock is held across an `.await`.
//!
//! Slow-client policy: each connection has a bounded queue (`--send-queue`). When a notification
//! finds it full, the connection is closed with 1013 ("try again later") rather than letting one slow
//! browser hold memory or delay others; the browser client reconnects. The notification is not
//! dropped silently: the close tells the client it missed something.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// One message for a socket's writer: the encoded notification and the Kafka timestamp it came
/// from, for the latency histogram.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    pub message: Utf8Bytes,
    pub origin_unix_ms: Option<u64>,
}

/// A change in the set of users this instance has sockets for, which the Redis subscriber follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubscriptionChange {
    Subscribe(String),
    Unsubscribe(String),
}

struct Connection {
    id: u64,
    sender: mpsc::Sender<Outbound>,
    /// Cancelled when the connection is too slow to keep up.
    slow: CancellationToken,
}

pub(crate) struct Hub {
    connections: Mutex<HashMap<String, Vec<Connection>>>,
    /// Where subscription changes go; `None` in embedded mode, which needs no subscriptions.
    subscriptions: Option<mpsc::UnboundedSender<SubscriptionChange>>,
    max_per_user: usize,
    queue: usize,
    next_id: AtomicU64,
    metrics: Metrics,
}

/// A connection's place in the hub. Dropping it deregisters the connection.
pub(crate) struct Registration {
    hub: Arc<Hub>,
    user: String,
    id: u64,
    /// The writer's end of the connection's queue.
    pub receiver: mpsc::Receiver<Outbound>,
    /// Cancelled by the slow-client policy.
    pub slow: CancellationToken,
}

/// The user already has the maximum number of connections on this instance.
#[derive(Debug)]
pub(crate) struct QuotaExceeded;

impl Hub {
    pub(crate) fn new(
        max_per_user: usize,
        queue: usize,
        subscriptions: Option<mpsc::UnboundedSender<SubscriptionChange>>,
        metrics: Metrics,
    ) -> Arc<Self> {
        Arc::new(Hub {
            connections: Mutex::new(HashMap::new()),
            subscriptions,
            max_per_user,
            queue,
            next_id: AtomicU64::new(1),
            metrics,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Connection>>> {
        // A panic while holding the lock cannot leave the map inconsistent (every change is one
        // insert or remove), so a poisoned lock is still usable.
        self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a connection for `user`, or refuses it when the user is at the limit.
    pub(crate) fn register(self: &Arc<Self>, user: &str) -> Result<Registration, QuotaExceeded> {
        let (sender, receiver) = mpsc::channel(self.queue);
        let slow = CancellationToken::new();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let first = {
            let mut connections = self.lock();
            let list = connections.entry(user.to_owned()).or_default();
            if list.len() >= self.max_per_user {
                return Err(QuotaExceeded);
            }
            list.push(Connection { id, sender, slow: slow.clone() });
            list.len() == 1
        };
        if first && let Some(subscriptions) = &self.subscriptions {
            let _ = subscriptions.send(SubscriptionChange::Subscribe(user.to_owned()));
        }
        self.metrics.connections.inc();
        Ok(Registration { hub: Arc::clone(self), user: user.to_owned(), id, receiver, slow })
    }

    fn deregister(&self, user: &str, id: u64) {
        let last = {
            let mut connections = self.lock();
            let Some(list) = connections.get_mut(user) else { return };
            list.retain(|connection| connection.id != id);
            let last = list.is_empty();
            if last {
                connections.remove(user);
            }
            last
        };
        if last && let Some(subscriptions) = &self.subscriptions {
            let _ = subscriptions.send(SubscriptionChange::Unsubscribe(user.to_owned()));
        }
        self.metrics.connections.dec();
    }

    /// Hands a notification to every connection of `user` on this instance; returns how many took it.
    pub(crate) fn deliver(&self, user: &str, outbound: &Outbound) -> usize {
        let connections = self.lock();
        let Some(list) = connections.get(user) else { return 0 };
        let mut queued = 0;
        for connection in list {
            match connection.sender.try_send(outbound.clone()) {
                Ok(()) => queued += 1,
                Err(mpsc::error::TrySendError::Full(_)) => connection.slow.cancel(),
                // The socket task is finishing; its registration is about to be dropped.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        queued
    }

    /// The users with at least one connection here: what the Redis subscriber must listen to.
    pub(crate) fn users(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Connections on this instance.
    pub(crate) fn connection_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.deregister(&self.user, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbound(text: &'static str) -> Outbound {
        Outbound { message: Utf8Bytes::from_static(text), origin_unix_ms: None }
    }

    #[test]
    fn every_connection_of_the_user_gets_one_copy_and_others_none() {
        let (changes, mut seen) = mpsc::unbounded_channel();
        let hub = Hub::new(5, 8, Some(changes), Metrics::new().0);
        let mut first = hub.register("teacher-1").unwrap();
        let mut second = hub.register("teacher-1").unwrap();
        let mut other = hub.register("teacher-2").unwrap();
        assert_eq!(hub.deliver("teacher-1", &outbound("hello")), 2);
        assert_eq!(first.receiver.try_recv().unwrap().message, "hello");
        assert_eq!(second.receiver.try_recv().unwrap().message, "hello");
        assert!(first.receiver.try_recv().is_err());
        assert!(other.receiver.try_recv().is_err());
        assert_eq!(seen.try_recv().unwrap(), SubscriptionChange::Subscribe("teacher-1".into()));
        assert_eq!(seen.try_recv().unwrap(), SubscriptionChange::Subscribe("teacher-2".into()));
        drop(first);
        assert!(seen.try_recv().is_err(), "one connection remains");
        drop(second);
        assert_eq!(seen.try_recv().unwrap(), SubscriptionChange::Unsubscribe("teacher-1".into()));
        assert_eq!(hub.connection_count(), 1);
    }

    #[test]
    fn the_connection_limit_is_per_user() {
        let hub = Hub::new(2, 8, None, Metrics::new().0);
        let _a = hub.register("u").unwrap();
        let b = hub.register("u").unwrap();
        assert!(hub.register("u").is_err());
        assert!(hub.register("v").is_ok());
        drop(b);
        assert!(hub.register("u").is_ok(), "a closed connection frees its slot");
    }

    #[test]
    fn a_full_queue_marks_the_connection_slow() {
        let hub = Hub::new(5, 1, None, Metrics::new().0);
        let registration = hub.register("u").unwrap();
        assert_eq!(hub.deliver("u", &outbound("1")), 1);
        assert!(!registration.slow.is_cancelled());
        assert_eq!(hub.deliver("u", &outbound("2")), 0);
        assert!(registration.slow.is_cancelled());
    }
}
