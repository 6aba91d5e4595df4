//! The demo page of embedded mode: `/demo` shows the development teacher's notifications live,
//! grouped by category, and sends a sample of every event through `POST /v1/events`.
//!
//! The page (`service/demo/index.html`, `demo.css`) runs the TypeScript client compiled to ES
//! modules (`service/demo/js/`: `clients/typescript/src` and `clients/typescript/demo/demo.ts`,
//! written by `npm run build:demo` and checked in, so `cargo run` serves it on a machine without
//! node; a test in `clients/typescript` fails when the copy is stale). Every file is compiled into
//! the binary: the page loads nothing from anywhere but herald, which its Content-Security-Policy
//! enforces.
//!
//! The routes exist only in embedded mode, and answer only a browser on this machine: the peer must
//! be a loopback address and the `Host` a loopback name, so neither another machine (when
//! `--listen` opens embedded mode to the network) nor a web page that rebinds its own host name to
//! 127.0.0.1 can read the development token that `/demo/token` hands out.
//!
//! The samples are each event's first example from `event-defs/` (`herald::EVENTS`), addressed to
//! the development teacher: its user key (when it has one) names the teacher and its batch key
//! (when it has one) names one demo batch, so the events that carry both teach herald that the
//! teacher owns that batch and the events that carry only the batch reach the teacher too.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

use crate::auth;
use crate::config::{self, Config};

/// The user the page connects as, and the samples are addressed to.
pub(crate) const DEMO_USER: &str = "teacher-1";

/// The batch the samples that carry a batch are about (a UUID, as some batch keys require).
const DEMO_BATCH: &str = "00000000-0000-4000-8000-00000000d3e0";

/// How long a token from `/demo/token` lives; the page asks for a new one before it expires.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The page's files, as served: path, content type, body. Each is a file under `service/demo/`.
const ASSETS: &[(&str, &str, &str)] = &[
    ("/demo", HTML, include_str!("../demo/index.html")),
    ("/demo/", HTML, include_str!("../demo/index.html")),
    ("/demo/demo.css", CSS, include_str!("../demo/demo.css")),
    ("/demo/favicon.svg", SVG, include_str!("../demo/favicon.svg")),
    ("/demo/js/demo/demo.js", JS, include_str!("../demo/js/demo/demo.js")),
    ("/demo/js/src/client.js", JS, include_str!("../demo/js/src/client.js")),
    ("/demo/js/src/events.js", JS, include_str!("../demo/js/src/events.js")),
    ("/demo/js/src/index.js", JS, include_str!("../demo/js/src/index.js")),
    ("/demo/js/src/store.js", JS, include_str!("../demo/js/src/store.js")),
];
const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Scripts, styles and connections only from herald itself; nothing inline, no frames.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What the demo routes share.
struct Demo {
    /// Signs the page's tokens: the configured HS256 secret or the development secret. `None` when
    /// herald verifies tokens with a public key, whose private half it never has.
    secret: Option<SecretString>,
    audience: Option<String>,
    issuer: Option<String>,
    /// The body of `/demo/config.json`, made once at start-up.
    page_config: Bytes,
}

/// The demo routes, for embedded mode only (see the module comment).
pub(crate) fn router(config: &Config) -> Router {
    let secret = match (&config.jwt_secret, &config.jwt_public_key) {
        (_, Some(_)) => None,
        (Some(secret), None) => Some(secret.clone()),
        (None, None) => Some(SecretString::from(config::DEVELOPMENT_SECRET)),
    };
    let page_config = json!({
        "user": DEMO_USER,
        "ingest_token_required": config.ingest_token.is_some(),
        "samples": samples(),
    });
    let demo = Arc::new(Demo {
        secret,
        audience: config.jwt_audience.clone(),
        issuer: config.jwt_issuer.clone(),
        page_config: Bytes::from(page_config.to_string()),
    });
    let mut router = Router::new().route("/demo/config.json", get(serve_page_config)).route("/demo/token", get(token));
    for &(path, content_type, body) in ASSETS {
        router = router.route(path, get(move || async move { ([(header::CONTENT_TYPE, content_type)], body) }));
    }
    router.layer(middleware::from_fn(local_only)).with_state(demo)
}

/// One sample envelope per event, in catalogue order, addressed to [`DEMO_USER`].
fn samples() -> Vec<serde_json::Value> {
    herald::EVENTS
        .iter()
        .filter_map(|event| {
            Some(json!({
                "notification": event.notification,
                "category": event.category.as_str(),
                "priority": event.priority.as_str(),
                "envelope": sample(event)?,
            }))
        })
        .collect()
}

