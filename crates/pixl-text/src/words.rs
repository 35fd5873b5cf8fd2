//! The safelist layer: every alphabetic token that no safe filter explains is PHI.
//!
//! A token is safe when it is an English word (SCOWL, lowercase entries only, so without
//! proper nouns) or medical vocabulary, directly or by its inflection, prefix or clinical
//! suffix. A token in neither is masked as a NAME (LOCATION when it is a known place). A
//! word that is also a name ("Rose", "Hope", "Baker", "Will") is *ambiguous*: it is masked
//! only when a context cue says it is a name here (a title before it, "seen by", a
//! credential after it, a name beside it). Nothing depends on capitalisation alone: in ALL
//! CAPS text the same lists and cues decide; in mixed case, capitals add evidence to the
//! weakest rule only (two ambiguous words read as first name and surname).

use std::sync::LazyLock;

use regex::Regex;

use crate::{Category, Span, lexicon::LEXICON};

/// Words, with inner apostrophes and hyphens ("O'Brien", "Smith-Jones", "well-defined").
static TOKEN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[\p{L}\p{N}]+(?:['’][\p{L}]+|-[\p{L}\p{N}]+)*").expect("the token pattern compiles"));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Holds a digit: the pattern detectors judge it.
    Number,
    /// One letter.
    Initial,
    Safe,
    /// Medical vocabulary: safe, and never made a name by a neighbour.
    Medical,
    /// An English word that is also a first name or surname.
    Ambiguous,
    /// An upper-case short token in mixed-case text (an abbreviation), not a known name.
    Abbreviation,
    /// Explained by nothing: PHI.
    Unknown,
}

#[derive(Debug)]
struct Token {
    start: usize,
    end: usize,
    kind: Kind,
    lower: String,
    first: bool,
    last: bool,
    place: bool,
    capitalised: bool,
    /// A function word that is also a name ("Will", "May"): a name only after a title, or
    /// capitalised inside a mixed-case sentence beside a name.
    function: bool,
}

/// Words that are names in the census lists but are never read as names without a title.
const FUNCTION_WORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been", "before", "being", "below", "between",
    "both", "but", "by", "can", "could", "did", "do", "does", "down", "during", "each", "either", "even", "ever", "every", "few", "for", "from", "further",
    "had", "has", "have", "he", "her", "here", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "just", "last", "left", "less", "may", "me",
    "might", "more", "most", "much", "must", "my", "near", "new", "next", "no", "nor", "not", "now", "of", "off", "old", "on", "once", "only", "or", "other",
    "our", "out", "over", "own", "per", "right", "same", "see", "seen", "she", "should", "since", "so", "some", "still", "such", "than", "that", "the",
    "their", "them", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "upon", "us", "very", "via", "was",
    "we", "well", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "within", "without", "would", "yet", "you", "your",
];

/// Words before a name.
const TITLES: &[&str] =
    &["dr", "doctor", "mr", "mrs", "ms", "miss", "mx", "prof", "professor", "dear", "sister", "matron", "sir", "dame", "lady", "lord", "rev", "revd", "father"];

/// Relations before a name ("her daughter Hope"): only a word that may be a name follows.
const RELATIONS: &[&str] = &[
    "daughter",
    "son",
    "wife",
    "husband",
    "mother",
    "father",
    "brother",
    "sister",
    "partner",
    "friend",
    "carer",
    "niece",
    "nephew",
    "granddaughter",
    "grandson",
    "neighbour",
    "neighbor",
];

/// "<verb> by" before a name.
const BY_VERBS: &[&str] = &[
    "seen",
    "reported",
    "dictated",
    "signed",
    "verified",
    "referred",
    "reviewed",
    "typed",
    "authorised",
    "authorized",
    "examined",
    "discussed",
    "performed",
    "transcribed",
    "checked",
    "approved",
    "requested",
    "assessed",
    "written",
    "countersigned",
    "supervised",
];

