//! Consistent surrogates: each masked span replaced by a plausible value derived from the
//! project key, so that the same name gives the same fake name within a patient, dates move
//! by one offset per patient (intervals kept), and ages of 90 and over read "90+".
//!
//! The surrogate of a value depends only on (key, patient, value): two runs over the same
//! notes give the same output, and nothing without the key links a surrogate to its value.

use std::sync::LazyLock;

use chrono::{Datelike, Duration, NaiveDate};
use regex::{Regex, RegexBuilder};

use crate::{
    Category, Span,
    lexicon::{FIRST_NAMES, LEXICON, SURNAMES},
};

/// How an all-numeric date like 03/04/2021 is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DateOrder {
    /// 03/04/2021 is 3 April (UK, most of the world).
    #[default]
    DayFirst,
    /// 03/04/2021 is March 4 (US).
    MonthFirst,
}

/// The surrogates of one patient's notes.
pub struct Surrogates<'a> {
    key: &'a [u8],
    patient: &'a str,
    order: DateOrder,
}

impl std::fmt::Debug for Surrogates<'_> {
    /// Never shows the key or the patient.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Surrogates").field("order", &self.order).finish_non_exhaustive()
    }
}

const MONTHS: [&str; 12] = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"];

fn keyed(key: &[u8], parts: &[&str]) -> u64 {
    let mut state = blake2b_simd::Params::new().hash_length(8).key(&key[..key.len().min(64)]).personal(b"pixl-text-surr").to_state();
    for part in parts {
        state.update(&(part.len() as u64).to_le_bytes());
        state.update(part.as_bytes());
    }
    let hash = state.finalize();
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

/// Casing of the original, applied to the surrogate.
fn cased(like: &str, word: &str) -> String {
    let letters: Vec<char> = like.chars().filter(|c| c.is_alphabetic()).collect();
    if letters.len() > 1 && letters.iter().all(|c| c.is_uppercase()) {
        word.to_uppercase()
    } else if letters.first().is_some_and(|c| c.is_uppercase()) {
        let mut chars = word.chars();
        chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
    } else {
        word.to_owned()
    }
}

static NAME_PART: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[\p{L}]+").expect("compiles"));
static DIGITS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d+").expect("compiles"));
static NUMERIC_DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?P<a>\d{1,4})(?P<s1>[/.-])(?P<b>\d{1,2})(?:(?P<s2>[/.-])(?P<c>\d{2,4}))?(?P<rest>(?:[T ]\d{1,2}:\d{2}.*)?)$").expect("compiles")
});
static TEXT_DATE: LazyLock<Regex> = LazyLock::new(|| {
    RegexBuilder::new(r"^(?:(?P<d1>\d{1,2})(?:st|nd|rd|th)?(?:\s+of)?[\s-]+(?P<m1>[a-z]+)\.?(?:,?[\s-]+(?P<y1>\d{4}|\d{2}))?|(?P<m2>[a-z]+)\.?\s+(?:(?P<d2>\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(?P<y2>\d{4}))?|(?P<y3>\d{4})))$")
        .case_insensitive(true)
        .build()
        .expect("compiles")
});

fn month_of(word: &str) -> Option<u32> {
    let lower = word.to_lowercase();
    let stem = lower.trim_end_matches('.');
    if stem.len() < 3 {
        return None;
    }
    MONTHS.iter().position(|m| m.starts_with(stem)).map(|i| i as u32 + 1)
}

fn full_year(year: &str) -> Option<i32> {
    let value: i32 = year.parse().ok()?;
    Some(if year.len() == 2 { if value > 40 { 1900 + value } else { 2000 + value } } else { value })
}

impl<'a> Surrogates<'a> {
    pub fn new(key: &'a [u8], patient: &'a str, order: DateOrder) -> Self {
        Self { key, patient, order }
    }

    /// The patient's date shift: 1 to 365 days back.
    pub fn date_shift(&self) -> Duration {
        Duration::days(1 + (keyed(self.key, &["date-shift", self.patient]) % 365) as i64)
    }

    fn name(&self, word: &str) -> String {
        let lower = word.to_lowercase();
        if lower.chars().count() == 1 {
            let letter = (b'A' + (keyed(self.key, &["initial", self.patient, &lower]) % 26) as u8) as char;
            return cased(word, &letter.to_string());
        }
        let list: &[String] = if LEXICON.first_name(&lower) { &FIRST_NAMES } else { &SURNAMES };
        let pick = list.get((keyed(self.key, &["name", self.patient, &lower]) % list.len().max(1) as u64) as usize).map_or("name", String::as_str);
        cased(word, pick)
    }

