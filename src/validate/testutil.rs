//! Test helpers: run one rule against a fake resource, or the whole validator against YAML
//! text decoded by the real loader. Results are `field: message` lines.

use super::report::Report;
use crate::resources::loader::load_dir;
use crate::resources::{Form, Kind, Meta};
use crate::violation::{Origin, Violation};
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn meta() -> Meta {
    Meta {
        origin: Origin {
            file: "t.yaml".into(),
            document: 1,
        },
        kind: Kind::MeshHttpRoute,
        name: "t".into(),
        mesh: "default".into(),
        namespace: None,
        labels: Default::default(),
        form: Form::Universal,
        source_hash: 0,
    }
}

fn lines(violations: &[Violation]) -> Vec<String> {
    violations
        .iter()
        .map(|v| match &v.field {
            Some(f) => format!("{f}: {}", v.message),
            None => v.message.clone(),
        })
        .collect()
}

/// Runs `f` with a report for `meta` and returns what it reported.
pub fn run(meta: &Meta, f: impl FnOnce(&mut Report)) -> Vec<String> {
    let mut out = Vec::new();
    f(&mut Report::new(meta, &mut out));
    lines(&out)
}

/// Loads `yaml` (one file, any number of documents) with the real loader and validates it.
/// Panics if the loader itself rejects the text: a test's YAML must decode.
pub fn validate_yaml(yaml: &str) -> Vec<String> {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "meshgate-validate-test-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("t.yaml"), yaml).expect("write yaml");
    let loaded = load_dir(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        loaded.violations.is_empty(),
        "loader rejected the test YAML: {:?}",
        loaded.violations
    );
    lines(&super::validate(&loaded.resources).violations)
}

/// Asserts that validating `yaml` yields exactly `expected` (`field: message` lines).
#[track_caller]
pub fn assert_yaml(yaml: &str, expected: &[&str]) {
    assert_eq!(validate_yaml(yaml), expected, "YAML:\n{yaml}");
}
