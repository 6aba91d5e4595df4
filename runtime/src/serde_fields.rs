//! Serde helpers for keys whose presence and null-ness both matter.
//!
//! serde treats a missing `Option` field as `None`, which would let a payload without a required
//! key through. Generated code therefore uses:
//!
//! - [`required_nullable`] for a required key that may be null (`Option<T>`): a missing key is an
//!   error, `null` is `None`;
//! - [`optional_nullable`] for an optional key that may be null (`Option<Option<T>>`, with
//!   `#[serde(default, skip_serializing_if = "Option::is_none")]`): absent is `None`, `null` is
//!   `Some(None)`, so a round trip gives back what was sent.

use serde::{Deserialize, Deserializer};

/// Deserializes a required key that may be null. Using `deserialize_with` is what makes serde
/// report the key as missing instead of defaulting it.
pub fn required_nullable<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)
}

/// Deserializes an optional key that may be null; only called when the key is present.
pub fn optional_nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
