//! The in-process map user → sockets, and each user's last notification id.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;

/// Every connected user's sockets. One lock, never held across `.await`: registering,
/// deregistering and handing a message to the queues are all quick.
#[derive(Default)]
pub(crate) struct Hub {
    users: Mutex<HashMap<Box<str>, User>>,
    next_socket: AtomicU64,
}

#[derive(Default)]
struct User {
    /// The last id given to a notification for this user, as `(ms, seq)`.
    last_id: Option<(u64, u64)>,
    sockets: Vec<(u64, mpsc::Sender<Utf8Bytes>)>,
}

impl Hub {
    /// Adds a socket for `user`; returns its number (to deregister it) and the queue it reads.
    pub(crate) fn register(&self, user: &str, queue: usize) -> (u64, mpsc::Receiver<Utf8Bytes>) {
        let socket = self.next_socket.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::channel(queue);
        let mut users = self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        users.entry(Box::from(user)).or_default().sockets.push((socket, sender));
        (socket, receiver)
    }

    /// Removes a socket. The user's entry stays (with its last id), so ids keep increasing across
    /// reconnections; the benchmark has a fixed set of users.
    pub(crate) fn deregister(&self, user: &str, socket: u64) {
        let mut users = self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = users.get_mut(user) {
            entry.sockets.retain(|(number, _)| *number != socket);
        }
    }

    /// Gives the next id for `user` at Kafka timestamp `ms` to `encode`, and hands the encoded
    /// message to every socket of the user. A socket whose queue is full is removed here: its task
    /// then finds its queue closed after the queued messages and closes the socket with 4002.
    /// Returns how many sockets got the message.
    pub(crate) fn deliver(&self, user: &str, ms: u64, encode: impl FnOnce(&str) -> Utf8Bytes) -> usize {
        let mut users = self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(entry) = users.get_mut(user) else { return 0 };
        if entry.sockets.is_empty() {
            return 0;
        }
        let id = next_id(entry.last_id, ms);
        entry.last_id = Some(id);
        let message = encode(&format!("{}-{}", id.0, id.1));
        entry.sockets.retain(|(_, sender)| sender.try_send(message.clone()).is_ok());
        entry.sockets.len()
    }
}

/// herald's id rule: `ms` raised to the previous id's when lower; `seq` counts within one `ms`.
fn next_id(last: Option<(u64, u64)>, ms: u64) -> (u64, u64) {
    match last {
        Some((last_ms, last_seq)) if last_ms >= ms => (last_ms, last_seq + 1),
        _ => (ms, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_per_user_as_herald_makes_them() {
        assert_eq!(next_id(None, 5), (5, 0));
        assert_eq!(next_id(Some((5, 0)), 5), (5, 1));
        assert_eq!(next_id(Some((5, 1)), 4), (5, 2));
        assert_eq!(next_id(Some((5, 2)), 6), (6, 0));
    }

    #[tokio::test]
    async fn a_message_reaches_every_socket_of_its_user_and_a_full_queue_is_dropped() {
        let hub = Hub::default();
        let (first, mut first_queue) = hub.register("u1", 1);
        let (_, mut second_queue) = hub.register("u1", 2);
        let (_, mut other_queue) = hub.register("u2", 1);
        assert_eq!(hub.deliver("u1", 7, |id| Utf8Bytes::from(id.to_owned())), 2);
        assert_eq!(first_queue.recv().await.as_deref(), Some("7-0"));
        assert_eq!(second_queue.recv().await.as_deref(), Some("7-0"));
        // The first socket's queue holds one: a second message while it is unread drops the socket.
        assert_eq!(hub.deliver("u1", 7, |id| Utf8Bytes::from(id.to_owned())), 2);
        assert_eq!(hub.deliver("u1", 7, |id| Utf8Bytes::from(id.to_owned())), 1);
        assert_eq!(first_queue.recv().await.as_deref(), Some("7-1"));
        assert_eq!(first_queue.recv().await, None);
        assert_eq!(second_queue.recv().await.as_deref(), Some("7-1"));
        assert_eq!(second_queue.recv().await.as_deref(), Some("7-2"));
        assert!(other_queue.try_recv().is_err());
        hub.deregister("u1", first);
        assert_eq!(hub.deliver("nobody", 1, |id| Utf8Bytes::from(id.to_owned())), 0);
    }
}
