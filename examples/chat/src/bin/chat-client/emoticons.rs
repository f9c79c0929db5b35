//! Text emoticons expanded on display: `:)` `:(` `<3` and a handful of
//! kaomoji codes. Stored and sent text is never changed; only what is shown.
//!
//! An emoticon is expanded only as a word of its own: preceded by the start
//! of the text or whitespace, and followed by the end, whitespace or sentence
//! punctuation — so `http://x`, `f(x:)` or `a<3b` stay as typed.

/// What each code expands to. Longer codes come before their prefixes.
pub(crate) const TABLE: &[(&str, &str)] = &[
    (":-)", "☺"),
    (":)", "☺"),
    (":-(", "☹"),
    (":(", "☹"),
    ("<3", "♥"),
    (":shrug:", "¯\\_(ツ)_/¯"),
    (":tableflip:", "(╯°□°)╯︵ ┻━┻"),
    (":unflip:", "┬─┬ノ( º _ ºノ)"),
    (":lenny:", "( ͡° ͜ʖ ͡°)"),
    (":bear:", "ʕ•ᴥ•ʔ"),
    (":cry:", "(╥﹏╥)"),
    (":joy:", "(＾▽＾)"),
    (":hug:", "(づ｡◕‿‿◕｡)づ"),
    (":wave:", "(・ω・)ノ"),
];

/// `text` with every emoticon expanded.
pub(crate) fn expand(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut at_word_start = true;
    while let Some(c) = rest.chars().next() {
        if at_word_start
            && let Some((code, glyph)) = TABLE.iter().find(|(code, _)| ends_word(rest, code))
        {
            out.push_str(glyph);
            rest = &rest[code.len()..];
            at_word_start = false;
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
        at_word_start = c.is_whitespace();
    }
    out
}

/// True when `text` starts with `code` and the code ends a word there.
fn ends_word(text: &str, code: &str) -> bool {
    text.strip_prefix(code).is_some_and(|after| {
        after
            .chars()
            .next()
            .is_none_or(|c| c.is_whitespace() || ".,!?;".contains(c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(expand(input), expected, "expanding {input:?}");
    }

    #[test]
    fn faces_and_hearts() {
        check("hi :)", "hi ☺");
        check(":) hi", "☺ hi");
        check(":-) and :-( and :(", "☺ and ☹ and ☹");
        check("I <3 Rust", "I ♥ Rust");
        check("ok :).", "ok ☺.");
        check("wow :(!", "wow ☹!");
        check("a\t:)\nb", "a\t☺\nb");
    }

    #[test]
    fn kaomoji_codes() {
        check("well :shrug:", "well ¯\\_(ツ)_/¯");
        check(
            ":tableflip: then :unflip:",
            "(╯°□°)╯︵ ┻━┻ then ┬─┬ノ( º _ ºノ)",
        );
        check(
            ":bear: :cry: :joy: :hug: :wave: :lenny:",
            "ʕ•ᴥ•ʔ (╥﹏╥) (＾▽＾) (づ｡◕‿‿◕｡)づ (・ω・)ノ ( ͡° ͜ʖ ͡°)",
        );
    }

    #[test]
    fn only_whole_words_expand() {
        check("http://example.org", "http://example.org");
        check("f(x:)", "f(x:)");
        check("a<3b", "a<3b");
        check(":)x", ":)x");
        check(":shrug:s", ":shrug:s");
        check("no emoticons here", "no emoticons here");
        check("", "");
        check("ünïcödé :) ✓", "ünïcödé ☺ ✓");
    }

    #[test]
    fn expanded_text_does_not_expand_again() {
        let once = expand(":) <3 :shrug:");
        assert_eq!(expand(&once), once);
    }
}
