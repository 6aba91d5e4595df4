//! Real envelopes, as producers send them, through `route`, serde and the handler trait.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use herald::runtime::{Notification, RouteError};
use herald::{Event, EventEnvelope, EventHandler};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{model, root, sorted_entries};

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/envelopes")
}

/// Every example of every definition, in both producer forms: (notification name, case name,
/// label, bytes). Made from the definitions, so a new event is covered without a fixture edit.
fn cases() -> Vec<(String, String, PathBuf, Vec<u8>)> {
    let mut cases = Vec::new();
    for fixture in herald_codegen::fixtures(&model()) {
        for (relative, bytes) in fixture.files() {
            cases.push((fixture.notification.clone(), fixture.case.clone(), PathBuf::from(relative), bytes.to_vec()));
        }
    }
    cases
}

fn route(file: &Path, bytes: &[u8]) -> EventEnvelope<Event> {
    herald::route(bytes).unwrap_or_else(|error| panic!("{}: {error}", file.display()))
}

#[test]
fn every_event_has_an_example() {
    let cases = cases();
    for info in herald::EVENTS {
        let count = cases.iter().filter(|(event, ..)| event == info.notification).count();
        assert!(count >= 2, "{} has no example in both forms", info.notification);
    }
}

/// Other code reads the fixtures by path (the service's tests, `examples/route.rs`), so the
/// checked-in copies must be what the definitions make, and no file may outlive its example.
#[test]
fn checked_in_fixtures_are_fresh() {
    const REGENERATE: &str = "cargo run -p herald-codegen -- fixtures";
    let mut expected = BTreeMap::new();
    for (_, _, relative, bytes) in cases() {
        expected.insert(fixtures().join(relative), bytes);
    }
    for (path, bytes) in &expected {
        let current = std::fs::read(path).unwrap_or_default();
        assert!(&current == bytes, "{} is stale: run `{REGENERATE}` and commit the result", path.display());
    }
    for dir in sorted_entries(&fixtures()) {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('_') || !dir.is_dir() {
            continue;
        }
        for file in sorted_entries(&dir) {
            assert!(expected.contains_key(&file), "{} has no example any more: run `{REGENERATE}`", file.display());
        }
    }
}

#[test]
fn every_envelope_routes_to_its_event() {
    for (event, _, file, bytes) in cases() {
        let envelope = route(&file, &bytes);
        assert_eq!(envelope.data.notification_name(), Some(event.as_str()), "{}", file.display());
    }
}

#[test]
fn aliases_route_like_the_canonical_event_type() {
    let mut seen = Vec::new();
    for (event, _, file, bytes) in cases() {
        let envelope = route(&file, &bytes);
        let info = herald::EVENTS.iter().find(|info| info.notification == event).unwrap();
        if envelope.event_type != info.event_type {
            assert!(info.aliases.contains(&envelope.event_type.as_str()), "{}", file.display());
            seen.push(envelope.event_type.clone());
        }
    }
    for info in herald::EVENTS {
        for alias in info.aliases {
            assert!(seen.iter().any(|seen| seen == alias), "no fixture sends the alias {alias}");
        }
    }
}

#[test]
fn both_producer_forms_parse_identically() {
    let mut by_case: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    for (event, case, file, bytes) in cases() {
        let routed = serde_json::to_value(route(&file, &bytes)).unwrap();
        by_case.entry((event, case)).or_default().push(routed);
    }
    for ((event, case), values) in by_case {
        assert_eq!(values[0], values[1], "{event}/{case}: the dumps and compact forms differ after parsing");
    }
}

#[test]
fn a_round_trip_keeps_every_field() {
    for (_, _, file, bytes) in cases() {
        let original: Value = serde_json::from_slice(&bytes).unwrap();
        let routed = serde_json::to_value(route(&file, &bytes)).unwrap();
        assert_eq!(routed, original, "{}: a field was lost or changed", file.display());
    }
}

#[test]
fn an_unknown_event_type_keeps_its_payload() {
    for file in sorted_entries(&fixtures().join("_unknown")) {
        let bytes = std::fs::read(&file).unwrap();
        let envelope = route(&file, &bytes);
        let Event::Unknown(raw) = &envelope.data else { panic!("{}: expected Unknown", file.display()) };
        let original: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(serde_json::from_str::<Value>(raw.get()).unwrap(), original["data"]);
        assert_eq!(serde_json::to_value(&envelope).unwrap(), original);
    }
}

fn check_invalid(file: &str, reason: &str, message: &str) {
    let bytes = std::fs::read(fixtures().join("_invalid").join(file)).unwrap();
    let error = herald::route(&bytes).expect_err(file);
    assert_eq!(error.reason(), reason, "{file}: {error}");
    assert!(error.to_string().contains(message), "{file}: {error:?} should mention {message:?}");
}

#[test]
fn bad_input_is_a_classified_error() {
    check_invalid("not_json.bin", "not_json", "not JSON");
    check_invalid("not_an_envelope.json", "not_envelope", "not an event envelope");
    check_invalid("missing_event_type.json", "not_envelope", "missing field `event_type`");
    check_invalid("bad_uuid.json", "not_envelope", "at `event_id`: expected a UUID");
    check_invalid("payload_missing_required.json", "invalid_payload", "missing field `filename`");
    check_invalid("payload_wrong_type.json", "invalid_payload", "at `course_codes`");
    let trailing = herald::route(b"{} {}").expect_err("two documents");
    assert!(matches!(trailing, RouteError::NotJson(_) | RouteError::NotEnvelope { .. }), "{trailing}");
}

