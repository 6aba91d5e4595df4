//! The instance's subscriber: follows the hub's subscription changes, feeds every message into
//! the hub, and proves it is alive.
//!
//! It also listens to the control channel (see `presence`) for orders to every instance.
//!
//! A connection can die without a reset (a failover, a NAT or load balancer dropping an idle
//! flow): reads then wait forever. So the subscriber PINGs Redis every `--redis-ping-interval-ms`
//! on the subscribed connection itself (on a cluster, on every primary's connection); a PING
//! unanswered within the interval, or any error, ends the session: herald reconnects with backoff,
//! subscribes to every wanted channel again, and counts it in
//! `herald_redis_subscriber_reconnects_total`. It reports the readiness check `subscriber`: passing
//! whenever Redis answers, failing with the reason when the session ends, and failing on its own
//! when Redis has not been heard from for three intervals (so a wedged loop shows too).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use futures_util::StreamExt;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tokio::time::error::Elapsed;
use tokio_util::sync::CancellationToken;

use super::RedisTarget;
use super::keys::Keys;
use super::presence::Presence;
use crate::backend::{Unavailable, origin_unix_ms};
use crate::health::Health;
use crate::hub::{Hub, Outbound, SubscriptionChange};
use crate::metrics::Metrics;

/// The readiness check the subscriber owns.
const CHECK: &str = "subscriber";

enum Source {
    Single(redis::Client),
    /// The cluster client delivers every node's push messages (RESP3) to `pushes`.
    Cluster {
        client: Box<redis::cluster::ClusterClient>,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
    },
}

/// Everything the subscriber loop needs; run it with [`subscribe`].
pub(crate) struct Subscriber {
    source: Source,
    state: State,
}

/// What every session shares.
struct State {
    keys: Keys,
    hub: Arc<Hub>,
    changes: mpsc::UnboundedReceiver<SubscriptionChange>,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
    ping_interval: Duration,
}

/// Why a session ended.
enum Ended {
    Shutdown,
    /// Connecting or subscribing failed.
    Unreachable(String),
    /// A connected session lost Redis.
    Lost(String),
}

impl Subscriber {
    pub(super) fn new(
        target: &RedisTarget,
        keys: Keys,
        hub: Arc<Hub>,
        changes: mpsc::UnboundedReceiver<SubscriptionChange>,
        metrics: Metrics,
        health: Health,
        shutdown: CancellationToken,
    ) -> Result<Self, Unavailable> {
        let ping_interval = target.ping_interval.max(Duration::from_millis(50));
        let source = if target.cluster {
            let (sender, pushes) = mpsc::unbounded_channel();
            let client = redis::cluster::ClusterClientBuilder::new(target.urls.clone())
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(sender)
                .connection_timeout(ping_interval.max(Duration::from_secs(1)))
                .response_timeout(ping_interval.max(Duration::from_secs(1)))
                .build()
                .map_err(Unavailable::from)?;
            Source::Cluster { client: Box::new(client), pushes }
        } else {
            let url = target.urls.first().ok_or(Unavailable::Backend("no --redis-url given"))?;
            Source::Single(redis::Client::open(url.as_str()).map_err(Unavailable::from)?)
        };
        health.declare(CHECK, "not yet subscribed to Redis", Some(ping_interval * 3));
        Ok(Subscriber { source, state: State { keys, hub, changes, metrics, health, shutdown, ping_interval } })
    }
}

impl State {
    /// How long connecting and resubscribing may take before the attempt counts as failed.
    fn bound(&self) -> Duration {
        self.ping_interval * 3
    }

    /// Delivers one published message to this instance's sockets (or carries out an order of the
    /// control channel, see `presence`).
    fn deliver(&self, channel: &str, payload: &[u8]) {
        self.health.pass(CHECK);
        if channel == self.keys.control_channel() {
            Presence::control(&self.hub, payload);
            return;
        }
        let Some(user) = self.keys.channel_user(channel) else { return };
        let Ok(text) = std::str::from_utf8(payload) else {
            tracing::warn!(channel, "ignoring a message that is not UTF-8 text");
            return;
        };
        let outbound = Outbound { origin_unix_ms: origin_unix_ms(text.as_bytes()), message: Utf8Bytes::from(text) };
        self.hub.deliver(user, &outbound);
    }