/// Labels that, followed by a colon, are followed by a name.
const LABELS: &[&str] = &[
    "re",
    "name",
    "patient",
    "surname",
    "forename",
    "forenames",
    "consultant",
    "gp",
    "radiologist",
    "reporter",
    "clinician",
    "nok",
    "kin",
    "cc",
    "attn",
    "author",
    "physician",
    "referrer",
    "sonographer",
    "radiographer",
    "signed",
    "doctor",
    "nurse",
    "registrar",
    "to",
    "from",
];

/// Credentials after a name.
const CREDENTIALS: &[&str] = &[
    "md", "mbbs", "mbchb", "frcr", "frcs", "frcp", "fracp", "mrcp", "mrcs", "frcpath", "frcog", "frcpch", "frcpsych", "facr", "phd", "rn", "rgn", "dnp", "np",
    "pa-c", "mbbch",
];

/// Nouns after an eponym that make it a disease, sign or structure rather than a person.
const CLINICAL_NOUNS: &[&str] = &[
    "disease",
    "syndrome",
    "sign",
    "signs",
    "fracture",
    "fractures",
    "cyst",
    "cysts",
    "lesion",
    "lesions",
    "palsy",
    "test",
    "tests",
    "score",
    "scale",
    "sarcoma",
    "lymphoma",
    "tumour",
    "tumor",
    "node",
    "nodes",
    "nodule",
    "nodules",
    "triad",
    "phenomenon",
    "reflex",
    "manoeuvre",
    "maneuver",
    "criteria",
    "classification",
    "grade",
    "type",
    "deformity",
    "contracture",
    "neuroma",
    "diverticulum",
    "oesophagus",
    "esophagus",
    "ulcer",
    "ulcers",
    "hernia",
    "point",
    "incision",
    "position",
    "procedure",
    "operation",
    "repair",
    "ligament",
    "space",
    "canal",
    "duct",
    "ducts",
    "foramen",
    "body",
    "bodies",
    "cells",
    "gland",
    "glands",
    "area",
    "line",
    "lines",
    "esophagitis",
    "thyroiditis",
    "encephalopathy",
    "malformation",
    "anomaly",
    "tetralogy",
    "aneurysm",
    "infection",
    "arthritis",
    "angle",
    "classification",
];

/// Words after a name that make it an organisation.
const ORGANISATION_NOUNS: &[&str] =
    &["hospital", "hospitals", "infirmary", "clinic", "practice", "surgery", "centre", "center", "trust", "hospice", "sanatorium", "medical"];

/// Prefixes of medical and English words ("periventricular", "nonenhancing").
const PREFIXES: &[&str] = &[
    "hyper", "hypo", "peri", "para", "sub", "post", "pre", "non", "intra", "extra", "inter", "trans", "retro", "supra", "infra", "micro", "macro", "multi",
    "poly", "pan", "anti", "un", "co", "bi", "semi", "pseudo", "neo", "endo", "epi", "mid", "over", "under", "re", "de", "dis", "mis", "hemi", "ultra",
    "cardio", "neuro", "gastro", "osteo",
];

/// Clinical suffixes of long words ("cholangiocarcinoma", "hepatosplenomegaly").
const SUFFIXES: &[&str] = &[
    "itis", "osis", "iasis", "ectomy", "ectomies", "otomy", "ostomy", "plasty", "megaly", "aemia", "emia", "algia", "pathy", "pathies", "ography", "ogram",
    "oscopy", "plegia", "paresis", "trophy", "genic", "lytic", "oma", "omas", "omata", "ocele", "rrhage", "rrhoea", "rrhea", "ectasis", "ectasia", "ology",
    "ologist", "plasia", "plastic", "oscopic",
];

fn strip_possessive(word: &str) -> &str {
    word.strip_suffix("'s").or_else(|| word.strip_suffix("’s")).or_else(|| word.strip_suffix("s'")).unwrap_or(word)
}

fn listed(word: &str) -> bool {
    LEXICON.english(word) || LEXICON.medical(word)
}

/// Words longer than this are not looked up (no English or medical word is; a name or a
/// run of letters is masked), so work per token stays bounded.
const LONGEST_WORD: usize = 48;