/// What the recorder's handler gives back: the notification the generated default delivered, or
/// the `event_type` nothing claims.
#[derive(Debug)]
enum Handled {
    Delivered(Box<Notification>),
    Unknown(String),
}

/// A handler that returns what the generated defaults deliver.
struct Recorder;

impl EventHandler for Recorder {
    type Output = Handled;
    type Error = std::convert::Infallible;

    fn deliver(&self, notification: Notification) -> impl Future<Output = Result<Handled, Self::Error>> + Send {
        std::future::ready(Ok(Handled::Delivered(Box::new(notification))))
    }

    fn handle_unknown(
        &self,
        envelope: &EventEnvelope<Box<RawValue>>,
    ) -> impl Future<Output = Result<Handled, Self::Error>> + Send {
        std::future::ready(Ok(Handled::Unknown(envelope.event_type.clone())))
    }
}

/// Dispatches `envelope` to the recorder and returns the notification delivered.
fn delivered(file: &Path, envelope: EventEnvelope<Event>) -> Notification {
    match now(herald::dispatch(&Recorder, envelope)) {
        Ok(Handled::Delivered(notification)) => *notification,
        other => panic!("{}: one notification expected, got {other:?}", file.display()),
    }
}

/// Polls a future that never waits (the recorder's futures are ready at once).
fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the future waited"),
    }
}

#[test]
fn declarative_handlers_build_the_notification() {
    for (event, case, file, bytes) in cases() {
        let envelope = route(&file, &bytes);
        let original: Value = serde_json::from_slice(&bytes).unwrap();
        // The routed event names the same recipient and batch owner as the notification built
        // from it (the consumer orders records by them before any notification exists).
        let recipient = envelope.data.recipient();
        let (user, batch) = (recipient.user.map(str::to_owned), recipient.batch.map(str::to_owned));
        let owner = envelope.data.batch_owner().map(|owner| (owner.batch.to_owned(), owner.user.to_owned()));
        let notification = &delivered(&file, envelope);
        assert_eq!((&notification.user, &notification.batch), (&user, &batch), "{}", file.display());
        assert_eq!(notification.batch_owner, owner, "{}", file.display());
        let info = herald::EVENTS.iter().find(|info| info.notification == event).unwrap();
        assert_eq!(notification.name, event);
        assert_eq!(notification.category, info.category);
        assert_eq!(notification.priority, info.priority);
        assert_eq!(notification.event_id, original["event_id"].as_str().unwrap());
        assert_eq!(notification.correlation_id, original["correlation_id"].as_str().unwrap());
        assert_eq!(notification.timestamp, original["event_timestamp"].as_str().unwrap());
        assert!(notification.user.is_some() || notification.batch.is_some(), "{}: nobody to notify", file.display());
        // The data holds exactly the forwarded keys the producer sent, with their values.
        let data: BTreeMap<String, Value> = serde_json::from_str(notification.data.get()).unwrap();
        let payload = original["data"].as_object().unwrap();
        for (key, value) in &data {
            assert_eq!(Some(value), payload.get(key), "{event}/{case}: data.{key}");
        }
        let message: Value = serde_json::from_slice(&notification.encode_message("n-1")).unwrap();
        assert_eq!(message["event"], event.as_str());
        assert_eq!(message["id"], "n-1");
        assert_eq!(message["data"], serde_json::to_value(&data).unwrap());
    }
}

#[test]
fn an_unknown_user_falls_back_to_the_batch_owner() {
    let file = fixtures().join("batch_content_provisioning_completed/unknown_user.compact.json");
    let notification = &delivered(&file, route(&file, &std::fs::read(&file).unwrap()));
    assert_eq!(notification.user, None, "\"unknown\" is not a user");
    assert!(notification.batch.is_some());
    assert_eq!(notification.batch_owner, None, "\"unknown\" does not own the batch");
}

#[test]
fn events_with_user_and_batch_reveal_the_owner() {
    for (event, _, file, bytes) in cases() {
        let owner = delivered(&file, route(&file, &bytes)).batch_owner;
        let expected = matches!(
            event.as_str(),
            "batch_file_added"
                | "batch_file_removed"
                | "batch_content_provisioning_completed"
                | "essay_student_association_updated"
        ) && !file.to_string_lossy().contains("unknown_user");
        assert_eq!(owner.is_some(), expected, "{}", file.display());
    }
}

#[test]
fn unknown_events_reach_handle_unknown() {
    let file = fixtures().join("_unknown/batch_essays_registered.compact.json");
    let handled = now(herald::dispatch(&Recorder, route(&file, &std::fs::read(&file).unwrap())));
    assert!(
        matches!(&handled, Ok(Handled::Unknown(event_type)) if event_type == "huleedu.batch.essays.registered.v1"),
        "{handled:?}"
    );
}

#[test]
fn new_enum_values_are_kept() {
    let file = fixtures().join("class_created/new_course_code.compact.json");
    let envelope = route(&file, &std::fs::read(&file).unwrap());
    let Event::ClassCreatedV1(class) = &envelope.data else { panic!("expected ClassCreatedV1") };
    assert!(class.course_codes.contains(&herald::CourseCode::Unrecognized("ENG8".to_owned())));
    assert!(class.course_codes.contains(&herald::CourseCode::Eng5) || class.course_codes.len() == 1);
}
