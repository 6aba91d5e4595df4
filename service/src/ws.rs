//! The WebSocket endpoint: `/ws` and `/ws/`.
//!
//! Every connection is upgraded before its token is checked, because a browser cannot see an HTTP
//! 403 at the handshake (it reports an anonymous 1006); a rejected token is closed with 1008 and a
//! JSON reason instead. Every close code, when it is sent and what its JSON reason holds is in
//! `herald::runtime::protocol::close` (also published in the AsyncAPI document); this module closes
//! with those constants only.
//!
//! Client frames: `{"type":"ping"}` (answered `{"type":"pong"}`), `{"type":"resume","since":
//! "<id>"}` (see below) and `{"type":"auth","token":
//! "<jwt>"}`, the in-band token refresh (answered `{"type":"auth","ok":true,"exp":N}` or
//! `{"type":"auth","ok":false,"error_code":...,"message":...}`; see `session`).
//!
//! A token offered as a subprotocol (`Sec-WebSocket-Protocol: bearer, <token>`) is answered with
//! the protocol `bearer` only: the token is never echoed in a response header.
//!
//! Position (see `resume::position_frame`): a connection opened with `?position=1` and without
//! `since` is first sent `{"type":"position","since":"<id>"}`, where the user's history stood just
//! before the socket was registered; a client that processed nothing on it reconnects with that as
//! `since`. Without either, a connection gets live notifications only.
//!
//! Resume (see `resume`): a client that reconnects with the last id it processed, as `?since=<id>`
//! or as the frame `{"type":"resume","since":"<id>"}` (honoured once per connection), is answered
//! with `{"type":"resumed","recovered":…,"missed":N}` and the N notifications it missed, then the
//! live ones, with no gap and no duplicate. The socket is registered (and subscribed) before the
//! history is read, and live copies of replayed notifications are dropped by id. When this
//! instance's Redis subscriber lost Redis and subscribed again, every socket catches up the same way
//! from the last id it was written; if it cannot prove nothing is missing it sends an unprompted
//! `{"type":"resumed","recovered":false,"missed":N}` first, so the client refreshes its state.
//!
//! One task per socket reads client frames and writes queued notifications; client frames never
//! block delivery for long, since the only replies they can cause are a pong, an auth answer and
//! one resume.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald::runtime::protocol::{CloseCode, close};
use secrecy::ExposeSecret as _;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::auth::{self, AuthError, Verified};
use crate::backend::now_unix_ms;
use crate::hub::{Outbound, QuotaExceeded, Registration};
use crate::resume::{self, NotificationId, Resume, Since};
use crate::session::{self, Closing, Session};

/// The per-socket read buffer (see `upgrade`). tungstenite zero-fills the whole buffer before its
/// first read, so every byte of it is resident for every idle socket; a frame longer than the buffer
/// makes it reserve that frame's length, so a small buffer costs a client frame only another read.
/// Client frames are pings (about 20 bytes on the wire) and the occasional `auth` or `resume`.
const READ_BUFFER_BYTES: usize = 256;

