//! Validators: named rules an attribute value must follow.

use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use crate::error::{ModelError, shorten};
use crate::value::Value;

/// Longest pattern accepted by [`Validator::pattern`], in bytes.
const MAX_PATTERN: usize = 1024;
/// Memory the compiled form of one pattern may take.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

type Check = dyn Fn(&Value) -> Result<(), String> + Send + Sync;

/// A named rule an attribute's value must follow.
///
/// Validators run on every value an attribute receives (at creation, from a
/// default, and on update), after the type check. A password attribute's
/// validators see the password as [`Value::Secret`]; the text-based built-ins
/// treat it like text. Failures become
/// [`Error::Invalid`](crate::Error::Invalid) naming the attribute and
/// [`rule`](Self::rule); messages never quote the value.
///
/// ```
/// use tiny_storage::{Validator, Value};
/// let nick = Validator::length(1..=32);
/// assert!(nick.check(&Value::from("Al")).is_ok());
/// assert_eq!(
///     nick.check(&Value::from("")).unwrap_err(),
///     "expected 1 to 32 characters, got 0"
/// );
///
/// let even = Validator::custom("even", |v| match v.as_int() {
///     Some(n) if n % 2 == 0 => Ok(()),
///     _ => Err("expected an even integer".to_owned()),
/// });
/// assert!(even.check(&Value::from(4)).is_ok());
/// assert_eq!(even.rule(), "even");
/// ```
#[derive(Clone)]
pub struct Validator {
    rule: Arc<str>,
    check: Arc<Check>,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Validator").field(&self.rule).finish()
    }
}

impl Validator {
    /// A custom rule named `rule`: `check` returns `Err(reason)` to refuse a
    /// value, where `reason` says what was expected (and must not quote a
    /// password).
    pub fn custom<F>(rule: &str, check: F) -> Self
    where
        F: Fn(&Value) -> Result<(), String> + Send + Sync + 'static,
    {
        Validator {
            rule: rule.into(),
            check: Arc::new(check),
        }
    }

    /// Text (or a password) with at least one non-whitespace character.
    /// Rule name `non-empty`.
    pub fn non_empty() -> Self {
        Self::custom("non-empty", |v| match v.text_like() {
            Some(s) if !s.trim().is_empty() => Ok(()),
            Some(_) => Err("expected at least one non-whitespace character".to_owned()),
            None => Err(expected_text(v)),
        })
    }

    /// A name in the users' own language, by the rule of [`name::check`]
    /// (Unicode letters, digits, `_`, `-` and `.`; NFC; no invisible or
    /// mixed-script look-alike characters; 1 to 32 characters and at most 64
    /// bytes). Rule name `name`.
    ///
    /// [`name::check`]: crate::name::check
    ///
    /// ```
    /// use tiny_storage::{Validator, Value};
    /// let name = Validator::name();
    /// assert!(name.check(&Value::from("张三")).is_ok());
    /// assert!(name.check(&Value::from("a b")).is_err());
    /// ```
    pub fn name() -> Self {
        Self::custom("name", |v| match v {
            Value::Text(s) => crate::name::check(s),
            other => Err(expected_text(other)),
        })
    }

    /// Text (or a password) whose length in characters lies in `range`,
    /// for example `3..=32` or `8..`. Rule name `length`.
    pub fn length(range: impl RangeBounds<usize>) -> Self {
        let (min, max) = bounds_usize(&range);
        let expected = describe(min, max, "characters");
        Self::custom("length", move |v| {
            let Some(s) = v.text_like() else {
                return Err(expected_text(v));
            };
            // Count at most max + 1 characters: enough to know, bounded work.
            let n = s.chars().take(max.saturating_add(1)).count();
            if n < min || n > max {
                let got = if n > max {
                    format!("more than {max}")
                } else {
                    n.to_string()
                };
                return Err(format!("expected {expected}, got {got}"));
            }
            Ok(())
        })
    }