/// A word known through an inflection, prefix, suffix or its hyphenated parts.
fn known_by_form(word: &str) -> bool {
    known_within(word, 2)
}

/// `known_by_form`, stripping at most `prefixes` more prefixes (bounded work per token).
fn known_within(word: &str, prefixes: usize) -> bool {
    if word.len() > LONGEST_WORD {
        return false;
    }
    if listed(word) {
        return true;
    }
    if word.contains('-') {
        // "x-ray", "well-defined", "T-cell"; but not "Ji-ho" (two-letter parts say little).
        return word.split('-').all(|part| {
            part.bytes().all(|b| b.is_ascii_digit())
                || part.chars().count() == 1
                || LEXICON.medical(part)
                || (part.len() == 2 && LEXICON.english(part))
                || (part.len() >= 3 && !part.contains('-') && known_within(part, prefixes))
        });
    }
    let inflections = [
        word.strip_suffix('s').map(str::to_owned),
        word.strip_suffix("es").map(str::to_owned),
        word.strip_suffix("ies").map(|w| format!("{w}y")),
        word.strip_suffix("ae").map(|w| format!("{w}a")),
        word.strip_suffix('i').map(|w| format!("{w}us")),
        word.strip_suffix("ly").map(str::to_owned),
    ];
    if inflections.iter().flatten().any(|w| w.len() >= 3 && listed(w)) {
        return true;
    }
    let length = word.chars().count();
    if length >= 8 && SUFFIXES.iter().any(|s| word.ends_with(s)) {
        return true;
    }
    prefixes > 0
        && PREFIXES
            .iter()
            .any(|p| word.strip_prefix(p).is_some_and(|rest| rest.len() >= 4 && (listed(rest) || (rest.len() >= 5 && known_within(rest, prefixes - 1)))))
}

fn classify(text: &str, start: usize, end: usize, mixed_case: bool) -> Token {
    let original = &text[start..end];
    if original.len() > LONGEST_WORD {
        // No word is this long: a name run together, a code or noise. Masked unless it
        // holds a digit (the pattern detectors judge those).
        let kind = if original.chars().any(char::is_numeric) { Kind::Number } else { Kind::Unknown };
        return Token { start, end, kind, lower: String::new(), first: false, last: false, place: false, capitalised: false, function: false };
    }
    let lower = fold_accents(&original.to_lowercase());
    let mut letters = original.chars().filter(|c| c.is_alphabetic());
    let capitalised = letters.next().is_some_and(char::is_uppercase);
    let has_digit = original.chars().any(char::is_numeric);
    let info = if has_digit { WordInfo::default() } else { word_info(&lower) };
    let WordInfo { medical, known, first, last, place, cue_word, function } = info;
    let kind = if has_digit {
        Kind::Number
    } else if cue_word && original.chars().count() > 1 {
        Kind::Safe
    } else if original.chars().count() == 1 {
        Kind::Initial
    } else if medical {
        Kind::Medical
    } else if known {
        if first || last { Kind::Ambiguous } else { Kind::Safe }
    } else if mixed_case && (2..=5).contains(&original.len()) && original.chars().all(|c| c.is_uppercase()) && !first && !last {
        Kind::Abbreviation
    } else {
        Kind::Unknown
    };
    Token { start, end, kind, lower, first, last, place, capitalised, function }
}

/// What the lists say of a word (lowercase, accents folded), whatever its case in the text.
#[derive(Debug, Clone, Copy, Default)]
struct WordInfo {
    medical: bool,
    /// English or medical, directly or by its form.
    known: bool,
    first: bool,
    last: bool,
    place: bool,
    cue_word: bool,
    function: bool,
}

/// Words seen per thread, at most this many (then the cache starts again): clinical text
/// repeats its vocabulary, so most tokens are one hash lookup instead of several set
/// lookups and word-form checks.
const WORD_CACHE: usize = 100_000;

thread_local! {
    static WORDS: std::cell::RefCell<std::collections::HashMap<String, WordInfo>> = std::cell::RefCell::new(std::collections::HashMap::new());
}

