//! Surrogates: consistent within a patient, different across patients and keys, dates
//! shifted by one per-patient offset (intervals kept) in the form they were written,
//! ages of 90 and over as "90+", other categories as tags.

use chrono::NaiveDate;
use pixl_text::{
    Category, detect,
    surrogate::{DateOrder, Surrogates},
};

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

#[test]
fn names_map_to_the_same_surrogate_within_a_patient_only() {
    let s = Surrogates::new(KEY, "patient-1", DateOrder::DayFirst);
    let a = s.replace("Kowalczyk", Category::Name);
    assert_eq!(a, s.replace("Kowalczyk", Category::Name));
    assert_eq!(s.replace("KOWALCZYK", Category::Name), a.to_uppercase(), "case follows the original");
    assert_ne!(a, "Kowalczyk");
    let other = Surrogates::new(KEY, "patient-2", DateOrder::DayFirst);
    let other_key = Surrogates::new(b"another key another key another!", "patient-1", DateOrder::DayFirst);
    // Different patients or keys give (almost surely) different surrogates: try a few names.
    let names = ["Kowalczyk", "Adeyemi", "Okafor", "Nguyen", "Papadopoulos"];
    assert!(names.iter().any(|n| s.replace(n, Category::Name) != other.replace(n, Category::Name)));
    assert!(names.iter().any(|n| s.replace(n, Category::Name) != other_key.replace(n, Category::Name)));
}

#[test]
fn dates_shift_by_one_offset_per_patient_in_their_own_form() {
    let s = Surrogates::new(KEY, "patient-1", DateOrder::DayFirst);
    let shift = s.date_shift();
    assert!((1..=365).contains(&shift.num_days()));
    let expected = NaiveDate::from_ymd_opt(2021, 3, 3).unwrap() - shift;
    assert_eq!(s.replace("2021-03-03", Category::Date), expected.format("%Y-%m-%d").to_string());
    assert_eq!(s.replace("03/03/2021", Category::Date), expected.format("%d/%m/%Y").to_string());
    let later = NaiveDate::from_ymd_opt(2021, 4, 13).unwrap() - shift;
    assert_eq!(s.replace("13 April 2021", Category::Date), format!("{} {} {}", later.format("%-d"), later.format("%B"), later.format("%Y")));
    // The interval between two dates of a patient is kept.
    let a = NaiveDate::parse_from_str(&s.replace("2021-03-03", Category::Date), "%Y-%m-%d").unwrap();
    let b = NaiveDate::parse_from_str(&s.replace("2021-04-13", Category::Date), "%Y-%m-%d").unwrap();
    assert_eq!((b - a).num_days(), 41);
    // US order reads and writes month first.
    let us = Surrogates::new(KEY, "patient-1", DateOrder::MonthFirst);
    assert_eq!(us.replace("03/13/2021", Category::Date), (NaiveDate::from_ymd_opt(2021, 3, 13).unwrap() - shift).format("%m/%d/%Y").to_string());
    // What cannot be read is not guessed: it becomes a tag.
    assert_eq!(s.replace("the spring", Category::Date), "[DATE]");
}

#[test]
fn a_note_gets_surrogates_for_every_span() {
    let text = "Seen by Dr Kowalczyk on 03/03/2021, a 93 year old, NHS number 943 476 5919. Dr Kowalczyk will review.";
    let spans = detect(text).spans;
    let s = Surrogates::new(KEY, "patient-1", DateOrder::DayFirst);
    let out = s.apply(text, &spans);
    assert!(!out.contains("Kowalczyk") && !out.contains("03/03/2021") && !out.contains("943 476 5919"), "{out}");
    assert!(out.contains("a 90+ year old"), "{out}");
    assert!(out.contains("[ID]"), "{out}");
    let surrogate = s.replace("Kowalczyk", Category::Name);
    assert_eq!(out.matches(&surrogate).count(), 2, "the same name twice gets the same surrogate: {out}");
}
