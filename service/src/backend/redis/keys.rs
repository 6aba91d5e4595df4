//! Key and channel names, and the hash tags that put every script's keys in one slot.
//!
//! The hash tag (the text between the first `{` and the next `}`) decides a key's slot in Redis
//! Cluster. `--redis-prefix` may not contain braces, so the first brace of every key is ours:
//!
//! - `{u<shard>}`: a user shard (FNV-1a of the user id modulo [`USER_SHARDS`]). It tags the
//!   user's dedupe marks, the user's history and, in cluster mode, the user's channel, so that
//!   marking a digest, appending to the history and publishing the notification are one script on
//!   one slot.
//! - `{b:<batch>}`: everything of one batch (owner, parked notifications, their digests). A batch
//!   id containing `}` shortens the tag, but every key of that batch is shortened the same way.
//! - `{control}`: the control channel on a cluster (see `presence`).
//! - `{parked:<n>}`: one of [`PARKED_INDEX_SHARDS`] shards of the index of batches with parked
//!   notifications (batch ids hash to a shard).
//! - untagged: dedupe sizing (`dedupe-parts`, `dedupe-count`), read and written outside scripts.

use herald::runtime::USER_CHANNEL_PREFIX;

/// How many user shards there are: enough to spread users over every node of a cluster, few
/// enough that one shard's dedupe hash of one time bucket holds dozens of notifications even at a
/// few notifications per second (see `dedupe`).
pub(crate) const USER_SHARDS: u64 = 1024;

/// How many shards the index of parked batches has.
pub(crate) const PARKED_INDEX_SHARDS: u64 = 16;

/// 64-bit FNV-1a: stable across processes, versions and platforms, which is all a shard needs.
pub(crate) fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// A user's shard tag, displayed as `u<n>`.
struct UserTag(u64);

impl std::fmt::Display for UserTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "u{}", self.0)
    }
}

/// Names every key and channel herald uses in one Redis (or Redis Cluster).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
    cluster: bool,
    /// Named once: the subscriber compares every message's channel with it.
    control: String,
}

impl Keys {
    pub(crate) fn new(prefix: String, cluster: bool) -> Self {
        let control = if cluster { format!("{prefix}{{control}}") } else { format!("{prefix}control") };
        Keys { prefix, cluster, control }
    }

    pub(crate) fn cluster(&self) -> bool {
        self.cluster
    }

    /// The user's shard tag, without braces: `u<n>` (written straight into the key, which is
    /// built for every notification).
    fn user_tag(user: &str) -> UserTag {
        UserTag(fnv1a(user) % USER_SHARDS)
    }

    /// The channel notifications for `user` are published on: `ws:{user_id}` on a single Redis (as
    /// always), `ws:{u<shard>}:{user_id}` on a cluster, where the channel must share its slot with
    /// the user's dedupe marks.
    pub(crate) fn channel(&self, user: &str) -> String {
        if self.cluster {
            format!("{USER_CHANNEL_PREFIX}{{{}}}:{user}", Self::user_tag(user))
        } else {
            herald::runtime::user_channel(user)
        }
    }

