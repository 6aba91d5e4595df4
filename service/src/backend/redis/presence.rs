//! Which sockets a user holds on every instance, and how to reach them all: the per-user
//! connection limit counted across instances, and the control channel that disconnects a user
//! everywhere.
//!
//! **Counting.** Each user has a sorted set `{prefix}{u<shard>}:connections:{user}` (the user's
//! shard slot, so it works on a cluster): one member per socket, `<instance>:<n>`, scored by when
//! the entry goes stale (Redis time, milliseconds). A handshake runs `ADMIT` (drop stale members,
//! refuse at `--max-connections-per-user`, else add its member) before the hub registers the
//! socket; a closed socket removes its member. Every `--presence-refresh-ms` each instance re-adds
//! its own sockets' members with a fresh score of three intervals ahead (one script call per up to
//! 256 users whose keys share a slot, not one per user or per socket). The refresh is spread over
//! the interval in [`REFRESH_SLICES`] slices of users, so an instance holding many sockets does not
//! keep Redis busy for long at once. So the sockets of an instance that died (killed,
//! partitioned) stop counting at most three refresh intervals after its last refresh, and are
//! deleted by the next handshake of that user (or with the key, which expires with its last
//! member). Scores use Redis's clock
//! (`TIME` inside the scripts), so instances with skewed clocks agree.
//!
//! A socket whose close could not remove its member (Redis unreachable then) keeps counting until
//! its entry is stale; a refresh that raced a close re-adds the member once, for at most three
//! intervals. Both err towards refusing a connection too many for a bounded time, never towards
//! holding more sockets than allowed for long.
//!
//! **Redis unreachable at a handshake.** Refusing everyone because Redis is down would turn an
//! outage of the counter into an outage of the service, so the handshake falls back to this
//! instance's own count (the hub's limit, always enforced) after [`ADMIT_TIMEOUT`], counts it in
//! `herald_connection_limit_fallbacks_total` and logs a warning. The socket is added to Redis at
//! the next refresh once Redis answers again.
//!
//! **Disconnecting a user everywhere.** Every instance's subscriber listens to the control channel
//! (`{prefix}control`, `{prefix}{control}` with SPUBLISH on a cluster); `POST
//! /admin/v1/users/{user_id}/disconnect` publishes `{"disconnect":"<user>"}` there, and each
//! instance (the publishing one too) closes that user's sockets with 4003. PUBLISH answers how many
//! instances received the order.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::Script;
use tokio_util::sync::CancellationToken;

use super::RedisBackend;
use crate::backend::Unavailable;
use crate::hub::{Hub, QuotaExceeded};
use crate::metrics::Metrics;
use crate::session::Closing;

/// How long a handshake waits for Redis to count a user's sockets before falling back to this
/// instance's own count.
const ADMIT_TIMEOUT: Duration = Duration::from_secs(1);

/// Drops stale members, then adds one unless the user is at the limit.
/// KEYS: the user's connection set. ARGV: member, limit, stale after (ms).
/// Returns 1 when added, 0 at the limit.
const ADMIT: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// Gives this instance's members of several users a fresh score: one call per group of users
/// whose keys share a slot (see `Keys::script_group`), instead of one round trip per user.
/// KEYS: the users' connection sets. ARGV: stale after (ms), then for each key the number of its
/// members followed by the members. Returns how many members were refreshed.
const REFRESH: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local stale = now + tonumber(ARGV[1])
local at = 2
local refreshed = 0
for k = 1, #KEYS do
  local count = tonumber(ARGV[at])
  at = at + 1
  for i = 1, count do
    redis.call('ZADD', KEYS[k], stale, ARGV[at])
    at = at + 1
  end
  refreshed = refreshed + count
  redis.call('PEXPIRE', KEYS[k], ARGV[1])
end
return refreshed
";

/// The most users one refresh call carries: a call blocks Redis while it runs, so it stays short.
const REFRESH_BATCH_USERS: usize = 256;

