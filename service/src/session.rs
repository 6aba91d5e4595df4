//! What a socket lives by besides its notifications: the expiry of its token, the in-band token
//! refresh, and orders to close it that come from outside its task (a drain, an operator).
//!
//! **Token expiry.** A socket is closed with 4001 `TOKEN_EXPIRED` when its token's `exp` plus the
//! configured leeway (`--jwt-leeway-seconds`, the same skew verification tolerates) has passed,
//! unless the client refreshed it in band first: `{"type":"auth","token":"<jwt>"}`. The new token is
//! verified exactly like the one that opened the socket (key, algorithm, time claims, `aud`, `iss`,
//! `sub`) and must name the same `sub`; herald answers `{"type":"auth","ok":true,"exp":<exp>}` and
//! the socket then lives by the new token's `exp` (earlier or later than the old one: the newest
//! token is the one that counts). Otherwise it answers `{"type":"auth","ok":false,"error_code":
//! ...,"message":...}` and the old deadline stands. The deadline is kept in wall-clock time and
//! checked again when the timer fires, so a timer that fires early (the monotonic clock and the
//! wall clock drift, or a far `exp` was capped) never closes a socket before its time.
//!
//! **Close orders.** A drain (see `drain`) and an operator's disconnect (see `admin`) reach a socket
//! through its [`CloseOrder`], which the hub keeps beside the connection. The first order given
//! wins; the socket task watches it like it watches the shutdown token, and closes with the code
//! the order names.

use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use herald::runtime::protocol::{CloseCode, close};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::auth::{AuthError, Authenticator, Verified};
pub(crate) use crate::backend::Seat;
use crate::backend::now_unix_ms;
use crate::hub::{QuotaExceeded, Registration};
use crate::resume::NotificationId;

/// The longest single timer wait: a token valid for years is re-armed, not slept on at once
/// (tokio caps far deadlines anyway, and an `Instant` far in the future can overflow).
const LONGEST_TIMER: Duration = Duration::from_secs(24 * 3600);

/// The `error_code` of an in-band refresh whose token names another user.
pub(crate) const SUBJECT_MISMATCH: &str = "TOKEN_SUBJECT_MISMATCH";

/// Admits a socket of `user`: counts it across instances (production mode) and, with
/// `at_position` (a socket opened with `?position=1` and without `since`), reads where the user's history stands, both at
/// once; then registers it in this instance's hub. The position is read before the socket is
/// registered, so every notification published after it reaches the socket (see
/// `resume::position_frame`); it is `None` when the history cannot be read within
/// [`POSITION_WAIT`]. Refused when either count is at `--max-connections-per-user`; a refused socket
/// holds no seat.
pub(crate) async fn admit(
    app: &AppState,
    user: &str,
    at_position: bool,
) -> Result<(Registration, Option<Seat>, Option<NotificationId>), QuotaExceeded> {
    let seat = async {
        match &app.presence {
            Some(presence) => presence.take_seat(user).await.map(Some),
            None => Ok(None),
        }
    };
    let position = async {
        if !at_position {
            return None;
        }
        match tokio::time::timeout(POSITION_WAIT, app.pipeline.backend().position(user)).await {
            Ok(Ok(position)) => Some(position),
            Ok(Err(error)) => {
                tracing::warn!(user, %error, "cannot read where the user's history stands; no position frame");
                None
            }
            Err(_) => {
                tracing::warn!(user, "the user's history did not answer in time; no position frame");
                None
            }
        }
    };
    let (seat, position) = tokio::join!(seat, position);
    let seat = seat?;
    Ok((app.hub.register(user)?, seat, position))
}

/// How long admitting a socket waits for the position of its user's history.
const POSITION_WAIT: Duration = Duration::from_secs(2);