pub(crate) async fn upgrade(
    State(app): State<Arc<AppState>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !app.allowed_origins.is_empty() {
        let origin = headers.get(header::ORIGIN).and_then(|origin| origin.to_str().ok()).unwrap_or_default();
        if !app.allowed_origins.iter().any(|allowed| allowed == origin) {
            app.metrics.closed("origin");
            return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
        }
    }
    let extracted = auth::extract_token(&headers, uri.query());
    let since = Since::from_query(uri.query());
    let at_position = since.is_none() && resume::asks_for_position(uri.query());
    // tungstenite reads into a 128 KiB buffer by default, filled on the first read: it would be
    // most of an idle socket's memory (see `READ_BUFFER_BYTES`).
    let mut upgrade = upgrade
        .max_message_size(app.max_inbound_bytes)
        .max_frame_size(app.max_inbound_bytes)
        .read_buffer_size(READ_BUFFER_BYTES);
    if let Some(protocol) = extracted.as_ref().and_then(|token| token.echo_protocol.clone()) {
        upgrade = upgrade.protocols([protocol]);
    }
    if app.drain.is_draining() {
        return upgrade.on_upgrade(move |socket| serve(socket, app, Admission::Draining, None));
    }
    let verified = match &extracted {
        Some(token) => app.authenticator.verify_session(token.token.expose_secret()),
        None => Err(AuthError::Missing),
    };
    // Register before answering the handshake, and answer only once this instance listens to the
    // user's channel: from the moment the browser sees the socket open, nothing published for the
    // user is missed.
    let admission = match verified {
        Err(error) => Admission::Unauthenticated(error),
        Ok(verified) => match session::admit(&app, &verified.user, at_position).await {
            Err(QuotaExceeded) => Admission::OverQuota(verified.user),
            Ok((mut registration, seat, position)) => {
                if !registration.subscribed(SUBSCRIBE_WAIT).await {
                    tracing::warn!(
                        user = verified.user,
                        "the user's channel is not subscribed yet (Redis unreachable?); connecting anyway"
                    );
                }
                Admission::Admitted(verified, registration, seat, position)
            }
        },
    };
    upgrade.on_upgrade(move |socket| serve(socket, app, admission, since))
}

/// How long a handshake waits for the user's channel to be subscribed before going ahead.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);

/// What the handshake decided about a connection.
enum Admission {
    Unauthenticated(AuthError),
    OverQuota(String),
    /// The instance drains: the socket is closed at once with 1012 (see `drain`).
    Draining,
    /// Registered in the hub and, in production mode, counted across instances (the seat); opened
    /// without `since`, where the user's history stood just before (see `resume::position_frame`).
    Admitted(Verified, Registration, Option<session::Seat>, Option<NotificationId>),
}

/// The reply to the documented client ping.
const PONG: &str = r#"{"type":"pong"}"#;

/// How long a close frame may wait to be written. A client that stopped reading cannot take it (it
/// queues behind the notifications the client has not read), and must not keep its task forever.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

async fn close_with(socket: &mut WebSocket, close: CloseCode, reason: String) {
    let frame = CloseFrame { code: close.code, reason: Utf8Bytes::from(reason) };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
}

/// Why a socket task ends a connection that is otherwise working.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// A write to the client failed: nothing more can be told to it.
    Client,
    /// The slow-client policy (see `hub`): 4002, resume to get what was missed.
    Slow,
    /// The service is shutting down without a drain (or after it): 1012, reconnect after this
    /// many milliseconds.
    Shutdown(u64),
    /// The token expired and was not refreshed: 4001.
    Expired,
    /// A drain or an operator ordered the socket closed: 1012 or 4003.
    Ordered(Closing),
    /// The client has not answered pings, or has not taken a write, for the idle timeout: 1001.
    Idle,
    /// The client sent a frame or message over `--max-inbound-bytes`: 1009.
    TooBig,
}

impl Stop {
    /// Sends the close frame this stop calls for; returns the reason for metrics.
    async fn close(self, socket: &mut WebSocket) -> &'static str {
        match self {
            Stop::Client => "client",
            Stop::Slow => {
                let reason =
                    reason(close::SLOW_CONSUMER, "Too many undelivered notifications; reconnect with since=<last id>");
                close_with(socket, close::SLOW_CONSUMER, reason).await;
                "slow_client"
            }
            Stop::Shutdown(retry_after_ms) => {
                close_with(socket, close::SERVICE_RESTART, session::restart_reason(retry_after_ms)).await;
                "shutdown"
            }
            Stop::Expired => {
                close_with(socket, close::TOKEN_EXPIRED, Session::expired_reason()).await;
                "expired"
            }
            Stop::Ordered(closing) => {
                let (code, reason) = closing.frame();
                close_with(socket, code, reason).await;
                closing.metric()
            }
            Stop::Idle => {
                close_with(socket, close::IDLE_TIMEOUT, reason(close::IDLE_TIMEOUT, "No answer to pings")).await;
                "idle"
            }
            Stop::TooBig => {
                let reason =
                    reason(close::MESSAGE_TOO_BIG, "Client messages are limited in size; only pings are expected");
                close_with(socket, close::MESSAGE_TOO_BIG, reason).await;
                "too_big"
            }
        }
    }
}

