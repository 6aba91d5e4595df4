//! `herald-refserver`: the reference server `scripts/bench.sh` runs under the same load as herald,
//! so that herald's figures can be given as ratios to a server that does the least the contract
//! needs on the same machine in the same minutes (`docs/benchmarks.md`, "Against the reference
//! server").
//!
//! What it does, for the benchmark's topics: consumes ClassCreatedV1-shaped envelopes from Kafka
//! (`consumer`), takes the recipient from `data.user_id` as herald does for `class_created`, and
//! writes the notification, encoded once in herald's wire shape, to every socket of that user
//! through an in-process map user → sockets (`hub`). Sockets (`sockets`) are `/ws?token=JWT`,
//! verified as HS256 with the same secret, audience and issuer as herald; `sub` is the user.
//!
//! Kept equal to herald so that per-socket memory and per-event CPU compare: one task per socket,
//! a 256-byte read buffer, a bounded send queue per socket (a socket whose queue is full is closed with
//! 4002 SLOW_CONSUMER), per-user ids `"<ms>-<seq>"` from the record's Kafka timestamp, the message
//! serialized once and the same bytes handed to every socket of the user.
//!
//! Deliberately absent: Redis (no dedupe, history, resume, cross-instance fan-out or connection
//! quota), schema validation, every other event and topic, pings and idle timeouts, token expiry,
//! metrics. A `since` in the query is ignored (the connection gets live notifications only).
//!
//! Exit status: 0 after SIGTERM or Ctrl-C, 1 when it cannot start or its consumer stops.

mod consumer;
mod hub;
mod sockets;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Parser;

use crate::hub::Hub;
use crate::sockets::Verifier;

/// herald-refserver: a minimal server speaking herald's contract for ClassCreatedV1 envelopes
/// (Kafka → in-process map → WebSocket; no Redis, no validation), the benchmark's reference.
#[derive(Debug, Clone, Parser)]
#[command(name = "herald-refserver", version, about, long_about = None)]
struct Options {
    /// Address to listen on (loopback unless you mean otherwise).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Kafka bootstrap servers (host:port,...).
    #[arg(long)]
    kafka_brokers: String,

    /// Kafka consumer group.
    #[arg(long, default_value = "herald-refserver")]
    kafka_group: String,

    /// A topic to consume ClassCreatedV1 envelopes from. Repeatable (or comma-separated): the
    /// benchmark names herald's other topics too, so that both servers fetch the same partitions.
    #[arg(long = "topic", value_delimiter = ',', default_value = "huleedu.class.created.v1")]
    topics: Vec<String>,

    /// A librdkafka consumer setting as KEY=VALUE (e.g. auto.offset.reset=latest). Repeatable.
    #[arg(long = "kafka-option", value_parser = parse_pair)]
    kafka_options: Vec<(String, String)>,

    /// HS256 secret the tokens are signed with.
    #[arg(long, env = "HERALD_REFSERVER_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,

    /// `aud` the tokens must carry.
    #[arg(long)]
    jwt_audience: Option<String>,

    /// `iss` the tokens must carry.
    #[arg(long)]
    jwt_issuer: Option<String>,

    /// Notifications queued per socket; a socket whose queue is full is closed with 4002.
    #[arg(long, default_value_t = 256)]
    send_queue: usize,

    /// Threads of the async runtime [default: one per CPU core], as herald's --worker-threads.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: Option<u16>,

    /// Notification name written in `event` (herald's name for ClassCreatedV1).
    #[arg(long, default_value = "class_created")]
    notification: String,
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.trim().to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

fn main() -> ExitCode {
    let options = Options::parse();
    if options.send_queue == 0 {
        eprintln!("herald-refserver: --send-queue must be at least 1");
        return ExitCode::from(1);
    }
    // Thousands of sockets need thousands of descriptors; the soft limit is often 1024.
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("herald-refserver: cannot raise the open-files limit: {error}");
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = options.worker_threads {
        builder.worker_threads(usize::from(threads));
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("herald-refserver: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herald-refserver: {error}");
            ExitCode::from(1)
        }
    }
}

