//! The resuming client's side of herald's history contract, shared by both drivers.
//!
//! A client remembers the id of the last notification it processed (or, before it processed any,
//! the `position` herald sends first on a socket opened with `?position=1`) and reconnects with
//! `/ws?since=<id>`. herald answers with one `{"type":"resumed","recovered":…,"missed":N}` frame,
//! then the N missed notifications in order, then live ones. Ids are `"<ms>-<seq>"` and strictly
//! increase per user in delivery order; a client treats them as opaque except to send the last one
//! back and, here, to check that order. [`read_frame`] tells the frames apart, [`Cursor`] keeps a
//! tab's last id and drops repeated ids, [`Replay`] follows one connection's `resumed` frame and
//! the replay after it.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// How sockets opened with `since` were answered, summed over sockets (a connection's, a fault
/// window's, a run's).
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Resumes {
    /// Sockets opened with `since`.
    pub resumes: u64,
    /// Answered `recovered:true`.
    pub recovered: u64,
    /// Answered `recovered:false`.
    pub not_recovered: u64,
    /// Sum of the `missed` of the `resumed` frames.
    pub missed: u64,
    /// Replayed notifications that arrived.
    pub replayed: u64,
    /// The first text frame was a notification, not the `resumed` frame.
    pub unanswered: u64,
}

impl Resumes {
    /// Counts one socket opened with `since`: its `resumed` answer (`(recovered, missed)`, if one
    /// came), the replayed notifications that arrived, and whether the first frame was not `resumed`.
    pub fn count(&mut self, answer: Option<(bool, u64)>, replayed: u64, unanswered: bool) {
        self.resumes += 1;
        match answer {
            Some((true, missed)) => {
                self.recovered += 1;
                self.missed += missed;
            }
            Some((false, missed)) => {
                self.not_recovered += 1;
                self.missed += missed;
            }
            None => {}
        }
        self.replayed += replayed;
        self.unanswered += u64::from(unanswered);
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &Resumes) {
        self.resumes += other.resumes;
        self.recovered += other.recovered;
        self.not_recovered += other.not_recovered;
        self.missed += other.missed;
        self.replayed += other.replayed;
        self.unanswered += other.unanswered;
    }
}

/// `url` with `since=<id>` added to its query when there is an id to resume from, else with
/// `position=1`, so that herald says where the socket starts.
pub fn resume_url(url: &str, since: Option<&str>) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    let Some(since) = since else { return format!("{url}{separator}position=1") };
    // herald's ids are digits and one '-', which need no escaping; escape anything else a server
    // might have sent, so that an odd id cannot break the query.
    let escaped: String = since
        .bytes()
        .map(|byte| match byte {
            b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'-' | b'_' | b'.' | b'~' => char::from(byte).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect();
    format!("{url}{separator}since={escaped}")
}

/// A notification id as the pair `(ms, seq)`, when it has herald's `"<ms>-<seq>"` shape.
pub fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    if !digits(ms) || !digits(seq) {
        return None;
    }
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// One text frame from herald, as far as the drivers care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// `{"type":"resumed",...}`: the answer to `since`.
    Resumed {
        /// Whether herald could prove nothing after `since` is missing.
        recovered: bool,
        /// How many notifications the replay that follows holds.
        missed: u64,
    },
    /// `{"type":"position","since":...}`: where a connection opened without `since` starts.
    Position {
        /// The value to resume from if nothing is processed on this connection.
        since: String,
    },
    /// A notification: it has an `event` name.
    Notification {
        /// Its `id`, if it has one.
        id: Option<String>,
        /// Its notification name.
        event: String,
        /// `data.class_id`, which the drivers mark their events with.
        class_id: Option<String>,
    },
    /// Anything else (`pong`, `auth` answers, text that is not JSON).
    Other,
}

#[derive(Deserialize)]
struct RawFrame {
    #[serde(rename = "type")]
    kind: Option<String>,
    recovered: Option<bool>,
    missed: Option<u64>,
    since: Option<String>,
    id: Option<String>,
    event: Option<String>,
    data: Option<RawData>,
}

#[derive(Deserialize)]
struct RawData {
    class_id: Option<serde_json::Value>,
}

