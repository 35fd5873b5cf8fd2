//! The pattern detectors, data-driven: each positive must be masked whole (every
//! alphanumeric character inside a span of the expected category), in mixed case and in
//! ALL CAPS; each hard negative must be left alone. Then adversarial inputs (they must
//! finish: the engines are linear), the fail-closed limit and the outputs.

use pixl_text::{Category, MAX_TEXT_BYTES, Span, as_text, detect, mask_asterisks, mask_tags};

/// (sentence, the PHI in it, its category)
const POSITIVES: &[(&str, &str, Category)] = &[
    ("Scan on 2021-03-03T14:30 today.", "2021-03-03T14:30", Category::Date),
    ("Seen 03/04/2021 in clinic.", "03/04/2021", Category::Date),
    ("Follow-up 4.5.21 booked.", "4.5.21", Category::Date),
    ("Reviewed on 21/3 by the team.", "21/3", Category::Date),
    ("Admitted 3rd March 2021 with pain.", "3rd March 2021", Category::Date),
    ("Date of study: 03-Mar-21.", "03-Mar-21", Category::Date),
    ("Previous imaging from March 2021 is similar.", "March 2021", Category::Date),
    ("Right hip replacement in 2019, revised.", "2019", Category::Date),
    ("Compared with the scan of March 3rd, 2021.", "March 3rd, 2021", Category::Date),
    ("A 93 year old woman.", "93", Category::Age),
    ("A 91-year-old man.", "91", Category::Age),
    ("Patient aged 97 with falls.", "97", Category::Age),
    ("Age: 102, lives alone.", "102", Category::Age),
    ("Contact jane.smith@nhs.net for results.", "jane.smith@nhs.net", Category::Contact),
    ("See https://intranet.example.org/results?id=7 for details.", "https://intranet.example.org/results?id=7", Category::Contact),
    ("Logged from 10.20.30.40 overnight.", "10.20.30.40", Category::Contact),
    ("Call 020 7946 0123 ext 445 if worse.", "020 7946 0123 ext 445", Category::Contact),
    ("Call +44 (0) 20 7946 0123 now.", "20 7946 0123", Category::Contact),
    ("Phone (555) 123-4567 for the team.", "(555) 123-4567", Category::Contact),
    ("Bleep 4471 the registrar.", "4471", Category::Contact),
    ("NHS number 943 476 5919 confirmed.", "943 476 5919", Category::Id),
    ("SSN 123-45-6789 on file.", "123-45-6789", Category::Id),
    ("MRN 40012345 checked.", "40012345", Category::Id),
    ("Accession RRV1234567 reported.", "RRV1234567", Category::Id),
    ("Lives at NW1 2BU near the station.", "NW1 2BU", Category::Location),
    ("Moved to 94110 last year.", "94110", Category::Location),
    ("Address: 221B Baker Street, London.", "221B Baker Street", Category::Location),
];

/// Sentences whose numbers and words are not identifying.
const NEGATIVES: &[&str] = &[
    "Lesion measures 12 x 8 mm, unchanged.",
    "Gleason 3+4, BI-RADS 4.",
    "Disc protrusion at L4/5 and C5/6.",
    "Given 500 mg twice daily for 7 days.",
    "Fluid restriction of 1500 ml, 2000 mg of paracetamol at most.",
    "Scan performed at 14:30.",
    "A 45 year old man with cough.",
    "No acute abnormality.",
    "T2 weighted images, 3T scanner.",
];

fn masked_whole(text: &str, phi: &str, spans: &[Span]) -> Result<(), String> {
    let start = text.find(phi).ok_or("the PHI is not in the sentence")?;
    for (offset, c) in phi.char_indices() {
        if !c.is_alphanumeric() {
            continue;
        }
        let at = start + offset;
        if !spans.iter().any(|s| s.start <= at && at < s.end) {
            return Err(format!("{c:?} at {at} is not masked; spans {spans:?}"));
        }
    }
    Ok(())
}

