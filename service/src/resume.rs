//! Notification ids and resuming a connection: what `since` means and which notifications a
//! resumed socket gets.
//!
//! A notification's id is `"<ms>-<seq>"`, two decimal integers as in a Redis Stream entry id (in
//! Redis it is the entry id of the user's history stream). Per user, ids are unique and strictly
//! increase in publish order, compared as the pair (ms, seq): `ms` is the source record's Kafka
//! timestamp raised to the previous id's `ms` when lower, `seq` counts from 0 within one `ms`.
//!
//! A resumed socket gets, in this order and with no gap and no duplicate:
//!
//! 1. one `{"type":"resumed","recovered":…,"missed":N}` frame;
//! 2. the N notifications of the user's history newer than `since` (and, for a resume asked for by
//!    a frame after live notifications were already written, older than the first of those);
//! 3. live notifications whose id is newer than every one written before ([`Resume::is_new`]).
//!
//! The socket's hub registration (and, in production, its Redis subscription) exists before the
//! history is read, so a notification published meanwhile is both in the history and in the live
//! queue; step 3 drops the live copy.
//!
//! A socket opened with `?position=1` and without `since` is sent its [`position_frame`] first, so
//! that a client which processes nothing before the socket ends still has something to resume from.

use std::fmt;

/// A notification id: `(ms, seq)`, ordered as the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct NotificationId {
    pub ms: u64,
    pub seq: u64,
}

impl NotificationId {
    /// Parses `"<ms>-<seq>"`: two non-empty runs of ASCII digits that fit in 64 bits. Anything else
    /// (a sign, spaces, a missing part, a UUID) is `None`.
    pub(crate) fn parse(text: &str) -> Option<NotificationId> {
        let (ms, seq) = text.split_once('-')?;
        Some(NotificationId { ms: digits(ms)?, seq: digits(seq)? })
    }

    /// The position of a user's history that was empty at `taken_ms` (see [`Position`]): `0-<ms>`,
    /// before every notification's id (whose `ms` is a record's timestamp, never 0).
    pub(crate) fn empty_history(taken_ms: u64) -> NotificationId {
        NotificationId { ms: 0, seq: taken_ms }
    }

    /// When this is the position of an empty history, the time it was taken.
    pub(crate) fn empty_history_taken(self) -> Option<u64> {
        (self.ms == 0).then_some(self.seq)
    }

    /// The id after this one within the same millisecond, or the first of the next millisecond
    /// when `seq` is at its maximum.
    pub(crate) fn next(self) -> NotificationId {
        match self.seq.checked_add(1) {
            Some(seq) => NotificationId { ms: self.ms, seq },
            None => NotificationId { ms: self.ms.saturating_add(1), seq: 0 },
        }
    }
}

fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl fmt::Display for NotificationId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}-{}", self.ms, self.seq)
    }
}