    /// An integer within `range`, for example `0..=150`. Rule name `range`.
    pub fn range(range: impl RangeBounds<i64>) -> Self {
        let min = match range.start_bound() {
            Bound::Included(&n) => Some(n),
            Bound::Excluded(&n) => Some(n.saturating_add(1)),
            Bound::Unbounded => None,
        };
        let max = match range.end_bound() {
            Bound::Included(&n) => Some(n),
            Bound::Excluded(&n) => Some(n.saturating_sub(1)),
            Bound::Unbounded => None,
        };
        Self::custom("range", move |v| {
            let Some(n) = v.as_int() else {
                return Err(format!("expected an integer, got {}", v.type_name()));
            };
            let ok = min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m);
            if ok {
                return Ok(());
            }
            let expected = match (min, max) {
                (Some(a), Some(b)) => format!("{a} to {b}"),
                (Some(a), None) => format!("at least {a}"),
                (None, Some(b)) => format!("at most {b}"),
                (None, None) => unreachable_range(),
            };
            Err(format!("expected {expected}, got {n}"))
        })
    }

    /// Text matching the regular expression `pattern` as a whole (it is
    /// anchored at both ends). Rule name `pattern`.
    ///
    /// Uses the `regex` crate: matching takes linear time whatever the input,
    /// so a pattern cannot be turned against the server.
    pub fn pattern(pattern: &str) -> Result<Self, ModelError> {
        let bad = |reason: String| ModelError::InvalidPattern {
            pattern: shorten(pattern),
            reason,
        };
        if pattern.len() > MAX_PATTERN {
            return Err(bad(format!(
                "pattern of {} bytes exceeds the {MAX_PATTERN}-byte limit",
                pattern.len()
            )));
        }
        let re = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(PATTERN_SIZE_LIMIT)
            .build()
            .map_err(|e| bad(e.to_string().to_lowercase()))?;
        let shown = shorten(pattern);
        Ok(Self::custom("pattern", move |v| match v.text_like() {
            Some(s) if re.is_match(s) => Ok(()),
            Some(_) => Err(format!("expected text matching the pattern {shown:?}")),
            None => Err(expected_text(v)),
        }))
    }

    /// Text shaped like an e-mail address: `local@domain.tld`, at most 254
    /// bytes, a local part of 1 to 64 bytes, a domain of dot-separated labels
    /// of letters, digits and hyphens, no spaces. It does not check that the
    /// address exists. Rule name `email`.
    pub fn email() -> Self {
        Self::custom("email", |v| match v.text_like() {
            Some(s) if is_email(s) => Ok(()),
            Some(_) => Err("expected an e-mail address like name@example.com".to_owned()),
            None => Err(expected_text(v)),
        })
    }

    /// The rule's name, as it appears in [`Error::Invalid`](crate::Error::Invalid).
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// Check `value`: `Err(reason)` when it breaks the rule.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        (self.check)(value)
    }
}

fn expected_text(v: &Value) -> String {
    format!("expected text, got {}", v.type_name())
}

fn unreachable_range() -> String {
    // Both bounds open: every integer passes, so this message is never shown.
    "any integer".to_owned()
}

