//! Command-line options. Everything that names the server under test (its address, how tokens are
//! made, the Kafka brokers and topic, the event) is a flag, so the same binary can measure any
//! server that speaks herald's contract.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// herald-loadgen: open many authenticated WebSocket connections to a herald-compatible server,
/// produce events to Kafka at a fixed rate, and report how many notification copies arrived, how
/// fast, and what the server's memory did.
#[derive(Debug, Clone, Parser)]
#[command(name = "herald-loadgen", version, about, long_about = None)]
pub(crate) struct Options {
    /// WebSocket endpoint of the server; each connection appends `token=JWT` to its query. Several
    /// endpoints (instances with no balancer in front), comma-separated or repeated: connection i
    /// opens at endpoint i mod N, and every reconnect moves on to the next endpoint, as a browser
    /// behind a balancer lands on another instance when its own is gone.
    #[arg(long, env = "HERALD_LOADGEN_URL", value_delimiter = ',', default_value = "ws://127.0.0.1:8080/ws")]
    pub url: Vec<String>,

    /// The contract the server speaks. `herald`: the token in the URL's query, herald's
    /// notification frames, ClassCreatedV1 envelopes produced to the topic. `centrifugo`: a
    /// Centrifugo `connect` command with the same token, publications of the user's personal
    /// channel, and the same envelopes produced with the headers Centrifugo's Kafka consumer
    /// publishes by (publication data mode; `herald_loadgen::centrifugo`). Connections do not
    /// resume with centrifugo.
    #[arg(long, value_enum, default_value_t = Protocol::Herald)]
    pub protocol: Protocol,

    /// With --protocol centrifugo: the namespace of the personal channels, as configured in
    /// Centrifugo's `client.subscribe_to_user_personal_channel.personal_channel_namespace`
    /// (empty: channels `#<user>`).
    #[arg(long, default_value = "personal")]
    pub personal_namespace: String,

    /// Allow a --url whose host is not a loopback address (a load test aimed at a shared or
    /// production server by mistake does real harm, so this must be said explicitly).
    #[arg(long)]
    pub allow_remote: bool,

    /// WebSocket connections to open and hold.
    #[arg(long, short = 'c', default_value_t = 1000)]
    pub connections: usize,

    /// Distinct users the connections are spread over (connection i belongs to user i mod USERS).
    #[arg(long, short = 'u', default_value_t = 250)]
    pub users: usize,

    /// User ids are this prefix followed by the user's index (`sub` of the signed tokens).
    #[arg(long, default_value = "loadgen-user-")]
    pub user_prefix: String,

    /// HS256 secret to sign one token per user with (`sub` = user id, `exp` = now + lifetime).
    #[arg(long, env = "HERALD_LOADGEN_JWT_SECRET", hide_env_values = true, required_unless_present = "tokens_file")]
    pub jwt_secret: Option<String>,

    /// `aud` claim to put in signed tokens (for servers started with a required audience).
    #[arg(long)]
    pub jwt_audience: Option<String>,

    /// `iss` claim to put in signed tokens (for servers started with a required issuer).
    #[arg(long)]
    pub jwt_issuer: Option<String>,

    /// Lifetime of signed tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub token_lifetime_seconds: u64,

    /// Use ready-made tokens instead of signing: a file of `USER_ID TOKEN` lines, one per user
    /// (blank lines and lines starting with `#` are skipped). --users is then the number of lines.
    #[arg(long, conflicts_with = "jwt_secret")]
    pub tokens_file: Option<PathBuf>,

    /// Handshakes in flight at once while opening connections.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,

    /// Read buffer of each client connection, in KiB (tungstenite's default is 128).
    #[arg(long, default_value_t = 8)]
    pub read_buffer_kib: usize,

    /// Seconds one handshake may take before it counts as failed.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,

    /// Seconds to wait after the last handshake before counting held connections and reading the
    /// server's memory (a server that rejects a token or a quota closes right after the upgrade).
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,

    /// Kafka bootstrap servers (host:port,...).
    #[arg(long, env = "HERALD_LOADGEN_BROKERS")]
    pub brokers: String,

    /// Topic to produce to; the server must consume it.
    #[arg(long, default_value = "huleedu.class.created.v1")]
    pub topic: String,

    /// `event_type` of the produced envelopes (their payload is a ClassCreatedV1).
    #[arg(long, default_value = "huleedu.class.created.v1")]
    pub event_type: String,

    /// Notification name the server sends for these events (the frame's `event`).
    #[arg(long, default_value = "class_created")]
    pub notification: String,

    /// `source_service` of the produced envelopes.
    #[arg(long, default_value = "herald-loadgen")]
    pub source_service: String,

