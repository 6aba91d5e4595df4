//! The other side of Centrifugo's contract, for measuring it under the same load as herald
//! (`--protocol centrifugo`, `scripts/bench.sh` with `GATEWAY=1`).
//!
//! Centrifugo's Kafka consumer, in its publication data mode, publishes each record's value
//! unchanged into the channels named in the record's `centrifugo-channels` header, deduplicated
//! by its `centrifugo-idempotency-key` header. The load generator addresses each event to its
//! user's personal channel, which Centrifugo subscribes every connection of that user to on
//! connect, and marks it with its class id as the key.
//!
//! On the socket (JSON protocol): the client sends a `connect` command carrying the same HS256
//! token it would give herald; the server sends replies and pushes, several per frame separated
//! by newlines, and an empty object `{}` as its ping, which the client must answer with `{}`.

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::resume::Incoming;

/// The record header naming the channels to publish the value into (Centrifugo's default).
pub const CHANNELS_HEADER: &str = "centrifugo-channels";
/// The record header whose value a publication is deduplicated by (Centrifugo's default).
pub const IDEMPOTENCY_KEY_HEADER: &str = "centrifugo-idempotency-key";
/// Where Centrifugo serves WebSocket clients, under its listen address.
pub const WEBSOCKET_PATH: &str = "/connection/websocket";

/// The `connect` command that opens a session with `token`: the first frame a client sends.
pub fn connect_command(token: &str) -> String {
    serde_json::json!({"id": 1, "connect": {"token": token, "name": "herald-loadgen"}}).to_string()
}

/// The personal channel of `user` when Centrifugo's personal channels live in `namespace`
/// (`<namespace>:#<user>`, or `#<user>` without one).
pub fn personal_channel(namespace: &str, user: &str) -> String {
    if namespace.is_empty() { format!("#{user}") } else { format!("{namespace}:#{user}") }
}

/// One message from the server, as far as the load generator cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `{}`: the server's ping; answer with `{}`.
    Ping,
    /// The answer to `connect`: the session is open.
    Connected,
    /// An error reply, or a disconnect push: the session is refused or over.
    Refused(String),
    /// A publication in a channel, its data read as a produced envelope.
    Publication(Incoming),
    /// Anything else (other replies and pushes, text that is not JSON).
    Other,
}

#[derive(Deserialize)]
struct RawMessage {
    connect: Option<IgnoredAny>,
    error: Option<RawError>,
    push: Option<RawPush>,
}

#[derive(Deserialize)]
struct RawError {
    code: u32,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct RawPush {
    #[serde(rename = "pub")]
    publication: Option<RawPublication>,
    disconnect: Option<RawDisconnect>,
}

#[derive(Deserialize)]
struct RawDisconnect {
    code: u32,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct RawPublication {
    data: Option<Envelope>,
}

/// The parts of a produced envelope (`crate::envelope`) the load generator matches on.
#[derive(Deserialize)]
struct Envelope {
    event_type: Option<String>,
    data: Option<EnvelopeData>,
}

#[derive(Deserialize)]
struct EnvelopeData {
    class_id: Option<String>,
}

/// Every message in one text frame (one JSON object per line).
pub fn read_frame(text: &str) -> impl Iterator<Item = Message> + '_ {
    text.split('\n').filter(|line| !line.trim().is_empty()).map(read_message)
}

fn read_message(line: &str) -> Message {
    if line.trim() == "{}" {
        return Message::Ping;
    }
    let Ok(message) = serde_json::from_str::<RawMessage>(line) else { return Message::Other };
    if let Some(error) = message.error {
        return Message::Refused(format!("error {} {}", error.code, error.message));
    }
    if message.connect.is_some() {
        return Message::Connected;
    }
    match message.push {
        Some(RawPush { disconnect: Some(disconnect), .. }) => {
            Message::Refused(format!("disconnect {} {}", disconnect.code, disconnect.reason))
        }
        Some(RawPush { publication: Some(RawPublication { data: Some(envelope) }), .. }) => match envelope.event_type {
            Some(event) => Message::Publication(Incoming::Notification {
                id: None,
                event,
                class_id: envelope.data.and_then(|data| data.class_id),
            }),
            None => Message::Other,
        },
        Some(_) | None => Message::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_holds_pings_replies_and_publications() {
        let frame = concat!(
            r#"{"id":1,"connect":{"client":"c","version":"6.9.1","subs":{"personal:#u1":{}}}}"#,
            "\n",
            r#"{"push":{"channel":"personal:#u1","pub":{"data":{"event_type":"huleedu.class.created.v1","data":{"class_id":"run-7"}},"offset":3}}}"#,
            "\n{}\n",
            r#"{"push":{"channel":"personal:#u1","join":{"info":{}}}}"#,
        );
        let messages: Vec<Message> = read_frame(frame).collect();
        assert_eq!(
            messages,
            [
                Message::Connected,
                Message::Publication(Incoming::Notification {
                    id: None,
                    event: "huleedu.class.created.v1".to_owned(),
                    class_id: Some("run-7".to_owned()),
                }),
                Message::Ping,
                Message::Other,
            ]
        );
    }

    #[test]
    fn refusals_are_worded_with_their_code() {
        let refused: Vec<Message> = read_frame(r#"{"id":1,"error":{"code":101,"message":"unauthorized"}}"#).collect();
        assert_eq!(refused, [Message::Refused("error 101 unauthorized".to_owned())]);
        let ended: Vec<Message> =
            read_frame(r#"{"push":{"disconnect":{"code":3005,"reason":"token expired"}}}"#).collect();
        assert_eq!(ended, [Message::Refused("disconnect 3005 token expired".to_owned())]);
        assert_eq!(read_frame("not json").collect::<Vec<_>>(), [Message::Other]);
        assert_eq!(read_frame(r#"{"unknown":1}"#).collect::<Vec<_>>(), [Message::Other], "only {{}} is a ping");
    }

    proptest::proptest! {
        /// Frames are foreign bytes: any text reads as one message per non-blank line, without
        /// panicking, and only an empty object is a ping.
        #[test]
        fn any_frame_reads_line_by_line(text in "(?s).{0,300}", pushes in proptest::collection::vec(
            r#"\{"push":\{"channel":"[a-z:#0-9]{0,12}","pub":\{"data":\{"event_type":".{0,8}","data":\{"class_id":".{0,8}"\}\}\}\}\}"#,
            0..4,
        )) {
            let frame = format!("{text}\n{}", pushes.join("\n"));
            let lines = frame.split('\n').filter(|line| !line.trim().is_empty()).count();
            let messages: Vec<Message> = read_frame(&frame).collect();
            proptest::prop_assert_eq!(messages.len(), lines);
            for (message, line) in messages.iter().zip(frame.split('\n').filter(|line| !line.trim().is_empty())) {
                if *message == Message::Ping {
                    proptest::prop_assert_eq!(serde_json::from_str::<serde_json::Value>(line).ok(), Some(serde_json::json!({})));
                }
            }
        }
    }

    #[test]
    fn commands_and_channels() {
        let command: serde_json::Value = serde_json::from_str(&connect_command("t.o.k")).unwrap();
        assert_eq!(command["connect"]["token"], "t.o.k");
        assert_eq!(command["id"], 1);
        assert_eq!(personal_channel("personal", "u1"), "personal:#u1");
        assert_eq!(personal_channel("", "u1"), "#u1");
    }
}
