//! Route regexes: RE2 patterns anchored to match the whole subject, compiled for many
//! patterns and small memory (see [`Regex`]).

use foldhash::HashMap;
use regex_automata::dfa::{dense, sparse, Automaton, StartKind};
use regex_automata::meta::Config;
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::{Anchored, Input};
use regex_syntax::hir::{Hir, HirKind, Literal, Look, LookSet};
use std::sync::Arc;

/// A compiled route regex and the literal bytes every match starts with (the route table
/// indexes regex paths by it).
///
/// A pattern that starts with a literal (`/api/v2/users/[0-9]+`) is matched as that literal,
/// compared, and the rest of the pattern, compiled once for every pattern that ends alike:
/// route regexes mostly differ in their literal part, and a compiled engine is large (a sparse
/// DFA's own struct is ~770 bytes, byte classes and start map inline). The 33,333 patterns of
/// the 100,000-rule benchmark took 39 MB compiled whole (heaptrack); split, they share one tail.
#[derive(Debug)]
pub struct Regex {
    /// The literal bytes the pattern starts with, compared before `tail` runs on the rest.
    head: Box<[u8]>,
    tail: Arc<Engine>,
    literal_prefix: Box<[u8]>,
}

/// How a route regex runs. Route regexes are many (a large policy directory holds thousands),
/// mostly idle, and only ever asked yes or no, so memory per pattern matters as much as speed.
///
/// - `Dfa`: a sparse DFA built ahead of time. ~1 KiB per benchmark pattern, a table walk per
///   byte, and no scratch space, so a match never touches a cache pool.
/// - `PikeVm`: `regex-automata`'s meta engine as a PikeVM with its prefilter only, for the
///   patterns a DFA cannot take (Unicode word boundaries) or that determinize past
///   [`DFA_SIZE_LIMIT`] (`\w+` with Unicode classes, large counted repetitions). ~7.5 KiB
///   per pattern; no one-pass DFA, bounded backtracker, lazy DFA or capture states.
///
/// 3,300 benchmark patterns: 16.9 KiB each with `regex::Regex`, 7.5 KiB as a PikeVM, ~1 KiB
/// as a sparse DFA (scripts/bench.sh, BENCHMARKS.md).
// Nearly every route regex is a `Dfa`, and each `Regex` already lives in its own `Arc`:
// boxing the large variant would add an allocation and an indirection, not save memory.
#[allow(clippy::large_enum_variant)]
enum Engine {
    Dfa(sparse::DFA<Vec<u8>>),
    PikeVm(regex_automata::meta::Regex),
    /// A pattern known to be valid in a snapshot that is never served ([`checked_regex`]):
    /// it matches nothing.
    CheckedOnly,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Dfa(_) => "Dfa",
            Engine::PikeVm(_) => "PikeVm",
            Engine::CheckedOnly => "CheckedOnly",
        })
    }
}

/// Largest dense DFA (before it is made sparse, which shrinks it several times) and largest
/// determinization working set a route regex may take before it runs as a PikeVM instead.
const DFA_SIZE_LIMIT: usize = 64 << 10;
const DETERMINIZE_SIZE_LIMIT: usize = 512 << 10;

impl Engine {
    fn is_match(&self, subject: &[u8]) -> bool {
        match self {
            // The DFA has no quit bytes and no heuristic Unicode word boundary, the only
            // reasons a search can give up, so `Err` does not happen; were it to, "no
            // match" is the answer that sends no request where it was not routed.
            Engine::Dfa(dfa) => dfa
                .try_search_fwd(&Input::new(subject).anchored(Anchored::Yes))
                .is_ok_and(|m| m.is_some()),
            Engine::PikeVm(re) => re.is_match(subject),
            Engine::CheckedOnly => false,
        }
    }
}

impl Regex {
    pub fn is_match(&self, subject: &str) -> bool {
        subject
            .as_bytes()
            .strip_prefix(&*self.head)
            .is_some_and(|rest| self.tail.is_match(rest))
    }

    pub fn literal_prefix(&self) -> &[u8] {
        &self.literal_prefix
    }

    #[cfg(test)]
    fn runs_as_dfa(&self) -> bool {
        matches!(*self.tail, Engine::Dfa(_))
    }
}

