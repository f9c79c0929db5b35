//! Checked case lists for conformance suites.
//!
//! A suite writes each case as an `async fn` taking the suite's fixture and
//! lists the cases in a macro that turns every listed name into one test per
//! implementation. A listed name that is not a case fails to compile; a case
//! that is not listed would silently never run. The suite's macro therefore
//! also generates a test calling [`assert_all_listed`] with the file's own
//! source (`include_str!`) and the listed names (`stringify!`), which fails
//! on a case left out:
//!
//! ```
//! const SOURCE: &str = r#"
//! async fn a_case(f: Fixture) {}
//! async fn another_case(f: Fixture) {}
//! async fn helper(f: Fixture, n: usize) {}
//! "#;
//! testkit::cases::assert_all_listed(SOURCE, "Fixture", &["a_case", "another_case"]);
//! assert_eq!(testkit::cases::cases_in(SOURCE, "Fixture"), ["a_case", "another_case"]);
//! ```

use std::collections::BTreeSet;

/// The cases in `source`: the names of the `async fn`s (any visibility) whose
/// only parameter has type `fixture` (`Fixture`, `&Fixture`, ...) and that
/// return nothing, in the order they appear. A signature may span lines, as
/// `cargo fmt` writes long ones.
pub fn cases_in(source: &str, fixture: &str) -> Vec<String> {
    let mut cases = Vec::new();
    let mut at = 0;
    while let Some(found) = source[at..].find("async fn ") {
        let start = at + found;
        at = start + "async fn ".len();
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let before = source[line_start..start].trim();
        if !(before.is_empty() || before.starts_with("pub")) {
            continue; // a comment, a string or an expression mentioning it
        }
        let end = source[at..]
            .find(['{', ';'])
            .map_or(source.len(), |i| at + i);
        let signature: String = source[at..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if let Some(name) = case_name(&signature, fixture) {
            cases.push(name);
        }
    }
    cases
}

/// The name in `signature` (`name(param: Type)`, what follows `async fn `
/// up to the body) if it is a case.
fn case_name(signature: &str, fixture: &str) -> Option<String> {
    let (name, rest) = signature.split_once('(')?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None; // generic: not a case
    }
    let (param, rest) = rest.split_once(')')?;
    let (_, ty) = param.split_once(':')?;
    let ty = ty.trim().trim_end_matches(',').trim();
    (ty == fixture && rest.trim().is_empty()).then(|| name.to_owned())
}

/// Panic, naming them, if `source` has cases (see [`cases_in`]) missing from
/// `listed`, or if `source` has no cases at all (the check itself would be
/// broken).
pub fn assert_all_listed(source: &str, fixture: &str, listed: &[&str]) {
    let found = cases_in(source, fixture);
    assert!(
        !found.is_empty(),
        "no `async fn <case>(_: {fixture})` in the source: the case-list check finds nothing"
    );
    let listed: BTreeSet<&str> = listed.iter().copied().collect();
    let missing: Vec<&str> = found
        .iter()
        .map(String::as_str)
        .filter(|case| !listed.contains(case))
        .collect();
    assert!(
        missing.is_empty(),
        "cases defined but not listed in the suite's macro, so never run: {missing:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(source: &str, expected: &[&str]) {
        assert_eq!(cases_in(source, "Nodes"), expected, "{source}");
    }

    #[test]
    fn only_async_fns_taking_just_the_fixture_are_cases() {
        check("async fn a_case(n: Nodes) {}", &["a_case"]);
        check("pub(crate) async fn a_case(n: Nodes) {}", &["a_case"]);
        check("    async fn indented(_n: Nodes) {}", &["indented"]);
        check("async fn split(\n    n: Nodes,\n) {\n}", &["split"]);
        check("async fn helper(n: Nodes, i: usize) {}", &[]);
        check("async fn by_ref(n: &Nodes) {}", &[]);
        check("async fn returns(n: Nodes) -> usize {}", &[]);
        check(
            "async fn run<F, Fut>(shape: Nodes, test: F)\nwhere F: Fn() {}",
            &[],
        );
        check("fn sync_case(n: Nodes) {}", &[]);
        check("// async fn commented(n: Nodes) {}", &[]);
        check("let f = \"async fn quoted(n: Nodes) {}\";", &[]);
        check(
            "async fn a(n: Nodes) {}\nasync fn b(n: Nodes) {}",
            &["a", "b"],
        );
        assert_eq!(
            cases_in("async fn by_ref(fx: &Fixture) {}", "&Fixture"),
            ["by_ref"]
        );
    }

    #[test]
    fn every_case_listed_passes() {
        let source = "async fn a(n: Nodes) {\n}\nasync fn b(n: Nodes) {\n}\n";
        assert_all_listed(source, "Nodes", &["b", "a"]);
    }

    #[test]
    #[should_panic(expected = r#"never run: ["b"]"#)]
    fn a_case_left_out_fails() {
        let source = "async fn a(n: Nodes) {\n}\nasync fn b(n: Nodes) {\n}\n";
        assert_all_listed(source, "Nodes", &["a"]);
    }

    #[test]
    #[should_panic(expected = "finds nothing")]
    fn a_source_without_cases_fails() {
        assert_all_listed("fn main() {}", "Nodes", &[]);
    }
}
