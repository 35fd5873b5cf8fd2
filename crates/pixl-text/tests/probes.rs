//! A patient's known PHI found in free text however it is written: case, punctuation,
//! initials, "SURNAME, First", dates of birth in any common form, phone numbers with or
//! without the country code; and not inside other words.

use pixl_text::{Category, Patient, Probes, detect_with, mask_tags};

fn patient() -> Patient {
    Patient {
        first_names: vec!["John".into()],
        surnames: vec!["Smith".into()],
        identifiers: vec!["40012345".into(), "943 476 5919".into()],
        dates_of_birth: vec!["1961-03-03".into()],
        phones: vec!["020 7946 0123".into()],
        postcodes: vec!["NW1 2BU".into()],
    }
}

#[test]
fn probes_are_found_however_they_are_written() {
    let probes = Probes::new(&patient());
    let cases = [
        ("Seen by SMITH, John today.", "SMITH, John", Category::Name),
        ("Letter to J. Smith.", "J. Smith", Category::Name),
        ("john smith attended.", "john smith", Category::Name),
        ("Mr Smith was reviewed.", "Smith", Category::Name),
        ("Hospital no. 40-012-345 recorded.", "40-012-345", Category::Id),
        ("NHS 9434765919.", "9434765919", Category::Id),
        ("DOB 3/3/1961.", "3/3/1961", Category::Date),
        ("Born 3rd March 1961.", "3rd March 1961", Category::Date),
        ("Born 03-Mar-61.", "03-Mar-61", Category::Date),
        ("Tel +44 20 7946 0123.", "44 20 7946 0123", Category::Contact),
        ("Lives at nw1 2bu.", "nw1 2bu", Category::Location),
    ];
    for (text, phi, category) in cases {
        let spans = probes.find(text);
        let start = text.find(phi).unwrap();
        let end = start + phi.len();
        assert!(spans.iter().any(|s| s.start <= start && end <= s.end && s.category == category), "{text:?}: {spans:?}");
    }
}

#[test]
fn probes_do_not_match_inside_other_words_and_a_longer_miss_hides_nothing() {
    let probes = Probes::new(&patient());
    assert!(probes.find("The blacksmithing course; Johnson's sign.").is_empty());
    // "smithjohn" fails its boundary in "Smith Johnson", "smith" still matches.
    let text = "Smith Johnson";
    let spans = probes.find(text);
    assert_eq!(spans.iter().map(|s| &text[s.start..s.end]).collect::<Vec<_>>(), ["Smith"]);
    // With the pattern detectors: every probe and pattern masked together.
    let found = detect_with("SMITH, John (MRN 40012345) seen 3rd March 2021.", Some(&probes));
    assert_eq!(mask_tags("SMITH, John (MRN 40012345) seen 3rd March 2021.", &found.spans), "[NAME] (MRN [ID]) seen [DATE].");
    // An empty record finds nothing.
    assert!(Probes::new(&Patient::default()).find("John Smith").is_empty());
}
