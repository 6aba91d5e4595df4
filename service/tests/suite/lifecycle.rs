//! How connections end besides their client leaving, against real herald processes: at the
//! token's `exp` (4001) unless refreshed in band, in staggered batches when the instance drains
//! (1012 with `retry_after_ms`, `/readyz` 503), at the per-user limit counted across instances
//! (4000, with a dead instance's sockets forgotten), and when an operator disconnects a user
//! everywhere (4003).
//!
//! Where time is the feature (a token's `exp`, a dead instance's entries going stale) the tests
//! wait for the wall clock; everything else waits on conditions with deadlines, and nothing
//! asserts how fast anything happened.

use serde_json::{Value, json};

use super::harness::{
    Client, DEADLINE, Herald, Infra, Received, SECRET, Scope, cluster_infra, free_port, infra, now, token, token_with,
    wait_metric, wait_until,
};
use super::resilience::RedisServer;

/// Connects with `token` and proves the socket is open (a ping answered with a pong).
async fn open(herald: &Herald, token: &str) -> Client {
    let mut client = Client::connect(herald.ws_url(&format!("?token={token}"))).await.unwrap();
    client.send_text(r#"{"type":"ping"}"#).await;
    match client.receive().await {
        Received::Text(pong) if pong == json!({ "type": "pong" }) => client,
        other => panic!("expected the socket to open, got {other:?}\n{}", herald.log_tail()),
    }
}

/// Tries to open a socket for `user`: `Some` when it is accepted, `None` when it is closed with
/// 4000 (over the limit).
async fn try_open(herald: &Herald, user: &str) -> Option<Client> {
    let mut client = herald.connect(user).await;
    client.send_text(r#"{"type":"ping"}"#).await;
    match client.receive().await {
        Received::Text(pong) if pong == json!({ "type": "pong" }) => Some(client),
        Received::Closed(4000, reason) => {
            assert_eq!(error_code(&reason), "QUOTA_EXCEEDED", "{reason}");
            None
        }
        other => panic!("expected a pong or a 4000 close, got {other:?}"),
    }
}

/// Opens a socket for `user` as soon as the limit allows, trying again until [`DEADLINE`].
async fn open_when_allowed(herald: &Herald, user: &str, what: &str) -> Client {
    let started = std::time::Instant::now();
    loop {
        if let Some(socket) = try_open(herald, user).await {
            return socket;
        }
        assert!(started.elapsed() < DEADLINE, "timed out waiting until {what}:\n{}", herald.log_tail());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A token for `user` expiring at `exp` (Unix seconds).
fn expiring(user: &str, exp: u64) -> String {
    token_with(SECRET, json!({ "sub": user, "exp": exp, "iat": now() }))
}

fn auth_frame(token: &str) -> String {
    json!({ "type": "auth", "token": token }).to_string()
}

/// The `error_code` of a JSON close reason, checking it has a message and fits a close frame.
fn error_code(reason: &str) -> String {
    assert!(reason.len() <= 123, "close reason over 123 bytes: {reason}");
    let value: Value = serde_json::from_str(reason).unwrap_or_else(|error| panic!("not JSON ({error}): {reason}"));
    assert!(value["message"].as_str().is_some_and(|message| !message.is_empty()), "no message: {reason}");
    value["error_code"].as_str().unwrap_or_else(|| panic!("no error_code: {reason}")).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_closes_at_its_tokens_exp_unless_refreshed_in_band_by_the_same_user() {
    let herald = Herald::embedded("token-lifecycle", &["--jwt-leeway-seconds", "0"]).await;
    let scope = Scope::new("token-lifecycle");
    let (teacher, other) = (scope.user("teacher"), scope.user("other"));

    // Refreshes that must be refused: another user's valid token, and a forged one. Neither moves
    // the deadline: the socket closes at its first token's exp.
    let first_exp = now() + 2;
    let mut socket = open(&herald, &expiring(&teacher, first_exp)).await;
    for (case, refresh, expected) in [
        ("another sub", token(&other), "TOKEN_SUBJECT_MISMATCH"),
        (
            "wrong signature",
            token_with("not-the-secret", json!({ "sub": teacher, "exp": now() + 3600 })),
            "TOKEN_INVALID_SIGNATURE",
        ),
    ] {
        socket.send_text(&auth_frame(&refresh)).await;
        let answer = socket.notification().await;
        assert_eq!((&answer["type"], &answer["ok"]), (&json!("auth"), &json!(false)), "{case}: {answer}");
        assert_eq!(answer["error_code"], expected, "{case}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|message| !message.is_empty()), "{case}: {answer}");
    }
    let (code, reason) = socket.closed().await;
    assert_eq!(code, 4001, "{reason}");
    assert_eq!(error_code(&reason), "TOKEN_EXPIRED");
    assert!(now() >= first_exp, "closed before the token's exp");

    // A refresh with a token of the same user moves the deadline: the socket outlives the first
    // exp, then closes at the new one.
    let first_exp = now() + 2;
    let mut socket = open(&herald, &expiring(&teacher, first_exp)).await;
    let second_exp = first_exp + 3;
    socket.send_text(&auth_frame(&expiring(&teacher, second_exp))).await;
    assert_eq!(socket.notification().await, json!({ "type": "auth", "ok": true, "exp": second_exp }));
    wait_until("the first token's exp has passed", || async { now() > first_exp }).await;
    socket.send_text(r#"{"type":"ping"}"#).await;
    assert_eq!(socket.notification().await, json!({ "type": "pong" }), "open past the first exp");
    let (code, reason) = socket.closed().await;
    assert_eq!(code, 4001, "{reason}");
    assert_eq!(error_code(&reason), "TOKEN_EXPIRED");
    assert!(now() >= second_exp, "closed before the refreshed token's exp");
    assert_eq!(herald.metric(r#"herald_connections_closed_total{reason="expired"}"#).await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_sockets_in_batches_with_1012_and_retry_after_while_not_ready() {
    const SOCKETS: usize = 4;
    let mut herald = Herald::embedded("drain", &["--drain-seconds", "3"]).await;
    let scope = Scope::new("drain");
    let mut sockets = Vec::new();
    for index in 0..SOCKETS {
        sockets.push(Some(open(&herald, &token(&scope.user(&format!("teacher-{index}")))).await));
    }

    herald.signal_terminate();
    let client = reqwest::Client::new();
    wait_until("/readyz is 503 with the check `draining`", || async {
        let Ok(response) = client.get(herald.url("/readyz")).send().await else { return false };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        status == 503 && body["checks"]["draining"].is_string()
    })
    .await;

    // A socket opened during the drain is closed at once, told when to retry.
    let mut late = herald.connect(&scope.user("late")).await;
    let (code, reason) = late.closed().await;
    assert_eq!((code, error_code(&reason).as_str()), (1012, "SERVICE_RESTART"), "{reason}");
    assert!(serde_json::from_str::<Value>(&reason).unwrap()["retry_after_ms"].is_u64(), "{reason}");

    // Staggered, not all at once: some socket is closed while another is still served. Each
    // round pings the sockets still open; a closed one answers with its close frame.
    let mut closes = Vec::new();
    let mut seen_closed_while_others_served = false;
    while closes.len() < SOCKETS {
        let mut answered = 0;
        for slot in &mut sockets {
            let Some(socket) = slot else { continue };
            socket.send_text(r#"{"type":"ping"}"#).await;
            match socket.receive().await {
                Received::Text(pong) => {
                    assert_eq!(pong, json!({ "type": "pong" }));
                    answered += 1;
                }
                Received::Closed(code, reason) => {
                    closes.push((code, reason));
                    *slot = None;
                }
            }
        }
        seen_closed_while_others_served |= !closes.is_empty() && answered > 0;
    }
    assert!(seen_closed_while_others_served, "every socket was closed in one batch: {closes:?}");
    for (code, reason) in &closes {
        assert_eq!((*code, error_code(reason).as_str()), (1012, "SERVICE_RESTART"), "{reason}");
        let retry_after = serde_json::from_str::<Value>(reason).unwrap()["retry_after_ms"].as_u64();
        assert!(retry_after.is_some_and(|ms| ms < 60_000), "no plausible retry_after_ms: {reason}");
    }
    let status = herald.exited().await;
    assert!(status.success(), "herald exits with success after the drain: {status}\n{}", herald.log_tail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_counts_every_instance_and_forgets_a_dead_one() {
    limit_across_instances(infra()).await;
}

/// The same two production tests on a 3-master Redis Cluster: the connection sets live in the
/// users' shard slots, and the control channel is a sharded channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_cluster_the_limit_and_the_disconnect_reach_every_instance() {
    limit_across_instances(cluster_infra()).await;
    disconnect_everywhere(cluster_infra()).await;
}

async fn limit_across_instances(infra: Infra) {
    let scope = Scope::new("global-limit");
    let flags = ["--max-connections-per-user", "2", "--presence-refresh-ms", "500"];
    let mut a = Herald::production(&scope, &infra, &flags).await;
    let b = Herald::production(&scope, &infra, &flags).await;
    let teacher = scope.user("teacher");

    let first_on_a = try_open(&a, &teacher).await.expect("the first socket is accepted");
    let on_b = try_open(&b, &teacher).await.expect("the second socket, on the other instance, is accepted");
    assert!(try_open(&a, &teacher).await.is_none(), "a third socket is refused although A holds only one");
    assert!(try_open(&b, &scope.user("other")).await.is_some(), "the limit is per user");

    // A closed socket frees its place for every instance.
    on_b.close().await;
    let second_on_a = open_when_allowed(&a, &teacher, "a socket on A is accepted once B's socket closed").await;
    assert!(try_open(&b, &teacher).await.is_none(), "A's two sockets count on B");

    // A dies without closing anything: its entries stop counting within three refresh intervals.
    a.kill().await;
    drop((first_on_a, second_on_a));
    let killed = std::time::Instant::now();
    let stale = "B accepts the user's sockets again once A's entries are stale";
    let _held = [open_when_allowed(&b, &teacher, stale).await, open_when_allowed(&b, &teacher, stale).await];
    eprintln!(
        "global-limit: a dead instance's sockets stopped counting {:?} after it was killed (stale 1.5 s after its last \
         refresh; polled every 100 ms)",
        killed.elapsed()
    );
    assert!(try_open(&b, &teacher).await.is_none(), "the limit holds again with B's two sockets");
    assert_eq!(b.metric("herald_connection_limit_fallbacks_total").await, 0.0, "Redis answered every handshake");
}

/// Redis down at a handshake: the socket is accepted on this instance's own count (and the
/// fallback counted); once Redis is back, the refresh puts the socket into the global count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_a_handshake_falls_back_to_the_local_count() {
    let port = free_port();
    let redis = RedisServer::start(port).await;
    let own = Infra { redis: redis.url(), ..infra() };
    let scope = Scope::new("limit-fallback");
    let flags = ["--max-connections-per-user", "1", "--presence-refresh-ms", "300"];
    let herald = Herald::production(&scope, &own, &flags).await;
    let teacher = scope.user("teacher");

    redis.kill().await;
    let _socket = try_open(&herald, &teacher).await.expect("accepted although Redis is down");
    wait_metric(&herald, "herald_connection_limit_fallbacks_total", 1.0).await;

    let _redis = RedisServer::start(port).await;
    let shard = teacher
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
        % 1024;
    let key = format!("{}{{u{shard}}}:connections:{teacher}", scope.redis_prefix());
    let client = redis::Client::open(own.redis.as_str()).unwrap();
    wait_until("the refresh counts the socket in Redis again", || async {
        let Ok(mut connection) = client.get_multiplexed_async_connection().await else { return false };
        redis::cmd("ZCARD").arg(&key).query_async::<i64>(&mut connection).await.is_ok_and(|count| count == 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_disconnects_a_user_on_every_instance() {
    disconnect_everywhere(infra()).await;
}

async fn disconnect_everywhere(infra: Infra) {
    let scope = Scope::new("admin-disconnect");
    let flags = ["--admin-token", "s3cret-admin"];
    let a = Herald::production(&scope, &infra, &flags).await;
    let b = Herald::production(&scope, &infra, &flags).await;
    let (teacher, other) = (scope.user("teacher"), scope.user("other"));
    let mut teacher_sockets = [open(&a, &token(&teacher)).await, open(&b, &token(&teacher)).await];
    let mut bystander = open(&a, &token(&other)).await;

    let url = a.url(&format!("/admin/v1/users/{teacher}/disconnect"));
    let client = reqwest::Client::new();
    for (case, authorization) in [("no token", None), ("wrong token", Some("Bearer s3cret-admiN"))] {
        let mut request = client.post(&url);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        assert_eq!(request.send().await.unwrap().status(), 401, "{case}");
    }
    let response = client.post(&url).bearer_auth("s3cret-admin").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({ "user_id": teacher, "instances": 2 }));

    for socket in &mut teacher_sockets {
        let (code, reason) = socket.closed().await;
        assert_eq!((code, error_code(&reason).as_str()), (4003, "DISCONNECTED"), "{reason}");
    }
    bystander.send_text(r#"{"type":"ping"}"#).await;
    assert_eq!(bystander.notification().await, json!({ "type": "pong" }), "other users stay connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_is_off_by_default_and_embedded_mode_disconnects_its_own_sockets() {
    let teacher = Scope::new("admin-embedded").user("teacher");
    let path = format!("/admin/v1/users/{teacher}/disconnect");
    let client = reqwest::Client::new();

    let off = Herald::embedded("admin-off", &[]).await;
    let response = client.post(off.url(&path)).bearer_auth("anything").send().await.unwrap();
    assert_eq!(response.status(), 404, "no --admin-token, no admin API");

    let on = Herald::embedded("admin-on", &["--admin-token", "s3cret-admin"]).await;
    let mut socket = open(&on, &token(&teacher)).await;
    assert_eq!(client.post(on.url(&path)).send().await.unwrap().status(), 401);
    let response = client.post(on.url(&path)).bearer_auth("s3cret-admin").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "user_id": teacher, "instances": 1, "sockets": 1 }));
    let (code, reason) = socket.closed().await;
    assert_eq!((code, error_code(&reason).as_str()), (4003, "DISCONNECTED"), "{reason}");
}
