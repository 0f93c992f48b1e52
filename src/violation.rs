//! One problem found in the policy directory, reported the way `meshgate --check` prints it:
//! `FILE: document N: Kind/name: field.path: message`.
//!
//! Every stage (loading YAML, typed decoding, Kuma validation, snapshot compilation) reports
//! problems as `Violation`s, collects all of them and never stops at the first, so a user fixes
//! a directory in one round trip.

use std::fmt;

/// Where a resource came from: the file (relative to the policy directory) and the 1-based
/// index of the YAML document inside it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub file: String,
    pub document: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.document == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}: document {}", self.file, self.document)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub origin: Origin,
    /// `Kind/name`, when the document got far enough to have one.
    pub resource: Option<String>,
    /// Kuma's field path (`spec.to[0].rules[0].matches[0].path.value`), when there is one.
    pub field: Option<String>,
    pub message: String,
}

impl Violation {
    pub fn new(
        origin: &Origin,
        resource: Option<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let field = field.into();
        Violation {
            origin: origin.clone(),
            resource,
            field: if field.is_empty() { None } else { Some(field) },
            message: message.into(),
        }
    }

    /// A problem with a whole file (unreadable, not UTF-8, no resources in it).
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        Violation {
            origin: Origin {
                file: file.to_string(),
                document: 0,
            },
            resource: None,
            field: None,
            message: message.into(),
        }
    }

    /// A problem that belongs to no file (e.g. "no MeshGateway in the directory").
    pub fn global(message: impl Into<String>) -> Self {
        Self::file("policies", message)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(r) = &self.resource {
            write!(f, ": {r}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Joins violations into the multi-line text shown by `--check` and `/config.last_error`.
pub fn render(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}
