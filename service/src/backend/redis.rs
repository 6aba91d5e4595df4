//! The production backend: state in Redis, fan-out through Redis pub/sub.
//!
//! Keys (all under `--redis-prefix`, `herald:` by default):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}owner:{batch}` | string | the batch owner's user id (TTL `--owner-ttl-seconds`) |
//! | `{prefix}dedupe:{digest}` | string | marks a published notification (TTL per event type) |
//! | `{prefix}parked:{batch}` | list | notifications waiting for the owner, oldest first |
//! | `{prefix}parked` | sorted set | batches with parked notifications, scored by the oldest one's expiry |
//!
//! Notifications are published on `ws:{user_id}`. Each instance keeps one subscriber connection and
//! subscribes to the channels of the users it holds sockets for; after Redis comes back it subscribes
//! to all of them again. The scripts assume a single Redis (not Redis Cluster): parked entries name
//! the dedupe keys they will set.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Delivery, Outgoing, Parking, Unavailable, now_unix_ms, origin_unix_ms};
use crate::hub::{Hub, Outbound, SubscriptionChange};
use crate::metrics::Metrics;

/// Marks the dedupe key and publishes, or does nothing if the key exists.
/// KEYS: dedupe key. ARGV: ttl, channel, message. Returns 1 when published.
const PUBLISH_ONCE: &str = r"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
";

/// Publishes to the batch owner if known, else parks.
/// KEYS: owner key, dedupe key, parked list, parked index.
/// ARGV: dedupe ttl, message, batch, parked entry, expires at (ms), max per batch, list ttl (s).
/// Returns {status, owner, overflow}: status 1 published, 2 duplicate, 3 parked.
const DELIVER_OR_PARK: &str = r"
local owner = redis.call('GET', KEYS[1])
if owner then
  if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
    redis.call('PUBLISH', 'ws:' .. owner, ARGV[2])
    return {1, owner, 0}
  end
  return {2, owner, 0}
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {2, '', 0}
end
redis.call('RPUSH', KEYS[3], ARGV[4])
local overflow = 0
while redis.call('LLEN', KEYS[3]) > tonumber(ARGV[6]) do
  redis.call('LPOP', KEYS[3])
  overflow = overflow + 1
end
redis.call('EXPIRE', KEYS[3], ARGV[7])
if not redis.call('ZSCORE', KEYS[4], ARGV[3]) then
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[3])
end
return {3, '', overflow}
";

/// Records the owner and publishes every parked notification of the batch that is not a duplicate.
/// KEYS: owner key, parked list, parked index. ARGV: user, owner ttl, batch, now (ms).
/// Returns {published, duplicates, expired}.
const LEARN_OWNER: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local entries = redis.call('LRANGE', KEYS[2], 0, -1)
if #entries == 0 then
  return {0, 0, 0}
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[3])
local published, duplicates, expired = 0, 0, 0
for _, raw in ipairs(entries) do
  local entry = cjson.decode(raw)
  if tonumber(entry.expires_at) <= tonumber(ARGV[4]) then
    expired = expired + 1
  elseif redis.call('SET', entry.key, '1', 'NX', 'EX', entry.ttl) then
    redis.call('PUBLISH', 'ws:' .. ARGV[1], entry.message)
    published = published + 1
  else
    duplicates = duplicates + 1
  end
end
return {published, duplicates, expired}
";

/// Drops parked notifications whose time is up. KEYS: parked index. ARGV: now (ms), list key prefix.
/// Returns the number expired.
const EXPIRE_PARKED: &str = r"
local batches = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)
local expired = 0
for _, batch in ipairs(batches) do
  local list = ARGV[2] .. batch
  while true do
    local head = redis.call('LINDEX', list, 0)
    if not head then
      redis.call('ZREM', KEYS[1], batch)
      break
    end
    local entry = cjson.decode(head)
    if tonumber(entry.expires_at) <= tonumber(ARGV[1]) then
      redis.call('LPOP', list)
      expired = expired + 1
    else
      redis.call('ZADD', KEYS[1], entry.expires_at, batch)
      break
    end
  end
