//! The WebSocket protocol between herald and browsers, as data: the endpoint, its query parameters,
//! the frames each side sends and the close codes.
//!
//! Notifications themselves are described by `event-defs/` and [`crate::notification`]; this is the
//! rest of the conversation. The generator reads these lists to write the AsyncAPI document and the
//! HTML event catalogue, so the published contract has one home.

/// The WebSocket endpoint's path (`/ws/` is accepted too).
pub const WS_PATH: &str = "/ws";

/// The query parameter carrying the last notification id a reconnecting client processed.
pub const SINCE_PARAMETER: &str = "since";

/// The query parameter with which a client opening a socket without `since` asks to be told where
/// the socket starts (the `position` frame); any value counts, `position=1` by convention.
pub const POSITION_PARAMETER: &str = "position";

/// The query parameter that may carry the JWT (the other transports are `Authorization: Bearer` and
/// `Sec-WebSocket-Protocol: bearer, <token>`).
pub const TOKEN_PARAMETER: &str = "token";

/// A regular expression matching every notification id: `"<ms>-<seq>"`, two decimal integers.
pub const NOTIFICATION_ID_PATTERN: &str = "^[0-9]+-[0-9]+$";

/// A notification id as it appears on the wire.
pub const NOTIFICATION_ID_EXAMPLE: &str = "1764597600123-0";

/// What a notification id is, for people.
pub const NOTIFICATION_ID_DESCRIPTION: &str = "`\"<ms>-<seq>\"`, two decimal integers like a Redis Stream id. Per user, ids are unique and strictly increase in delivery order, compared numerically as the pair (ms, seq): `ms` is the source record's Kafka timestamp (ingest time for `POST /v1/events`), raised to the previous id's `ms` for that user when lower; `seq` counts from 0 within one `ms`. Clients treat ids as opaque strings except to send the last one back as `since`.";

/// The `type` of each frame a client may send, with the frame's shape and meaning.
pub const CLIENT_FRAMES: &[Frame] = &[
    Frame {
        kind: "ping",
        example: r#"{"type":"ping"}"#,
        answered_by: Some("pong"),
        meaning: "An application-level ping; herald answers `{\"type\":\"pong\"}`. Any frame proves the client alive.",
    },
    Frame {
        kind: "resume",
        example: r#"{"type":"resume","since":"1764597600123-0"}"#,
        answered_by: Some("resumed"),
        meaning: "Asks for the notifications after `since`, the last id the client processed: the same as `/ws?since=<id>`. Honoured once per connection, as the first frame; herald answers with one `resumed` frame, then the missed notifications in order, then live ones, with no gap and no duplicate.",
    },
    Frame {
        kind: "auth",
        example: r#"{"type":"auth","token":"<jwt>"}"#,
        answered_by: Some("auth"),
        meaning: "Replaces the connection's token before it expires. The new token must name the same `sub` and is verified like the first; herald answers with an `auth` frame saying whether it was accepted.",
    },
];

/// The `type` of each frame herald sends besides notifications.
pub const SERVER_FRAMES: &[Frame] = &[
    Frame {
        kind: "position",
        example: r#"{"type":"position","since":"1764597600123-0"}"#,
        answered_by: None,
        meaning: "The first frame of a connection opened with `?position=1` and without `since` (a connection without either gets live notifications only): where the user's history stood just before the socket started receiving. Every notification published after it reaches this socket live (a live copy of an older one is not written). A client that has processed no notification when the connection ends reconnects with this value as `since`, and so gets what was published while it was away, or `recovered: false` when herald cannot prove nothing was lost. Opaque like an id: it has the id's shape but may name no notification (`0-<ms>` stands for a history that was empty at that time). Not sent when the history cannot be read within 2 s (Redis unreachable).",
    },
    Frame { kind: "pong", example: r#"{"type":"pong"}"#, answered_by: None, meaning: "The answer to a client `ping`." },
    Frame {
        kind: "resumed",
        example: r#"{"type":"resumed","recovered":true,"missed":2}"#,
        answered_by: None,
        meaning: "The answer to `since` (query parameter or `resume` frame), sent once before the `missed` notifications. `recovered` is true only when herald can prove nothing after `since` was lost: `since` is still in the user's kept history, or is a `position` taken when the history was empty and nothing has been dropped from it since; false when it is older than the history kept (`--history-size`, `--history-ttl`), unknown or malformed, or the history was lost: the client should then resynchronise from its source of truth. A connection without `since` gets no `resumed` frame in answer; any connection may get an unprompted `resumed` frame with `recovered: false`, followed by its `missed` notifications after herald's own Redis subscription was interrupted and it cannot prove nothing was lost.",
    },
    Frame {
        kind: "auth",
        example: r#"{"type":"auth","ok":true,"exp":1764601200}"#,
        answered_by: None,
        meaning: "The answer to a client `auth` frame: `{\"type\":\"auth\",\"ok\":true,\"exp\":<unix seconds>}` when the new token was accepted, or `{\"type\":\"auth\",\"ok\":false,\"error_code\":\"...\",\"message\":\"...\"}` when it was refused, keeping the current token's expiry.",
    },
];

/// One kind of frame of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The frame's `type`.
    pub kind: &'static str,
    /// A frame of this kind, exactly as sent.
    pub example: &'static str,
    /// The `type` of the server frame that answers a client frame of this kind.
    pub answered_by: Option<&'static str>,
    /// What the frame means and what answers it.
    pub meaning: &'static str,
}

