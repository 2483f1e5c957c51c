//! Text a person reads but did not write: which characters must never reach a screen as they are.
//!
//! Text from an FI (a reason, a string in a lineage) is shown to the owner, who decides on it. Besides control
//! characters (terminal escapes, newlines), Unicode has characters that are invisible or that reorder what is
//! shown around them: bidirectional overrides and isolates (U+202A..U+202E, U+2066..U+2069), zero-width spaces
//! and joiners (U+200B..U+200D, U+2060, U+FEFF), tag characters, and line and paragraph separators. With them
//! a reason can read as something other than what it says. Every place that shows such text escapes or replaces
//! the characters [`is_hidden`] names.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Whether `c` must not be shown as it is: a control character, a format character (Unicode category Cf:
/// bidirectional controls, zero-width characters, tags, ...), or a line or paragraph separator.
pub fn is_hidden(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// `text` made safe to show: each hidden character (see [`is_hidden`]) becomes a visible `<U+XXXX>`, except
/// that control characters (newlines, tabs, escapes) become spaces.
pub fn neutralize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.push(' ');
        } else if is_hidden(c) {
            out.push_str(&format!("<U+{:04X}>", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_zero_width_and_controls_are_hidden_letters_are_not() {
        let hidden = [
            '\u{202E}',
            '\u{202A}',
            '\u{2066}',
            '\u{2069}',
            '\u{200B}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{E0041}',
            '\u{2028}',
            '\u{2029}',
            '\u{1b}',
            '\n',
            '\u{7f}',
        ];
        for c in hidden {
            assert!(is_hidden(c), "{:04X}", u32::from(c));
        }
        for c in ['a', 'é', 'ß', '€', '日', '\u{0301}', ' ', '-', '\u{05D0}'] {
            assert!(!is_hidden(c), "{:04X}", u32::from(c));
        }
    }

    #[test]
    fn neutralized_text_shows_what_was_hidden() {
        assert_eq!(
            neutralize("pay\u{202E}dlrow\u{202C} in full\n\u{200B}ok"),
            "pay<U+202E>dlrow<U+202C> in full <U+200B>ok"
        );
        assert_eq!(neutralize("plain reason"), "plain reason");
    }

    #[test]
    fn a_lineage_writes_hidden_characters_escaped_and_reads_them_back() {
        use crate::expr::Expr;
        use crate::value::Value;
        let lit = Expr::Literal {
            value: Value::Str("in\u{202E}emoc\u{200B}".into()),
        };
        let src = crate::parse::to_source(&lit);
        assert!(!src.chars().any(is_hidden), "{src:?}");
        assert_eq!(src, r#""in\u{202e}emoc\u{200b}""#);
        assert_eq!(crate::parse::parse_expr(&src).unwrap(), lit);
    }
}
