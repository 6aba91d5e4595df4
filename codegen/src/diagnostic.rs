//! Located, actionable error reports.

use std::fmt;

/// One problem with the event definitions: where it is, what is wrong, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    /// The file, relative to the definitions folder's parent (for example `event-defs/x.json`).
    pub file: String,
    /// A JSON pointer into the file (`""` for the whole file).
    pub pointer: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub help: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}#{}: {}", self.file, self.pointer, self.message)?;
        if !self.help.is_empty() {
            write!(f, "\n  help: {}", self.help)?;
        }
        Ok(())
    }
}

impl Diagnostic {
    /// The diagnostic on one line (`file#pointer: message; help: ...`), for build scripts, whose
    /// `cargo::error=` takes one line each.
    pub fn one_line(&self) -> String {
        let mut line = format!("{}#{}: {}", self.file, self.pointer, self.message);
        if !self.help.is_empty() {
            line.push_str("; help: ");
            line.push_str(&self.help);
        }
        line.replace(['\n', '\r'], " ")
    }
}

/// Every problem found in one run, sorted by file and pointer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub(crate) fn push(&mut self, file: &str, pointer: &str, message: impl Into<String>, help: impl Into<String>) {
        self.0.push(Diagnostic {
            file: file.to_owned(),
            pointer: pointer.to_owned(),
            message: message.into(),
            help: help.into(),
        });
    }

    pub(crate) fn into_result<T>(mut self, value: T) -> Result<T, Diagnostics> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            self.0.sort();
            self.0.dedup();
            Err(self)
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for diagnostic in &self.0 {
            writeln!(f, "{diagnostic}")?;
        }
        let count = self.0.len();
        write!(f, "{count} problem{} in the event definitions", if count == 1 { "" } else { "s" })
    }
}

impl std::error::Error for Diagnostics {}

/// Escapes one JSON pointer segment (RFC 6901).
pub(crate) fn pointer_segment(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}