fn bounds_usize(range: &impl RangeBounds<usize>) -> (usize, usize) {
    let min = match range.start_bound() {
        Bound::Included(&n) => n,
        Bound::Excluded(&n) => n.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let max = match range.end_bound() {
        Bound::Included(&n) => n,
        Bound::Excluded(&n) => n.saturating_sub(1),
        Bound::Unbounded => usize::MAX,
    };
    (min, max)
}

fn describe(min: usize, max: usize, unit: &str) -> String {
    match (min, max) {
        (0, usize::MAX) => format!("any number of {unit}"),
        (a, usize::MAX) => format!("at least {a} {unit}"),
        (0, b) => format!("at most {b} {unit}"),
        (a, b) if a == b => format!("exactly {a} {unit}"),
        (a, b) => format!("{a} to {b} {unit}"),
    }
}

fn is_email(s: &str) -> bool {
    if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || local.contains('@') {
        return false;
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;
    use proptest::prelude::*;

    fn check(v: &Validator, value: impl Into<Value>, expected: Result<(), &str>) {
        let got = v.check(&value.into());
        assert_eq!(got.as_ref().map(|_| ()).map_err(String::as_str), expected);
    }

    #[test]
    fn non_empty() {
        let v = Validator::non_empty();
        check(&v, "a", Ok(()));
        check(
            &v,
            "",
            Err("expected at least one non-whitespace character"),
        );
        check(
            &v,
            " \t",
            Err("expected at least one non-whitespace character"),
        );
        check(&v, 3, Err("expected text, got int"));
        check(&v, Secret::new("pw"), Ok(()));
    }

    #[test]
    fn length_ranges() {
        check(&Validator::length(2..=3), "ab", Ok(()));
        check(
            &Validator::length(2..=3),
            "a",
            Err("expected 2 to 3 characters, got 1"),
        );
        check(
            &Validator::length(2..=3),
            "abcdef",
            Err("expected 2 to 3 characters, got more than 3"),
        );
        check(
            &Validator::length(8..),
            "short",
            Err("expected at least 8 characters, got 5"),
        );
        check(
            &Validator::length(..4),
            "abcd",
            Err("expected at most 3 characters, got more than 3"),
        );
        check(
            &Validator::length(2..=2),
            "é",
            Err("expected exactly 2 characters, got 1"),
        );
        // Characters, not bytes.
        check(&Validator::length(..=2), "éé", Ok(()));
        check(&Validator::length(8..), Secret::new("12345678"), Ok(()));
    }

    #[test]
    fn integer_ranges() {
        check(&Validator::range(0..=150), 150, Ok(()));
        check(
            &Validator::range(0..=150),
            151,
            Err("expected 0 to 150, got 151"),
        );
        check(&Validator::range(1..), 0, Err("expected at least 1, got 0"));
        check(
            &Validator::range(..10),
            10,
            Err("expected at most 9, got 10"),
        );
        check(
            &Validator::range(..10),
            "x",
            Err("expected an integer, got text"),
        );
    }

    #[test]
    fn patterns_match_whole_values() {
        let v = Validator::pattern("[a-z]+").expect("valid pattern");
        check(&v, "abc", Ok(()));
        check(
            &v,
            "abc1",
            Err("expected text matching the pattern \"[a-z]+\""),
        );
        check(
            &v,
            "1abc",
            Err("expected text matching the pattern \"[a-z]+\""),
        );
        let alt = Validator::pattern("a|b").expect("valid pattern");
        check(
            &alt,
            "ab",
            Err("expected text matching the pattern \"a|b\""),
        );
        check(&alt, "b", Ok(()));
    }

    #[test]
    fn bad_patterns_are_model_errors() {
        let Err(ModelError::InvalidPattern { pattern, reason }) = Validator::pattern("(") else {
            panic!("an unclosed group must be refused");
        };
        assert_eq!(pattern, "(");
        assert!(reason.contains("unclosed"), "{reason}");
        assert!(Validator::pattern(&"a".repeat(2000)).is_err());
        // Too large once compiled.
        assert!(Validator::pattern(r"\w{1000}\w{1000}\w{1000}").is_err());
    }

    #[test]
    fn emails() {
        let v = Validator::email();
        for ok in [
            "a@b.co",
            "first.last+tag@example.com",
            "x@sub.domain.org",
            "ü@bücher.de",
        ] {
            check(&v, ok, Ok(()));
        }
        let bad = Err("expected an e-mail address like name@example.com");
        for ko in [
            "",
            "a",
            "a@",
            "@b.co",
            "a@b",
            "a b@c.de",
            "a@b..c",
            "a@-b.co",
            "a..b@c.de",
            "a@b.c@d.ef",
            ".a@b.co",
        ] {
            check(&v, ko, bad);
        }
        check(&v, format!("{}@b.co", "a".repeat(65)), bad);
    }

    #[test]
    fn debug_shows_the_rule() {
        assert_eq!(format!("{:?}", Validator::email()), "Validator(\"email\")");
    }

    proptest! {
        #[test]
        fn length_agrees_with_char_count(s in "\\PC{0,40}", min in 0usize..20, span in 0usize..20) {
            let max = min + span;
            let n = s.chars().count();
            let ok = Validator::length(min..=max).check(&Value::from(s.as_str())).is_ok();
            prop_assert_eq!(ok, (min..=max).contains(&n));
        }

        #[test]
        fn range_agrees_with_contains(n in any::<i64>(), a in -1000i64..1000, span in 0i64..1000) {
            let ok = Validator::range(a..=a + span).check(&Value::Int(n)).is_ok();
            prop_assert_eq!(ok, (a..=a + span).contains(&n));
        }

        #[test]
        fn generated_addresses_are_emails(
            local in "[a-z0-9][a-z0-9._+-]{0,20}[a-z0-9]",
            host in "[a-z0-9]{1,10}",
            tld in "[a-z]{2,6}",
        ) {
            prop_assume!(!local.contains(".."));
            let addr = format!("{local}@{host}.{tld}");
            prop_assert!(Validator::email().check(&Value::from(addr)).is_ok());
        }

        #[test]
        fn no_whitespace_in_emails(a in "[a-z]{1,5}", b in "[a-z]{1,5}", ws in "[ \t\n]") {
            let addr = format!("{a}{ws}{b}@example.com");
            prop_assert!(Validator::email().check(&Value::from(addr)).is_err());
        }

        #[test]
        fn pattern_agrees_with_a_hand_written_check(s in "[a-c0-2]{0,12}") {
            let v = Validator::pattern("[a-c]+[0-2]*").expect("valid pattern");
            let letters = s.trim_end_matches(|c: char| c.is_ascii_digit());
            let expected = !letters.is_empty() && letters.chars().all(|c| c.is_ascii_lowercase());
            prop_assert_eq!(v.check(&Value::from(s.as_str())).is_ok(), expected);
        }

        #[test]
        fn validators_never_panic(s in "\\PC{0,300}", n in any::<i64>()) {
            let vs = [
                Validator::non_empty(),
                Validator::length(1..=10),
                Validator::email(),
                Validator::range(-5..=5),
                Validator::pattern("x*").expect("valid pattern"),
            ];
            for v in &vs {
                let _ = v.check(&Value::from(s.as_str()));
                let _ = v.check(&Value::Int(n));
                let _ = v.check(&Value::Null);
            }
        }
    }
}
