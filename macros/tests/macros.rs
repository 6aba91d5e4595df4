//! Tests of `#[derive(Event)]` and `#[derive(OpenEnum)]`.
//!
//! The types below mirror what `herald-codegen` writes (fully qualified serde attributes, the
//! nullable helpers of `herald_runtime::serde_fields`), so the runtime tests check the derive output
//! that the service really uses. `compile_fail` checks that every misuse of the attributes is a
//! compile error at the offending span, against the snapshots in `tests/compile-fail/`; regenerate
//! them with `TRYBUILD=overwrite cargo test -p herald-macros` and read the diff.

use herald_runtime::{BatchOwner, Category, EnvelopeRef, Event, Handling, Notification, NotificationData, OpenEnum};
use herald_runtime::{Priority, Recipient, Timestamp};
use serde::de::DeserializeOwned;

/// Every derive feature at once: a renamed key, a raw identifier, optional and nullable keys, an
/// open enum, a user and a batch, and forwarded keys in an order different from the fields'.
#[derive(Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize, ::herald_macros::Event)]
#[herald(
    event_type = "test.file.added.v1",
    aliases("test.legacy.file.added.v1", "test.file.added"),
    topics("test.files.v1"),
    notification = "file_added",
    category = "file_operations",
    priority = "immediate",
    handling = "custom",
    dedupe_ttl_seconds = 3600,
    recipient(user = user_id, batch = batch_id),
    batch_owner(user = user_id, batch = batch_id),
    forward(file_name, batch_id, r#type, size, note, reviewer, status, timestamp),
)]
struct FileAdded {
    batch_id: ::std::string::String,
    #[serde(rename = "fileName")]
    file_name: ::std::string::String,
    r#type: ::std::string::String,
    user_id: ::std::string::String,
    #[serde(default, skip_serializing_if = "::std::option::Option::is_none")]
    size: ::std::option::Option<i64>,
    #[serde(deserialize_with = "::herald_runtime::serde_fields::required_nullable")]
    note: ::std::option::Option<::std::string::String>,
    #[serde(
        default,
        skip_serializing_if = "::std::option::Option::is_none",
        deserialize_with = "::herald_runtime::serde_fields::optional_nullable"
    )]
    reviewer: ::std::option::Option<::std::option::Option<::std::string::String>>,
    status: FileStatus,
    /// Not forwarded: must never reach the browser.
    #[serde(default, skip_serializing_if = "::std::option::Option::is_none")]
    correlation_id: ::std::option::Option<::std::string::String>,
    #[serde(default, skip_serializing_if = "::std::option::Option::is_none")]
    timestamp: ::std::option::Option<Timestamp>,
}

/// Only the required keys: `aliases`, `handling` and `dedupe_ttl_seconds` take their defaults, and
/// the recipient is a batch alone. The serde settings are ones the generator does not write but the
/// derive must still read: a rename for one direction and a setting that takes a list.
#[derive(Debug, ::serde::Serialize, ::serde::Deserialize, ::herald_macros::Event)]
#[herald(
    event_type = "test.batch.ready.v1",
    topics("test.batches.v1"),
    notification = "batch_ready",
    category = "batch_progress",
    priority = "low",
    recipient(batch = batch_id),
    forward(batch_id, essay_count),
)]
struct BatchReady {
    #[serde(bound(serialize = "", deserialize = ""))]
    batch_id: ::std::string::String,
    #[serde(alias = "count", rename(serialize = "essayCount", deserialize = "essay_count"))]
    essay_count: i64,
}

