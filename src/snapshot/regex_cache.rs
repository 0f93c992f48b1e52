//! Compiled route regexes, shared within a snapshot and reused across rebuilds.
//!
//! Compiling a regex costs tens of microseconds and tens of kilobytes. A large policy
//! directory repeats patterns (the same header regex on a thousand rules) and a reload changes
//! few of them, so every pattern is compiled once, shared by every matcher that uses it
//! (`Arc`, one compiled program and one scratch pool), and handed to the next build. When a
//! build finishes, the patterns it did not use are dropped unless a route table still holds
//! them (a table a reload reused without compiling it), so the cache holds what live
//! snapshots hold. Only snapshot builds take the lock; requests never see it.

use super::matchers::Regex;
use foldhash::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

#[derive(Default)]
struct Cache {
    /// Pattern (as written by the user) → compiled full-match regex and the build that
    /// last used it.
    compiled: HashMap<Box<str>, (Arc<Regex>, u64)>,
    builds: u64,
}

fn cache() -> MutexGuard<'static, Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    // A panic while holding the lock leaves nothing half-written worth refusing.
    CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One snapshot build's use of the cache; dropping it forgets the patterns the build did
/// not use.
pub struct RegexBuild {
    id: u64,
}

impl RegexBuild {
    pub fn begin() -> Self {
        let mut c = cache();
        c.builds += 1;
        RegexBuild { id: c.builds }
    }

    /// `pattern` anchored to match the whole subject, as Envoy's `safe_regex` does.
    pub fn full_match(&self, pattern: &str) -> Result<Arc<Regex>, String> {
        if let Some((re, used)) = cache().compiled.get_mut(pattern) {
            *used = self.id;
            return Ok(re.clone());
        }
        // Compiled outside the lock: another build may compile the same pattern meanwhile,
        // which costs time, never correctness.
        let re = Arc::new(super::matchers::full_match_regex(pattern)?);
        cache()
            .compiled
            .insert(pattern.into(), (re.clone(), self.id));
        Ok(re)
    }
}

impl Drop for RegexBuild {
    fn drop(&mut self) {
        let id = self.id;
        // Builds may overlap (tests); keep what any build still running may have used, and
        // what a table outside the cache still holds: a reused table's patterns are not looked
        // up by the build that reuses it, and compiling them anew when that table's group
        // changes would cost time and duplicate them.
        cache()
            .compiled
            .retain(|_, (re, used)| *used >= id || Arc::strong_count(re) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_is_compiled_once_per_build_and_kept_for_the_next() {
        let pattern = "/regex-cache-test/[0-9]+";
        let first = RegexBuild::begin();
        let a = first.full_match(pattern).expect("valid");
        let b = first.full_match(pattern).expect("valid");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(a.is_match("/regex-cache-test/12"));
        assert!(!a.is_match("/regex-cache-test/12/x"));
        drop(first);
        let second = RegexBuild::begin();
        let c = second.full_match(pattern).expect("valid");
        assert!(
            Arc::ptr_eq(&a, &c),
            "the next build reuses the compiled regex"
        );
        assert!(second.full_match("(").is_err());
    }

    #[test]
    fn a_pattern_no_build_uses_stays_only_while_something_holds_it() {
        let (held, dropped) = ("/regex-cache-held/[0-9]+", "/regex-cache-dropped/[0-9]+");
        let first = RegexBuild::begin();
        let kept = first.full_match(held).expect("valid");
        drop(first.full_match(dropped).expect("valid"));
        drop(first);
        // A build that uses neither (a reload that reused the table holding `kept`).
        drop(RegexBuild::begin());
        assert!(
            !cache().compiled.contains_key(dropped),
            "a pattern nothing holds is dropped"
        );
        let third = RegexBuild::begin();
        assert!(
            Arc::ptr_eq(&kept, &third.full_match(held).expect("valid")),
            "a pattern a live table holds is not compiled again"
        );
    }
}
