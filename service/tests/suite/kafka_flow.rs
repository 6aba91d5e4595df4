//! Events produced to Kafka reach the right teacher's sockets: every event, through batch ownership
//! and parking; never another user's; once per event; bad input dead-lettered with its reason.
//!
//! Ordering arguments used throughout: records of one partition for the same user (or the same
//! batch) are handled in order, and one Redis connection receives publishes in the order Redis
//! executed them. So a "sentinel" record for a user, produced to the partition of earlier traffic
//! for that user, is published after that traffic, and its arrival on the user's socket proves that
//! anything the traffic published to that user has already arrived. Records for different users
//! may be handled in any order; a sentinel for another user proves only what was handled before
//! the sentinel was produced.

use std::collections::{BTreeMap, BTreeSet};

use rdkafka::Message as _;
use rdkafka::message::Headers as _;
use serde_json::Value;

use super::harness::{
    Herald, Infra, Producer, Scope, assert_subscribed, envelope, envelope_key, infra, read_topic, wait_metric,
};

fn set(envelope: &mut Value, field: &str, value: &str) {
    envelope["data"][field] = Value::String(value.to_owned());
}

/// The catalogue row of a notification.
fn catalogue(name: &str) -> &'static herald::runtime::EventInfo {
    herald::EVENTS
        .iter()
        .find(|event| event.notification == name)
        .unwrap_or_else(|| panic!("{name} is not in herald::EVENTS"))
}

