//! Parsing envelopes and payloads, with errors that say what was wrong and where.
//!
//! The generated `route` function calls these. Errors fall into the classes the service
//! dead-letters: bytes that are not JSON, JSON that is not an envelope, and a payload that does not
//! match its event's schema. Each keeps the path of the offending key (`data.failed_essays[0].essay_id`).

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

/// A payload that does not match its event's schema.
#[derive(Debug)]
pub struct PayloadError {
    path: String,
    error: serde_json::Error,
}

impl PayloadError {
    /// The path of the offending key inside the payload (`.` when the payload itself is wrong).
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at `{}`: {}", self.path, without_position(&self.error))
    }
}

impl std::error::Error for PayloadError {}

/// Why a record could not be routed to an event.
#[derive(Debug)]
pub enum RouteError {
    /// The bytes are not JSON (or not UTF-8).
    NotJson(serde_json::Error),
    /// The JSON is not an envelope: a key is missing or has the wrong type.
    NotEnvelope {
        /// The path of the offending key.
        path: String,
        /// What serde found.
        error: serde_json::Error,
    },
    /// The envelope is fine but its payload does not match the schema of its `event_type`.
    InvalidPayload {
        /// The envelope's `event_type`.
        event_type: String,
        /// What is wrong, and where in the payload.
        error: PayloadError,
    },
}

impl RouteError {
    /// Builds [`RouteError::InvalidPayload`].
    pub fn invalid_payload(event_type: &str, error: PayloadError) -> Self {
        RouteError::InvalidPayload { event_type: event_type.to_owned(), error }
    }

    /// A short, stable name for the class of error, for metrics and dead-letter headers.
    pub fn reason(&self) -> &'static str {
        match self {
            RouteError::NotJson(_) => "not_json",
            RouteError::NotEnvelope { .. } => "not_envelope",
            RouteError::InvalidPayload { .. } => "invalid_payload",
        }
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::NotJson(error) => write!(f, "not JSON: {error}"),
            RouteError::NotEnvelope { path, error } => {
                write!(f, "not an event envelope: at `{path}`: {}", without_position(error))
            }
            RouteError::InvalidPayload { event_type, error } => {
                write!(f, "payload does not match the schema of {event_type}: {error}")
            }
        }
    }
}

impl std::error::Error for RouteError {}

/// serde_json appends "at line 1 column 57" to its messages; the key path says more.
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(index) => text[..index].to_owned(),
        None => text,
    }
}

/// Parses an envelope whose payload is kept raw, classifying failures.
///
/// Valid input is parsed once without tracking where the parser is; only input that fails is
/// parsed again to name the key path of the failure (tracking the path costs an allocation per
/// key, on every record).
pub fn parse_envelope<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RouteError> {
    serde_json::from_slice(bytes).or_else(|_| parse_envelope_tracking_path(bytes))
}

fn parse_envelope_tracking_path<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RouteError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let error = error.into_inner();
        if error.is_syntax() || error.is_eof() || error.is_io() {
            RouteError::NotJson(error)
        } else {
            RouteError::NotEnvelope { path, error }
        }
    })?;
    // Trailing bytes after the envelope mean the record is not one JSON document.
    deserializer.end().map_err(RouteError::NotJson)?;
    Ok(value)
}

/// Parses one event payload; like [`parse_envelope`], only a failure is parsed again for its path.
pub fn parse_payload<T: DeserializeOwned>(data: &RawValue) -> Result<T, PayloadError> {
    serde_json::from_str(data.get()).or_else(|_| {
        let mut deserializer = serde_json::Deserializer::from_str(data.get());
        serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|error| PayloadError { path: error.path().to_string(), error: error.into_inner() })
    })
}
