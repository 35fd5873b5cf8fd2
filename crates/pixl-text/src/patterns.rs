//! The pattern detectors. Every regex is compiled once; all are run by the `regex` crate's
//! automata, whose time is linear in the input whatever it holds.

use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};

use crate::{Category, Span};

const MONTH: &str =
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)";

/// The UK's postcode areas.
const POSTCODE_AREAS: &str = "AB|AL|BA|BB|BD|BH|BL|BN|BR|BS|BT|B|CA|CB|CF|CH|CM|CO|CR|CT|CV|CW|DA|DD|DE|DG|DH|DL|DN|DT|DY|EC|EH|EN|EX|E|FK|FY|GL|GU|GY|G|HA|HD|HG|HP|HR|HS|HU|HX|IG|IM|IP|IV|JE|KA|KT|KW|KY|LA|LD|LE|LL|LN|LS|LU|L|ME|MK|ML|M|NE|NG|NN|NP|NR|NW|N|OL|OX|PA|PE|PH|PL|PO|PR|RG|RH|RM|SA|SE|SG|SK|SL|SM|SN|SO|SP|SR|SS|ST|SW|SY|S|TA|TD|TF|TN|TQ|TR|TS|TW|UB|WA|WC|WD|WF|WN|WR|WS|WV|W|YO|ZE";

/// Compiles a pattern case-insensitively, with ASCII digits and ASCII word boundaries:
/// Unicode's `\d` and `\b` make far larger automata (and the lazy DFA gives up on `\b` at
/// the first non-ASCII character), for digits clinical text writes in ASCII anyway.
fn build(pattern: &str) -> Regex {
    let ascii = pattern.replace(r"\d", "[0-9]").replace(r"\b", r"(?-u:\b)");
    RegexBuilder::new(&ascii).case_insensitive(true).build().expect("the built-in patterns compile")
}

struct Detector {
    category: Category,
    regex: Regex,
    /// Further check of a match (a checksum, a mix of letters and digits).
    accept: fn(&str) -> bool,
}

fn always(_: &str) -> bool {
    true
}

/// An NHS number's check digit (modulus 11 over the first nine digits, weights 10 to 2).
pub fn nhs_number_valid(candidate: &str) -> bool {
    let digits: Vec<u32> = candidate.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() != 10 {
        return false;
    }
    let sum: u32 = digits[..9].iter().zip((2..=10).rev()).map(|(d, w)| d * w).sum();
    match 11 - sum % 11 {
        11 => digits[9] == 0,
        10 => false,
        check => digits[9] == check,
    }
}

/// A code of six or more letters and digits with at least three digits and one letter
/// (accession numbers, hospital numbers like "RRV1234567"), not a plain word or number.
fn mixed_code(candidate: &str) -> bool {
    let digits = candidate.bytes().filter(u8::is_ascii_digit).count();
    digits >= 3 && candidate.bytes().any(|b| b.is_ascii_alphabetic())
}

/// A UK postcode starts with one of the postcode areas (checked here rather than as an
/// alternation in the pattern, which made it the slowest detector).
fn postcode_area(candidate: &str) -> bool {
    let area: String = candidate.chars().take_while(char::is_ascii_alphabetic).map(|c| c.to_ascii_uppercase()).collect();
    POSTCODE_AREAS.split('|').any(|a| a == area)
}

/// A year without a unit after it.
fn year_alone(candidate: &str) -> bool {
    candidate.len() == 4
}

/// A street address's words are not function words ("2019 at the St Thomas'" is a year and
/// a saint).
fn street_address(candidate: &str) -> bool {
    const NOT_STREET: &[&str] = &["at", "the", "in", "on", "to", "from", "of", "and", "for", "by", "with", "was", "is", "x", "mm", "cm", "mg", "ml"];
    !candidate.split_whitespace().skip(1).any(|w| NOT_STREET.iter().any(|n| w.eq_ignore_ascii_case(n)))
}