#[test]
fn each_positive_is_masked_whole_in_mixed_case_and_all_caps() {
    for (sentence, phi, category) in POSITIVES {
        for (text, phi) in [(sentence.to_string(), phi.to_string()), (sentence.to_uppercase(), phi.to_uppercase())] {
            let found = detect(&text);
            assert!(!found.flagged);
            masked_whole(&text, &phi, &found.spans).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let start = text.find(&phi).unwrap();
            let covering = found.spans.iter().find(|s| s.start <= start && start < s.end).unwrap();
            // Overlapping detectors merge; the category is that of the first span, so a
            // date-like identifier may be reported as either. The masking is what counts.
            assert!(
                covering.category == *category || matches!((covering.category, category), (Category::Contact | Category::Id | Category::Location, _)),
                "{text:?}: {covering:?}, expected {category}"
            );
        }
    }
}

#[test]
fn hard_negatives_are_left_alone() {
    for sentence in NEGATIVES {
        for text in [sentence.to_string(), sentence.to_uppercase()] {
            let found = detect(&text);
            assert!(found.spans.is_empty(), "{text:?}: {:?}", found.spans.iter().map(|s| &text[s.start..s.end]).collect::<Vec<_>>());
        }
    }
    // An NHS-shaped number with a wrong check digit is not an NHS number (it is still a
    // long digit run, so it is masked as an identifier anyway).
    let text = "Ref 943 476 5918 noted.";
    let found = detect(text);
    assert!(found.spans.iter().all(|s| s.category != Category::Id || &text[s.start..s.end] != "943 476 5918"), "{:?}", found.spans);
}

#[test]
fn adversarial_inputs_finish_and_mask_what_they_hold() {
    let inputs = [
        "A ".repeat(512 * 1024),
        "AAAA ".repeat(200_000),
        "9".repeat(1_000_000),
        "-/.-/.".repeat(150_000),
        format!("{}@{}", "a.".repeat(200_000), "b.".repeat(200_000)),
        "1/".repeat(400_000),
    ];
    for input in &inputs {
        let found = detect(input);
        assert!(!found.flagged);
        for span in &found.spans {
            assert!(span.start < span.end && span.end <= input.len());
        }
    }
    // The long digit run is one identifier, masked whole.
    let digits = detect(&inputs[2]);
    assert_eq!(digits.spans.len(), 1);
    assert_eq!((digits.spans[0].start, digits.spans[0].end), (0, 1_000_000));
}

#[test]
fn over_the_limit_the_text_is_masked_whole_and_flagged() {
    let text = "No PHI here. ".repeat(MAX_TEXT_BYTES / 13 + 1);
    let found = detect(&text);
    assert!(found.flagged);
    assert_eq!(found.spans, vec![Span { start: 0, end: text.len(), category: Category::Other }]);
    assert!(mask_asterisks(&text, &found.spans).chars().all(|c| c == '*'));
}

#[test]
fn outputs_preserve_length_or_tag_and_utf8_is_checked() {
    let text = "Seen 03/04/2021 in the café, MRN 40012345.";
    let found = detect(text);
    let stars = mask_asterisks(text, &found.spans);
    assert_eq!(stars.chars().count(), text.chars().count());
    assert_eq!(stars, "Seen ********** in the café, MRN ********.");
    assert_eq!(mask_tags(text, &found.spans), "Seen [DATE] in the café, MRN [ID].");
    assert!(as_text("Ünal".as_bytes()).is_ok());
    let error = as_text(b"bad \xff byte").unwrap_err();
    assert_eq!(error.to_string(), "the text is not valid UTF-8 (first bad byte at offset 4); it is not guessed at");
}

#[test]
fn long_words_and_many_safe_patterns_stay_linear() {
    // One word of 2 MB (prefixes that could be stripped again and again), and 400,000
    // date-like scores each inside a safe pattern: both must finish, masked or kept right.
    let word = "re".repeat(1_000_000) + "view";
    let found = detect(&word);
    assert_eq!(found.spans.len(), 1, "a 2 MB word is masked");
    let scores = "pain 3/10 ".repeat(400_000);
    assert!(detect(&scores).spans.is_empty(), "scores are not dates");
}
