//! The generated catalogue constants.

use std::collections::BTreeSet;

#[test]
fn one_row_per_definition_with_unique_names_and_types() {
    let definitions = super::model().events.len();
    assert_eq!(herald::EVENTS.len(), definitions, "EVENTS has one row per event definition");
    let notifications: BTreeSet<&str> = herald::EVENTS.iter().map(|info| info.notification).collect();
    assert_eq!(notifications.len(), definitions, "notification names are unique");
    let mut event_types = BTreeSet::new();
    for info in herald::EVENTS {
        for event_type in std::iter::once(&info.event_type).chain(info.aliases) {
            assert!(event_types.insert(*event_type), "{event_type} is claimed twice");
        }
        assert_eq!(info.handler, format!("handle_{}", info.notification));
    }
}

#[test]
fn topics_are_sorted_unique_and_cover_every_event() {
    let mut sorted = herald::TOPICS.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, herald::TOPICS);
    for info in herald::EVENTS {
        assert!(!info.topics.is_empty(), "{} has no topic", info.notification);
        for topic in info.topics {
            assert!(herald::TOPICS.contains(topic), "{topic} is missing from TOPICS");
        }
    }
}

/// The design's topic comes first; events that real producers publish elsewhere also list the
/// producers' topic, so both are consumed by default.
#[test]
fn the_design_topics_and_the_producers_topics_are_the_defaults() {
    let topics =
        |notification: &str| herald::EVENTS.iter().find(|info| info.notification == notification).unwrap().topics;
    assert_eq!(topics("batch_essays_ready"), ["huleedu.batch.essays.ready.v1", "huleedu.els.batch.essays.ready.v1"]);
    assert_eq!(
        topics("batch_validation_errors"),
        ["huleedu.batch.validation.errors.v1", "huleedu.els.batch.validation.errors.v1"]
    );
    assert_eq!(
        topics("essay_content_provisioned"),
        ["huleedu.essay.content.provisioned.v1", "huleedu.file.essay.content.provisioned.v1"]
    );
    assert_eq!(
        topics("essay_validation_failed"),
        ["huleedu.essay.validation.failed.v1", "huleedu.file.essay.validation.failed.v1"]
    );
    assert_eq!(topics("student_created"), ["huleedu.student.created.v1", "huleedu.class.student.created.v1"]);
    assert_eq!(topics("cj_assessment_completed"), ["huleedu.cj_assessment.completed.v1"]);
    assert_eq!(topics("spellcheck_completed"), ["huleedu.essay.spellcheck.completed.v1"]);
}

/// Each row's example is a whole envelope that routes to its own event.
#[test]
fn every_example_routes_to_its_event() {
    for info in herald::EVENTS {
        let envelope =
            herald::route(info.example.as_bytes()).unwrap_or_else(|error| panic!("{}: {error}", info.notification));
        assert_eq!(envelope.data.notification_name(), Some(info.notification));
    }
}
