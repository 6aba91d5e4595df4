//! Configuration: command-line flags, each with an environment variable (`HERALD_*`), and
//! optionally a TOML file (`--config FILE` or `HERALD_CONFIG`) of `flag-name = value` pairs.
//!
//! Precedence: flags on the command line, then the file, then the environment, then defaults.
//!
//! With neither `--kafka-brokers` nor `--redis-url`, herald runs embedded: in-process fan-out and
//! events accepted over HTTP. With both, it runs in production mode. `herald --help` documents every
//! setting.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory as _, Parser};
use secrecy::{ExposeSecret as _, SecretString};

/// herald: real-time notifications for HuleEdu teachers, from Kafka events to WebSockets.
#[derive(Debug, Clone, Parser)]
#[command(name = "herald", version, about, long_about = None, args_override_self = true)]
pub struct Config {
    /// A TOML file of `flag-name = value` pairs, one per flag without its `--`: strings quoted
    /// (`kafka-brokers = "kafka:9092"`), numbers and booleans bare (`send-queue = 512`,
    /// `http-ingest = true`), repeatable flags as arrays (`topic = ["a=b", "c=d"]`); `#` starts a
    /// comment outside strings. Flags on the command line win over the file, the file over the
    /// environment.
    #[arg(long, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to serve WebSockets (/ws), health (/healthz, /readyz), metrics and event ingest on
    /// [default: 127.0.0.1:8080 in embedded mode, 0.0.0.0:8080 in production mode].
    #[arg(long, env = "HERALD_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Kafka bootstrap servers (host:port,...). Production mode needs this and --redis-url.
    #[arg(long, env = "HERALD_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// Kafka consumer group; every instance of one deployment uses the same group.
    #[arg(long, env = "HERALD_KAFKA_GROUP", default_value = "herald")]
    pub kafka_group: String,

    /// Consume an event from this topic instead of its default topics: NOTIFICATION=TOPIC (e.g. batch_essays_ready=huleedu.els.batch.essays.ready.v1). Repeatable; in the environment, comma-separated.
    #[arg(long = "topic", env = "HERALD_TOPICS", value_delimiter = ',', value_parser = parse_pair)]
    pub topic_overrides: Vec<(String, String)>,

    /// A librdkafka setting, KEY=VALUE (e.g. security.protocol=SSL), for the consumer and the dead-letter producer; a setting librdkafka knows for one client only (e.g. auto.offset.reset, linger.ms) goes to that one. Repeatable; in the environment, comma-separated.
    #[arg(long = "kafka-option", env = "HERALD_KAFKA_OPTIONS", value_delimiter = ',', value_parser = parse_pair)]
    pub kafka_options: Vec<(String, String)>,

    /// A librdkafka setting for the consumer only, KEY=VALUE (e.g. fetch.max.bytes=52428800). Repeatable; in the environment, comma-separated.
    #[arg(long = "kafka-consumer-option", env = "HERALD_KAFKA_CONSUMER_OPTIONS", value_delimiter = ',', value_parser = parse_pair)]
    pub kafka_consumer_options: Vec<(String, String)>,

    /// A librdkafka setting for the dead-letter producer only, KEY=VALUE (e.g. compression.type=zstd). Repeatable; in the environment, comma-separated.
    #[arg(long = "kafka-producer-option", env = "HERALD_KAFKA_PRODUCER_OPTIONS", value_delimiter = ',', value_parser = parse_pair)]
    pub kafka_producer_options: Vec<(String, String)>,

    /// Where a consumer group with no committed offset starts: `latest` (only records produced
    /// from now on) or `earliest` (the topics' whole retention, still subject to
    /// --max-event-age-seconds).
    #[arg(long, env = "HERALD_START_FROM", value_enum, default_value_t = StartFrom::Latest)]
    pub start_from: StartFrom,

