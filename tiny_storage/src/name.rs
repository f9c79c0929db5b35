//! Names people choose for themselves and their groups, in their own
//! language: `张三`, `中文群`, `José`, `ana-maria.k`.
//!
//! [`check`] is the rule: 1 to [`MAX_NAME_CHARS`] characters and at most
//! [`MAX_NAME_BYTES`] bytes of UTF-8, in Unicode Normalization Form C, made
//! of letters, combining marks (not first), digits and the separators `_`,
//! `-` and `.`. Refused:
//! - control, format and other invisible characters (zero-width joiners and
//!   spaces, bidirectional overrides, soft hyphens, Hangul fillers), spaces,
//!   punctuation other than the three separators, symbols and emoji;
//! - characters that UTS #39 does not recommend in identifiers (obsolete
//!   scripts, compatibility forms such as full-width letters);
//! - mixed-script names that can pass for another name, by UTS #39's
//!   *moderately restrictive* level: one script, or Latin with Han, Hiragana,
//!   Katakana and Hangul (`山田タロウ`, `张三abc`), or Latin with one other
//!   recommended script except Cyrillic and Greek. `pаypal` with a Cyrillic
//!   `а` is refused.
//!
//! [`normalize`] gives the form names are stored and looked up in (NFC), and
//! [`fold`] the key two names collide on: `Anna` and `anna` are one name.
//! [`Users`](crate::Users) applies all three to user names; an application
//! uses the same functions for its other names (a chat's group names).
//!
//! ```
//! use tiny_storage::name;
//!
//! assert!(name::check("张三").is_ok());
//! assert!(name::check("José").is_ok());
//! assert!(name::check("pаypal").is_err()); // Cyrillic а among Latin letters
//! assert!(name::check("a\u{200d}b").is_err()); // a zero-width joiner
//! assert_eq!(name::normalize("Jose\u{301}"), "José");
//! assert_eq!(name::fold("ÀNNA"), name::fold("ànna"));
//! ```

use std::borrow::Cow;

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};
use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};
use unicode_security::{GeneralSecurityProfile, RestrictionLevel, RestrictionLevelDetection};

/// The most characters (Unicode scalar values) in a name.
pub const MAX_NAME_CHARS: usize = 32;

/// The most bytes of UTF-8 in a name.
pub const MAX_NAME_BYTES: usize = 64;

/// Most combining marks in a row: enough for any script's clusters, not
/// enough to stack a tower of diacritics over the names next to it.
const MAX_MARKS_IN_A_ROW: usize = 4;

/// `name` in Normalization Form C: the form names are stored, compared and
/// looked up in. Borrows when it already is.
pub fn normalize(name: &str) -> Cow<'_, str> {
    if is_nfc_quick(name.chars()) == IsNormalized::Yes {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(name.nfc().collect())
    }
}

/// The key on which two names collide: their normalized lower case.
/// `fold(a) == fold(b)` means `a` and `b` cannot both be taken.
pub fn fold(name: &str) -> String {
    normalize(&normalize(name).to_lowercase()).into_owned()
}

/// Check `name` against the rule of this module; the error says what is
/// wrong without quoting the name.
pub fn check(name: &str) -> Result<(), String> {
    let rule = || {
        format!(
            "a name is 1 to {MAX_NAME_CHARS} letters, digits, `_`, `-` and `.` \
             (at most {MAX_NAME_BYTES} bytes)"
        )
    };
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(rule());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(rule());
    }
    if is_nfc_quick(name.chars()) != IsNormalized::Yes && name.nfc().ne(name.chars()) {
        return Err("a name must be in Unicode normalization form C".to_owned());
    }
    let mut marks = 0;
    for (i, c) in name.chars().enumerate() {
        match kind(c) {
            Some(Char::Mark) if i == 0 => {
                return Err("a name cannot start with a combining mark".to_owned());
            }
            Some(Char::Mark) => {
                marks += 1;
                if marks > MAX_MARKS_IN_A_ROW {
                    return Err(format!(
                        "a name has at most {MAX_MARKS_IN_A_ROW} combining marks in a row"
                    ));
                }
            }
            Some(Char::Base) => marks = 0,
            None => return Err(rule()),
        }
    }
    if name.detect_restriction_level() > RestrictionLevel::ModeratelyRestrictive {
        return Err(
            "a name cannot mix scripts that look alike (such as Latin and \
                    Cyrillic letters)"
                .to_owned(),
        );
    }
    Ok(())
}

