//! The connections this instance holds, and in-process fan-out to them.
//!
//! A notification arrives once per instance (from Redis, or directly in embedded mode) as encoded
//! bytes; the hub hands the same `Bytes` to every connection of its user. Nothing is serialized per
//! socket and no lock is held across an `.await`.
//!
//! A connection is only handed to its socket task once this instance listens on the user's Redis
//! channel (the subscriber confirms the `SUBSCRIBE`), so every notification published after the
//! browser's WebSocket opened reaches it.
//!
//! Slow-client policy: each connection has a bounded queue (`--send-queue`). When a notification
//! finds it full, the connection is closed with 4002 (`SLOW_CONSUMER`) rather than letting one slow
//! browser hold memory or delay others. The notification is not lost: it is in the user's history,
//! and the client reconnects with `since` set to the last id it processed to get it (see `resume`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::session::{CloseOrder, Closing};

/// One message for a socket's writer: the encoded notification and the Kafka timestamp it came
/// from, for the latency histogram.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    pub message: Utf8Bytes,
    pub origin_unix_ms: Option<u64>,
}

/// A change in the set of users this instance has sockets for, which the Redis subscriber follows.
///
/// Changes are sent on the unbounded channel while the hub's lock is held, so the channel's order
/// is the order in which the hub's map changed: a user's `Unsubscribe` (last socket closed) can
/// never overtake the `Subscribe` of the socket that registered right after it (a tab reload), which
/// would leave the open socket deaf. An unbounded send never waits, so holding the lock for it
/// blocks nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubscriptionChange {
    /// Listen to the user's channel, then confirm `generation` (see [`Hub::confirm`]).
    Subscribe {
        user: String,
        generation: u64,
    },
    Unsubscribe(String),
}

impl SubscriptionChange {
    /// The user whose channel the change is about.
    pub(crate) fn user(&self) -> &str {
        match self {
            SubscriptionChange::Subscribe { user, .. } | SubscriptionChange::Unsubscribe(user) => user,
        }
    }
}

/// A user's connections on this instance.
struct UserConnections {
    connections: Vec<Connection>,
    /// Tells this entry apart from an earlier one of the same user, whose late confirmation must not
    /// count (the user may have left and come back while a `SUBSCRIBE` was in flight).
    generation: u64,
    /// Whether the subscriber has confirmed it listens to the user's channel.
    subscribed: bool,
    /// Registrations waiting for that confirmation.
    waiting: Vec<oneshot::Sender<()>>,
    /// The subscriber lost Redis since this entry was last confirmed (see [`Hub::unconfirm_all`]).
    interrupted: bool,
}

struct Connection {
    id: u64,
    sender: mpsc::Sender<Outbound>,
    /// Cancelled when the connection is too slow to keep up.
    slow: CancellationToken,
    /// Orders from outside the socket's task to close it (a drain, an operator; see `session`).
    order: Arc<CloseOrder>,
    /// Notified when the user's channel is listened to again after the subscriber lost Redis:
    /// the socket fetches from the history what was published meanwhile (see `ws`).
    catch_up: Arc<CatchUp>,
}

/// A connection's part in recovering from an interrupted Redis subscription.
///
/// While the subscriber is away nothing published reaches this instance, so when it is back each
/// connection must first fetch the gap from the history and only then go on with live
/// notifications (which would otherwise overtake the gap and make it look delivered). Live
/// delivery is held from the moment the subscription is lost until the socket caught up after the
/// confirmation of that same interruption: interruptions are counted, a confirmation names the
/// interruption it ends, and the socket records which one it caught up after. A confirmation of
/// an earlier interruption that the socket had not acted on yet (it was busy writing) can
/// therefore never release live delivery during a later one.
#[derive(Default)]
pub(crate) struct CatchUp {
    /// Interruptions this connection lived through (the subscriber lost Redis).
    interruptions: AtomicU64,
    /// The interruption after which the user's channel was last listened to again.
    confirmed: AtomicU64,
    /// The interruption the socket last caught up after.
    caught_up: AtomicU64,
    /// Woken when `confirmed` moves.
    ready: Notify,
}