/// Where a connection opened without `since` starts, told to the client first as
/// `{"type":"position","since":"<id>"}` when it asked (`?position=1`), so that a client which
/// processed nothing can still resume.
///
/// It is read before the socket is registered, so every notification published after it reaches
/// the socket live, and the socket's [`Resume`] starts from it, so a live copy of an older one is
/// not written. It is either the newest id in the user's history or, when the history is empty,
/// [`NotificationId::empty_history`] with the time it was read. Resuming from a newest id is
/// recovered while that id is kept, as for any id; resuming from an empty history's position is
/// recovered when [`nothing_lost_since_empty`] holds.
pub(crate) fn position_frame(position: NotificationId) -> String {
    format!(r#"{{"type":"position","since":"{position}"}}"#)
}

/// Whether nothing published to a user after the position of their empty history, taken at
/// `taken_ms`, can have been dropped, when the store reads `now_ms`:
///
/// - the store has kept histories without interruption since before the position (`epoch_ms`, when
///   the store started keeping them, is not later; a Redis that lost its data starts again);
/// - the position is less than a history TTL old: a history created after it lives at least a TTL
///   after its last notification, so it cannot have been forgotten whole;
/// - `dropped` is false: nothing was ever trimmed from the user's current history, and nothing in it
///   is past the TTL.
pub(crate) fn nothing_lost_since_empty(
    taken_ms: u64,
    epoch_ms: Option<u64>,
    now_ms: u64,
    ttl_ms: u64,
    dropped: bool,
) -> bool {
    !dropped && epoch_ms.is_some_and(|epoch| epoch <= taken_ms) && taken_ms <= now_ms && now_ms - taken_ms < ttl_ms
}

/// The opening of every notification message, before its id.
pub(crate) const MESSAGE_START: &str = r#"{"id":""#;

/// The message for the notification `id` whose encoding without its id is `body` (see
/// `herald::runtime::Notification::encode_body`): `{"id":"<id>",` then the body. The id stays the
/// first key, so [`id_of`] reads it without parsing the rest.
pub(crate) fn message_with_id(id: &str, body: &str) -> String {
    let mut message = String::with_capacity(MESSAGE_START.len() + id.len() + 2 + body.len());
    message.push_str(MESSAGE_START);
    message.push_str(id);
    message.push_str("\",");
    message.push_str(body);
    message
}

/// The id of an encoded notification message, read from its first key.
pub(crate) fn id_of(message: &[u8]) -> Option<NotificationId> {
    let rest = message.strip_prefix(MESSAGE_START.as_bytes())?;
    let end = rest.iter().position(|byte| *byte == b'"')?;
    NotificationId::parse(std::str::from_utf8(&rest[..end]).ok()?)
}

/// What a client asked to resume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Since {
    /// A well-formed id.
    Id(NotificationId),
    /// Anything else: nothing can be proved about it, so everything kept is sent.
    Malformed,
}

impl Since {
    pub(crate) fn parse(text: &str) -> Since {
        NotificationId::parse(text).map_or(Since::Malformed, Since::Id)
    }

    /// The `since` query parameter of a WebSocket upgrade, if any.
    pub(crate) fn from_query(query: Option<&str>) -> Option<Since> {
        form_urlencoded::parse(query?.as_bytes())
            .find_map(|(name, value)| (name == "since").then(|| Since::parse(&value)))
    }
}

/// Whether the query of a WebSocket upgrade asks for the `position` frame (`?position=1`; any
/// value counts). Only a connection without `since` gets one.
pub(crate) fn asks_for_position(query: Option<&str>) -> bool {
    query.is_some_and(|query| {
        form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == herald::runtime::protocol::POSITION_PARAMETER)
    })
}

/// Whether a client frame is `{"type":"resume","since":…}`; its `since` when it is (a `since`
/// that is not a string counts as malformed).
pub(crate) fn resume_frame(text: &str) -> Option<Since> {
    #[derive(serde::Deserialize)]
    struct Frame<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<&'a str>,
        since: Option<serde_json::Value>,
    }
    let frame = serde_json::from_str::<Frame<'_>>(text).ok()?;
    (frame.kind == Some("resume")).then(|| match frame.since {
        Some(serde_json::Value::String(since)) => Since::parse(&since),
        _ => Since::Malformed,
    })
}

/// A user's history after `since`, as a backend reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct History {
    /// `since` is still in the kept history, so every notification after it is too.
    pub recovered: bool,
    /// The kept notifications newer than `since` (all of them for a malformed one), oldest first,
    /// as `(id, message)`; each message byte for byte as first published.
    pub entries: Vec<(NotificationId, String)>,
}

/// The ids one socket has been written, so that a resume and the live stream never repeat one.
#[derive(Debug, Default)]
pub(crate) struct Resume {
    /// Whether a resume was already answered (honoured once per connection).
    pub done: bool,
    /// The first live notification written on the socket: a later resume replays only older ones.
    first_live: Option<NotificationId>,
    /// The newest id written: a live notification not newer than it was already written.
    last: Option<NotificationId>,
}

impl Resume {
    /// A socket that starts at `position` (see [`position_frame`]): it is as if everything up to
    /// the position had been written.
    pub(crate) fn at(position: NotificationId) -> Resume {
        Resume { last: Some(position), ..Resume::default() }
    }

