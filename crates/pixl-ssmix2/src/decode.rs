//! Whole-file decoding. SS-MIX2 files are ISO-2022-JP: in JIS X 0208 the second byte of
//! many kanji equals an HL7 delimiter (日 is 0x46 0x7C, `|`; 本 is 0x4B 0x5C, `\`), so a
//! file is decoded whole before anything splits it.

use std::borrow::Cow;

/// `bytes` decoded from ISO-2022-JP (the WHATWG decoder, which also takes JIS X 0201
/// katakana and the NEC rows that Python's codec refuses); malformed sequences become
/// U+FFFD, which is never a delimiter. Returns the text and whether anything was malformed.
///
/// Two JIS X 0208 characters are mapped back to the code points Python (and so
/// ssmixtools) gives them, so that normalised text is the same as ssmixtools':
/// 21 41 (WAVE DASH, U+301C, not FULLWIDTH TILDE U+FF5E, which NFKC makes `~`) and 21 42
/// (DOUBLE VERTICAL LINE, U+2016, not PARALLEL TO U+2225).
pub fn decode(bytes: &[u8]) -> (String, bool) {
    let (text, had_errors) = encoding_rs::ISO_2022_JP.decode_without_bom_handling(bytes);
    let text = match text {
        Cow::Borrowed(ascii) => ascii.to_owned(),
        Cow::Owned(text) => text,
    };
    let text = if text.contains(['\u{FF5E}', '\u{2225}']) { text.replace('\u{FF5E}', "\u{301C}").replace('\u{2225}', "\u{2016}") } else { text };
    (text, had_errors)
}

/// `text` encoded as ISO-2022-JP (the generator's and the tests' direction).
pub fn encode(text: &str) -> Vec<u8> {
    let (bytes, _, _) = encoding_rs::ISO_2022_JP.encode(text);
    bytes.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kanji_whose_bytes_are_delimiters_survive() {
        let text = "PID|||1||日本^京子||19580110|F\rPRB|AD||20064316^2型糖尿病・高血圧^MDCDX2";
        let bytes = encode(text);
        assert!(bytes.windows(2).any(|w| w == [0x46, 0x7C]), "日 is 0x46 0x7C");
        assert!(bytes.windows(2).any(|w| w == [0x4B, 0x5C]), "本 is 0x4B 0x5C");
        assert!(bytes.windows(2).any(|w| w == [0x35, 0x7E]), "京 is 0x35 0x7E");
        // Split before decoding, the bytes would give more fields than the text has.
        assert!(bytes.iter().filter(|&&b| b == b'|').count() > text.matches('|').count());
        assert_eq!(decode(&bytes), (text.to_owned(), false));
    }

    #[test]
    fn wave_dash_and_malformed_bytes() {
        let (text, errors) = decode(b"\x1b$B!A!B\x1b(B");
        assert_eq!((text.as_str(), errors), ("\u{301C}\u{2016}", false));
        let (text, errors) = decode(b"A\x1b$B\xff\xff\x1b(B|");
        assert!(errors && text.starts_with('A') && text.ends_with('|') && text.contains('\u{FFFD}'));
        // Half-width katakana (ESC ( I), which Python's iso2022_jp refuses.
        let (text, errors) = decode(b"\x1b(I1\x1b(B");
        assert_eq!((text.as_str(), errors), ("\u{FF71}", false));
    }
}
