//! The second check of a de-identified text (issue 14), by a different method from the
//! engine: it does not use the engine's detectors, word lists or automata. It looks at the
//! engine's *output* for what must not be there:
//!
//! - the patient's known values: names exactly and, from five letters, within one edit
//!   (a typo of the name, a swap of two letters, is still the name); identifiers, phones and postcodes as their
//!   letters and digits whatever the separators; the date of birth in any common form;
//! - high-recall patterns: anything shaped like a date, digit runs of six or more, ten
//!   digits with a valid NHS check digit.
//!
//! A finding flags the text for a person to review; it never says what the value was
//! (the caller has the text and the offsets).

use crate::{Patient, patterns::nhs_number_valid};

/// Why a text was flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// One of the patient's names, exactly.
    Name,
    /// Within one edit of one of the patient's names of five letters or more.
    NameVariant,
    /// One of the patient's identifiers, phones or postcodes.
    Identifier,
    /// The patient's date of birth.
    DateOfBirth,
    /// Something shaped like a date.
    DateLike,
    /// Six or more digits in a row.
    DigitRun,
    /// Ten digits with a valid NHS number check digit.
    NhsNumber,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::NameVariant => "name variant",
            Self::Identifier => "identifier",
            Self::DateOfBirth => "date of birth",
            Self::DateLike => "date-like",
            Self::DigitRun => "digit run",
            Self::NhsNumber => "NHS number",
        }
    }
}

/// A place in the text that the check doubts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub start: usize,
    pub end: usize,
    pub reason: Reason,
}

/// A word of letters (any script) or a group of digits, with its byte range.
#[derive(Debug, Clone, Copy)]
struct Piece<'a> {
    start: usize,
    end: usize,
    text: &'a str,
    digits: bool,
}

/// Splits `text` into runs of letters and runs of digits (a scan by hand: no regex, no
/// word list; different from the engine's tokens on purpose).
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut current: Option<(usize, bool)> = None;
    for (at, c) in text.char_indices() {
        let kind = if c.is_numeric() {
            Some(true)
        } else if c.is_alphabetic() {
            Some(false)
        } else {
            None
        };
        match (current, kind) {
            (Some((_, digits)), Some(k)) if digits == k => {}
            (Some((start, digits)), _) => {
                out.push(Piece { start, end: at, text: &text[start..at], digits });
                current = kind.map(|k| (at, k));
            }
            (None, Some(k)) => current = Some((at, k)),
            (None, None) => {}
        }
    }
    if let Some((start, digits)) = current {
        out.push(Piece { start, end: text.len(), text: &text[start..], digits });
    }
    out
}

