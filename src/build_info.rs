//! What this binary is: version, commit, Pingora version, PGO (set by build.rs).

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("MESHGATE_COMMIT");
/// The Pingora crates meshgate is built on (carried patched in vendor/).
pub const PINGORA: &str = "0.9.1";
/// Whether the build used the PGO profile (pgo/meshgate.profdata).
pub const PGO: &str = env!("MESHGATE_PGO");

/// `meshgate --version`'s line.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MESHGATE_COMMIT"),
    ", pingora 0.9.1, pgo: ",
    env!("MESHGATE_PGO"),
    ")"
);