/// One socket's token lifetime.
pub(crate) struct Session {
    user: String,
    leeway_ms: u64,
    /// When the socket must close, in milliseconds since the Unix epoch.
    deadline_unix_ms: u64,
    /// Armed for the deadline (or [`LONGEST_TIMER`], whichever comes first).
    timer: Pin<Box<Sleep>>,
}

impl Session {
    /// The session of a socket opened with `verified`.
    pub(crate) fn new(verified: &Verified, leeway_seconds: u64) -> Self {
        let leeway_ms = leeway_seconds.saturating_mul(1000);
        let deadline_unix_ms = verified.expires_at.saturating_mul(1000).saturating_add(leeway_ms);
        let timer = Box::pin(tokio::time::sleep(until(deadline_unix_ms)));
        Session { user: verified.user.clone(), leeway_ms, deadline_unix_ms, timer }
    }

    /// Completes when the token has expired (its `exp` plus the leeway is past).
    pub(crate) async fn expired(&mut self) {
        loop {
            self.timer.as_mut().await;
            if now_unix_ms() >= self.deadline_unix_ms {
                return;
            }
            let next = tokio::time::Instant::now() + until(self.deadline_unix_ms);
            self.timer.as_mut().reset(next);
        }
    }

    /// Handles a client text frame if it is an `auth` frame, and returns the answer to send; `None`
    /// for any other frame.
    pub(crate) fn refresh(&mut self, frame: &str, authenticator: &Authenticator) -> Option<Utf8Bytes> {
        let token = auth_frame(frame)?;
        let answer = match authenticator.verify_session(token.expose_secret()) {
            Err(error) => refused(error.code(), &error.to_string()),
            Ok(verified) if verified.user != self.user => {
                tracing::info!(user = self.user, "in-band token refresh refused: the token names another user");
                refused(SUBJECT_MISMATCH, "token names another user (sub); reconnect to change users")
            }
            Ok(verified) => {
                self.deadline_unix_ms = verified.expires_at.saturating_mul(1000).saturating_add(self.leeway_ms);
                let next = tokio::time::Instant::now() + until(self.deadline_unix_ms);
                self.timer.as_mut().reset(next);
                serde_json::json!({ "type": "auth", "ok": true, "exp": verified.expires_at }).to_string()
            }
        };
        Some(Utf8Bytes::from(answer))
    }

    /// The reason of the 4001 close.
    pub(crate) fn expired_reason() -> String {
        serde_json::json!({
            "error_code": AuthError::Expired.code(),
            "message": "Token expired; send an auth frame before exp, or reconnect with a new token",
        })
        .to_string()
    }
}

fn refused(error_code: &str, message: &str) -> String {
    serde_json::json!({ "type": "auth", "ok": false, "error_code": error_code, "message": message }).to_string()
}

/// How long from now until `deadline_unix_ms`, at most [`LONGEST_TIMER`].
fn until(deadline_unix_ms: u64) -> Duration {
    Duration::from_millis(deadline_unix_ms.saturating_sub(now_unix_ms())).min(LONGEST_TIMER)
}

/// The token of an `{"type":"auth","token":...}` frame: `Some` for every frame whose type is
/// `auth` (an empty token when it has none, which verification refuses as missing), `None` for
/// any other frame.
fn auth_frame(text: &str) -> Option<SecretString> {
    #[derive(serde::Deserialize)]
    struct Frame<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<&'a str>,
        #[serde(default)]
        token: Option<serde_json::Value>,
    }
    let frame = serde_json::from_str::<Frame<'_>>(text).ok()?;
    if frame.kind != Some("auth") {
        return None;
    }
    let token = match frame.token {
        Some(serde_json::Value::String(token)) => token,
        _ => String::new(),
    };
    Some(SecretString::from(token))
}

/// Why something outside a socket's task closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    /// The instance drains: 1012 `SERVICE_RESTART`, reconnect after `retry_after_ms`.
    Restart { retry_after_ms: u64 },
    /// An operator disconnected the user: 4003 `DISCONNECTED`.
    Disconnected,
}

