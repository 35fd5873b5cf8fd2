//! No panic on any input: random text of letters, digits, punctuation, whitespace and
//! multi-byte characters (seeded, so a failure reproduces) through detection and every
//! output. Spans are sorted, disjoint, non-empty and on character boundaries.

use pixl_text::{
    Patient, Probes, detect_with, mask_asterisks, mask_tags,
    surrogate::{DateOrder, Surrogates},
    synth::Rng,
};

const PIECES: &[&str] = &[
    "Dr",
    "Mr",
    "Smith",
    "SMITH",
    "Rose",
    "will",
    "Will",
    ",",
    ".",
    ":",
    "/",
    "-",
    "'",
    "’",
    " ",
    "  ",
    "\n",
    "\t",
    "0",
    "12",
    "1999",
    "03/04",
    "2021-03-03",
    "T14:30",
    "@",
    "www.",
    "é",
    "ß",
    "İ",
    "ﬁ",
    "日本",
    "🙂",
    "\u{200b}",
    "\u{301}",
    "c/o",
    "by",
    "seen",
    "Hospital",
    "St",
    "NW1",
    "2BU",
    "943",
    "476",
    "5919",
    "+44",
    "(0)",
    "x",
    "ext",
    "aged",
    "93",
    "year",
    "old",
    "O'",
    "Al-",
    "MD",
    "FRCR",
    "cc:",
    "Baker's",
    "cyst",
    "L4/5",
    "3/7",
    "pain",
    "score",
];

#[test]
fn random_text_never_panics_and_spans_are_well_formed() {
    let mut rng = Rng::new(99);
    let surrogates = Surrogates::new(b"0123456789abcdef0123456789abcdef", "p", DateOrder::DayFirst);
    let patient = Patient {
        first_names: vec!["Rose".into(), "İlkay".into()],
        surnames: vec!["Smith".into(), "日本".into()],
        identifiers: vec!["943 476 5919".into()],
        dates_of_birth: vec!["1999-03-04".into()],
        phones: vec!["+44 20 7946 0123".into()],
        postcodes: vec!["NW1 2BU".into()],
    };
    let probes = Probes::new(&patient);
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..rng.below(60) {
            text.push_str(rng.pick(PIECES));
            if rng.chance(40) {
                text.push(' ');
            }
        }
        if rng.chance(30) {
            text = text.to_uppercase();
        }
        let found = detect_with(&text, Some(&probes));
        let mut end = 0;
        for span in &found.spans {
            assert!(span.start >= end && span.start < span.end && span.end <= text.len(), "{text:?}: {:?}", found.spans);
            assert!(text.is_char_boundary(span.start) && text.is_char_boundary(span.end), "{text:?}: {span:?}");
            end = span.end;
        }
        assert_eq!(mask_asterisks(&text, &found.spans).chars().count(), text.chars().count());
        let _ = mask_tags(&text, &found.spans);
        let _ = surrogates.apply(&text, &found.spans);
        for finding in pixl_text::check::check(&text, Some(&patient)) {
            assert!(text.is_char_boundary(finding.start) && text.is_char_boundary(finding.end) && finding.start < finding.end, "{text:?}: {finding:?}");
        }
    }
}
