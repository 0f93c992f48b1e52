//! Policy directory → snapshot, at start-up and whenever the directory changes.
//!
//! [`pipeline`] is the whole build (load → validate → compile), also what `--check` runs.
//! [`builder`] runs every build on one long-lived thread, off the request path.
//! [`watch`] is a Pingora background service: it watches the directory (inotify through
//! `notify`, plus a 1 s stat-based poll that catches what events miss, such as a ConfigMap's
//! `..data` symlink swap), waits until writes settle (debounce), has the builder rebuild, and
//! publishes the result ([`crate::runtime::publish`]). A rejected change leaves the old
//! snapshot serving and sets `last_error`. SIGHUP forces a re-read.

pub mod apply;
pub mod builder;
pub mod pipeline;
pub mod watch;

pub use crate::compile::{Built, Rejected};
pub use builder::{Input, PolicyBuilder};
pub use pipeline::build;
pub use watch::PolicyWatcher;
