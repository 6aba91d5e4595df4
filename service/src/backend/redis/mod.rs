//! The production backend: state in Redis (a single node or a Redis Cluster), fan-out through
//! Redis pub/sub.
//!
//! Keys (all under `--redis-prefix`, `herald:` by default; the braces are hash tags, see `keys`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}{u<shard>}:dedupe:{ttl}:{bucket}:{part}` | hash | 16-byte digests of notifications published to the shard's users (see `dedupe`; the key expires a TTL after its bucket ends) |
//! | `{prefix}{u<shard>}:history:<user>` | stream | the user's last notifications (`--history-size`, none older than `--history-ttl-seconds`); entry ids are the notifications' ids, field `m` the message without its opening `{"id":"<id>",` (the key expires a history TTL after its last notification) |
//! | `{prefix}{u<shard>}:history-epoch` | string | when the shard started keeping histories (Unix ms, no TTL; see `keys::Keys::history_epoch`) |
//! | `{prefix}dedupe-parts:{ttl}:{bucket}` | string | how many parts that bucket's hashes have (set once) |
//! | `{prefix}dedupe-count:{ttl}:{bucket}` | string | about how many notifications that bucket remembers |
//! | `{prefix}{b:<batch>}:owner` | string | the batch owner's user id (TTL `--owner-ttl-seconds`) |
//! | `{prefix}{b:<batch>}:parked` | list | notifications waiting for the owner, oldest first (JSON entries) |
//! | `{prefix}{b:<batch>}:parked-digests` | hash | the hex digests of those notifications |
//! | `{prefix}{u<shard>}:connections:{user}` | sorted set | the user's sockets on every instance, `<instance>:<n>` scored by when the entry goes stale (see `presence`) |
//! | `{prefix}{parked:<n>}` | sorted set | one of 16 shards of the batches with parked notifications, scored by the oldest one's expiry (ms) |
//!
//! Notifications are published on `ws:{user_id}` with PUBLISH on a single Redis, and on
//! `ws:{u<shard>}:{user_id}` with SPUBLISH on a cluster (`--redis-cluster`). Each instance keeps
//! one subscriber (one connection per shard on a cluster) and subscribes to the channels of the
//! users it holds sockets for; it PINGs Redis and reconnects and subscribes to all of them again
//! when Redis stops answering (see `subscriber`).
//!
//! What is atomic (each a Lua script whose keys, all declared, share one hash slot):
//!
//! - **Mark, record and publish** (`PUBLISH_BATCH`, the user shard's slot, with the channel): a
//!   digest is marked for a user only together with appending the notification to the user's
//!   history (which assigns its id) and publishing it with that id. Reading the history
//!   (`XRANGE`, one command) sees every notification published before it, in id order. One call
//!   carries every notification that queued while earlier calls were out (see `publisher`), each
//!   still one atomic step.
//! - **Find the owner or park** (`OWNER_OR_PARK`, the batch's slot): a notification cannot be
//!   parked just after the owner was learnt, because learning the owner (`LEARN_OWNER`, same slot)
//!   and parking exclude each other. When the owner is known, publishing is the next step
//!   (`PUBLISH_BATCH`); the owner never changes in between in a way that matters, since either
//!   owner is a correct recipient at that moment.
//! - **Releasing parked notifications** is not one step: `LEARN_OWNER` records the owner and reads
//!   the parked entries, each is published with `PUBLISH_BATCH`, and only then `RELEASE` removes
//!   them. A crash in between leaves them parked; the next release publishes each at most once,
//!   because the digest was marked when it was published.
//! - The parked index is a hint for the sweep and the owner lookups, kept beside the batch's keys:
//!   a batch is added when its first notification is parked, and the sweep re-scores or removes
//!   it only if nobody changed its score meanwhile (`INDEX_UPDATE`). A batch missed by the index
//!   (a crash between parking and indexing) still expires with its keys' own TTL.

mod dedupe;
mod keys;
mod presence;
mod publisher;
mod scripts;
mod subscriber;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{FromRedisValue, Script, ScriptInvocation};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::dedupe::{Buckets, Sizing, part_of, parts_for};
use self::keys::{Keys, PARKED_INDEX_SHARDS};
pub(crate) use self::presence::{Presence, Seat};
use self::publisher::{Publication, Publisher};
pub(crate) use self::subscriber::{Subscriber, subscribe};
use super::{DedupeDigest, Delivery, HistoryBounds, Outgoing, Parking, Unavailable, now_unix_ms};
use crate::health::Health;
use crate::hub::{Hub, SubscriptionChange};
use crate::metrics::Metrics;
use crate::resume::{History, NotificationId, Since, message_with_id, nothing_lost_since_empty};

/// How herald reaches Redis: one node, or a cluster.
#[derive(Debug, Clone)]
pub(crate) struct RedisTarget {
    /// One URL, or (cluster) several seed nodes' URLs.
    pub urls: Vec<String>,
    pub cluster: bool,
    pub prefix: String,
    /// How often the subscriber PINGs Redis.
    pub ping_interval: Duration,
}

/// The command connection.
enum Connection {
    /// The connection manager reconnects when a connection reports an error, but not when a
    /// command times out: a connection that went silent without a reset would time out forever.
    /// So a timeout replaces the manager with a fresh one (which connects on first use).
    Single {
        client: redis::Client,
        current: std::sync::Mutex<Current>,
    },
    Cluster(ClusterConnection),
}

/// The connection manager commands use now, and when it took over.
struct Current {
    manager: ConnectionManager,
    since: Instant,
}

/// How long a command waits for its reply before it fails as timed out.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

fn manager_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
}

/// The current connection manager (a cheap handle), without holding the lock afterwards.
fn manager(current: &std::sync::Mutex<Current>) -> ConnectionManager {
    current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).manager.clone()
}

/// An `EVALSHA` of `script` with `keys` keys, for the caller to add the keys, then the arguments.
fn evalsha(script: &Script, keys: usize) -> redis::Cmd {
    let mut command = redis::cmd("EVALSHA");
    command.arg(script.get_hash()).arg(keys);
    command
}