/// State every request handler and the consumer share.
struct App {
    hub: Hub,
    verifier: Verifier,
    send_queue: usize,
    /// Set once the consumer has subscribed: `/readyz` answers 200 from then on.
    ready: AtomicBool,
}

async fn run(options: Options) -> Result<(), String> {
    let app = Arc::new(App {
        hub: Hub::default(),
        verifier: Verifier::new(&options.jwt_secret, options.jwt_audience.as_deref(), options.jwt_issuer.as_deref()),
        send_queue: options.send_queue,
        ready: AtomicBool::new(false),
    });
    let consumer =
        consumer::subscribe(&options.kafka_brokers, &options.kafka_group, &options.topics, &options.kafka_options)?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}; is the port taken?", options.listen))?;
    app.ready.store(true, Ordering::Release);

    let router = router(Arc::clone(&app));
    let mut server = tokio::spawn(async move { axum::serve(listener, router).await });
    let notification: Arc<str> = Arc::from(options.notification.as_str());
    let mut consuming = tokio::spawn(consumer::consume(consumer, Arc::clone(&app), notification));

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|error| format!("cannot watch for SIGTERM: {error}"))?;
    // Upgraded sockets are not tracked by axum's graceful shutdown, and there is nothing to drain
    // (no history, no offsets beyond the auto-committed ones): on a signal, the process just ends.
    tokio::select! {
        _ = terminate.recv() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
        ended = &mut server => Err(format!("the HTTP server stopped: {ended:?}")),
        ended = &mut consuming => Err(format!("the Kafka consumer stopped: {ended:?}")),
    }
}

/// The HTTP routes: `/ws` (and `/ws/`) and `/readyz`.
fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/ws", get(sockets::upgrade))
        .route("/ws/", get(sockets::upgrade))
        .route("/readyz", get(readyz))
        .with_state(app)
}

async fn readyz(axum::extract::State(app): axum::extract::State<Arc<App>>) -> StatusCode {
    if app.ready.load(Ordering::Acquire) { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }
}

#[cfg(test)]
mod tests {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    use super::*;

    /// The server on a loopback port of its own, without Kafka: the hub is fed directly.
    async fn serve() -> (Arc<App>, SocketAddr) {
        let app = Arc::new(App {
            hub: Hub::default(),
            verifier: Verifier::new("s3cret", Some("aud"), Some("iss")),
            send_queue: 4,
            ready: AtomicBool::new(true),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let routes = router(Arc::clone(&app));
        tokio::spawn(async move { axum::serve(listener, routes).await });
        (app, address)
    }

    #[tokio::test]
    async fn a_socket_gets_its_users_notifications_answers_pings_and_a_bad_token_is_closed_with_1008() {
        let (app, address) = serve().await;
        let token = herald_loadgen::token::sign("s3cret", "teacher-1", Some("aud"), Some("iss"), 60).unwrap();
        let url = herald_loadgen::wire::connection_url(&format!("ws://{address}/ws"), &token);
        let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
        // Registered before the handshake was answered: nothing sent from now on is missed.
        assert_eq!(app.hub.deliver("teacher-1", 5, |id| axum::extract::ws::Utf8Bytes::from(format!("note {id}"))), 1);
        assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("note 5-0"));
        socket.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
        assert_eq!(socket.next().await.unwrap().unwrap(), Message::text(r#"{"type":"pong"}"#));
        socket.close(None).await.unwrap();

        let forged = herald_loadgen::token::sign("other", "teacher-1", Some("aud"), Some("iss"), 60).unwrap();
        let url = herald_loadgen::wire::connection_url(&format!("ws://{address}/ws"), &forged);
        let (mut refused, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
        match refused.next().await.unwrap().unwrap() {
            Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1008),
            other => panic!("expected a 1008 close, got {other:?}"),
        }
    }
}
