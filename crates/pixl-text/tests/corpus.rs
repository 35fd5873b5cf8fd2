//! The engine on the synthetic corpus (2,000 notes of four kinds, seeded), in mixed case
//! and in ALL CAPS: the targets (entity recall >= 99.5%, token precision >= 85%)
//! must hold in both. The same figures are printed by `pixl deid-text eval`.

use pixl_text::{
    detect,
    eval::{Score, score},
    synth::{Case, corpus_in},
};

fn run(case: Case) -> Score {
    let (notes, _) = corpus_in(2026, 2000, case);
    let mut total = Score::default();
    for note in &notes {
        total.add(&score(&note.text, &note.spans, &detect(&note.text).spans).0);
    }
    total
}

#[test]
fn recall_and_precision_targets_hold_in_mixed_case_and_all_caps() {
    for case in [Case::Mixed, Case::Upper] {
        let s = run(case);
        let categories: Vec<String> = s.entities.iter().map(|(c, (x, y))| format!("{c} {x}/{y}")).collect();
        let figures = format!("{case:?}: entity recall {:.4}, token precision {:.4}; {}", s.entity_recall(), s.token_precision(), categories.join(", "));
        assert!(s.entity_recall() >= 0.995, "{figures}");
        assert!(s.token_precision() >= 0.85, "{figures}");
        // Every category the generator writes is there and scored.
        assert!(s.entities.len() >= 7, "{figures}");
    }
}

#[test]
fn the_corpus_is_reproducible_and_its_spans_are_exact() {
    let (a, patients) = corpus_in(7, 300, Case::Both);
    let (b, _) = corpus_in(7, 300, Case::Both);
    assert_eq!(a.len(), 300);
    assert!(!patients.is_empty());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.text, &x.spans), (&y.text, &y.spans));
        for span in &x.spans {
            let value = &x.text[span.start..span.end];
            assert!(!value.trim().is_empty() && value.trim() == value, "{:?} in {}", value, x.id);
        }
    }
    assert!(a.iter().any(|n| !n.text.chars().any(char::is_lowercase)), "some notes are in ALL CAPS");
    assert!(a.iter().any(|n| n.text.chars().any(char::is_lowercase)), "some notes are in mixed case");
}