/// Recipient and owner ids held in an optional-nullable and a required-nullable key, and nothing
/// forwarded.
#[derive(Debug, ::serde::Serialize, ::serde::Deserialize, ::herald_macros::Event)]
#[herald(
    event_type = "test.result.ready.v1",
    aliases(),
    topics("test.results.v1"),
    notification = "result_ready",
    category = "processing_results",
    priority = "standard",
    handling = "declarative",
    dedupe_ttl_seconds = 1,
    recipient(user = user_id, batch = batch_id),
    batch_owner(user = user_id, batch = batch_id),
    forward(),
)]
struct ResultReady {
    #[serde(
        default,
        skip_serializing_if = "::std::option::Option::is_none",
        deserialize_with = "::herald_runtime::serde_fields::optional_nullable"
    )]
    user_id: ::std::option::Option<::std::option::Option<::std::string::String>>,
    #[serde(deserialize_with = "::herald_runtime::serde_fields::required_nullable")]
    batch_id: ::std::option::Option<::std::string::String>,
}

/// An open enum as generated: a value that is not the variant's name, and a catch-all that is not
/// called `Unrecognized`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, ::herald_macros::OpenEnum)]
enum FileStatus {
    #[herald(value = "uploaded")]
    Uploaded,
    #[herald(value = "in-review")]
    InReview,
    #[herald(value = "REJECTED")]
    Rejected,
    #[herald(unrecognized)]
    Other(::std::string::String),
}

fn parse<E: DeserializeOwned>(payload: &str) -> E {
    serde_json::from_str(payload).unwrap_or_else(|error| panic!("{payload}: {error}"))
}

/// The facts an event type states about itself, as one comparable value.
#[derive(Debug, PartialEq)]
struct Constants {
    event_type: &'static str,
    aliases: &'static [&'static str],
    topics: &'static [&'static str],
    notification: &'static str,
    category: Category,
    priority: Priority,
    handling: Handling,
    dedupe_ttl_seconds: u64,
    forwarded_fields: &'static [&'static str],
}

fn constants<E: Event>() -> Constants {
    Constants {
        event_type: E::EVENT_TYPE,
        aliases: E::ALIASES,
        topics: E::TOPICS,
        notification: E::NOTIFICATION,
        category: E::CATEGORY,
        priority: E::PRIORITY,
        handling: E::HANDLING,
        dedupe_ttl_seconds: E::DEDUPE_TTL_SECONDS,
        forwarded_fields: E::FORWARDED_FIELDS,
    }
}

#[test]
fn constants_come_from_the_attribute() {
    assert_eq!(
        constants::<FileAdded>(),
        Constants {
            event_type: "test.file.added.v1",
            aliases: &["test.legacy.file.added.v1", "test.file.added"],
            topics: &["test.files.v1"],
            notification: "file_added",
            category: Category::FileOperations,
            priority: Priority::Immediate,
            handling: Handling::Custom,
            dedupe_ttl_seconds: 3600,
            // Serde names, in the order of `forward(...)`.
            forwarded_fields: &["fileName", "batch_id", "type", "size", "note", "reviewer", "status", "timestamp"],
        }
    );
    assert_eq!(
        constants::<BatchReady>(),
        Constants {
            event_type: "test.batch.ready.v1",
            aliases: &[],
            topics: &["test.batches.v1"],
            notification: "batch_ready",
            category: Category::BatchProgress,
            priority: Priority::Low,
            handling: Handling::Declarative,
            dedupe_ttl_seconds: 86_400,
            forwarded_fields: &["batch_id", "essayCount"],
        }
    );
    assert_eq!(
        constants::<ResultReady>(),
        Constants {
            event_type: "test.result.ready.v1",
            aliases: &[],
            topics: &["test.results.v1"],
            notification: "result_ready",
            category: Category::ProcessingResults,
            priority: Priority::Standard,
            handling: Handling::Declarative,
            dedupe_ttl_seconds: 1,
            forwarded_fields: &[],
        }
    );
}

/// A `FileAdded` payload with the given user id (a JSON value).
fn file_added(user_id: &str) -> FileAdded {
    parse(&format!(
        r#"{{"batch_id": "b-1", "fileName": "essay.docx", "type": "docx", "user_id": {user_id},
            "note": null, "status": "uploaded"}}"#
    ))
}