end
return expired
";

pub(crate) struct RedisBackend {
    connection: ConnectionManager,
    prefix: String,
    parking: Parking,
    metrics: Metrics,
    publish_once: Script,
    deliver_or_park: Script,
    learn_owner: Script,
    expire_parked: Script,
}

fn unavailable(error: redis::RedisError) -> Unavailable {
    Unavailable(format!("redis: {error}"))
}

impl RedisBackend {
    /// Connects (retrying inside the connection manager). Returns the backend and the subscriber
    /// loop, which feeds the hub until `shutdown` is cancelled: the caller spawns it under its
    /// supervisor, so that a subscriber that ends (or panics) ends the process.
    pub(crate) async fn connect(
        url: &str,
        prefix: String,
        hub: Arc<Hub>,
        subscriptions: mpsc::UnboundedReceiver<SubscriptionChange>,
        parking: Parking,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Result<(Arc<Self>, impl Future<Output = ()> + Send + 'static), Unavailable> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let connection = ConnectionManager::new_with_config(client.clone(), config).await.map_err(unavailable)?;
        let subscriber = subscribe(client, hub, subscriptions, shutdown);
        let backend = Arc::new(RedisBackend {
            connection,
            prefix,
            parking,
            metrics,
            publish_once: Script::new(PUBLISH_ONCE),
            deliver_or_park: Script::new(DELIVER_OR_PARK),
            learn_owner: Script::new(LEARN_OWNER),
            expire_parked: Script::new(EXPIRE_PARKED),
        });
        Ok((backend, subscriber))
    }

    fn owner_key(&self, batch: &str) -> String {
        format!("{}owner:{batch}", self.prefix)
    }

    fn parked_key(&self, batch: &str) -> String {
        format!("{}parked:{batch}", self.prefix)
    }

    fn parked_index(&self) -> String {
        format!("{}parked", self.prefix)
    }

    pub(crate) async fn deliver_to_user(&self, user: &str, outgoing: &Outgoing) -> Result<Delivery, Unavailable> {
        let published: i64 = self
            .publish_once
            .key(&outgoing.dedupe_key)
            .arg(outgoing.dedupe_ttl_seconds)
            .arg(herald::runtime::user_channel(user))
            .arg(outgoing.message.as_bytes())
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        Ok(if published == 1 { Delivery::Published { user: user.to_owned() } } else { Delivery::Duplicate })
    }

    pub(crate) async fn deliver_to_batch_owner(
        &self,
        batch: &str,
        outgoing: &Outgoing,
    ) -> Result<Delivery, Unavailable> {
        let expires_at = now_unix_ms() + self.parking.ttl_seconds * 1000;
        let message = outgoing.message.as_str();
        let entry = serde_json::json!({
            "key": outgoing.dedupe_key,
            "ttl": outgoing.dedupe_ttl_seconds,
            "expires_at": expires_at,
            "message": message,
        });
        let (status, owner, overflow): (i64, String, u64) = self
            .deliver_or_park
            .key(self.owner_key(batch))
            .key(&outgoing.dedupe_key)
            .key(self.parked_key(batch))
            .key(self.parked_index())
            .arg(outgoing.dedupe_ttl_seconds)
            .arg(outgoing.message.as_bytes())
            .arg(batch)
            .arg(entry.to_string())
            .arg(expires_at)
            .arg(self.parking.max_per_batch)
            // The list outlives its newest entry a little; the index, not this TTL, drives expiry.
            .arg(self.parking.ttl_seconds + 60)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        Ok(match status {
            1 => Delivery::Published { user: owner },
            2 => Delivery::Duplicate,
            _ => Delivery::Parked { overflow },
        })
    }

    pub(crate) async fn learn_owner(&self, batch: &str, user: &str) -> Result<u64, Unavailable> {
        let (published, duplicates, expired): (u64, u64, u64) = self
            .learn_owner
            .key(self.owner_key(batch))
            .key(self.parked_key(batch))
            .key(self.parked_index())
            .arg(user)
            .arg(self.parking.owner_ttl_seconds)
            .arg(batch)
            .arg(now_unix_ms())
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        self.metrics.deduplicated.inc_by(duplicates);
        if expired > 0 {
            self.metrics.expired("ttl", expired);
        }
        Ok(published)
    }

    pub(crate) async fn expire_parked(&self) -> Result<u64, Unavailable> {
        self.expire_parked
            .key(self.parked_index())
            .arg(now_unix_ms())
            .arg(format!("{}parked:", self.prefix))
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)
    }

