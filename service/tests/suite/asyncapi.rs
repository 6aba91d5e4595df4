//! `GET /asyncapi.json`: the AsyncAPI document generated from the event definitions, served as is.

use serde_json::Value;

use super::harness::Herald;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_generated_asyncapi_document() {
    let herald = Herald::embedded("asyncapi", &[]).await;
    let response = reqwest::get(herald.url("/asyncapi.json")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    assert_eq!(content_type.as_ref().and_then(|value| value.to_str().ok()), Some("application/json"));
    let body = response.text().await.unwrap();
    assert!(body == herald::ASYNCAPI, "the served document is not herald::ASYNCAPI");
    let document: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(document["asyncapi"], "3.0.0");
    let ws = &document["channels"]["ws"];
    assert_eq!(ws["address"], "/ws");
    for info in herald::EVENTS {
        assert!(ws["messages"][info.notification].is_object(), "/ws lacks {}", info.notification);
    }
}