fn word_info(lower: &str) -> WordInfo {
    if let Some(info) = WORDS.with(|words| words.borrow().get(lower).copied()) {
        return info;
    }
    let base = strip_possessive(lower);
    let cue_word = [TITLES, RELATIONS, LABELS, CREDENTIALS, BY_VERBS].iter().any(|list| list.contains(&base));
    let medical = LEXICON.medical(base);
    let info = WordInfo {
        medical,
        known: medical || LEXICON.english(base) || known_by_form(base),
        first: LEXICON.first_name(base),
        last: LEXICON.surname(base),
        place: LEXICON.place(base),
        cue_word,
        function: cue_word || FUNCTION_WORDS.contains(&base),
    };
    WORDS.with(|words| {
        let mut words = words.borrow_mut();
        if words.len() >= WORD_CACHE {
            words.clear();
        }
        words.insert(lower.to_owned(), info);
    });
    info
}

/// Latin letters without their accents ("café" is looked up as "cafe"); other letters kept.
fn fold_accents(word: &str) -> String {
    word.chars()
        .map(|c| match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' => 'a',
            'ç' | 'č' | 'ć' => 'c',
            'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ę' | 'ě' => 'e',
            'ì' | 'í' | 'î' | 'ï' | 'ī' => 'i',
            'ñ' | 'ń' | 'ň' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' => 'o',
            'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' => 'u',
            'ý' | 'ÿ' => 'y',
            'š' | 'ś' => 's',
            'ž' | 'ź' | 'ż' => 'z',
            'ł' => 'l',
            'ř' => 'r',
            '’' => '\'',
            other => other,
        })
        .collect()
}

/// Is the text mostly upper case (then capitals say nothing)?
fn all_caps(text: &str) -> bool {
    let (mut upper, mut lower) = (0usize, 0usize);
    for c in text.chars() {
        if c.is_uppercase() {
            upper += 1;
        } else if c.is_lowercase() {
            lower += 1;
        }
    }
    upper > 4 * lower
}

/// What lies between two tokens, as far as name rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gap {
    /// Spaces only.
    Space,
    /// A full stop (after an initial or title) and spaces.
    Stop,
    /// A comma and spaces ("SMITH, John").
    Comma,
    /// A colon and spaces ("Name: John Smith").
    Colon,
    /// Anything else: a line break, other punctuation. Names do not run across it.
    Break,
}

fn gap(between: &str) -> Gap {
    let mut marks = between.chars().filter(|c| *c != ' ' && *c != '\t');
    match (marks.next(), marks.next()) {
        (None, _) => Gap::Space,
        (Some('.'), None) => Gap::Stop,
        (Some(','), None) => Gap::Comma,
        (Some(':'), None) => Gap::Colon,
        _ => Gap::Break,
    }
}