/// Writes `message` unless the connection must end first. A client that stops reading fills the TCP
/// buffers, and a write then waits for it indefinitely while nothing else in the socket loop runs;
/// so every write races shutdown and the slow-client policy, and a write the client has not taken
/// within the idle timeout ends the connection like silence does.
async fn write(socket: &mut WebSocket, message: Message, slow: &CancellationToken, app: &AppState) -> Result<(), Stop> {
    tokio::select! {
        biased;
        () = app.shutdown.cancelled() => Err(Stop::Shutdown(app.drain.retry_after_ms())),
        () = slow.cancelled() => Err(Stop::Slow),
        written = socket.send(message) => written.map_err(|_| Stop::Client),
        () = tokio::time::sleep(app.idle_timeout) => Err(Stop::Idle),
    }
}

/// The JSON reason of a close with `close`'s `error_code`.
fn reason(close: CloseCode, message: &str) -> String {
    serde_json::json!({ "error_code": close.error_code.unwrap_or_default(), "message": message }).to_string()
}

async fn serve(mut socket: WebSocket, app: Arc<AppState>, admission: Admission, since: Option<Since>) {
    let (verified, mut registration, _seat, position) = match admission {
        Admission::Admitted(verified, registration, seat, position) => (verified, registration, seat, position),
        Admission::Draining => {
            app.metrics.closed("draining");
            close_with(&mut socket, close::SERVICE_RESTART, session::restart_reason(app.drain.retry_after_ms())).await;
            return;
        }
        Admission::Unauthenticated(error) => {
            tracing::info!(error = %error, "connection rejected");
            app.metrics.closed("auth");
            close_with(&mut socket, close::POLICY, error.close_reason()).await;
            return;
        }
        Admission::OverQuota(user) => {
            tracing::info!(user, "connection refused: too many connections");
            app.metrics.closed("quota");
            close_with(&mut socket, close::QUOTA_EXCEEDED, reason(close::QUOTA_EXCEEDED, "Connection limit exceeded"))
                .await;
            return;
        }
    };
    let mut session = Session::new(&verified, app.authenticator.leeway_seconds());
    let user = verified.user;
    tracing::debug!(user, "connected");
    let mut pings = tokio::time::interval(app.ping_interval);
    pings.reset();
    let mut last_heard = Instant::now();
    let connected_ms = now_unix_ms();
    let mut resume = position.map_or_else(Resume::default, Resume::at);
    let mut pending_position = position;
    let mut pending_resume = since;
    // A live notification taken from the queue after the subscription was interrupted: written
    // (unless the catch-up wrote it) once the socket caught up.
    let mut held: Option<Outbound> = None;
    let why = loop {
        if let Some(position) = pending_position.take() {
            let frame = Message::Text(Utf8Bytes::from(resume::position_frame(position)));
            if let Err(stop) = write(&mut socket, frame, &registration.slow, &app).await {
                break stop.close(&mut socket).await;
            }
        }
        if let Some(since) = pending_resume.take()
            && let Err(stop) = replay(&mut socket, &app, &user, &since, &mut resume, &registration.slow).await
        {
            break stop.close(&mut socket).await;
        }
        if !registration.catch_up.is_pending()
            && let Some(outbound) = held.take()
            && let Err(stop) = write_live(&mut socket, &app, outbound, &mut resume, &registration.slow).await
        {
            break stop.close(&mut socket).await;
        }
        tokio::select! {
            () = app.shutdown.cancelled() => break Stop::Shutdown(app.drain.retry_after_ms()).close(&mut socket).await,
            () = registration.slow.cancelled() => break Stop::Slow.close(&mut socket).await,
            closing = registration.order.given() => break Stop::Ordered(closing).close(&mut socket).await,
            () = session.expired() => break Stop::Expired.close(&mut socket).await,
            interruption = registration.catch_up.ready() => {
                // Recorded before the history is read: an interruption that starts meanwhile holds
                // live delivery again.
                registration.catch_up.done(interruption);
                if let Err(stop) = catch_up(&mut socket, &app, &user, connected_ms, &mut resume, &registration.slow).await {
                    break stop.close(&mut socket).await;
                }
            }
            outbound = registration.receiver.recv(), if held.is_none() && !registration.catch_up.is_pending() => {
                let Some(outbound) = outbound else { break "server" };
                if registration.catch_up.is_pending() {
                    // The subscription was interrupted while this `select!` waited (its guard was
                    // read before): written now, this newer notification would overtake the gap,
                    // and the catch-up would start after it.
                    held = Some(outbound);
                    continue;
                }
                if let Err(stop) = write_live(&mut socket, &app, outbound, &mut resume, &registration.slow).await {
                    break stop.close(&mut socket).await;
                }
            }
            frame = socket.recv() => {
                let frame = match frame {
                    Some(Ok(frame)) => frame,
                    Some(Err(error)) if is_too_big(&error) => break Stop::TooBig.close(&mut socket).await,
                    Some(Err(_)) | None => break "client",
                };
                last_heard = Instant::now();
                match frame {
                    Message::Text(text) if is_ping(&text) => {
                        let pong = Message::Text(Utf8Bytes::from_static(PONG));
                        if let Err(stop) = write(&mut socket, pong, &registration.slow, &app).await {
                            break stop.close(&mut socket).await;
                        }
                    }
                    Message::Text(text) => {
                        let resuming = (!resume.done && pending_resume.is_none())
                            .then(|| resume::resume_frame(&text))
                            .flatten();
                        if resuming.is_some() {
                            pending_resume = resuming;
                        } else if let Some(answer) = session.refresh(&text, &app.authenticator)
                            && let Err(stop) = write(&mut socket, Message::Text(answer), &registration.slow, &app).await
                        {
                            break stop.close(&mut socket).await;
                        }
                    }
                    Message::Close(_) => break "client",
                    // Other frames (pongs, unknown text) only prove the client is alive.
                    _ => {}
                }
            }
            _ = pings.tick() => {
                if last_heard.elapsed() > app.idle_timeout {
                    break Stop::Idle.close(&mut socket).await;
                }
                let ping = Message::Ping(bytes::Bytes::new());
                if let Err(stop) = write(&mut socket, ping, &registration.slow, &app).await {
                    break stop.close(&mut socket).await;
                }
            }
        }
    };
    app.metrics.closed(why);
    tracing::debug!(user, why, "disconnected");
}