/// The literal bytes every match of the anchored pattern `hir` starts with
/// (`^(?:/api/v[0-9]+)$` → `/api/v`), from `regex-syntax`'s prefix extraction; empty when
/// there is none (a leading class, alternation without a common start, case-insensitive
/// letters, …).
fn literal_prefix(hir: &regex_syntax::hir::Hir) -> Box<[u8]> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let mut extractor = Extractor::new();
    extractor.kind(ExtractKind::Prefix);
    extractor
        .extract(hir)
        .longest_common_prefix()
        .map(Box::from)
        .unwrap_or_default()
}

/// Anchors an RE2 pattern so it must match the whole subject, as Envoy's `safe_regex` does,
/// and compiles it as a sparse DFA, or as a PikeVM when a DFA cannot take it (see [`Engine`]).
/// Both engines implement the same syntax and leftmost-first semantics, so which one runs is
/// invisible to routing. Many patterns: [`RegexCompiler`].
pub fn full_match_regex(pattern: &str) -> Result<Regex, String> {
    RegexCompiler::new().full_match(pattern)
}

/// Splits an anchored pattern `^lit rest$` into `lit` and `^rest$` when matching `rest` on
/// what follows `lit` is the same as matching the whole: `rest` asserts nothing about its
/// surroundings but the end of the subject (a word boundary or a start anchor in it would
/// see `lit`'s last byte, or a start that is not one).
fn split_literal_head(hir: &Hir) -> Option<(Box<[u8]>, Hir)> {
    let HirKind::Concat(parts) = hir.kind() else {
        return None;
    };
    let [start, head, rest @ ..] = parts.as_slice() else {
        return None;
    };
    if start.kind() != &HirKind::Look(Look::Start) {
        return None;
    }
    let HirKind::Literal(Literal(bytes)) = head.kind() else {
        return None;
    };
    let only_end = LookSet::singleton(Look::End);
    if rest
        .iter()
        .any(|p| !p.properties().look_set().subtract(only_end).is_empty())
    {
        return None;
    }
    let tail = Hir::concat(
        std::iter::once(Hir::look(Look::Start))
            .chain(rest.iter().cloned())
            .collect(),
    );
    Some((bytes.clone(), tail))
}

/// Compiles route regexes one after another with one NFA compiler and one DFA builder.
///
/// A fresh NFA compiler allocates and zeroes its UTF-8 state caches (~330 KB) for every
/// pattern, and the pattern was parsed once for the NFA and again for its literal prefix:
/// compiling 25,000 benchmark patterns took 1.10 s that way, 0.89 s with one compiler and
/// one parse (a cold 100,000-rule build compiles that many).
pub struct RegexCompiler {
    nfa: thompson::Compiler,
    dfa: dense::Builder,
    /// Compiled tails by the pattern they print as ([`Regex`]).
    tails: HashMap<String, Arc<Engine>>,
}

impl Default for RegexCompiler {
    fn default() -> Self {
        Self::new()
    }
}

impl RegexCompiler {
    pub fn new() -> Self {
        let mut nfa = thompson::Compiler::new();
        nfa.configure(thompson::Config::new().which_captures(WhichCaptures::None));
        let mut dfa = dense::Builder::new();
        dfa.configure(
            dense::Config::new()
                .start_kind(StartKind::Anchored)
                .minimize(false)
                .dfa_size_limit(Some(DFA_SIZE_LIMIT))
                .determinize_size_limit(Some(DETERMINIZE_SIZE_LIMIT)),
        );
        RegexCompiler {
            nfa,
            dfa,
            tails: HashMap::default(),
        }
    }

    /// Forgets the tails no regex holds any more.
    pub fn forget_unused(&mut self) {
        self.tails.retain(|_, engine| Arc::strong_count(engine) > 1);
    }

    /// The engine for the anchored pattern `hir` (printed as `key`), compiled once.
    fn engine(&mut self, key: String, hir: &Hir) -> Result<Arc<Engine>, String> {
        if let Some(engine) = self.tails.get(&key) {
            return Ok(engine.clone());
        }
        let dfa = self
            .nfa
            .build_from_hir(hir)
            .ok()
            .and_then(|nfa| self.dfa.build_from_nfa(&nfa).ok())
            .and_then(|dense| dense.to_sparse().ok());
        let engine = Arc::new(match dfa {
            Some(dfa) => Engine::Dfa(dfa),
            None => Engine::PikeVm(pike_vm_from_hir(hir)?),
        });
        self.tails.insert(key, engine.clone());
        Ok(engine)
    }

