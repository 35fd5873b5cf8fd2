//! The second check (issue 14): on the engine's output it finds what the engine missed of
//! a patient (names exactly or within one edit, identifiers whatever their separators, the
//! date of birth in numeric forms) and what looks like a date, a long number or an NHS
//! number; on a clean output it finds nothing.

use pixl_text::{
    Patient, Probes,
    check::{Reason, check},
    detect_with, mask_asterisks,
};

fn patient() -> Patient {
    Patient {
        first_names: vec!["Agnieszka".into()],
        surnames: vec!["Kowalczyk".into()],
        identifiers: vec!["RRV1234567".into(), "943 476 5919".into()],
        dates_of_birth: vec!["1961-03-04".into()],
        phones: vec!["+44 20 7946 0123".into()],
        postcodes: vec!["NW1 2BU".into()],
    }
}

fn reasons(text: &str, patient: Option<&Patient>) -> Vec<Reason> {
    check(text, patient).into_iter().map(|f| f.reason).collect()
}

#[test]
fn the_engines_output_of_a_note_with_its_probes_passes() {
    let note = "KOWALCZYK, Agnieszka (RRV1234567, NHS 943 476 5919), born 04/03/1961, of NW1 2BU, \
                tel 020 7946 0123. Seen by Dr Okafor on 3 March 2021: a 12 x 8 mm nodule, pain 3/10, L4/5.";
    let patient = patient();
    let masked = mask_asterisks(note, &detect_with(note, Some(&Probes::new(&patient))).spans);
    assert!(check(&masked, Some(&patient)).is_empty(), "{masked}: {:?}", check(&masked, Some(&patient)));
    // The same note, not de-identified, is flagged for every kind of value.
    let found = reasons(note, Some(&patient));
    for reason in [Reason::Name, Reason::Identifier, Reason::DateOfBirth, Reason::DateLike, Reason::NhsNumber, Reason::DigitRun] {
        assert!(found.contains(&reason), "{reason:?} in {found:?}");
    }
}

#[test]
fn a_misspelt_name_and_reformatted_identifiers_are_still_found() {
    let patient = patient();
    let cases: &[(&str, Reason)] = &[
        ("Discussed with Mrs Kowalcyzk today.", Reason::NameVariant),
        ("Discussed with Mrs Kowalzcyk today.", Reason::NameVariant),
        ("AGNIESZKA came alone.", Reason::Name),
        ("Hospital number rrv-123-4567 on the request.", Reason::Identifier),
        ("Call 0207 946 0123 after five.", Reason::Identifier),
        ("Lives at nw12bu.", Reason::Identifier),
        ("DOB 4.3.61 on the form.", Reason::DateOfBirth),
        ("Born 1961/03/04.", Reason::DateOfBirth),
    ];
    for (text, reason) in cases {
        let found = reasons(text, Some(&patient));
        assert!(found.contains(reason), "{text}: {found:?}");
    }
}

#[test]
fn high_recall_patterns_need_no_probes_and_spare_clinical_numbers() {
    for (text, reason) in [
        ("Seen 12/11/2019 in clinic.", Reason::DateLike),
        ("Next review 2024-06-01.", Reason::DateLike),
        ("Admitted 3 Mar with pain.", Reason::DateLike),
        ("Reference 48210933 on file.", Reason::DigitRun),
        ("Number 401 023 2137 given.", Reason::NhsNumber),
    ] {
        assert!(reasons(text, None).contains(&reason), "{text}: {:?}", reasons(text, None));
    }
    for text in [
        "A 12 x 8 mm nodule; pain 3/10; L4/5; GCS 15/15; BP 128/76; 500 mg twice daily.",
        "Decreased marked improvement; it may be so; the march of time.",
        "Everything masked: ********** on ********, [NAME] [DATE].",
    ] {
        assert!(check(text, None).is_empty(), "{text}: {:?}", check(text, None));
    }
}

#[test]
fn findings_are_sorted_and_on_character_boundaries() {
    let text = "Ünal 12/11/2019 Kowalczyk 9434765919 é 1234567";
    let findings = check(text, Some(&patient()));
    assert!(findings.windows(2).all(|w| w[0] <= w[1]));
    for f in &findings {
        assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end) && f.start < f.end);
    }
}
