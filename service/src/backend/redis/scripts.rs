//! The Lua scripts. Each declares every key it touches in KEYS, and all of one script's keys (and
//! the channel it publishes on) share a hash slot, so each runs on Redis Cluster as on one node.

/// Publishes unless the digest is in one of the user's dedupe hashes; marks it in the current
/// bucket's hash when publishing.
/// KEYS: the user's dedupe hashes of the buckets covering the TTL, the current bucket's last.
/// ARGV: digest (16 bytes), the current bucket's expiry (Unix s), PUBLISH or SPUBLISH, channel,
/// message. Returns 1 when published, 0 for a duplicate.
pub(super) const PUBLISH_ONCE: &str = r"
for i = 1, #KEYS do
  if redis.call('HEXISTS', KEYS[i], ARGV[1]) == 1 then
    return 0
  end
end
local current = KEYS[#KEYS]
redis.call('HSET', current, ARGV[1], '')
redis.call('EXPIREAT', current, ARGV[2])
redis.call(ARGV[3], ARGV[4], ARGV[5])
return 1
";

/// Returns the batch owner if known; else parks the notification (unless a copy is parked).
/// KEYS: owner, parked list, parked digests. ARGV: digest (hex), entry (JSON), max per batch,
/// keys' TTL (s). Returns {status, owner, overflow, created}: status 1 owner known, 2 a copy is
/// already parked, 3 parked; created 1 when the list was empty before.
pub(super) const OWNER_OR_PARK: &str = r"
local owner = redis.call('GET', KEYS[1])
if owner then
  return {1, owner, 0, 0}
end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  return {2, '', 0, 0}
end
local created = 0
if redis.call('RPUSH', KEYS[2], ARGV[2]) == 1 then
  created = 1
end
redis.call('HSET', KEYS[3], ARGV[1], '')
local overflow = 0
while redis.call('LLEN', KEYS[2]) > tonumber(ARGV[3]) do
  local dropped = cjson.decode(redis.call('LPOP', KEYS[2]))
  if type(dropped.digest) == 'string' then
    redis.call('HDEL', KEYS[3], dropped.digest)
  end
  overflow = overflow + 1
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return {3, '', overflow, created}
";

/// Records the owner and returns the parked entries (left in place until released).
/// KEYS: owner, parked list. ARGV: user, owner TTL (s).
pub(super) const LEARN_OWNER: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return redis.call('LRANGE', KEYS[2], 0, -1)
";

/// Removes released entries. KEYS: parked list, parked digests. ARGV: n entries, then their n
/// digests. Returns how many entries remain.
pub(super) const RELEASE: &str = r"
local n = #ARGV / 2
for i = 1, n do
  redis.call('LREM', KEYS[1], 1, ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[n + i])
end
return redis.call('LLEN', KEYS[1])
";

/// Drops the batch's parked entries whose time is up. KEYS: parked list, parked digests.
/// ARGV: now (ms). Returns {expired, next expiry (ms) or -1 when none is left}.
pub(super) const EXPIRE_BATCH: &str = r"
local expired = 0
while true do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then
    return {expired, -1}
  end
  local entry = cjson.decode(head)
  if tonumber(entry.expires_at or 0) > tonumber(ARGV[1]) then
    return {expired, tonumber(entry.expires_at)}
  end
  redis.call('LPOP', KEYS[1])
  if type(entry.digest) == 'string' then
    redis.call('HDEL', KEYS[2], entry.digest)
  end
  expired = expired + 1
end
";

/// Re-scores (or removes, for -1) a batch in its index shard, only if its score is still the one
/// the sweep read: a batch parked anew meanwhile keeps the score it was given.
/// KEYS: index shard. ARGV: batch, score read, new score or -1. Returns 1 when changed.
pub(super) const INDEX_UPDATE: &str = r"
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then
  return 0
end
if tonumber(ARGV[3]) < 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1
";
