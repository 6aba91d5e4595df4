//! The WebSocket client's side of herald's contract: where the token goes, and how closes and
//! errors are worded so that equal causes group together in a report.

use serde::Deserialize;
use tokio_tungstenite::tungstenite;

/// The URL a connection opens: `url` with `token=` added to its query.
pub fn connection_url(url: &str, token: &str) -> String {
    // JWTs are base64url segments joined by dots: nothing in them needs escaping in a query.
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}token={token}")
}

/// A close frame as `CODE ERROR_CODE` when the reason is herald's JSON, else `CODE reason`.
pub fn describe_close(frame: Option<&tungstenite::protocol::CloseFrame>) -> String {
    let Some(frame) = frame else { return "closed by the server without a code".to_owned() };
    let code = u16::from(frame.code);
    #[derive(Deserialize)]
    struct Reason {
        error_code: String,
    }
    match serde_json::from_str::<Reason>(&frame.reason) {
        Ok(reason) => format!("closed by the server: {code} {}", reason.error_code),
        Err(_) if frame.reason.is_empty() => format!("closed by the server: {code}"),
        Err(_) => format!("closed by the server: {code} {}", frame.reason.as_str()),
    }
}

/// A handshake or read error, worded so that equal causes group together in the report.
pub fn describe_error(error: &tungstenite::Error) -> String {
    match error {
        tungstenite::Error::Http(response) => format!("handshake refused: HTTP {}", response.status()),
        tungstenite::Error::Io(io) => format!("io: {io}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use tungstenite::protocol::CloseFrame;
    use tungstenite::protocol::frame::coding::CloseCode;

    use super::*;

    #[test]
    fn close_frames_are_grouped_by_code_and_error_code() {
        let frame = |code: u16, reason: &str| CloseFrame { code: CloseCode::from(code), reason: reason.into() };
        let quota = frame(4000, r#"{"error_code":"QUOTA_EXCEEDED","message":"Connection limit exceeded"}"#);
        assert_eq!(describe_close(Some(&quota)), "closed by the server: 4000 QUOTA_EXCEEDED");
        assert_eq!(describe_close(Some(&frame(1001, ""))), "closed by the server: 1001");
        assert_eq!(describe_close(Some(&frame(1011, "oops"))), "closed by the server: 1011 oops");
        assert_eq!(describe_close(None), "closed by the server without a code");
    }

    #[test]
    fn token_goes_into_the_query() {
        assert_eq!(connection_url("ws://h/ws", "t.o.k"), "ws://h/ws?token=t.o.k");
        assert_eq!(connection_url("ws://h/ws/?lang=sv", "t.o.k"), "ws://h/ws/?lang=sv&token=t.o.k");
    }
}
