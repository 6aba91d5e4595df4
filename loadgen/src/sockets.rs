//! The WebSocket side: one task per connection that opens it, then reads every frame until told to
//! stop, checking each notification against the tracker.
//!
//! A connection is a resuming client ([`herald_loadgen::resume`]): it remembers the id of the last
//! notification it processed, and when herald ends its socket for a reason a browser recovers from
//! (a slow-consumer close, a drain, a dropped network) it reconnects with `?since=<id>`, reads the
//! `resumed` frame and the replay after it, and drops any id it already processed. It sends nothing
//! else: reading continuously is what keeps a connection alive (tungstenite answers the server's
//! pings as part of reading). With `--protocol centrifugo` a connection sends Centrifugo's
//! `connect` command first and answers its `{}` pings, and does not resume.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use herald_loadgen::centrifugo;
use herald_loadgen::resume::{Cursor, Incoming, Replay, Resumes, Verdict, read_frame, resume_url};
use herald_loadgen::wire::{connection_url, describe_close, describe_error};

use crate::options::Protocol;
use crate::tracker::{Seen, Tracker};
use herald_loadgen::marking::Tag;

/// Wait before reconnecting after a socket ended, doubled after each failed attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Close codes after which a browser does not reconnect: the token or the user is refused
/// (1008, 4001), the user holds too many sockets (4000), an operator disconnected them (4003).
const FINAL_CLOSE_CODES: [u16; 4] = [1008, 4000, 4001, 4003];

/// What one connection saw, returned when its task ends.
#[derive(Debug, Default)]
pub(crate) struct ConnectionOutcome {
    pub user: usize,
    /// Why the first handshake failed, if it did.
    pub failed: Option<String>,
    /// Why the connection ended for good before the run stopped it, and when (since the tracker's
    /// origin).
    pub ended: Option<(String, Duration)>,
    /// Sockets that ended and were opened again with `since`: why, and when.
    pub resumed_after: Vec<(String, Duration)>,
    /// Which of its user's events arrived (bit `seq / users`).
    pub seen: Seen,
    /// Distinct events of its user that arrived.
    pub distinct: u64,
    /// Notifications whose id this connection had already processed (dropped).
    pub duplicates: u64,
    /// Events of its user that arrived again under another id.
    pub repeated: u64,
    /// Notifications whose id was not newer than the last one.
    pub out_of_order: u64,
    /// This run's events addressed to another user.
    pub misrouted: u64,
    /// Text frames that are not this run's notifications (other events, other runs, pongs).
    pub foreign: u64,
    pub resumes: Resumes,
}

/// How a connection is opened.
pub(crate) struct Dial {
    pub gate: Arc<Semaphore>,
    pub timeout: Duration,
    /// Receives `Ok` or the failure once the first handshake is over.
    pub handshakes: mpsc::UnboundedSender<Result<(), String>>,
    pub stop: CancellationToken,
    pub notification: Arc<str>,
    /// tungstenite's read buffer per connection. Its default, 128 KiB, is zero-filled on the first
    /// read and so costs 128 KiB of memory per connection; notifications are a few hundred bytes.
    pub read_buffer_bytes: usize,
    /// Reconnect with `since` when a socket ends (else a socket that ends stays closed).
    pub resume: bool,
    pub protocol: Protocol,
}

/// Opens one connection for `user` at one of `urls` (without a token: `token` is added to each
/// attempt), the first at `urls[first % len]`, and reads it, reconnecting with `since` at the next
/// endpoint when it ends, until `dial.stop` is cancelled or it ends for good.
pub(crate) async fn connection(
    user: usize,
    (urls, first): (Arc<[String]>, usize),
    token: String,
    tracker: Arc<Tracker>,
    dial: Arc<Dial>,
) -> ConnectionOutcome {
    let mut outcome = ConnectionOutcome { user, ..ConnectionOutcome::default() };
    let mut cursor = Cursor::default();
    let mut opened_once = false;
    let mut failures: u32 = 0;
    let mut attempt = first;
    loop {
        let url = &urls[attempt % urls.len()];
        attempt = attempt.wrapping_add(1);
        let since = cursor.since().map(str::to_owned);
        let target = match dial.protocol {
            Protocol::Herald => connection_url(&resume_url(url, since.as_deref()), &token),
            Protocol::Centrifugo => url.clone(),
        };
        let opened = {
            let _permit = dial.gate.acquire().await;
            let config = WebSocketConfig::default().read_buffer_size(dial.read_buffer_bytes);
            let handshake = tokio_tungstenite::connect_async_with_config(target.as_str(), Some(config), true);
            tokio::select! {
                () = dial.stop.cancelled() => return outcome,
                result = tokio::time::timeout(dial.timeout, handshake) => match result {
                    Ok(Ok((socket, _response))) => Ok(socket),
                    Ok(Err(error)) => Err(describe_error(&error)),
                    Err(_) => Err(format!("handshake took longer than {:.1} s", dial.timeout.as_secs_f64())),
                },
            }
        };
        let mut socket = match opened {
            Ok(socket) => socket,
            Err(why) if !opened_once => {
                let _ = dial.handshakes.send(Err(why.clone()));
                outcome.failed = Some(why);
                return outcome;
            }
            Err(why) => {
                failures = failures.saturating_add(1);
                if failures > 5 {
                    outcome.ended = Some((format!("reconnecting failed 5 times: {why}"), tracker.elapsed()));
                    return outcome;
                }
                if !pause(failures, &dial.stop).await {
                    return outcome;
                }
                continue;
            }
        };
        if !opened_once {
            opened_once = true;
            let _ = dial.handshakes.send(Ok(()));
        }
        failures = 0;
        tracker.connection_opened(user);
        // Centrifugo opens the session with a command carrying the token (herald's is in the URL).
        let session = match dial.protocol {
            Protocol::Herald => Ok(()),
            Protocol::Centrifugo => socket.send(Message::text(centrifugo::connect_command(&token))).await,
        };
        let ended = match session {
            Ok(()) => read(socket, since.is_some(), user, &mut cursor, &mut outcome, &tracker, &dial).await,
            Err(error) => Some((format!("the connect command could not be sent: {}", describe_error(&error)), None)),
        };
        tracker.connection_closed(user);
        let Some((why, code)) = ended else { return outcome };
        let at = tracker.elapsed();
        if !dial.resume || code.is_some_and(|code| FINAL_CLOSE_CODES.contains(&code)) {
            outcome.ended = Some((why, at));
            return outcome;
        }
        outcome.resumed_after.push((why, at));
        if !pause(0, &dial.stop).await {
            return outcome;
        }
    }
}

