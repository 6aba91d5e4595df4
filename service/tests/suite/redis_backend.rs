//! The Redis backend: a subscriber connection that goes silent is noticed and replaced, and the
//! key end-to-end flows work on a 3-master Redis Cluster (sharded pub/sub, hash-tagged scripts).

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::harness::{
    Herald, Infra, Producer, Scope, class_created, cluster_infra, envelope, infra, wait_metric, wait_subscribers,
    wait_until,
};

/// A TCP proxy in front of Redis that can go silent: while black-holed, no byte moves on any
/// connection, open or new, and no end sees a reset or a close, as when a NAT or a load balancer
/// silently drops flows or Redis stops answering. A connection that saw the silence stays dead;
/// after [`BlackHoleProxy::restore`], new connections pass again.
struct BlackHoleProxy {
    port: u16,
    silent: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

impl BlackHoleProxy {
    async fn start(upstream: &str) -> BlackHoleProxy {
        let upstream = upstream.trim_start_matches("redis://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (silent, _) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let sender = silent.clone();
        tasks.spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let Ok(server) = TcpStream::connect(&upstream).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                connections.spawn(pump(client_read, server_write, sender.subscribe()));
                connections.spawn(pump(server_read, client_write, sender.subscribe()));
            }
        });
        BlackHoleProxy { port, silent, tasks }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// From now on no byte moves, on any connection.
    fn black_hole(&self) {
        self.silent.send_replace(true);
    }

    /// Connections opened from now on pass again.
    fn restore(&self) {
        self.silent.send_replace(false);
    }
}

impl Drop for BlackHoleProxy {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Copies one direction of a proxied connection until the proxy goes silent: then it holds both
/// halves open and never moves a byte again.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut silent: watch::Receiver<bool>,
) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        if *silent.borrow_and_update() {
            let _held = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        tokio::select! {
            read = from.read(&mut buffer) => {
                let Ok(count) = read else { return };
                if count == 0 {
                    return;
                }
                if *silent.borrow() {
                    continue;
                }
                if to.write_all(&buffer[..count]).await.is_err() {
                    return;
                }
            }
            changed = silent.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// `/readyz`'s status and body.
async fn readiness(herald: &Herald) -> Option<(u16, Value)> {
    let response = reqwest::get(herald.url("/readyz")).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_connection_that_goes_silent_is_reported_and_replaced() {
    let infra = infra();
    let proxy = BlackHoleProxy::start(&infra.redis).await;
    let scope = Scope::new("silent-subscriber");
    let proxied = Infra { redis: proxy.url(), ..super::harness::infra() };
    let herald = Herald::production(&scope, &proxied, &["--redis-ping-interval-ms", "300"]).await;
    let teacher = scope.user("teacher");
    let mut socket = herald.connect(&teacher).await;
    wait_subscribers(&infra.redis, &teacher, 1).await;
    let producer = Producer::new(&infra);
    let topic = scope.topic("class_created");
    let before = class_created(&teacher, &format!("before-{}", scope.id));
    producer.send_keyed(&topic, &teacher, &before).await;
    assert_eq!(socket.notification().await["event_id"], before["event_id"]);

    // Redis goes silent without a reset: readiness names the subscriber ...
    proxy.black_hole();
    wait_until("/readyz is 503 and names the subscriber", || async {
        readiness(&herald).await.is_some_and(|(status, body)| {
            status == 503 && body["checks"]["subscriber"].as_str().is_some_and(|reason| reason != "ok")
        })
    })
    .await;
    assert!(herald.metric("herald_redis_subscriber_reconnects_total").await >= 1.0, "the loss is counted");
    // ... when Redis answers again, herald subscribes again on a new connection and is ready ...
    proxy.restore();
    wait_until("/readyz is 200 again", || async {
        readiness(&herald).await.is_some_and(|(status, body)| status == 200 && body["checks"]["subscriber"] == "ok")
    })
    .await;
    // ... and the socket that stayed open gets what is published now.
    let after = class_created(&teacher, &format!("after-{}", scope.id));
    producer.send_keyed(&topic, &teacher, &after).await;
    let received = socket.notification().await;
    assert_eq!(received["event_id"], after["event_id"], "{}", herald.log_tail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_cluster_every_one_of_the_13_events_reaches_the_right_teacher() {
    super::kafka_flow::every_event_reaches_the_right_teacher(cluster_infra()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_cluster_a_parked_notification_is_delivered_once_the_owner_is_learnt() {
    super::kafka_flow::parked_then_released(cluster_infra()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_cluster_a_redelivered_record_and_a_resent_payload_give_one_notification() {
    super::kafka_flow::one_notification_per_payload(cluster_infra()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_cluster_two_instances_deliver_to_every_connection_exactly_once() {
    super::resilience::two_instances_deliver_to_every_connection(cluster_infra()).await;
}

/// Parked notifications beyond the per-batch bound expire at once, the rest when their TTL passes
/// (found through the sharded index by the sweep); none is released to an owner learnt later.
async fn parked_notifications_expire_and_are_counted(infra: Infra) {
    let scope = Scope::new("parked-expiry");
    let herald =
        Herald::production(&scope, &infra, &["--parked-ttl-seconds", "1", "--parked-max-per-batch", "2"]).await;
    let teacher = scope.user("teacher");
    let batch = scope.batch("b");
    let mut socket = herald.connect(&teacher).await;
    wait_subscribers(&infra.redis, &teacher, 1).await;
    let producer = Producer::new(&infra);
    // Three different payloads (each its own correlation id), so none is a duplicate of another.
    for _ in 0..3 {
        let outcome = envelope("batch_phase_outcome", "basic", |value| {
            value["data"]["batch_id"] = Value::String(batch.clone());
            value["data"]["correlation_id"] = Value::String(super::harness::fresh_uuid());
        });
        producer.send_envelope(&scope, "batch_phase_outcome", &outcome).await;
    }
    wait_metric(&herald, "herald_notifications_parked_total", 3.0).await;
    wait_metric(&herald, "herald_notifications_parked_expired_total{reason=\"overflow\"}", 1.0).await;
    wait_metric(&herald, "herald_notifications_parked_expired_total{reason=\"ttl\"}", 2.0).await;

    // The owner becomes known: only its own notification arrives.
    let owner = envelope("batch_file_added", "minimal", |value| {
        value["data"]["user_id"] = Value::String(teacher.clone());
        value["data"]["batch_id"] = Value::String(batch.clone());
    });
    producer.send_envelope(&scope, "batch_file_added", &owner).await;
    let received = socket.notification().await;
    assert_eq!(received["event_id"], owner["event_id"], "an expired notification was released: {received}");
    wait_metric(&herald, "herald_notifications_published_total", 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_notifications_expire_by_bound_and_by_ttl() {
    parked_notifications_expire_and_are_counted(infra()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_cluster_parked_notifications_expire_by_bound_and_by_ttl() {
    parked_notifications_expire_and_are_counted(cluster_infra()).await;
}