/// The event's first example, with its user key naming [`DEMO_USER`] and its batch key naming the
/// demo batch; `None` when the example is not an envelope with a `data` object.
pub(crate) fn sample(event: &herald::runtime::EventInfo) -> Option<serde_json::Value> {
    let mut envelope: serde_json::Value = serde_json::from_str(event.example).ok()?;
    let data = envelope.get_mut("data")?.as_object_mut()?;
    if let Some(key) = event.recipient_user_key {
        data.insert(key.to_owned(), DEMO_USER.into());
    }
    if let Some(key) = event.recipient_batch_key {
        data.insert(key.to_owned(), DEMO_BATCH.into());
    }
    Some(envelope)
}

async fn serve_page_config(State(demo): State<Arc<Demo>>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], demo.page_config.clone()).into_response()
}

/// A fresh token for [`DEMO_USER`]: `{"token": "..."}`, never cached.
async fn token(State(demo): State<Arc<Demo>>) -> Response {
    let Some(secret) = &demo.secret else {
        let message = "the demo page cannot sign a token: herald verifies tokens with --jwt-public-key; \
                       run embedded mode without it (or with --jwt-secret) to use the demo page";
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "no_signing_key", "message": message })))
            .into_response();
    };
    match auth::development_token(
        secret.expose_secret().as_bytes(),
        DEMO_USER,
        TOKEN_LIFETIME,
        demo.audience.as_deref(),
        demo.issuer.as_deref(),
    ) {
        Ok(token) => ([(header::CACHE_CONTROL, "no-store")], Json(json!({ "token": token }))).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": "token", "message": format!("signing the demo token failed: {error}") })),
        )
            .into_response(),
    }
}

/// Answers only requests from this machine addressed to a loopback name; adds the page's security
/// headers to every answer.
async fn local_only(request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip());
    if !peer.is_some_and(|ip| ip.to_canonical().is_loopback()) || !loopback_host(request.headers()) {
        let message = "the demo page hands out a development token, so it answers only a browser on the \
                       machine herald runs on, at http://127.0.0.1:<port>/demo or http://localhost:<port>/demo";
        return (StatusCode::FORBIDDEN, message).into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-cache"));
    response
}

/// Whether the `Host` header names this machine: `localhost` (or a name under it), or a loopback
/// address, with or without a port.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|host| host.to_str().ok()) else { return false };
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').map_or("", |(address, _)| address),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_host(host: Option<&str>, expected: bool) {
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(header::HOST, host.parse().unwrap());
        }
        assert_eq!(loopback_host(&headers), expected, "{host:?}");
    }

    #[test]
    fn only_loopback_host_names_are_accepted() {
        check_host(Some("127.0.0.1:8080"), true);
        check_host(Some("127.0.0.1"), true);
        check_host(Some("127.1.2.3:80"), true);
        check_host(Some("localhost:8080"), true);
        check_host(Some("LOCALHOST."), true);
        check_host(Some("app.localhost:3000"), true);
        check_host(Some("[::1]:8080"), true);
        check_host(Some("[::ffff:127.0.0.1]:8080"), true);
        check_host(None, false);
        check_host(Some(""), false);
        check_host(Some("evil.example:8080"), false);
        check_host(Some("localhost.evil.example"), false);
        check_host(Some("10.0.0.5:8080"), false);
        check_host(Some("[::2]:8080"), false);
        check_host(Some("[::1"), false);
    }

    #[test]
    fn every_file_of_the_page_is_served() {
        fn files(dir: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    files(&path, out);
                } else {
                    out.push(path.to_string_lossy().into_owned());
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo");
        let mut on_disk = Vec::new();
        files(&root, &mut on_disk);
        for file in on_disk.iter().filter(|file| !file.ends_with("README.md")) {
            let relative = file.strip_prefix(root.to_str().unwrap()).unwrap();
            let served = if relative == "/index.html" { "/demo".to_owned() } else { format!("/demo{relative}") };
            assert!(
                ASSETS.iter().any(|(path, ..)| *path == served),
                "service/demo{relative} is not served: add it to ASSETS in service/src/demo.rs"
            );
        }
    }

    #[test]
    fn every_event_has_a_sample_addressed_to_the_demo_teacher() {
        let samples = samples();
        assert_eq!(samples.len(), herald::EVENTS.len());
        for (sample, event) in samples.iter().zip(herald::EVENTS) {
            let envelope = serde_json::to_vec(&sample["envelope"]).unwrap();
            let routed = herald::route(&envelope).unwrap();
            assert_eq!(routed.data.notification_name(), Some(event.notification), "{sample}");
            let data = &sample["envelope"]["data"];
            if let Some(key) = event.recipient_user_key {
                assert_eq!(data[key], DEMO_USER);
            }
            if let Some(key) = event.recipient_batch_key {
                assert_eq!(data[key], DEMO_BATCH);
            }
        }
    }
}