    fn shift(&self, date: NaiveDate) -> NaiveDate {
        date.checked_sub_signed(self.date_shift()).unwrap_or(date)
    }

    /// A date shifted in the form it was written, or `None` when it cannot be read.
    fn date(&self, value: &str) -> Option<String> {
        if let Some(c) = NUMERIC_DATE.captures(value) {
            let (a, b) = (&c["a"], &c["b"]);
            let rest = c.name("rest").map_or("", |m| m.as_str());
            let s1 = &c["s1"];
            if a.len() == 4 {
                let day: u32 = c.name("c")?.as_str().parse().ok()?;
                let date = self.shift(NaiveDate::from_ymd_opt(a.parse().ok()?, b.parse().ok()?, day)?);
                let s2 = c.name("s2").map_or(s1, |m| m.as_str());
                return Some(format!("{:04}{s1}{:02}{s2}{:02}{rest}", date.year(), date.month(), date.day()));
            }
            let (day, month) = match self.order {
                DateOrder::DayFirst => (a, b),
                DateOrder::MonthFirst => (b, a),
            };
            let Some(year) = c.name("c") else {
                // Day and month only: shifted within a leap year, written the same way.
                let date = self.shift(NaiveDate::from_ymd_opt(2000, month.parse().ok()?, day.parse().ok()?)?);
                let (d, m) = (date.day(), date.month());
                return Some(match self.order {
                    DateOrder::DayFirst => format!("{d}{s1}{m}"),
                    DateOrder::MonthFirst => format!("{m}{s1}{d}"),
                });
            };
            let date = self.shift(NaiveDate::from_ymd_opt(full_year(year.as_str())?, month.parse().ok()?, day.parse().ok()?)?);
            let s2 = c.name("s2").map_or(s1, |m| m.as_str());
            let y = if year.as_str().len() == 2 { format!("{:02}", date.year() % 100) } else { date.year().to_string() };
            let (first, second) = match self.order {
                DateOrder::DayFirst => (date.day(), date.month()),
                DateOrder::MonthFirst => (date.month(), date.day()),
            };
            let width = a.len();
            return Some(format!("{first:0width$}{s1}{second:0width$}{s2}{y}{rest}"));
        }
        let c = TEXT_DATE.captures(value)?;
        let month_word = c.name("m1").or(c.name("m2"))?.as_str();
        let month = month_of(month_word)?;
        let long = month_word.len() > 3 && !month_word.ends_with('.');
        let name = |m: u32| {
            let full = MONTHS[m as usize - 1];
            cased(month_word, if long { full } else { &full[..3] })
        };
        if let Some(year) = c.name("y3") {
            // "March 2021": the middle of the month, shifted, names the month.
            let date = self.shift(NaiveDate::from_ymd_opt(full_year(year.as_str())?, month, 15)?);
            return Some(format!("{} {}", name(date.month()), date.year()));
        }
        let day: u32 = c.name("d1").or(c.name("d2"))?.as_str().parse().ok()?;
        let year_text = c.name("y1").or(c.name("y2")).map(|m| m.as_str());
        let year = year_text.map_or(Some(2000), full_year)?;
        let date = self.shift(NaiveDate::from_ymd_opt(year, month, day)?);
        let y = match year_text {
            None => String::new(),
            Some(t) if t.len() == 2 => format!(" {:02}", date.year() % 100),
            Some(_) => format!(" {}", date.year()),
        };
        Some(if c.name("d1").is_some() {
            format!("{} {}{y}", date.day(), name(date.month()))
        } else {
            format!("{} {}{}", name(date.month()), date.day(), y.replacen(' ', ", ", 1))
        })
    }

    /// The surrogate of one span of `text`.
    pub fn replace(&self, value: &str, category: Category) -> String {
        match category {
            Category::Name => NAME_PART.replace_all(value, |c: &regex::Captures| self.name(&c[0])).into_owned(),
            Category::Date => self.date(value.trim()).unwrap_or_else(|| "[DATE]".to_owned()),
            Category::Age => DIGITS.replace(value, "90+").into_owned(),
            other => format!("[{other}]"),
        }
    }

    /// `text` with every span replaced by its surrogate.
    pub fn apply(&self, text: &str, spans: &[Span]) -> String {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for span in spans {
            out.push_str(&text[at..span.start]);
            out.push_str(&self.replace(&text[span.start..span.end], span.category));
            at = span.end;
        }
        out.push_str(&text[at..]);
        out
    }
}