/// Writes a live notification unless a resume's replay or a catch-up already wrote it.
async fn write_live(
    socket: &mut WebSocket,
    app: &AppState,
    outbound: Outbound,
    resume: &mut Resume,
    slow: &CancellationToken,
) -> Result<(), Stop> {
    if !resume.is_new(resume::id_of(outbound.message.as_bytes())) {
        return Ok(());
    }
    write(socket, Message::Text(outbound.message), slow, app).await?;
    app.metrics.delivered.inc();
    if let Some(origin) = outbound.origin_unix_ms {
        let elapsed_ms = now_unix_ms().saturating_sub(origin);
        app.metrics.kafka_to_socket_seconds.observe(elapsed_ms as f64 / 1000.0);
    }
    Ok(())
}

/// Answers a resume: reads the user's history after `since` and writes the `resumed` frame and
/// the missed notifications (see `resume::Resume::replay`).
async fn replay(
    socket: &mut WebSocket,
    app: &AppState,
    user: &str,
    since: &Since,
    resume: &mut Resume,
    slow: &CancellationToken,
) -> Result<(), Stop> {
    let (frame, missed) = resume.replay(read_history(app, user, since).await);
    write_history(socket, app, Some(frame), missed, slow).await
}

/// How far back a socket that has been written nothing looks when it catches up: a notification
/// published for it while the subscriber was away carries the Kafka timestamp of its record, and
/// records older than the consumer's default `--max-event-age-seconds` are not delivered.
const CATCH_UP_LOOKBACK_MS: u64 = 300_000;

