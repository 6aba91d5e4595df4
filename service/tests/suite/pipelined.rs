//! The pipelined consumer: many users' records in several partitions, handled many at a time with
//! a small in-flight window (so partitions are paused and resumed), all arrive exactly once and
//! each user's in the order it was produced.

use serde_json::Value;

use super::harness::{ChannelObserver, Herald, Producer, Scope, class_created, create_topics, infra, wait_until};

/// Partitions of every test topic (see `harness::create_topics`).
const PARTITIONS: usize = 3;
const USERS: usize = 24;
const PER_USER: usize = 25;

/// A notification id `"<ms>-<seq>"` as the pair it is ordered by.
fn id_pair(notification: &Value) -> (u64, u64) {
    let id = notification["id"].as_str().unwrap_or_else(|| panic!("no id: {notification}"));
    let (ms, seq) = id.split_once('-').unwrap_or_else(|| panic!("id {id:?}"));
    (ms.parse().unwrap(), seq.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_users_records_across_partitions_arrive_once_each_and_in_order_per_user() {
    let infra = infra();
    let scope = Scope::new("pipelined");
    let topic = scope.topic("class_created");
    create_topics(&infra, &scope.topics()).await;
    let users: Vec<String> = (0..USERS).map(|index| scope.user(&format!("teacher-{index}"))).collect();
    let class_id = |user: usize, round: usize| format!("class-{user}-{round}-{}", scope.id);

    // Every record is produced before herald starts (it starts from the earliest offsets), so the
    // windows fill at once. Each user's records go to one partition, interleaved with the other
    // users' records of that partition.
    let producer = Producer::new(&infra);
    for round in 0..PER_USER {
        for (index, user) in users.iter().enumerate() {
            let bytes = serde_json::to_vec(&class_created(user, &class_id(index, round))).unwrap();
            let partition = i32::try_from(index % PARTITIONS).unwrap();
            producer.send_to(&topic, Some(partition), Some(user), Some(&bytes)).await;
        }
    }
    let mut observers = Vec::new();
    for user in &users {
        observers.push(ChannelObserver::subscribe(&infra.redis, &format!("ws:{user}")).await);
    }
    let herald = Herald::production(&scope, &infra, &["--consumer-in-flight", "4"]).await;

    wait_until("every user received all its notifications", || async {
        observers.iter().all(|observer| observer.messages().len() >= PER_USER)
    })
    .await;
    // One more record per user, in the same partition after everything else: when it has
    // arrived, anything published twice before it has arrived too.
    for (index, user) in users.iter().enumerate() {
        let bytes = serde_json::to_vec(&class_created(user, &class_id(index, PER_USER))).unwrap();
        let partition = i32::try_from(index % PARTITIONS).unwrap();
        producer.send_to(&topic, Some(partition), Some(user), Some(&bytes)).await;
    }
    wait_until("every user received its last notification", || async {
        observers.iter().enumerate().all(|(index, observer)| {
            observer.messages().iter().any(|message| message["data"]["class_id"] == class_id(index, PER_USER).as_str())
        })
    })
    .await;

    for (index, observer) in observers.iter().enumerate() {
        let messages = observer.messages();
        let received: Vec<&str> =
            messages.iter().map(|message| message["data"]["class_id"].as_str().unwrap()).collect();
        let expected: Vec<String> = (0..=PER_USER).map(|round| class_id(index, round)).collect();
        assert_eq!(received, expected, "user {index}: each record once, in the order produced\n{}", herald.log_tail());
        let ids: Vec<(u64, u64)> = messages.iter().map(id_pair).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "user {index}: ids increase: {ids:?}");
    }
    assert_eq!(herald.metric("herald_notifications_published_total").await, (USERS * (PER_USER + 1)) as f64);
}
