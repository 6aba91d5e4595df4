//! Notifications: what a declarative handler builds from an event, and the message published on the
//! user's Redis channel.
//!
//! The wire format is the one the platform's browsers already read:
//!
//! ```json
//! {"id": "...", "event": "batch_file_added", "data": {...}, "event_id": "...",
//!  "category": "file_operations", "priority": "immediate",
//!  "timestamp": "2025-08-01T08:14:13.512331Z", "correlation_id": "..."}
//! ```
//!
//! `event` and `data` are the contract the frontend was written against; the other keys are added
//! so that a client can tell copies apart (`id`), trace a notification back to its Kafka event
//! (`event_id`, `correlation_id`) and sort or filter it (`category`, `priority`, `timestamp`).
//! `id` comes first so that a relay can read it without parsing the whole message.

use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::event::{Category, Event, Priority};

/// The prefix of every user's Redis pub/sub channel: `ws:{user_id}`. The one definition of it;
/// everything that subscribes or publishes names channels through this constant or [`user_channel`].
pub const USER_CHANNEL_PREFIX: &str = "ws:";

/// The Redis pub/sub channel that carries a user's notifications.
pub fn user_channel(user_id: &str) -> String {
    format!("{USER_CHANNEL_PREFIX}{user_id}")
}

/// The envelope facts a notification carries, borrowed from the generated `Envelope`.
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeRef<'a> {
    /// The envelope's `event_id`.
    pub event_id: &'a str,
    /// The envelope's `event_type`, as sent (it may be an alias).
    pub event_type: &'a str,
    /// The envelope's `event_timestamp`.
    pub event_timestamp: &'a str,
    /// The envelope's `correlation_id`.
    pub correlation_id: &'a str,
}

/// Serializes an event's forwarded fields as the notification's `data` object.
pub struct NotificationData<'a, E>(pub &'a E);

impl<E: Event> Serialize for NotificationData<'_, E> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_notification_data(serializer)
    }
}

/// A notification built from one event, not yet addressed to a user.
///
/// Everything is owned and `data` is already serialized, so a notification can be parked, retried
/// or published to many sockets without touching the event again.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The notification name browsers receive in `event`.
    pub name: &'static str,
    /// The canonical `event_type` of the event it was built from.
    pub event_type: &'static str,
    /// The notification's category.
    pub category: Category,
    /// The notification's priority.
    pub priority: Priority,
    /// The user to notify, when the event names one.
    pub user: Option<String>,
    /// The batch whose owner is notified when no user is named.
    pub batch: Option<String>,
    /// The batch ownership this event reveals: `(batch, user)`.
    pub batch_owner: Option<(String, String)>,
    /// The `data` object, serialized once.
    pub data: Box<RawValue>,
    /// The source envelope's `event_id`.
    pub event_id: String,
    /// The source envelope's `correlation_id`.
    pub correlation_id: String,
    /// The source envelope's `event_timestamp`.
    pub timestamp: String,
    /// How long this notification is remembered to suppress a re-sent copy.
    pub dedupe_ttl_seconds: u64,
    /// SHA-256 of the canonical event type and the whole payload: equal for a redelivered record and
    /// for the same payload re-sent under a new `event_id`, so it is what duplicates are detected by.
    pub payload_digest: [u8; 32],
}

impl Notification {
    /// Builds the notification for `event`, which arrived in the envelope described by `envelope`.
    pub fn build<E: Event + Serialize>(event: &E, envelope: EnvelopeRef<'_>) -> Self {
        // Generated payloads hold strings, numbers, string-keyed maps and lists, which always
        // serialize to JSON; a failure here would be a generator bug, not bad input.
        let data = serde_json::value::to_raw_value(&NotificationData(event))
            .unwrap_or_else(|error| unreachable!("notification data of {}: {error}", E::NOTIFICATION));
        let mut digest = Sha256::new();
        digest.update(E::EVENT_TYPE.as_bytes());
        digest.update(b"\n");
        // The payload's JSON goes straight into the hash, never into a buffer.
        serde_json::to_writer(&mut digest, event)
            .unwrap_or_else(|error| unreachable!("payload of {}: {error}", E::NOTIFICATION));
        let recipient = event.recipient();
        Notification {
            name: E::NOTIFICATION,
            event_type: E::EVENT_TYPE,
            category: E::CATEGORY,
            priority: E::PRIORITY,
            user: recipient.user.map(str::to_owned),
            batch: recipient.batch.map(str::to_owned),
            batch_owner: event.batch_owner().map(|owner| (owner.batch.to_owned(), owner.user.to_owned())),
            data,
            event_id: envelope.event_id.to_owned(),
            correlation_id: envelope.correlation_id.to_owned(),
            timestamp: envelope.event_timestamp.to_owned(),
            dedupe_ttl_seconds: E::DEDUPE_TTL_SECONDS,
            payload_digest: digest.finalize().into(),
        }
    }

    /// Encodes the message published on the recipient's channel; `id` names this notification.
    /// The same bytes as `{"id":"<id>",` followed by [`Notification::encode_body`].
    pub fn encode_message(&self, id: &str) -> Vec<u8> {
        let body = self.encode_body();
        // A string serializes to JSON infallibly.
        let id = serde_json::to_vec(id).unwrap_or_else(|error| unreachable!("notification id: {error}"));
        let mut message = Vec::with_capacity(7 + id.len() + body.len());
        message.extend_from_slice(br#"{"id":"#);
        message.extend_from_slice(&id);
        message.push(b',');
        message.extend_from_slice(&body);
        message
    }

    /// The message without its opening `{"id":"<id>",`: every key after `id`, and the closing
    /// brace. The id is given at publish time (it is the position in the user's history), so the
    /// publisher prepends it; `id` stays the first key, so a relay can read it without parsing
    /// the rest.
    pub fn encode_body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            event: &'a str,
            data: &'a RawValue,
            event_id: &'a str,
            category: &'a str,
            priority: &'a str,
            timestamp: &'a str,
            correlation_id: &'a str,
        }
        let body = Body {
            event: self.name,
            data: &self.data,
            event_id: &self.event_id,
            category: self.category.as_str(),
            priority: self.priority.as_str(),
            timestamp: &self.timestamp,
            correlation_id: &self.correlation_id,
        };
        // Every field is a string or already-valid JSON, so serializing cannot fail.
        // Sized for the fields plus their keys and escapes, so the buffer is not grown piecemeal.
        let fields = [body.event, body.data.get(), body.event_id, body.timestamp, body.correlation_id];
        let mut encoded = Vec::with_capacity(fields.iter().map(|field| field.len()).sum::<usize>() + 160);
        serde_json::to_writer(&mut encoded, &body)
            .unwrap_or_else(|error| unreachable!("notification message: {error}"));
        // An object with fields always opens with `{`: drop it, the id's part opens the message.
        encoded.remove(0);
        encoded
    }
}
