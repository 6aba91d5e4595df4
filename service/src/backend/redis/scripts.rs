//! The Lua scripts. Each declares every key it touches in KEYS, and all of one script's keys (and
//! the channel it publishes on) share a hash slot, so each runs on Redis Cluster as on one node.

/// Publishes each of several notifications unless its digest is in one of its user's dedupe
/// hashes; when publishing one, appends it to the user's history stream (which assigns its id),
/// marks it in the current bucket's hash and publishes the message with that id. The
/// notifications are handled in the order given, each completely before the next, so a later one
/// sees the marks and history entries of the earlier ones; one call amortises Redis's cost of
/// running a script over all of them (see `publisher`).
///
/// The id is the stream entry id `<ms>-<seq>`: `ms` is the record's timestamp, raised to the last
/// id's `ms` when lower (read from the newest entry, or from the stream's last generated id when
/// trimming left none), and Redis picks `seq` (`<ms>-*`, Redis 7.0). The stream keeps at most
/// `--history-size` entries (exact MAXLEN), none older than the history TTL (MINID), and the key
/// expires a TTL after its last notification.
///
/// KEYS, for each notification in turn: its user's dedupe hashes of the buckets covering the TTL,
/// the current bucket's last, then the user's history stream.
/// ARGV: PUBLISH or SPUBLISH, history size, history TTL (s), the oldest ms the history keeps; then
/// for each notification: its number of keys, digest (16 bytes), the current bucket's expiry
/// (Unix s), channel, message body (the message without its opening `{"id":"<id>",`), the
/// record's ms. Returns one element per notification: its id when published, nil for a duplicate.
pub(super) const PUBLISH_BATCH: &str = r#"
local function last_ms(history)
  local newest = redis.call('XREVRANGE', history, '+', '-', 'COUNT', 1)
  local last = nil
  if #newest > 0 then
    last = newest[1][1]
  elseif redis.call('EXISTS', history) == 1 then
    local info = redis.call('XINFO', 'STREAM', history)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then
        last = info[i + 1]
      end
    end
  end
  if last then
    return string.match(last, '^(%d+)-')
  end
  return nil
end

local ids = {}
local k = 1
local a = 5
local n = 0
while a <= #ARGV do
  local count = tonumber(ARGV[a])
  local digest, expires, channel, body, ms = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local first, history = k, KEYS[k + count - 1]
  a = a + 6
  k = k + count
  n = n + 1
  local duplicate = false
  for i = first, first + count - 2 do
    if redis.call('HEXISTS', KEYS[i], digest) == 1 then
      duplicate = true
      break
    end
  end
  if duplicate then
    ids[n] = false
  else
    -- Records of a user mostly arrive in time order: try the record's ms first, and read the
    -- stream's last id only when Redis refuses it as not above the last one. The digest is marked
    -- only once the entry is appended: a failure in between can repeat a notification on the
    -- retry, never lose it.
    local id = redis.pcall('XADD', history, 'MAXLEN', '=', ARGV[2], ms .. '-*', 'm', body)
    if type(id) == 'table' and id.err then
      local last = last_ms(history)
      if not last or tonumber(last) <= tonumber(ms) then
        return redis.error_reply(id.err)
      end
      id = redis.call('XADD', history, 'MAXLEN', '=', ARGV[2], last .. '-*', 'm', body)
    end
    local current = KEYS[first + count - 2]
    redis.call('HSET', current, digest, '')
    redis.call('EXPIREAT', current, expires)
    redis.call('XTRIM', history, 'MINID', ARGV[4])
    redis.call('EXPIRE', history, ARGV[3])
    redis.call(ARGV[1], channel, '{"id":"' .. id .. '",' .. body)
    ids[n] = id
  end
end
return ids
"#;

/// Reads where a user's history stands, for the `position` frame, and starts the shard's history
/// epoch if it has none. KEYS: the user's history stream, the shard's history epoch.
/// Returns {newest entry id or nil, Redis's TIME (seconds, microseconds)}.
pub(super) const POSITION: &str = r"
local now = redis.call('TIME')
redis.call('SET', KEYS[2], now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000)), 'NX')
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id = false
if #newest > 0 then
  id = newest[1][1]
end
return {id, now[1], now[2]}
";

/// Reads a user's whole history with what proves nothing was dropped from it since the position
/// of an empty history (see `resume::nothing_lost_since_empty`). KEYS: the user's history stream,
/// the shard's history epoch. Returns {epoch or nil, TIME seconds, TIME microseconds, entries
/// added to the stream, its length, its entries}.
pub(super) const HISTORY_SINCE_EMPTY: &str = r"
local now = redis.call('TIME')
local epoch = redis.call('GET', KEYS[2])
local added, length = 0, 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'entries-added' then
      added = info[i + 1]
    elseif info[i] == 'length' then
      length = info[i + 1]
    end
  end
end
return {epoch, now[1], now[2], added, length, redis.call('XRANGE', KEYS[1], '-', '+')}
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