/// A date of day/month: day 1-31, month 1-12.
fn day_month(candidate: &str) -> bool {
    let mut parts = candidate.split('/').map(|p| p.parse::<u32>().unwrap_or(0));
    matches!((parts.next(), parts.next()), (Some(1..=31), Some(1..=12)))
}

static DETECTORS: LazyLock<Vec<Detector>> = LazyLock::new(|| {
    let d = |category, pattern: &str| Detector { category, regex: build(pattern), accept: always };
    let checked = |category, pattern: &str, accept: fn(&str) -> bool| Detector { category, regex: build(pattern), accept };
    vec![
        // Dates and date-times.
        d(Category::Date, r"\b\d{4}-\d{1,2}-\d{1,2}(?:T\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"),
        d(Category::Date, r"\b\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})\b"),
        d(Category::Date, r"\b\d{4}/\d{1,2}/\d{1,2}\b"),
        checked(Category::Date, r"\b\d{1,2}/\d{1,2}\b", day_month),
        d(Category::Date, &format!(r"\b\d{{1,2}}(?:st|nd|rd|th)?(?:\s+of)?[\s-]+{MONTH}\b\.?(?:,?[\s-]+(?:\d{{4}}|\d{{2}}))?\b")),
        d(Category::Date, &format!(r"\b{MONTH}\b\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b(?:,?\s+\d{{4}}\b)?")),
        d(Category::Date, &format!(r"\b{MONTH}\b\.?,?\s+\d{{4}}\b")),
        // A year alone ("in 2019"): i2b2 and Philter count it as a date element; not a
        // quantity with its unit ("2000 mg").
        checked(
            Category::Date,
            r"\b(?:19|20)\d{2}\b(?:\s*(?:mg|mcg|ug|g|kg|ml|l|units?|iu|cc|kcal|mmol|steps|hours|hrs|minutes|mins|cases|patients|x|mm|cm|m))?\b",
            year_alone,
        ),
        // Ages of 90 and over (younger ages are not identifying under HIPAA's rule).
        // The number alone is the span ("93" of "93-year-old"): it becomes "90+".
        d(Category::Age, r"\b(?P<v>9\d|1[0-4]\d)\s*-?\s*(?:years?|yrs?|y\.?o\.?|yo)\b"),
        d(Category::Age, r"\b(?:aged?|age\s*:)\s*(?P<v>9\d|1[0-4]\d)\b"),
        d(Category::Age, r"\b(?P<v>9\d|1[0-4]\d)\s*(?:m|f|male|female|man|woman|gentleman|lady)\b"),
        // Identifiers (before contact details: a valid NHS number is reported as an ID
        // rather than as the phone number it also looks like).
        checked(Category::Id, r"\b\d{3}[\s-]?\d{3}[\s-]?\d{4}\b", nhs_number_valid),
        d(Category::Id, r"\b\d{3}-\d{2}-\d{4}\b"),
        d(Category::Id, r"\b\d{6,}\b"),
        checked(Category::Id, r"\b[A-Za-z0-9]{6,}\b", mixed_code),
        // Contact details.
        d(Category::Contact, r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
        d(Category::Contact, r#"\b(?:https?://|www\.)[^\s<>"]+"#),
        d(Category::Contact, r"\b(?:\d{1,3}\.){3}\d{1,3}\b"),
        d(Category::Contact, r"(?:\+44\s?\(?0?\)?\s?|\b0)\d{2,4}[\s-]?\d{3,4}[\s-]?\d{3,4}\b(?:\s*(?:ext\.?|x)\s*\d{1,5}\b)?"),
        d(Category::Contact, r"(?:\+?1[\s.-]?)?(?:\(\d{3}\)|\b\d{3})[\s.-]?\d{3}[\s.-]\d{4}\b(?:\s*(?:ext\.?|x)\s*\d{1,5}\b)?"),
        d(Category::Contact, r"\b(?:bleep|pager|blp|ext(?:ension)?)\s*(?:no\.?|number|#)?\s*:?\s*(?P<v>\d{3,6})\b"),
        // Places.
        // UK postcodes: a postcode area, a district, and an inward code whose letters are
        // never C, I, K, M, O or V ("L4 5mm" is a level and a size, not a postcode).
        checked(Category::Location, r"\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[ABD-HJLNP-UW-Z]{2}\b", postcode_area),
        d(Category::Location, r"\b\d{5}(?:-\d{4})?\b"),
        checked(
            Category::Location,
            r"\b\d{1,5}[A-Za-z]?\s+(?:[A-Za-z'-]+\s+){1,3}(?:street|st|road|rd|avenue|ave|lane|ln|drive|close|way|court|ct|place|pl|boulevard|blvd|crescent|terrace|gardens|square|grove|mews|row|walk)\b\.?",
            street_address,
        ),
    ]
});

/// Safe patterns: numbers that look like a date but are a duration ("for 3/7": three days,
/// UK clinical shorthand), a score ("pain score 3/10", "GCS 15/15", "power 4/5") or a
/// vertebral level ("L4/5", "C5/6"). A date span wholly inside one is dropped; nothing else is.
static SAFE: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        r"\b(?:for|over|past|last|x|within|after)\s+\d{1,2}/(?:7|52|12)\b",
        r"\b\d{1,2}/(?:7|52|12)\s+(?:ago|history|hx|duration|post[\s-]?op)\b",
        r"\b(?:score|scores|gcs|power|grade|mrc|pain|scale|rated|ratio|strength|tone|reflexes|vas|nrs)\s*(?:of\s+)?:?\s*\d{1,2}\s*/\s*\d{1,2}\b",
        r"\b[CTLS]\d{1,2}\s*/\s*[CTLS]?\d{1,2}\b",
    ]
    .iter()
    .map(|p| build(p))
    .collect()
});

