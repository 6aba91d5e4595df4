//! Adding an event takes one schema file: in a scratch copy of the workspace, one more definition
//! (with its examples) grows the dispatch enum, the handler trait, the topic list, the fixtures, the
//! TypeScript union and the AsyncAPI document, and the copy's own tests pass, with no Rust,
//! TypeScript or fixture edit.

use std::path::Path;
use std::process::{Command, Stdio};

use super::root;

const NEW_EVENT: &str = r#"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "$id": "essay_feedback_ready.json",
  "title": "EssayFeedbackReadyV1",
  "description": "AI feedback for an essay is ready.",
  "type": "object",
  "properties": {
    "batch_id": { "type": "string", "description": "The essay's batch." },
    "essay_id": { "type": "string", "description": "The essay." },
    "feedback_summary": { "type": "string", "description": "One paragraph of feedback." }
  },
  "required": ["batch_id", "essay_id", "feedback_summary"],
  "examples": [
    {
      "case": "basic",
      "data": { "batch_id": "batch-1", "essay_id": "essay-1", "feedback_summary": "Clear thesis; cite sources." }
    },
    {
      "case": "traced",
      "envelope": {
        "event_id": "0d3c8f0e-5b1a-4c9e-8f2d-7a6b5c4d3e2f",
        "event_type": "huleedu.essay.feedback.ready.v1",
        "event_timestamp": "2025-08-01T09:00:00.000001Z",
        "source_service": "ai-feedback-service",
        "schema_version": 1,
        "correlation_id": "0b7e5d1c-2a3f-4e6d-8c9b-1a2b3c4d5e6f",
        "data_schema_uri": null,
        "data": { "batch_id": "batch-2", "essay_id": "essay-2", "feedback_summary": "Strong close; vary sentences." },
        "metadata": { "traceparent": "00-6f0d37c3f72228f3e02ec0f9d02f4fc8-c96e9948590a39b2-01" }
      }
    }
  ],
  "x-herald": {
    "event": {
      "event_type": "huleedu.essay.feedback.ready.v1",
      "topics": ["huleedu.essay.feedback.ready.v1", "huleedu.ai.essay.feedback.ready.v1"]
    },
    "notification": {
      "name": "essay_feedback_ready",
      "category": "processing_results",
      "priority": "standard",
      "fields": ["batch_id", "essay_id", "feedback_summary"]
    },
    "recipient": { "batch": "batch_id" }
  }
}
"#;

/// Copies the workspace sources (not `target/`, `.git/` or `node_modules/`).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if ["target", ".git", "node_modules"].iter().any(|skip| name == *skip) {
            continue;
        }
        let (source, destination) = (entry.path(), to.join(&name));
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&source, &destination);
        } else if entry.file_type().unwrap().is_file() {
            std::fs::copy(&source, &destination).unwrap();
        }
    }
}

fn cargo(scratch: &Path, args: &[&str]) -> String {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(args)
        .current_dir(scratch)
        // trybuild's target folder already holds the dependencies, built with the same settings;
        // the workspace's own target folder is locked by the cargo running this test.
        .env("CARGO_TARGET_DIR", root().join("target/tests/trybuild"))
        .stdin(Stdio::null())
        .output()
        .expect("cargo starts");
    assert!(
        output.status.success(),
        "cargo {args:?} failed in the scratch copy {}:\n{}{}",
        scratch.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn one_schema_file_adds_an_event_and_the_copys_tests_pass() {
    let scratch = root().join("target/tests/add-event");
    let _ = std::fs::remove_dir_all(&scratch);
    copy_tree(root(), &scratch);
    // The TypeScript compiler the copy's tests run (installed by scripts/setup-typescript.sh).
    let node_modules = root().join("clients/typescript/node_modules");
    assert!(node_modules.is_dir(), "TypeScript is not installed: run `bash scripts/setup-typescript.sh`");
    std::os::unix::fs::symlink(&node_modules, scratch.join("clients/typescript/node_modules")).unwrap();
    // The AsyncAPI parser the copy's tests validate its document with (installed by the same script).
    let node_modules = root().join("clients/asyncapi/node_modules");
    assert!(node_modules.is_dir(), "@asyncapi/parser is not installed: run `bash scripts/setup-typescript.sh`");
    std::os::unix::fs::symlink(&node_modules, scratch.join("clients/asyncapi/node_modules")).unwrap();

    // The one file.
    std::fs::write(scratch.join("event-defs/essay_feedback_ready.json"), NEW_EVENT).unwrap();
    // The one command that rewrites what the definitions make and the repository checks in.
    cargo(&scratch, &["run", "-q", "-p", "herald-codegen", "--", "generate"]);

    // The copy's own root test binary passes, TypeScript check included: fixtures made from the
    // new examples route, round-trip and are handled; the catalogue counts the definitions; the
    // TypeScript is fresh and strict; the AsyncAPI document is fresh and valid. (Not `compile`, which only compiles codegen's own snapshots,
    // unchanged by a new definition; not this test, which would copy itself again.)
    cargo(
        &scratch,
        &["test", "-q", "-p", "herald", "--test", "tests", "--", "--skip", "add_event", "--skip", "compile"],
    );

    // What grew: both topics, the handler trait, the dispatch enum, the fixtures, the union.
    let topics = cargo(&scratch, &["run", "-q", "--example", "route", "--", "--topics"]);
    assert_eq!(topics.lines().count(), herald::TOPICS.len() + 2, "{topics}");
    assert!(topics.lines().any(|topic| topic == "huleedu.ai.essay.feedback.ready.v1"), "{topics}");
    let generated = cargo(&scratch, &["run", "-q", "-p", "herald-codegen", "--", "rust"]);
    assert!(generated.contains("fn handle_essay_feedback_ready("), "the handler trait has no method for the new event");
    assert!(generated.contains("EssayFeedbackReadyV1(EssayFeedbackReadyV1)"), "the dispatch enum has no variant");
    let fixtures = scratch.join("tests/fixtures/envelopes/essay_feedback_ready");
    for file in ["basic.dumps.json", "basic.compact.json", "traced.dumps.json", "traced.compact.json"] {
        assert!(fixtures.join(file).is_file(), "no fixture {file}");
    }
    let typescript = std::fs::read_to_string(scratch.join("clients/typescript/src/events.ts")).unwrap();
    assert!(typescript.contains("| EssayFeedbackReadyNotification"), "the Notification union did not grow");
    let asyncapi = std::fs::read_to_string(scratch.join(herald_codegen::ASYNCAPI_PATH)).unwrap();
    assert!(asyncapi.contains("\"#/channels/ws/messages/essay_feedback_ready\""), "/ws did not grow");
    assert!(asyncapi.contains("\"address\": \"huleedu.ai.essay.feedback.ready.v1\""), "no channel for the new topic");
}