    /// Records whose Kafka timestamp is older than this many seconds are not delivered (counted in
    /// herald_events_too_old_total and committed); 0 delivers records of any age.
    #[arg(long, env = "HERALD_MAX_EVENT_AGE_SECONDS", default_value_t = 300)]
    pub max_event_age_seconds: u64,

    /// How long one record may wait for the dead-letter topic to accept it (retrying, /readyz 503)
    /// before herald exits with an error so that it is restarted; 0 retries for ever.
    #[arg(long, env = "HERALD_DEAD_LETTER_TIMEOUT_SECONDS", default_value_t = 300)]
    pub dead_letter_timeout_seconds: u64,

    /// Topic that receives records herald cannot deliver (bad JSON, schema failures, unknown events, oversized).
    #[arg(long, env = "HERALD_DEAD_LETTER_TOPIC", default_value = "herald.dead-letter.v1")]
    pub dead_letter_topic: String,

    /// Records of one partition handled at once (received and not yet done). Records for the same
    /// user (or, before its owner is known, the same batch) still run one after the other in
    /// partition order. Records read beyond the window wait outside it; a partition with 4 × this
    /// many (at least 256) waiting is paused until they are all in the window.
    #[arg(long, env = "HERALD_CONSUMER_IN_FLIGHT", default_value_t = 512)]
    pub consumer_in_flight: usize,

    /// Records larger than this many bytes are dead-lettered unread.
    #[arg(long, env = "HERALD_MAX_RECORD_BYTES", default_value_t = 1_048_576)]
    pub max_record_bytes: usize,

    /// Redis URL for ownership, deduplication, parking and cross-instance fan-out.
    #[arg(long, env = "HERALD_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of herald's own Redis keys (channels stay `ws:{user_id}`).
    #[arg(long, env = "HERALD_REDIS_PREFIX", default_value = "herald:")]
    pub redis_prefix: String,

    /// --redis-url names a Redis Cluster (Redis >= 7): give one or more of its nodes, comma-separated.
    /// Keys are hash-tagged so that every script runs on one slot, and fan-out uses sharded pub/sub
    /// (SPUBLISH/SSUBSCRIBE) on channels `ws:{u<shard>}:{user_id}`.
    #[arg(long, env = "HERALD_REDIS_CLUSTER")]
    pub redis_cluster: bool,

    /// Milliseconds between PINGs on the Redis subscriber connection; a PING unanswered within this
    /// interval makes herald reconnect and resubscribe, and `/readyz` fails `subscriber` when Redis
    /// has not answered for three intervals.
    #[arg(long, env = "HERALD_REDIS_PING_INTERVAL_MS", default_value_t = 2000)]
    pub redis_ping_interval_ms: u64,

    /// Shared secret for HS256 tokens (the default algorithm).
    #[arg(long, env = "HERALD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,

    /// PEM public key for RS256 or ES256 tokens (instead of --jwt-secret).
    #[arg(long, env = "HERALD_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// Algorithm of --jwt-public-key: RS256 or ES256.
    #[arg(long, env = "HERALD_JWT_ALGORITHM", default_value = "RS256")]
    pub jwt_algorithm: String,

    /// Required `aud` claim (e.g. huleedu-platform); unchecked when unset.
    #[arg(long, env = "HERALD_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Required `iss` claim (e.g. huleedu-identity-service); unchecked when unset.
    #[arg(long, env = "HERALD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Clock skew tolerated when checking exp, nbf and iat, in seconds.
    #[arg(long, env = "HERALD_JWT_LEEWAY_SECONDS", default_value_t = 30)]
    pub jwt_leeway_seconds: u64,

    /// Connections one user may hold, counted across every instance in production mode (in Redis;
    /// on this instance alone when Redis does not answer at the handshake); the next is closed with
    /// 4000.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_USER", default_value_t = 5)]
    pub max_connections_per_user: usize,

