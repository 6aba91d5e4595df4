//! Where ownership, deduplication and parked notifications live, and how a published notification
//! reaches the sockets: in this process (embedded) or through Redis (production).
//!
//! Both backends give the same guarantees, so the pipeline does not care which it has:
//!
//! - **Publish once.** A notification is published to a user only if its dedupe digest is new for
//!   that user within its dedupe TTL; marking the digest and publishing happen together (one Lua
//!   script in Redis), so a crash cannot leave a digest marked for a notification that was never
//!   published, nor publish one twice. Memory per remembered notification is bounded (about 25
//!   bytes in Redis, see `redis::dedupe`); the memory backend forgets digests when their TTL ends.
//! - **Deliver or park, atomically.** For an event that names only a batch, the owner lookup and the
//!   parking happen together, so a notification cannot be parked just after its owner was learnt.
//! - **Learning an owner delivers what was parked.** A parked notification stays parked until it
//!   has been published (once, by its digest) to the owner, so a crash in between publishes it at
//!   the next release, never twice.
//! - Parked notifications are bounded per batch (the oldest expires early beyond the bound) and
//!   expire after a TTL; both are counted.
//! - **Ids and history are part of the publish.** The notification's id (`<ms>-<seq>`, see
//!   `resume`) is assigned in the same atomic step that marks the digest and publishes, and the
//!   message is appended to the user's history there too (a Redis Stream, or a queue in memory),
//!   bounded by [`HistoryBounds`]. So a user's ids strictly increase in publish order, and a
//!   published notification is in the history until trimmed by count or age. A parked
//!   notification has no id yet: it gets one when it is finally published.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;

use crate::resume::{History, NotificationId, Since};

mod memory;
mod redis;

pub(crate) use self::memory::MemoryBackend;
pub(crate) use self::redis::{Presence, RedisBackend, RedisTarget, Seat, subscribe};

/// What happened to one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Published to the user's channel.
    Published { user: String },
    /// An identical notification was already published.
    Duplicate,
    /// Waiting for the batch's owner; `overflow` older notifications expired early to make room.
    Parked { overflow: u64 },
}

/// A notification ready to publish.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// What duplicates are detected by: see [`dedupe_digest`].
    pub dedupe_digest: DedupeDigest,
    pub dedupe_ttl_seconds: u64,
    /// The encoded browser message without its opening `{"id":"<id>",`
    /// (`Notification::encode_body`): the backend prepends the id it assigns at publish time.
    pub body: Utf8Bytes,
    /// The source record's Kafka timestamp (or HTTP ingest time): the lowest `ms` the id may have.
    pub origin_unix_ms: u64,
}

/// How much of each user's history is kept (`--history-size`, `--history-ttl-seconds`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HistoryBounds {
    /// Most notifications kept per user; 0 keeps none (ids still increase).
    pub size: usize,
    /// Notifications whose id's `ms` is older than this are dropped; a user's history (and its
    /// last id) is forgotten this long after its last notification.
    pub ttl_seconds: u64,
}

impl HistoryBounds {
    /// The oldest `ms` a kept notification may have at `now_ms`.
    pub(crate) fn min_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.ttl_ms())
    }

    /// The history TTL in milliseconds.
    pub(crate) fn ttl_ms(&self) -> u64 {
        self.ttl_seconds.saturating_mul(1000)
    }
}

/// Settings for parked notifications.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parking {
    pub ttl_seconds: u64,
    pub max_per_batch: usize,
    pub owner_ttl_seconds: u64,
}