/// What a text frame is.
pub fn read_frame(text: &str) -> Incoming {
    let Ok(frame) = serde_json::from_str::<RawFrame>(text) else { return Incoming::Other };
    if frame.kind.as_deref() == Some("resumed") {
        return match frame.recovered {
            Some(recovered) => Incoming::Resumed { recovered, missed: frame.missed.unwrap_or(0) },
            None => Incoming::Other,
        };
    }
    if frame.kind.as_deref() == Some("position") {
        return match frame.since {
            Some(since) => Incoming::Position { since },
            None => Incoming::Other,
        };
    }
    match frame.event {
        Some(event) => Incoming::Notification {
            id: frame.id,
            event,
            class_id: frame
                .data
                .and_then(|data| data.class_id)
                .and_then(|class_id| class_id.as_str().map(str::to_owned)),
        },
        None => Incoming::Other,
    }
}

/// What a [`Cursor`] made of an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not seen before, and newer than the last one: process it.
    Fresh,
    /// Not seen before, but not newer than the last one (herald's ids strictly increase per user):
    /// process it, and count the disorder.
    OutOfOrder,
    /// Already processed by this client: drop it, and count it.
    Duplicate,
}

/// One client's memory of the notifications it processed: the id to resume from, and every id
/// seen (so a repeated id is dropped, as a browser that dedupes by id would).
#[derive(Debug, Default)]
pub struct Cursor {
    /// The id to send back: the newest processed, by `(ms, seq)` when ids have that shape, else
    /// the latest.
    last: Option<String>,
    seen: HashSet<String>,
}

impl Cursor {
    /// The id to reconnect with, if anything was processed.
    pub fn since(&self) -> Option<&str> {
        self.last.as_deref()
    }

    /// Takes the `position` of a connection opened without `since`: the id to reconnect with
    /// until a notification is processed. A client that already has an id keeps it.
    pub fn start_at(&mut self, position: &str) {
        if self.last.is_none() {
            self.last = Some(position.to_owned());
        }
    }

    /// Takes one notification id.
    pub fn accept(&mut self, id: &str) -> Verdict {
        if self.seen.contains(id) {
            return Verdict::Duplicate;
        }
        self.seen.insert(id.to_owned());
        let newer = match (self.last.as_deref().and_then(parse_id), parse_id(id)) {
            (Some(last), Some(this)) => this > last,
            _ => true,
        };
        if newer {
            self.last = Some(id.to_owned());
            Verdict::Fresh
        } else {
            Verdict::OutOfOrder
        }
    }
}

/// How one connection opened with `since` followed the contract: the `resumed` frame must be the
/// first text frame, and the next `missed` notifications are the replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Opened without `since`: live notifications only, no `resumed` frame expected.
    Live,
    /// Opened with `since`; no text frame yet.
    Awaiting,
    /// The `resumed` frame came; `left` notifications of the replay are still to come.
    Replaying {
        /// Its `recovered`.
        recovered: bool,
        /// Its `missed`.
        missed: u64,
        /// Replayed notifications not yet received.
        left: u64,
    },
    /// The replay is over (or was empty); everything now is live.
    Done {
        /// Its `recovered`.
        recovered: bool,
        /// Its `missed`.
        missed: u64,
    },
    /// The first text frame after opening with `since` was not `resumed`.
    Unanswered,
}

impl Replay {
    /// The state of a connection just opened, with or without `since`.
    pub fn opened(with_since: bool) -> Replay {
        if with_since { Replay::Awaiting } else { Replay::Live }
    }

    /// Moves on with one text frame; true when the frame is a notification of the replay.
    pub fn step(&mut self, frame: &Incoming) -> bool {
        match (self.clone(), frame) {
            (Replay::Awaiting, Incoming::Resumed { recovered, missed }) => {
                *self = Replay::settle(*recovered, *missed, *missed);
                false
            }
            (Replay::Awaiting, Incoming::Notification { .. }) => {
                *self = Replay::Unanswered;
                false
            }
            (Replay::Replaying { recovered, missed, left }, Incoming::Notification { .. }) => {
                *self = Replay::settle(recovered, missed, left - 1);
                true
            }
            _ => false,
        }
    }

    fn settle(recovered: bool, missed: u64, left: u64) -> Replay {
        if left == 0 { Replay::Done { recovered, missed } } else { Replay::Replaying { recovered, missed, left } }
    }

