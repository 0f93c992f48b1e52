//! User-written regular expressions (path, header and query matches). Kuma hands them to
//! Envoy (RE2) unchecked; meshgate compiles them with the `regex` crate (RE2 syntax), so an
//! invalid one is refused by validation rather than failing at snapshot compile time.

use super::path::FieldPath;
use super::report::Report;

/// Parses `pattern` as written (not anchored: the matcher adds `^(?:…)$` itself, and
/// wrapping first could hide an unbalanced `)` such as `a)|(b`). Parsing with
/// `regex-syntax` finds every syntax error without building the automaton, which the
/// snapshot compiler does once anyway (a 10,000-route directory would pay twice).
pub fn check_regex(r: &mut Report, path: &FieldPath, pattern: &str) {
    if let Err(e) = regex_syntax::Parser::new().parse(pattern) {
        r.add(
            path,
            format!("must be a valid regular expression: {}", reason(&e)),
        );
    }
}

/// The parser prints the pattern with a caret over several lines; keep the one-line cause.
fn reason(e: &regex_syntax::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::testutil::{meta, run};

    fn check(p: &str) -> Vec<String> {
        run(&meta(), |r| {
            check_regex(r, &FieldPath::root().field("value"), p)
        })
    }

    #[test]
    fn valid_patterns_pass() {
        assert!(check("/api/v[0-9]+/.*").is_empty());
        assert!(check("").is_empty());
    }

    #[test]
    fn invalid_patterns_are_one_line() {
        assert_eq!(
            check("(abc"),
            ["value: must be a valid regular expression: unclosed group"]
        );
        assert_eq!(check("a)|(b").len(), 1);
        // Look-around is not RE2.
        assert_eq!(check("a(?=b)").len(), 1);
    }
}