    /// The user a channel belongs to (the inverse of [`Keys::channel`]).
    pub(crate) fn channel_user<'a>(&self, channel: &'a str) -> Option<&'a str> {
        let rest = channel.strip_prefix(USER_CHANNEL_PREFIX)?;
        if self.cluster { rest.strip_prefix('{')?.split_once("}:").map(|(_, user)| user) } else { Some(rest) }
    }

    /// One part of one time bucket of the user shard's dedupe marks (a hash of 16-byte digests).
    pub(crate) fn dedupe(&self, user: &str, ttl_seconds: u64, bucket: u64, part: u64) -> String {
        format!("{}{{{}}}:dedupe:{ttl_seconds}:{bucket}:{part}", self.prefix, Self::user_tag(user))
    }

    /// The user's history: a stream of the notifications published to them, whose entry ids are
    /// the notifications' ids (field `m`: the message without its opening `{"id":"<id>",`).
    pub(crate) fn history(&self, user: &str) -> String {
        format!("{}{{{}}}:history:{user}", self.prefix, Self::user_tag(user))
    }

    /// When the user's shard started keeping histories (Unix ms, set by the first position read
    /// there, never expiring): a Redis that lost its data starts it again, so positions of empty
    /// histories taken before prove nothing (see `resume::nothing_lost_since_empty`).
    pub(crate) fn history_epoch(&self, user: &str) -> String {
        format!("{}{{{}}}:history-epoch", self.prefix, Self::user_tag(user))
    }

    /// How many parts the dedupe hashes of a time bucket have (decided once per bucket).
    pub(crate) fn dedupe_parts(&self, ttl_seconds: u64, bucket: u64) -> String {
        format!("{}dedupe-parts:{ttl_seconds}:{bucket}", self.prefix)
    }

    /// How many notifications were remembered in a time bucket (approximate, sizes the next).
    pub(crate) fn dedupe_count(&self, ttl_seconds: u64, bucket: u64) -> String {
        format!("{}dedupe-count:{ttl_seconds}:{bucket}", self.prefix)
    }

    /// The batch owner's user id.
    pub(crate) fn owner(&self, batch: &str) -> String {
        format!("{}{{b:{batch}}}:owner", self.prefix)
    }

    /// The batch's parked notifications, oldest first.
    pub(crate) fn parked(&self, batch: &str) -> String {
        format!("{}{{b:{batch}}}:parked", self.prefix)
    }

    /// The digests of the batch's parked notifications (a hash), so a copy is not parked twice.
    pub(crate) fn parked_digests(&self, batch: &str) -> String {
        format!("{}{{b:{batch}}}:parked-digests", self.prefix)
    }

    /// The index shard that lists `batch` while it has parked notifications.
    pub(crate) fn parked_index_of(&self, batch: &str) -> String {
        self.parked_index(fnv1a(batch) % PARKED_INDEX_SHARDS)
    }

    /// One shard of the index of batches with parked notifications (a sorted set scored by the
    /// oldest entry's expiry).
    pub(crate) fn parked_index(&self, shard: u64) -> String {
        format!("{}{{parked:{shard}}}", self.prefix)
    }

    /// The user's sockets on every instance (a sorted set scored by when each entry goes stale;
    /// see `presence`), in the user's shard slot.
    pub(crate) fn connections(&self, user: &str) -> String {
        format!("{}{{{}}}:connections:{user}", self.prefix, Self::user_tag(user))
    }

    /// Which keys of users may go into one script call: on a cluster, the users of one shard (whose
    /// keys share a slot); on a single Redis, any.
    pub(crate) fn script_group(&self, user: &str) -> u64 {
        if self.cluster { fnv1a(user) % USER_SHARDS } else { 0 }
    }

    /// The channel every instance listens to for orders (see `presence`): `{prefix}control`, or
    /// `{prefix}{control}` on a cluster, where it is a sharded channel of one slot.
    pub(crate) fn control_channel(&self) -> &str {
        &self.control
    }
}

/// The hash slot of a key or channel, as Redis Cluster computes it (CRC16-XMODEM of the hash tag,
/// modulo 16384). Used by tests to check that every script's keys share a slot.
#[cfg(test)]
pub(crate) fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = key
        .find('{')
        .and_then(|open| key[open + 1..].find('}').map(|close| &bytes[open + 1..open + 1 + close]))
        .filter(|tag| !tag.is_empty());
    let data = tagged.unwrap_or(bytes);
    let mut crc: u16 = 0;
    for byte in data {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot("123456789"), 0x31c3, "the CRC16 check value of the specification");
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_ne!(slot("foo{}{bar}"), slot("bar"), "an empty tag hashes the whole key");
    }

    #[test]
    fn each_scripts_keys_share_a_slot_and_channels_round_trip() {
        let keys = Keys::new("herald:".into(), true);
        for user in ["teacher-1", "é{x}", "a}b", ""] {
            let channel = keys.channel(user);
            assert_eq!(keys.channel_user(&channel), Some(user), "{channel}");
            assert_eq!(slot(&keys.connections(user)), slot(&channel), "{user}");
            for (ttl, bucket, part) in [(86_400, 7, 0), (21_600, 8, 3)] {
                assert_eq!(slot(&keys.dedupe(user, ttl, bucket, part)), slot(&channel), "{user}");
            }
            assert_eq!(slot(&keys.history(user)), slot(&channel), "{user}");
        }
        // Users of one script group share a slot: a refresh call carries all their keys.
        let mut groups: std::collections::HashMap<u64, Vec<u16>> = std::collections::HashMap::new();
        for user in (0..5_000).map(|n| format!("user-{n}")) {
            groups.entry(keys.script_group(&user)).or_default().push(slot(&keys.connections(&user)));
        }
        assert!(groups.len() > 1, "a cluster spreads users over groups");
        for slots in groups.values() {
            assert!(slots.iter().all(|each| *each == slots[0]), "{slots:?}");
        }
        for batch in ["batch-1", "b}x", "{weird}"] {
            let owner = slot(&keys.owner(batch));
            assert_eq!(slot(&keys.parked(batch)), owner, "{batch}");
            assert_eq!(slot(&keys.parked_digests(batch)), owner, "{batch}");
        }
        let single = Keys::new("herald:".into(), false);
        assert_eq!(single.channel("teacher-1"), "ws:teacher-1", "single Redis keeps today's channels");
        assert_eq!(single.channel_user("ws:teacher-1"), Some("teacher-1"));
        for keys in [&keys, &single] {
            assert_eq!(keys.channel_user(keys.control_channel()), None, "the control channel names no user");
        }
    }
}