/// Waits before the next attempt; false when the run stopped meanwhile.
async fn pause(failures: u32, stop: &CancellationToken) -> bool {
    let wait = FIRST_BACKOFF.saturating_mul(1 << failures.min(5)).min(MAX_BACKOFF);
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

/// Reads one socket until the run stops (`None`) or it ends: why, and the close code if any.
async fn read<S>(
    mut socket: S,
    with_since: bool,
    user: usize,
    cursor: &mut Cursor,
    outcome: &mut ConnectionOutcome,
    tracker: &Tracker,
    dial: &Dial,
) -> Option<(String, Option<u16>)>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + futures_util::Sink<Message>
        + Unpin,
{
    let mut receiver = Receiver { user, cursor, outcome, tracker, dial, replay: Replay::opened(with_since) };
    let ended = loop {
        let frame = tokio::select! {
            () = dial.stop.cancelled() => {
                // Closing is a courtesy to the server; do not let a stuck one hold up the report.
                let _ = tokio::time::timeout(Duration::from_secs(5), socket.close()).await;
                break None;
            }
            frame = socket.next() => frame,
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                break Some((describe_close(frame.as_ref()), frame.as_ref().map(|frame| u16::from(frame.code))));
            }
            // Pings are answered by tungstenite itself; binary frames are not part of the contract.
            Some(Ok(_)) => continue,
            Some(Err(error)) => break Some((describe_error(&error), None)),
            None => break Some(("connection ended without a close frame".to_owned(), None)),
        };
        match dial.protocol {
            Protocol::Herald => receiver.receive(read_frame(&text)),
            Protocol::Centrifugo => {
                let mut refused = None;
                for message in centrifugo::read_frame(&text) {
                    match message {
                        centrifugo::Message::Publication(incoming) => receiver.receive(incoming),
                        centrifugo::Message::Ping => {
                            if socket.send(Message::text("{}")).await.is_err() {
                                refused = Some("the pong could not be sent".to_owned());
                            }
                        }
                        centrifugo::Message::Refused(why) => refused = Some(format!("refused by the server: {why}")),
                        centrifugo::Message::Connected => {}
                        centrifugo::Message::Other => receiver.outcome.foreign += 1,
                    }
                }
                if let Some(why) = refused {
                    break Some((why, None));
                }
            }
        }
    };
    if with_since {
        // The replayed notifications were counted as they arrived.
        let Receiver { replay, outcome, .. } = receiver;
        outcome.resumes.count(replay.answer(), 0, replay == Replay::Unanswered);
    }
    ended
}

/// Counts what arrives on one socket into its connection's outcome.
struct Receiver<'a> {
    user: usize,
    cursor: &'a mut Cursor,
    outcome: &'a mut ConnectionOutcome,
    tracker: &'a Tracker,
    dial: &'a Dial,
    replay: Replay,
}

impl Receiver<'_> {
    /// Checks one notification against the tracker: its user, its id, whether it is new.
    fn receive(&mut self, incoming: Incoming) {
        let replayed = self.replay.step(&incoming);
        let outcome = &mut *self.outcome;
        outcome.resumes.replayed += u64::from(replayed);
        let Incoming::Notification { id, event, class_id } = incoming else {
            match incoming {
                Incoming::Position { since } => self.cursor.start_at(&since),
                Incoming::Resumed { .. } => {}
                Incoming::Notification { .. } | Incoming::Other => outcome.foreign += 1,
            }
            return;
        };
        let marking = &self.tracker.marking;
        let tag = match &class_id {
            Some(class_id) if *event == *self.dial.notification => marking.classify(class_id),
            _ => Tag::Foreign,
        };
        if let Tag::Event(seq) = tag
            && marking.user_of(seq) != self.user
        {
            outcome.misrouted += 1;
            return;
        }
        match id.as_deref().map(|id| self.cursor.accept(id)) {
            Some(Verdict::Duplicate) => {
                outcome.duplicates += 1;
                return;
            }
            Some(Verdict::OutOfOrder) => outcome.out_of_order += 1,
            Some(Verdict::Fresh) | None => {}
        }
        match tag {
            Tag::Event(seq) => {
                if outcome.seen.insert((seq / marking.users() as u64) as usize) {
                    outcome.distinct += 1;
                    self.tracker.record_receipt(seq);
                } else {
                    outcome.repeated += 1;
                }
            }
            Tag::Warmup(slot) => self.tracker.see_warmup(slot),
            Tag::Foreign => outcome.foreign += 1,
        }
    }
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