fn check_routing<E: Event + DeserializeOwned>(payload: &str, recipient: Recipient<'_>, owner: Option<BatchOwner<'_>>) {
    let event: E = parse(payload);
    assert_eq!(event.recipient(), recipient, "recipient of {payload}");
    assert_eq!(event.batch_owner(), owner, "batch owner of {payload}");
}

#[test]
fn recipient_and_batch_owner() {
    let owner = |batch, user| Some(BatchOwner { batch, user });
    let to = |user, batch| Recipient { user, batch };

    let file = r#"{"fileName": "f", "type": "t", "note": null, "status": "uploaded""#;
    check_routing::<FileAdded>(
        &format!(r#"{file}, "user_id": "u-1", "batch_id": "b-1"}}"#),
        to(Some("u-1"), Some("b-1")),
        owner("b-1", "u-1"),
    );
    // "unknown" and "" are what producers send when they do not know the user: the batch owner is
    // notified instead, and no ownership is learnt.
    check_routing::<FileAdded>(
        &format!(r#"{file}, "user_id": "unknown", "batch_id": "b-1"}}"#),
        to(None, Some("b-1")),
        None,
    );
    check_routing::<FileAdded>(&format!(r#"{file}, "user_id": "", "batch_id": "b-1"}}"#), to(None, Some("b-1")), None);
    check_routing::<FileAdded>(&format!(r#"{file}, "user_id": "u-1", "batch_id": ""}}"#), to(Some("u-1"), None), None);

    check_routing::<BatchReady>(r#"{"batch_id": "b-2", "essay_count": 3}"#, to(None, Some("b-2")), None);

    // Ids inside optional-nullable and required-nullable keys.
    check_routing::<ResultReady>(
        r#"{"user_id": "u-3", "batch_id": "b-3"}"#,
        to(Some("u-3"), Some("b-3")),
        owner("b-3", "u-3"),
    );
    check_routing::<ResultReady>(r#"{"batch_id": "b-3"}"#, to(None, Some("b-3")), None);
    check_routing::<ResultReady>(r#"{"user_id": null, "batch_id": "b-3"}"#, to(None, Some("b-3")), None);
    check_routing::<ResultReady>(r#"{"user_id": "u-3", "batch_id": null}"#, to(Some("u-3"), None), None);
    check_routing::<ResultReady>(r#"{"user_id": "unknown", "batch_id": null}"#, to(None, None), None);
}

fn check_data<E: Event + DeserializeOwned>(payload: &str, data: &str) {
    let event: E = parse(payload);
    let serialized = serde_json::to_string(&NotificationData(&event)).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(serialized, data, "data of {payload}");
}

#[test]
fn notification_data_holds_the_forwarded_keys() {
    let required = r#""batch_id": "b-1", "fileName": "essay.docx", "type": "docx", "user_id": "u-1""#;
    // Absent optional keys are left out; a required-nullable key keeps its null.
    check_data::<FileAdded>(
        &format!(r#"{{{required}, "note": null, "status": "uploaded"}}"#),
        r#"{"fileName":"essay.docx","batch_id":"b-1","type":"docx","note":null,"status":"uploaded"}"#,
    );
    // Every key present; the key that is not forwarded stays behind.
    check_data::<FileAdded>(
        &format!(
            r#"{{{required}, "size": 12, "note": "late", "reviewer": "r-1", "status": "in-review",
                "correlation_id": "c-1", "timestamp": "2025-08-01T08:14:13.512331Z"}}"#
        ),
        r#"{"fileName":"essay.docx","batch_id":"b-1","type":"docx","size":12,"note":"late","reviewer":"r-1","status":"in-review","timestamp":"2025-08-01T08:14:13.512331Z"}"#,
    );
    // An optional-nullable key sent as null is forwarded as null; an enum value added later passes
    // through unchanged.
    check_data::<FileAdded>(
        &format!(r#"{{{required}, "note": null, "reviewer": null, "status": "quarantined"}}"#),
        r#"{"fileName":"essay.docx","batch_id":"b-1","type":"docx","note":null,"reviewer":null,"status":"quarantined"}"#,
    );
    check_data::<BatchReady>(r#"{"batch_id": "b-2", "essay_count": 3}"#, r#"{"batch_id":"b-2","essayCount":3}"#);
    // `forward()`: an event that forwards nothing sends an empty object.
    check_data::<ResultReady>(r#"{"user_id": "u-3", "batch_id": "b-3"}"#, "{}");
}

#[test]
fn notification_message() {
    let mut event = file_added(r#""u-1""#);
    event.timestamp = Some(parse(r#""2025-08-01T08:14:13.512331Z""#));
    let envelope = EnvelopeRef {
        event_id: "e-1",
        event_type: "test.legacy.file.added.v1",
        event_timestamp: "2025-08-01T08:14:14Z",
        correlation_id: "c-1",
    };
    let notification = Notification::build(&event, envelope);
    assert_eq!(notification.user.as_deref(), Some("u-1"));
    assert_eq!(notification.batch.as_deref(), Some("b-1"));
    assert_eq!(notification.batch_owner, Some(("b-1".to_owned(), "u-1".to_owned())));
    assert_eq!(notification.event_type, "test.file.added.v1");
    assert_eq!(notification.dedupe_ttl_seconds, 3600);
    let message = String::from_utf8(notification.encode_message("id-1")).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        message,
        concat!(
            r#"{"id":"id-1","event":"file_added","#,
            r#""data":{"fileName":"essay.docx","batch_id":"b-1","type":"docx","note":null,"status":"uploaded","timestamp":"2025-08-01T08:14:13.512331Z"},"#,
            r#""event_id":"e-1","category":"file_operations","priority":"immediate","#,
            r#""timestamp":"2025-08-01T08:14:14Z","correlation_id":"c-1"}"#,
        )
    );

    // A notification for "unknown" goes to the batch's owner and teaches nothing about ownership.
    let notification = Notification::build(&file_added(r#""unknown""#), envelope);
    assert_eq!((notification.user, notification.batch, notification.batch_owner), (None, Some("b-1".to_owned()), None));
}

fn check_open_enum(text: &str, expected: FileStatus, known: bool) {
    let json = serde_json::to_string(text).unwrap_or_else(|error| panic!("{error}"));
    let parsed: FileStatus = parse(&json);
    assert_eq!(parsed, expected, "{json}");
    assert_eq!(parsed.is_known(), known, "is_known of {json}");
    assert_eq!(parsed.as_str(), text);
    assert_eq!(parsed.to_string(), text, "Display of {json}");
    assert_eq!(text.parse::<FileStatus>(), Ok(expected.clone()), "FromStr of {json}");
    assert_eq!(FileStatus::from_value(text.to_owned()), expected);
    assert_eq!(serde_json::to_string(&parsed).ok(), Some(json), "round trip of {text:?}");
}

#[test]
fn open_enum() {
    assert_eq!(FileStatus::KNOWN_VALUES, ["uploaded", "in-review", "REJECTED"]);
    check_open_enum("uploaded", FileStatus::Uploaded, true);
    check_open_enum("in-review", FileStatus::InReview, true);
    check_open_enum("REJECTED", FileStatus::Rejected, true);
    // Values are matched exactly: another spelling of a known value is a value of its own.
    check_open_enum("rejected", FileStatus::Other("rejected".to_owned()), false);
    check_open_enum("InReview", FileStatus::Other("InReview".to_owned()), false);
    check_open_enum("quarantined", FileStatus::Other("quarantined".to_owned()), false);
    check_open_enum("", FileStatus::Other(String::new()), false);
    check_open_enum("ünïcode \"quoted\"", FileStatus::Other("ünïcode \"quoted\"".to_owned()), false);
    // The catch-all holding a known value still says what it holds.
    assert_eq!(FileStatus::Other("uploaded".to_owned()).to_string(), "uploaded");
    assert!(serde_json::from_str::<FileStatus>("3").is_err(), "an open enum holds strings only");
}

#[test]
fn compile_fail() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/compile-fail/*.rs");
}
