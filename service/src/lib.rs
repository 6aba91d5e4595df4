//! The herald service: consumes the events generated from `event-defs/`, works out which teacher
//! to notify, and pushes notifications to their authenticated WebSocket connections.
//!
//! - [`config`]: flags and environment; embedded mode (no Kafka or Redis) or production.
//! - `consumer`: the Kafka consumer (at-least-once, dead-lettering bad input).
//! - `pipeline`: record bytes → generated `route`/`dispatch` → recipient → publish once.
//! - `backend`: ownership, deduplication, parking, per-user history and fan-out, in memory or in
//!   Redis.
//! - `resume`: notification ids (`<ms>-<seq>`) and what a resuming socket is sent.
//! - `hub`: this instance's connections and in-process fan-out of encoded bytes.
//! - `ws`, `auth`: the WebSocket endpoint and JWT verification.
//! - `http`, `metrics`, `health`: health, readiness checks, Prometheus metrics, HTTP ingest.
//! - `supervisor`: the background tasks, watched together; one that ends early stops herald.
//!
//! [`run`] wires them together and returns when the shutdown future completes and everything has
//! drained, or with an error when a background task ended before that.

pub mod config;

mod auth;
mod backend;
mod consumer;
mod health;
mod http;
mod hub;
mod metrics;
mod pipeline;
mod resume;
mod supervisor;
mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use secrecy::{ExposeSecret as _, SecretString};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::auth::AuthSetupError;
pub use crate::config::{Config, ConfigFileError, StartFrom};

/// What every request handler shares.
pub(crate) struct AppState {
    pub pipeline: Arc<pipeline::Pipeline>,
    pub hub: Arc<hub::Hub>,
    pub authenticator: auth::Authenticator,
    pub kafka: Option<Arc<consumer::Kafka>>,
    pub metrics: metrics::Metrics,
    /// The named checks behind `/readyz`, owned by the loops they describe.
    pub health: health::Health,
    pub registry: Registry,
    /// Cancelled on SIGTERM: socket tasks close with 1012 and the consumer stops.
    pub shutdown: CancellationToken,
    pub allowed_origins: Vec<String>,
    pub max_inbound_bytes: usize,
    pub max_record_bytes: usize,
    pub http_ingest: bool,
    /// The secret `POST /v1/events` requires as a bearer token, when configured.
    pub ingest_token: Option<SecretString>,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
}