/// At most one edit apart (insertion, deletion, substitution or a swap of neighbours:
/// Damerau's distance), without a table.
fn within_one_edit(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let (short, long) = if a.len() <= b.len() { (&a, &b) } else { (&b, &a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short.iter().zip(long.iter()).take_while(|(x, y)| x == y).count();
    if short.len() == long.len() {
        // One substitution, or two neighbours swapped (a typing slip: "Kowalcyzk").
        let differ: Vec<usize> = (prefix..short.len()).filter(|&i| short[i] != long[i]).collect();
        match differ[..] {
            [] | [_] => true,
            [i, j] => j == i + 1 && short[i] == long[j] && short[j] == long[i],
            _ => false,
        }
    } else {
        // One insertion at most.
        short[prefix..] == long[prefix + 1..]
    }
}

fn letters_and_digits(value: &str) -> String {
    value.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// The pieces joined, as letters and digits, with the byte range of each character.
fn folded(pieces: &[Piece<'_>]) -> (Vec<char>, Vec<(usize, usize)>) {
    let mut chars = Vec::new();
    let mut places = Vec::new();
    for piece in pieces {
        for (offset, c) in piece.text.char_indices() {
            for lower in c.to_lowercase() {
                chars.push(lower);
                places.push((piece.start + offset, piece.start + offset + c.len_utf8()));
            }
        }
    }
    (chars, places)
}

/// Every place `needle` occurs in `haystack` (both folded), naively: needles are few and
/// short, and this check must not share the engine's automaton.
fn occurrences(haystack: &[char], needle: &[char]) -> Vec<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return Vec::new();
    }
    (0..=haystack.len() - needle.len()).filter(|&i| haystack[i..i + needle.len()] == *needle).collect()
}

/// Month names and their usual abbreviations.
const MONTHS: [&str; 25] = [
    "jan",
    "january",
    "feb",
    "february",
    "mar",
    "march",
    "apr",
    "april",
    "may",
    "jun",
    "june",
    "jul",
    "july",
    "aug",
    "august",
    "sep",
    "sept",
    "september",
    "oct",
    "october",
    "nov",
    "november",
    "dec",
    "december",
    "sept",
];

/// A date of birth's numeric forms, as digits only (DDMMYYYY, MMDDYYYY, YYYYMMDD, DDMMYY,
/// with and without leading zeros).
fn birth_digit_forms(date: &str) -> Vec<String> {
    let parts: Vec<u32> = date.split('-').filter_map(|p| p.trim().parse().ok()).collect();
    let [year, month, day] = parts[..] else { return Vec::new() };
    let mut forms = Vec::new();
    for (d, m) in [(format!("{day:02}"), format!("{month:02}")), (day.to_string(), month.to_string())] {
        forms.push(format!("{d}{m}{year}"));
        forms.push(format!("{m}{d}{year}"));
        forms.push(format!("{year}{m}{d}"));
        forms.push(format!("{d}{m}{:02}", year % 100));
    }
    forms.sort();
    forms.dedup();
    forms
}

/// Checks `text` (an output of the engine) against what is known of its patient and the
/// high-recall patterns. Findings are sorted; an empty list means nothing was doubted.
pub fn check(text: &str, patient: Option<&Patient>) -> Vec<Finding> {
    let pieces = pieces(text);
    let mut findings = Vec::new();

    // High-recall patterns over the pieces.
    for (i, piece) in pieces.iter().enumerate() {
        if !piece.digits {
            let word = piece.text.to_lowercase();
            // A month name next to a number: "3 March", "Mar 2021".
            let month = MONTHS.contains(&word.as_str());
            let number_beside = |j: Option<usize>| j.and_then(|j| pieces.get(j)).is_some_and(|p| p.digits && p.text.len() <= 4);
            if month && (number_beside(i.checked_sub(1)) || number_beside(Some(i + 1))) {
                findings.push(Finding { start: piece.start, end: piece.end, reason: Reason::DateLike });
            }
            continue;
        }
        let count = piece.text.chars().count();
        if count >= 6 {
            findings.push(Finding { start: piece.start, end: piece.end, reason: Reason::DigitRun });
        }
        // d/m/y, y-m-d, d.m.y: three digit groups joined by one separator each.
        if let (Some(b), Some(c)) = (pieces.get(i + 1), pieces.get(i + 2)) {
            let sep1 = &text[piece.end..b.start];
            let sep2 = &text[b.end..c.start];
            if b.digits && c.digits && matches!(sep1, "/" | "-" | ".") && sep1 == sep2 && count <= 4 && b.text.len() <= 2 && c.text.len() <= 4 {
                findings.push(Finding { start: piece.start, end: c.end, reason: Reason::DateLike });
            }
        }
    }
    // Ten digits in groups (3-3-4 or run together) with a valid NHS check digit.
    let digit_pieces: Vec<&Piece<'_>> = pieces.iter().filter(|p| p.digits).collect();
    for window in 1..=3 {
        for group in digit_pieces.windows(window) {
            let joined: String = group.iter().map(|p| p.text).collect();
            let close = group.windows(2).all(|w| text[w[0].end..w[1].start].chars().all(|c| c == ' ' || c == '-'));
            if close && joined.len() == 10 && nhs_number_valid(&joined) {
                findings.push(Finding { start: group[0].start, end: group[group.len() - 1].end, reason: Reason::NhsNumber });
            }
        }
    }

    if let Some(patient) = patient {
        // Names: each word of each name, exactly or within one edit from five letters.
        let names: Vec<String> = patient
            .first_names
            .iter()
            .chain(&patient.surnames)
            .flat_map(|n| n.split(|c: char| !c.is_alphabetic()))
            .filter(|w| w.chars().count() >= 2)
            .map(str::to_lowercase)
            .collect();
        for piece in pieces.iter().filter(|p| !p.digits) {
            let word = piece.text.to_lowercase();
            for name in &names {
                if word == *name {
                    findings.push(Finding { start: piece.start, end: piece.end, reason: Reason::Name });
                } else if name.chars().count() >= 5 && within_one_edit(&word, name) {
                    findings.push(Finding { start: piece.start, end: piece.end, reason: Reason::NameVariant });
                }
            }
        }
        // Identifiers, phones, postcodes, dates of birth: as letters and digits.
        let (chars, places) = folded(&pieces);
        let mut values: Vec<(String, Reason)> = Vec::new();
        for value in patient.identifiers.iter().chain(&patient.phones).chain(&patient.postcodes) {
            let folded = letters_and_digits(value);
            if let Some(national) = folded.strip_prefix("44") {
                values.push((format!("0{national}"), Reason::Identifier));
            }
            values.push((folded, Reason::Identifier));
        }
        for date in &patient.dates_of_birth {
            values.extend(birth_digit_forms(date).into_iter().map(|f| (f, Reason::DateOfBirth)));
        }
        for (value, reason) in values {
            if value.chars().count() < 4 {
                continue;
            }
            let needle: Vec<char> = value.chars().collect();
            for at in occurrences(&chars, &needle) {
                findings.push(Finding { start: places[at].0, end: places[at + needle.len() - 1].1, reason });
            }
        }
    }
    findings.sort();
    findings.dedup();
    findings
}
