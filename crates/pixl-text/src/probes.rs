//! Known-PHI probes of one patient (names, MRN, NHS number, date of birth, phone,
//! postcode, from the cohort's private files), found in a text case- and
//! punctuation-insensitively with Aho-Corasick: the text is folded to its lowercase letters
//! and digits (a map keeps each folded byte's place in the original), so "SMITH, John",
//! "J. Smith", "943-476-5919" and "03/03/1961" match the probes built from the record. A
//! match must start and end on word boundaries of the original text.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use crate::{Category, Span};

/// What is known of one patient. Every field may be empty. Its `Debug` shows no value.
#[derive(Clone, Default)]
pub struct Patient {
    pub first_names: Vec<String>,
    pub surnames: Vec<String>,
    /// MRNs, NHS numbers, other identifiers.
    pub identifiers: Vec<String>,
    /// Dates of birth as `YYYY-MM-DD`.
    pub dates_of_birth: Vec<String>,
    pub phones: Vec<String>,
    pub postcodes: Vec<String>,
}

impl std::fmt::Debug for Patient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Patient").finish_non_exhaustive()
    }
}

const MONTHS: [&str; 12] = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"];

/// Lowercase letters and digits of `text`, with the original byte range of each.
fn fold(text: &str) -> (String, Vec<(usize, usize)>) {
    let mut folded = String::with_capacity(text.len());
    let mut places = Vec::with_capacity(text.len());
    for (at, c) in text.char_indices() {
        if !c.is_alphanumeric() {
            continue;
        }
        for lower in c.to_lowercase() {
            let before = folded.len();
            folded.push(lower);
            places.extend(std::iter::repeat_n((at, at + c.len_utf8()), folded.len() - before));
        }
    }
    (folded, places)
}

fn folded(value: &str) -> String {
    fold(value).0
}

/// The English ordinal suffix of a day: 1st, 2nd, 3rd, 11th.
pub(crate) fn ordinal(day: u32) -> &'static str {
    match (day % 10, day % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

/// The written forms of a date of birth, folded.
fn date_forms(date: &str) -> Vec<String> {
    let parts: Vec<u32> = date.split('-').filter_map(|p| p.trim().parse().ok()).collect();
    let [year, month, day] = parts[..] else { return Vec::new() };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Vec::new();
    }
    let short = year % 100;
    let name = MONTHS[month as usize - 1];
    let abbreviation = &name[..3];
    let mut forms = Vec::new();
    for (d, m) in [(format!("{day:02}"), format!("{month:02}")), (day.to_string(), month.to_string())] {
        forms.push(format!("{d}{m}{year}"));
        forms.push(format!("{d}{m}{short:02}"));
        forms.push(format!("{m}{d}{year}"));
        forms.push(format!("{year}{m}{d}"));
    }
    for month_name in [name, abbreviation] {
        for d in [day.to_string(), format!("{day:02}"), format!("{day}{}", ordinal(day))] {
            forms.push(format!("{d}{month_name}{year}"));
            forms.push(format!("{d}{month_name}{short:02}"));
            forms.push(format!("{month_name}{d}{year}"));
        }
    }
    forms
}

/// One patient's probes, ready to search texts.
/// Its `Debug` shows no probe (the automaton's would).
#[derive(Clone)]
pub struct Probes {
    matcher: Option<AhoCorasick>,
    categories: Vec<Category>,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes").field("probes", &self.categories.len()).finish_non_exhaustive()
    }
}

impl Probes {
    pub fn new(patient: &Patient) -> Self {
        let mut patterns: Vec<(String, Category)> = Vec::new();
        let mut add = |value: String, category| {
            // One or two characters would match everywhere (initials are only used with a surname).
            if value.chars().count() >= 3 || (category == Category::Name && value.chars().count() >= 2) {
                patterns.push((value, category));
            }
        };
        let firsts: Vec<String> = patient.first_names.iter().map(|n| folded(n)).filter(|n| !n.is_empty()).collect();
        let surnames: Vec<String> = patient.surnames.iter().map(|n| folded(n)).filter(|n| !n.is_empty()).collect();
        for name in firsts.iter().chain(&surnames) {
            add(name.clone(), Category::Name);
        }
        for surname in &surnames {
            for first in &firsts {
                let initial: String = first.chars().take(1).collect();
                for variant in [format!("{first}{surname}"), format!("{surname}{first}"), format!("{initial}{surname}"), format!("{surname}{initial}")] {
                    add(variant, Category::Name);
                }
            }
        }
        for value in &patient.identifiers {
            add(folded(value), Category::Id);
        }
        for value in &patient.dates_of_birth {
            for form in date_forms(value) {
                add(form, Category::Date);
            }
        }
        for value in &patient.phones {
            let digits = folded(value);
            if let Some(national) = digits.strip_prefix("44") {
                add(format!("0{national}"), Category::Contact);
                add(national.to_owned(), Category::Contact);
            } else if let Some(national) = digits.strip_prefix('0') {
                add(format!("44{national}"), Category::Contact);
                add(national.to_owned(), Category::Contact);
            }
            add(digits, Category::Contact);
        }
        for value in &patient.postcodes {
            add(folded(value), Category::Location);
        }
        patterns.sort();
        patterns.dedup_by(|a, b| a.0 == b.0);
        let matcher = (!patterns.is_empty()).then(|| {
            // Standard semantics, for overlapping matches: a longer probe that fails the word
            // boundaries ("smithjohn" in "Smith Johnson") must not hide a shorter one that
            // passes ("smith").
            // A patient's probes are built for a few texts: a contiguous NFA builds in a
            // fraction of a DFA's time and searches a report about as fast.
            AhoCorasickBuilder::new()
                .kind(Some(AhoCorasickKind::ContiguousNFA))
                .match_kind(MatchKind::Standard)
                .build(patterns.iter().map(|(p, _)| p.as_str()))
                .expect("probe patterns of bounded size build")
        });
        Self { matcher, categories: patterns.into_iter().map(|(_, c)| c).collect() }
    }

    /// Where the patient's probes occur in `text`, on word boundaries.
    pub fn find(&self, text: &str) -> Vec<Span> {
        let Some(matcher) = &self.matcher else { return Vec::new() };
        let (folded, places) = fold(text);
        let is_word = |at: usize| text[at..].chars().next().is_some_and(char::is_alphanumeric);
        let word_before = |at: usize| text[..at].chars().next_back().is_some_and(char::is_alphanumeric);
        let mut spans = Vec::new();
        for found in matcher.find_overlapping_iter(&folded) {
            let (start, end) = (places[found.start()].0, places[found.end() - 1].1);
            if word_before(start) || (end < text.len() && is_word(end)) {
                continue;
            }
            spans.push(Span { start, end, category: self.categories[found.pattern().as_usize()] });
        }
        spans
    }
}