/// Every span a pattern detector finds in `text` (unsorted, possibly overlapping).
pub fn detect_patterns(text: &str) -> Vec<Span> {
    let mut spans = Vec::new();
    for detector in DETECTORS.iter() {
        if detector.regex.capture_names().flatten().any(|name| name == "v") {
            // The value is a group of the match ("93" of "93 year old"): needs captures.
            for found in detector.regex.captures_iter(text) {
                let whole = found.get(0).expect("group 0 is the match");
                if (detector.accept)(whole.as_str()) {
                    let value = found.name("v").unwrap_or(whole);
                    spans.push(Span { start: value.start(), end: value.end(), category: detector.category });
                }
            }
        } else {
            // The match is the value: the faster search without groups.
            for found in detector.regex.find_iter(text) {
                if (detector.accept)(found.as_str()) {
                    spans.push(Span { start: found.start(), end: found.end(), category: detector.category });
                }
            }
        }
    }
    if spans.iter().any(|s| s.category == Category::Date) {
        // Safe ranges sorted by start, with the furthest end reached so far: a date span
        // lies inside one if the furthest end among those starting at or before it covers it.
        let mut safe: Vec<(usize, usize)> = SAFE.iter().flat_map(|r| r.find_iter(text).map(|m| (m.start(), m.end()))).collect();
        safe.sort_unstable();
        let mut reach = Vec::with_capacity(safe.len());
        let mut furthest = 0;
        for (_, end) in &safe {
            furthest = furthest.max(*end);
            reach.push(furthest);
        }
        spans.retain(|s| {
            let before = safe.partition_point(|(start, _)| *start <= s.start);
            s.category != Category::Date || before == 0 || reach[before - 1] < s.end
        });
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_numbers_need_their_check_digit() {
        // 943 476 5919 is the NHS's own example of a valid number.
        assert!(nhs_number_valid("943 476 5919"));
        assert!(nhs_number_valid("9434765919"));
        assert!(!nhs_number_valid("943 476 5918"));
        assert!(!nhs_number_valid("12345"));
    }
}
