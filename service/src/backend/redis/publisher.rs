//! Publishing many notifications in one script call.
//!
//! Every notification the backend publishes is handed to one task, which sends them to Redis with
//! `PUBLISH_BATCH`: at most [`CALLS_IN_FLIGHT`] calls at a time, each carrying everything that
//! queued while the earlier calls were out (at most [`MAX_PER_CALL`]). At a low rate a call
//! carries one notification and adds no wait; under load, calls grow instead of queueing, and
//! Redis runs one script per call rather than per notification (running a script costs Redis
//! more than the commands inside it).
//!
//! Each notification stays atomic (its dedupe mark, history entry and publish are one script
//! step), and notifications are handled in the order they were handed over. A call that fails
//! fails every notification in it; the caller retries each, and those the call had already
//! published are found as duplicates then, never published twice.
//!
//! On a cluster, one call carries only notifications whose keys share a slot
//! (`Keys::script_group`); the groups of one round are sent at once.

use std::collections::HashMap;
use std::sync::Arc;

use redis::Script;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{Connection, scripts};
use crate::backend::{DedupeDigest, HistoryBounds, Unavailable, now_unix_ms};

/// How many calls may be out at once: enough to keep the connection busy while a reply is on its
/// way, few enough that notifications queue into the next call under load.
const CALLS_IN_FLIGHT: usize = 2;

/// The most notifications one call carries: Redis runs nothing else while a script runs, so a call
/// stays within a few milliseconds.
const MAX_PER_CALL: usize = 128;

/// One notification to publish to one user.
pub(super) struct Publication {
    /// Which call it may share (see `Keys::script_group`).
    pub group: u64,
    /// The user's dedupe hashes of the buckets covering the TTL, the current bucket's last, then
    /// the user's history stream.
    pub keys: Vec<String>,
    pub digest: DedupeDigest,
    /// When the current bucket's dedupe hash expires (Unix s).
    pub bucket_expires_at: u64,
    pub channel: String,
    /// The message without its opening `{"id":"<id>",`.
    pub body: axum::extract::ws::Utf8Bytes,
    /// The record's timestamp: the lowest `ms` its id may have.
    pub origin_unix_ms: u64,
}

/// The id the notification was published with, or `None` for a duplicate.
type Published = Result<Option<String>, Unavailable>;

struct Request {
    publication: Publication,
    reply: oneshot::Sender<Published>,
}

/// The handle the backend publishes through; the task behind it ends when it is dropped.
pub(super) struct Publisher {
    queue: mpsc::UnboundedSender<Request>,
}

/// What every call of one backend sends besides the notifications.
#[derive(Clone, Copy)]
struct Settings {
    /// `SPUBLISH` on a cluster, `PUBLISH` on one node.
    command: &'static str,
    history: HistoryBounds,
}

impl Publisher {
    /// Starts the task that sends what is published through `connection`.
    pub(super) fn start(connection: Arc<Connection>, cluster: bool, history: HistoryBounds) -> Self {
        let (queue, requests) = mpsc::unbounded_channel();
        let settings = Settings { command: if cluster { "SPUBLISH" } else { "PUBLISH" }, history };
        tokio::spawn(run(connection, settings, requests));
        Publisher { queue }
    }

    /// Publishes `publication` with the next call; returns its id, or `None` for a duplicate.
    pub(super) async fn publish(&self, publication: Publication) -> Published {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Request { publication, reply })
            .map_err(|_| Unavailable::Backend("the Redis publisher has stopped"))?;
        answer.await.map_err(|_| Unavailable::Backend("the Redis publisher stopped before answering"))?
    }
}

async fn run(connection: Arc<Connection>, settings: Settings, mut requests: mpsc::UnboundedReceiver<Request>) {
    let script = Arc::new(Script::new(scripts::PUBLISH_BATCH));
    let calls = Arc::new(Semaphore::new(CALLS_IN_FLIGHT));
    while let Some(first) = requests.recv().await {
        // The semaphore is never closed. While every call is out, requests queue for the next.
        let Ok(permit) = Arc::clone(&calls).acquire_owned().await else { return };
        let mut round = vec![first];
        while round.len() < MAX_PER_CALL
            && let Ok(request) = requests.try_recv()
        {
            round.push(request);
        }
        let (connection, script) = (Arc::clone(&connection), Arc::clone(&script));
        tokio::spawn(async move {
            let calls = groups(round).into_iter().map(|group| call(&connection, &script, settings, group));
            futures_util::future::join_all(calls).await;
            drop(permit);
        });
    }
}

/// The requests of one round, split by slot group, each group in the order handed over.
fn groups(round: Vec<Request>) -> Vec<Vec<Request>> {
    let mut order: Vec<u64> = Vec::new();
    let mut by_group: HashMap<u64, Vec<Request>> = HashMap::new();
    for request in round {
        let group = request.publication.group;
        by_group
            .entry(group)
            .or_insert_with(|| {
                order.push(group);
                Vec::new()
            })
            .push(request);
    }
    order.into_iter().filter_map(|group| by_group.remove(&group)).collect()
}

/// One `PUBLISH_BATCH` call for `requests` (all of one slot group); answers each.
async fn call(connection: &Connection, script: &Script, settings: Settings, requests: Vec<Request>) {
    let publications = || requests.iter().map(|request| &request.publication);
    let mut command = super::evalsha(script, publications().map(|publication| publication.keys.len()).sum());
    for publication in publications() {
        for key in &publication.keys {
            command.arg(key);
        }
    }
    command
        .arg(settings.command)
        .arg(settings.history.size)
        .arg(settings.history.ttl_seconds.max(1))
        .arg(settings.history.min_ms(now_unix_ms()));
    for publication in publications() {
        command
            .arg(publication.keys.len())
            .arg(&publication.digest[..])
            .arg(publication.bucket_expires_at)
            .arg(&publication.channel)
            .arg(publication.body.as_str())
            .arg(publication.origin_unix_ms);
    }
    let answered: Result<Vec<Option<String>>, Unavailable> = connection.eval(script, &command).await;
    match answered {
        Ok(ids) if ids.len() == requests.len() => {
            for (request, id) in requests.into_iter().zip(ids) {
                let _ = request.reply.send(Ok(id));
            }
        }
        Ok(ids) => {
            tracing::warn!(
                answers = ids.len(),
                notifications = requests.len(),
                "redis answered a publishing call with the wrong number of ids"
            );
            for request in requests {
                let _ = request
                    .reply
                    .send(Err(Unavailable::Backend("redis answered a publishing call with the wrong number of ids")));
            }
        }
        Err(error) => {
            for request in requests {
                let _ = request.reply.send(Err(error.clone()));
            }
        }
    }
}