/// A failure worth retrying: the store is unreachable. Never a reason to drop a record.
///
/// Cheap to clone (one failed Redis call answers every notification it carried); the causes are
/// shared, not copied.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Unavailable {
    /// Redis refused a command, or did not answer in time.
    #[error("redis: {0}")]
    Redis(#[source] std::sync::Arc<::redis::RedisError>),
    /// A parked notification could not be encoded for Redis.
    #[error("cannot encode a parked notification: {0}")]
    Encode(#[source] std::sync::Arc<serde_json::Error>),
    /// The backend cannot reach Redis at all: what is missing or stopped.
    #[error("{0}")]
    Backend(&'static str),
}

impl From<::redis::RedisError> for Unavailable {
    fn from(error: ::redis::RedisError) -> Self {
        Unavailable::Redis(std::sync::Arc::new(error))
    }
}

#[derive(Clone)]
pub(crate) enum Backend {
    Memory(Arc<MemoryBackend>),
    Redis(Arc<RedisBackend>),
}

impl Backend {
    /// Publishes to `user` unless an identical notification already was.
    pub(crate) async fn deliver_to_user(&self, user: &str, outgoing: &Outgoing) -> Result<Delivery, Unavailable> {
        match self {
            Backend::Memory(memory) => Ok(memory.deliver_to_user(user, outgoing)),
            Backend::Redis(redis) => redis.deliver_to_user(user, outgoing).await,
        }
    }

    /// Publishes to the owner of `batch`, or parks the notification until the owner is known.
    pub(crate) async fn deliver_to_batch_owner(
        &self,
        batch: &str,
        outgoing: &Outgoing,
    ) -> Result<Delivery, Unavailable> {
        match self {
            Backend::Memory(memory) => Ok(memory.deliver_to_batch_owner(batch, outgoing)),
            Backend::Redis(redis) => redis.deliver_to_batch_owner(batch, outgoing).await,
        }
    }

    /// Records that `user` owns `batch` and publishes what was parked for it; returns how many
    /// parked notifications were published.
    pub(crate) async fn learn_owner(&self, batch: &str, user: &str) -> Result<u64, Unavailable> {
        match self {
            Backend::Memory(memory) => Ok(memory.learn_owner(batch, user)),
            Backend::Redis(redis) => redis.learn_owner(batch, user).await,
        }
    }

    /// Removes parked notifications whose TTL has passed; returns how many.
    pub(crate) async fn expire_parked(&self) -> Result<u64, Unavailable> {
        match self {
            Backend::Memory(memory) => Ok(memory.expire_parked()),
            Backend::Redis(redis) => redis.expire_parked().await,
        }
    }

    /// Batches with parked notifications (up to `limit`), for owner lookups.
    pub(crate) async fn parked_batches(&self, limit: usize) -> Result<Vec<String>, Unavailable> {
        match self {
            Backend::Memory(memory) => Ok(memory.parked_batches(limit)),
            Backend::Redis(redis) => redis.parked_batches(limit).await,
        }
    }

    /// `user`'s kept notifications after `since` (see `resume::History` for what `recovered` means).
    pub(crate) async fn history(&self, user: &str, since: &Since) -> Result<History, Unavailable> {
        match self {
            Backend::Memory(memory) => Ok(memory.history(user, since)),
            Backend::Redis(redis) => redis.history(user, since).await,
        }
    }

    /// Where `user`'s history stands now (see `resume::position_frame`).
    pub(crate) async fn position(&self, user: &str) -> Result<NotificationId, Unavailable> {
        match self {
            Backend::Memory(memory) => Ok(memory.position(user)),
            Backend::Redis(redis) => redis.position(user).await,
        }
    }

    /// Whether the store answers.
    pub(crate) async fn ping(&self) -> Result<(), Unavailable> {
        match self {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(redis) => redis.ping().await,
        }
    }
}

/// The first 16 bytes of a notification's payload digest (SHA-256 of event type and payload).
pub(crate) type DedupeDigest = [u8; 16];

/// What a notification is remembered by. 16 bytes of SHA-256 are plenty: two different
/// notifications are confused only if their digests collide within one recipient's dedupe window,
/// and among a billion remembered notifications the chance of any collision is about
/// n²/2¹²⁹ ≈ 10⁻²¹. Half the bytes of the full digest is half the memory per remembered notification.
pub(crate) fn dedupe_digest(payload_digest: &[u8; 32]) -> DedupeDigest {
    let mut digest = [0; 16];
    digest.copy_from_slice(&payload_digest[..16]);
    digest
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// The Kafka timestamp a notification came from, as its id's `ms` says (raised to the user's
/// previous id's when lower), read without parsing the rest of the message.
pub(crate) fn origin_unix_ms(message: &[u8]) -> Option<u64> {
    crate::resume::id_of(message).map(|id| id.ms)
}
