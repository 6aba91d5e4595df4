//! Command-line options of `herald-chaos`.

use std::path::PathBuf;

use clap::Parser;

use crate::faults::FaultKind;

/// What the run's Redis keeps across a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Persistence {
    /// `appendonly yes`: every write logged, fsynced every second and on shutdown.
    Aof,
    /// No append-only file, no snapshots: a restart comes back empty.
    None,
}

/// herald-chaos: start Redis and herald instances of its own, hold many browser tabs on them,
/// produce notifications to Kafka while injecting faults, and count what every tab lost, got twice
/// or got for someone else.
#[derive(Debug, Clone, Parser)]
#[command(name = "herald-chaos", version, about, long_about = None)]
pub(crate) struct Options {
    /// Kafka bootstrap servers; the run creates (and afterwards deletes) topics of its own there.
    #[arg(long, env = "HERALD_TEST_KAFKA", default_value = "127.0.0.1:29092")]
    pub kafka: String,

    /// The herald binary to run.
    #[arg(long, default_value = "target/debug/herald")]
    pub herald: PathBuf,

    /// The redis-server binary to run (the run starts its own, on a free port).
    #[arg(long, default_value = "redis-server")]
    pub redis_server: PathBuf,

    /// The event definitions herald was built from: one topic per notification is made from them.
    #[arg(long, default_value = "event-defs")]
    pub event_defs: PathBuf,

    /// Folder for logs and reports (report.txt, report.json, tabs.csv, herald-N.log, redis.log).
    #[arg(long)]
    pub out: PathBuf,

    /// Users; each has --tabs tabs.
    #[arg(long, default_value_t = 300)]
    pub users: usize,

    /// Tabs (WebSocket connections) per user.
    #[arg(long, default_value_t = 2)]
    pub tabs: usize,

    /// Notifications to produce, round-robin over the users.
    #[arg(long, default_value_t = 20_000)]
    pub events: u64,

    /// Notifications per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,

    /// Partitions of the counted topic.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,

    /// Faults to inject (comma-separated), always in the order kill, redis-restart, redis-pause,
    /// rebalance, poison.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "kill,redis-restart,redis-pause,rebalance,poison")]
    pub faults: Vec<FaultKind>,

    /// Seconds after the last fault's end before "after the last fault" begins.
    #[arg(long, default_value_t = 10.0)]
    pub settle: f64,

    /// Milliseconds a socket must have been open to count as connected (time for herald to
    /// subscribe it).
    #[arg(long, default_value_t = 1000)]
    pub connected_margin_ms: u64,

    /// Seconds within which consumption must resume after each fault's end.
    #[arg(long, default_value_t = 30.0)]
    pub resume_limit: f64,

    /// Most seconds to wait after producing for notifications still on their way.
    #[arg(long, default_value_t = 30.0)]
    pub drain: f64,

    /// Also assert 0 lost after resume on every tab, in every window, every resume answered by a
    /// `resumed` frame, and `recovered:false` only where the history was lost (with
    /// `--redis-persistence none`, after the Redis restart; its losses are then declared, not
    /// silent, and allowed).
    #[arg(long)]
    pub assert_no_loss: bool,

    /// Also assert that no tab got a notification id it had already processed (and, when Redis
    /// keeps its data, that no event was notified twice under another id).
    #[arg(long)]
    pub assert_no_duplicates: bool,

    /// What the run's Redis keeps across the redis-restart fault: `aof` (append-only file, fsync
    /// every second and on shutdown: history and dedupe marks survive) or `none` (it comes back
    /// empty, so history is lost and resumes after it must say `recovered:false`).
    #[arg(long, value_enum, default_value = "aof")]
    pub redis_persistence: Persistence,

    /// HS256 secret herald and the tabs share.
    #[arg(long, default_value = "herald-chaos-secret")]
    pub jwt_secret: String,

    /// `aud` herald requires and the tokens carry.
    #[arg(long, default_value = "huleedu-platform")]
    pub jwt_audience: String,

    /// `iss` herald requires and the tokens carry.
    #[arg(long, default_value = "huleedu-identity-service")]
    pub jwt_issuer: String,

    /// `RUST_LOG` of the herald instances.
    #[arg(long, default_value = "warn")]
    pub herald_log: String,

    /// Extra herald flag (repeatable), e.g. `--herald-arg=--max-event-age=300`.
    #[arg(long = "herald-arg", allow_hyphen_values = true)]
    pub herald_args: Vec<String>,

    /// Leave the run's topics on the broker (to read the dead-letter topic afterwards).
    #[arg(long)]
    pub keep_topics: bool,
}

impl Options {
    /// Checks what clap cannot.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.users == 0 || self.tabs == 0 {
            return Err("--users and --tabs must be at least 1".into());
        }
        if self.partitions < 3 {
            return Err("--partitions must be at least 3 (one per poison record)".into());
        }
        if self.events < self.users as u64 {
            return Err(format!("--events ({}) must be at least --users ({})", self.events, self.users));
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(format!("--rate must be a positive number of events per second, got {}", self.rate));
        }
        for (name, value) in [("--settle", self.settle), ("--resume-limit", self.resume_limit), ("--drain", self.drain)]
        {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!("{name} must be a non-negative number of seconds, got {value}"));
            }
        }
        Ok(())
    }

    /// How long producing takes.
    pub(crate) fn producing_seconds(&self) -> f64 {
        self.events as f64 / self.rate
    }
}
