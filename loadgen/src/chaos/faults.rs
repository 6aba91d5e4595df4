//! The faults a run injects, in order, each at a fixed fraction of the producing phase, and the
//! poison records.
//!
//! A fault has a start (the first action) and an end (the moment the system could be whole again:
//! the killed instance restarted and ready, Redis answering again, SIGCONT sent, the joining
//! instance ready, the poison records acknowledged by Kafka).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::ValueEnum;
use serde::Serialize;

use crate::balancer::Balancer;
use crate::cluster::Cluster;
use crate::kafka::{Kafka, Landed};
use crate::ledger::Ledger;
use crate::options::Persistence;

/// The instance that is SIGKILLed and restarted.
pub(crate) const KILLED_INSTANCE: usize = 1;

/// The instance that joins the consumer group to force a rebalance.
pub(crate) const JOINING_INSTANCE: usize = 2;

/// How long a supervisor takes to restart a killed instance.
const RESTART_DELAY: Duration = Duration::from_secs(2);

/// How long Redis stays stopped.
const PAUSE: Duration = Duration::from_secs(5);

/// How long a (re)started herald may take to be ready.
const READY_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum FaultKind {
    /// SIGKILL one herald instance, restart it 2 s later.
    Kill,
    /// Stop Redis (SIGTERM) and start it again on the same port: from its append-only file, or
    /// empty with `--redis-persistence none`.
    RedisRestart,
    /// SIGSTOP Redis for 5 s, then SIGCONT.
    RedisPause,
    /// Start a third herald instance in the same consumer group.
    Rebalance,
    /// Produce the three poison records.
    Poison,
}

impl FaultKind {
    /// Every fault, in the order a run injects them, with the fraction of the producing phase at
    /// which each starts. Poison comes last: with it, a herald that cannot dead-letter stops
    /// consuming, which would hide what the other faults do.
    pub(crate) const SCHEDULE: [(FaultKind, f64); 5] = [
        (FaultKind::Kill, 0.12),
        (FaultKind::RedisRestart, 0.30),
        (FaultKind::RedisPause, 0.48),
        (FaultKind::Rebalance, 0.64),
        (FaultKind::Poison, 0.78),
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::RedisRestart => "redis-restart",
            FaultKind::RedisPause => "redis-pause",
            FaultKind::Rebalance => "rebalance",
            FaultKind::Poison => "poison",
        }
    }
}

/// One injected fault, in nanoseconds of the ledger's clock.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Fault {
    pub kind: FaultKind,
    pub start_ns: u64,
    pub end_ns: u64,
    /// What was done, for people.
    pub detail: String,
}

/// A poison record, where it landed, and the dead-letter reason herald must give it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Poison {
    pub name: &'static str,
    pub description: &'static str,
    pub reason: &'static str,
    pub bytes: usize,
    pub partition: i32,
    pub offset: i64,
}

/// The three records of the issue, in the order they are produced, each to its own partition.
fn poison_records(ledger: &Ledger, user: &str) -> Vec<(&'static str, &'static str, &'static str, Vec<u8>)> {
    let now = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
    let envelope = |event_type: &str, data: serde_json::Value| {
        serde_json::to_vec(&serde_json::json!({
            "event_id": uuid::Uuid::new_v4().to_string(),
            "event_type": event_type,
            "event_timestamp": now,
            "source_service": "herald-chaos",
            "schema_version": 1,
            "correlation_id": uuid::Uuid::new_v4().to_string(),
            "data_schema_uri": null,
            "data": data,
            "metadata": null,
        }))
        .unwrap_or_else(|error| unreachable!("a JSON value always serializes: {error}"))
    };
    let class = |name: &str, course_codes: serde_json::Value| {
        serde_json::json!({
            "class_id": ledger.poison_class_id(name),
            "class_designation": "Poison",
            "course_codes": course_codes,
            "user_id": user,
            "timestamp": now,
        })
    };
    // Not JSON from the first byte (and not UTF-8 either), 1,010,000 bytes: over librdkafka's
    // default `message.max.bytes` of 1,000,000, under herald's `--max-record-bytes` of 1 MiB.
    let mut big = vec![0xff, 0xfe];
    big.extend_from_slice(b"herald-chaos poison: not JSON ");
    big.resize(1_010_000, b'x');
    vec![
        (
            "long-event-type",
            "envelope whose event_type is \"é\" x 600",
            "unknown_event_type",
            envelope(&"é".repeat(600), class("long-event-type", serde_json::json!(["ENG5"]))),
        ),
        ("big-not-json", "1,010,000 bytes, not JSON", "not_json", big),
        (
            "schema",
            "class_created whose course_codes is a string",
            "invalid_payload",
            envelope("huleedu.class.created.v1", class("schema", serde_json::json!("ENG5"))),
        ),
    ]
}

