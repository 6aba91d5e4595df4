//! Leaving without a thundering herd: on SIGTERM herald closes its sockets in staggered batches
//! spread over `--drain-seconds` instead of all at once, so that the browsers it held reconnect to
//! the other instances a few at a time.
//!
//! While draining:
//!
//! - `/readyz` is 503 with the check `draining`, from the first moment, so a balancer stops sending
//!   new connections here.
//! - A WebSocket that still arrives is upgraded and closed at once with 1012 and a
//!   `retry_after_ms` (an HTTP 503 at the handshake would reach the browser only as an anonymous
//!   1006; a close frame tells it to go elsewhere, and when).
//! - Everything else runs as usual (consumer, subscriber, delivery to the sockets not closed yet).
//!
//! Batches: at most one every [`MIN_BATCH_INTERVAL`], at most one per socket; batch `i` of `n` is
//! closed `i × drain / n` after the start, so the last one goes before the drain time is up. Each
//! batch takes its share of the sockets still open (a socket that left by itself is not counted,
//! one that arrived before the drain began is). Each socket is closed with 1012 and a reason
//! carrying `retry_after_ms`, drawn uniformly below one batch interval (at least one second), so
//! the browsers of one batch spread their reconnects until the next batch. `--drain-seconds 0`
//! closes every socket at once, still with jittered `retry_after_ms`. Then `run` stops the
//! background tasks and waits for the sockets' close frames as before (`--shutdown-timeout-seconds`).

use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::health::Health;
use crate::hub::Hub;
use crate::session::Closing;

/// The readiness check that fails while the instance drains.
pub(crate) const CHECK: &str = "draining";

/// The shortest time between two batches.
const MIN_BATCH_INTERVAL: Duration = Duration::from_millis(100);

/// The shortest spread of `retry_after_ms`.
const MIN_JITTER: Duration = Duration::from_secs(1);

/// Whether the instance drains, and over how long.
pub(crate) struct Drain {
    started: AtomicBool,
    over: Duration,
}

impl Drain {
    pub(crate) fn new(over: Duration) -> Self {
        Drain { started: AtomicBool::new(false), over }
    }

    /// Whether the drain has begun: new sockets are refused.
    pub(crate) fn is_draining(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// How long a browser closed outside a batch (refused during the drain, or closed by a
    /// shutdown without drain) should wait before reconnecting.
    pub(crate) fn retry_after_ms(&self) -> u64 {
        jitter_ms(self.interval(1))
    }

    /// The time between batches when there are `batches`.
    fn interval(&self, batches: usize) -> Duration {
        self.over / u32::try_from(batches.max(1)).unwrap_or(u32::MAX)
    }

    /// Drains: readiness fails, new sockets are refused, and every socket of `hub` is ordered closed
    /// in staggered batches. Returns after the last batch was ordered (their close frames are still
    /// being written).
    pub(crate) async fn run(&self, hub: &Hub, health: &Health) {
        self.started.store(true, Ordering::Relaxed);
        health.fail(CHECK, "the instance is draining (shutting down); connect to another instance");
        let start = tokio::time::Instant::now();
        let open = hub.unordered().len();
        let batches = open.min(batch_slots(self.over)).max(1);
        let interval = self.interval(batches);
        tracing::info!(
            sockets = open,
            batches,
            interval_ms = interval.as_millis() as u64,
            "draining: closing sockets in batches with 1012"
        );
        for batch in 0..batches {
            if batch > 0 {
                tokio::time::sleep_until(start + interval * u32::try_from(batch).unwrap_or(u32::MAX)).await;
            }
            let remaining = hub.unordered();
            let share = remaining.len().div_ceil(batches - batch);
            for order in remaining.iter().take(share) {
                order.give(Closing::Restart { retry_after_ms: jitter_ms(interval) });
            }
        }
    }
}

/// How many batches fit in `over`: one per [`MIN_BATCH_INTERVAL`].
fn batch_slots(over: Duration) -> usize {
    usize::try_from(over.as_millis() / MIN_BATCH_INTERVAL.as_millis()).unwrap_or(usize::MAX)
}

/// A random number of milliseconds below `spread` (at least [`MIN_JITTER`]).
fn jitter_ms(spread: Duration) -> u64 {
    let bound = u64::try_from(spread.max(MIN_JITTER).as_millis()).unwrap_or(u64::MAX);
    random_u64() % bound
}

/// A random number, good enough to spread reconnects and to name an instance: `RandomState` is
/// seeded from the operating system's randomness once per thread and differs on every
/// construction, and the counter makes two draws on one thread differ too.
pub(crate) fn random_u64() -> u64 {
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    std::collections::hash_map::RandomState::new().hash_one(DRAWS.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn batches_are_at_most_one_per_slot_and_jitter_stays_below_its_spread() {
        assert_eq!(batch_slots(Duration::ZERO), 0);
        assert_eq!(batch_slots(Duration::from_secs(10)), 100);
        let draws: Vec<u64> = (0..200).map(|_| jitter_ms(Duration::from_millis(1500))).collect();
        assert!(draws.iter().all(|draw| *draw < 1500), "{draws:?}");
        assert!(draws.iter().any(|draw| *draw != draws[0]), "jitter varies");
        assert!((0..50).all(|_| jitter_ms(Duration::ZERO) < 1000), "at least a second of spread");
    }

    #[tokio::test]
    async fn a_drain_orders_every_socket_closed_in_spread_batches() {
        let (metrics, _) = Metrics::new();
        let hub = Hub::new(5, 8, None, metrics.clone());
        let registrations: Vec<_> = (0..5).map(|index| hub.register(&format!("user-{index}")).unwrap()).collect();
        let drain = Drain::new(Duration::from_millis(500));
        let health = Health::new(metrics);
        let run = drain.run(&hub, &health);
        tokio::pin!(run);
        // The first batch is ordered at once, the rest later.
        tokio::select! {
            biased;
            () = &mut run => panic!("the drain ended at once"),
            () = tokio::task::yield_now() => {}
        }
        assert!(drain.is_draining());
        assert!(health.statuses().iter().any(|status| status.check == CHECK && status.failure.is_some()));
        let ordered = registrations.iter().filter(|registration| registration.order.is_given()).count();
        assert_eq!(ordered, 1, "5 sockets over 500 ms: 5 batches of one");
        run.await;
        for registration in &registrations {
            let closing = registration.order.given().await;
            assert!(matches!(closing, Closing::Restart { retry_after_ms } if retry_after_ms < 1000), "{closing:?}");
        }
    }
}