impl CatchUp {
    /// Whether the connection must catch up before writing live notifications.
    pub(crate) fn is_pending(&self) -> bool {
        self.caught_up.load(Ordering::Acquire) < self.interruptions.load(Ordering::Acquire)
    }

    /// Waits until the user's channel is listened to again after the latest interruption the
    /// socket has not caught up after; returns that interruption, for [`CatchUp::done`].
    pub(crate) async fn ready(&self) -> u64 {
        loop {
            let interruptions = self.interruptions.load(Ordering::Acquire);
            if self.caught_up.load(Ordering::Acquire) < interruptions
                && self.confirmed.load(Ordering::Acquire) == interruptions
            {
                return interruptions;
            }
            // `notify_one` keeps a permit when nobody waits, so a confirmation between the check
            // and this wait is not missed; a stale permit only makes the loop check again.
            self.ready.notified().await;
        }
    }

    /// The socket catches up after `interruption` (what [`CatchUp::ready`] returned): live
    /// delivery goes on unless another interruption began since.
    pub(crate) fn done(&self, interruption: u64) {
        self.caught_up.fetch_max(interruption, Ordering::AcqRel);
    }

    fn interrupt(&self) {
        self.interruptions.fetch_add(1, Ordering::AcqRel);
    }

    fn confirm(&self) {
        self.confirmed.store(self.interruptions.load(Ordering::Acquire), Ordering::Release);
        self.ready.notify_one();
    }
}

