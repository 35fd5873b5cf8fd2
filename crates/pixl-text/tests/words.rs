//! The safelist layer and the whole engine, data-driven per category: names of many
//! origins, names that are also words with the cues that reveal them, organisations and
//! places; hard negatives (eponyms, medical vocabulary, measurements, words that are also
//! names used as words) must be left alone. Every case runs in mixed case and in ALL CAPS
//! unless marked as needing capitals.

use pixl_text::{Category, Span, detect};

/// (sentence, the PHI in it, its category)
const POSITIVES: &[(&str, &str, Category)] = &[
    ("Patient seen with Oluwaseun Adeyemi today.", "Oluwaseun Adeyemi", Category::Name),
    ("Discussed with Siobhan O'Connor on the ward.", "Siobhan O'Connor", Category::Name),
    ("Referred by Mohammed Al-Sayed for review.", "Mohammed Al-Sayed", Category::Name),
    ("Seen by Dr Rose Baker in clinic.", "Rose Baker", Category::Name),
    ("Reported by: J. Hope, FRCR", "J. Hope", Category::Name),
    ("Dictated by Will Young yesterday.", "Will Young", Category::Name),
    ("Electronically signed by Grace Hall, MD on the day.", "Grace Hall", Category::Name),
    ("KOWALCZYK, Anna was reviewed on the ward.", "KOWALCZYK, Anna", Category::Name),
    ("Name: Mark Green", "Mark Green", Category::Name),
    ("Dear Mrs Patel, thank you.", "Patel", Category::Name),
    ("Mr Baker attended alone.", "Baker", Category::Name),
    ("Came with her daughter Hope and stayed.", "Hope", Category::Name),
    ("Discussed with his wife, Maria, who agrees.", "Maria", Category::Name),
    ("cc: Amelia Stone, Specialist Nurse", "Amelia Stone", Category::Name),
    ("Letter c/o Priya Shah at home.", "Priya Shah", Category::Name),
    ("Referred from the Whittington Hospital for imaging.", "Whittington Hospital", Category::Organisation),
    ("Previous scan at the Royal Free Hospital was normal.", "Royal Free Hospital", Category::Organisation),
    ("Transferred from St Thomas' Hospital overnight.", "St Thomas' Hospital", Category::Organisation),
    ("Registered with Riverside Medical Practice since birth.", "Riverside Medical Practice", Category::Organisation),
    ("Lives in Tottenham with family.", "Tottenham", Category::Location),
    ("Address: 14 Elm Grove, Harrow HA1 3UJ.", "Harrow", Category::Location),
    ("Husband is Zhang Wei.", "Zhang Wei", Category::Name),
];

/// Sentences with nothing identifying in them.
const NEGATIVES: &[&str] = &[
    "Baker's cyst in the popliteal fossa measuring 3.2 cm.",
    "Known Parkinson's disease and Crohn's disease.",
    "Healing Colles fracture of the left distal radius.",
    "Periventricular white matter hyperintensities in keeping with small vessel disease.",
    "No acute intracranial haemorrhage or hydrocephalus.",
    "Appearances may represent early consolidation; a follow-up radiograph will confirm resolution.",
    "Hope this helps. Will need review in six weeks.",
    "Mark improvement in the right lower lobe.",
    "Continue metformin 500 mg twice daily and ramipril 5 mg once daily.",
    "GCS 15/15, pain score 3/10, power 4/5 in the left arm.",
    "Shortness of breath for 3/7.",
    "Disc protrusion at L4/5 with mild foraminal stenosis.",
    "BI-RADS 4 lesion, Gleason 3+4, PI-RADS 5.",
    "Returned to the ward at 14:30 with a nasogastric tube.",
    "The patient may go home tomorrow if stable.",
    "Hepatosplenomegaly with cholelithiasis and mild hydronephrosis.",
    "The ECG shows sinus rhythm; LVEF 55% on TTE.",
    "Spiculated nodule; mediastinal nodes not enlarged. Started on Lasix; will diurese.",
];

fn masked(text: &str, phi: &str, spans: &[Span], category: Category) -> Result<(), String> {
    let start = text.find(phi).ok_or("the PHI is not in the sentence")?;
    for (offset, c) in phi.char_indices().filter(|(_, c)| c.is_alphanumeric()) {
        let at = start + offset;
        let span = spans.iter().find(|s| s.start <= at && at < s.end).ok_or_else(|| format!("{c:?} at {at} is not masked; spans {spans:?}"))?;
        if span.category != category && !(category == Category::Organisation && span.category == Category::Name) {
            return Err(format!("{c:?} at {at} is masked as {} not {category}", span.category));
        }
    }
    Ok(())
}

#[test]
fn names_places_and_organisations_are_masked_in_mixed_case_and_all_caps() {
    let mut failures = Vec::new();
    for (sentence, phi, category) in POSITIVES {
        for (text, value) in [(sentence.to_string(), phi.to_string()), (sentence.to_uppercase(), phi.to_uppercase())] {
            if let Err(why) = masked(&text, &value, &detect(&text).spans, *category) {
                failures.push(format!("{text:?}: {value:?}: {why}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} misses:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn hard_negatives_are_left_alone_in_mixed_case_and_all_caps() {
    let mut failures = Vec::new();
    for sentence in NEGATIVES {
        for text in [sentence.to_string(), sentence.to_uppercase()] {
            let spans = detect(&text).spans;
            if !spans.is_empty() {
                let found: Vec<&str> = spans.iter().map(|s| &text[s.start..s.end]).collect();
                failures.push(format!("{text:?}: masked {found:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} false positives:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn an_unknown_word_is_masked_whatever_its_case() {
    // Not a word, not in any list: the safelist masks it without a cue.
    for text in ["the qwzxplorth sign", "THE QWZXPLORTH SIGN", "The Qwzxplorth sign"] {
        let spans = detect(text).spans;
        assert_eq!(spans.len(), 1, "{text}: {spans:?}");
        assert_eq!(&text[spans[0].start..spans[0].end].to_lowercase(), "qwzxplorth");
    }
}
