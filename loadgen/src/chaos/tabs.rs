//! The browser tabs: one task per tab that holds a WebSocket to herald, records every frame, and
//! when the socket ends reconnects through the balancer with backoff, as a browser behind a load
//! balancer would. A tab never sends anything of its own; tungstenite answers the server's pings
//! while reading.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use herald_loadgen::wire::{connection_url, describe_close, describe_error};
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::balancer::Balancer;
use crate::ledger::Ledger;
use herald_loadgen::marking::Tag;

/// A handshake slower than this counts as failed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// First wait before reconnecting; doubled after each failed attempt up to `MAX_BACKOFF`, plus up
/// to half again of jitter so that the tabs of a killed instance do not return in one wave.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(3);

/// tungstenite's read buffer per socket (its default, 128 KiB, is zero-filled per socket).
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// One socket of a tab: where, when, and what it saw.
#[derive(Debug)]
pub(crate) struct SocketRecord {
    pub instance: usize,
    pub opened_ns: u64,
    /// When and why it ended before the run stopped it; `None` when it was held to the end.
    pub closed: Option<(u64, String)>,
    /// Counted events of its user, first copy each, with the time they arrived.
    pub received: Vec<(u64, u64)>,
    /// Events whose notification id had already arrived on this socket.
    pub duplicated: Vec<u64>,
    /// Counted events addressed to another user.
    pub misrouted: Vec<u64>,
    /// Warm-up events addressed to another user.
    pub misrouted_warmups: u64,
}

impl SocketRecord {
    /// Whether this socket was open at `at`, having been open for at least `margin` (time for
    /// herald to subscribe it).
    pub(crate) fn connected_at(&self, at: u64, margin: u64) -> bool {
        self.opened_ns.saturating_add(margin) <= at && self.closed.as_ref().is_none_or(|(closed, _)| *closed > at)
    }
}

/// Everything one tab saw, returned when its task ends.
#[derive(Debug)]
pub(crate) struct TabRecord {
    pub user: usize,
    pub tab: usize,
    pub sockets: Vec<SocketRecord>,
    /// Failed handshakes, by reason.
    pub failed_handshakes: BTreeMap<String, u64>,
}

/// What every tab shares.
pub(crate) struct Tabs {
    pub ledger: Arc<Ledger>,
    pub balancer: Arc<Balancer>,
    /// Handshakes in flight at once (a debug herald answering 600 at once is slow).
    pub gate: Semaphore,
    pub notification: String,
    pub stop: CancellationToken,
    /// Told once per tab, when its first socket opens.
    pub first_open: mpsc::UnboundedSender<usize>,
}

#[derive(Deserialize)]
struct Frame {
    id: Option<String>,
    event: Option<String>,
    data: Option<FrameData>,
}

#[derive(Deserialize)]
struct FrameData {
    class_id: Option<String>,
}

/// Runs one tab of `user` until `tabs.stop`: its first socket goes to `first_instance`, later ones
/// wherever the balancer says.
pub(crate) async fn tab(user: usize, tab: usize, first_instance: usize, token: String, tabs: Arc<Tabs>) -> TabRecord {
    let mut record = TabRecord { user, tab, sockets: Vec::new(), failed_handshakes: BTreeMap::new() };
    let mut failures: u32 = 0;
    let mut instance = first_instance;
    while !tabs.stop.is_cancelled() {
        let url = connection_url(&format!("ws://127.0.0.1:{}/ws", tabs.balancer.port(instance)), &token);
        let opened = {
            let _permit = tabs.gate.acquire().await;
            let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
            let handshake = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true);
            tokio::select! {
                () = tabs.stop.cancelled() => break,
                result = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake) => match result {
                    Ok(Ok((socket, _response))) => Ok(socket),
                    Ok(Err(error)) => Err(describe_error(&error)),
                    Err(_) => Err(format!("handshake took longer than {} s", HANDSHAKE_TIMEOUT.as_secs())),
                },
            }
        };
        match opened {
            Ok(socket) => {
                if record.sockets.is_empty() {
                    let _ = tabs.first_open.send(user);
                }
                let socket_record = read(socket, instance, user, &tabs).await;
                let dropped = socket_record.closed.is_some();
                record.sockets.push(socket_record);
                if !dropped {
                    break;
                }
                failures = 0;
            }
            Err(why) => {
                *record.failed_handshakes.entry(why).or_insert(0) += 1;
                failures = failures.saturating_add(1);
            }
        }
        if !backoff(failures, user * 2 + tab, &tabs.stop).await {
            break;
        }
        instance = tabs.balancer.pick();
    }
    record
}