    /// Milliseconds between refreshes of this instance's connections in Redis (production mode):
    /// the connections of an instance that died stop counting against --max-connections-per-user
    /// within three intervals.
    #[arg(long, env = "HERALD_PRESENCE_REFRESH_MS", default_value_t = 10_000)]
    pub presence_refresh_ms: u64,

    /// Notifications queued per connection before the slow-client policy closes it (4002, resume
    /// with `since`).
    #[arg(long, env = "HERALD_SEND_QUEUE", default_value_t = 256)]
    pub send_queue: usize,

    /// Seconds between server pings.
    #[arg(long, env = "HERALD_PING_INTERVAL_SECONDS", default_value_t = 30)]
    pub ping_interval_seconds: u64,

    /// Seconds without any frame from the client after which it is dropped.
    #[arg(long, env = "HERALD_IDLE_TIMEOUT_SECONDS", default_value_t = 75)]
    pub idle_timeout_seconds: u64,

    /// Largest frame or message a client may send, in bytes.
    #[arg(long, env = "HERALD_MAX_INBOUND_BYTES", default_value_t = 4096)]
    pub max_inbound_bytes: usize,

    /// Allowed `Origin` headers for /ws (comma-separated); any origin when unset.
    #[arg(long, env = "HERALD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Batch-owner lookup base URL (the batch orchestrator); herald calls
    /// {URL}/internal/v1/batches/{batch_id}/pipeline-state and reads `user_id`.
    #[arg(long, env = "HERALD_OWNER_LOOKUP_URL")]
    pub owner_lookup_url: Option<String>,

    /// How long a notification waits for its batch's owner to become known, in seconds.
    #[arg(long, env = "HERALD_PARKED_TTL_SECONDS", default_value_t = 3600)]
    pub parked_ttl_seconds: u64,

    /// Most notifications parked per batch; beyond it the oldest expires early.
    #[arg(long, env = "HERALD_PARKED_MAX_PER_BATCH", default_value_t = 1000)]
    pub parked_max_per_batch: usize,

    /// How long a learnt batch owner is remembered, in seconds.
    #[arg(long, env = "HERALD_OWNER_TTL_SECONDS", default_value_t = 30 * 86_400)]
    pub owner_ttl_seconds: u64,

    /// Notifications kept per user for clients resuming with `since`; 0 keeps none (ids still
    /// increase, and every resume answers `recovered: false`).
    #[arg(long, env = "HERALD_HISTORY_SIZE", default_value_t = 100)]
    pub history_size: usize,

    /// How long a notification is kept for resuming clients, in seconds (by its id's timestamp); a
    /// user's history is forgotten this long after their last notification.
    #[arg(long, alias = "history-ttl", env = "HERALD_HISTORY_TTL_SECONDS", default_value_t = 86_400)]
    pub history_ttl_seconds: u64,

    /// Accept events over HTTP (POST /v1/events). Always on in embedded mode. Production mode also
    /// needs --ingest-token.
    #[arg(long, env = "HERALD_HTTP_INGEST")]
    pub http_ingest: bool,

    // Token scope, ingest authentication and owner lookups.
    /// Accept tokens without checking `aud` and `iss` in production mode. Without this flag,
    /// production mode needs --jwt-audience and --jwt-issuer, so that a token issued for another
    /// service of the platform cannot open a socket here.
    #[arg(long, env = "HERALD_ALLOW_UNSCOPED_TOKENS")]
    pub allow_unscoped_tokens: bool,

    /// Secret that POST /v1/events requires as `Authorization: Bearer <token>`. Required with
    /// --http-ingest in production mode; optional in embedded mode (when unset, anyone may post).
    #[arg(long, env = "HERALD_INGEST_TOKEN", hide_env_values = true)]
    pub ingest_token: Option<SecretString>,

    /// Owner lookups (--owner-lookup-url) running at once; more wait their turn, never the consumer.
    #[arg(long, env = "HERALD_OWNER_LOOKUP_CONCURRENCY", default_value_t = 8)]
    pub owner_lookup_concurrency: usize,