    /// Changes queued while disconnected are already reflected in the hub: drops them and returns
    /// every user the hub holds now, to subscribe to.
    fn wanted(&mut self) -> Vec<(String, u64)> {
        while self.changes.try_recv().is_ok() {}
        self.hub.users()
    }

    /// A session has subscribed to every wanted channel: releases the connections waiting for them.
    fn connected(&self, users: &[(String, u64)], message: &'static str) {
        for (user, generation) in users {
            self.hub.confirm(user, Some(*generation));
        }
        self.health.pass(CHECK);
        tracing::info!(channels = users.len(), "{message}");
    }

    /// The outcome of one bounded PING: alive, or the end of the session.
    fn pinged<T>(&self, result: Result<redis::RedisResult<T>, Elapsed>) -> Result<(), Ended> {
        match result {
            Ok(Ok(_)) => {
                self.health.pass(CHECK);
                Ok(())
            }
            Ok(Err(error)) => Err(Ended::Lost(format!("PING failed: {error}"))),
            Err(_) => Err(Ended::Lost(format!("PING unanswered for {} ms", self.ping_interval.as_millis()))),
        }
    }

    /// The outcome of one bounded (un)subscribe: a confirmed subscription releases the connections
    /// waiting for it; a failure ends the session.
    fn changed(
        &self,
        change: &SubscriptionChange,
        result: Result<redis::RedisResult<()>, Elapsed>,
    ) -> Result<(), Ended> {
        match result {
            Ok(Ok(())) => {
                if let SubscriptionChange::Subscribe { user, generation } = change {
                    self.hub.confirm(user, Some(*generation));
                }
                Ok(())
            }
            Ok(Err(error)) => Err(Ended::Lost(format!("(un)subscribe failed: {error}"))),
            Err(_) => Err(Ended::Lost(format!("(un)subscribe unanswered for {} ms", self.bound().as_millis()))),
        }
    }

