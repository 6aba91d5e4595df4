//! Embedded mode's demo page (`/demo`): its token connects as the demo teacher and its samples
//! reach that teacher, one per event; it answers only loopback host names; production mode has no
//! such page. (The page itself runs in a browser in `clients/typescript/test/demo.test.ts`.)

use std::collections::BTreeSet;

use serde_json::Value;

use super::harness::{Client, Herald, Scope, infra};

async fn get(herald: &Herald, path: &str) -> reqwest::Response {
    reqwest::get(herald.url(path)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_pages_token_and_samples_reach_the_demo_teacher_once_per_event() {
    let herald = Herald::embedded("demo-page", &[]).await;

    let page = get(&herald, "/demo").await;
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"), "{policy}");
    assert!(page.text().await.unwrap().contains(r#"src="/demo/js/demo/demo.js""#));
    let script = get(&herald, "/demo/js/demo/demo.js").await;
    assert_eq!(script.status(), 200);
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");

    let token = get(&herald, "/demo/token").await;
    assert_eq!(token.headers()["cache-control"], "no-store");
    let token: Value = token.json().await.unwrap();
    let token = token["token"].as_str().unwrap();
    let mut client = Client::connect(herald.ws_url(&format!("?token={token}"))).await.unwrap();
    client.send_text(r#"{"type":"ping"}"#).await;
    assert_eq!(client.notification().await["type"], "pong");

    let config: Value = get(&herald, "/demo/config.json").await.json().await.unwrap();
    let samples = config["samples"].as_array().unwrap();
    assert_eq!(samples.len(), herald::EVENTS.len());
    for sample in samples {
        let (status, body) = herald.post(sample["envelope"].to_string()).await;
        assert_eq!(status, 202, "{body}");
    }
    let mut received = BTreeSet::new();
    while received.len() < samples.len() {
        let notification = client.notification().await;
        let name = notification["event"].as_str().unwrap().to_owned();
        assert!(received.insert(name), "{notification} arrived twice");
    }
    let expected: BTreeSet<String> = herald::EVENTS.iter().map(|event| event.notification.to_owned()).collect();
    assert_eq!(received, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_answers_only_loopback_host_names() {
    let herald = Herald::embedded("demo-host", &[]).await;
    let client = reqwest::Client::new();
    for (host, expected) in [
        (format!("127.0.0.1:{}", herald.port), 200),
        (format!("localhost:{}", herald.port), 200),
        // A page whose own name was rebound to 127.0.0.1 must not read the token.
        ("attacker.example".to_owned(), 403),
        (format!("192.168.1.20:{}", herald.port), 403),
    ] {
        for path in ["/demo", "/demo/token", "/demo/config.json"] {
            let response = client.get(herald.url(path)).header("host", &host).send().await.unwrap();
            assert_eq!(response.status(), expected, "{path} with Host {host}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_mode_has_no_demo_page() {
    let scope = Scope::new("demo-production");
    let herald = Herald::production(&scope, &infra(), &[]).await;
    for path in ["/demo", "/demo/token", "/demo/config.json"] {
        assert_eq!(get(&herald, path).await.status(), 404, "{path}");
    }
}