    /// Whether a live notification (by its id) should be written; records it when so. A message
    /// without a readable id is always written.
    pub(crate) fn is_new(&mut self, id: Option<NotificationId>) -> bool {
        let Some(id) = id else { return true };
        if self.last.is_some_and(|last| id <= last) {
            return false;
        }
        self.first_live.get_or_insert(id);
        self.last = Some(id);
        true
    }

    /// The newest id written on the socket, if any.
    pub(crate) fn last(&self) -> Option<NotificationId> {
        self.last
    }

    /// Catches up after this instance's Redis subscription was interrupted: the entries of
    /// `history` (read after [`Resume::last`], or after a lookback when nothing was written yet)
    /// that were never written, oldest first, recorded as written. When the socket had a last id
    /// and the history cannot prove nothing after it is missing, the entries are preceded by a
    /// `{"type":"resumed","recovered":false,...}` frame, so the client refreshes its state.
    pub(crate) fn catch_up(&mut self, history: History) -> (Option<String>, Vec<String>) {
        let had_last = self.last.is_some();
        let entries: Vec<String> =
            history.entries.into_iter().filter(|(id, _)| self.is_new(Some(*id))).map(|(_, message)| message).collect();
        let frame = (had_last && !history.recovered)
            .then(|| format!(r#"{{"type":"resumed","recovered":false,"missed":{}}}"#, entries.len()));
        (frame, entries)
    }

    /// Answers a resume: the `resumed` frame and the history entries to write after it, in
    /// order. Marks the resume done and remembers the last replayed id.
    pub(crate) fn replay(&mut self, history: History) -> (String, Vec<String>) {
        self.done = true;
        let first_live = self.first_live;
        let entries: Vec<(NotificationId, String)> =
            history.entries.into_iter().filter(|(id, _)| first_live.is_none_or(|first| *id < first)).collect();
        if let Some((id, _)) = entries.last() {
            self.last = Some(self.last.map_or(*id, |last| last.max(*id)));
        }
        let frame = format!(r#"{{"type":"resumed","recovered":{},"missed":{}}}"#, history.recovered, entries.len());
        (frame, entries.into_iter().map(|(_, message)| message).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, seq: u64) -> NotificationId {
        NotificationId { ms, seq }
    }

    #[test]
    fn ids_parse_only_as_two_decimal_integers() {
        let check =
            |text: &str, expect: Option<NotificationId>| assert_eq!(NotificationId::parse(text), expect, "{text:?}");
        check("1764597600123-0", Some(id(1_764_597_600_123, 0)));
        check("0-0", Some(id(0, 0)));
        check("5-18446744073709551615", Some(id(5, u64::MAX)));
        check("5-18446744073709551616", None);
        check("5", None);
        check("-5", None);
        check("5-", None);
        check("+5-1", None);
        check(" 5-1", None);
        check("5-1-2", None);
        check("5--1", None);
        check("٣-1", None);
        check("019864b2-2608-7bab-abab-abababababab", None);
        check("", None);
        assert_eq!(id(1_764_597_600_123, 7).to_string(), "1764597600123-7");
    }

    #[test]
    fn ids_order_numerically_as_the_pair() {
        let ordered = [id(9, 0), id(9, 1), id(9, 10), id(10, 0), id(100, 2)];
        for pair in ordered.windows(2) {
            assert!(pair[0] < pair[1], "{} < {}", pair[0], pair[1]);
        }
        // Not as text: "9-10" sorts before "9-2" as a string.
        assert!(NotificationId::parse("9-10") > NotificationId::parse("9-2"));
        assert_eq!(id(3, u64::MAX).next(), id(4, 0));
        assert_eq!(id(3, 1).next(), id(3, 2));
    }

    #[test]
    fn the_id_is_read_from_the_messages_first_key() {
        let message = message_with_id("1764597600123-4", r#""event":"class_created","data":{}}"#);
        assert_eq!(message, r#"{"id":"1764597600123-4","event":"class_created","data":{}}"#);
        assert_eq!(id_of(message.as_bytes()), Some(id(1_764_597_600_123, 4)));
        assert_eq!(id_of(br#"{"event":"x"}"#), None);
        assert_eq!(id_of(br#"{"id":"not-an-id","event":"x"}"#), None);
        assert_eq!(id_of(br#"{"id":"12-3"#), None, "unterminated");
    }

    #[test]
    fn since_comes_from_the_query_or_a_resume_frame() {
        assert_eq!(Since::from_query(Some("token=x&since=12-3")), Some(Since::Id(id(12, 3))));
        assert_eq!(Since::from_query(Some("since=12%2D3")), Some(Since::Id(id(12, 3))), "percent-decoded");
        assert_eq!(Since::from_query(Some("since=abc")), Some(Since::Malformed));
        assert_eq!(Since::from_query(Some("token=x")), None);
        assert_eq!(Since::from_query(None), None);
        assert_eq!(resume_frame(r#"{"type":"resume","since":"12-3"}"#), Some(Since::Id(id(12, 3))));
        assert_eq!(resume_frame(r#"{"type":"resume","since":12}"#), Some(Since::Malformed));
        assert_eq!(resume_frame(r#"{"type":"resume"}"#), Some(Since::Malformed));
        assert_eq!(resume_frame(r#"{"type":"ping"}"#), None);
        assert_eq!(resume_frame("not json"), None);
        assert!(asks_for_position(Some("token=x&position=1")));
        assert!(asks_for_position(Some("position")));
        assert!(!asks_for_position(Some("token=x&positions=1")));
        assert!(!asks_for_position(None));
    }

    fn history(recovered: bool, ids: &[NotificationId]) -> History {
        History { recovered, entries: ids.iter().map(|id| (*id, format!("m{id}"))).collect() }
    }

    #[test]
    fn live_copies_of_replayed_notifications_are_dropped() {
        let mut resume = Resume::default();
        let (frame, replayed) = resume.replay(history(true, &[id(10, 0), id(10, 1), id(12, 0)]));
        assert_eq!(frame, r#"{"type":"resumed","recovered":true,"missed":3}"#);
        assert_eq!(replayed, ["m10-0", "m10-1", "m12-0"]);
        assert!(resume.done);
        // Published while the history was read: queued live too.
        assert!(!resume.is_new(Some(id(10, 1))));
        assert!(!resume.is_new(Some(id(12, 0))));
        assert!(resume.is_new(Some(id(12, 1))));
        assert!(!resume.is_new(Some(id(12, 1))), "a repeated live copy");
        assert!(resume.is_new(Some(id(13, 0))));
        assert!(resume.is_new(None), "a message without an id is never held back");
    }

    #[test]
    fn a_resume_frame_after_live_notifications_replays_only_what_came_before_them() {
        let mut resume = Resume::default();
        assert!(resume.is_new(Some(id(20, 0))));
        assert!(resume.is_new(Some(id(21, 0))));
        let (frame, replayed) = resume.replay(history(true, &[id(15, 0), id(18, 2), id(20, 0), id(21, 0)]));
        assert_eq!(frame, r#"{"type":"resumed","recovered":true,"missed":2}"#);
        assert_eq!(replayed, ["m15-0", "m18-2"]);
        assert!(!resume.is_new(Some(id(21, 0))));
        assert!(resume.is_new(Some(id(22, 0))));
    }

    #[test]
    fn nothing_to_replay_still_answers() {
        let mut resume = Resume::default();
        let (frame, replayed) = resume.replay(History::default());
        assert_eq!(frame, r#"{"type":"resumed","recovered":false,"missed":0}"#);
        assert!(replayed.is_empty());
        assert!(resume.is_new(Some(id(1, 0))));
    }

    #[test]
    fn a_catch_up_writes_only_what_the_socket_never_got_and_flags_a_gap() {
        let entry = |ms: u64| (id(ms, 0), format!("m{ms}"));
        let mut resume = Resume::default();
        assert!(resume.is_new(Some(id(10, 0))));
        let (frame, written) = resume.catch_up(History { recovered: true, entries: vec![entry(11), entry(12)] });
        assert_eq!((frame, written), (None, vec!["m11".to_owned(), "m12".to_owned()]));
        assert!(!resume.is_new(Some(id(12, 0))), "the live copy of a caught-up notification is dropped");
        let (frame, written) = resume.catch_up(History { recovered: false, entries: vec![entry(13)] });
        assert_eq!(frame.as_deref(), Some(r#"{"type":"resumed","recovered":false,"missed":1}"#));
        assert_eq!(written, vec!["m13".to_owned()]);

        let mut fresh = Resume::default();
        let (frame, written) = fresh.catch_up(History { recovered: false, entries: vec![entry(5)] });
        assert_eq!((frame, written), (None, vec!["m5".to_owned()]), "nothing to prove for a socket that got nothing");
    }

    #[test]
    fn an_empty_historys_position_proves_nothing_lost_only_within_its_bounds() {
        let ttl = 60_000;
        assert!(nothing_lost_since_empty(1_000, Some(900), 2_000, ttl, false));
        assert!(nothing_lost_since_empty(1_000, Some(1_000), 1_000, ttl, false), "the epoch may be the same ms");
        assert!(!nothing_lost_since_empty(1_000, Some(900), 2_000, ttl, true), "something was dropped");
        assert!(!nothing_lost_since_empty(1_000, None, 2_000, ttl, false), "the store lost its epoch");
        assert!(!nothing_lost_since_empty(1_000, Some(1_001), 2_000, ttl, false), "the epoch started again after");
        assert!(!nothing_lost_since_empty(1_000, Some(900), 999, ttl, false), "a position from the future");
        assert!(!nothing_lost_since_empty(1_000, Some(900), 61_000, ttl, false), "a whole history may have expired");
        assert_eq!(NotificationId::empty_history(7).to_string(), "0-7");
        assert_eq!(NotificationId::parse("0-7").and_then(NotificationId::empty_history_taken), Some(7));
        assert_eq!(id(1, 7).empty_history_taken(), None);
    }

    #[test]
    fn a_socket_at_a_position_writes_only_newer_live_notifications() {
        let mut resume = Resume::at(id(10, 0));
        assert!(!resume.is_new(Some(id(10, 0))), "published before the position");
        assert!(resume.is_new(Some(id(10, 1))));
        assert_eq!(position_frame(id(10, 0)), r#"{"type":"position","since":"10-0"}"#);
        let mut empty = Resume::at(NotificationId::empty_history(5));
        assert!(empty.is_new(Some(id(1, 0))), "every real id is after an empty history's position");
        let (frame, written) = Resume::at(id(10, 0)).catch_up(History { recovered: false, entries: vec![] });
        assert_eq!(frame.as_deref(), Some(r#"{"type":"resumed","recovered":false,"missed":0}"#), "{written:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Every parser of client or Redis bytes here answers any input without panicking.
        #[test]
        fn the_parsers_of_foreign_text_never_panic(text in ".{0,64}", bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = NotificationId::parse(&text);
            let _ = Since::parse(&text);
            let _ = Since::from_query(Some(&text));
            let _ = resume_frame(&text);
            let _ = resume_frame(&format!(r#"{{"type":"resume","since":{}}}"#, serde_json::Value::String(text.clone())));
            let _ = id_of(&bytes);
            let mut message = MESSAGE_START.as_bytes().to_vec();
            message.extend_from_slice(&bytes);
            let _ = id_of(&message);
        }

        /// An id reads back as itself, and ids order as their pairs.
        #[test]
        fn ids_round_trip_and_order_as_pairs(a in proptest::prelude::any::<(u64, u64)>(), b in proptest::prelude::any::<(u64, u64)>()) {
            let (left, right) = (id(a.0, a.1), id(b.0, b.1));
            proptest::prop_assert_eq!(NotificationId::parse(&left.to_string()), Some(left));
            proptest::prop_assert_eq!(left.cmp(&right), a.cmp(&b));
            let message = message_with_id(&left.to_string(), r#""event":"x"}"#);
            proptest::prop_assert_eq!(id_of(message.as_bytes()), Some(left));
        }
    }
}
