//! The HTTP routes: health, readiness, metrics, event ingest, the AsyncAPI document, the WebSocket
//! endpoint and (see `admin`) the admin API.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use secrecy::ExposeSecret as _;
use serde_json::json;

use crate::AppState;
use crate::backend::{Delivery, now_unix_ms};
use crate::pipeline::{Outcome, ProcessError};

pub(crate) fn router(app: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/ws", get(crate::ws::upgrade))
        .route("/ws/", get(crate::ws::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/asyncapi.json", get(asyncapi));
    if app.admin_token.is_some() {
        router = router.merge(crate::admin::routes());
    }
    if app.http_ingest {
        router = router.route("/v1/events", post(ingest).layer(DefaultBodyLimit::max(app.max_record_bytes)));
    }
    router.with_state(app)
}

/// 200 when every dependency answers and every readiness check passes, 503 otherwise. The body
/// names each check and, for a failing one, why.
async fn ready(State(app): State<Arc<AppState>>) -> Response {
    let production = app.kafka.is_some();
    let mut checks = serde_json::Map::new();
    let mut ok = true;
    let mut record = |name: &str, result: Result<(), String>| {
        ok &= result.is_ok();
        checks.insert(name.to_owned(), result.map_or_else(|error| json!(error), |()| json!("ok")));
    };
    if let Some(kafka) = &app.kafka {
        record("kafka", kafka.ready().await);
    }
    if production {
        let redis = app.pipeline.backend().ping().await.map_err(|error| error.to_string());
        app.metrics.ready_check("redis", redis.is_ok());
        record("redis", redis);
    }
    for status in app.health.statuses() {
        record(status.check, status.failure.map_or(Ok(()), Err));
    }
    let mut body = json!({ "ready": ok, "mode": if production { "production" } else { "embedded" } });
    body["checks"] = serde_json::Value::Object(checks.clone());
    // Kept at the top level too: scripts written against earlier versions read them there.
    for name in ["kafka", "redis"] {
        body[name] = checks.get(name).cloned().unwrap_or_else(|| json!("not used"));
    }
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    // Refreshes the readiness gauges, so a check gone stale shows in the scrape.
    app.health.statuses();
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &app.registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

/// `GET /asyncapi.json`: the AsyncAPI 3.0 document generated from the event definitions (the Kafka
/// topics and this WebSocket protocol).
async fn asyncapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], herald::ASYNCAPI).into_response()
}

/// `POST /v1/events`: the same envelope and validation as a Kafka record. With `--ingest-token`
/// (required in production), only a request carrying it as a bearer token is accepted.
async fn ingest(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(expected) = &app.ingest_token
        && !presents_bearer_secret(&headers, expected.expose_secret())
    {
        let message = "POST /v1/events needs `Authorization: Bearer <ingest token>` (the --ingest-token secret)";
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "unauthorized", "message": message })),
        )
            .into_response();
    }
    match app.pipeline.process(&body, now_unix_ms(), None).await {
        Ok(Outcome::Handled { name, delivery }) => {
            let (delivery, user) = match delivery {
                Delivery::Published { user } => ("published", Some(user)),
                Delivery::Duplicate => ("duplicate", None),
                Delivery::Parked { .. } => ("parked", None),
            };
            (StatusCode::ACCEPTED, Json(json!({ "notification": name, "delivery": delivery, "user": user })))
                .into_response()
        }
        Ok(Outcome::NoRecipient { name }) => {
            (StatusCode::ACCEPTED, Json(json!({ "notification": name, "delivery": "no_recipient" }))).into_response()
        }
        Err(ProcessError::Invalid { reason, message }) => {
            app.metrics.dead_letter(reason);
            (StatusCode::BAD_REQUEST, Json(json!({ "error": reason, "message": message }))).into_response()
        }
        Err(ProcessError::Transient(error)) => {
            app.metrics.retries.inc();
            let message = error.to_string();
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "unavailable", "message": message })))
                .into_response()
        }
    }
}

/// Whether the request carries `Authorization: Bearer <expected>`. The comparison takes the same
/// time wherever the tokens differ: it compares SHA-256 digests of both (so their lengths do not
/// matter either) with `subtle`, which does not stop at the first difference.
pub(crate) fn presents_bearer_secret(headers: &HeaderMap, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once([' ', '\t']))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(presented) = presented else { return false };
    Sha256::digest(presented.as_bytes()).ct_eq(&Sha256::digest(expected.as_bytes())).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(authorization: Option<&str>, expected: bool) {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        }
        assert_eq!(presents_bearer_secret(&headers, "s3cret-ingest"), expected, "{authorization:?}");
    }

    #[test]
    fn the_ingest_token_is_a_bearer_token_matched_exactly() {
        check(Some("Bearer s3cret-ingest"), true);
        check(Some("bearer   s3cret-ingest "), true);
        check(None, false);
        check(Some("Bearer"), false);
        check(Some("Bearer "), false);
        check(Some("Bearer s3cret-ingesT"), false);
        check(Some("Bearer s3cret-ingest2"), false);
        check(Some("Bearer s3cret"), false);
        check(Some("Basic s3cret-ingest"), false);
        check(Some("s3cret-ingest"), false);
    }
}