/// The safelist layer's spans of `text`. `found` are the spans other detectors found (a
/// postcode makes the town before it a place, a name found by a probe makes its neighbour
/// a name).
pub fn detect_words(text: &str, found: &[Span]) -> Vec<Span> {
    let mixed_case = !all_caps(text);
    let tokens: Vec<Token> = TOKEN.find_iter(text).map(|m| classify(text, m.start(), m.end(), mixed_case)).collect();
    let gaps: Vec<Gap> = tokens.windows(2).map(|w| gap(&text[w[0].end..w[1].start])).collect();
    let gap_after = |i: usize| gaps.get(i).copied().unwrap_or(Gap::Break);
    let mut masked: Vec<Option<Category>> = vec![None; tokens.len()];
    // What other detectors found, per token: evidence for the neighbour rules, not output.
    let context = overlaps(&tokens, found);
    let name_like = |t: &Token| matches!(t.kind, Kind::Initial | Kind::Ambiguous | Kind::Unknown | Kind::Abbreviation);
    let name_category = |t: &Token| if t.place { Category::Location } else { Category::Name };

    // Eponyms before a clinical noun or with a possessive are safe ("Baker's cyst").
    let eponym = |i: usize| {
        let t: &Token = &tokens[i];
        let base = strip_possessive(&t.lower);
        LEXICON.eponym(base)
            && (base.len() < t.lower.len()
                || tokens.get(i + 1).is_some_and(|n| CLINICAL_NOUNS.contains(&n.lower.as_str()) && matches!(gap_after(i), Gap::Space))
                || t.lower.contains('-') && t.lower.split('-').all(|p| LEXICON.eponym(p)))
    };
    let safe_eponym: Vec<bool> = (0..tokens.len()).map(eponym).collect();

    // 1. Tokens nothing explains.
    for (i, t) in tokens.iter().enumerate() {
        if t.kind == Kind::Unknown && !safe_eponym[i] {
            masked[i] = Some(name_category(t));
        }
    }

    // 2. Cues before a name: titles, "<verb> by", labels with a colon, "c/o".
    let mut cue_ends: Vec<usize> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let word = t.lower.as_str();
        let cue = TITLES.contains(&word) && matches!(gap_after(i), Gap::Space | Gap::Stop)
            || word == "by" && i > 0 && BY_VERBS.contains(&tokens[i - 1].lower.as_str()) && matches!(gap_after(i), Gap::Space | Gap::Colon)
            || LABELS.contains(&word) && gap_after(i) == Gap::Colon
            || word == "o" && i > 0 && tokens[i - 1].lower == "c" && text[tokens[i - 1].end..t.start].trim() == "/";
        if cue {
            cue_ends.push(i);
        }
    }
    for (i, t) in tokens.iter().enumerate() {
        // "her daughter Hope", "his wife, Maria, who": the name follows, or is set off by commas.
        if RELATIONS.contains(&t.lower.as_str()) && matches!(gap_after(i), Gap::Space | Gap::Comma) {
            let plausible = |n: &Token| !n.function || (mixed_case && n.capitalised);
            if tokens.get(i + 1).is_some_and(|n| matches!(n.kind, Kind::Ambiguous | Kind::Unknown) && plausible(n) && (n.first || n.kind == Kind::Unknown)) {
                masked[i + 1] = Some(Category::Name);
            }
        }
    }
    for cue in cue_ends {
        let mut j = cue + 1;
        // A function word that is a first name counts after a cue when a name follows it
        // ("dictated by Will Young", not "seen by the team").
        let first_name_here = |j: usize| {
            let t: &Token = &tokens[j];
            t.first && gap_after(j) == Gap::Space && tokens.get(j + 1).is_some_and(|n| name_like(n) && !n.function)
        };
        while j < tokens.len() && j <= cue + 4 && name_like(&tokens[j]) && (!tokens[j].function || first_name_here(j)) {
            masked[j] = Some(Category::Name);
            if !matches!(gap_after(j), Gap::Space | Gap::Stop | Gap::Comma) {
                break;
            }
            j += 1;
        }
    }

    // 3. Credentials after a name: "Jane Rose, MD", "J Hope FRCR".
    for (i, t) in tokens.iter().enumerate() {
        if i == 0 || !CREDENTIALS.contains(&t.lower.as_str()) || !matches!(gap_after(i - 1), Gap::Space | Gap::Comma) {
            continue;
        }
        let mut j = i;
        while j > 0 && j + 3 > i && name_like(&tokens[j - 1]) && matches!(gap_after(j - 1), Gap::Space | Gap::Comma | Gap::Stop) {
            j -= 1;
            masked[j] = Some(Category::Name);
        }
    }

    // 4. Names beside names: "Rose KOWALCZYK", "J. Smith", "SMITH, Rose", "Will Baker".
    let weak = |t: &Token| matches!(t.kind, Kind::Initial | Kind::Ambiguous | Kind::Abbreviation);
    for _ in 0..2 {
        for i in 0..tokens.len() {
            let t = &tokens[i];
            if masked[i].is_some() || !weak(t) || safe_eponym[i] {
                continue;
            }
            // A word that is nothing but a name: evidence that its neighbour is one.
            let strong_name = |j: usize| context[j] == Some(Category::Name) || (tokens[j].kind == Kind::Unknown && masked[j] == Some(Category::Name));
            if t.function {
                // "Will" or "A" before an unknown name ("Will Silva", "A ZHANG") is a first
                // name or an initial; elsewhere only a capital inside a sentence makes it one.
                let before_name = i + 1 < tokens.len()
                    && strong_name(i + 1)
                    && gap_after(i) == Gap::Space
                    && (t.first || t.kind == Kind::Initial)
                    && (t.capitalised || !mixed_case);
                // "son Will will call": a first name that is a function word, then the word itself.
                let doubled = t.first && tokens.get(i + 1).is_some_and(|n| n.lower == t.lower) && gap_after(i) == Gap::Space;
                if doubled {
                    masked[i] = Some(Category::Name);
                    continue;
                }
                // "ADEYEMI, WILL": a first name after a surname and a comma.
                let after_surname = i > 0
                    && (masked[i - 1] == Some(Category::Name) || context[i - 1] == Some(Category::Name))
                    && gap_after(i - 1) == Gap::Comma
                    && t.first
                    && (t.capitalised || !mixed_case);
                if !(before_name || after_surname || mixed_case && t.capitalised && !sentence_start(text, t.start)) {
                    continue;
                }
            }
            let is_name = |j: usize| masked[j] == Some(Category::Name) || context[j] == Some(Category::Name);
            let next_is_name = i + 1 < tokens.len() && is_name(i + 1) && matches!(gap_after(i), Gap::Space | Gap::Stop);
            let prev_is_name = i > 0 && is_name(i - 1);
            let before = if i > 0 { gap_after(i - 1) } else { Gap::Break };
            let as_first = (t.first || t.kind == Kind::Initial) && next_is_name;
            // A surname after a name: in mixed case it is capitalised ("Waterlow score" is not).
            let as_last = prev_is_name && before == Gap::Space && (t.last || t.kind == Kind::Abbreviation) && (!mixed_case || t.capitalised);
            let reversed = prev_is_name && before == Gap::Comma && (t.first || t.kind == Kind::Initial);
            let abbreviation = t.kind == Kind::Abbreviation && (next_is_name && matches!(gap_after(i), Gap::Comma | Gap::Space));
            // "BAKER, Layla": a surname before a comma and a first name.
            let surname_first = (t.last || t.kind == Kind::Abbreviation)
                && i + 1 < tokens.len()
                && gap_after(i) == Gap::Comma
                && (strong_name(i + 1)
                    || is_name(i + 1) && tokens[i + 1].first
                    || mixed_case && upper_word(text, t) && tokens[i + 1].first && tokens[i + 1].capitalised);
            if surname_first && !is_name(i + 1) {
                masked[i + 1] = Some(Category::Name);
            }
            if as_first || as_last || reversed || abbreviation || surname_first {
                masked[i] = Some(Category::Name);
            }
        }
    }

    // 5. Two ambiguous words as first name and surname, with capitals as evidence in mixed case.
    for i in 0..tokens.len().saturating_sub(1) {
        let (a, b) = (&tokens[i], &tokens[i + 1]);
        let plausible = |t: &Token| !t.function || (mixed_case && t.capitalised);
        if a.kind == Kind::Ambiguous
            && b.kind == Kind::Ambiguous
            && plausible(a)
            && plausible(b)
            && a.first
            && b.last
            && gap_after(i) == Gap::Space
            // A capital at a sentence's start says nothing, but the surname's own capital does.
            && (!mixed_case || (a.capitalised && b.capitalised))
        {
            masked[i] = Some(Category::Name);
            masked[i + 1] = Some(Category::Name);
        }
    }

    // 6. An initial before a surname: "M Baker", "J. HOPE" (not "A" or "I" in ALL CAPS, where
    //    they are words).
    for i in 0..tokens.len().saturating_sub(1) {
        let (a, b) = (&tokens[i], &tokens[i + 1]);
        if a.kind == Kind::Initial
            && b.kind == Kind::Ambiguous
            && b.last
            && !b.function
            && matches!(gap_after(i), Gap::Space | Gap::Stop)
            && a.capitalised
            && (if mixed_case { b.capitalised } else { !matches!(a.lower.as_str(), "a" | "i") })
        {
            masked[i] = Some(Category::Name);
            masked[i + 1] = Some(Category::Name);
        }
    }

    // 7. Places that are also words ("Harrow", "Reading") beside an address or postcode.
    for i in 0..tokens.len() {
        let t = &tokens[i];
        if !t.place || masked[i].is_some() || context[i].is_some() {
            continue;
        }
        let location = |j: usize| masked[j] == Some(Category::Location) || context[j] == Some(Category::Location);
        let after = i > 0 && location(i - 1) && matches!(gap_after(i - 1), Gap::Comma | Gap::Space);
        let before = i + 1 < tokens.len() && location(i + 1) && matches!(gap_after(i), Gap::Comma | Gap::Space);
        if after || before {
            masked[i] = Some(Category::Location);
        }
    }

    // 8. Organisations: the words before "Hospital", "Infirmary", "Medical Practice", ...
    //    (capitalised ones in mixed case; in ALL CAPS, any that are not function words or
    //    medical vocabulary), with the noun; "St" / "Saint" before them.
    for i in 1..tokens.len() {
        let noun = &tokens[i];
        let strong = matches!(noun.lower.as_str(), "hospital" | "infirmary" | "hospice" | "practice");
        if !ORGANISATION_NOUNS.contains(&noun.lower.as_str()) || (mixed_case && !noun.capitalised) {
            continue;
        }
        let candidate = |j: usize| {
            let t = &tokens[j];
            let joining = matches!(t.lower.as_str(), "and" | "of" | "&");
            masked[j].is_some()
                || (!t.function || joining) && t.kind != Kind::Number && if mixed_case { t.capitalised || joining } else { strong && t.kind != Kind::Medical }
        };
        let joins = |j: usize| matches!(gap_after(j), Gap::Space) || text[tokens[j].end..tokens[j + 1].start].trim() == "'";
        let mut j = i;
        while j > 0 && i - j < 4 && candidate(j - 1) && joins(j - 1) {
            j -= 1;
        }
        // A run may not start or end with a joining word.
        while j < i && matches!(tokens[j].lower.as_str(), "and" | "of" | "&") {
            j += 1;
        }
        if j == i || !(strong || (j..i).any(|k| masked[k].is_some() || tokens[k].kind == Kind::Unknown)) {
            continue;
        }
        if j > 0 && matches!(tokens[j - 1].lower.as_str(), "st" | "saint") {
            j -= 1;
        }
        masked[j..=i].fill(Some(Category::Organisation));
    }

    tokens.iter().zip(masked).filter_map(|(t, m)| m.map(|category| Span { start: t.start, end: t.end, category })).collect()
}