impl Closing {
    /// The close code and its JSON reason.
    pub(crate) fn frame(self) -> (CloseCode, String) {
        match self {
            Closing::Restart { retry_after_ms } => (close::SERVICE_RESTART, restart_reason(retry_after_ms)),
            Closing::Disconnected => (
                close::DISCONNECTED,
                serde_json::json!({
                    "error_code": close::DISCONNECTED.error_code,
                    "message": "An operator disconnected this user",
                })
                .to_string(),
            ),
        }
    }

    /// The label of `herald_connections_closed_total`.
    pub(crate) fn metric(self) -> &'static str {
        match self {
            Closing::Restart { .. } => "shutdown",
            Closing::Disconnected => "disconnected",
        }
    }
}

/// The reason of a 1012 close: reconnect (to another instance) after `retry_after_ms`.
pub(crate) fn restart_reason(retry_after_ms: u64) -> String {
    serde_json::json!({
        "error_code": close::SERVICE_RESTART.error_code,
        "message": "Server restarting; reconnect",
        "retry_after_ms": retry_after_ms,
    })
    .to_string()
}

/// An order to close one socket, given at most once; the hub keeps it beside the connection.
#[derive(Default)]
pub(crate) struct CloseOrder {
    given: CancellationToken,
    closing: OnceLock<Closing>,
}

impl CloseOrder {
    /// Orders the socket closed; false when an order was already given (the first one stands).
    pub(crate) fn give(&self, closing: Closing) -> bool {
        let first = self.closing.set(closing).is_ok();
        self.given.cancel();
        first
    }

    /// Whether an order was given.
    pub(crate) fn is_given(&self) -> bool {
        self.closing.get().is_some()
    }

    /// Completes with the order once one is given.
    pub(crate) async fn given(&self) -> Closing {
        self.given.cancelled().await;
        // `give` sets the order before cancelling, so it is there.
        self.closing.get().copied().unwrap_or(Closing::Disconnected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(frame: &str, expected: Option<&str>) {
        assert_eq!(auth_frame(frame).map(|token| token.expose_secret().to_owned()).as_deref(), expected, "{frame}");
    }

    #[test]
    fn only_auth_frames_carry_a_token() {
        check(r#"{"type":"auth","token":"a.b.c"}"#, Some("a.b.c"));
        check(r#"{"token":"a.b.c","type":"auth","extra":1}"#, Some("a.b.c"));
        check(r#"{"type":"auth"}"#, Some(""));
        check(r#"{"type":"auth","token":5}"#, Some(""));
        check(r#"{"type":"ping"}"#, None);
        check(r#"{"type":"AUTH","token":"a.b.c"}"#, None);
        check(r#"{"token":"a.b.c"}"#, None);
        check("auth", None);
        check("", None);
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let reasons = [
            Session::expired_reason(),
            Closing::Disconnected.frame().1,
            Closing::Restart { retry_after_ms: u64::MAX }.frame().1,
        ];
        for reason in reasons {
            assert!(reason.len() <= 123, "{} bytes: {reason}", reason.len());
            let value: serde_json::Value = serde_json::from_str(&reason).unwrap();
            assert!(value["error_code"].is_string() && value["message"].is_string(), "{reason}");
        }
    }

    #[tokio::test]
    async fn the_first_close_order_stands() {
        let order = CloseOrder::default();
        assert!(!order.is_given());
        assert!(order.give(Closing::Disconnected));
        assert!(!order.give(Closing::Restart { retry_after_ms: 5 }));
        assert!(order.is_given());
        assert_eq!(order.given().await, Closing::Disconnected);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// The in-band auth frame parser answers any client text without panicking.
        #[test]
        fn the_auth_frame_parser_never_panics(text in ".{0,64}") {
            let _ = auth_frame(&text);
            let _ = auth_frame(&format!(r#"{{"type":"auth","token":{}}}"#, serde_json::Value::String(text.clone())));
        }
    }
}