/// Every close code herald sends, one constant each (see [`close`]). The close reason is JSON,
/// `{"error_code": ..., "message": ...}`, plus the extra keys a code lists.
pub const CLOSE_CODES: &[CloseCode] = &[
    close::POLICY,
    close::QUOTA_EXCEEDED,
    close::TOKEN_EXPIRED,
    close::SLOW_CONSUMER,
    close::DISCONNECTED,
    close::IDLE_TIMEOUT,
    close::MESSAGE_TOO_BIG,
    close::SERVICE_RESTART,
];

/// The close codes herald sends, by name: the socket code closes with these.
pub mod close {
    use super::CloseCode;

    /// A refused token (1008).
    pub const POLICY: CloseCode = CloseCode {
        code: 1008,
        error_code: None,
        extra_keys: &[],
        when: "The token is missing or invalid, or its `sub` is the placeholder `\"unknown\"`. `error_code` names the refusal (`TOKEN_MISSING`, `TOKEN_EXPIRED`, `TOKEN_INVALID_SIGNATURE`, ...). Get a new token before reconnecting.",
    };

    /// Too many sockets for one user (4000).
    pub const QUOTA_EXCEEDED: CloseCode = CloseCode {
        code: 4000,
        error_code: Some("QUOTA_EXCEEDED"),
        extra_keys: &[],
        when: "The user already holds `--max-connections-per-user` sockets, counted across all instances. Do not retry at once.",
    };

    /// The token expired and was not refreshed (4001).
    pub const TOKEN_EXPIRED: CloseCode = CloseCode {
        code: 4001,
        error_code: Some("TOKEN_EXPIRED"),
        extra_keys: &[],
        when: "The token's `exp` passed and no `auth` frame refreshed it. Reconnect with a new token and `since`.",
    };

    /// The client read too slowly (4002).
    pub const SLOW_CONSUMER: CloseCode = CloseCode {
        code: 4002,
        error_code: Some("SLOW_CONSUMER"),
        extra_keys: &[],
        when: "The socket's send queue overflowed: the client read too slowly. Reconnect with `since` to get what was missed.",
    };

    /// An operator disconnected the user (4003).
    pub const DISCONNECTED: CloseCode = CloseCode {
        code: 4003,
        error_code: Some("DISCONNECTED"),
        extra_keys: &[],
        when: "An operator disconnected the user (`POST /admin/v1/users/{user_id}/disconnect`).",
    };

    /// The client went silent (1001).
    pub const IDLE_TIMEOUT: CloseCode = CloseCode {
        code: 1001,
        error_code: Some("IDLE_TIMEOUT"),
        extra_keys: &[],
        when: "The client did not answer pings, or did not take writes, for the idle timeout. Reconnect with `since`.",
    };

    /// A client frame over the limit (1009).
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode {
        code: 1009,
        error_code: Some("MESSAGE_TOO_BIG"),
        extra_keys: &[],
        when: "The client sent a frame over `--max-inbound-bytes`.",
    };

    /// The instance drains or shuts down (1012).
    pub const SERVICE_RESTART: CloseCode = CloseCode {
        code: 1012,
        error_code: Some("SERVICE_RESTART"),
        extra_keys: &["retry_after_ms"],
        when: "The instance is draining (SIGTERM). `retry_after_ms` is a jittered delay to wait before reconnecting with `since`, to another instance.",
    };
}

/// One close code and when herald sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCode {
    /// The WebSocket close code.
    pub code: u16,
    /// The reason's `error_code`; `None` when it names the particular refusal (1008).
    pub error_code: Option<&'static str>,
    /// Keys of the reason besides `error_code` and `message`.
    pub extra_keys: &'static [&'static str],
    /// When it is sent and what a client should do.
    pub when: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_frame_types_are_distinct() {
        let mut codes: Vec<u16> = CLOSE_CODES.iter().map(|close| close.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), CLOSE_CODES.len());
        for frames in [CLIENT_FRAMES, SERVER_FRAMES] {
            let mut kinds: Vec<&str> = frames.iter().map(|frame| frame.kind).collect();
            kinds.sort_unstable();
            kinds.dedup();
            assert_eq!(kinds.len(), frames.len());
        }
    }

    #[test]
    fn every_frame_example_is_json_of_its_type() {
        for frame in CLIENT_FRAMES.iter().chain(SERVER_FRAMES) {
            let value: serde_json::Value = serde_json::from_str(frame.example).expect(frame.example);
            assert_eq!(value["type"], frame.kind, "{}", frame.example);
        }
        for frame in CLIENT_FRAMES {
            if let Some(answer) = frame.answered_by {
                assert!(SERVER_FRAMES.iter().any(|server| server.kind == answer), "{answer} is a server frame");
            }
        }
    }
}