impl Connection {
    fn single(client: redis::Client, manager: ConnectionManager) -> Self {
        Connection::Single { client, current: std::sync::Mutex::new(Current { manager, since: Instant::now() }) }
    }

    /// After a timeout: the next command gets a new connection, unless the manager was replaced
    /// within the last response timeout. A command that timed out was sent at least that long
    /// ago, so it went out on an earlier connection, which is already replaced. Without this, an
    /// overloaded Redis that times out thousands of commands at once (100,000 sockets closing
    /// together) made each replace the connection again, tens of thousands of reconnections.
    fn replace_if_silent(&self, error: &redis::RedisError) {
        let Connection::Single { client, current } = self else { return };
        if !error.is_timeout() {
            return;
        }
        let mut current = current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if current.since.elapsed() < RESPONSE_TIMEOUT {
            return;
        }
        if let Ok(fresh) = ConnectionManager::new_lazy_with_config(client.clone(), manager_config()) {
            tracing::warn!(%error, "redis command connection timed out; replacing it");
            *current = Current { manager: fresh, since: Instant::now() };
        }
    }

    async fn invoke<T: FromRedisValue>(&self, invocation: &ScriptInvocation<'_>) -> Result<T, Unavailable> {
        self.answered(match self {
            Connection::Single { current, .. } => invocation.invoke_async(&mut manager(current)).await,
            Connection::Cluster(connection) => invocation.invoke_async(&mut connection.clone()).await,
        })
    }

    /// Runs `evalsha` (built by [`evalsha`] for `script`), loading the script first when Redis
    /// does not have it. For the hot paths: the arguments are written once, into the command.
    async fn eval<T: FromRedisValue>(&self, script: &Script, evalsha: &redis::Cmd) -> Result<T, Unavailable> {
        match self.query(evalsha).await {
            Err(Unavailable::Redis(error))
                if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                self.answered(match self {
                    Connection::Single { current, .. } => script.load_async(&mut manager(current)).await,
                    Connection::Cluster(connection) => script.load_async(&mut connection.clone()).await,
                })?;
                self.query(evalsha).await
            }
            answered => answered,
        }
    }

    async fn query<T: FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, Unavailable> {
        self.answered(match self {
            Connection::Single { current, .. } => command.query_async(&mut manager(current)).await,
            Connection::Cluster(connection) => command.query_async(&mut connection.clone()).await,
        })
    }

    /// A command's result, replacing a silent connection when it timed out.
    fn answered<T>(&self, result: redis::RedisResult<T>) -> Result<T, Unavailable> {
        result.map_err(|error| {
            self.replace_if_silent(&error);
            Unavailable::from(error)
        })
    }
}

pub(crate) struct RedisBackend {
    connection: Arc<Connection>,
    /// Publishes notifications, many per script call under load.
    publisher: Publisher,
    keys: Keys,
    parking: Parking,
    history: HistoryBounds,
    metrics: Metrics,
    sizing: Sizing,
    owner_or_park: Script,
    learn_owner: Script,
    release: Script,
    expire_batch: Script,
    index_update: Script,
    position: Script,
    history_since_empty: Script,
}

/// One parked notification, as stored in the batch's list. It has no id yet: the id is assigned
/// when it is published.
#[derive(serde::Serialize, serde::Deserialize)]
struct ParkedEntry {
    /// The dedupe digest, hex.
    digest: String,
    ttl: u64,
    expires_at: u64,
    /// The message without its id (see `Outgoing::body`). Entries parked by an earlier version
    /// hold the whole message; [`ParkedEntry::body`] drops the old id.
    message: String,
    /// The record's timestamp (ms); absent in entries parked by an earlier version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<u64>,
}

impl ParkedEntry {
    fn body(&self) -> &str {
        let Some(rest) = self.message.strip_prefix(crate::resume::MESSAGE_START) else { return &self.message };
        rest.split_once("\",").map_or(&self.message, |(_, body)| body)
    }
}