    /// Seconds one owner lookup may take before it counts as unanswered (retried by the sweeper).
    #[arg(long, env = "HERALD_OWNER_LOOKUP_TIMEOUT_SECONDS", default_value_t = 2)]
    pub owner_lookup_timeout_seconds: u64,

    /// Seconds allowed for a graceful shutdown after SIGTERM, counted after the drain.
    #[arg(long, env = "HERALD_SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 10)]
    pub shutdown_timeout_seconds: u64,

    /// Seconds over which SIGTERM closes the sockets, in staggered batches (1012 with a jittered
    /// `retry_after_ms`), while /readyz is 503 and new sockets are refused; 0 closes them all at
    /// once. herald stops after the drain, within --shutdown-timeout-seconds more.
    #[arg(long, env = "HERALD_DRAIN_SECONDS", default_value_t = 10)]
    pub drain_seconds: u64,

    /// Secret that the admin API (POST /admin/v1/users/{user_id}/disconnect) requires as
    /// `Authorization: Bearer <token>`. Without it the admin API is off (404).
    #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<SecretString>,

    /// OTLP/HTTP endpoint that receives traces (e.g. http://collector:4318/v1/traces). Spans
    /// continue the producer's trace from `metadata.traceparent`; without an endpoint they are only
    /// logged.
    #[arg(long, env = "HERALD_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Log format: `json` (structured, the default) or `text`.
    #[arg(long, env = "HERALD_LOG_FORMAT", default_value = "json")]
    pub log_format: String,

    /// Threads that run the sockets, the pipeline and the Redis connections [default: one per
    /// CPU core herald may use]. librdkafka runs its own threads beside them. On a small machine
    /// whose cores herald shares (with Kafka or Redis, say), 1 costs less CPU per notification:
    /// idle workers no longer look for work to steal from the busy one (see docs/benchmarks.md).
    #[arg(long, env = "HERALD_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: Option<u16>,
}

impl Config {
    /// Parses the command line, reading `--config FILE` (or `HERALD_CONFIG`) first. Help, version
    /// and usage errors come back as clap errors, which know how to print themselves and exit.
    pub fn load() -> Result<Config, clap::Error> {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let first = Config::try_parse_from(&args)?;
        let Some(path) = &first.config else { return Ok(first) };
        let invalid = |error: ConfigFileError| {
            clap::Error::raw(clap::error::ErrorKind::Io, format!("config file {}: {error}\n", path.display()))
        };
        let text = std::fs::read_to_string(path).map_err(|source| invalid(ConfigFileError::Read { source }))?;
        let mut combined: Vec<std::ffi::OsString> = args.iter().take(1).cloned().collect();
        // Before the command line, so that its flags win; as arguments, so that they win over the
        // environment.
        combined.extend(file_args(&text).map_err(invalid)?.into_iter().map(Into::into));
        combined.extend(args.iter().skip(1).cloned());
        Config::try_parse_from(combined)
    }
}

/// Why a config file cannot be used. The file's path is added by [`Config::load`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read it: {source}")]
    Read {
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error(
        "it is not valid TOML (write `flag-name = value`, strings in quotes, e.g. \
         `kafka-brokers = \"kafka:9092\"`): {source}"
    )]
    Toml {
        /// The TOML parser's report, with the line and column.
        #[source]
        source: toml::de::Error,
    },
    /// A key that names no flag.
    #[error("`{key}` is not a flag of herald (`herald --help` lists them; write them without `--`)")]
    UnknownFlag {
        /// The key as written.
        key: String,
    },
    /// A value TOML allows but no flag takes: a table, a date, a nested array.
    #[error("`{key}` has a {kind} value: give a string, number or boolean, or an array of them for a repeatable flag")]
    UnsupportedValue {
        /// The key as written.
        key: String,
        /// The kind of value found.
        kind: &'static str,
    },
    /// A config file naming another config file.
    #[error("a config file cannot name another (`config = ...`)")]
    NestedConfig,
}

