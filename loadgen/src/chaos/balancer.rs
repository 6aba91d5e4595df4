//! A load balancer in front of the herald instances, as the tabs see it: it checks each
//! instance's `/readyz` every half second, like a readiness probe, and hands reconnecting tabs to
//! the ready instances in turn (to any instance when none is ready, as balancers fail open).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// How often the balancer probes each instance.
const PROBE_EVERY: Duration = Duration::from_millis(500);

pub(crate) struct Balancer {
    ports: Vec<u16>,
    /// Instances the balancer routes to (the third instance joins during the run).
    enabled: Vec<AtomicBool>,
    /// The last probe of each instance answered 200.
    ready: Vec<AtomicBool>,
    next: AtomicUsize,
}

impl Balancer {
    pub(crate) fn new(ports: Vec<u16>) -> Balancer {
        let count = ports.len();
        Balancer {
            ports,
            enabled: (0..count).map(|_| AtomicBool::new(false)).collect(),
            ready: (0..count).map(|_| AtomicBool::new(false)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    pub(crate) fn port(&self, instance: usize) -> u16 {
        self.ports[instance]
    }

    pub(crate) fn enable(&self, instance: usize) {
        self.enabled[instance].store(true, Ordering::Release);
    }

    /// The next instance for a new connection.
    pub(crate) fn pick(&self) -> usize {
        let enabled: Vec<usize> =
            (0..self.ports.len()).filter(|instance| self.enabled[*instance].load(Ordering::Acquire)).collect();
        let ready: Vec<usize> =
            enabled.iter().copied().filter(|instance| self.ready[*instance].load(Ordering::Acquire)).collect();
        let choices = if ready.is_empty() { &enabled } else { &ready };
        match choices.len() {
            0 => 0,
            len => choices[self.next.fetch_add(1, Ordering::Relaxed) % len],
        }
    }

    /// Probes every enabled instance until `stop`.
    pub(crate) async fn watch(self: Arc<Self>, stop: CancellationToken) {
        loop {
            for instance in 0..self.ports.len() {
                if self.enabled[instance].load(Ordering::Acquire) {
                    let ready = ready(self.ports[instance]).await;
                    self.ready[instance].store(ready, Ordering::Release);
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(PROBE_EVERY) => {}
            }
        }
    }
}

/// Whether `GET /readyz` on 127.0.0.1:`port` answers 200 within a second.
pub(crate) async fn ready(port: u16) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
    };
    matches!(tokio::time::timeout(Duration::from_secs(1), probe).await, Ok(Some(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_ready_instances_in_turn_and_fails_open() {
        let balancer = Balancer::new(vec![1, 2, 3]);
        balancer.enable(0);
        balancer.enable(1);
        assert_eq!((0..4).map(|_| balancer.pick()).collect::<Vec<_>>(), [0, 1, 0, 1]);
        balancer.ready[1].store(true, Ordering::Release);
        assert!((0..4).all(|_| balancer.pick() == 1));
        balancer.enable(2);
        balancer.ready[2].store(true, Ordering::Release);
        let mut picked: Vec<usize> = (0..4).map(|_| balancer.pick()).collect();
        picked.sort_unstable();
        assert_eq!(picked, [1, 1, 2, 2]);
    }
}
