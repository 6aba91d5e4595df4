//! The generated catalogue constants.

use std::collections::BTreeSet;

#[test]
fn thirteen_events_with_unique_names_and_types() {
    assert_eq!(herald::EVENTS.len(), 13);
    let notifications: BTreeSet<&str> = herald::EVENTS.iter().map(|info| info.notification).collect();
    assert_eq!(notifications.len(), 13);
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
        assert!(herald::TOPICS.contains(&info.topic), "{} is missing from TOPICS", info.topic);
    }
}

#[test]
fn the_design_topics_are_the_defaults() {
    let topic =
        |notification: &str| herald::EVENTS.iter().find(|info| info.notification == notification).unwrap().topic;
    assert_eq!(topic("batch_essays_ready"), "huleedu.batch.essays.ready.v1");
    assert_eq!(topic("cj_assessment_completed"), "huleedu.cj_assessment.completed.v1");
    assert_eq!(topic("spellcheck_completed"), "huleedu.essay.spellcheck.completed.v1");
    assert_eq!(topic("student_created"), "huleedu.student.created.v1");
}
