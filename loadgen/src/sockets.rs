//! The WebSocket side: one task per connection that opens it, then reads every frame until told to
//! stop, checking each notification against the tracker.
//!
//! The client never sends anything of its own. Reading continuously is what keeps a connection
//! alive: tungstenite answers the server's pings with pongs as part of reading.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use herald_loadgen::wire::{describe_close, describe_error};

use crate::tracker::{Seen, Tracker};
use herald_loadgen::marking::Tag;

/// What one connection saw, returned when its task ends.
#[derive(Debug, Default)]
pub(crate) struct ConnectionOutcome {
    pub user: usize,
    /// Why the handshake failed, if it did.
    pub failed: Option<String>,
    /// Why the connection ended before the run stopped it, and when (since the tracker's origin).
    pub ended: Option<(String, Duration)>,
    /// Which of its user's events arrived (bit `seq / users`).
    pub seen: Seen,
    /// Distinct events of its user that arrived.
    pub distinct: u64,
    /// Further copies of an event that had already arrived on this connection.
    pub duplicates: u64,
    /// This run's events addressed to another user.
    pub misrouted: u64,
    /// Text frames that are not this run's notifications (other events, other runs, pongs).
    pub foreign: u64,
}

/// How a connection is opened.
pub(crate) struct Dial {
    pub gate: Arc<Semaphore>,
    pub timeout: Duration,
    /// Receives `Ok` or the failure once the handshake is over.
    pub handshakes: mpsc::UnboundedSender<Result<(), String>>,
    pub stop: CancellationToken,
    pub notification: Arc<str>,
    /// tungstenite's read buffer per connection. Its default, 128 KiB, is zero-filled on the first
    /// read and so costs 128 KiB of memory per connection; notifications are a few hundred bytes.
    pub read_buffer_bytes: usize,
}

#[derive(Deserialize)]
struct Frame {
    event: Option<String>,
    data: Option<FrameData>,
}

#[derive(Deserialize)]
struct FrameData {
    class_id: Option<String>,
}

/// Opens one connection for `user` and reads it until `dial.stop` is cancelled or it ends.
pub(crate) async fn connection(user: usize, url: String, tracker: Arc<Tracker>, dial: Arc<Dial>) -> ConnectionOutcome {
    let mut outcome = ConnectionOutcome { user, ..ConnectionOutcome::default() };
    let opened = {
        let _permit = dial.gate.acquire().await;
        let config = WebSocketConfig::default().read_buffer_size(dial.read_buffer_bytes);
        let handshake = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true);
        match tokio::time::timeout(dial.timeout, handshake).await {
            Ok(Ok((socket, _response))) => Ok(socket),
            Ok(Err(error)) => Err(describe_error(&error)),
            Err(_) => Err(format!("handshake took longer than {:.1} s", dial.timeout.as_secs_f64())),
        }
    };
    let mut socket = match opened {
        Ok(socket) => socket,
        Err(why) => {
            let _ = dial.handshakes.send(Err(why.clone()));
            outcome.failed = Some(why);
            return outcome;
        }
    };
    tracker.connection_opened(user);
    let _ = dial.handshakes.send(Ok(()));
    let users = tracker.marking.users();
    let ended = loop {
        let frame = tokio::select! {
            () = dial.stop.cancelled() => {
                // Closing is a courtesy to the server; do not let a stuck one hold up the report.
                let _ = tokio::time::timeout(Duration::from_secs(5), socket.close(None)).await;
                break None;
            }
            frame = socket.next() => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => {
                let Ok(frame) = serde_json::from_str::<Frame>(&text) else {
                    outcome.foreign += 1;
                    continue;
                };
                let class_id = frame.data.and_then(|data| data.class_id);
                let tag = match (&frame.event, &class_id) {
                    (Some(event), Some(class_id)) if **event == *dial.notification => {
                        tracker.marking.classify(class_id)
                    }
                    _ => Tag::Foreign,
                };
                match tag {
                    Tag::Event(seq) if tracker.marking.user_of(seq) != user => outcome.misrouted += 1,
                    Tag::Event(seq) => {
                        if outcome.seen.insert((seq / users as u64) as usize) {
                            outcome.distinct += 1;
                            tracker.record_receipt(seq);
                        } else {
                            outcome.duplicates += 1;
                        }
                    }
                    Tag::Warmup(slot) => tracker.see_warmup(slot),
                    Tag::Foreign => outcome.foreign += 1,
                }
            }
            Some(Ok(Message::Close(frame))) => break Some(describe_close(frame.as_ref())),
            // Pings are answered by tungstenite itself; binary frames are not part of the contract.
            Some(Ok(_)) => {}
            Some(Err(error)) => break Some(describe_error(&error)),
            None => break Some("connection ended without a close frame".to_owned()),
        }
    };
    tracker.connection_closed(user);
    outcome.ended = ended.map(|why| (why, tracker.elapsed()));
    outcome
}

/// Counts equal strings.
pub(crate) fn tally<'a>(reasons: impl Iterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for reason in reasons {
        *counts.entry(reason.to_owned()).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts() {
        let counts = tally(["a", "b", "a"].into_iter());
        assert_eq!(counts.into_iter().collect::<Vec<_>>(), [("a".to_owned(), 2), ("b".to_owned(), 1)]);
    }
}