/// How many parts the users are refreshed in, one part every `--presence-refresh-ms /
/// REFRESH_SLICES` (each user once per interval). All at once, an instance of 16,667 users sent 65
/// script calls back to back every interval, and notifications published meanwhile waited behind
/// them: 100,000 sockets on 6 instances showed a burst of late copies every 10 s.
const REFRESH_SLICES: u32 = 20;

/// The global connection count of this instance.
pub(crate) struct Presence {
    redis: Arc<RedisBackend>,
    /// Names this process's members: random, so a restarted instance never reuses a dead one's.
    instance: String,
    limit: usize,
    refresh: Duration,
    next: AtomicU64,
    /// For each refresh slice (see [`slice_of`]), user → the numbers of this instance's sockets of
    /// that user counted in Redis.
    local: Mutex<Vec<HashMap<String, Vec<u64>>>>,
    metrics: Metrics,
    admit: Script,
    refresh_script: Script,
}

/// A socket's place in the global count; dropping it removes the socket's member.
pub(crate) struct Seat {
    presence: Arc<Presence>,
    user: String,
    number: u64,
}

/// What a disconnect order reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reach {
    /// Instances that received the order (PUBLISH's receiver count).
    pub instances: u64,
}

impl Presence {
    pub(crate) fn new(redis: Arc<RedisBackend>, limit: usize, refresh: Duration) -> Arc<Self> {
        let instance = format!("{:016x}", crate::drain::random_u64());
        let metrics = redis.metrics.clone();
        Arc::new(Presence {
            redis,
            instance,
            limit,
            refresh: refresh.max(Duration::from_millis(50)),
            next: AtomicU64::new(1),
            local: Mutex::new((0..REFRESH_SLICES).map(|_| HashMap::new()).collect()),
            metrics,
            admit: Script::new(ADMIT),
            refresh_script: Script::new(REFRESH),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<HashMap<String, Vec<u64>>>> {
        // Every change is one insert or remove: a poisoned map is still consistent.
        self.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How long an entry counts without being refreshed.
    fn stale_after_ms(&self) -> u64 {
        u64::try_from(self.refresh.as_millis() * 3).unwrap_or(u64::MAX)
    }

    fn member(&self, number: u64) -> String {
        format!("{}:{number}", self.instance)
    }

    /// Counts a new socket of `user` across instances, or refuses it at the limit. Falls back to
    /// this instance's own count when Redis does not answer (see the module's documentation).
    pub(crate) async fn take_seat(self: &Arc<Self>, user: &str) -> Result<Seat, QuotaExceeded> {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let mut invocation = self.admit.prepare_invoke();
        invocation
            .key(self.redis.keys.connections(user))
            .arg(self.member(number))
            .arg(self.limit)
            .arg(self.stale_after_ms());
        match tokio::time::timeout(ADMIT_TIMEOUT, self.redis.invoke::<i64>(&invocation)).await {
            Ok(Ok(0)) => return Err(QuotaExceeded),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => self.fall_back(user, &error.to_string()),
            Err(_) => self.fall_back(user, &format!("no answer within {} ms", ADMIT_TIMEOUT.as_millis())),
        }
        self.lock()[slice_of(user)].entry(user.to_owned()).or_default().push(number);
        Ok(Seat { presence: Arc::clone(self), user: user.to_owned(), number })
    }

    fn fall_back(&self, user: &str, error: &str) {
        self.metrics.connection_limit_fallbacks.inc();
        tracing::warn!(user, error, "cannot count the user's connections in Redis; using this instance's count");
    }

    fn release(self: &Arc<Self>, user: &str, number: u64) {
        {
            let mut slices = self.lock();
            let local = &mut slices[slice_of(user)];
            if let Some(numbers) = local.get_mut(user) {
                numbers.retain(|held| *held != number);
                if numbers.is_empty() {
                    local.remove(user);
                }
            }
        }
        let presence = Arc::clone(self);
        let (key, member) = (self.redis.keys.connections(user), self.member(number));
        // A seat is dropped by a socket task that is ending: the removal runs beside it. If it
        // fails, the entry goes stale within three refresh intervals.
        tokio::spawn(async move {
            if let Err(error) = presence.redis.query::<i64>(redis::cmd("ZREM").arg(&key).arg(&member)).await {
                tracing::warn!(%error, "cannot remove a closed connection from the global count; it expires");
            }
        });
    }

    /// Refreshes this instance's entries, a slice of the users at a time, each user once every
    /// interval, until `shutdown`.
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(self.refresh / REFRESH_SLICES);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for slice in (0..REFRESH_SLICES as usize).cycle() {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {
                    if let Err(error) = self.refresh_slice(slice).await {
                        tracing::warn!(%error, "cannot refresh this instance's connections in Redis; will retry");
                    }
                }
            }
        }
    }

    /// Refreshes the entries of the users in `slice` (see [`slice_of`]).
    async fn refresh_slice(&self, slice: usize) -> Result<(), Unavailable> {
        let mut groups: HashMap<u64, Vec<(String, Vec<u64>)>> = HashMap::new();
        for (user, numbers) in &self.lock()[slice] {
            groups.entry(self.redis.keys.script_group(user)).or_default().push((user.clone(), numbers.clone()));
        }
        for users in groups.values() {
            for batch in users.chunks(REFRESH_BATCH_USERS) {
                let mut invocation = self.refresh_script.prepare_invoke();
                invocation.arg(self.stale_after_ms());
                for (user, numbers) in batch {
                    invocation.key(self.redis.keys.connections(user)).arg(numbers.len());
                    for number in numbers {
                        invocation.arg(self.member(*number));
                    }
                }
                let _: i64 = self.redis.invoke(&invocation).await?;
            }
        }
        Ok(())
    }

    /// Orders `user`'s sockets closed on every instance (this one through its own subscriber).
    pub(crate) async fn disconnect_everywhere(&self, user: &str) -> Result<Reach, Unavailable> {
        let message = serde_json::json!({ "disconnect": user }).to_string();
        let command = if self.redis.keys.cluster() { "SPUBLISH" } else { "PUBLISH" };
        let instances: u64 =
            self.redis.query(redis::cmd(command).arg(self.redis.keys.control_channel()).arg(message)).await?;
        Ok(Reach { instances })
    }

    /// Carries out a message of the control channel on this instance.
    pub(crate) fn control(hub: &Hub, payload: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Control {
            disconnect: Option<String>,
        }
        match serde_json::from_slice::<Control>(payload) {
            Ok(Control { disconnect: Some(user) }) => {
                let closed = hub.close_user(&user, Closing::Disconnected);
                tracing::info!(user, closed, "disconnecting the user as an operator asked");
            }
            _ => tracing::warn!("ignoring a control message herald does not know"),
        }
    }
}

/// Which of the [`REFRESH_SLICES`] refresh slices `user` belongs to: fixed for the process, so a
/// user is refreshed once per interval.
fn slice_of(user: &str) -> usize {
    let mut hasher = std::hash::DefaultHasher::new();
    user.hash(&mut hasher);
    // The remainder is below REFRESH_SLICES.
    usize::try_from(hasher.finish() % u64::from(REFRESH_SLICES)).unwrap_or(0)
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.presence.release(&self.user, self.number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_spread_over_every_refresh_slice() {
        let mut users_per_slice = [0_u32; REFRESH_SLICES as usize];
        for user in 0..10_000 {
            let slice = slice_of(&format!("user-{user}"));
            assert!(slice < REFRESH_SLICES as usize);
            users_per_slice[slice] += 1;
        }
        let mean = 10_000 / REFRESH_SLICES;
        for users in users_per_slice {
            assert!(users > mean / 2 && users < mean * 2, "uneven slices: {users_per_slice:?}");
        }
        assert_eq!(slice_of("teacher-1"), slice_of("teacher-1"));
    }
}
