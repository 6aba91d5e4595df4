//! `/ws?token=JWT`: the token is checked before the upgrade is answered and the socket registered
//! in the hub, so nothing sent to the user after the handshake is missed; then one task per socket
//! writes its queue and reads client frames (a `{"type":"ping"}` is answered with a pong, a close
//! ends the socket).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::App;

/// The per-socket read buffer, herald's (`service/src/ws.rs`): tungstenite's default of 128 KiB is
/// zero-filled on the first read and would dominate an idle socket's memory.
const READ_BUFFER_BYTES: usize = 256;

/// Client frames are pings; anything bigger than this is refused by tungstenite.
const MAX_INBOUND_BYTES: usize = 4096;

const PONG: &str = r#"{"type":"pong"}"#;

/// How long a close frame may wait to be written: a client that stopped reading cannot take it,
/// and must not keep its task forever (herald's `CLOSE_TIMEOUT`).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks HS256 tokens as herald does: signature, `exp`, and `aud`/`iss` when configured.
pub(crate) struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

impl Verifier {
    pub(crate) fn new(secret: &str, audience: Option<&str>, issuer: Option<&str>) -> Verifier {
        let mut validation = Validation::new(Algorithm::HS256);
        match audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = issuer {
            validation.set_issuer(&[issuer]);
        }
        Verifier { key: DecodingKey::from_secret(secret.as_bytes()), validation }
    }

    /// The token's user (`sub`), or why it is refused.
    pub(crate) fn user(&self, token: &str) -> Result<String, String> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|error| format!("invalid token: {error}"))?
            .claims;
        if claims.sub.is_empty() || claims.sub == "unknown" {
            return Err(format!("the token's sub {:?} names no user", claims.sub));
        }
        Ok(claims.sub)
    }
}

/// The `token` query parameter. Tokens are base64url segments joined by dots, so the value needs
/// no unescaping.
fn token_from_query(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|pair| pair.strip_prefix("token="))
}

/// A socket's place in the hub, removed when dropped: when the socket task ends, and also when
/// the upgrade fails and the task never runs.
struct Registration {
    app: Arc<App>,
    user: String,
    socket: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.app.hub.deregister(&self.user, self.socket);
    }
}

pub(crate) async fn upgrade(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    upgrade: WebSocketUpgrade,
) -> Response {
    let upgrade = upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(MAX_INBOUND_BYTES)
        .max_frame_size(MAX_INBOUND_BYTES);
    let user = match token_from_query(query.as_deref()) {
        Some(token) => app.verifier.user(token),
        None => Err("no token: connect to /ws?token=JWT".to_owned()),
    };
    match user {
        // A browser cannot see an HTTP error at the handshake: upgrade, then close with 1008.
        Err(message) => upgrade.on_upgrade(move |socket| refuse(socket, message)),
        Ok(user) => {
            let (socket, queue) = app.hub.register(&user, app.send_queue);
            let registration = Registration { app, user, socket };
            upgrade.on_upgrade(move |socket| serve(socket, registration, queue))
        }
    }
}

async fn refuse(mut socket: WebSocket, message: String) {
    let reason = serde_json::json!({ "error_code": "AUTHENTICATION_FAILED", "message": message }).to_string();
    let frame = CloseFrame { code: 1008, reason: Utf8Bytes::from(reason) };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
}

/// Writes the socket's queue and reads its frames until either side ends it.
async fn serve(mut socket: WebSocket, registration: Registration, mut queue: mpsc::Receiver<Utf8Bytes>) {
    loop {
        tokio::select! {
            message = queue.recv() => match message {
                Some(text) => {
                    if socket.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                None => {
                    // The hub dropped this socket's queue because it was full.
                    let reason = r#"{"error_code":"SLOW_CONSUMER","message":"the send queue overflowed"}"#;
                    let frame = CloseFrame { code: 4002, reason: Utf8Bytes::from_static(reason) };
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
                    break;
                }
            },
            frame = socket.recv() => match frame {
                Some(Ok(Message::Text(text))) if is_ping(&text) => {
                    if socket.send(Message::Text(Utf8Bytes::from_static(PONG))).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    drop(registration);
}

fn is_ping(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Frame<'a> {
        #[serde(rename = "type", borrow)]
        kind: &'a str,
    }
    serde_json::from_str::<Frame<'_>>(text).is_ok_and(|frame| frame.kind == "ping")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_query() {
        assert_eq!(token_from_query(Some("token=a.b.c")), Some("a.b.c"));
        assert_eq!(token_from_query(Some("since=1-0&token=a.b.c")), Some("a.b.c"));
        assert_eq!(token_from_query(Some("since=1-0")), None);
        assert_eq!(token_from_query(None), None);
    }

    #[test]
    fn tokens_are_checked_like_herald_checks_them() {
        let verifier = Verifier::new("s3cret", Some("aud"), Some("iss"));
        let good = herald_loadgen::token::sign("s3cret", "teacher-1", Some("aud"), Some("iss"), 60).unwrap();
        assert_eq!(verifier.user(&good).unwrap(), "teacher-1");
        for bad in [
            herald_loadgen::token::sign("other", "teacher-1", Some("aud"), Some("iss"), 60).unwrap(),
            herald_loadgen::token::sign("s3cret", "teacher-1", Some("other"), Some("iss"), 60).unwrap(),
            herald_loadgen::token::sign("s3cret", "unknown", Some("aud"), Some("iss"), 60).unwrap(),
            "not a token".to_owned(),
        ] {
            assert!(verifier.user(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pings_are_recognised() {
        assert!(is_ping(r#"{"type":"ping"}"#));
        assert!(!is_ping(r#"{"type":"resume","since":"1-0"}"#));
        assert!(!is_ping("ping"));
    }
}
