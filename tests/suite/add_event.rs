//! Adding an event takes one schema file and no Rust edits: in a scratch copy of the workspace, one
//! more definition grows the dispatch enum, the handler trait, the topic list and the TypeScript
//! union, and the new event routes.

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
  "x-herald": {
    "event": { "event_type": "huleedu.essay.feedback.ready.v1", "topic": "huleedu.essay.feedback.ready.v1" },
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

const NEW_ENVELOPE: &str = r#"{"event_id": "6f1c3a52-8d0e-4b7a-9c21-0e5d4f3b2a19", "event_type": "huleedu.essay.feedback.ready.v1", "event_timestamp": "2025-08-01T09:00:00.000001Z", "source_service": "ai-feedback-service", "schema_version": 1, "correlation_id": "0b7e5d1c-2a3f-4e6d-8c9b-1a2b3c4d5e6f", "data_schema_uri": null, "data": {"batch_id": "batch-1", "essay_id": "essay-1", "feedback_summary": "Clear thesis; cite sources."}, "metadata": null}"#;

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
        } else {
            std::fs::copy(&source, &destination).unwrap();
        }
    }
}

fn cargo(scratch: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    command
        .args(args)
        .current_dir(scratch)
        // trybuild's target folder already holds the dependencies, built with the same settings.
        .env("CARGO_TARGET_DIR", root().join("target/tests/trybuild"))
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("cargo starts");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "cargo {args:?} failed in the scratch copy:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn one_schema_file_adds_an_event_without_rust_edits() {
    let scratch = root().join("target/tests/add-event");
    let _ = std::fs::remove_dir_all(&scratch);
    copy_tree(root(), &scratch);
    std::fs::write(scratch.join("event-defs/essay_feedback_ready.json"), NEW_EVENT).unwrap();

    // The new event routes, through a dispatch enum variant and a generated handler method.
    let routed: serde_json::Value =
        serde_json::from_str(&cargo(&scratch, &["run", "-q", "--example", "route"], Some(NEW_ENVELOPE))).unwrap();
    assert_eq!(routed["variant"], "EssayFeedbackReadyV1");
    assert_eq!(routed["notification"], "essay_feedback_ready");
    assert_eq!(routed["batch"], "batch-1");
    assert_eq!(routed["message"]["data"]["feedback_summary"], "Clear thesis; cite sources.");

    // The topic list grew.
    let topics = cargo(&scratch, &["run", "-q", "--example", "route", "--", "--topics"], None);
    assert_eq!(topics.lines().count(), herald::TOPICS.len() + 1, "{topics}");
    assert!(topics.lines().any(|topic| topic == "huleedu.essay.feedback.ready.v1"), "{topics}");

    // The handler trait grew a method with a generated default.
    let generated = cargo(&scratch, &["run", "-q", "-p", "herald-codegen", "--", "rust"], None);
    assert!(generated.contains("fn handle_essay_feedback_ready("), "the handler trait has no method for the new event");
    assert!(generated.contains("EssayFeedbackReadyV1(EssayFeedbackReadyV1)"), "the dispatch enum has no variant");

    // The TypeScript union grew.
    cargo(&scratch, &["run", "-q", "-p", "herald-codegen", "--", "typescript"], None);
    let typescript = std::fs::read_to_string(scratch.join("clients/typescript/src/events.ts")).unwrap();
    assert!(typescript.contains("| EssayFeedbackReadyNotification"), "the Notification union did not grow");
    assert!(typescript.contains("event: \"essay_feedback_ready\";"));
    let names = typescript.lines().find(|line| line.starts_with("export const NOTIFICATION_NAMES = ")).unwrap();
    assert!(names.contains("\"essay_feedback_ready\""), "{names}");
    assert_eq!(names.matches(", ").count() + 1, herald::EVENTS.len() + 1, "{names}");
}
