//! Scoring a de-identification against gold spans (`pixl deid-text eval`).
//!
//! - Entity recall, per category: a gold entity is caught only if every alphanumeric
//!   character of it is masked.
//! - Token recall and precision over `[A-Za-z0-9]+` tokens: a token is PHI when it overlaps
//!   a gold span, masked when any of its characters is masked; recall counts PHI tokens
//!   masked whole.
//! - Retention: the share of non-PHI tokens left as they were.

use std::{collections::BTreeMap, sync::LazyLock};

use regex::Regex;

use crate::{Category, Span};

static TOKEN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[A-Za-z0-9]+").expect("the token pattern compiles"));

/// Counts over any number of notes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Score {
    /// Per category: (entities caught, entities).
    pub entities: BTreeMap<Category, (u64, u64)>,
    pub phi_tokens: u64,
    pub phi_tokens_masked: u64,
    pub masked_tokens: u64,
    pub masked_tokens_phi: u64,
    pub other_tokens: u64,
    pub other_tokens_kept: u64,
}

/// One error, for the review file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Miss {
    /// `false negative` (gold entity not masked whole) or `false positive` (token masked, not PHI).
    pub kind: &'static str,
    pub start: usize,
    pub end: usize,
    pub category: Option<Category>,
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 1.0 } else { part as f64 / whole as f64 }
}

impl Score {
    pub fn add(&mut self, other: &Score) {
        for (category, (caught, all)) in &other.entities {
            let entry = self.entities.entry(*category).or_default();
            entry.0 += caught;
            entry.1 += all;
        }
        self.phi_tokens += other.phi_tokens;
        self.phi_tokens_masked += other.phi_tokens_masked;
        self.masked_tokens += other.masked_tokens;
        self.masked_tokens_phi += other.masked_tokens_phi;
        self.other_tokens += other.other_tokens;
        self.other_tokens_kept += other.other_tokens_kept;
    }
    pub fn entity_recall(&self) -> f64 {
        let (caught, all) = self.entities.values().fold((0, 0), |(c, a), (x, y)| (c + x, a + y));
        ratio(caught, all)
    }
    pub fn category_recall(&self, category: Category) -> Option<f64> {
        self.entities.get(&category).map(|(caught, all)| ratio(*caught, *all))
    }
    pub fn token_recall(&self) -> f64 {
        ratio(self.phi_tokens_masked, self.phi_tokens)
    }
    pub fn token_precision(&self) -> f64 {
        ratio(self.masked_tokens_phi, self.masked_tokens)
    }
    pub fn retention(&self) -> f64 {
        ratio(self.other_tokens_kept, self.other_tokens)
    }
}

/// Is byte `at` inside one of `merged` (sorted, disjoint)?
fn covered(merged: &[Span], at: usize) -> bool {
    let before = merged.partition_point(|s| s.start <= at);
    before > 0 && at < merged[before - 1].end
}

/// Scores one note: `predicted` against `gold` (both byte spans of `text`).
pub fn score(text: &str, gold: &[Span], predicted: &[Span]) -> (Score, Vec<Miss>) {
    let predicted = crate::merge(predicted.to_vec());
    let predicted = predicted.as_slice();
    let mut score = Score::default();
    let mut misses = Vec::new();
    for span in gold {
        let (start, end) = (span.start.min(text.len()), span.end.min(text.len()));
        let caught = text
            .get(start..end)
            // A gold span off the text's character boundaries cannot be checked: a miss.
            .is_some_and(|value| value.char_indices().filter(|(_, c)| c.is_alphanumeric()).all(|(offset, _)| covered(predicted, start + offset)));
        let entry = score.entities.entry(span.category).or_default();
        entry.1 += 1;
        if caught {
            entry.0 += 1;
        } else {
            misses.push(Miss { kind: "false negative", start, end, category: Some(span.category) });
        }
    }
    for token in TOKEN.find_iter(text) {
        let range = token.start()..token.end();
        let phi = gold.iter().any(|s| s.start < range.end && range.start < s.end);
        let any_masked = range.clone().any(|at| covered(predicted, at));
        let all_masked = range.clone().all(|at| covered(predicted, at));
        if phi {
            score.phi_tokens += 1;
            score.phi_tokens_masked += u64::from(all_masked);
        } else {
            score.other_tokens += 1;
            score.other_tokens_kept += u64::from(!any_masked);
            if any_masked {
                misses.push(Miss { kind: "false positive", start: range.start, end: range.end, category: None });
            }
        }
        if any_masked {
            score.masked_tokens += 1;
            score.masked_tokens_phi += u64::from(phi);
        }
    }
    (score, misses)
}