/// For each token, the category of a found span overlapping it: one sweep over both sorted
/// lists (linear, whatever the number of spans).
fn overlaps(tokens: &[Token], found: &[Span]) -> Vec<Option<Category>> {
    let mut spans: Vec<&Span> = found.iter().collect();
    spans.sort_by_key(|s| (s.start, s.end));
    let mut out = Vec::with_capacity(tokens.len());
    let (mut at, mut reach): (usize, Option<(usize, Category)>) = (0, None);
    for t in tokens {
        // Spans starting before the token's end; keep the one reaching furthest.
        while at < spans.len() && spans[at].start < t.end {
            if reach.is_none_or(|(end, _)| spans[at].end > end) {
                reach = Some((spans[at].end, spans[at].category));
            }
            at += 1;
        }
        out.push(reach.filter(|(end, _)| *end > t.start).map(|(_, category)| category));
    }
    out
}

/// Is the token written in capitals (more than one letter)?
fn upper_word(text: &str, t: &Token) -> bool {
    let word = &text[t.start..t.end];
    word.chars().filter(|c| c.is_alphabetic()).count() > 1 && !word.chars().any(char::is_lowercase)
}

/// Does a sentence start at `at` (so its capital is no evidence)?
fn sentence_start(text: &str, at: usize) -> bool {
    let before = text[..at].trim_end_matches([' ', '\t']);
    before.is_empty() || before.ends_with(['.', '!', '?', '\n', ':'])
}
