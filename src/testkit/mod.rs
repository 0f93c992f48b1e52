//! Fixtures shared by unit tests, black-box tests and benchmarks (feature `testkit`; always
//! on for this crate's own unit tests): policy YAML builders ([`fixtures`]) and routing in
//! process ([`routing`]).

pub mod fixtures;
pub mod routing;

pub use fixtures::*;
pub use routing::{listener_port, Answer, Routing};

use crate::model::ValidSet;
use crate::resources::loader::load_text;
use crate::validate::validate;

/// The valid resources of `yaml` (one file); panics with the problems if there are any.
pub fn valid_set(yaml: &str) -> ValidSet {
    let loaded = load_text("test.yaml", yaml);
    assert!(loaded.violations.is_empty(), "{:?}", loaded.violations);
    let validated = validate(&loaded.resources);
    assert!(
        validated.violations.is_empty(),
        "{:?}",
        validated.violations
    );
    validated.valid
}
