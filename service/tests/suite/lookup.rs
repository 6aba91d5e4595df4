//! Batch owners found through the batch orchestrator's HTTP API (`--owner-lookup-url`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::harness::{Herald, Scope, envelope, wait_until};

/// A stand-in batch orchestrator: answers `GET /internal/v1/batches/{id}/pipeline-state` with the
/// owner of `known` once `answering` is set, and 404 otherwise.
async fn orchestrator(known: String, owner: String, answering: Arc<AtomicBool>) -> String {
    struct Facts {
        known: String,
        owner: String,
        answering: Arc<AtomicBool>,
    }
    async fn pipeline_state(State(facts): State<Arc<Facts>>, Path(batch): Path<String>) -> Response {
        if batch == facts.known && facts.answering.load(Ordering::SeqCst) {
            Json(json!({ "batch_id": batch, "user_id": facts.owner, "pipeline_state": {} })).into_response()
        } else {
            StatusCode::NOT_FOUND.into_response()
        }
    }
    let facts = Arc::new(Facts { known, owner, answering });
    let app =
        axum::Router::new().route("/internal/v1/batches/{batch}/pipeline-state", get(pipeline_state)).with_state(facts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_owner_is_looked_up_when_no_event_has_told_us() {
    let scope = Scope::new("lookup");
    let (teacher, batch) = (scope.user("teacher"), scope.batch("b"));
    let answering = Arc::new(AtomicBool::new(true));
    let url = orchestrator(batch.clone(), teacher.clone(), Arc::clone(&answering)).await;
    let herald = Herald::embedded("lookup", &["--owner-lookup-url", &url]).await;
    let mut socket = herald.connect(&teacher).await;

    let ready =
        envelope("batch_essays_ready", "basic", |value| value["data"]["batch_id"] = Value::String(batch.clone()));
    let (status, body) = herald.post(serde_json::to_vec(&ready).unwrap()).await;
    assert_eq!((status, body["delivery"].as_str()), (202, Some("published")), "{body}");
    let notification = socket.notification().await;
    assert_eq!(notification["event"], "batch_essays_ready");
    assert_eq!(notification["data"]["batch_id"], batch.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_notification_is_delivered_when_a_later_lookup_succeeds() {
    let scope = Scope::new("lookup-later");
    let (teacher, batch) = (scope.user("teacher"), scope.batch("b"));
    let answering = Arc::new(AtomicBool::new(false));
    let url = orchestrator(batch.clone(), teacher.clone(), Arc::clone(&answering)).await;
    let herald = Herald::embedded("lookup-later", &["--owner-lookup-url", &url]).await;
    let mut socket = herald.connect(&teacher).await;

    let outcome =
        envelope("batch_phase_outcome", "basic", |value| value["data"]["batch_id"] = Value::String(batch.clone()));
    let (status, body) = herald.post(serde_json::to_vec(&outcome).unwrap()).await;
    assert_eq!((status, body["delivery"].as_str()), (202, Some("parked")), "{body}");
    wait_until("the notification is parked", || async {
        herald.metric("herald_notifications_parked_total").await == 1.0
    })
    .await;

    // The orchestrator learns about the batch; the parking sweeper's next lookup delivers.
    answering.store(true, Ordering::SeqCst);
    let notification = socket.notification().await;
    assert_eq!(notification["event"], "batch_phase_outcome");
    assert_eq!(notification["data"]["batch_id"], batch.as_str());
}