    /// A librdkafka producer setting as KEY=VALUE (e.g. security.protocol=SSL). Repeatable.
    #[arg(long = "kafka-option", value_parser = parse_pair)]
    pub kafka_options: Vec<(String, String)>,

    /// Events to produce in the measured phase, round-robin over the users.
    #[arg(long, short = 'n', default_value_t = 4000)]
    pub events: u64,

    /// Events per second to produce.
    #[arg(long, short = 'r', default_value_t = 200.0)]
    pub rate: f64,

    /// Before the measured phase (after the warm-up), wait until this file exists: several loadgen
    /// processes holding one large population of connections start sending together (see
    /// `scripts/scale.sh`). Gives up after 600 s.
    #[arg(long)]
    pub wait_for: Option<PathBuf>,

    /// Seconds to wait after the last event for copies still on their way.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,

    /// Seconds to wait for the warm-up events (sent before measuring, to make sure the server's
    /// consumer is assigned its partitions and the whole path works) to arrive.
    #[arg(long, default_value_t = 60.0)]
    pub warmup_timeout: f64,

    /// Delivery target in milliseconds; the report gives the share of copies within it.
    #[arg(long, default_value_t = 100.0)]
    pub target_ms: f64,

    /// Process id of the server under test (on this machine): its RSS and CPU time are reported.
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// `host:port` of the Redis the server uses (no password, on this machine): its memory
    /// (`INFO memory`) and CPU time over the measured phase are reported, per event.
    #[arg(long)]
    pub redis_addr: Option<String>,

    /// Do not reconnect when a socket ends (by default a connection reconnects with `?since=` the
    /// last id it processed, unless closed with 1008, 4000, 4001 or 4003).
    #[arg(long)]
    pub no_resume: bool,

    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// Also write the report as one JSON object to this file.
    #[arg(long)]
    pub json_file: Option<PathBuf>,
}

/// The contract of the server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Protocol {
    Herald,
    Centrifugo,
}

impl Options {
    /// Checks what clap cannot.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if self.tokens_file.is_none() && (self.users == 0 || self.users > self.connections) {
            return Err(format!(
                "--users must be between 1 and --connections ({}), got {}: a user without a connection cannot receive anything",
                self.connections, self.users
            ));
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(format!("--rate must be a positive number of events per second, got {}", self.rate));
        }
        for (name, value) in [
            ("--connect-timeout", self.connect_timeout),
            ("--settle", self.settle),
            ("--drain", self.drain),
            ("--warmup-timeout", self.warmup_timeout),
            ("--target-ms", self.target_ms),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!("{name} must be a non-negative number, got {value}"));
            }
        }
        if self.read_buffer_kib == 0 {
            return Err("--read-buffer-kib must be at least 1".into());
        }
        if self.connect_concurrency == 0 {
            return Err("--connect-concurrency must be at least 1".into());
        }
        if self.url.is_empty() {
            return Err("--url needs at least one endpoint".into());
        }
        for url in &self.url {
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                return Err(format!("--url must start with ws:// or wss://, got {url:?}"));
            }
            if !self.allow_remote && !is_loopback_url(url) {
                return Err(format!(
                    "--url {url:?} is not a loopback address; pass --allow-remote if you really mean to load that server"
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn seconds(value: f64) -> Duration {
        Duration::from_secs_f64(value)
    }
}

/// Whether the URL's host is `localhost` or a loopback IP address.
pub(crate) fn is_loopback_url(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|address| address.is_loopback())
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

    #[track_caller]
    fn check_loopback(url: &str, expected: bool) {
        assert_eq!(is_loopback_url(url), expected, "{url}");
    }

    #[test]
    fn loopback_urls() {
        check_loopback("ws://127.0.0.1:8080/ws", true);
        check_loopback("ws://127.3.2.1/ws", true);
        check_loopback("ws://localhost:8080/ws?x=1", true);
        check_loopback("ws://LOCALHOST", true);
        check_loopback("ws://[::1]:8080/ws", true);
        check_loopback("ws://user@127.0.0.1:1/ws", true);
        check_loopback("ws://10.0.0.1:8080/ws", false);
        check_loopback("ws://herald.example:8080/ws", false);
        check_loopback("ws://127.0.0.1.example/ws", false);
        check_loopback("ws://[::2]:8080/ws", false);
        check_loopback("not a url", false);
    }

    #[test]
    fn pairs() {
        assert_eq!(parse_pair("linger.ms = 5"), Ok(("linger.ms".into(), "5".into())));
        assert!(parse_pair("=5").is_err());
        assert!(parse_pair("linger.ms").is_err());
    }
}