    /// `(recovered, missed)` once the `resumed` frame came.
    pub fn answer(&self) -> Option<(bool, u64)> {
        match self {
            Replay::Replaying { recovered, missed, .. } | Replay::Done { recovered, missed } => {
                Some((*recovered, *missed))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_goes_into_the_query_escaped() {
        assert_eq!(resume_url("ws://h/ws", None), "ws://h/ws?position=1");
        assert_eq!(resume_url("ws://h/ws?a=1", None), "ws://h/ws?a=1&position=1");
        assert_eq!(resume_url("ws://h/ws", Some("1764597600123-0")), "ws://h/ws?since=1764597600123-0");
        assert_eq!(resume_url("ws://h/ws?a=1", Some("1-2")), "ws://h/ws?a=1&since=1-2");
        assert_eq!(resume_url("ws://h/ws", Some("a b&c")), "ws://h/ws?since=a%20b%26c");
    }

    #[test]
    fn ids_parse_as_pairs() {
        for (id, expected) in [
            ("1764597600123-0", Some((1_764_597_600_123, 0))),
            ("1-17", Some((1, 17))),
            ("1-", None),
            ("-1", None),
            ("1-2-3", None),
            ("+1-2", None),
            ("0190a6f0-0000-7000-8000-000000000000", None),
            ("", None),
        ] {
            assert_eq!(parse_id(id), expected, "{id}");
        }
    }

    #[test]
    fn frames_are_told_apart() {
        for (text, expected) in [
            (r#"{"type":"resumed","recovered":true,"missed":3}"#, Incoming::Resumed { recovered: true, missed: 3 }),
            (r#"{"type":"resumed","recovered":false,"missed":0}"#, Incoming::Resumed { recovered: false, missed: 0 }),
            (
                r#"{"id":"5-0","event":"class_created","data":{"class_id":"c-1"}}"#,
                Incoming::Notification {
                    id: Some("5-0".into()),
                    event: "class_created".into(),
                    class_id: Some("c-1".into()),
                },
            ),
            (
                r#"{"event":"x","data":{"class_id":7}}"#,
                Incoming::Notification { id: None, event: "x".into(), class_id: None },
            ),
            (r#"{"type":"position","since":"0-17"}"#, Incoming::Position { since: "0-17".into() }),
            (r#"{"type":"position"}"#, Incoming::Other),
            (r#"{"type":"pong"}"#, Incoming::Other),
            (r#"{"type":"resumed"}"#, Incoming::Other),
            ("not json", Incoming::Other),
        ] {
            assert_eq!(read_frame(text), expected, "{text}");
        }
    }

    #[test]
    fn the_cursor_keeps_the_newest_id_and_drops_repeats() {
        let mut cursor = Cursor::default();
        assert_eq!(cursor.since(), None);
        assert_eq!(cursor.accept("10-0"), Verdict::Fresh);
        assert_eq!(cursor.accept("10-1"), Verdict::Fresh);
        assert_eq!(cursor.accept("10-0"), Verdict::Duplicate);
        assert_eq!(cursor.accept("9-5"), Verdict::OutOfOrder);
        assert_eq!(cursor.since(), Some("10-1"));
        assert_eq!(cursor.accept("11-0"), Verdict::Fresh);
        assert_eq!(cursor.since(), Some("11-0"));
        // Ids of another shape are taken in arrival order.
        let mut opaque = Cursor::default();
        assert_eq!(opaque.accept("b"), Verdict::Fresh);
        assert_eq!(opaque.accept("a"), Verdict::Fresh);
        assert_eq!(opaque.since(), Some("a"));
        // A position is the id to resume from until a notification is processed.
        let mut positioned = Cursor::default();
        positioned.start_at("0-17");
        assert_eq!(positioned.since(), Some("0-17"));
        assert_eq!(positioned.accept("10-0"), Verdict::Fresh);
        positioned.start_at("0-18");
        assert_eq!(positioned.since(), Some("10-0"), "an id processed outranks a later position");
    }

    #[test]
    fn a_replay_is_the_missed_notifications_after_the_resumed_frame() {
        let notification = Incoming::Notification { id: Some("1-0".into()), event: "e".into(), class_id: None };
        let mut replay = Replay::opened(true);
        assert!(!replay.step(&Incoming::Other));
        assert!(!replay.step(&Incoming::Resumed { recovered: true, missed: 2 }));
        assert_eq!(replay.answer(), Some((true, 2)));
        assert!(replay.step(&notification));
        assert!(replay.step(&notification));
        assert!(!replay.step(&notification));
        assert_eq!(replay, Replay::Done { recovered: true, missed: 2 });

        let mut empty = Replay::opened(true);
        empty.step(&Incoming::Resumed { recovered: false, missed: 0 });
        assert_eq!(empty, Replay::Done { recovered: false, missed: 0 });

        let mut unanswered = Replay::opened(true);
        assert!(!unanswered.step(&notification));
        assert_eq!(unanswered, Replay::Unanswered);

        let mut live = Replay::opened(false);
        assert!(!live.step(&Incoming::Resumed { recovered: true, missed: 1 }));
        assert_eq!(live, Replay::Live);
    }
}