/// Fetches from the user's history what was published while this instance's Redis subscription
/// was interrupted, and writes what the socket never got (see `resume::Resume::catch_up`).
async fn catch_up(
    socket: &mut WebSocket,
    app: &AppState,
    user: &str,
    connected_ms: u64,
    resume: &mut Resume,
    slow: &CancellationToken,
) -> Result<(), Stop> {
    let since = resume
        .last()
        .unwrap_or(resume::NotificationId { ms: connected_ms.saturating_sub(CATCH_UP_LOOKBACK_MS), seq: 0 });
    let (frame, missed) = resume.catch_up(read_history(app, user, &Since::Id(since)).await);
    write_history(socket, app, frame, missed, slow).await
}

/// How long a history read waits before each retry. A catch-up runs just as Redis comes back,
/// when it may still be loading its data or busy with the backlog of publishes.
const HISTORY_RETRIES: [Duration; 4] =
    [Duration::from_millis(100), Duration::from_millis(200), Duration::from_millis(400), Duration::from_millis(800)];

/// The user's history after `since`, read again a few times when Redis does not answer. One that
/// still cannot be read is empty and not recovered: the client is told `recovered: false` and
/// refreshes its state.
async fn read_history(app: &AppState, user: &str, since: &Since) -> resume::History {
    let mut retries = HISTORY_RETRIES.iter();
    loop {
        match app.pipeline.backend().history(user, since).await {
            Ok(history) => return history,
            Err(error) => match retries.next() {
                Some(wait) if !app.shutdown.is_cancelled() => {
                    tracing::debug!(user, %error, "cannot read the user's history yet; reading it again");
                    tokio::time::sleep(*wait).await;
                }
                _ => {
                    tracing::warn!(user, %error, "cannot read the user's history; the client is told recovered: false");
                    return resume::History::default();
                }
            },
        }
    }
}

/// Writes a `resumed` frame (when there is one) and then the notifications read from the history.
async fn write_history(
    socket: &mut WebSocket,
    app: &AppState,
    frame: Option<String>,
    missed: Vec<String>,
    slow: &CancellationToken,
) -> Result<(), Stop> {
    if let Some(frame) = frame {
        write(socket, Message::Text(Utf8Bytes::from(frame)), slow, app).await?;
    }
    for message in missed {
        write(socket, Message::Text(Utf8Bytes::from(message)), slow, app).await?;
        app.metrics.delivered.inc();
    }
    Ok(())
}

/// Whether a read failed because the client's frame or message is over the configured limit
/// (tungstenite refuses it before reading its payload). The connection can still be closed with
/// 1009: tungstenite's state stays open for writing after this error.
fn is_too_big(error: &axum::Error) -> bool {
    let cause = std::error::Error::source(error).and_then(|cause| cause.downcast_ref::<tungstenite::Error>());
    matches!(cause, Some(tungstenite::Error::Capacity(tungstenite::error::CapacityError::MessageTooLong { .. })))
}

/// Whether a client frame is the documented application-level ping, `{"type":"ping"}`.
fn is_ping(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Frame<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<&'a str>,
    }
    serde_json::from_str::<Frame<'_>>(text).is_ok_and(|frame| frame.kind == Some("ping"))
}