pub(crate) struct Hub {
    users: Mutex<HashMap<String, UserConnections>>,
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
    /// Given when a drain or an operator closes the connection.
    pub order: Arc<CloseOrder>,
    /// Notified when notifications published while the subscriber was away must be fetched from
    /// the history.
    pub catch_up: Arc<CatchUp>,
    /// Fires when the user's channel is listened to; `None` when it already was.
    subscribed: Option<oneshot::Receiver<()>>,
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
            users: Mutex::new(HashMap::new()),
            subscriptions,
            max_per_user,
            queue,
            next_id: AtomicU64::new(1),
            metrics,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, UserConnections>> {
        // A panic while holding the lock cannot leave the map inconsistent (every change is one
        // insert or remove), so a poisoned lock is still usable.
        self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a connection for `user`, or refuses it when the user is at the limit.
    pub(crate) fn register(self: &Arc<Self>, user: &str) -> Result<Registration, QuotaExceeded> {
        let (sender, receiver) = mpsc::channel(self.queue);
        let slow = CancellationToken::new();
        let order = Arc::new(CloseOrder::default());
        let catch_up = Arc::new(CatchUp::default());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let subscribed = {
            let mut users = self.lock();
            let entry = users.entry(user.to_owned()).or_insert_with(|| UserConnections {
                connections: Vec::new(),
                generation: id,
                // Embedded mode delivers in-process: there is nothing to subscribe to.
                subscribed: self.subscriptions.is_none(),
                waiting: Vec::new(),
                interrupted: false,
            });
            if entry.connections.len() >= self.max_per_user {
                return Err(QuotaExceeded);
            }
            let first = entry.connections.is_empty();
            if entry.interrupted {
                // Registered while the subscriber is away: it catches up with the others.
                catch_up.interrupt();
            }
            entry.connections.push(Connection {
                id,
                sender,
                slow: slow.clone(),
                order: Arc::clone(&order),
                catch_up: Arc::clone(&catch_up),
            });
            let subscribed = (!entry.subscribed).then(|| {
                let (confirm, confirmed) = oneshot::channel();
                entry.waiting.push(confirm);
                confirmed
            });
            if first && let Some(subscriptions) = &self.subscriptions {
                // Sent while the lock is held (see `SubscriptionChange`).
                let generation = entry.generation;
                let _ = subscriptions.send(SubscriptionChange::Subscribe { user: user.to_owned(), generation });
            }
            subscribed
        };
        self.metrics.connections.inc();
        Ok(Registration {
            hub: Arc::clone(self),
            user: user.to_owned(),
            id,
            receiver,
            slow,
            order,
            catch_up,
            subscribed,
        })
    }

    fn deregister(&self, user: &str, id: u64) {
        {
            let mut users = self.lock();
            let Some(entry) = users.get_mut(user) else { return };
            entry.connections.retain(|connection| connection.id != id);
            if entry.connections.is_empty() {
                users.remove(user);
                // Sent while the lock is held (see `SubscriptionChange`).
                if let Some(subscriptions) = &self.subscriptions {
                    let _ = subscriptions.send(SubscriptionChange::Unsubscribe(user.to_owned()));
                }
            }
        }
        self.metrics.connections.dec();
    }

    /// The subscriber listens to `user`'s channel: release the connections waiting for it. With a
    /// `generation`, only the entry that asked for this subscription counts.
    pub(crate) fn confirm(&self, user: &str, generation: Option<u64>) {
        let mut users = self.lock();
        let Some(entry) = users.get_mut(user) else { return };
        if generation.is_some_and(|generation| generation != entry.generation) {
            return;
        }
        entry.subscribed = true;
        for waiting in entry.waiting.drain(..) {
            let _ = waiting.send(());
        }
        if std::mem::take(&mut entry.interrupted) {
            for connection in &entry.connections {
                connection.catch_up.confirm();
            }
        }
    }

    /// The subscriber lost its connection: new connections wait until it has subscribed again.
    ///
    /// Whatever was published for these users meanwhile never reached this instance: once a
    /// user's channel is confirmed again, each of the user's connections is told to catch up
    /// from the history.
    pub(crate) fn unconfirm_all(&self) {
        for entry in self.lock().values_mut() {
            entry.subscribed = false;
            entry.interrupted = true;
            for connection in &entry.connections {
                connection.catch_up.interrupt();
            }
        }
    }

    /// Hands a notification to every connection of `user` on this instance; returns how many took it.
    pub(crate) fn deliver(&self, user: &str, outbound: &Outbound) -> usize {
        let users = self.lock();
        let Some(entry) = users.get(user) else { return 0 };
        let mut queued = 0;
        for connection in &entry.connections {
            match connection.sender.try_send(outbound.clone()) {
                Ok(()) => queued += 1,
                Err(mpsc::error::TrySendError::Full(_)) => connection.slow.cancel(),
                // The socket task is finishing; its registration is about to be dropped.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        queued
    }

    /// The users with at least one connection here, with their entries' generations: what the
    /// Redis subscriber must listen to.
    pub(crate) fn users(&self) -> Vec<(String, u64)> {
        self.lock().iter().map(|(user, entry)| (user.clone(), entry.generation)).collect()
    }

    /// Orders every connection of `user` on this instance closed; returns how many.
    pub(crate) fn close_user(&self, user: &str, closing: Closing) -> usize {
        let users = self.lock();
        let Some(entry) = users.get(user) else { return 0 };
        entry.connections.iter().filter(|connection| connection.order.give(closing)).count()
    }

    /// The close orders of the connections no order was given to yet (what a drain still has to
    /// close).
    pub(crate) fn unordered(&self) -> Vec<Arc<CloseOrder>> {
        let users = self.lock();
        let open = users.values().flat_map(|entry| &entry.connections);
        open.filter(|connection| !connection.order.is_given()).map(|connection| Arc::clone(&connection.order)).collect()
    }

    /// Connections on this instance.
    pub(crate) fn connection_count(&self) -> usize {
        self.lock().values().map(|entry| entry.connections.len()).sum()
    }
}

impl Registration {
    /// Waits until this instance listens to the user's channel, at most `limit` (Redis may be
    /// down; the connection then works as soon as the subscriber is back, like every other one).
    pub(crate) async fn subscribed(&mut self, limit: std::time::Duration) -> bool {
        match self.subscribed.take() {
            None => true,
            Some(confirmed) => tokio::time::timeout(limit, confirmed).await.is_ok_and(|result| result.is_ok()),
        }
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
        assert!(matches!(seen.try_recv().unwrap(), SubscriptionChange::Subscribe { user, .. } if user == "teacher-1"));
        assert!(matches!(seen.try_recv().unwrap(), SubscriptionChange::Subscribe { user, .. } if user == "teacher-2"));
        drop(first);
        assert!(seen.try_recv().is_err(), "one connection remains");
        drop(second);
        assert_eq!(seen.try_recv().unwrap(), SubscriptionChange::Unsubscribe("teacher-1".into()));
        assert_eq!(hub.connection_count(), 1);
    }

    #[tokio::test]
    async fn a_connection_waits_until_its_users_channel_is_subscribed() {
        let (changes, mut seen) = mpsc::unbounded_channel();
        let hub = Hub::new(5, 8, Some(changes), Metrics::new().0);
        let mut first = hub.register("u").unwrap();
        let Ok(SubscriptionChange::Subscribe { generation, .. }) = seen.try_recv() else { panic!("no subscribe") };
        let short = std::time::Duration::from_millis(10);
        assert!(!first.subscribed(short).await, "not confirmed yet");

        // The user leaves and comes back before the first SUBSCRIBE is confirmed: that late
        // confirmation is for the old entry and must not release the new connection.
        drop(first);
        let mut again = hub.register("u").unwrap();
        hub.confirm("u", Some(generation));
        assert!(!again.subscribed(short).await);
        let Ok(SubscriptionChange::Unsubscribe(_)) = seen.try_recv() else { panic!("no unsubscribe") };
        let Ok(SubscriptionChange::Subscribe { generation, .. }) = seen.try_recv() else { panic!("no subscribe") };
        let mut waiting = hub.register("u").unwrap();
        hub.confirm("u", Some(generation));
        assert!(waiting.subscribed(short).await);
        assert!(hub.register("u").unwrap().subscribed(short).await, "later connections need not wait");

        // After Redis comes back, the subscriber confirms everyone again.
        hub.unconfirm_all();
        let mut during_outage = hub.register("u").unwrap();
        assert!(!during_outage.subscribed(short).await);
        drop(again);
        hub.confirm("u", None);
        assert!(hub.register("u").unwrap().subscribed(short).await);
    }

    /// Replays subscription changes in order onto a model of what the Redis subscriber listens to,
    /// failing on any change that is not a transition (a second `Subscribe` for a user already
    /// listened to, an `Unsubscribe` for one that is not): such a change proves two changes of one
    /// user were sent out of order. Returns each listened-to user with the generation it confirms.
    fn apply_in_order(changes: &mut mpsc::UnboundedReceiver<SubscriptionChange>, model: &mut HashMap<String, u64>) {
        while let Ok(change) = changes.try_recv() {
            match change {
                SubscriptionChange::Subscribe { user, generation } => {
                    let earlier = model.insert(user.clone(), generation);
                    assert!(earlier.is_none(), "Subscribe for {user} while already subscribed: changes out of order");
                }
                SubscriptionChange::Unsubscribe(user) => {
                    assert!(
                        model.remove(&user).is_some(),
                        "Unsubscribe for {user} while not subscribed: changes out of order"
                    );
                }
            }
        }
    }

    /// Tab reloads, many at once: threads register and drop connections of the same few users as
    /// fast as they can. Whatever the interleaving, the changes applied in the order they were sent
    /// must leave the subscriber listening to exactly the hub's users, with their current generations.
    #[test]
    fn racing_registrations_leave_the_subscriptions_equal_to_the_hub() {
        const THREADS: usize = 8;
        const ROUNDS: usize = 20;
        const ITERATIONS: usize = 500;
        let (changes, mut seen) = mpsc::unbounded_channel();
        let hub = Hub::new(THREADS, 8, Some(changes), Metrics::new().0);
        let users = ["reloading", "second", "third"];
        let mut model = HashMap::new();
        for round in 0..ROUNDS {
            let barrier = Arc::new(std::sync::Barrier::new(THREADS));
            let kept: Vec<Option<Registration>> = std::thread::scope(|scope| {
                let threads: Vec<_> = (0..THREADS)
                    .map(|thread| {
                        let (hub, barrier) = (Arc::clone(&hub), Arc::clone(&barrier));
                        // Most threads share one user, so its last socket closing and a new one
                        // registering race constantly; the rest spread over the other users.
                        let user = if thread % 2 == 0 { users[0] } else { users[1 + (thread / 2 + round) % 2] };
                        scope.spawn(move || {
                            barrier.wait();
                            for _ in 0..ITERATIONS {
                                drop(hub.register(user).expect("under the limit"));
                            }
                            // Some threads end holding a connection, some not, varying by round.
                            ((thread + round) % 3 == 0).then(|| hub.register(user).expect("under the limit"))
                        })
                    })
                    .collect();
                threads.into_iter().map(|thread| thread.join().expect("the thread finished")).collect()
            });
            apply_in_order(&mut seen, &mut model);
            let mut expected: Vec<(String, u64)> = hub.users();
            let mut subscribed: Vec<(String, u64)> = model.clone().into_iter().collect();
            expected.sort();
            subscribed.sort();
            assert_eq!(subscribed, expected, "round {round}: the subscriber's view differs from the hub");
            drop(kept);
            apply_in_order(&mut seen, &mut model);
            assert!(model.is_empty() && hub.users().is_empty(), "round {round}: everyone left");
        }
    }

    /// The subscriber loses Redis twice before a socket acted on the first confirmation: that
    /// confirmation must not release live delivery during the second interruption, or live
    /// notifications would overtake the gap and the catch-up would start after them.
    #[tokio::test]
    async fn a_confirmation_of_an_earlier_interruption_does_not_release_a_later_one() {
        let (changes, _seen) = mpsc::unbounded_channel();
        let hub = Hub::new(5, 8, Some(changes), Metrics::new().0);
        let registration = hub.register("u").unwrap();
        hub.confirm("u", None);
        assert!(!registration.catch_up.is_pending());
        let short = std::time::Duration::from_millis(20);

        hub.unconfirm_all();
        assert!(registration.catch_up.is_pending());
        hub.confirm("u", None);
        hub.unconfirm_all();
        assert!(tokio::time::timeout(short, registration.catch_up.ready()).await.is_err(), "interrupted again");
        assert!(registration.catch_up.is_pending());

        hub.confirm("u", None);
        let interruption = tokio::time::timeout(short, registration.catch_up.ready()).await.expect("confirmed");
        // Another interruption while the socket reads the history holds live delivery again.
        registration.catch_up.done(interruption);
        assert!(!registration.catch_up.is_pending());
        hub.unconfirm_all();
        assert!(registration.catch_up.is_pending());
        let during = hub.register("u").unwrap();
        assert!(during.catch_up.is_pending(), "a socket registered during an interruption catches up too");
        hub.confirm("u", None);
        for catch_up in [&registration.catch_up, &during.catch_up] {
            let interruption = tokio::time::timeout(short, catch_up.ready()).await.expect("confirmed");
            catch_up.done(interruption);
            assert!(!catch_up.is_pending());
        }
    }

    #[tokio::test]
    async fn embedded_connections_never_wait() {
        let hub = Hub::new(5, 8, None, Metrics::new().0);
        assert!(hub.register("u").unwrap().subscribed(std::time::Duration::ZERO).await);
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