/// What the fault driver works with.
pub(crate) struct Injector {
    pub cluster: Cluster,
    pub balancer: Arc<Balancer>,
    pub ledger: Arc<Ledger>,
    pub kafka: Arc<Kafka>,
    pub topic: String,
    pub partitions: i32,
    /// A user the poison records name.
    pub user: String,
}

impl Injector {
    /// Injects `kind` now.
    pub(crate) async fn inject(&mut self, kind: FaultKind, poisons: &mut Vec<Poison>) -> Result<Fault, String> {
        let start_ns = self.ledger.now();
        let detail = match kind {
            FaultKind::Kill => {
                let pid = self.cluster.herald_pid(KILLED_INSTANCE).unwrap_or_default();
                tokio::task::block_in_place(|| self.cluster.kill_herald(KILLED_INSTANCE))?;
                tokio::time::sleep(RESTART_DELAY).await;
                self.cluster.start_herald(KILLED_INSTANCE, "restarted after SIGKILL")?;
                self.cluster.wait_ready(KILLED_INSTANCE, READY_LIMIT).await?;
                format!("SIGKILL herald-{KILLED_INSTANCE} (pid {pid}), restarted {} s later", RESTART_DELAY.as_secs())
            }
            FaultKind::RedisRestart => {
                tokio::task::block_in_place(|| self.cluster.restart_redis())?;
                match self.cluster.redis_persistence() {
                    Persistence::Aof => {
                        "Redis stopped (SIGTERM) and started again from its append-only file".to_owned()
                    }
                    Persistence::None => "Redis stopped (SIGTERM) and started again, empty (no persistence)".to_owned(),
                }
            }
            FaultKind::RedisPause => {
                self.cluster.pause_redis()?;
                tokio::time::sleep(PAUSE).await;
                self.cluster.resume_redis()?;
                format!("SIGSTOP Redis, SIGCONT {} s later", PAUSE.as_secs())
            }
            FaultKind::Rebalance => {
                self.cluster.start_herald(JOINING_INSTANCE, "joining the consumer group")?;
                self.cluster.wait_ready(JOINING_INSTANCE, READY_LIMIT).await?;
                self.balancer.enable(JOINING_INSTANCE);
                format!("herald-{JOINING_INSTANCE} joined the consumer group")
            }
            FaultKind::Poison => {
                for (index, (name, description, reason, value)) in
                    poison_records(&self.ledger, &self.user).into_iter().enumerate()
                {
                    let partition = index as i32 % self.partitions;
                    let Landed { partition, offset } =
                        self.kafka.send(&self.topic, Some(partition), &format!("poison-{name}"), &value).await?;
                    poisons.push(Poison { name, description, reason, bytes: value.len(), partition, offset });
                }
                format!("{} poison records produced to {}", poisons.len(), self.topic)
            }
        };
        Ok(Fault { kind, start_ns, end_ns: self.ledger.now(), detail })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poison_records_are_what_the_issue_names() {
        let ledger = Ledger::new("p", 1, 1, 1);
        let records = poison_records(&ledger, "chaos-user-0");
        assert_eq!(records.len(), 3);
        let long: serde_json::Value = serde_json::from_slice(&records[0].3).unwrap();
        let event_type = long["event_type"].as_str().unwrap();
        assert_eq!(event_type.chars().count(), 600);
        assert!(event_type.chars().all(|character| character == 'é'));
        assert_eq!(records[1].3.len(), 1_010_000);
        assert!(serde_json::from_slice::<serde_json::Value>(&records[1].3).is_err());
        let schema: serde_json::Value = serde_json::from_slice(&records[2].3).unwrap();
        assert_eq!(schema["data"]["course_codes"], "ENG5");
        assert_eq!(schema["data"]["user_id"], "chaos-user-0");
    }

    #[test]
    fn faults_are_scheduled_in_order() {
        assert!(FaultKind::SCHEDULE.windows(2).all(|pair| pair[0].1 < pair[1].1));
        assert_eq!(FaultKind::SCHEDULE.last().map(|(kind, _)| *kind), Some(FaultKind::Poison));
    }
}
