//! Where a remembered notification lives: time buckets of small hashes, so that Redis stores each
//! one in about 25 bytes instead of a key of its own (about 180 bytes).
//!
//! A notification is remembered as a 16-byte digest, a field (with an empty value) of a hash
//! `{prefix}{u<shard>}:dedupe:{ttl}:{bucket}:{part}`:
//!
//! - **Time buckets.** Dedupe TTLs vary by event type, so each TTL has its own buckets, each a
//!   quarter of the TTL wide, and each bucket's hashes expire (one TTL per key, not per member)
//!   a full TTL after the bucket ends. A digest marked at time t is found until t + TTL: the
//!   check reads the five buckets that cover the last TTL. Nothing is forgotten early; a digest is
//!   remembered at most 1.25 × TTL.
//! - **Small hashes.** Redis keeps a hash of at most 128 short fields (`hash-max-listpack-entries`)
//!   as one listpack: a 16-byte field and an empty value take 20 bytes. Past 128 it converts to a
//!   hash table at about 70 bytes per field. Per-key overhead (about 200 bytes with allocation
//!   rounding) is shared by the fields. So a bucket's marks are split into 1024 user shards × `parts` hashes, and `parts` is
//!   chosen when the bucket is first used, from the previous bucket's count, to aim at
//!   [`TARGET_PER_HASH`] fields per hash. The choice is stored (`dedupe-parts`, `SET NX`) so every
//!   instance agrees, and never changes for the bucket, so instances cache it.
//! - **Counting.** Each instance counts the marks it made per bucket and adds them to
//!   `dedupe-count` every few seconds; an estimate is all the sizing needs.
//!
//! When traffic jumps tenfold from one bucket to the next, that bucket's hashes grow past the
//! listpack limit and cost more until the next bucket is sized from it; the bound holds again one
//! bucket (a quarter TTL) later.

use std::collections::HashMap;
use std::sync::Mutex;

use super::keys::USER_SHARDS;

/// How many fields a dedupe hash should hold. Part counts are powers of two, so at a steady rate a
/// hash holds between 45 and 90 fields: under the listpack limit of 128 with room for growth, and
/// enough to spread the ~200 bytes a key costs (name, entry, expiry, allocation rounding).
pub(crate) const TARGET_PER_HASH: u64 = 64;

/// The most parts a bucket may have (1024 × 4096 hashes).
const MAX_PARTS: u64 = 4096;

/// Buckets per TTL.
const BUCKETS_PER_TTL: u64 = 4;

/// The time buckets of one dedupe TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Buckets {
    pub ttl_seconds: u64,
    /// Seconds per bucket.
    pub width: u64,
}

impl Buckets {
    pub(crate) fn new(ttl_seconds: u64) -> Self {
        let ttl_seconds = ttl_seconds.max(1);
        Buckets { ttl_seconds, width: ttl_seconds.div_ceil(BUCKETS_PER_TTL) }
    }

    /// The bucket that holds marks made at `now_seconds`.
    pub(crate) fn current(&self, now_seconds: u64) -> u64 {
        now_seconds / self.width
    }

    /// Every bucket that may hold a mark made within the last TTL, oldest first; the last is
    /// [`Buckets::current`].
    pub(crate) fn covering(&self, now_seconds: u64) -> std::ops::RangeInclusive<u64> {
        now_seconds.saturating_sub(self.ttl_seconds) / self.width..=self.current(now_seconds)
    }

    /// When a bucket's hashes expire (Unix seconds): a full TTL after its last possible mark.
    pub(crate) fn expires_at(&self, bucket: u64) -> u64 {
        (bucket + 1) * self.width + self.ttl_seconds
    }
}

