//! Trace context: the span that handles an event continues the producer's trace, and is exported
//! over OTLP/HTTP to the configured endpoint.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

use super::harness::{Herald, envelope, wait_until};

/// Exported spans: (name, trace id, parent span id), in hex.
type Spans = Arc<Mutex<Vec<(String, String, String)>>>;

/// A stand-in OTLP/HTTP receiver that keeps every exported span.
async fn collector() -> (String, Spans) {
    let spans: Spans = Arc::default();
    async fn export(State(spans): State<Spans>, body: Bytes) -> &'static str {
        let request = ExportTraceServiceRequest::decode(body).unwrap();
        let hex = |bytes: &[u8]| bytes.iter().map(|byte| format!("{byte:02x}")).collect::<String>();
        for resource in request.resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.lock().unwrap().push((span.name, hex(&span.trace_id), hex(&span.parent_span_id)));
                }
            }
        }
        ""
    }
    let app = axum::Router::new().route("/v1/traces", post(export)).with_state(Arc::clone(&spans));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}/v1/traces"), spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_span_continues_the_producers_trace_and_is_exported() {
    let (endpoint, spans) = collector().await;
    let mut herald = Herald::embedded("tracing", &["--otlp-endpoint", &endpoint]).await;
    // metadata.traceparent = 00-b1051ff33be4f55e51665cd9f067b895-62d1c427e16c0d06-01
    let traced = envelope("batch_file_removed", "traced", |_| {});
    let (status, body) = herald.post(serde_json::to_vec(&traced).unwrap()).await;
    assert_eq!(status, 202, "{body}");
    // Stopping flushes the spans still waiting for the exporter's next batch.
    assert!(herald.terminate().await.success());
    wait_until("the event span is exported", || {
        let spans = Arc::clone(&spans);
        async move { spans.lock().unwrap().iter().any(|(name, _, _)| name == "event") }
    })
    .await;
    let spans = spans.lock().unwrap();
    let (_, trace_id, parent) = spans.iter().find(|(name, _, _)| name == "event").unwrap();
    assert_eq!(trace_id, "b1051ff33be4f55e51665cd9f067b895");
    assert_eq!(parent, "62d1c427e16c0d06");
}