enum Char {
    /// A letter, a digit or a separator.
    Base,
    /// A combining mark.
    Mark,
}

/// What `c` is in a name, or `None` when it may not be in one.
fn kind(c: char) -> Option<Char> {
    if c.is_ascii() {
        return (c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')).then_some(Char::Base);
    }
    // Recommended for identifiers by UTS #39 (which leaves out obsolete
    // scripts and compatibility forms), but without the invisible ones it
    // lets through (joiners are format characters; Hangul fillers are
    // letters that show nothing).
    if !c.identifier_allowed() || is_invisible_letter(c) {
        return None;
    }
    match c.general_category_group() {
        GeneralCategoryGroup::Letter | GeneralCategoryGroup::Number => Some(Char::Base),
        GeneralCategoryGroup::Mark => Some(Char::Mark),
        _ => None,
    }
}

/// Letters that render as blank space.
fn is_invisible_letter(c: char) -> bool {
    matches!(c, '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_many_languages_pass() {
        for name in [
            "alice",
            "A_b-c.d",
            "张三",
            "中文群",
            "地鼠",
            "José",
            "Zoë",
            "Ελένη",
            "Дмитрий",
            "山田タロウ",
            "김민준",
            "张三abc",
            "محمد",
            "देवनागरी",
            "क्षत्रिय",
            "ราชา",
            "محمد١٢",
            &"界".repeat(MAX_NAME_CHARS - 11), // 21 × 3 bytes
        ] {
            assert_eq!(check(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn invisible_confusable_and_oversized_names_fail() {
        for (name, why) in [
            ("", "empty"),
            ("a b", "a space"),
            ("a\tb", "a control character"),
            ("a\u{200b}b", "a zero-width space"),
            ("a\u{200c}b", "a zero-width non-joiner"),
            ("a\u{200d}b", "a zero-width joiner"),
            ("a\u{202e}b", "a bidirectional override"),
            ("a\u{ad}b", "a soft hyphen"),
            ("a\u{feff}b", "a byte order mark"),
            ("\u{3164}", "a Hangul filler"),
            ("a\u{3164}", "a Hangul filler after a letter"),
            ("pаypal", "Latin with a Cyrillic а"),
            ("ΑΒΓa", "Greek with Latin"),
            ("\u{301}a", "a leading combining mark"),
            ("a\u{301}\u{302}\u{303}\u{304}\u{305}", "a tower of marks"),
            ("Jose\u{301}", "not NFC"),
            ("ＡＢＣ", "full-width letters"),
            ("a😀", "an emoji"),
            ("a/b", "a slash"),
            ("a*b", "an AMQP wildcard"),
            ("a#b", "an AMQP wildcard"),
            ("a:b", "a colon"),
            ("a'b", "an apostrophe"),
            (&"a".repeat(MAX_NAME_CHARS + 1), "too many characters"),
            (&"界".repeat(22), "too many bytes"),
        ] {
            assert!(check(name).is_err(), "{why}: {name:?} passed");
        }
    }

    #[test]
    fn errors_do_not_quote_the_name() {
        let e = check("secret\u{200d}name").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn normalize_composes_and_borrows_when_it_can() {
        assert_eq!(normalize("e\u{301}"), "é");
        assert!(matches!(normalize("张三"), Cow::Borrowed(_)));
        assert!(matches!(normalize("e\u{301}"), Cow::Owned(_)));
    }

    #[test]
    fn fold_ignores_case_and_composition() {
        assert_eq!(fold("Anna"), fold("anna"));
        assert_eq!(fold("ÉLODIE"), fold("e\u{301}lodie"));
        assert_eq!(fold("ΑΝΝΑ"), fold("αννα"));
        assert_eq!(fold("张三"), "张三");
        assert_ne!(fold("anna"), fold("anne"));
    }
}