/// Turns a TOML file of `flag-name = value` pairs into `--flag-name=value` arguments: an array gives
/// the flag once per element, `true` gives a switch, `false` leaves it out.
fn file_args(text: &str) -> Result<Vec<String>, ConfigFileError> {
    let table: toml::Table = text.parse().map_err(|source| ConfigFileError::Toml { source })?;
    let command = Config::command();
    let mut args = Vec::new();
    for (key, value) in table {
        if key == "config" {
            return Err(ConfigFileError::NestedConfig);
        }
        if !command.get_arguments().any(|argument| argument.get_long() == Some(key.as_str())) {
            return Err(ConfigFileError::UnknownFlag { key });
        }
        let elements = match value {
            toml::Value::Array(elements) => elements,
            single => vec![single],
        };
        for element in elements {
            match element {
                toml::Value::String(text) => args.push(format!("--{key}={text}")),
                toml::Value::Integer(number) => args.push(format!("--{key}={number}")),
                toml::Value::Float(number) => args.push(format!("--{key}={number}")),
                toml::Value::Boolean(true) => args.push(format!("--{key}")),
                toml::Value::Boolean(false) => {}
                other => {
                    let kind = match other {
                        toml::Value::Array(_) => "nested array",
                        toml::Value::Table(_) => "table",
                        _ => "date",
                    };
                    return Err(ConfigFileError::UnsupportedValue { key, kind });
                }
            }
        }
    }
    Ok(args)
}

/// The port herald listens on when `--listen` is not given.
const DEFAULT_PORT: u16 = 8080;

/// Where a new consumer group starts reading (librdkafka's `auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StartFrom {
    /// The oldest record the topics retain.
    Earliest,
    /// The next record produced.
    Latest,
}

impl StartFrom {
    /// The `auto.offset.reset` value.
    pub(crate) fn as_offset_reset(self) -> &'static str {
        match self {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        }
    }
}

/// The secret embedded mode uses when none is configured, so that the README's run command works on a
/// fresh machine. It is printed at start-up; never use it in production.
pub const DEVELOPMENT_SECRET: &str = "herald-development-secret";

impl Config {
    /// Whether herald runs without Kafka and Redis.
    pub fn embedded(&self) -> bool {
        self.kafka_brokers.is_none() && self.redis_url.is_none()
    }

    /// The address to listen on: `--listen` when given, otherwise loopback in embedded mode (which
    /// accepts tokens signed with a secret it prints, so it must not be reachable from other
    /// machines unless asked) and every interface in production mode.
    pub fn listen_address(&self) -> SocketAddr {
        self.listen.unwrap_or_else(|| {
            let ip = if self.embedded() { Ipv4Addr::LOCALHOST } else { Ipv4Addr::UNSPECIFIED };
            SocketAddr::from((ip, DEFAULT_PORT))
        })
    }