    async fn single_session(&mut self, client: &redis::Client) -> Ended {
        let bound = self.bound();
        let shutdown = self.shutdown.clone();
        let connected = tokio::select! {
            () = shutdown.cancelled() => return Ended::Shutdown,
            connected = tokio::time::timeout(bound, async {
                let (mut sink, stream) = client.get_async_pubsub().await?.split();
                let users = self.wanted();
                let mut channels: Vec<String> = users.iter().map(|(user, _)| self.keys.channel(user)).collect();
                channels.push(self.keys.control_channel().to_owned());
                sink.subscribe(&channels).await?;
                Ok::<_, redis::RedisError>((sink, stream, users))
            }) => connected,
        };
        let (mut sink, mut stream, users) = match connected {
            Ok(Ok(connected)) => connected,
            Ok(Err(error)) => return Ended::Unreachable(format!("cannot connect and subscribe: {error}")),
            Err(_) => {
                return Ended::Unreachable(format!("connecting and subscribing took over {} ms", bound.as_millis()));
            }
        };
        self.connected(&users, "redis subscriber connected");
        let mut ping = tokio::time::interval(self.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return Ended::Shutdown,
                _ = ping.tick() => {
                    let pinged = tokio::time::timeout(self.ping_interval, sink.ping::<Value>()).await;
                    if let Err(ended) = self.pinged(pinged) {
                        return ended;
                    }
                }
                change = self.changes.recv() => {
                    let Some(change) = change else { return Ended::Shutdown };
                    let channel = self.keys.channel(change.user());
                    let result = match &change {
                        SubscriptionChange::Subscribe { .. } => tokio::time::timeout(bound, sink.subscribe(channel)).await,
                        SubscriptionChange::Unsubscribe(_) => tokio::time::timeout(bound, sink.unsubscribe(channel)).await,
                    };
                    if let Err(ended) = self.changed(&change, result) {
                        return ended;
                    }
                }
                message = stream.next() => {
                    let Some(message) = message else { return Ended::Lost("the connection closed".into()) };
                    self.deliver(message.get_channel_name(), message.get_payload_bytes());
                }
            }
        }
    }

    async fn cluster_session(
        &mut self,
        client: &redis::cluster::ClusterClient,
        pushes: &mut mpsc::UnboundedReceiver<PushInfo>,
    ) -> Ended {
        let bound = self.bound();
        let shutdown = self.shutdown.clone();
        let connected = tokio::select! {
            () = shutdown.cancelled() => return Ended::Shutdown,
            connected = tokio::time::timeout(bound, async {
                let mut connection = client.get_async_connection().await?;
                let users = self.wanted();
                connection.ssubscribe(self.keys.control_channel()).await?;
                // Channels of different users live in different slots: one SSUBSCRIBE each.
                for (user, _) in &users {
                    connection.ssubscribe(self.keys.channel(user)).await?;
                }
                Ok::<_, redis::RedisError>((connection, users))
            }) => connected,
        };
        let (mut connection, users) = match connected {
            Ok(Ok(connected)) => connected,
            Ok(Err(error)) => return Ended::Unreachable(format!("cannot connect and subscribe: {error}")),
            Err(_) => {
                return Ended::Unreachable(format!("connecting and subscribing took over {} ms", bound.as_millis()));
            }
        };
        self.connected(&users, "redis cluster subscriber connected");
        let mut ping = tokio::time::interval(self.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let every_primary =
            RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, Some(ResponsePolicy::AllSucceeded)));
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return Ended::Shutdown,
                _ = ping.tick() => {
                    let pinged = connection.route_command(redis::cmd("PING"), every_primary.clone());
                    if let Err(ended) = self.pinged(tokio::time::timeout(self.ping_interval, pinged).await) {
                        return ended;
                    }
                }
                change = self.changes.recv() => {
                    let Some(change) = change else { return Ended::Shutdown };
                    let channel = self.keys.channel(change.user());
                    let result = match &change {
                        SubscriptionChange::Subscribe { .. } => tokio::time::timeout(bound, connection.ssubscribe(channel)).await,
                        SubscriptionChange::Unsubscribe(_) => tokio::time::timeout(bound, connection.sunsubscribe(channel)).await,
                    };
                    if let Err(ended) = self.changed(&change, result) {
                        return ended;
                    }
                }
                push = pushes.recv() => {
                    let Some(push) = push else { return Ended::Lost("the push channel closed".into()) };
                    if push.kind == PushKind::SMessage
                        && let [Value::BulkString(channel), Value::BulkString(payload)] = push.data.as_slice()
                        && let Ok(channel) = std::str::from_utf8(channel)
                    {
                        self.deliver(channel, payload);
                    }
                }
            }
        }
    }
}

/// Runs the subscriber until shutdown: sessions, and between them backoff. Returns only when
/// `shutdown` is cancelled (or the hub's change channel closes), so a supervisor may treat any
/// other return as a failure.
pub(crate) async fn subscribe(subscriber: Subscriber) {
    let Subscriber { mut source, state: mut subscriber } = subscriber;
    let mut backoff = Duration::from_millis(100);
    loop {
        let ended = match &mut source {
            Source::Single(client) => subscriber.single_session(client).await,
            Source::Cluster { client, pushes } => subscriber.cluster_session(client, pushes).await,
        };
        let reason = match ended {
            Ended::Shutdown => return,
            Ended::Unreachable(reason) => reason,
            Ended::Lost(reason) => {
                // The session was healthy until now: the first retry comes quickly.
                backoff = Duration::from_millis(100);
                reason
            }
        };
        subscriber.hub.unconfirm_all();
        subscriber.health.fail(CHECK, format!("redis subscriber: {reason}; reconnecting"));
        subscriber.metrics.subscriber_reconnects.inc();
        tracing::warn!(%reason, retry_in_ms = backoff.as_millis() as u64, "redis subscriber lost; reconnecting");
        if !crate::pause(&subscriber.shutdown, &mut backoff).await {
            return;
        }
    }
}