    /// [`full_match_regex`].
    pub fn full_match(&mut self, pattern: &str) -> Result<Regex, String> {
        let anchored = format!("^(?:{pattern})$");
        // The syntax both engines and the prefix extraction parse with by default.
        let Ok(hir) = regex_automata::util::syntax::parse(&anchored) else {
            // Invalid: the PikeVM builder words the error as before.
            return Err(match pike_vm(&anchored) {
                Err(e) => e,
                Ok(_) => format!("invalid regular expression {pattern:?}"),
            });
        };
        let literal_prefix = literal_prefix(&hir);
        let (head, tail) = split_literal_head(&hir).unwrap_or_else(|| (Box::default(), hir));
        let tail = self.engine(tail.to_string(), &tail)?;
        Ok(Regex {
            head,
            tail,
            literal_prefix,
        })
    }
}

/// [`full_match_regex`] for a snapshot that is checked and never served (`--check`,
/// `publish`): the same pattern accepted or refused with the same message (a pattern a DFA
/// cannot take runs as a PikeVM, so the PikeVM decides), and nothing kept. Building the DFAs
/// was a third of checking 100,000 rules, and keeping PikeVMs instead took 240 MiB more
/// (BENCHMARKS.md).
pub fn checked_regex(pattern: &str) -> Result<Regex, String> {
    pike_vm(&format!("^(?:{pattern})$"))?;
    Ok(Regex {
        head: Box::default(),
        tail: Arc::new(Engine::CheckedOnly),
        literal_prefix: Box::default(),
    })
}

fn pike_vm(anchored: &str) -> Result<regex_automata::meta::Regex, String> {
    pike_vm_builder().build(anchored).map_err(|e| e.to_string())
}

fn pike_vm_from_hir(hir: &Hir) -> Result<regex_automata::meta::Regex, String> {
    pike_vm_builder()
        .build_from_hir(hir)
        .map_err(|e| e.to_string())
}

