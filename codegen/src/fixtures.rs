//! Fixture envelopes: every example of every event, in the two byte forms real producers emit.
//!
//! HuleEdu producers are Python services. Most publish `json.dumps(envelope)`: `", "` and `": "`
//! separators, non-ASCII escaped as `\uXXXX` (surrogate pairs beyond the BMP). Some publish compact
//! JSON, `json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)`, as UTF-8. Both keep
//! the keys in the order the producer wrote them, and neither ends with a newline.

use std::fmt::Write as _;

use serde_json::Value;

use crate::model::Model;

/// The folder the fixtures are written to, relative to the workspace root.
pub const FIXTURES_DIR: &str = "tests/fixtures/envelopes";

/// One example of one event, in both producer forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture {
    /// The event's notification name: the fixture's folder.
    pub notification: String,
    /// The example's case name: the fixture's file name.
    pub case: String,
    /// `json.dumps(envelope)`, ASCII.
    pub dumps: Vec<u8>,
    /// `json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)`, UTF-8.
    pub compact: Vec<u8>,
}

impl Fixture {
    /// The two files of this fixture: paths relative to [`FIXTURES_DIR`], and their bytes.
    pub fn files(&self) -> [(String, &[u8]); 2] {
        [
            (format!("{}/{}.dumps.json", self.notification, self.case), &self.dumps),
            (format!("{}/{}.compact.json", self.notification, self.case), &self.compact),
        ]
    }
}

/// Every example of every event, in definition order.
pub fn fixtures(model: &Model) -> Vec<Fixture> {
    let mut fixtures = Vec::new();
    for event in &model.events {
        for example in &event.examples {
            fixtures.push(Fixture {
                notification: event.notification.clone(),
                case: example.case.clone(),
                dumps: python_json(&example.envelope, Form::Dumps).into_bytes(),
                compact: python_json(&example.envelope, Form::Compact).into_bytes(),
            });
        }
    }
    fixtures
}

/// The two ways producers serialize an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `json.dumps(value)`.
    Dumps,
    /// `json.dumps(value, separators=(",", ":"), ensure_ascii=False)`.
    Compact,
}

/// `value` as Python's `json.dumps` writes it in `form`.
pub fn python_json(value: &Value, form: Form) -> String {
    let mut out = String::new();
    write_value(value, form, &mut out);
    out
}

fn write_value(value: &Value, form: Form, out: &mut String) {
    let (item, key) = match form {
        Form::Dumps => (", ", ": "),
        Form::Compact => (",", ":"),
    };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => out.push_str(&number.to_string()),
        Value::String(text) => write_string(text, form, out),
        Value::Array(items) => {
            out.push('[');
            for (index, each) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(item);
                }
                write_value(each, form, out);
            }
            out.push(']');
        }
        Value::Object(entries) => {
            out.push('{');
            for (index, (name, each)) in entries.iter().enumerate() {
                if index > 0 {
                    out.push_str(item);
                }
                write_string(name, form, out);
                out.push_str(key);
                write_value(each, form, out);
            }
            out.push('}');
        }
    }
}

/// A string as Python escapes it: the short escapes, `\u00XX` for other control characters, and
/// with `ensure_ascii` every character outside printable ASCII as `\uXXXX` (UTF-16 units).
fn write_string(text: &str, form: Form, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (form == Form::Dumps && !(' '..='~').contains(&c)) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str, dumps: &str, compact: &str) {
        let value: Value = serde_json::from_str(json).expect("test JSON");
        assert_eq!(python_json(&value, Form::Dumps), dumps);
        assert_eq!(python_json(&value, Form::Compact), compact);
    }

    #[test]
    fn python_forms() {
        check(r#"{"b": 1, "a": [true, null]}"#, r#"{"b": 1, "a": [true, null]}"#, r#"{"b":1,"a":[true,null]}"#);
        check(r#""Åsa 📝""#, r#""\u00c5sa \ud83d\udcdd""#, "\"Åsa 📝\"");
        check(r#""a\"b\\c\n\u0001\u007f""#, r#""a\"b\\c\n\u0001\u007f""#, "\"a\\\"b\\\\c\\n\\u0001\u{7f}\"");
        check("[0.0, -1.6511, 24576]", "[0.0, -1.6511, 24576]", "[0.0,-1.6511,24576]");
    }
}
