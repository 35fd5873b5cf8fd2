//! Text normalisation as ssmixtools does it, applied to each value after the message is
//! split (ssmixtools normalises whole lines first, which turns a full-width `｜` in free
//! text into a delimiter; pixl does not).

use unicode_normalization::UnicodeNormalization;

/// The dashes ssmixtools unifies to `-` (the long vowel mark `ー` is not one of them).
const DASHES: &[char] = &[
    '\u{FF0D}', '\u{002D}', '\u{2010}', '\u{2212}', '\u{2012}', '\u{2014}', '\u{2013}', '\u{2015}', '\u{2500}', '\u{2501}', '\u{0640}', '\u{207B}', '\u{208B}',
];

/// Joins separate (half- and full-width) voicing marks to combining ones so that NFKC
/// composes them, applies NFKC, unifies dashes, trims and collapses white space.
pub fn normalise(text: &str) -> String {
    // Most values (codes, times, numbers) are ASCII, which NFKC and the dash table leave
    // as they are: only the white space changes.
    if text.is_ascii() {
        let mut out = String::with_capacity(text.len());
        for word in text.split(char::is_whitespace).filter(|w| !w.is_empty()) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
        return out;
    }
    general(text)
}

fn general(text: &str) -> String {
    let joined = text.chars().map(|c| match c {
        '\u{309B}' | '\u{FF9E}' => '\u{3099}',
        '\u{309C}' | '\u{FF9F}' => '\u{309A}',
        c => c,
    });
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in joined.nfkc() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(if DASHES.contains(&c) { '-' } else { c });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_ssmixtools_normalises() {
        assert_eq!(normalise("  ﾒﾄﾎﾙﾐﾝ塩酸塩錠２５０ｍｇ  "), "メトホルミン塩酸塩錠250mg");
        assert_eq!(normalise("ｶﾞｰｾﾞ"), "ガーゼ");
        assert_eq!(normalise("か\u{309B}"), "が");
        assert_eq!(normalise("A－B—C―D"), "A-B-C-D");
        assert_eq!(normalise("ビタミンＢ　 １２"), "ビタミンB 12");
        assert_eq!(normalise("セーター"), "セーター", "the long vowel mark stays");
        assert_eq!(normalise(""), "");
    }

    #[test]
    fn the_ascii_path_gives_what_the_general_one_gives() {
        for text in ["", " ", "a", " 20220110 ", "E119", "mg/dL", "a\u{0B}b\t\tc\r\n d ", "-1.5", "A - B", "x\u{0C}", "  two  words  ", "\u{1F}z"] {
            assert_eq!(normalise(text), general(text), "{text:?}");
        }
    }
}