    /// Checks combinations that clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.kafka_brokers, &self.redis_url) {
            (Some(_), None) => {
                return Err(
                    "--kafka-brokers needs --redis-url: Redis carries ownership, deduplication and fan-out".into()
                );
            }
            (None, Some(_)) => return Err("--redis-url needs --kafka-brokers (or neither, for embedded mode)".into()),
            _ => {}
        }
        if !self.embedded() && self.jwt_secret.is_none() && self.jwt_public_key.is_none() {
            return Err("production mode needs --jwt-secret or --jwt-public-key".into());
        }
        if !self.embedded() && !self.allow_unscoped_tokens && (self.jwt_audience.is_none() || self.jwt_issuer.is_none())
        {
            return Err("production mode needs --jwt-audience and --jwt-issuer (the `aud` and `iss` every token \
                 must carry), so that a token issued for another service cannot open a socket; give \
                 --allow-unscoped-tokens to accept tokens without checking them"
                .into());
        }
        if !self.embedded()
            && self.http_ingest
            && self.ingest_token.as_ref().is_none_or(|token| token.expose_secret().is_empty())
        {
            return Err("--http-ingest in production mode needs --ingest-token: without it anyone who can reach \
                 herald could post events"
                .into());
        }
        if self.ingest_token.as_ref().is_some_and(|token| token.expose_secret().is_empty()) {
            return Err("--ingest-token is empty: set a secret, or unset it".into());
        }
        if self.admin_token.as_ref().is_some_and(|token| token.expose_secret().is_empty()) {
            return Err("--admin-token is empty: set a secret, or unset it to turn the admin API off".into());
        }
        if !(1..=65_536).contains(&self.consumer_in_flight) {
            return Err(format!(
                "--consumer-in-flight {} is out of range: give 1 (one record of a partition at a time) to 65536",
                self.consumer_in_flight
            ));
        }
        if self.owner_lookup_concurrency == 0 || self.owner_lookup_timeout_seconds == 0 {
            return Err("--owner-lookup-concurrency and --owner-lookup-timeout-seconds must be at least 1".into());
        }
        if self.jwt_secret.is_some() && self.jwt_public_key.is_some() {
            return Err("give --jwt-secret or --jwt-public-key, not both".into());
        }
        if !matches!(self.jwt_algorithm.as_str(), "RS256" | "ES256") {
            return Err(format!("--jwt-algorithm must be RS256 or ES256, not {:?}", self.jwt_algorithm));
        }
        if self.redis_prefix.contains(['{', '}']) {
            return Err(format!(
                "--redis-prefix {:?} contains a brace: herald puts its own hash tags after the prefix",
                self.redis_prefix
            ));
        }
        if self.history_ttl_seconds == 0 {
            return Err("--history-ttl-seconds must be at least 1 (use --history-size 0 to keep no history)".into());
        }
        if self.max_connections_per_user == 0 || self.send_queue == 0 {
            return Err("--max-connections-per-user and --send-queue must be at least 1".into());
        }
        if !matches!(self.log_format.as_str(), "json" | "text") {
            return Err(format!("--log-format must be json or text, not {:?}", self.log_format));
        }
        for (notification, _) in &self.topic_overrides {
            if !herald::EVENTS.iter().any(|event| event.notification == notification) {
                let known: Vec<&str> = herald::EVENTS.iter().map(|event| event.notification).collect();
                return Err(format!("--topic {notification}=...: no such notification; known: {known:?}"));
            }
        }
        Ok(())
    }

    /// The topics events are consumed from, sorted and without duplicates: each event's default
    /// topics, or the last `--topic` override for it, which replaces the list.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = herald::EVENTS
            .iter()
            .flat_map(|event| {
                match self.topic_overrides.iter().rev().find(|(notification, _)| notification == event.notification) {
                    Some((_, topic)) => vec![topic.clone()],
                    None => event.topics.iter().map(|topic| (*topic).to_owned()).collect(),
                }
            })
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    pub(crate) fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_seconds.max(1))
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds.max(1))
    }

    pub(crate) fn owner_lookup_timeout(&self) -> Duration {
        Duration::from_secs(self.owner_lookup_timeout_seconds)
    }

    pub(crate) fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_seconds)
    }
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.trim().to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with_file(file: &str, command_line: &[&str]) -> Config {
        let mut args = vec!["herald".to_owned()];
        args.extend(file_args(file).unwrap());
        args.extend(command_line.iter().map(|arg| (*arg).to_owned()));
        Config::try_parse_from(args).unwrap()
    }

    #[test]
    fn config_files_become_flags_and_the_command_line_wins() {
        let file = r##"
            # herald
            kafka-brokers = "kafka:9092"
            redis-url = "redis://r:6379"
            topic = "batch_essays_ready=a.b"
            jwt-secret = "s#not-a-comment" # a comment
            jwt-audience = 'a'
            jwt-issuer = "i"
            send-queue = 512
            http-ingest = true
            allow-unscoped-tokens = false
            ingest-token = "t"
            kafka-option = ["security.protocol=SSL", "client.id=herald"]
        "##;
        let config = parse_with_file(file, &["--kafka-brokers", "other:9092"]);
        assert_eq!(config.kafka_brokers.as_deref(), Some("other:9092"));
        assert_eq!(config.redis_url.as_deref(), Some("redis://r:6379"));
        assert_eq!(config.topic_overrides, [("batch_essays_ready".to_owned(), "a.b".to_owned())]);
        assert_eq!(config.jwt_secret.as_ref().map(|secret| secret.expose_secret()), Some("s#not-a-comment"));
        assert_eq!(config.send_queue, 512);
        assert!(config.http_ingest);
        assert!(!config.allow_unscoped_tokens);
        assert_eq!(
            config.kafka_options,
            [("security.protocol".to_owned(), "SSL".to_owned()), ("client.id".to_owned(), "herald".to_owned())]
        );
        assert!(config.validate().is_ok(), "{:?}", config.validate());
        assert!(config.topics().contains(&"a.b".to_owned()));
        assert!(!config.topics().contains(&"huleedu.batch.essays.ready.v1".to_owned()));
        assert!(!format!("{config:?}").contains("s#not-a-comment"), "Debug shows the secret");
    }

    #[test]
    fn bad_config_files_say_what_is_wrong() {
        let cases = [
            ("kafka-brokers = kafka:9092", "not valid TOML"),
            ("no equals sign", "not valid TOML"),
            ("kafka-brokers = \"a\"\nkafka-brokers = \"b\"", "not valid TOML"),
            ("kafka-borkers = \"kafka:9092\"", "`kafka-borkers` is not a flag"),
            ("--kafka-brokers = \"kafka:9092\"", "write them without `--`"),
            ("config = \"other.toml\"", "cannot name another"),
            ("[kafka]\nbrokers = \"kafka:9092\"", "`kafka` is not a flag"),
            ("[listen]\nhost = \"0.0.0.0\"", "`listen` has a table value"),
            ("topic = [[\"a=b\"]]", "nested array"),
            ("listen = 1979-05-27", "date"),
        ];
        for (file, expected) in cases {
            match file_args(file) {
                Ok(args) => panic!("{file:?} was accepted as {args:?}"),
                Err(error) => assert!(error.to_string().contains(expected), "{file:?}: {error}"),
            }
        }
    }

    #[test]
    fn embedded_mode_listens_on_loopback_unless_told_otherwise() {
        let listen = |args: &[&str]| {
            let config = Config::try_parse_from(["herald"].iter().chain(args)).unwrap();
            config.listen_address().to_string()
        };
        assert_eq!(listen(&[]), "127.0.0.1:8080");
        assert_eq!(listen(&["--listen", "0.0.0.0:9000"]), "0.0.0.0:9000");
        let production = ["--kafka-brokers", "k:9092", "--redis-url", "redis://r:6379", "--jwt-secret", "s"];
        assert_eq!(listen(&production), "0.0.0.0:8080");
        assert_eq!(listen(&[&production[..], &["--listen", "127.0.0.1:9000"]].concat()), "127.0.0.1:9000");
    }

    #[test]
    fn every_default_topic_of_an_event_is_consumed_and_an_override_replaces_them() {
        let defaults = Config::try_parse_from(["herald"]).unwrap().topics();
        for event in herald::EVENTS {
            for topic in event.topics {
                assert!(defaults.contains(&(*topic).to_owned()), "{topic} is not consumed by default");
            }
        }
        let event = herald::EVENTS.iter().find(|event| event.topics.len() > 1).expect("an event with two topics");
        let flag = format!("{}=only.this", event.notification);
        let overridden = Config::try_parse_from(["herald", "--topic", &flag]).unwrap().topics();
        assert!(overridden.contains(&"only.this".to_owned()));
        assert!(event.topics.iter().all(|topic| !overridden.contains(&(*topic).to_owned())), "{overridden:?}");
    }

    #[test]
    fn half_a_production_setup_is_refused() {
        let config = Config::try_parse_from(["herald", "--kafka-brokers", "k:9092"]).unwrap();
        assert!(config.validate().unwrap_err().contains("--redis-url"));
        let config = Config::try_parse_from(["herald"]).unwrap();
        assert!(config.embedded() && config.validate().is_ok());
    }

    #[track_caller]
    fn check_production(flags: &[&str], expected_error_naming: Option<&[&str]>) {
        let mut args = vec!["herald", "--kafka-brokers", "k:9092", "--redis-url", "redis://r", "--jwt-secret", "s"];
        args.extend(flags);
        let result = Config::try_parse_from(&args).unwrap().validate();
        match expected_error_naming {
            None => assert!(result.is_ok(), "{flags:?}: {result:?}"),
            Some(names) => {
                let error = result.expect_err("refused");
                for name in names {
                    assert!(error.contains(name), "{flags:?}: the error should name {name}: {error}");
                }
            }
        }
    }

    #[test]
    fn production_tokens_are_scoped_unless_explicitly_not() {
        let scoped = ["--jwt-audience", "a", "--jwt-issuer", "i"];
        let needs = Some(&["--jwt-audience", "--jwt-issuer", "--allow-unscoped-tokens"][..]);
        check_production(&[], needs);
        check_production(&["--jwt-audience", "a"], needs);
        check_production(&["--jwt-issuer", "i"], needs);
        check_production(&scoped, None);
        check_production(&["--allow-unscoped-tokens"], None);
        // Embedded mode is for development: nothing is required there.
        assert!(Config::try_parse_from(["herald"]).unwrap().validate().is_ok());
    }

    #[test]
    fn production_http_ingest_needs_an_ingest_token() {
        let scoped = ["--jwt-audience", "a", "--jwt-issuer", "i"];
        let with = |extra: &[&'static str]| [&scoped[..], extra].concat();
        check_production(&with(&["--http-ingest"]), Some(&["--http-ingest", "--ingest-token"]));
        check_production(&with(&["--http-ingest", "--ingest-token", ""]), Some(&["--ingest-token"]));
        check_production(&with(&["--http-ingest", "--ingest-token", "secret"]), None);
        check_production(&with(&[]), None);
        let embedded = Config::try_parse_from(["herald", "--http-ingest"]).unwrap();
        assert!(embedded.validate().is_ok(), "embedded mode needs no ingest token");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any text as a config file gives arguments or an error that says what is wrong; never a
        /// panic, neither here nor when clap reads the arguments.
        #[test]
        fn any_config_file_gives_arguments_or_a_clear_error(text in "(?s).{0,200}") {
            match file_args(&text) {
                Ok(args) => {
                    proptest::prop_assert!(args.iter().all(|arg| arg.starts_with("--")), "{args:?}");
                    let _ = Config::try_parse_from(std::iter::once("herald".to_owned()).chain(args));
                }
                Err(error) => proptest::prop_assert!(error.to_string().len() > 20, "{error}"),
            }
        }

        /// Text shaped like a config file (flag names, `=`, quotes, comments, brackets) reaches the
        /// deeper paths that random text rarely does.
        #[test]
        fn config_shaped_files_never_panic(
            lines in proptest::collection::vec(
                "(kafka-brokers|topic|send-queue|http-ingest|jwt-secret|config|x)? ?=? ?(\"[^\"\n]{0,8}\"|[0-9]{1,4}|true|\\[|\\]|#|'|\\{)*",
                0..6,
            )
        ) {
            let text = lines.join("\n");
            if let Ok(args) = file_args(&text) {
                let _ = Config::try_parse_from(std::iter::once("herald".to_owned()).chain(args));
            }
        }
    }
}
