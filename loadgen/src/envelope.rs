//! ClassCreatedV1 envelopes shaped like the platform's producers write them (events.md): the
//! notification both drivers count, addressed to the user in `data.user_id` and told apart by a
//! unique `data.class_id`.

use std::time::SystemTime;

use serde::Serialize;

/// The envelope, with keys in the producers' order (events.md): a struct, not a map, because
/// serde_json sorts map keys.
#[derive(Serialize)]
struct Envelope<'a> {
    event_id: String,
    event_type: &'a str,
    event_timestamp: String,
    source_service: &'a str,
    schema_version: u32,
    correlation_id: String,
    data_schema_uri: Option<&'a str>,
    data: ClassCreated<'a>,
    metadata: Option<()>,
}

#[derive(Serialize)]
struct ClassCreated<'a> {
    class_id: &'a str,
    class_designation: &'a str,
    course_codes: [&'a str; 1],
    user_id: &'a str,
    timestamp: &'a str,
}

/// The record value of one ClassCreatedV1 event for `user`: a new event id and correlation id, timestamps with microseconds.
pub fn envelope(event_type: &str, source_service: &str, class_id: &str, user: &str, now: SystemTime) -> Vec<u8> {
    let timestamp = humantime::format_rfc3339_micros(now).to_string();
    let envelope = Envelope {
        event_id: uuid::Uuid::new_v4().to_string(),
        event_type,
        event_timestamp: timestamp.clone(),
        source_service,
        schema_version: 1,
        correlation_id: uuid::Uuid::new_v4().to_string(),
        data_schema_uri: None,
        data: ClassCreated {
            class_id,
            class_designation: "Load test class",
            course_codes: ["ENG5"],
            user_id: user,
            timestamp: &timestamp,
        },
        metadata: None,
    };
    // Strings and numbers only: serializing cannot fail.
    serde_json::to_vec(&envelope).unwrap_or_else(|error| unreachable!("envelope: {error}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn envelope_has_the_producers_shape_and_key_order() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_micros(1_754_036_053_512_331);
        let bytes = envelope("huleedu.class.created.v1", "herald-loadgen", "lg-r-7", "loadgen-user-3", now);
        let text = String::from_utf8(bytes).unwrap();
        let keys: Vec<usize> = [
            "\"event_id\"",
            "\"event_type\"",
            "\"event_timestamp\"",
            "\"source_service\"",
            "\"schema_version\"",
            "\"correlation_id\"",
            "\"data_schema_uri\"",
            "\"data\"",
            "\"metadata\"",
        ]
        .iter()
        .map(|key| text.find(key).unwrap())
        .collect();
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "{text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["event_timestamp"], "2025-08-01T08:14:13.512331Z");
        assert_eq!(value["schema_version"], 1);
        assert!(value["data_schema_uri"].is_null() && value["metadata"].is_null());
        assert_eq!(uuid::Uuid::parse_str(value["event_id"].as_str().unwrap()).unwrap().get_version_num(), 4);
        assert_eq!(
            value["data"],
            serde_json::json!({
                "class_id": "lg-r-7",
                "class_designation": "Load test class",
                "course_codes": ["ENG5"],
                "user_id": "loadgen-user-3",
                "timestamp": "2025-08-01T08:14:13.512331Z",
            })
        );
    }
}
