//! Batch owners found through the batch orchestrator's HTTP API (`--owner-lookup-url`): looked up
//! beside the consumer, never in its way, with the batch id escaped as one path segment.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::harness::{Herald, Producer, Scope, class_created, envelope, infra, wait_group_stable, wait_until};

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
    // Parked at once; the lookup runs beside the pipeline and releases it when it answers.
    let (status, body) = herald.post(serde_json::to_vec(&ready).unwrap()).await;
    assert_eq!((status, body["delivery"].as_str()), (202, Some("parked")), "{body}");
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

/// A batch orchestrator that holds every lookup until `released`, and keeps count: how many lookups
/// it is holding now, the most it ever held at once, and the most it held at once for one batch.
struct SlowOrchestrator {
    owner: String,
    released: tokio::sync::watch::Sender<bool>,
    holding: AtomicUsize,
    most_held: AtomicUsize,
    per_batch: Mutex<HashMap<String, (usize, usize)>>,
}

impl SlowOrchestrator {
    async fn start(owner: String) -> (Arc<SlowOrchestrator>, String) {
        async fn pipeline_state(State(facts): State<Arc<SlowOrchestrator>>, Path(batch): Path<String>) -> Response {
            {
                let mut per_batch = facts.per_batch.lock().unwrap();
                let (now, most) = per_batch.entry(batch.clone()).or_default();
                *now += 1;
                *most = (*most).max(*now);
            }
            let holding = facts.holding.fetch_add(1, Ordering::SeqCst) + 1;
            facts.most_held.fetch_max(holding, Ordering::SeqCst);
            let mut released = facts.released.subscribe();
            let _ = released.wait_for(|released| *released).await;
            facts.holding.fetch_sub(1, Ordering::SeqCst);
            facts.per_batch.lock().unwrap().get_mut(&batch).unwrap().0 -= 1;
            Json(json!({ "batch_id": batch, "user_id": facts.owner, "pipeline_state": {} })).into_response()
        }
        let facts = Arc::new(SlowOrchestrator {
            owner,
            released: tokio::sync::watch::channel(false).0,
            holding: AtomicUsize::new(0),
            most_held: AtomicUsize::new(0),
            per_batch: Mutex::new(HashMap::new()),
        });
        let app = axum::Router::new()
            .route("/internal/v1/batches/{batch}/pipeline-state", get(pipeline_state))
            .with_state(Arc::clone(&facts));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (facts, format!("http://{address}"))
    }
}