fn pike_vm_builder() -> regex_automata::meta::Builder {
    let mut builder = regex_automata::meta::Regex::builder();
    builder.configure(
        Config::new()
            .which_captures(WhichCaptures::None)
            .onepass(false)
            .backtrack(false)
            .dfa(false)
            .hybrid(false),
    );
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_literal_prefix() {
        let prefix = |p: &str| full_match_regex(p).unwrap().literal_prefix().to_vec();
        assert_eq!(prefix("/api/v[0-9]+"), b"/api/v");
        assert_eq!(prefix("^/api/.*"), b"/api/");
        assert_eq!(prefix("/ap[a-z]/x"), b"/ap");
        assert_eq!(prefix("/a/x|/b/y"), b"/");
        assert_eq!(prefix("[/]x"), b"/x");
        assert_eq!(prefix("(?i)/api"), b"/");
        assert_eq!(prefix(".*/x"), b"");
    }

    #[test]
    fn a_literal_head_split_off_matches_as_the_whole_pattern_does() {
        // Heads with every kind of tail: classes, alternations, look-arounds that must keep
        // the pattern whole (a word boundary sees the head's last byte; `^` inside is not
        // the subject's start), multi-byte characters on either side of the cut.
        let patterns = [
            "/api/v[0-9]+",
            "/api/(?:v1|v2)/x",
            "/lit",
            "/lit.*",
            "/a\\b.*",
            "/a\\B.*",
            "/ab(?m:^)c",
            "/x$",
            "/é+",
            "/caf[é]",
            "é/[a-z]+",
            "(?i)/lit",
            "/a|/b",
            "/w/\\bfoo\\b.*",
            "/re/r000001/[0-9]+(/[a-z]+)?",
            "/re/r000002/[0-9]+(/[a-z]+)?",
        ];
        let subjects = [
            "",
            "/",
            "/api/v1",
            "/api/v12",
            "/api/v",
            "/api/v1/x",
            "/api/v2/x",
            "/api/v3/x",
            "/lit",
            "/LIT",
            "/lit/",
            "/litx",
            "/a",
            "/a/",
            "/ab",
            "/abc",
            "/x",
            "/x/",
            "/é",
            "/éé",
            "/e",
            "/café",
            "/cafe",
            "é/ab",
            "é/",
            "/b",
            "/w/foo",
            "/w/foo/x",
            "/w/foox",
            "/re/r000001/12",
            "/re/r000001/12/ab",
            "/re/r000002/7",
            "/re/r000001/",
            "/re/r00000",
        ];
        let mut compiler = RegexCompiler::new();
        for pattern in patterns {
            let ours = compiler.full_match(pattern).unwrap();
            let reference = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
            for subject in subjects {
                assert_eq!(
                    ours.is_match(subject),
                    reference.is_match(subject),
                    "{pattern} on {subject:?}"
                );
            }
        }
        let split = |p: &str| {
            split_literal_head(&regex_automata::util::syntax::parse(&format!("^(?:{p})$")).unwrap())
                .map(|(head, _)| head.to_vec())
        };
        assert_eq!(split("/api/v[0-9]+"), Some(b"/api/v".to_vec()));
        assert_eq!(split("/a\\b.*"), None);
        assert_eq!(split("/ab(?m:^)c"), None);
        // Only the case-less `/` is a literal; the letters are classes.
        assert_eq!(split("(?i)/lit"), Some(b"/".to_vec()));
        // Patterns that differ only in their head share one compiled tail.
        let (a, b) = (
            compiler.full_match("/re/r000001/[0-9]+(/[a-z]+)?").unwrap(),
            compiler.full_match("/re/r000002/[0-9]+(/[a-z]+)?").unwrap(),
        );
        assert!(Arc::ptr_eq(&a.tail, &b.tail));
        drop((a, b));
        compiler.forget_unused();
        assert!(
            compiler.tails.is_empty(),
            "tails no regex holds are forgotten"
        );
    }

    #[test]
    fn dfa_and_pike_vm_agree_and_the_pike_vm_takes_what_a_dfa_cannot() {
        let cases: &[(&str, &[(&str, bool)])] = &[
            (
                "/re/r000001/[0-9]+(/[a-z]+)?",
                &[
                    ("/re/r000001/12", true),
                    ("/re/r000001/12/ab", true),
                    ("/re/r000001/", false),
                    ("/re/r000001/12/ab/", false),
                    ("/re/r000001/12x", false),
                ],
            ),
            // Leftmost-first alternation still has to reach the end: `a` fails, `ab` matches.
            ("a|ab", &[("ab", true), ("a", true), ("abc", false)]),
            ("(?i)/API/[a-z]+", &[("/api/x", true), ("/Api/", false)]),
            ("/u/.+", &[("/u/é", true), ("/u/", false)]),
            ("v[0-9]+", &[("v1", true), ("xv1", false), ("v1x", false)]),
        ];
        for (pattern, subjects) in cases {
            let anchored = format!("^(?:{pattern})$");
            let dfa = full_match_regex(pattern).unwrap();
            assert!(dfa.runs_as_dfa(), "{pattern} should run as a DFA");
            let pike = Regex {
                head: Box::default(),
                tail: Arc::new(Engine::PikeVm(pike_vm(&anchored).unwrap())),
                literal_prefix: Box::default(),
            };
            for (subject, want) in *subjects {
                assert_eq!(dfa.is_match(subject), *want, "DFA {pattern} on {subject}");
                assert_eq!(
                    pike.is_match(subject),
                    *want,
                    "PikeVM {pattern} on {subject}"
                );
            }
        }
        // Unicode word boundaries have no DFA; Unicode \w+ determinizes past the limit.
        let boundary = full_match_regex(r"/w/\bfoo\b.*").unwrap();
        assert!(!boundary.runs_as_dfa());
        assert!(boundary.is_match("/w/foo/x"));
        assert!(!boundary.is_match("/w/foox"));
        let words = full_match_regex(r"/w/\w+/\w+/\w+").unwrap();
        assert!(!words.runs_as_dfa());
        assert!(words.is_match("/w/été/b/c"));
        assert!(!words.is_match("/w/a/b"));
        assert!(full_match_regex("(").is_err());
    }

    #[test]
    fn a_checked_regex_accepts_and_refuses_what_the_served_one_does() {
        let patterns = [
            "/api/v[0-9]+",
            r"/w/\bfoo\b.*",
            r"/w/\w+/\w+/\w+",
            "(",
            "a{2000}{2000}",
            "[z-a]",
            r"\p{NoSuchClass}",
        ];
        for pattern in patterns {
            let served = full_match_regex(pattern).map(|_| ());
            let checked = checked_regex(pattern).map(|_| ());
            assert_eq!(checked, served, "{pattern}");
        }
    }
}