/// Redis's `TIME` in Unix milliseconds.
fn redis_time_ms(seconds: u64, micros: u64) -> u64 {
    seconds.saturating_mul(1000).saturating_add(micros / 1000)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<DedupeDigest> {
    let mut digest = [0; 16];
    if text.len() != 32 {
        return None;
    }
    for (index, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(digest)
}

impl RedisBackend {
    /// Connects the command connection (retrying inside the connection manager or cluster client)
    /// and returns the backend with the subscriber that feeds the hub; the caller runs
    /// [`subscribe`] with it.
    #[expect(
        clippy::too_many_arguments,
        reason = "each is one independent part the backend is built from, named at the one call in `run`"
    )]
    pub(crate) async fn connect(
        target: &RedisTarget,
        hub: Arc<Hub>,
        subscriptions: mpsc::UnboundedReceiver<SubscriptionChange>,
        parking: Parking,
        history: HistoryBounds,
        metrics: Metrics,
        health: Health,
        shutdown: CancellationToken,
    ) -> Result<(Arc<Self>, Subscriber), Unavailable> {
        let keys = Keys::new(target.prefix.clone(), target.cluster);
        let connection = if target.cluster {
            let client = redis::cluster::ClusterClientBuilder::new(target.urls.clone())
                .connection_timeout(Duration::from_secs(2))
                .response_timeout(Duration::from_secs(5))
                .build()
                .map_err(Unavailable::from)?;
            Connection::Cluster(client.get_async_connection().await.map_err(Unavailable::from)?)
        } else {
            let url = target.urls.first().ok_or(Unavailable::Backend("no --redis-url given"))?;
            let client = redis::Client::open(url.as_str()).map_err(Unavailable::from)?;
            let manager = ConnectionManager::new_with_config(client.clone(), manager_config()).await;
            Connection::single(client, manager.map_err(Unavailable::from)?)
        };
        let subscriber = Subscriber::new(target, keys.clone(), hub, subscriptions, metrics.clone(), health, shutdown)?;
        let connection = Arc::new(connection);
        let backend = Arc::new(RedisBackend {
            publisher: Publisher::start(Arc::clone(&connection), target.cluster, history),
            connection,
            keys,
            parking,
            history,
            metrics,
            sizing: Sizing::default(),
            owner_or_park: Script::new(scripts::OWNER_OR_PARK),
            learn_owner: Script::new(scripts::LEARN_OWNER),
            release: Script::new(scripts::RELEASE),
            expire_batch: Script::new(scripts::EXPIRE_BATCH),
            index_update: Script::new(scripts::INDEX_UPDATE),
            position: Script::new(scripts::POSITION),
            history_since_empty: Script::new(scripts::HISTORY_SINCE_EMPTY),
        });
        Ok((backend, subscriber))
    }

    async fn invoke<T: FromRedisValue>(&self, invocation: &ScriptInvocation<'_>) -> Result<T, Unavailable> {
        self.connection.invoke(invocation).await
    }

    async fn query<T: FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, Unavailable> {
        self.connection.query(command).await
    }

    /// How many parts `bucket` has; decides it (once, for every instance) when it is the current
    /// bucket and nobody has yet. `None` for a past bucket that was never used. Both answers are
    /// cached, except that the previous bucket is asked again for its first minute: an instance
    /// whose clock is a little behind may still be using it.
    async fn parts(&self, buckets: Buckets, bucket: u64, now_seconds: u64) -> Result<Option<u64>, Unavailable> {
        let current = bucket == buckets.current(now_seconds);
        if let Some(parts) = self.sizing.cached_parts(buckets.ttl_seconds, bucket) {
            return Ok((parts > 0).then_some(parts));
        }
        let key = self.keys.dedupe_parts(buckets.ttl_seconds, bucket);
        let mut parts: Option<u64> = self.query(redis::cmd("GET").arg(&key)).await?;
        if parts.is_none() && current {
            let previous: Option<u64> = self
                .query(redis::cmd("GET").arg(self.keys.dedupe_count(buckets.ttl_seconds, bucket.saturating_sub(1))))
                .await?;
            let proposed = parts_for(previous.unwrap_or(0));
            let _: Option<String> = self
                .query(redis::cmd("SET").arg(&key).arg(proposed).arg("NX").arg("EXAT").arg(buckets.expires_at(bucket)))
                .await?;
            parts = self.query(redis::cmd("GET").arg(&key)).await?;
        }
        let settled = bucket + 1 < buckets.current(now_seconds) || now_seconds % buckets.width > 60;
        match parts {
            Some(parts) => self.sizing.remember_parts(buckets.ttl_seconds, bucket, parts),
            None if settled => self.sizing.remember_parts(buckets.ttl_seconds, bucket, 0),
            None => {}
        }
        Ok(parts)
    }

    /// Publishes to `user` unless the digest was already published to them within its TTL; returns
    /// the notification's id when published.
    async fn publish_once(
        &self,
        user: &str,
        digest: &DedupeDigest,
        ttl_seconds: u64,
        body: impl Into<Utf8Bytes>,
        origin_unix_ms: u64,
    ) -> Result<Option<String>, Unavailable> {
        let buckets = Buckets::new(ttl_seconds);
        let now = now_unix_ms() / 1000;
        let current = buckets.current(now);
        let mut keys = Vec::with_capacity(3);
        for bucket in buckets.covering(now) {
            if let Some(parts) = self.parts(buckets, bucket, now).await? {
                keys.push(self.keys.dedupe(user, buckets.ttl_seconds, bucket, part_of(digest, parts)));
            }
        }
        keys.push(self.keys.history(user));
        let publication = Publication {
            group: self.keys.script_group(user),
            keys,
            digest: *digest,
            bucket_expires_at: buckets.expires_at(current),
            channel: self.keys.channel(user),
            body: body.into(),
            origin_unix_ms,
        };
        let id = self.publisher.publish(publication).await?;
        if id.is_some() {
            self.sizing.counted(buckets.ttl_seconds, current);
        }
        Ok(id)
    }

    pub(crate) async fn deliver_to_user(&self, user: &str, outgoing: &Outgoing) -> Result<Delivery, Unavailable> {
        let id = self
            .publish_once(
                user,
                &outgoing.dedupe_digest,
                outgoing.dedupe_ttl_seconds,
                outgoing.body.clone(),
                outgoing.origin_unix_ms,
            )
            .await?;
        Ok(if id.is_some() { Delivery::Published { user: user.to_owned() } } else { Delivery::Duplicate })
    }

    /// Where `user`'s history stands (see `resume::position_frame`): its newest id, or the position
    /// of an empty history at Redis's time. Starts the shard's history epoch if it has none.
    pub(crate) async fn position(&self, user: &str) -> Result<NotificationId, Unavailable> {
        let mut invocation = self.position.prepare_invoke();
        invocation.key(self.keys.history(user)).key(self.keys.history_epoch(user));
        let (newest, seconds, micros): (Option<String>, u64, u64) = self.invoke(&invocation).await?;
        let now_ms = redis_time_ms(seconds, micros);
        let min_ms = self.history.min_ms(now_ms);
        Ok(match newest.as_deref().and_then(NotificationId::parse) {
            // An entry past the TTL is trimmed at the next publish: it is no position.
            Some(newest) if newest.ms >= min_ms => newest,
            _ => NotificationId::empty_history(now_ms),
        })
    }

    /// `user`'s kept notifications after `since`: one `XRANGE` from `since` (inclusive), so whether
    /// `since` is still kept and what follows it are read at one instant. From the position of an
    /// empty history, one script reads the whole history with what proves nothing was dropped.
    pub(crate) async fn history(&self, user: &str, since: &Since) -> Result<History, Unavailable> {
        let start = match since {
            Since::Id(id) if let Some(taken_ms) = id.empty_history_taken() => {
                return self.history_since_empty(user, taken_ms).await;
            }
            Since::Id(id) => id.to_string(),
            Since::Malformed => "-".to_owned(),
        };
        let entries: Vec<(String, Vec<String>)> =
            self.query(redis::cmd("XRANGE").arg(self.keys.history(user)).arg(start).arg("+")).await?;
        Ok(self.kept(user, since, entries, now_unix_ms()))
    }

    /// The history after the position of an empty history taken at `taken_ms`.
    async fn history_since_empty(&self, user: &str, taken_ms: u64) -> Result<History, Unavailable> {
        let mut invocation = self.history_since_empty.prepare_invoke();
        invocation.key(self.keys.history(user)).key(self.keys.history_epoch(user));
        type Read = (Option<u64>, u64, u64, u64, u64, Vec<(String, Vec<String>)>);
        let (epoch_ms, seconds, micros, added, length, entries): Read = self.invoke(&invocation).await?;
        let now_ms = redis_time_ms(seconds, micros);
        let all = entries.len();
        let mut history = self.kept(user, &Since::Malformed, entries, now_ms);
        let dropped = added != length || history.entries.len() != all;
        history.recovered = nothing_lost_since_empty(taken_ms, epoch_ms, now_ms, self.history.ttl_ms(), dropped);
        Ok(history)
    }

    /// The entries of a history read after `since` that are still kept at `now_ms`, and whether
    /// `since` itself was among them.
    fn kept(&self, user: &str, since: &Since, entries: Vec<(String, Vec<String>)>, now_ms: u64) -> History {
        let min_ms = self.history.min_ms(now_ms);
        let mut history = History::default();
        for (raw_id, fields) in entries {
            let Some(id) = NotificationId::parse(&raw_id) else { continue };
            if let Since::Id(since) = since
                && id == *since
            {
                // Trimming by age happens when the next notification is published; until then an
                // entry past the TTL is treated as trimmed already.
                history.recovered = id.ms >= min_ms;
                continue;
            }
            if id.ms < min_ms {
                continue;
            }
            let Some(body) = fields.chunks(2).find_map(|pair| (pair[0] == "m").then(|| pair.get(1)).flatten()) else {
                tracing::warn!(user, id = raw_id, "skipping a history entry without a message");
                continue;
            };
            history.entries.push((id, message_with_id(&raw_id, body)));
        }
        history
    }

    pub(crate) async fn deliver_to_batch_owner(
        &self,
        batch: &str,
        outgoing: &Outgoing,
    ) -> Result<Delivery, Unavailable> {
        let expires_at = now_unix_ms() + self.parking.ttl_seconds * 1000;
        let digest = hex(&outgoing.dedupe_digest);
        let entry = ParkedEntry {
            digest: digest.clone(),
            ttl: outgoing.dedupe_ttl_seconds,
            expires_at,
            message: outgoing.body.as_str().to_owned(),
            origin: Some(outgoing.origin_unix_ms),
        };
        let entry = serde_json::to_string(&entry).map_err(|error| Unavailable::Encode(std::sync::Arc::new(error)))?;
        let mut invocation = self.owner_or_park.prepare_invoke();
        invocation
            .key(self.keys.owner(batch))
            .key(self.keys.parked(batch))
            .key(self.keys.parked_digests(batch))
            .arg(&digest)
            .arg(entry)
            .arg(self.parking.max_per_batch)
            // The keys outlive their newest entry a little; the index, not this TTL, drives expiry.
            .arg(self.parking.ttl_seconds + 60);
        let (status, owner, overflow, created): (i64, String, u64, i64) = self.invoke(&invocation).await?;
        match status {
            1 => Ok(if self.deliver_to_user(&owner, outgoing).await? == Delivery::Duplicate {
                Delivery::Duplicate
            } else {
                Delivery::Published { user: owner }
            }),
            2 => Ok(Delivery::Duplicate),
            _ => {
                if created == 1 {
                    let _: i64 = self
                        .query(redis::cmd("ZADD").arg(self.keys.parked_index_of(batch)).arg(expires_at).arg(batch))
                        .await?;
                }
                Ok(Delivery::Parked { overflow })
            }
        }
    }

    pub(crate) async fn learn_owner(&self, batch: &str, user: &str) -> Result<u64, Unavailable> {
        let mut invocation = self.learn_owner.prepare_invoke();
        invocation
            .key(self.keys.owner(batch))
            .key(self.keys.parked(batch))
            .arg(user)
            .arg(self.parking.owner_ttl_seconds);
        let entries: Vec<String> = self.invoke(&invocation).await?;
        if entries.is_empty() {
            return Ok(0);
        }
        let now = now_unix_ms();
        let (mut published, mut duplicates, mut expired) = (0, 0, 0);
        // One digest per entry, in order ("" for an entry that cannot be read, which is dropped).
        let mut digests = Vec::with_capacity(entries.len());
        for raw in &entries {
            let Ok(entry) = serde_json::from_str::<ParkedEntry>(raw) else {
                tracing::warn!(batch, "dropping a parked entry that is not valid JSON");
                digests.push(String::new());
                continue;
            };
            digests.push(entry.digest.clone());
            let Some(digest) = unhex(&entry.digest) else {
                tracing::warn!(batch, "dropping a parked entry whose digest is not 32 hex digits");
                continue;
            };
            if entry.expires_at <= now {
                expired += 1;
            } else if self
                .publish_once(user, &digest, entry.ttl, entry.body(), entry.origin.unwrap_or(now))
                .await?
                .is_some()
            {
                published += 1;
            } else {
                duplicates += 1;
            }
        }
        let mut invocation = self.release.prepare_invoke();
        invocation.key(self.keys.parked(batch)).key(self.keys.parked_digests(batch));
        for raw in &entries {
            invocation.arg(raw);
        }
        for digest in &digests {
            invocation.arg(digest);
        }
        let _: i64 = self.invoke(&invocation).await?;
        self.metrics.deduplicated.inc_by(duplicates);
        if expired > 0 {
            self.metrics.expired("ttl", expired);
        }
        Ok(published)
    }

    /// Expires parked notifications of due batches, shard by shard; also reports this instance's
    /// dedupe counts (the sweep calls it every few seconds).
    pub(crate) async fn expire_parked(&self) -> Result<u64, Unavailable> {
        self.report_counts().await?;
        let now = now_unix_ms();
        let mut expired = 0;
        for shard in 0..PARKED_INDEX_SHARDS {
            let index = self.keys.parked_index(shard);
            let due: Vec<(String, String)> = self
                .query(
                    redis::cmd("ZRANGE")
                        .arg(&index)
                        .arg("-inf")
                        .arg(now)
                        .arg("BYSCORE")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(1000)
                        .arg("WITHSCORES"),
                )
                .await?;
            for (batch, score) in due {
                let mut invocation = self.expire_batch.prepare_invoke();
                invocation.key(self.keys.parked(&batch)).key(self.keys.parked_digests(&batch)).arg(now);
                let (count, next): (u64, i64) = self.invoke(&invocation).await?;
                expired += count;
                let mut update = self.index_update.prepare_invoke();
                update.key(&index).arg(&batch).arg(&score).arg(next);
                let _: i64 = self.invoke(&update).await?;
            }
        }
        Ok(expired)
    }

    /// Adds this instance's dedupe marks to the shared per-bucket counts.
    async fn report_counts(&self) -> Result<(), Unavailable> {
        let counts = self.sizing.take_counts();
        for (index, ((ttl_seconds, bucket), count)) in counts.iter().enumerate() {
            let key = self.keys.dedupe_count(*ttl_seconds, *bucket);
            let reported: Result<i64, Unavailable> = self.query(redis::cmd("INCRBY").arg(&key).arg(*count)).await;
            let expiry: Result<i64, Unavailable> = match reported {
                Ok(_) => {
                    let at = Buckets::new(*ttl_seconds).expires_at(*bucket);
                    self.query(redis::cmd("EXPIREAT").arg(&key).arg(at)).await
                }
                Err(error) => Err(error),
            };
            if let Err(error) = expiry {
                self.sizing.restore_counts(counts[index..].to_vec());
                return Err(error);
            }
        }
        Ok(())
    }

    pub(crate) async fn parked_batches(&self, limit: usize) -> Result<Vec<String>, Unavailable> {
        let mut batches = Vec::new();
        for shard in 0..PARKED_INDEX_SHARDS {
            let remaining = limit.saturating_sub(batches.len());
            if remaining == 0 {
                break;
            }
            let found: Vec<String> =
                self.query(redis::cmd("ZRANGE").arg(self.keys.parked_index(shard)).arg(0).arg(remaining - 1)).await?;
            batches.extend(found);
        }
        Ok(batches)
    }

    pub(crate) async fn ping(&self) -> Result<(), Unavailable> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    /// A redis-server of this test's own, so that `used_memory` counts only what the test stores.
    struct OwnRedis {
        child: std::process::Child,
        url: String,
    }

    impl OwnRedis {
        async fn start() -> OwnRedis {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server starts (install it with scripts/infra/packages.sh)");
            let url = format!("redis://127.0.0.1:{port}");
            let started = std::time::Instant::now();
            loop {
                let client = redis::Client::open(url.as_str()).unwrap();
                if let Ok(mut connection) = client.get_multiplexed_async_connection().await
                    && redis::cmd("PING").query_async::<String>(&mut connection).await.is_ok()
                {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(20), "redis-server did not answer on port {port}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            OwnRedis { child, url }
        }

        /// A connection for the test's own commands. redis-rs gives up on a reply after 500 ms
        /// by default, which a loaded machine can exceed for a pipeline of a thousand commands.
        async fn connection(&self) -> redis::aio::MultiplexedConnection {
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(10)))
                .set_response_timeout(Some(Duration::from_secs(60)));
            redis::Client::open(self.url.as_str())
                .unwrap()
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .unwrap()
        }
    }

    impl Drop for OwnRedis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    async fn backend(redis: &OwnRedis) -> Arc<RedisBackend> {
        with_history(redis, HistoryBounds { size: 100, ttl_seconds: 86_400 }).await
    }

    async fn with_history(redis: &OwnRedis, history: HistoryBounds) -> Arc<RedisBackend> {
        let (metrics, _) = Metrics::new();
        let (changes, subscriptions) = mpsc::unbounded_channel();
        let hub = Hub::new(5, 8, Some(changes), metrics.clone());
        let target = RedisTarget {
            urls: vec![redis.url.clone()],
            cluster: false,
            prefix: "herald:".into(),
            ping_interval: Duration::from_secs(1),
        };
        let parking = Parking { ttl_seconds: 60, max_per_batch: 10, owner_ttl_seconds: 60 };
        let health = Health::new(metrics.clone());
        let (backend, _subscriber) = RedisBackend::connect(
            &target,
            hub,
            subscriptions,
            parking,
            history,
            metrics,
            health,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        backend
    }

    async fn connection(redis: &OwnRedis) -> redis::aio::MultiplexedConnection {
        redis.connection().await
    }

    /// A release interrupted after publishing some parked notifications (a crash) leaves them all
    /// parked; the next release publishes each of the others once and none of the first again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_interrupted_release_loses_nothing_and_publishes_nothing_twice() {
        let redis = OwnRedis::start().await;
        let backend = backend(&redis).await;
        let outgoing = |index: u64| Outgoing {
            dedupe_digest: digest(index),
            dedupe_ttl_seconds: 60,
            body: axum::extract::ws::Utf8Bytes::from(format!("\"n\":{index}}}")),
            origin_unix_ms: now_unix_ms(),
        };
        for index in 0..3 {
            assert_eq!(
                backend.deliver_to_batch_owner("b1", &outgoing(index)).await.unwrap(),
                Delivery::Parked { overflow: 0 }
            );
        }
        assert_eq!(backend.deliver_to_batch_owner("b1", &outgoing(1)).await.unwrap(), Delivery::Duplicate);
        // The first release published notification 0, then the process died before removing anything.
        assert!(backend.publish_once("teacher", &digest(0), 60, "}", now_unix_ms()).await.unwrap().is_some());
        assert_eq!(backend.learn_owner("b1", "teacher").await.unwrap(), 2, "1 and 2 are published, 0 is not again");
        let mut connection = redis.connection().await;
        let left: i64 = redis::cmd("LLEN").arg(backend.keys.parked("b1")).query_async(&mut connection).await.unwrap();
        assert_eq!(left, 0, "released entries leave the batch");
        assert_eq!(backend.learn_owner("b1", "teacher").await.unwrap(), 0);
    }

    /// Redis forgets its scripts when it restarts (or on `SCRIPT FLUSH`): the publisher's next call
    /// is answered `NOSCRIPT`, loads the script and publishes, and dedupe still holds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publishing_loads_the_script_again_when_redis_forgot_it() {
        let redis = OwnRedis::start().await;
        let backend = backend(&redis).await;
        let now = now_unix_ms();
        assert!(backend.publish_once("teacher", &digest(1), 60, "}", now).await.unwrap().is_some());
        let mut connection = redis.connection().await;
        let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut connection).await.unwrap();
        assert!(backend.publish_once("teacher", &digest(2), 60, "}", now).await.unwrap().is_some());
        assert_eq!(backend.publish_once("teacher", &digest(1), 60, "}", now).await.unwrap(), None, "still a duplicate");
        let history = backend.history("teacher", &Since::Malformed).await.unwrap();
        assert_eq!(history.entries.len(), 2);
    }

    /// Publishes made at once share script calls: each notification is still published once (a
    /// copy handed over in the same call is a duplicate), each user's ids increase in the order
    /// the notifications were handed over, and every published one is in its user's history.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_publishes_share_calls_and_each_is_published_once_in_order() {
        const USERS: u64 = 20;
        const PER_USER: u64 = 50;
        let redis = OwnRedis::start().await;
        let backend = backend(&redis).await;
        let now = now_unix_ms();
        let users: Vec<_> = (0..USERS)
            .map(|user| {
                let backend = Arc::clone(&backend);
                tokio::spawn(async move {
                    // One user's publishes are handed over in order, as the consumer does; the
                    // users' run at once, so calls carry several users' notifications.
                    let mut ids = Vec::new();
                    let name = format!("u{user}");
                    for index in 0..PER_USER {
                        let digest = digest(user * PER_USER + index);
                        let (first, copy) = tokio::join!(
                            backend.publish_once(&name, &digest, 60, "}", now + index),
                            backend.publish_once(&name, &digest, 60, "}", now + index),
                        );
                        let published: Vec<String> = [first.unwrap(), copy.unwrap()].into_iter().flatten().collect();
                        assert_eq!(published.len(), 1, "user {user} notification {index}: {published:?}");
                        ids.push(NotificationId::parse(&published[0]).unwrap());
                    }
                    ids
                })
            })
            .collect();
        for (user, ids) in futures_util::future::join_all(users).await.into_iter().enumerate() {
            let ids = ids.unwrap();
            assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "user {user}: {ids:?}");
            let history = backend.history(&format!("u{user}"), &Since::Malformed).await.unwrap();
            assert_eq!(history.entries.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids, "user {user}");
        }
    }

    /// The memory measurements take turns: two at once starve each other's Redis of CPU (a command
    /// can time out) on a small machine.
    static MEASURING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    async fn used_memory(connection: &mut redis::aio::MultiplexedConnection) -> i64 {
        let info: String = redis::cmd("INFO").arg("memory").query_async(connection).await.unwrap();
        info.lines().find_map(|line| line.strip_prefix("used_memory:")).unwrap().trim().parse().unwrap()
    }

    /// A digest-like 16 bytes for notification `index`.
    fn digest(index: u64) -> DedupeDigest {
        let mut digest = [0; 16];
        digest[..8].copy_from_slice(&keys::fnv1a(&format!("a{index}")).to_be_bytes());
        digest[8..].copy_from_slice(&keys::fnv1a(&format!("b{index}")).to_be_bytes());
        digest
    }

    /// Measures Redis bytes per remembered notification, the old way (a key per notification) and
    /// the bucketed way, over 100,000 notifications to 5,000 users; prints both (run with
    /// `--nocapture` to see them; docs/benchmarks.md, "Redis memory").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_remembered_notification_costs_at_most_32_bytes_of_redis() {
        const N: u64 = 100_000;
        const TTL: u64 = 86_400;
        let _turn = MEASURING.lock().await;
        let redis = OwnRedis::start().await;
        let mut connection = redis.connection().await;

        // Before: one string key with a TTL per notification, `{prefix}dedupe:{64 hex digits}`.
        let start = used_memory(&mut connection).await;
        for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
            let mut pipeline = redis::pipe();
            for index in chunk {
                let key = format!("herald:dedupe:{}{}", hex(&digest(*index)), hex(&digest(index + N)));
                pipeline.cmd("SET").arg(key).arg("1").arg("NX").arg("EX").arg(TTL).ignore();
            }
            let () = pipeline.query_async(&mut connection).await.unwrap();
        }
        let per_key = (used_memory(&mut connection).await - start) as f64 / N as f64;
        let () = redis::cmd("FLUSHALL").query_async(&mut connection).await.unwrap();

        // After: the backend's own publish path. The previous bucket's count says N, so the
        // current bucket is sized as it is in steady traffic.
        let backend = backend(&redis).await;
        let buckets = Buckets::new(TTL);
        let current = buckets.current(now_unix_ms() / 1000);
        let () = redis::cmd("SET")
            .arg(backend.keys.dedupe_count(TTL, current - 1))
            .arg(N)
            .query_async(&mut connection)
            .await
            .unwrap();
        // Sizes the current bucket before measuring, as every bucket is sized once.
        assert!(backend.publish_once("warm-up", &digest(u64::MAX), TTL, "}", now_unix_ms()).await.unwrap().is_some());
        let start = used_memory(&mut connection).await;
        let published = futures_util::stream::iter(0..N)
            .map(|index| {
                let backend = Arc::clone(&backend);
                async move {
                    let user = format!("teacher-{}", index % 5000);
                    backend.publish_once(&user, &digest(index), TTL, "}", now_unix_ms()).await.unwrap().is_some()
                }
            })
            .buffer_unordered(64)
            .filter(|published| std::future::ready(*published))
            .count()
            .await;
        assert_eq!(published as u64, N, "every digest is new");
        // Only the dedupe marks are measured here: the history (see the next test) goes first.
        for user in 0..5000 {
            let _: i64 = redis::cmd("DEL")
                .arg(backend.keys.history(&format!("teacher-{user}")))
                .query_async(&mut connection)
                .await
                .unwrap();
        }
        let per_notification = (used_memory(&mut connection).await - start) as f64 / N as f64;
        let parts = backend.sizing.cached_parts(TTL, current).unwrap();
        let sample = backend.keys.dedupe("teacher-1", TTL, current, part_of(&digest(1), parts));
        let encoding: String =
            redis::cmd("OBJECT").arg("ENCODING").arg(&sample).query_async(&mut connection).await.unwrap();
        println!(
            "redis memory per remembered notification over {N}: one key each {per_key:.1} bytes; \
             bucketed hashes {per_notification:.1} bytes ({parts} parts per user shard, encoding {encoding})"
        );
        assert_eq!(encoding, "listpack", "the dedupe hashes stay compact");
        assert!(per_notification <= 32.0, "{per_notification:.1} bytes per remembered notification");
        // A second publish of any of them is a duplicate.
        assert!(backend.publish_once("teacher-7", &digest(7), TTL, "}", now_unix_ms()).await.unwrap().is_none());
    }

    fn ids(history: &History) -> Vec<String> {
        history.entries.iter().map(|(id, _)| id.to_string()).collect()
    }

    /// A position is the newest kept id or the position of an empty history at Redis's time;
    /// resuming from an empty history's position is recovered only while nothing was dropped and
    /// the shard's history epoch is older, as in the memory backend.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_position_is_the_newest_id_or_an_empty_historys_and_resuming_from_it_proves_what_it_can() {
        let redis = OwnRedis::start().await;
        let backend = with_history(&redis, HistoryBounds { size: 3, ttl_seconds: 60 }).await;
        let before = now_unix_ms();
        let empty = backend.position("a").await.unwrap();
        let taken = empty.empty_history_taken().unwrap_or_else(|| panic!("{empty} is an empty history's position"));
        assert!(taken.abs_diff(before) < 5_000, "Redis's clock: {taken} against {before}");
        let since = Since::Id(empty);
        let nothing = backend.history("a", &since).await.unwrap();
        assert_eq!(nothing, History { recovered: true, entries: Vec::new() }, "nothing published yet");
        let now = now_unix_ms();
        backend.publish_once("a", &digest(1), 60, "\"n\":1}", now - 5_000).await.unwrap();
        backend.publish_once("a", &digest(2), 60, "\"n\":2}", now).await.unwrap();
        let after = backend.history("a", &since).await.unwrap();
        assert!(after.recovered, "nothing dropped after the position");
        assert_eq!(ids(&after), [format!("{}-0", now - 5_000), format!("{now}-0")]);
        assert_eq!(backend.position("a").await.unwrap().to_string(), format!("{now}-0"), "the newest id");
        backend.publish_once("a", &digest(3), 60, "}", now).await.unwrap();
        backend.publish_once("a", &digest(4), 60, "}", now).await.unwrap();
        let trimmed = backend.history("a", &since).await.unwrap();
        assert!(!trimmed.recovered, "one was trimmed after the position");
        assert_eq!(trimmed.entries.len(), 3);

        let too_old = Since::Id(NotificationId::empty_history(taken - 60_000));
        assert!(!backend.history("b", &too_old).await.unwrap().recovered, "a whole history may have expired since");
        let mut connection = redis.connection().await;
        let () = redis::cmd("FLUSHALL").query_async(&mut connection).await.unwrap();
        assert!(!backend.history("b", &since).await.unwrap().recovered, "the data was lost: no epoch");
        let later = backend.position("b").await.unwrap();
        assert!(later.empty_history_taken().is_some());
        assert!(!backend.history("b", &since).await.unwrap().recovered, "taken before the epoch started again");
        assert!(backend.history("b", &Since::Id(later)).await.unwrap().recovered);
    }

    /// The stream assigns ids by the same rule as the memory backend, keeps the same bounds, and
    /// replays each message byte for byte as it was published.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn history_ids_follow_the_record_time_and_the_bounds_hold() {
        let redis = OwnRedis::start().await;
        let backend = with_history(&redis, HistoryBounds { size: 3, ttl_seconds: 60 }).await;
        let now = now_unix_ms();
        let mut channel = redis::Client::open(redis.url.as_str()).unwrap().get_async_pubsub().await.unwrap();
        channel.subscribe(backend.keys.channel("a")).await.unwrap();
        let publish = |index: u64, origin: u64| {
            let backend = Arc::clone(&backend);
            async move {
                let body = format!("\"n\":{index}}}");
                backend.publish_once("a", &digest(index), 60, &body, origin).await.unwrap()
            }
        };
        assert_eq!(publish(0, now - 120_000).await.as_deref(), Some(format!("{}-0", now - 120_000).as_str()));
        assert!(backend.history("a", &Since::Malformed).await.unwrap().entries.is_empty(), "older than the TTL");
        assert_eq!(publish(1, now).await, Some(format!("{now}-0")));
        assert_eq!(publish(2, now - 5_000).await, Some(format!("{now}-1")), "raised to the last id's ms");
        assert_eq!(publish(3, now + 1).await, Some(format!("{}-0", now + 1)));
        assert_eq!(publish(3, now + 2).await, None, "a duplicate gets no id and no entry");

        let since = Since::parse(&format!("{now}-0"));
        let after = backend.history("a", &since).await.unwrap();
        assert!(after.recovered);
        assert_eq!(ids(&after), [format!("{now}-1"), format!("{}-0", now + 1)]);
        let mut published = channel.on_message();
        let mut sent = Vec::new();
        for _ in 0..4 {
            let message = tokio::time::timeout(Duration::from_secs(10), published.next()).await.unwrap().unwrap();
            sent.push(message.get_payload::<String>().unwrap());
        }
        assert_eq!(sent[2], format!(r#"{{"id":"{now}-1","n":2}}"#));
        assert_eq!(after.entries[0].1, sent[2], "replayed byte for byte");
        assert_eq!(after.entries[1].1, sent[3]);

        for index in 4..6 {
            publish(index, now).await.unwrap();
        }
        let trimmed = backend.history("a", &since).await.unwrap();
        assert!(!trimmed.recovered, "trimmed by --history-size");
        assert_eq!(ids(&trimmed), [format!("{}-0", now + 1), format!("{}-1", now + 1), format!("{}-2", now + 1)]);
        let unknown = backend.history("a", &Since::parse("1-0")).await.unwrap();
        assert!(!unknown.recovered);
        assert_eq!(unknown.entries.len(), 3);
        assert_eq!(backend.history("nobody", &since).await.unwrap(), History::default());

        let none = with_history(&redis, HistoryBounds { size: 0, ttl_seconds: 60 }).await;
        let first = none.publish_once("b", &digest(10), 60, "}", now).await.unwrap();
        let second = none.publish_once("b", &digest(11), 60, "}", now - 1).await.unwrap();
        assert_eq!((first, second), (Some(format!("{now}-0")), Some(format!("{now}-1"))), "ids still increase");
        assert!(none.history("b", &Since::Malformed).await.unwrap().entries.is_empty());
    }

    /// Measures Redis bytes per kept notification and per user's history: 1,000 users with a full
    /// history in steady state (150 notifications of a typical size published each, the default
    /// 100 kept, so trimming has run), and 1,000 users with `--history-size 0` (the stream keeps
    /// only the last id). Prints the figures (run with `--nocapture`; docs/benchmarks.md, "Redis
    /// memory").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kept_notification_costs_its_message_and_at_most_128_bytes_more() {
        const USERS: u64 = 1000;
        const PER_USER: u64 = 150;
        const KEPT: u64 = 100;
        let _turn = MEASURING.lock().await;
        let redis = OwnRedis::start().await;
        let mut connection = connection(&redis).await;
        let backend = backend(&redis).await;
        // A class_created message as published (ids and timestamps vary, as in real traffic).
        let body = |index: u64| {
            format!(
                r#""event":"class_created","data":{{"class_id":"class-{index:08}","name":"Year 9 English {index}","user_id":"teacher-{user}"}},"event_id":"{a:016x}-{b:016x}","category":"class_management","priority":"immediate","timestamp":"2026-12-01T09:{m:02}:{s:02}.{index:06}Z","correlation_id":"{b:016x}-{a:016x}"}}"#,
                user = index % USERS,
                a = keys::fnv1a(&format!("e{index}")),
                b = keys::fnv1a(&format!("c{index}")),
                m = index % 60,
                s = index / 60 % 60,
            )
        };
        // The kept ones: each user's last 100.
        let body_bytes: usize = (USERS * (PER_USER - KEPT)..USERS * PER_USER).map(|index| body(index).len()).sum();
        assert!(
            backend.publish_once("warm-up", &digest(u64::MAX), 86_400, "}", now_unix_ms()).await.unwrap().is_some()
        );
        let dedupe_keys = |connection: &mut redis::aio::MultiplexedConnection| {
            let mut connection = connection.clone();
            async move {
                let keys: Vec<String> =
                    redis::cmd("KEYS").arg("herald:*dedupe*").query_async(&mut connection).await.unwrap();
                if !keys.is_empty() {
                    let _: i64 = redis::cmd("DEL").arg(keys).query_async(&mut connection).await.unwrap();
                }
            }
        };
        let start = used_memory(&mut connection).await;
        let now = now_unix_ms();
        futures_util::stream::iter(0..USERS * PER_USER)
            .map(|index| {
                let backend = Arc::clone(&backend);
                let body = body(index);
                async move {
                    let user = format!("teacher-{}", index % USERS);
                    backend.publish_once(&user, &digest(index), 86_400, &body, now + index).await.unwrap().unwrap();
                }
            })
            .buffer_unordered(64)
            .collect::<Vec<()>>()
            .await;
        // Only the history is measured here: the dedupe marks (see the test above) go first.
        dedupe_keys(&mut connection).await;
        let full = (used_memory(&mut connection).await - start) as f64;
        let per_notification = full / (USERS * KEPT) as f64;
        let overhead = (full - body_bytes as f64) / (USERS * KEPT) as f64;
        let per_user = full / USERS as f64;

        let empty = with_history(&redis, HistoryBounds { size: 0, ttl_seconds: 86_400 }).await;
        let start = used_memory(&mut connection).await;
        for index in 0..USERS {
            let user = format!("idle-{index}");
            // Digests are told apart per user shard, not per user: each notification has its own.
            empty.publish_once(&user, &digest(USERS * PER_USER + index), 86_400, "}", now).await.unwrap().unwrap();
        }
        dedupe_keys(&mut connection).await;
        let per_idle_user = (used_memory(&mut connection).await - start) as f64 / USERS as f64;
        println!(
            "redis memory of history: {per_notification:.1} bytes per kept notification of {:.0} bytes \
             ({overhead:.1} bytes beyond the message body); {per_user:.0} bytes per user with {KEPT} kept; \
             {per_idle_user:.0} bytes per user whose history keeps only the last id (--history-size 0)",
            body_bytes as f64 / (USERS * KEPT) as f64
        );
        assert!(overhead <= 128.0, "{overhead:.1} bytes per kept notification beyond its body");
    }
}