    pub(crate) async fn parked_batches(&self, limit: usize) -> Result<Vec<String>, Unavailable> {
        let limit = isize::try_from(limit).unwrap_or(isize::MAX).max(1);
        self.connection.clone().zrange(self.parked_index(), 0, limit - 1).await.map_err(unavailable)
    }

    pub(crate) async fn ping(&self) -> Result<(), Unavailable> {
        redis::cmd("PING").query_async::<String>(&mut self.connection.clone()).await.map(drop).map_err(unavailable)
    }
}

/// The instance's one subscriber connection: follows the hub's subscription changes and feeds
/// every message into the hub. When the connection drops it reconnects with backoff and subscribes
/// to every wanted channel again.
async fn subscribe(
    client: redis::Client,
    hub: Arc<Hub>,
    mut changes: mpsc::UnboundedReceiver<SubscriptionChange>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let pubsub = tokio::select! {
            () = shutdown.cancelled() => return,
            pubsub = client.get_async_pubsub() => pubsub,
        };
        let (mut sink, mut stream) = match pubsub {
            Ok(pubsub) => pubsub.split(),
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "redis subscriber cannot connect");
                if !crate::pause(&shutdown, &mut backoff).await {
                    return;
                }
                continue;
            }
        };
        // Changes queued while disconnected are already reflected in the hub: drop them, then
        // subscribe to every user the hub holds now. Later changes arrive on the channel.
        while changes.try_recv().is_ok() {}
        let users = hub.users();
        let channels: Vec<String> = users.iter().map(|(user, _)| herald::runtime::user_channel(user)).collect();
        if !channels.is_empty()
            && let Err(error) = sink.subscribe(&channels).await
        {
            tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "redis subscriber cannot resubscribe");
            if !crate::pause(&shutdown, &mut backoff).await {
                return;
            }
            continue;
        }
        for (user, generation) in &users {
            hub.confirm(user, Some(*generation));
        }
        tracing::info!(channels = channels.len(), "redis subscriber connected");
        backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                change = changes.recv() => {
                    let Some(change) = change else { return };
                    let result = match &change {
                        SubscriptionChange::Subscribe { user, generation } => {
                            let subscribed = sink.subscribe(herald::runtime::user_channel(user)).await;
                            if subscribed.is_ok() {
                                hub.confirm(user, Some(*generation));
                            }
                            subscribed
                        }
                        SubscriptionChange::Unsubscribe(user) => sink.unsubscribe(herald::runtime::user_channel(user)).await,
                    };
                    if let Err(error) = result {
                        tracing::warn!(%error, "redis subscriber lost its connection");
                        hub.unconfirm_all();
                        break;
                    }
                }
                message = stream.next() => {
                    let Some(message) = message else {
                        tracing::warn!("redis subscriber lost its connection");
                        hub.unconfirm_all();
                        break;
                    };
                    let channel = message.get_channel_name();
                    let Some(user) = channel.strip_prefix("ws:") else { continue };
                    let Ok(text) = std::str::from_utf8(message.get_payload_bytes()) else {
                        tracing::warn!(channel, "ignoring a message that is not UTF-8 text");
                        continue;
                    };
                    let outbound = Outbound { origin_unix_ms: origin_unix_ms(text.as_bytes()), message: Utf8Bytes::from(text) };
                    hub.deliver(user, &outbound);
                }
            }
        }
    }
}
