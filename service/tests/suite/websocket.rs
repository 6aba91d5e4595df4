//! The WebSocket endpoint and the HTTP routes beside it, against a real herald process in embedded
//! mode (no Kafka, no Redis): who may connect and how the others are refused, what a connection
//! receives, and every way a connection ends (1008 auth, 4000 quota, 1001 idle, 4002 slow client,
//! 1012 restart, oversized frames).
//!
//! Each test starts its own herald with the flags it is about, so metrics and connection counts
//! belong to that test alone. Waits are on conditions with deadlines: a `{"type":"ping"}` answered
//! with `{"type":"pong"}` proves a socket is authenticated and registered (herald answers only in
//! the loop that runs after both), and a metric proves what the server did. The only waits on time
//! are where time is the feature: server pings and the idle timeout.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::harness::{
    Client, DEADLINE, Herald, Received, SECRET, Scope, class_created, envelope, fixtures, now, park_files, token,
    token_with, wait_until,
};

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_closed_with_1008_and_a_short_json_reason() {
    let herald = Herald::embedded("ws-tokens", &[]).await;
    let user = Scope::new("ws-tokens").user("teacher");
    let table = TokenTable::new(herald.ws_url(""));
    let at = now();
    let with = |changes: Value| hs256(claims(&user, changes));

    table.check_request("no token", table.url(""), Some("TOKEN_MISSING")).await;
    for (case, token, expected) in [
        ("valid", token(&user), ACCEPTED),
        ("expired 10 s ago, within the 30 s leeway", with(json!({ "exp": at - 10 })), ACCEPTED),
        // Without a configured audience or issuer, herald ignores both.
        ("some aud and iss", with(json!({ "aud": "x", "iss": "y" })), ACCEPTED),
        ("empty token", String::new(), Some("TOKEN_MISSING")),
        ("garbage", "garbage".into(), Some("TOKEN_MALFORMED")),
        ("three segments of garbage", "a.b.c".into(), Some("TOKEN_MALFORMED")),
        ("expired", with(json!({ "exp": at - 3600 })), Some("TOKEN_EXPIRED")),
        ("nbf in the future", with(json!({ "nbf": at + 3600 })), Some("TOKEN_NOT_YET_VALID")),
        ("iat in the future", with(json!({ "iat": at + 3600 })), Some("TOKEN_ISSUED_IN_FUTURE")),
        ("wrong secret", token_with("not-the-secret", claims(&user, json!({}))), Some("TOKEN_INVALID_SIGNATURE")),
        ("signature of another token", with_signature_of(&token(&user), &token("x")), Some("TOKEN_INVALID_SIGNATURE")),
        ("alg none, no signature", alg_none(&token(&user), false), Some("TOKEN_WRONG_ALGORITHM")),
        ("alg none, signature kept", alg_none(&token(&user), true), Some("TOKEN_WRONG_ALGORITHM")),
        ("HS512 with the right secret", hs512(claims(&user, json!({}))), Some("TOKEN_WRONG_ALGORITHM")),
        ("missing exp", with(json!({ "exp": null })), Some("TOKEN_MISSING_CLAIM")),
        ("exp as a string", with(json!({ "exp": "tomorrow" })), Some("TOKEN_MISSING_CLAIM")),
        ("missing sub", with(json!({ "sub": null })), Some("TOKEN_MISSING_CLAIM")),
        ("empty sub", with(json!({ "sub": "" })), Some("TOKEN_INVALID_SUBJECT")),
        ("numeric sub", with(json!({ "sub": 42 })), Some("TOKEN_INVALID_SUBJECT")),
        ("the placeholder sub \"unknown\"", with(json!({ "sub": "unknown" })), Some("TOKEN_PLACEHOLDER_SUBJECT")),
    ] {
        table.check(case, &token, expected).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_and_issuer_are_required_when_configured() {
    let flags = ["--jwt-audience", "huleedu-platform", "--jwt-issuer", "huleedu-identity-service"];
    let herald = Herald::embedded("ws-audience", &flags).await;
    let user = Scope::new("ws-audience").user("teacher");
    let table = TokenTable::new(herald.ws_url(""));
    let with = |changes: Value| {
        let mut claims = claims(&user, json!({ "aud": "huleedu-platform", "iss": "huleedu-identity-service" }));
        merge(&mut claims, changes);
        hs256(claims)
    };

    for (case, token, expected) in [
        ("aud and iss as configured", with(json!({})), ACCEPTED),
        ("aud as a list naming the platform", with(json!({ "aud": ["other", "huleedu-platform"] })), ACCEPTED),
        ("wrong aud", with(json!({ "aud": "huleedu-admin" })), Some("TOKEN_WRONG_AUDIENCE")),
        ("wrong iss", with(json!({ "iss": "someone-else" })), Some("TOKEN_WRONG_ISSUER")),
        ("missing aud", with(json!({ "aud": null })), Some("TOKEN_MISSING_CLAIM")),
        ("missing iss", with(json!({ "iss": null })), Some("TOKEN_MISSING_CLAIM")),
        ("expired, aud and iss right", with(json!({ "exp": now() - 3600 })), Some("TOKEN_EXPIRED")),
    ] {
        table.check(case, &token, expected).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_key_pins_its_algorithm() {
    let keys = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
    let read = |name: &str| std::fs::read(keys.join(name)).unwrap();
    let rs256_key = EncodingKey::from_rsa_pem(&read("rs256-private.pem")).unwrap();
    let es256_key = EncodingKey::from_ec_pem(&read("es256-private.pem")).unwrap();
    let user = Scope::new("ws-public-key").user("teacher");
    let valid = claims(&user, json!({}));

    for (algorithm, key, other_algorithm, other_key) in [
        (Algorithm::RS256, &rs256_key, Algorithm::ES256, &es256_key),
        (Algorithm::ES256, &es256_key, Algorithm::RS256, &rs256_key),
    ] {
        let name = format!("{algorithm:?}");
        let public_key = keys.join(format!("{}-public.pem", name.to_lowercase()));
        let public_pem = String::from_utf8(std::fs::read(&public_key).unwrap()).unwrap();
        let key_path = public_key.to_string_lossy().into_owned();
        let herald = Herald::embedded(&name, &["--jwt-algorithm", &name, "--jwt-public-key", &key_path]).await;
        let table = TokenTable::new(herald.ws_url(""));
        let sign = |claims: Value| signed(algorithm, key, claims);

        for (case, token, expected) in [
            ("signed with the private key", sign(valid.clone()), ACCEPTED),
            (
                "HS256 with the public key PEM as secret",
                token_with(&public_pem, valid.clone()),
                Some("TOKEN_WRONG_ALGORITHM"),
            ),
            ("HS256 with the test secret", token(&user), Some("TOKEN_WRONG_ALGORITHM")),
            (
                "signed with the other algorithm",
                signed(other_algorithm, other_key, valid.clone()),
                Some("TOKEN_WRONG_ALGORITHM"),
            ),
            (
                "claims of one token, signature of another",
                with_signature_of(&sign(claims("someone-else", json!({}))), &sign(valid.clone())),
                Some("TOKEN_INVALID_SIGNATURE"),
            ),
            ("expired", sign(claims(&user, json!({ "exp": now() - 3600 }))), Some("TOKEN_EXPIRED")),
        ] {
            table.check(&format!("{name} herald: {case}"), &token, expected).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_works_over_every_transport() {
    let herald = Herald::embedded("ws-transports", &[]).await;
    let user = Scope::new("ws-transports").user("teacher");
    let token = token(&user);
    let base = format!("ws://127.0.0.1:{}", herald.port);

    let query = format!("{base}/ws?token={token}").into_client_request().unwrap();
    let trailing_slash = format!("{base}/ws/?token={token}").into_client_request().unwrap();
    let mut bearer = format!("{base}/ws").into_client_request().unwrap();
    bearer.headers_mut().insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    let mut subprotocol = format!("{base}/ws").into_client_request().unwrap();
    subprotocol
        .headers_mut()
        .insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(&format!("bearer, {token}")).unwrap());

    let mut sockets = Vec::new();
    for (transport, request, echoed_protocol) in [
        ("?token=", query, None),
        ("/ws/?token= (trailing slash)", trailing_slash, None),
        ("Authorization: Bearer", bearer, None),
        ("Sec-WebSocket-Protocol: bearer, <token>", subprotocol, Some("bearer")),
    ] {
        let (mut socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|error| panic!("{transport}: handshake failed: {error}"));
        let protocol = response.headers().get(header::SEC_WEBSOCKET_PROTOCOL).map(|value| value.to_str().unwrap());
        assert_eq!(protocol, echoed_protocol, "{transport}: Sec-WebSocket-Protocol of the response");
        for (name, value) in response.headers() {
            assert!(
                !value.as_bytes().windows(token.len()).any(|window| window == token.as_bytes()),
                "{transport}: {name} echoes the token"
            );
        }
        raw_ping_pong(&mut socket).await;
        sockets.push((transport, socket));
    }

    // Every transport authenticated the same user: one notification reaches all four sockets.
    let event = class_created(&user, "class-transports");
    assert_eq!(post_published(&herald, &event).await, "class_created");
    for (transport, socket) in &mut sockets {
        let notification = raw_next_text(socket).await;
        assert_eq!(notification["event_id"], event["event_id"], "{transport}");
    }
}

/// A token offered as a bare subprotocol (without `bearer`) is not taken: the only protocol herald
/// could select is the token itself, which would put it in a response header. The response names no
/// protocol and does not contain the token, and the socket is refused as having no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_never_echoed_in_the_handshake_response() {
    let herald = Herald::embedded("ws-no-echo", &[]).await;
    let token = token(&Scope::new("ws-no-echo").user("teacher"));
    for (case, offered, selected) in [
        ("bearer and the token", format!("bearer, {token}"), Some("bearer")),
        ("the token and bearer", format!("{token}, bearer"), Some("bearer")),
        ("the bare token", token.clone(), None),
        ("an application protocol and the bare token", format!("herald.v1, {token}"), None),
    ] {
        let (head, mut received, mut stream) =
            raw_handshake(&herald, &format!("Sec-WebSocket-Protocol: {offered}\r\n")).await;
        assert!(!head.contains(&token), "{case}: the response echoes the token:\n{head}");
        let protocol = head.lines().find_map(|line| {
            line.to_ascii_lowercase().strip_prefix("sec-websocket-protocol:").map(|value| value.trim().to_owned())
        });
        assert_eq!(protocol.as_deref(), selected, "{case}: selected protocol:\n{head}");
        if selected.is_none() {
            let mut chunk = [0u8; 1024];
            while let Ok(Ok(read @ 1..)) = tokio::time::timeout(DEADLINE, stream.read(&mut chunk)).await {
                received.extend_from_slice(&chunk[..read]);
            }
            let (frames, _) = decode_frames(&received);
            let close = frames.iter().find_map(|frame| match frame {
                Frame::Close(code, reason) => Some((*code, reason.clone())),
                _ => None,
            });
            let (code, reason) = close.unwrap_or_else(|| panic!("{case}: no close frame in {frames:?}"));
            assert_eq!((code, error_code(case, &reason).as_str()), (1008, "TOKEN_MISSING"), "{case}");
        }
    }
}

/// Does a WebSocket handshake on `/ws` by hand with `extra_headers` (each ending in CRLF); returns
/// the response head, the bytes read after it, and the stream.
async fn raw_handshake(herald: &Herald, extra_headers: &str) -> (String, Vec<u8>, TcpStream) {
    let address = format!("127.0.0.1:{}", herald.port);
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    loop {
        if let Some(end) = received.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end + 4]).into_owned();
            assert!(head.starts_with("HTTP/1.1 101"), "not upgraded:\n{head}");
            received.drain(..end + 4);
            return (head, received, stream);
        }
        let mut chunk = [0u8; 1024];
        let read = tokio::time::timeout(DEADLINE, stream.read(&mut chunk)).await.unwrap().unwrap();
        assert!(read > 0, "the connection ended during the handshake");
        received.extend_from_slice(&chunk[..read]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_ingest_requires_the_ingest_token_when_one_is_configured() {
    let herald = Herald::embedded("ws-ingest-token", &["--ingest-token", "s3cret-ingest"]).await;
    let teacher = Scope::new("ws-ingest-token").user("teacher");
    let body = serde_json::to_vec(&class_created(&teacher, "class-ingest-token")).unwrap();
    let client = reqwest::Client::new();
    for (case, authorization, expected) in [
        ("no Authorization", None, 401),
        ("another secret", Some("Bearer not-the-secret"), 401),
        ("the secret without a scheme", Some("s3cret-ingest"), 401),
        ("the ingest token", Some("Bearer s3cret-ingest"), 202),
    ] {
        let mut request = client.post(herald.url("/v1/events")).body(body.clone());
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), expected, "{case}");
        let answer: Value = response.json().await.unwrap();
        if expected == 401 {
            assert_eq!(answer["error"], "unauthorized", "{case}: {answer}");
            assert!(answer["message"].as_str().unwrap().contains("--ingest-token"), "{case}: {answer}");
        } else {
            assert_eq!(answer["delivery"], "published", "{case}: {answer}");
        }
    }
    // Without --ingest-token, embedded mode (development) takes events from anyone.
    let open = Herald::embedded("ws-ingest-open", &[]).await;
    assert_eq!(open.post(body).await.0, 202);
}

/// Production mode refuses to start without token scope or with an unauthenticated ingest, and says
/// which flags fix it. (Validation runs before Kafka or Redis is contacted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_refuses_unscoped_tokens_and_an_open_ingest() {
    let production = ["--kafka-brokers", "127.0.0.1:9", "--redis-url", "redis://127.0.0.1:9", "--jwt-secret", SECRET];
    let scoped = ["--jwt-audience", "huleedu-platform", "--jwt-issuer", "huleedu-identity-service"];
    for (case, extra, names) in [
        ("no audience or issuer", &[][..], &["--jwt-audience", "--jwt-issuer", "--allow-unscoped-tokens"][..]),
        ("audience only", &scoped[..2], &["--jwt-audience", "--jwt-issuer"][..]),
        ("scoped, HTTP ingest without a token", &[&scoped[..], &["--http-ingest"]].concat(), &["--ingest-token"][..]),
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["--listen", "127.0.0.1:0"])
            .args(production)
            .args(extra)
            .output();
        let output = tokio::time::timeout(DEADLINE, output).await.expect("herald exits").unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{case}: herald started:\n{stderr}");
        for name in names {
            assert!(stderr.contains(name), "{case}: the error should name {name}:\n{stderr}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_socket_of_the_user_gets_each_notification_once_and_nobody_else_does() {
    let herald = Herald::embedded("ws-delivery", &[]).await;
    let scope = Scope::new("ws-delivery");
    let (teacher, other) = (scope.user("teacher"), scope.user("other"));
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(connected(&herald, &teacher).await);
    }
    let mut bystander = connected(&herald, &other).await;

    let first = class_created(&teacher, "class-first");
    post_published(&herald, &first).await;
    let info = herald::EVENTS.iter().find(|event| event.notification == "class_created").unwrap();
    let mut ids = Vec::new();
    for socket in &mut sockets {
        let message = socket.notification().await;
        let mut keys: Vec<&str> = message.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["category", "correlation_id", "data", "event", "event_id", "id", "priority", "timestamp"],
            "{message}"
        );
        assert_eq!(message["event"], "class_created");
        assert_eq!(message["event_id"], first["event_id"]);
        assert_eq!(message["correlation_id"], first["correlation_id"]);
        assert_eq!(message["timestamp"], first["event_timestamp"]);
        assert_eq!(message["category"], info.category.as_str());
        assert_eq!(message["priority"], info.priority.as_str());
        assert_eq!(message["data"]["class_id"], "class-first");
        ids.push(message["id"].as_str().unwrap().to_owned());
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "one notification, one id: {ids:?}");

    // Exactly once: the next thing each socket receives is the second notification, not a copy.
    let second = class_created(&teacher, "class-second");
    post_published(&herald, &second).await;
    for socket in &mut sockets {
        assert_eq!(socket.notification().await["event_id"], second["event_id"]);
    }
    // Nothing reached the other user: their own notification is the first thing they receive.
    let theirs = class_created(&other, "class-theirs");
    post_published(&herald, &theirs).await;
    assert_eq!(bystander.notification().await["event_id"], theirs["event_id"]);
}

// ---------------------------------------------------------------------------------------------
// Connection limit
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_per_user_limit_are_closed_with_4000() {
    for (flags, limit) in [(&[][..], 5), (&["--max-connections-per-user", "2"][..], 2)] {
        let herald = Herald::embedded("ws-limit", flags).await;
        let scope = Scope::new("ws-limit");
        let (teacher, other) = (scope.user("teacher"), scope.user("other"));
        let mut sockets = Vec::new();
        for _ in 0..limit {
            sockets.push(connected(&herald, &teacher).await);
        }

        let mut one_too_many = herald.connect(&teacher).await;
        let (code, reason) = one_too_many.closed().await;
        assert_eq!(code, 4000, "limit {limit}: {reason}");
        let reason: Value = serde_json::from_str(&reason).unwrap();
        assert_eq!(reason, json!({ "error_code": "QUOTA_EXCEEDED", "message": "Connection limit exceeded" }));

        // The limit is per user.
        let _other = connected(&herald, &other).await;
        // A closed connection frees its slot.
        sockets.pop().unwrap().close().await;
        // `limit` open: the teacher's remaining `limit - 1` and the other user's one.
        wait_until("the closed socket is deregistered", || async {
            herald.metric("herald_connections").await == limit as f64
        })
        .await;
        sockets.push(connected(&herald, &teacher).await);
        assert_eq!(herald.metric(r#"herald_connections_closed_total{reason="quota"}"#).await, 1.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Client frames, server pings and the idle timeout
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_gets_pong_and_other_client_frames_are_ignored() {
    let herald = Herald::embedded("ws-ping", &[]).await;
    let teacher = Scope::new("ws-ping").user("teacher");
    let mut socket = connected(&herald, &teacher).await; // a ping answered with a pong

    for junk in
        ["hello", "", "{}", "[1,2]", r#"{"type":"pong"}"#, r#"{"type":"PING"}"#, r#"{"type":5}"#, "{\"type\":\"ping\""]
    {
        socket.send_text(junk).await;
    }
    socket.send_text(&"x".repeat(4000)).await;
    // No reply to any of it, and delivery goes on: the notification is the next message.
    let event = class_created(&teacher, "class-after-junk");
    post_published(&herald, &event).await;
    assert_eq!(socket.notification().await["event_id"], event["event_id"]);
    socket.send_text(r#"{"type":"ping","sent_at":1}"#).await;
    assert_eq!(socket.notification().await, json!({ "type": "pong" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_pings_and_drops_clients_that_stay_silent() {
    let herald = Herald::embedded("ws-idle", &["--ping-interval-seconds", "1", "--idle-timeout-seconds", "2"]).await;
    let scope = Scope::new("ws-idle");
    let (mut listening, _) =
        tokio_tungstenite::connect_async(herald.ws_url(&format!("?token={}", token(&scope.user("listening")))))
            .await
            .unwrap();
    let silent = SilentClient::connect(&herald, &token(&scope.user("silent")), None).await;
    let silent_since = Instant::now();

    // tungstenite answers each ping when it reads the next frame; four pings take the listening
    // client well past the 2 s idle timeout.
    let listen = async {
        let started = Instant::now();
        let mut pings = 0;
        while pings < 4 {
            match tokio::time::timeout(DEADLINE, listening.next()).await.expect("a server ping") {
                Some(Ok(Message::Ping(_))) => pings += 1,
                other => panic!("the listening client got {other:?} instead of a ping"),
            }
        }
        started.elapsed()
    };
    let silent_dropped = async {
        wait_until("the silent client is dropped as idle", || async {
            herald.metric(r#"herald_connections_closed_total{reason="idle"}"#).await >= 1.0
        })
        .await;
        silent_since.elapsed()
    };
    let (listened, silent_after) = tokio::join!(listen, silent_dropped);

    assert!(listened >= Duration::from_secs(3), "four pings a second apart took {listened:?}");
    raw_ping_pong(&mut listening).await;
    assert_eq!(herald.metric(r#"herald_connections_closed_total{reason="idle"}"#).await, 1.0, "only the silent one");
    // Idle means no frame for longer than the timeout (2 s), checked at each ping tick, so never
    // before it; how long after it depends on the machine's load, so only the lower bound is firm.
    assert!(silent_after >= Duration::from_millis(1900), "the silent client was dropped after {silent_after:?}");
    let transcript = silent.read_to_end().await;
    let (last, before) = transcript.frames.split_last().expect("frames from the server");
    assert!(before.iter().all(|frame| *frame == Frame::Ping), "{transcript:?}");
    let Frame::Close(1001, reason) = last else { panic!("expected a 1001 close last: {transcript:?}") };
    assert_eq!(error_code("idle", reason), "IDLE_TIMEOUT");
}

// ---------------------------------------------------------------------------------------------
// Origin, inbound size
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_origins_may_open_a_socket() {
    let herald = Herald::embedded("ws-origin", &["--allowed-origins", "https://app.example.com"]).await;
    let user = Scope::new("ws-origin").user("teacher");
    for (origin, allowed) in [
        ("https://app.example.com", true),
        ("https://evil.example.com", false),
        ("https://app.example.com.evil.example", false),
        ("http://app.example.com", false),
        ("null", false),
    ] {
        let mut request = herald.ws_url(&format!("?token={}", token(&user))).into_client_request().unwrap();
        request.headers_mut().insert(header::ORIGIN, HeaderValue::from_static(origin));
        match (tokio_tungstenite::connect_async(request).await, allowed) {
            (Ok((mut socket, _)), true) => raw_ping_pong(&mut socket).await,
            (Err(tungstenite::Error::Http(response)), false) => assert_eq!(response.status(), 403, "{origin}"),
            (Ok(_), false) => panic!("{origin} was allowed"),
            (Err(error), _) => panic!("{origin}: {error}"),
        }
    }
    assert_eq!(herald.metric(r#"herald_connections_closed_total{reason="origin"}"#).await, 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_inbound_limit_ends_the_connection_not_the_server() {
    let herald = Herald::embedded("ws-inbound", &["--max-inbound-bytes", "1024"]).await;
    let teacher = Scope::new("ws-inbound").user("teacher");
    let mut socket = connected(&herald, &teacher).await;
    socket.send_text(&"x".repeat(1000)).await; // under the limit: ignored like any unknown frame
    socket.send_text(&"x".repeat(2048)).await;
    let ended = socket.receive().await;
    let Received::Closed(code, reason) = ended else { panic!("expected the connection to end, got {ended:?}") };
    assert_eq!(code, 1009, "message too big: {reason}");
    assert_eq!(error_code("oversized frame", &reason), "MESSAGE_TOO_BIG");
    assert_eq!(herald.metric(r#"herald_connections_closed_total{reason="too_big"}"#).await, 1.0);
    wait_until("the oversized socket is deregistered", || async { herald.metric("herald_connections").await == 0.0 })
        .await;
    // The server still serves.
    let _again = connected(&herald, &teacher).await;
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_ingest_validates_deduplicates_and_parks() {
    let herald = Herald::embedded("ws-ingest", &[]).await;
    let scope = Scope::new("ws-ingest");
    let teacher = scope.user("teacher");
    let invalid = |name: &str| std::fs::read(fixtures().join("_invalid").join(name)).unwrap();

    let wrong_type = envelope("class_created", "basic", |value| value["data"]["course_codes"] = json!("SV1"));
    let missing_filename = envelope("batch_file_added", "basic", |value| {
        value["data"].as_object_mut().unwrap().remove("filename");
    });
    let unknown = envelope("_unknown", "batch_essays_registered", |_| {});
    for (case, body, error, mentions) in [
        ("not JSON", invalid("not_json.bin"), "not_json", ""),
        ("truncated JSON", b"{\"event_id\":".to_vec(), "not_json", ""),
        ("a JSON array", invalid("not_an_envelope.json"), "not_envelope", ""),
        ("envelope without event_type", invalid("missing_event_type.json"), "not_envelope", "event_type"),
        ("payload of the wrong type", serde_json::to_vec(&wrong_type).unwrap(), "invalid_payload", "`course_codes`"),
        ("payload missing a key", serde_json::to_vec(&missing_filename).unwrap(), "invalid_payload", "filename"),
        (
            "unknown event type",
            serde_json::to_vec(&unknown).unwrap(),
            "unknown_event_type",
            "huleedu.batch.essays.registered.v1",
        ),
    ] {
        let (status, response) = herald.post(body).await;
        assert_eq!(status, 400, "{case}: {response}");
        assert_eq!(response["error"], error, "{case}: {response}");
        let message = response["message"].as_str().unwrap_or_default();
        assert!(message.contains(mentions), "{case}: the message should mention {mentions}: {response}");
    }

    let valid = serde_json::to_vec(&class_created(&teacher, "class-ingest")).unwrap();
    let (status, response) = herald.post(valid.clone()).await;
    assert_eq!(
        (status, response),
        (202, json!({ "notification": "class_created", "delivery": "published", "user": teacher }))
    );
    let (status, response) = herald.post(valid).await;
    assert_eq!((status, &response["delivery"]), (202, &json!("duplicate")), "{response}");

    // An event naming only a batch waits for the batch's owner, and is delivered when an event
    // naming both the batch and its owner arrives.
    let batch = scope.batch("ingest");
    let provisioned = envelope("essay_content_provisioned", "basic", |value| value["data"]["entity_id"] = json!(batch));
    let (status, response) = herald.post(serde_json::to_vec(&provisioned).unwrap()).await;
    assert_eq!((status, &response["delivery"]), (202, &json!("parked")), "{response}");
    let mut socket = connected(&herald, &teacher).await;
    let added = batch_file_added(&batch, &teacher, "file-1");
    assert_eq!(post_published(&herald, &added).await, "batch_file_added");
    assert_eq!(socket.notification().await["event_id"], provisioned["event_id"], "the parked one first");
    assert_eq!(socket.notification().await["event_id"], added["event_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let herald = Herald::embedded("ws-metrics", &[]).await;
    let teacher = Scope::new("ws-metrics").user("teacher");
    let healthz = reqwest::get(herald.url("/healthz")).await.unwrap();
    assert_eq!(healthz.status(), 200);
    assert_eq!(healthz.text().await.unwrap(), "ok");
    let readyz = reqwest::get(herald.url("/readyz")).await.unwrap();
    assert_eq!(readyz.status(), 200);
    let readiness: Value = readyz.json().await.unwrap();
    assert_eq!((&readiness["ready"], &readiness["mode"]), (&json!(true), &json!("embedded")), "{readiness}");

    let text = reqwest::get(herald.url("/metrics")).await.unwrap().text().await.unwrap();
    for series in
        ["herald_connections ", "herald_notifications_published_total ", "herald_kafka_to_socket_seconds_bucket{"]
    {
        assert!(text.lines().any(|line| line.starts_with(series)), "/metrics lacks {series}:\n{text}");
    }

    let mut first = connected(&herald, &teacher).await;
    let second = connected(&herald, &teacher).await;
    assert_eq!(herald.metric("herald_connections").await, 2.0);
    let event = class_created(&teacher, "class-metrics");
    post_published(&herald, &event).await;
    first.notification().await;
    assert_eq!(herald.metric("herald_notifications_published_total").await, 1.0);
    wait_until("both copies are counted", || async {
        herald.metric("herald_notifications_delivered_total").await == 2.0
            && herald.metric("herald_kafka_to_socket_seconds_count").await == 2.0
    })
    .await;
    second.close().await;
    wait_until("herald_connections drops to 1", || async { herald.metric("herald_connections").await == 1.0 }).await;
}

// ---------------------------------------------------------------------------------------------
// Shutdown and slow clients
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_socket_with_1012_and_exits_cleanly() {
    let mut herald = Herald::embedded("ws-sigterm", &[]).await;
    let scope = Scope::new("ws-sigterm");
    let mut sockets = [connected(&herald, &scope.user("one")).await, connected(&herald, &scope.user("two")).await];
    let started = Instant::now();
    let status = herald.terminate().await;
    let took = started.elapsed();
    assert!(status.success(), "herald exited with {status}:\n{}", herald.log_tail());
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}; the bound is 10 s");
    for socket in &mut sockets {
        let (code, reason) = socket.closed().await;
        assert_eq!(code, 1012, "{reason}");
        assert_eq!(error_code("sigterm", &reason), "SERVICE_RESTART");
    }
}

/// A burst larger than the send queue, delivered faster than any socket can drain it: the
/// notifications parked for a batch are all released in one step when its owner becomes known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_send_queue_closes_the_socket_with_4002() {
    let herald = Herald::embedded("ws-burst", &["--send-queue", "1"]).await;
    let scope = Scope::new("ws-burst");
    let teacher = scope.user("teacher");
    let batch = scope.batch("burst");
    let mut socket = connected(&herald, &teacher).await;
    const PARKED: usize = 100;
    park_files(&herald, &batch, PARKED).await;
    post_published(&herald, &batch_file_added(&batch, &teacher, "file-owner")).await;

    let mut received = 0;
    let (code, reason) = loop {
        match socket.receive().await {
            Received::Text(_) => received += 1,
            Received::Closed(code, reason) => break (code, reason),
        }
    };
    assert_eq!(code, 4002, "{reason}");
    assert_eq!(error_code("burst", &reason), "SLOW_CONSUMER");
    assert!(received < PARKED, "{received} of {} notifications arrived before the close", PARKED + 1);
    // Counted once the socket task has finished, just after the close frame went out.
    wait_until("the close is counted as slow_client", || async {
        herald.metric(r#"herald_connections_closed_total{reason="slow_client"}"#).await == 1.0
    })
    .await;
}

/// A client that stops reading fills the TCP buffers between it and herald, and herald's write to it
/// then waits; when the send queue fills behind it, the slow-client policy must still end the
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_when_its_queue_fills() {
    client_stops_reading("ws-stuck-slow", &["--send-queue", "1"], "slow_client", 4002).await;
}

/// The same, with a queue that never fills: the idle timeout must still end the connection, though
/// herald is waiting on a write rather than on a ping tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_as_idle() {
    client_stops_reading(
        "ws-stuck-idle",
        &["--ping-interval-seconds", "1", "--idle-timeout-seconds", "4"],
        "idle",
        1001,
    )
    .await;
}

/// Opens a socket that never reads, posts more notification bytes than the TCP buffers between it
/// and herald can hold, and waits for herald to drop it for `reason`.
async fn client_stops_reading(name: &str, flags: &[&str], reason: &str, close_code: u16) {
    let herald = Herald::embedded(name, flags).await;
    let teacher = Scope::new(name).user("teacher");
    let stuck = SilentClient::connect(&herald, &token(&teacher), Some(4096)).await;
    wait_until("the stuck client is registered", || async { herald.metric("herald_connections").await == 1.0 }).await;

    // herald's send buffer can grow to the kernel's maximum; the client's receive buffer is small.
    const NOTIFICATION_BYTES: usize = 256 * 1024;
    let events = (max_tcp_send_buffer() + 1024 * 1024) / NOTIFICATION_BYTES + 4;
    for student in 0..events {
        let created = envelope("student_created", "basic", |value| {
            value["data"]["created_by_user_id"] = json!(teacher);
            value["data"]["student_id"] = json!(format!("student-{student}"));
            value["data"]["first_name"] = json!("Å".repeat(NOTIFICATION_BYTES / 2));
        });
        let (status, response) = herald.post(serde_json::to_vec(&created).unwrap()).await;
        assert_eq!((status, &response["delivery"]), (202, &json!("published")), "{response}");
    }
    let closed = format!(r#"herald_connections_closed_total{{reason="{reason}"}}"#);
    wait_until(&format!("the stuck client is dropped ({reason})"), || async {
        herald.metric(&closed).await == 1.0 && herald.metric("herald_connections").await == 0.0
    })
    .await;

    // What the client finds when it reads again: some of the notifications, then the end; the close
    // frame too if there was room for it.
    let transcript = stuck.read_to_end().await;
    let texts = transcript.frames.iter().filter(|frame| matches!(frame, Frame::Text(_))).count();
    assert!(texts < events, "not every notification can have been written: {texts} of {events}");
    assert!(
        transcript.frames.iter().all(|frame| match frame {
            Frame::Text(_) | Frame::Ping => true,
            Frame::Close(code, _) => *code == close_code,
            Frame::Other(_) => false,
        }),
        "{:?} … ({} trailing bytes, {})",
        transcript.frames.last(),
        transcript.trailing_bytes,
        transcript.ending
    );
    // The server is fine.
    let _again = connected(&herald, &teacher).await;
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// What a token case expects: [`ACCEPTED`], or `Some` of the `error_code` of the 1008 close.
type Expected = Option<&'static str>;
const ACCEPTED: Expected = None;

/// Token cases against one herald. Each case connects once; a failure names its case.
struct TokenTable {
    ws: String,
}

impl TokenTable {
    /// `ws` is the endpoint's URL without a query (`ws://127.0.0.1:PORT/ws`).
    fn new(ws: String) -> Self {
        TokenTable { ws }
    }

    fn url(&self, query: &str) -> String {
        format!("{}{query}", self.ws)
    }

    /// Connects with `token` in the query string.
    async fn check(&self, case: &str, token: &str, expected: Expected) {
        self.check_request(case, self.url(&format!("?token={token}")), expected).await;
    }

    /// A refused token is still upgraded (browsers cannot read an HTTP 403), then closed with 1008
    /// and a reason that is JSON with an `error_code`, within the protocol's 123 bytes. An accepted
    /// one answers a ping.
    async fn check_request(&self, case: &str, request: impl IntoClientRequest + Unpin, expected: Expected) {
        let mut client =
            Client::connect(request).await.unwrap_or_else(|error| panic!("{case}: handshake failed: {error}"));
        match expected {
            None => {
                client.send_text(r#"{"type":"ping"}"#).await;
                match client.receive().await {
                    Received::Text(pong) if pong == json!({ "type": "pong" }) => {}
                    other => panic!("{case}: expected to be accepted, got {other:?}"),
                }
            }
            Some(expected) => match client.receive().await {
                Received::Closed(1008, reason) => assert_eq!(error_code(case, &reason), expected, "{case}: {reason}"),
                other => panic!("{case}: expected a 1008 close with {expected}, got {other:?}"),
            },
        }
    }
}

/// The `error_code` of a close reason, checking that the reason is JSON with a message and fits in
/// a close frame.
fn error_code(case: &str, reason: &str) -> String {
    assert!(reason.len() <= 123, "{case}: close reason of {} bytes, over the protocol's 123: {reason}", reason.len());
    let value: Value = serde_json::from_str(reason)
        .unwrap_or_else(|error| panic!("{case}: close reason is not JSON ({error}): {reason}"));
    assert!(value["message"].as_str().is_some_and(|message| !message.is_empty()), "{case}: no message: {reason}");
    value["error_code"].as_str().unwrap_or_else(|| panic!("{case}: no error_code: {reason}")).to_owned()
}

/// Claims valid for an hour for `user`, with `changes` merged in (`null` removes a claim).
fn claims(user: &str, changes: Value) -> Value {
    let mut claims = json!({ "sub": user, "exp": now() + 3600, "iat": now() });
    merge(&mut claims, changes);
    claims
}

fn merge(claims: &mut Value, changes: Value) {
    let claims = claims.as_object_mut().unwrap();
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.remove(name);
        } else {
            claims.insert(name.clone(), value.clone());
        }
    }
}

fn hs256(claims: Value) -> String {
    token_with(SECRET, claims)
}

/// Signed with the right secret, but not with the one algorithm a secret implies.
fn hs512(claims: Value) -> String {
    signed(Algorithm::HS512, &EncodingKey::from_secret(SECRET.as_bytes()), claims)
}

fn signed(algorithm: Algorithm, key: &EncodingKey, claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), &claims, key).unwrap()
}

/// `token` with its header replaced by `{"alg":"none","typ":"JWT"}`, and its signature dropped or kept.
fn alg_none(token: &str, keep_signature: bool) -> String {
    // base64url(r#"{"alg":"none","typ":"JWT"}"#), unpadded.
    const NONE_HEADER: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    let segments: Vec<&str> = token.split('.').collect();
    let signature = if keep_signature { segments[2] } else { "" };
    format!("{NONE_HEADER}.{}.{signature}", segments[1])
}

/// The header and claims of `token` under the signature of `other`.
fn with_signature_of(token: &str, other: &str) -> String {
    let (signed_part, _) = token.rsplit_once('.').unwrap();
    let (_, signature) = other.rsplit_once('.').unwrap();
    format!("{signed_part}.{signature}")
}

/// Connects `user` and proves the socket is authenticated and registered.
async fn connected(herald: &Herald, user: &str) -> Client {
    let mut client = herald.connect(user).await;
    client.send_text(r#"{"type":"ping"}"#).await;
    assert_eq!(client.notification().await, json!({ "type": "pong" }), "{user} is connected");
    client
}

type RawSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The next text frame of a tungstenite socket as JSON, skipping control frames.
async fn raw_next_text(socket: &mut RawSocket) -> Value {
    loop {
        match tokio::time::timeout(DEADLINE, socket.next()).await.expect("a message before the deadline") {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

async fn raw_ping_pong(socket: &mut RawSocket) {
    socket.send(Message::Text(r#"{"type":"ping"}"#.into())).await.unwrap();
    assert_eq!(raw_next_text(socket).await, json!({ "type": "pong" }));
}

fn batch_file_added(batch: &str, user: &str, file: &str) -> Value {
    envelope("batch_file_added", "basic", |value| {
        value["data"]["batch_id"] = json!(batch);
        value["data"]["user_id"] = json!(user);
        value["data"]["file_upload_id"] = json!(file);
    })
}

/// POSTs `event`, expects it published, and returns the notification name.
async fn post_published(herald: &Herald, event: &Value) -> String {
    let (status, response) = herald.post(serde_json::to_vec(event).unwrap()).await;
    assert_eq!((status, &response["delivery"]), (202, &json!("published")), "{response}");
    response["notification"].as_str().unwrap().to_owned()
}

/// The largest TCP send buffer the kernel may grow a socket's to (`tcp_wmem`'s maximum).
fn max_tcp_send_buffer() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|text| text.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(8 * 1024 * 1024)
}

/// A WebSocket client with no library behind it: it does the handshake by hand and then neither
/// reads nor writes until the test says so. tungstenite answers pings whenever it reads, so a client
/// that must stay silent (idle timeout) or must leave its socket undrained (slow client) is this one.
struct SilentClient {
    stream: TcpStream,
    received: Vec<u8>,
}

/// A frame the server sent.
#[derive(Debug, PartialEq)]
enum Frame {
    Text(String),
    Ping,
    Close(u16, String),
    Other(u8),
}

/// Everything a [`SilentClient`] received until the server ended the connection.
#[derive(Debug)]
struct Transcript {
    frames: Vec<Frame>,
    /// Bytes after the last whole frame (a frame cut off when the connection ended).
    trailing_bytes: usize,
    /// How the byte stream ended: `eof` or the read error.
    ending: String,
}

impl SilentClient {
    /// Opens `/ws?token=` with a receive buffer of `receive_buffer` bytes when given.
    async fn connect(herald: &Herald, token: &str, receive_buffer: Option<u32>) -> SilentClient {
        let address: SocketAddr = format!("127.0.0.1:{}", herald.port).parse().unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = receive_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let mut stream = socket.connect(address).await.unwrap();
        let request = format!(
            "GET /ws?token={token} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut received = Vec::new();
        let end_of_head = loop {
            if let Some(end) = received.windows(4).position(|window| window == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 1024];
            let read = tokio::time::timeout(DEADLINE, stream.read(&mut chunk)).await.unwrap().unwrap();
            assert!(read > 0, "the connection ended during the handshake");
            received.extend_from_slice(&chunk[..read]);
        };
        let head = String::from_utf8_lossy(&received[..end_of_head]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "not upgraded:\n{head}");
        received.drain(..end_of_head);
        SilentClient { stream, received }
    }

    /// Reads until the server ends the connection, and decodes what it sent.
    async fn read_to_end(mut self) -> Transcript {
        let mut chunk = vec![0u8; 64 * 1024];
        let ending = loop {
            match tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk))
                .await
                .expect("the server ends the connection")
            {
                Ok(0) => break "eof".to_owned(),
                Ok(read) => self.received.extend_from_slice(&chunk[..read]),
                Err(error) => break error.to_string(),
            }
        };
        let (frames, trailing_bytes) = decode_frames(&self.received);
        Transcript { frames, trailing_bytes, ending }
    }
}

/// Decodes unmasked server frames (RFC 6455 section 5.2); returns them and the count of bytes left
/// over after the last whole one.
fn decode_frames(mut bytes: &[u8]) -> (Vec<Frame>, usize) {
    let mut frames = Vec::new();
    while let [first, second, rest @ ..] = bytes {
        let (length, rest) = match second & 0x7f {
            126 if rest.len() >= 2 => (usize::from(u16::from_be_bytes([rest[0], rest[1]])), &rest[2..]),
            127 if rest.len() >= 8 => (u64::from_be_bytes(rest[..8].try_into().unwrap()) as usize, &rest[8..]),
            126 | 127 => break,
            length => (usize::from(length), rest),
        };
        if rest.len() < length {
            break;
        }
        let payload = &rest[..length];
        frames.push(match first & 0x0f {
            0x1 => Frame::Text(String::from_utf8_lossy(payload).into_owned()),
            0x9 => Frame::Ping,
            0x8 if payload.len() >= 2 => Frame::Close(
                u16::from_be_bytes([payload[0], payload[1]]),
                String::from_utf8_lossy(&payload[2..]).into_owned(),
            ),
            opcode => Frame::Other(opcode),
        });
        bytes = &rest[length..];
    }
    (frames, bytes.len())
}