/// Checks one notification against the envelope it came from: name, event id, category and
/// priority from the catalogue, and every forwarded data field equal to the payload's.
fn check_notification(notification: &Value, sent: &Value, name: &str) {
    assert_eq!(notification["event"], name, "{notification}");
    assert_eq!(notification["event_id"], sent["event_id"], "{name}: event_id");
    assert_eq!(notification["correlation_id"], sent["correlation_id"], "{name}: correlation_id");
    let info = catalogue(name);
    assert_eq!(notification["category"], info.category.as_str(), "{name}: category");
    assert_eq!(notification["priority"], info.priority.as_str(), "{name}: priority");
    let data = notification["data"].as_object().unwrap_or_else(|| panic!("{name}: data is not an object"));
    assert!(!data.is_empty(), "{name}: no data forwarded");
    for (key, value) in data {
        assert_eq!(value, &sent["data"][key], "{name}: data.{key} differs from the payload");
    }
    for private in ["user_id", "created_by_user_id"] {
        assert!(!data.contains_key(private), "{name}: {private} must not be forwarded to the browser");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_one_of_the_13_events_reaches_the_right_teacher() {
    every_event_reaches_the_right_teacher(infra()).await;
}

/// The body of `every_one_of_the_13_events_reaches_the_right_teacher`, against single Redis or Redis Cluster.
pub(super) async fn every_event_reaches_the_right_teacher(infra: Infra) {
    let scope = Scope::new("all-events");
    let herald = Herald::production(&scope, &infra, &[]).await;
    let teacher = scope.user("teacher");
    let batch = scope.batch("b");
    let mut socket = herald.connect(&teacher).await;
    assert_subscribed(&infra.redis, &teacher, 1).await;
    let producer = Producer::new(&infra);

    // Events that carry both the teacher and the batch: delivered to the user, and they teach herald
    // who owns the batch.
    let owner_events = [
        (
            "batch_file_added",
            envelope("batch_file_added", "basic", |v| {
                set(v, "user_id", &teacher);
                set(v, "batch_id", &batch);
            }),
        ),
        (
            "batch_file_removed",
            envelope("batch_file_removed", "basic", |v| {
                set(v, "user_id", &teacher);
                set(v, "batch_id", &batch);
            }),
        ),
        (
            "batch_content_provisioning_completed",
            envelope("batch_content_provisioning_completed", "alias_els", |v| {
                set(v, "user_id", &teacher);
                set(v, "batch_id", &batch);
            }),
        ),
        (
            "essay_student_association_updated",
            envelope("essay_student_association_updated", "parsed", |v| {
                set(v, "created_by_user_id", &teacher);
                set(v, "batch_id", &batch);
            }),
        ),
    ];
    for (name, sent) in &owner_events {
        producer.send_envelope(&scope, name, sent).await;
    }
    let mut received = BTreeMap::new();
    for _ in &owner_events {
        let notification = socket.notification().await;
        let name = notification["event"].as_str().unwrap().to_owned();
        assert!(received.insert(name, notification).is_none(), "a notification arrived twice");
    }

    // The seven events that carry only a batch (or essay) id go to its owner, learnt above; two use
    // an alias as their event_type. Then the two events that name only a user.
    let batch_events = [
        ("batch_essays_ready", envelope("batch_essays_ready", "alias_els", |v| set(v, "batch_id", &batch))),
        ("batch_validation_errors", envelope("batch_validation_errors", "basic", |v| set(v, "batch_id", &batch))),
        (
            "cj_assessment_completed",
            envelope("cj_assessment_completed", "alias_unprefixed", |v| set(v, "entity_id", &batch)),
        ),
        ("spellcheck_completed", envelope("spellcheck_completed", "success", |v| set(v, "parent_id", &batch))),
        ("batch_phase_outcome", envelope("batch_phase_outcome", "basic", |v| set(v, "batch_id", &batch))),
        (
            "essay_content_provisioned",
            envelope("essay_content_provisioned", "alias_file", |v| set(v, "entity_id", &batch)),
        ),
        ("essay_validation_failed", envelope("essay_validation_failed", "basic", |v| set(v, "entity_id", &batch))),
        ("class_created", envelope("class_created", "basic", |v| set(v, "user_id", &teacher))),
        ("student_created", envelope("student_created", "alias_class", |v| set(v, "created_by_user_id", &teacher))),
    ];
    assert_eq!(batch_events[0].1["event_type"], "huleedu.els.batch.essays.ready.v1");
    for (name, sent) in &batch_events {
        producer.send_envelope(&scope, name, sent).await;
    }
    for _ in &batch_events {
        let notification = socket.notification().await;
        let name = notification["event"].as_str().unwrap().to_owned();
        assert!(received.insert(name.clone(), notification).is_none(), "{name} arrived twice");
    }

    let expected: BTreeSet<&str> = herald::EVENTS.iter().map(|event| event.notification).collect();
    let names: BTreeSet<&str> = received.keys().map(String::as_str).collect();
    assert_eq!(names, expected, "the teacher receives exactly the 13 notifications");
    for (name, sent) in owner_events.iter().chain(&batch_events) {
        check_notification(&received[*name], sent, name);
    }
    // Spot checks of what the browser sees.
    assert_eq!(received["batch_file_added"]["data"]["filename"], "Åsa Öberg - Argumenterande text.docx");
    assert_eq!(received["batch_essays_ready"]["data"]["batch_id"], batch.as_str());
    assert_eq!(received["cj_assessment_completed"]["data"]["entity_id"], batch.as_str());
    assert_eq!(received["spellcheck_completed"]["data"]["parent_id"], batch.as_str());
    assert_eq!(received["essay_validation_failed"]["data"]["entity_id"], batch.as_str());
    assert_eq!(received["class_created"]["data"]["class_id"], batch_events[7].1["data"]["class_id"]);
    assert_eq!(received["student_created"]["data"]["student_id"], batch_events[8].1["data"]["student_id"]);

    wait_metric(&herald, "herald_notifications_published_total", 13.0).await;
    assert_eq!(herald.metric("herald_notifications_parked_total").await, 0.0, "the owner was known: nothing parked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_notification_is_delivered_once_the_owner_is_learnt() {
    parked_then_released(infra()).await;
}

/// The body of `a_parked_notification_is_delivered_once_the_owner_is_learnt`, against single Redis or Redis Cluster.
pub(super) async fn parked_then_released(infra: Infra) {
    let scope = Scope::new("parked");
    let herald = Herald::production(&scope, &infra, &[]).await;
    let teacher = scope.user("teacher");
    let batch = scope.batch("b");
    let mut socket = herald.connect(&teacher).await;
    assert_subscribed(&infra.redis, &teacher, 1).await;
    let producer = Producer::new(&infra);

    let outcome = envelope("batch_phase_outcome", "with_failures", |v| set(v, "batch_id", &batch));
    producer.send_envelope(&scope, "batch_phase_outcome", &outcome).await;
    wait_metric(&herald, "herald_notifications_parked_total", 1.0).await;
    assert_eq!(herald.metric("herald_notifications_published_total").await, 0.0, "parked, not published");

    let file_added = envelope("batch_file_added", "minimal", |v| {
        set(v, "user_id", &teacher);
        set(v, "batch_id", &batch);
    });
    producer.send_envelope(&scope, "batch_file_added", &file_added).await;
    // Learning the owner releases the parked notification before the file notification is published.
    let first = socket.notification().await;
    check_notification(&first, &outcome, "batch_phase_outcome");
    let second = socket.notification().await;
    check_notification(&second, &file_added, "batch_file_added");
    wait_metric(&herald, "herald_notifications_published_total", 2.0).await;
    assert_eq!(herald.metric("herald_notifications_parked_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_notification_reaches_another_users_socket() {
    let infra = infra();
    let scope = Scope::new("isolation");
    let herald = Herald::production(&scope, &infra, &[]).await;
    let (teacher, bystander) = (scope.user("teacher"), scope.user("bystander"));
    let (batch, other_batch) = (scope.batch("teacher"), scope.batch("bystander"));
    let mut teacher_socket = herald.connect(&teacher).await;
    let mut bystander_socket = herald.connect(&bystander).await;
    assert_subscribed(&infra.redis, &teacher, 1).await;
    assert_subscribed(&infra.redis, &bystander, 1).await;
    let producer = Producer::new(&infra);

    // Both users own a batch.
    let teacher_owns = envelope("batch_file_added", "basic", |v| {
        set(v, "user_id", &teacher);
        set(v, "batch_id", &batch);
    });
    let bystander_owns = envelope("batch_file_added", "emoji_filename", |v| {
        set(v, "user_id", &bystander);
        set(v, "batch_id", &other_batch);
    });
    producer.send_envelope(&scope, "batch_file_added", &teacher_owns).await;
    producer.send_envelope(&scope, "batch_file_added", &bystander_owns).await;
    check_notification(&teacher_socket.notification().await, &teacher_owns, "batch_file_added");
    check_notification(&bystander_socket.notification().await, &bystander_owns, "batch_file_added");

    // The teacher's traffic: batch-only events for the teacher's batch and user events.
    let traffic = [
        ("batch_essays_ready", envelope("batch_essays_ready", "basic", |v| set(v, "batch_id", &batch))),
        ("cj_assessment_completed", envelope("cj_assessment_completed", "basic", |v| set(v, "entity_id", &batch))),
        ("spellcheck_completed", envelope("spellcheck_completed", "failed", |v| set(v, "parent_id", &batch))),
        (
            "batch_file_removed",
            envelope("batch_file_removed", "basic", |v| {
                set(v, "user_id", &teacher);
                set(v, "batch_id", &batch);
            }),
        ),
        ("class_created", envelope("class_created", "basic", |v| set(v, "user_id", &teacher))),
    ];
    // One batch-only event for the bystander's batch: the teacher owns a batch too, but not this one.
    let bystander_batch_event = envelope("batch_phase_outcome", "basic", |v| set(v, "batch_id", &other_batch));
    let mut traffic_keys = BTreeMap::new();
    for (name, sent) in &traffic {
        producer.send_envelope(&scope, name, sent).await;
        traffic_keys.insert(*name, envelope_key(sent).unwrap());
    }
    producer.send_envelope(&scope, "batch_phase_outcome", &bystander_batch_event).await;

    // Records for the bystander, one per topic the teacher's traffic used, keyed like that
    // traffic so each shares its partition (they are for another user, so they may be handled
    // before it: the last sentinel below closes the check).
    let sentinels = [
        ("batch_essays_ready", envelope("batch_essays_ready", "basic", |v| set(v, "batch_id", &other_batch))),
        (
            "cj_assessment_completed",
            envelope("cj_assessment_completed", "basic", |v| set(v, "entity_id", &other_batch)),
        ),
        ("spellcheck_completed", envelope("spellcheck_completed", "failed", |v| set(v, "parent_id", &other_batch))),
        (
            "batch_file_removed",
            envelope("batch_file_removed", "basic", |v| {
                set(v, "user_id", &bystander);
                set(v, "batch_id", &other_batch);
            }),
        ),
        ("class_created", envelope("class_created", "basic", |v| set(v, "user_id", &bystander))),
    ];
    for (name, sent) in &sentinels {
        producer.send_keyed(&scope.topic(name), &traffic_keys[name], sent).await;
    }

    // The bystander receives its own batch's event and its sentinels, and nothing of the teacher's.
    let mut expected: BTreeMap<String, (&str, &Value)> =
        sentinels.iter().map(|(name, sent)| (sent["event_id"].as_str().unwrap().to_owned(), (*name, sent))).collect();
    expected.insert(
        bystander_batch_event["event_id"].as_str().unwrap().to_owned(),
        ("batch_phase_outcome", &bystander_batch_event),
    );
    while !expected.is_empty() {
        let notification = bystander_socket.notification().await;
        let event_id = notification["event_id"].as_str().unwrap();
        let Some((name, sent)) = expected.remove(event_id) else {
            panic!("the bystander received a notification that is not theirs: {notification}");
        };
        check_notification(&notification, sent, name);
    }

    // Every record above has been handled. The teacher receives its traffic, then a last sentinel
    // published after everything else, and nothing of the bystander's in between.
    // The traffic spans topics, so it may arrive in any order.
    let mut pending: BTreeMap<String, (&str, &Value)> =
        traffic.iter().map(|(name, sent)| (sent["event_id"].as_str().unwrap().to_owned(), (*name, sent))).collect();
    while !pending.is_empty() {
        let notification = teacher_socket.notification().await;
        let Some((name, sent)) = pending.remove(notification["event_id"].as_str().unwrap()) else {
            panic!("the teacher received a notification that is not theirs: {notification}");
        };
        check_notification(&notification, sent, name);
    }
    let last = envelope("class_created", "new_course_code", |v| set(v, "user_id", &teacher));
    producer.send_envelope(&scope, "class_created", &last).await;
    check_notification(&teacher_socket.notification().await, &last, "class_created");
    // Every record of the teacher's was handled before this one was produced (the teacher got
    // them all), so anything of theirs sent to the bystander would arrive before it.
    let bystander_last = envelope("class_created", "new_course_code", |v| set(v, "user_id", &bystander));
    producer.send_envelope(&scope, "class_created", &bystander_last).await;
    check_notification(&bystander_socket.notification().await, &bystander_last, "class_created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_record_and_a_resent_payload_give_one_notification() {
    one_notification_per_payload(infra()).await;
}

/// The body of `a_redelivered_record_and_a_resent_payload_give_one_notification`, against single Redis or Redis Cluster.
pub(super) async fn one_notification_per_payload(infra: Infra) {
    let scope = Scope::new("duplicates");
    let herald = Herald::production(&scope, &infra, &[]).await;
    let teacher = scope.user("teacher");
    let mut socket = herald.connect(&teacher).await;
    assert_subscribed(&infra.redis, &teacher, 1).await;
    let producer = Producer::new(&infra);
    let topic = scope.topic("class_created");

    let original = envelope("class_created", "basic", |v| set(v, "user_id", &teacher));
    let bytes = serde_json::to_vec(&original).unwrap();
    // The same record twice, as Kafka redelivers it; then the same payload under a new event_id, as
    // an outbox relay re-sends it; then a different event. One key: one partition, in this order.
    producer.send_to(&topic, None, Some(&teacher), Some(&bytes)).await;
    producer.send_to(&topic, None, Some(&teacher), Some(&bytes)).await;
    let mut resent = original.clone();
    resent["event_id"] = Value::String(super::harness::fresh_uuid());
    assert_ne!(resent["event_id"], original["event_id"]);
    producer.send_keyed(&topic, &teacher, &resent).await;
    let sentinel = envelope("class_created", "new_course_code", |v| set(v, "user_id", &teacher));
    producer.send_keyed(&topic, &teacher, &sentinel).await;

    check_notification(&socket.notification().await, &original, "class_created");
    check_notification(&socket.notification().await, &sentinel, "class_created");
    wait_metric(&herald, "herald_notifications_published_total", 2.0).await;
    assert_eq!(herald.metric("herald_notifications_deduplicated_total").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_dead_lettered_with_its_reason_and_what_follows_is_delivered() {
    let infra = infra();
    let scope = Scope::new("dead-letters");
    let herald = Herald::production(&scope, &infra, &["--max-record-bytes", "4096"]).await;
    let teacher = scope.user("teacher");
    let mut socket = herald.connect(&teacher).await;
    assert_subscribed(&infra.redis, &teacher, 1).await;
    let producer = Producer::new(&infra);
    let topic = scope.topic("class_created");

    let fixture = |path: &str| {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/envelopes").join(path))
            .unwrap()
    };
    let mut oversized = envelope("class_created", "basic", |v| set(v, "user_id", &teacher));
    oversized["data"]["padding"] = Value::String("x".repeat(5000));
    let unknown = envelope("_unknown", "batch_essays_registered", |_| {});
    let bad: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("not_json", Some(fixture("_invalid/not_json.bin"))),
        ("not_envelope", Some(fixture("_invalid/not_an_envelope.json"))),
        ("invalid_payload", Some(fixture("_invalid/payload_missing_required.json"))),
        ("unknown_event_type", Some(serde_json::to_vec(&unknown).unwrap())),
        ("oversized", Some(serde_json::to_vec(&oversized).unwrap())),
        ("empty", None),
    ];
    assert!(bad[4].1.as_ref().unwrap().len() > 4096);
    // One key: one partition, so the good record is handled after every bad one.
    let mut landed = Vec::new();
    for (_, value) in &bad {
        landed.push(producer.send_to(&topic, None, Some(&teacher), value.as_deref()).await);
    }
    let good = envelope("class_created", "new_course_code", |v| set(v, "user_id", &teacher));
    producer.send_keyed(&topic, &teacher, &good).await;
    check_notification(&socket.notification().await, &good, "class_created");

    // The dead letters share the source key, so they are in one partition, in source order.
    let records = read_topic(&infra, &scope.dead_letter_topic(), bad.len()).await;
    assert_eq!(records.len(), bad.len());
    for ((reason, value), (record, source)) in bad.iter().zip(records.iter().zip(&landed)) {
        assert_eq!(record.key(), Some(teacher.as_bytes()), "{reason}: the original key");
        assert_eq!(record.payload(), value.as_deref(), "{reason}: the original bytes");
        let headers: BTreeMap<&str, String> = record
            .headers()
            .unwrap_or_else(|| panic!("{reason}: no headers"))
            .iter()
            .map(|header| (header.key, String::from_utf8(header.value.unwrap_or_default().to_vec()).unwrap()))
            .collect();
        assert_eq!(headers["herald.reason"], *reason, "{headers:?}");
        assert!(!headers["herald.error"].is_empty(), "{reason}: herald.error is empty");
        assert_eq!(headers["herald.source.topic"], topic, "{reason}");
        assert_eq!(headers["herald.source.partition"], source.partition.to_string(), "{reason}");
        assert_eq!(headers["herald.source.offset"], source.offset.to_string(), "{reason}");
        assert_eq!(
            herald.metric(&format!("herald_records_dead_lettered_total{{reason=\"{reason}\"}}")).await,
            1.0,
            "{reason}: metric"
        );
    }
    wait_metric(&herald, "herald_notifications_published_total", 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unknown_user_id_goes_to_the_batch_owner() {
    let infra = infra();
    let scope = Scope::new("unknown-user");
    let herald = Herald::production(&scope, &infra, &[]).await;
    let teacher = scope.user("teacher");
    let (batch, later_batch) = (scope.batch("known"), scope.batch("later"));
    let mut socket = herald.connect(&teacher).await;
    assert_subscribed(&infra.redis, &teacher, 1).await;
    let producer = Producer::new(&infra);

    let owner = envelope("batch_file_added", "basic", |v| {
        set(v, "user_id", &teacher);
        set(v, "batch_id", &batch);
    });
    producer.send_envelope(&scope, "batch_file_added", &owner).await;
    check_notification(&socket.notification().await, &owner, "batch_file_added");

    // "unknown" is not a user: the notification goes to the owner learnt above ...
    let completed = envelope("batch_content_provisioning_completed", "unknown_user", |v| set(v, "batch_id", &batch));
    assert_eq!(completed["data"]["user_id"], "unknown");
    producer.send_envelope(&scope, "batch_content_provisioning_completed", &completed).await;
    check_notification(&socket.notification().await, &completed, "batch_content_provisioning_completed");
    // ... and does not replace that owner.
    let ready = envelope("batch_essays_ready", "basic", |v| set(v, "batch_id", &batch));
    producer.send_envelope(&scope, "batch_essays_ready", &ready).await;
    check_notification(&socket.notification().await, &ready, "batch_essays_ready");

    // With no owner known yet, it is parked rather than sent to a user called "unknown", and
    // delivered when the owner is learnt.
    let waiting =
        envelope("batch_content_provisioning_completed", "unknown_user", |v| set(v, "batch_id", &later_batch));
    producer.send_envelope(&scope, "batch_content_provisioning_completed", &waiting).await;
    wait_metric(&herald, "herald_notifications_parked_total", 1.0).await;
    let later_owner = envelope("batch_file_added", "minimal", |v| {
        set(v, "user_id", &teacher);
        set(v, "batch_id", &later_batch);
    });
    producer.send_envelope(&scope, "batch_file_added", &later_owner).await;
    check_notification(&socket.notification().await, &waiting, "batch_content_provisioning_completed");
    check_notification(&socket.notification().await, &later_owner, "batch_file_added");
    wait_metric(&herald, "herald_notifications_published_total", 5.0).await;
}
