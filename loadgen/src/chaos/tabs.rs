//! The browser tabs: one task per tab that holds a WebSocket to herald, records every frame, and
//! when the socket ends reconnects through the balancer with backoff, as a browser behind a load
//! balancer would. A tab is a resuming client ([`herald_loadgen::resume`]): it remembers the id of
//! the last notification it processed, reconnects with `?since=<id>`, reads the `resumed` frame and
//! the replay after it, and drops (and counts) any id it already processed. It sends nothing else;
//! tungstenite answers the server's pings while reading.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use herald_loadgen::resume::{Cursor, Incoming, Replay, Verdict, read_frame, resume_url};
use herald_loadgen::wire::{connection_url, describe_close, describe_error};
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

/// How one socket opened with `since` was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResumeRecord {
    /// The id sent as `since`.
    pub since: String,
    /// `(recovered, missed)` of the `resumed` frame; `None`: none came (before the socket ended,
    /// or at all).
    pub answer: Option<(bool, u64)>,
    /// The first text frame was a notification, not the `resumed` frame: against the contract.
    pub unanswered: bool,
    /// Notifications of the replay that arrived (all `missed` of them, unless the socket ended
    /// first).
    pub replayed: u64,
}

/// One socket of a tab: where, when, and what it saw.
#[derive(Debug)]
pub(crate) struct SocketRecord {
    pub instance: usize,
    pub opened_ns: u64,
    /// When and why it ended before the run stopped it; `None` when it was held to the end.
    pub closed: Option<(u64, String)>,
    /// Present when the socket was opened with `since`.
    pub resume: Option<ResumeRecord>,
    /// Counted events of its user the tab had not received before, with the time they arrived.
    pub received: Vec<(u64, u64)>,
    /// Counted events whose notification id the tab had already processed (dropped by the tab).
    pub duplicated: Vec<u64>,
    /// Counted events the tab had already received under another id (a second notification for
    /// the same event: processed, as a browser would, and counted).
    pub repeated: Vec<u64>,
    /// Notifications of any kind whose id the tab had processed before (`duplicated` plus warm-up
    /// and other notifications).
    pub duplicate_ids: u64,
    /// Notifications whose id was not newer than the tab's last one (ids strictly increase per
    /// user).
    pub out_of_order: u64,
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

    /// `recovered` of this socket's `resumed` frame.
    pub(crate) fn recovered(&self) -> Option<bool> {
        self.resume.as_ref().and_then(|resume| resume.answer).map(|(recovered, _)| recovered)
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

/// What a tab keeps across its sockets, as a browser tab keeps it in memory.
#[derive(Debug, Default)]
struct Memory {
    cursor: Cursor,
    /// Counted events received so far.
    events: HashSet<u64>,
}

/// Runs one tab of `user` until `tabs.stop`: its first socket goes to `first_instance`, later ones
/// wherever the balancer says.
pub(crate) async fn tab(user: usize, tab: usize, first_instance: usize, token: String, tabs: Arc<Tabs>) -> TabRecord {
    let mut record = TabRecord { user, tab, sockets: Vec::new(), failed_handshakes: BTreeMap::new() };
    let mut memory = Memory::default();
    let mut failures: u32 = 0;
    let mut instance = first_instance;
    while !tabs.stop.is_cancelled() {
        let since = memory.cursor.since().map(str::to_owned);
        let base = format!("ws://127.0.0.1:{}/ws", tabs.balancer.port(instance));
        let url = connection_url(&resume_url(&base, since.as_deref()), &token);
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
                let socket_record = read(socket, instance, user, since, &mut memory, &tabs).await;
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
async fn read<S>(
    mut socket: S,
    instance: usize,
    user: usize,
    since: Option<String>,
    memory: &mut Memory,
    tabs: &Tabs,
) -> SocketRecord
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + futures_util::Sink<Message>
        + Unpin,
{
    let ledger = &tabs.ledger;
    let mut replay = Replay::opened(since.is_some());
    let mut record = SocketRecord {
        instance,
        opened_ns: ledger.now(),
        closed: None,
        resume: since.map(|since| ResumeRecord { since, answer: None, unanswered: false, replayed: 0 }),
        received: Vec::new(),
        duplicated: Vec::new(),
        repeated: Vec::new(),
        duplicate_ids: 0,
        out_of_order: 0,
        misrouted: Vec::new(),
        misrouted_warmups: 0,
    };
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
        let incoming = read_frame(&text);
        let replayed = replay.step(&incoming);
        if let Some(resume) = &mut record.resume {
            resume.answer = replay.answer();
            resume.unanswered = replay == Replay::Unanswered;
            resume.replayed += u64::from(replayed);
        }
        let Incoming::Notification { id, event, class_id } = incoming else {
            if let Incoming::Position { since } = incoming {
                memory.cursor.start_at(&since);
            }
            continue;
        };
        let tag = match class_id.as_deref() {
            Some(class_id) if event == tabs.notification => ledger.marking.classify(class_id),
            _ => Tag::Foreign,
        };
        if let Tag::Event(seq) = tag
            && ledger.marking.user_of(seq) != user
        {
            record.misrouted.push(seq);
            continue;
        }
        if let Tag::Warmup(partition) = tag
            && partition % ledger.marking.users() != user
        {
            record.misrouted_warmups += 1;
            continue;
        }
        match id.as_deref().map(|id| memory.cursor.accept(id)) {
            Some(Verdict::Duplicate) => {
                record.duplicate_ids += 1;
                if let Tag::Event(seq) = tag {
                    record.duplicated.push(seq);
                }
                continue;
            }
            Some(Verdict::OutOfOrder) => record.out_of_order += 1,
            Some(Verdict::Fresh) | None => {}
        }
        match tag {
            Tag::Event(seq) => {
                if memory.events.insert(seq) {
                    record.received.push((seq, at));
                    ledger.record_receipt(seq, at);
                } else {
                    record.repeated.push(seq);
                }
            }
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
            resume: None,
            received: Vec::new(),
            duplicated: Vec::new(),
            repeated: Vec::new(),
            duplicate_ids: 0,
            out_of_order: 0,
            misrouted: Vec::new(),
            misrouted_warmups: 0,
        };
        assert!(!socket(None).connected_at(120, 50));
        assert!(socket(None).connected_at(150, 50));
        assert!(socket(Some(200)).connected_at(199, 50));
        assert!(!socket(Some(200)).connected_at(200, 50));
    }
}
