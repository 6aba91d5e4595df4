//! Strings with a format: validated when parsed, kept verbatim.
//!
//! Producers write timestamps with microseconds and a `Z`; re-formatting them through a date type
//! would change the bytes the browser receives. These types check the format and keep the text.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// An RFC 3339 date-time such as `2025-08-01T08:14:13.512331Z`, kept as the producer wrote it.
///
/// The offset may be omitted: Python's naive `datetime.isoformat()` leaves it out, and rejecting such
/// a timestamp would lose a notification over a field that is only forwarded.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(String);

/// A UUID in its hyphenated text form (`8-4-4-4-12` hex digits, either case), kept as sent.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid(String);

/// Why a string is not a valid [`Timestamp`] or [`Uuid`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    expected: &'static str,
    found: String,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}, found {:?}", self.expected, self.found)
    }
}

impl std::error::Error for FormatError {}

macro_rules! formatted_string {
    ($name:ident, $check:ident, $expected:literal) => {
        impl $name {
            /// Checks the format and keeps the text.
            pub fn parse(text: impl Into<String>) -> Result<Self, FormatError> {
                let text = text.into();
                if $check(text.as_bytes()) {
                    Ok(Self(text))
                } else {
                    Err(FormatError { expected: $expected, found: text })
                }
            }

            /// The text exactly as it was received.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = FormatError;
            fn from_str(text: &str) -> Result<Self, FormatError> {
                Self::parse(text)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(text).map_err(de::Error::custom)
            }
        }
    };
}

formatted_string!(Timestamp, is_rfc3339, "an RFC 3339 date-time");
formatted_string!(Uuid, is_uuid, "a UUID (8-4-4-4-12 hex digits)");

fn is_uuid(text: &[u8]) -> bool {
    text.len() == 36
        && text.iter().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

fn is_rfc3339(text: &[u8]) -> bool {
    fn digits(text: &[u8], from: usize, count: usize) -> Option<u32> {
        let slice = text.get(from..from + count)?;
        slice.iter().try_fold(0u32, |value, byte| byte.is_ascii_digit().then(|| value * 10 + u32::from(byte - b'0')))
    }
    let date_and_time = (|| {
        let (year, month, day) = (digits(text, 0, 4)?, digits(text, 5, 2)?, digits(text, 8, 2)?);
        let (hour, minute, second) = (digits(text, 11, 2)?, digits(text, 14, 2)?, digits(text, 17, 2)?);
        let separators = text[4] == b'-'
            && text[7] == b'-'
            && matches!(text[10], b'T' | b't' | b' ')
            && text[13] == b':'
            && text[16] == b':';
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let days_in_month = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        (separators && (1..=days_in_month).contains(&day) && hour < 24 && minute < 60 && second <= 60).then_some(())
    })();
    if date_and_time.is_none() {
        return false;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let count = fraction.iter().take_while(|byte| byte.is_ascii_digit()).count();
        if count == 0 {
            return false;
        }
        rest = &fraction[count..];
    }
    match rest {
        [] | [b'Z'] | [b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let offset = [h1, h2, m1, m2];
            offset.iter().all(|byte| byte.is_ascii_digit())
                && (h1 - b'0') * 10 + (h2 - b'0') < 24
                && (m1 - b'0') * 10 + (m2 - b'0') < 60
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_timestamp(text: &str, valid: bool) {
        assert_eq!(Timestamp::parse(text).is_ok(), valid, "{text:?}");
    }

    #[test]
    fn timestamps() {
        check_timestamp("2025-08-01T08:14:13.512331Z", true);
        check_timestamp("2025-08-01T08:14:13Z", true);
        check_timestamp("2025-08-01T08:14:13.5+02:00", true);
        check_timestamp("2025-08-01T08:14:13.512331", true);
        check_timestamp("2024-02-29T00:00:00Z", true);
        check_timestamp("2025-02-29T00:00:00Z", false);
        check_timestamp("2025-13-01T00:00:00Z", false);
        check_timestamp("2025-08-01T24:00:00Z", false);
        check_timestamp("2025-08-01T08:14:13.Z", false);
        check_timestamp("2025-08-01", false);
        check_timestamp("yesterday", false);
        check_timestamp("2025-08-01T08:14:13+0200", false);
        check_timestamp("", false);
    }

    #[test]
    fn uuids() {
        assert!(Uuid::parse("3f2b8c1e-9d4a-4c6b-8e2f-1a7b9c0d5e6f").is_ok());
        assert!(Uuid::parse("3F2B8C1E-9D4A-4C6B-8E2F-1A7B9C0D5E6F").is_ok());
        assert!(Uuid::parse("3f2b8c1e9d4a4c6b8e2f1a7b9c0d5e6f").is_err());
        assert!(Uuid::parse("not-a-uuid").is_err());
        assert!(Uuid::parse("3f2b8c1e-9d4a-4c6b-8e2f-1a7b9c0d5e6g").is_err());
    }

    #[test]
    fn keeps_the_text() {
        let parsed: Timestamp =
            serde_json::from_str("\"2025-08-01T08:14:13.512331Z\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(serde_json::to_string(&parsed).ok().as_deref(), Some("\"2025-08-01T08:14:13.512331Z\""));
        let error = serde_json::from_str::<Uuid>("\"nope\"").err().map(|e| e.to_string());
        assert_eq!(error.as_deref(), Some("expected a UUID (8-4-4-4-12 hex digits), found \"nope\""));
    }
}
