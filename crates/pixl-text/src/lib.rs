//! Free-text de-identification (issue 13), pure: no I/O, no panics on any input, linear
//! time (only the `regex` crate's finite automata, which never backtrack).
//!
//! This is the pattern layer: detectors that tag byte spans of UTF-8 text with a
//! [`Category`] (dates and times, contact details, identifiers with their checksums,
//! postcodes and ZIP codes, ages of 90 and over), and the outputs that mask them. The
//! safelist layer (every word no safe filter explains is masked), name lists, per-patient
//! probes and surrogates come on top of it.
//!
//! Fail closed: a text longer than [`MAX_TEXT_BYTES`] is masked whole and flagged, never
//! passed as "no PHI found".

pub mod check;
pub mod eval;
mod lexicon;
mod patterns;
mod probes;
pub mod surrogate;
pub mod synth;
mod words;

pub use patterns::detect_patterns;
pub use probes::{Patient, Probes};
pub use words::detect_words;

use std::fmt;

/// Texts longer than this are masked whole and flagged (fail closed).
pub const MAX_TEXT_BYTES: usize = 4 * 1024 * 1024;

/// What a span is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Name,
    Date,
    Age,
    Id,
    Contact,
    Location,
    Organisation,
    Other,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Name => "NAME",
            Self::Date => "DATE",
            Self::Age => "AGE",
            Self::Id => "ID",
            Self::Contact => "CONTACT",
            Self::Location => "LOCATION",
            Self::Organisation => "ORGANISATION",
            Self::Other => "OTHER",
        }
    }
}

impl Category {
    /// Every category, in order.
    pub const ALL: [Category; 8] = [Self::Name, Self::Date, Self::Age, Self::Id, Self::Contact, Self::Location, Self::Organisation, Self::Other];

    /// A category from its name (any case; "ORGANIZATION" too). `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        let upper = name.trim().to_ascii_uppercase();
        if upper == "ORGANIZATION" {
            return Some(Self::Organisation);
        }
        Self::ALL.into_iter().find(|c| c.as_str() == upper)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A span of the text: bytes `start..end`, on character boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub category: Category,
}

/// Why a text could not be de-identified. Never holds any of the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("the text is not valid UTF-8 (first bad byte at offset {0}); it is not guessed at")]
    NotUtf8(usize),
}

/// What the engine found in one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// Sorted, disjoint spans.
    pub spans: Vec<Span>,
    /// An internal limit was reached and the text was masked whole.
    pub flagged: bool,
}

/// Checks that `bytes` are UTF-8 (a caller reports the error, with its own context).
pub fn as_text(bytes: &[u8]) -> Result<&str, TextError> {
    std::str::from_utf8(bytes).map_err(|e| TextError::NotUtf8(e.valid_up_to()))
}

/// Runs the detectors over `text`.
pub fn detect(text: &str) -> Detection {
    detect_with(text, None)
}

/// Runs the detectors and, when given, the patient's probes over `text`.
pub fn detect_with(text: &str, probes: Option<&Probes>) -> Detection {
    if text.len() > MAX_TEXT_BYTES {
        return Detection { spans: vec![Span { start: 0, end: text.len(), category: Category::Other }], flagged: true };
    }
    let mut spans = detect_patterns(text);
    if let Some(probes) = probes {
        spans.extend(probes.find(text));
    }
    let words = detect_words(text, &spans);
    spans.extend(words);
    Detection { spans: merge(spans), flagged: false }
}

/// Sorts spans and merges overlapping ones (the earlier category wins ties by position).
pub fn merge(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_by_key(|s| (s.start, std::cmp::Reverse(s.end)));
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans {
        match out.last_mut() {
            Some(last) if span.start < last.end => last.end = last.end.max(span.end),
            _ => out.push(span),
        }
    }
    out
}

/// Philter's output: every character of a span replaced by `*`, everything else kept
/// (length in characters preserved).
pub fn mask_asterisks(text: &str, spans: &[Span]) -> String {
    replace(text, spans, |span| "*".repeat(text[span.start..span.end].chars().count()))
}

/// Each span replaced by its category in brackets: `[DATE]`.
pub fn mask_tags(text: &str, spans: &[Span]) -> String {
    replace(text, spans, |span| format!("[{}]", span.category))
}

fn replace(text: &str, spans: &[Span], with: impl Fn(&Span) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for span in spans {
        out.push_str(&text[at..span.start]);
        out.push_str(&with(span));
        at = span.end;
    }
    out.push_str(&text[at..]);
    out
}