/// Why herald could not start, or stopped without being asked to.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// The JWT public key file could not be read.
    #[error("JWT key: cannot read {path}: {source}")]
    KeyFile {
        /// The configured `--jwt-public-key`.
        path: std::path::PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The JWT key or its settings cannot be used.
    #[error("JWT key: {0}")]
    Key(#[from] AuthSetupError),
    /// Redis could not be reached at start-up.
    #[error("redis: {0}")]
    Redis(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The Kafka client could not be created.
    #[error("kafka: {0}")]
    Kafka(#[source] rdkafka::error::KafkaError),
    /// Serving failed.
    #[error("server: {0}")]
    Serve(#[from] std::io::Error),
    /// A background task herald needs in order to deliver ended before shutdown: the process
    /// exits non-zero so that it is restarted.
    #[error("the {task} task ended unexpectedly ({reason}); herald stopped so that it can be restarted")]
    TaskEnded {
        /// Which task: consumer, redis subscriber, parking sweeper or http server.
        task: &'static str,
        /// What ended it: "returned", "failed: ..." or the panic message.
        reason: String,
    },
}

/// Runs herald on `listener` until `shutdown` completes, then drains within the configured bound.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    config.validate().map_err(StartError::Config)?;
    let (metrics, registry) = metrics::Metrics::new();
    let health = health::Health::new(metrics.clone());
    let stop = CancellationToken::new();
    let authenticator = auth::Authenticator::new(auth_config(&config)?)?;
    let parking = backend::Parking {
        ttl_seconds: config.parked_ttl_seconds,
        max_per_batch: config.parked_max_per_batch.max(1),
        owner_ttl_seconds: config.owner_ttl_seconds,
    };
    let history = backend::HistoryBounds { size: config.history_size, ttl_seconds: config.history_ttl_seconds };

    let mut tasks = supervisor::Supervisor::default();
    let (backend, hub, kafka) = match (&config.kafka_brokers, &config.redis_url) {
        (Some(brokers), Some(redis_url)) => {
            let (changes, subscriptions) = tokio::sync::mpsc::unbounded_channel();
            let hub = hub::Hub::new(config.max_connections_per_user, config.send_queue, Some(changes), metrics.clone());
            let target = backend::RedisTarget {
                urls: redis_url.split(',').map(|url| url.trim().to_owned()).filter(|url| !url.is_empty()).collect(),
                cluster: config.redis_cluster,
                prefix: config.redis_prefix.clone(),
                ping_interval: Duration::from_millis(config.redis_ping_interval_ms.max(1)),
            };
            let (redis, subscriber) = backend::RedisBackend::connect(
                &target,
                Arc::clone(&hub),
                subscriptions,
                parking,
                history,
                metrics.clone(),
                health.clone(),
                stop.clone(),
            )
            .await
            .map_err(|error| StartError::Redis(error.into()))?;
            let kafka = consumer::Kafka::connect(&config, brokers, metrics.clone()).map_err(StartError::Kafka)?;
            tasks.spawn("redis subscriber", async move {
                backend::subscribe(subscriber).await;
                Ok(())
            });
            (backend::Backend::Redis(redis), hub, Some(kafka))
        }
        _ => {
            let hub = hub::Hub::new(config.max_connections_per_user, config.send_queue, None, metrics.clone());
            let memory = backend::MemoryBackend::new(Arc::clone(&hub), parking, history, metrics.clone());
            (backend::Backend::Memory(Arc::new(memory)), hub, None)
        }
    };
    let (lookups, lookup_runner) = match &config.owner_lookup_url {
        Some(url) => {
            let (lookups, runner) =
                pipeline::owner_lookups(url, config.owner_lookup_concurrency, config.owner_lookup_timeout())
                    .map_err(StartError::Config)?;
            (Some(lookups), Some(runner))
        }
        None => (None, None),
    };
    let pipeline = pipeline::Pipeline::new(backend, metrics.clone(), lookups);

    let app = Arc::new(AppState {
        pipeline: Arc::clone(&pipeline),
        hub,
        authenticator,
        kafka: kafka.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        registry,
        shutdown: stop.clone(),
        allowed_origins: config.allowed_origins.clone(),
        max_inbound_bytes: config.max_inbound_bytes,
        max_record_bytes: config.max_record_bytes,
        http_ingest: config.http_ingest || config.embedded(),
        ingest_token: config.ingest_token.clone(),
        ping_interval: config.ping_interval(),
        idle_timeout: config.idle_timeout(),
    });

    if let Some(kafka) = kafka {
        health.declare(consumer::CONSUMER_CHECK, "the consumer has not started", None);
        health.declare(consumer::DEAD_LETTER_CHECK, "the consumer has not started", None);
        tasks.spawn("consumer", kafka.run(Arc::clone(&pipeline), metrics.clone(), health.clone(), stop.clone()));
    }
    tasks.spawn("parking sweeper", sweep(Arc::clone(&pipeline), stop.clone()));
    if let Some(runner) = lookup_runner {
        let pipeline = Arc::clone(&pipeline);
        let stop = stop.clone();
        tasks.spawn("owner lookup", async move {
            runner.run(pipeline, stop).await;
            Ok(())
        });
    }

    let address = listener.local_addr()?;
    if config.embedded() {
        print_welcome(&config, address);
    }
    tracing::info!(%address, mode = if config.embedded() { "embedded" } else { "production" }, "herald started");

    let server_stop = stop.clone();
    let server = axum::serve(listener, http::router(Arc::clone(&app)).into_make_service())
        .with_graceful_shutdown(async move { server_stop.cancelled().await });
    tasks.spawn("http server", async move { server.await.map_err(|error| error.to_string()) });

    let shutdown = std::pin::pin!(shutdown);
    let ended = tokio::select! {
        () = shutdown => None,
        ended = tasks.ended() => Some(ended),
    };
    match &ended {
        None => tracing::info!("shutting down: stop consuming, commit, close sockets with 1012"),
        Some(ended) => {
            tracing::error!(
                task = ended.task,
                reason = %ended.reason,
                "a background task ended unexpectedly; stopping herald with an error so that it is restarted"
            );
            // Not ready while draining, whatever the task's own check said when it died.
            health.fail(ended.task, format!("the {} task ended: {}", ended.task, ended.reason));
        }
    }
    stop.cancel();
    let drained = tokio::time::timeout(config.shutdown_timeout(), async {
        tasks.drain().await;
        // Socket tasks close with 1012 on their own; wait for them to finish.
        while app.hub.connection_count() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(timeout_seconds = config.shutdown_timeout_seconds, "shutdown timed out; exiting anyway");
    }
    tracing::info!("stopped");
    match ended {
        None => Ok(()),
        Some(supervisor::Ended { task, reason }) => Err(StartError::TaskEnded { task, reason }),
    }
}

fn auth_config(config: &Config) -> Result<auth::AuthConfig, StartError> {
    let key = match (&config.jwt_secret, &config.jwt_public_key) {
        (_, Some(path)) => {
            let pem = std::fs::read(path).map_err(|source| StartError::KeyFile { path: path.clone(), source })?;
            match config.jwt_algorithm.as_str() {
                "ES256" => auth::KeyConfig::Es256 { public_key_pem: pem },
                _ => auth::KeyConfig::Rs256 { public_key_pem: pem },
            }
        }
        (Some(secret), None) => auth::KeyConfig::Hs256 { secret: secret.expose_secret().as_bytes().to_vec().into() },
        (None, None) => auth::KeyConfig::Hs256 { secret: config::DEVELOPMENT_SECRET.as_bytes().to_vec().into() },
    };
    Ok(auth::AuthConfig {
        key,
        audience: config.jwt_audience.clone(),
        issuer: config.jwt_issuer.clone(),
        leeway_seconds: config.jwt_leeway_seconds,
    })
}

/// Sleeps for `backoff`, then doubles it (up to 5 s) for next time; false if shutdown came first.
/// Every retry loop in herald waits through this, so none spins during an outage and none delays
/// a shutdown.
pub(crate) async fn pause(shutdown: &CancellationToken, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

/// Expires parked notifications and retries owner lookups every few seconds.
async fn sweep(pipeline: Arc<pipeline::Pipeline>, stop: CancellationToken) -> Result<(), String> {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = every.tick() => {
                if let Err(error) = pipeline.sweep().await {
                    tracing::warn!(%error, "parking sweep failed; will retry");
                }
            }
        }
    }
}

/// Tells someone who just ran herald on a fresh machine how to see it work.
fn print_welcome(config: &Config, address: std::net::SocketAddr) {
    let host =
        if address.ip().is_unspecified() { format!("localhost:{}", address.port()) } else { address.to_string() };
    let secret = config.jwt_secret.as_ref().map_or(config::DEVELOPMENT_SECRET, |secret| secret.expose_secret());
    let token =
        auth::development_token(secret.as_bytes(), "teacher-1", Duration::from_secs(24 * 3600)).unwrap_or_default();
    // The sample comes from the definitions: the shortest example of an event that names its user,
    // addressed to teacher-1.
    let sample = herald::EVENTS
        .iter()
        .filter(|event| event.recipient_user_key.is_some())
        .min_by_key(|event| event.example.len())
        .and_then(|event| {
            let mut envelope: serde_json::Value = serde_json::from_str(event.example).ok()?;
            *envelope.get_mut("data")?.get_mut(event.recipient_user_key?)? = "teacher-1".into();
            Some((event.notification, envelope))
        });
    let send = match sample {
        Some((notification, envelope)) => format!(
            "Send a sample event ({notification} for teacher-1):\n  curl -s -X POST http://{host}/v1/events -H 'content-type: application/json' -d '{}'\n\n",
            envelope.to_string().replace('\'', "'\\''")
        ),
        None => String::new(),
    };
    let secret_note = if config.jwt_secret.is_none() {
        format!(" (HS256, development secret {:?}: never use it in production)", config::DEVELOPMENT_SECRET)
    } else {
        String::new()
    };
    println!(
        "herald is running in embedded mode (no Kafka, no Redis) on http://{host}\n\n\
         Connect a WebSocket as teacher-1{secret_note}:\n  ws://{host}/ws?token={token}\n\n\
         {send}Health: http://{host}/healthz   Readiness: http://{host}/readyz   Metrics: http://{host}/metrics\n"
    );
}