/// How many parts a bucket gets when the previous bucket remembered `previous` notifications.
pub(crate) fn parts_for(previous: u64) -> u64 {
    let per_shard = previous.div_ceil(USER_SHARDS);
    // The power of two nearest (on a log scale) to per_shard / TARGET_PER_HASH: halve the next one
    // up when it overshoots by more than √2.
    let mut parts = per_shard.div_ceil(TARGET_PER_HASH).next_power_of_two();
    let overshoot = u128::from(parts * TARGET_PER_HASH).pow(2);
    if parts > 1 && overshoot > 2 * u128::from(per_shard).pow(2) {
        parts /= 2;
    }
    parts.clamp(1, MAX_PARTS)
}

/// The part of a bucket a digest belongs to.
pub(crate) fn part_of(digest: &[u8; 16], parts: u64) -> u64 {
    let mut tail = [0; 8];
    tail.copy_from_slice(&digest[8..]);
    u64::from_be_bytes(tail) % parts.max(1)
}

/// What this instance knows about buckets: their (immutable) part counts, and marks not yet
/// added to the shared count.
#[derive(Default)]
pub(crate) struct Sizing {
    parts: Mutex<HashMap<(u64, u64), u64>>,
    unreported: Mutex<HashMap<(u64, u64), u64>>,
}

impl Sizing {
    /// The cached part count of a bucket; `Some(0)` for a past bucket known to be unused.
    pub(crate) fn cached_parts(&self, ttl_seconds: u64, bucket: u64) -> Option<u64> {
        self.parts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&(ttl_seconds, bucket)).copied()
    }

    pub(crate) fn remember_parts(&self, ttl_seconds: u64, bucket: u64, parts: u64) {
        let mut cache = self.parts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Buckets older than the longest TTL are never read again.
        if cache.len() > 1024 {
            let newest = cache.keys().map(|(_, bucket)| *bucket).max().unwrap_or(0);
            cache.retain(|(_, cached), _| cached + 64 > newest);
        }
        cache.insert((ttl_seconds, bucket), parts);
    }

    pub(crate) fn counted(&self, ttl_seconds: u64, bucket: u64) {
        *self
            .unreported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry((ttl_seconds, bucket))
            .or_default() += 1;
    }

    /// The marks made since the last call, per (ttl, bucket).
    pub(crate) fn take_counts(&self) -> Vec<((u64, u64), u64)> {
        self.unreported.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).drain().collect()
    }

    /// Puts back counts that could not be reported.
    pub(crate) fn restore_counts(&self, counts: Vec<((u64, u64), u64)>) {
        let mut unreported = self.unreported.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (key, count) in counts {
            *unreported.entry(key).or_default() += count;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_covering_buckets_keep_a_mark_for_its_whole_ttl() {
        let buckets = Buckets::new(86_400);
        assert_eq!(buckets.width, 21_600);
        for marked_at in [1_000_000_000, 1_000_021_599, 1_000_021_600, 1_000_050_000] {
            let bucket = buckets.current(marked_at);
            for later in [marked_at, marked_at + 1, marked_at + 86_399] {
                assert!(buckets.covering(later).contains(&bucket), "marked {marked_at}, checked {later}");
                assert!(buckets.expires_at(bucket) > later, "the bucket outlives the mark's TTL");
            }
            assert!(buckets.expires_at(bucket) <= marked_at + 86_400 + 21_600, "forgotten by 1.25 TTL");
        }
        assert_eq!(buckets.covering(1_000_000_000).count(), 5);
    }

    #[test]
    fn parts_aim_at_the_target_per_hash() {
        let check = |previous: u64, expect: u64| assert_eq!(parts_for(previous), expect, "{previous}");
        check(0, 1);
        check(64 * 1024, 1);
        check(90 * 1024, 1);
        check(91 * 1024, 2);
        check(1_000 * 21_600, 256);
        check(u64::MAX / 2, MAX_PARTS);
        let digest = [7; 16];
        assert!(part_of(&digest, 512) < 512);
        assert_eq!(part_of(&digest, 1), 0);
    }
}