/// Waits before the next attempt; false when the run stopped meanwhile.
async fn backoff(failures: u32, tab: usize, stop: &CancellationToken) -> bool {
    let base = FIRST_BACKOFF.saturating_mul(1 << failures.min(5)).min(MAX_BACKOFF);
    // Jitter from the clock's low bits and the tab number: spread enough, and no dependency.
    let noise = (u64::from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |now| now.subsec_nanos()),
    ) ^ (tab as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        % 1000;
    let wait = base + base.mul_f64(noise as f64 / 2000.0);
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

/// Reads one socket until it ends or the run stops.
async fn read<S>(mut socket: S, instance: usize, user: usize, tabs: &Tabs) -> SocketRecord
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + futures_util::Sink<Message>
        + Unpin,
{
    let ledger = &tabs.ledger;
    let mut record = SocketRecord {
        instance,
        opened_ns: ledger.now(),
        closed: None,
        received: Vec::new(),
        duplicated: Vec::new(),
        misrouted: Vec::new(),
        misrouted_warmups: 0,
    };
    let mut ids: HashSet<String> = HashSet::new();
    let mut seen: HashSet<u64> = HashSet::new();
    let ended = loop {
        let frame = tokio::select! {
            () = tabs.stop.cancelled() => {
                let _ = tokio::time::timeout(Duration::from_secs(2), futures_util::SinkExt::close(&mut socket)).await;
                break None;
            }
            frame = socket.next() => frame,
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => break Some(describe_close(frame.as_ref())),
            Some(Ok(_)) => continue,
            Some(Err(error)) => break Some(describe_error(&error)),
            None => break Some("connection ended without a close frame".to_owned()),
        };
        let at = ledger.now();
        let Ok(frame) = serde_json::from_str::<Frame>(&text) else { continue };
        let tag = match (&frame.event, frame.data.as_ref().and_then(|data| data.class_id.as_deref())) {
            (Some(event), Some(class_id)) if *event == tabs.notification => ledger.marking.classify(class_id),
            _ => Tag::Foreign,
        };
        match tag {
            Tag::Event(seq) if ledger.marking.user_of(seq) != user => record.misrouted.push(seq),
            Tag::Event(seq) => {
                let repeated_id = frame.id.is_some_and(|id| !ids.insert(id));
                if repeated_id {
                    record.duplicated.push(seq);
                } else if seen.insert(seq) {
                    record.received.push((seq, at));
                    ledger.record_receipt(seq, at);
                }
            }
            Tag::Warmup(partition) if partition % ledger.marking.users() != user => record.misrouted_warmups += 1,
            Tag::Warmup(partition) => ledger.see_warmup(partition),
            Tag::Foreign => {}
        }
    };
    record.closed = ended.map(|why| (ledger.now(), why));
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_counts_as_connected_after_the_margin_and_until_it_closes() {
        let socket = |closed: Option<u64>| SocketRecord {
            instance: 0,
            opened_ns: 100,
            closed: closed.map(|at| (at, "closed".to_owned())),
            received: Vec::new(),
            duplicated: Vec::new(),
            misrouted: Vec::new(),
            misrouted_warmups: 0,
        };
        assert!(!socket(None).connected_at(120, 50));
        assert!(socket(None).connected_at(150, 50));
        assert!(socket(Some(200)).connected_at(199, 50));
        assert!(!socket(Some(200)).connected_at(200, 50));
    }
}