/// Twenty notifications wait for owners that a stalled orchestrator will not name yet; a record for
/// another teacher behind them on the same partition is delivered anyway (inline lookups of 2 s each
/// used to hold it back 40 s). Lookups run four at a time, one per batch, and when the orchestrator
/// answers every parked notification is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_lookup_holds_back_only_the_notifications_of_its_batch() {
    const SLOW_BATCHES: usize = 20;
    let infra = infra();
    let scope = Scope::new("lookup-slow");
    let (teacher, other) = (scope.user("teacher"), scope.user("other"));
    let (orchestrator, url) = SlowOrchestrator::start(teacher.clone()).await;
    // class_created shares batch_phase_outcome's topic, so both kinds queue on one partition.
    let topic = scope.topic("batch_phase_outcome");
    let shared_topic = format!("class_created={topic}");
    let herald = Herald::production(
        &scope,
        &infra,
        &[
            "--topic",
            &shared_topic,
            "--owner-lookup-url",
            &url,
            "--owner-lookup-concurrency",
            "4",
            "--owner-lookup-timeout-seconds",
            "120",
        ],
    )
    .await;
    wait_group_stable(&infra, &scope.group(), 1).await;
    let mut teacher_socket = herald.connect(&teacher).await;
    let mut other_socket = herald.connect(&other).await;

    let producer = Producer::new(&infra);
    let mut parked_ids = Vec::new();
    for index in 0..SLOW_BATCHES {
        let batch = scope.batch(&format!("slow-{index}"));
        let outcome = envelope("batch_phase_outcome", "basic", |value| value["data"]["batch_id"] = json!(batch));
        parked_ids.push(outcome["event_id"].as_str().unwrap().to_owned());
        producer.send_to(&topic, Some(0), Some(&batch), Some(&serde_json::to_vec(&outcome).unwrap())).await;
    }
    let behind = class_created(&other, "class-behind-the-slow-batches");
    producer.send_to(&topic, Some(0), Some(&other), Some(&serde_json::to_vec(&behind).unwrap())).await;

    let notification = other_socket.notification().await;
    assert_eq!(notification["event_id"], behind["event_id"], "the record behind the stalled lookups");
    wait_until("four lookups are held by the orchestrator", || async {
        orchestrator.holding.load(Ordering::SeqCst) == 4
    })
    .await;
    assert_eq!(herald.metric("herald_notifications_parked_total").await, SLOW_BATCHES as f64);

    orchestrator.released.send_replace(true);
    let mut delivered = Vec::new();
    for _ in 0..SLOW_BATCHES {
        delivered.push(teacher_socket.notification().await["event_id"].as_str().unwrap().to_owned());
    }
    delivered.sort();
    parked_ids.sort();
    assert_eq!(delivered, parked_ids, "every parked notification, once each");
    assert_eq!(orchestrator.most_held.load(Ordering::SeqCst), 4, "--owner-lookup-concurrency 4");
    for (batch, (_, most)) in orchestrator.per_batch.lock().unwrap().iter() {
        assert_eq!(*most, 1, "{batch}: one lookup at a time per batch");
    }
}

/// A batch id is one path segment of the lookup URL, whatever it contains: the orchestrator sees
/// it percent-encoded in place, and decodes it back to the batch id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_id_is_escaped_as_one_path_segment() {
    struct Seen {
        owner: String,
        paths: Mutex<Vec<String>>,
        batches: Mutex<Vec<String>>,
    }
    async fn pipeline_state(
        State(seen): State<Arc<Seen>>,
        OriginalUri(uri): OriginalUri,
        Path(batch): Path<String>,
    ) -> Response {
        seen.paths.lock().unwrap().push(uri.to_string());
        seen.batches.lock().unwrap().push(batch.clone());
        Json(json!({ "batch_id": batch, "user_id": seen.owner, "pipeline_state": {} })).into_response()
    }
    let scope = Scope::new("lookup-escape");
    let teacher = scope.user("teacher");
    let batch = format!("odd/batch?x=1#frag %41 {}", scope.id);
    let seen = Arc::new(Seen { owner: teacher.clone(), paths: Mutex::default(), batches: Mutex::default() });
    let app = axum::Router::new()
        .route("/internal/v1/batches/{batch}/pipeline-state", get(pipeline_state))
        .fallback(|OriginalUri(uri): OriginalUri| async move { (StatusCode::NOT_FOUND, uri.to_string()) })
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let herald = Herald::embedded("lookup-escape", &["--owner-lookup-url", &format!("http://{address}")]).await;
    let mut socket = herald.connect(&teacher).await;

    let outcome = envelope("batch_phase_outcome", "basic", |value| value["data"]["batch_id"] = json!(batch));
    let (status, body) = herald.post(serde_json::to_vec(&outcome).unwrap()).await;
    assert_eq!((status, body["delivery"].as_str()), (202, Some("parked")), "{body}");
    let notification = socket.notification().await;
    assert_eq!(notification["data"]["batch_id"], batch.as_str());

    let escaped = format!("odd%2Fbatch%3Fx=1%23frag%20%2541%20{}", scope.id);
    let paths = seen.paths.lock().unwrap().clone();
    assert!(!paths.is_empty());
    for path in &paths {
        assert_eq!(path, &format!("/internal/v1/batches/{escaped}/pipeline-state"), "no query, no fragment");
    }
    assert!(seen.batches.lock().unwrap().iter().all(|seen| *seen == batch), "decoded back to the batch id");
}
