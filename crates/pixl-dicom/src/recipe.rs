//! pydicom `deid` recipes for pixel masking (PIXL's `image_operation_files.deid_recipes`,
//! e.g. `us-deid.recipe`): which boxes of an image to blank and which to keep, decided
//! by filters on its header. Pure: a recipe is parsed once, then evaluated on an
//! instance's original header to give a [`MaskPlan`] that [`crate::mask`] applies.
//!
//! Semantics follow deid's `DicomCleaner` (deid 0.4), as PIXL uses it:
//! - every `%filter` section (whatever its name: `whitelist`, `graylist`, `blacklist`)
//!   and every `LABEL` in it is evaluated, in file order; a match of a whitelist label
//!   does not exempt the image;
//! - a label matches when each of its condition lines holds (lines are joined by "and";
//!   within a line `+` is "and", `||` is "or", read left to right); a label with no
//!   condition always matches;
//! - conditions: `contains` / `notcontains` (case-insensitive regex search in the
//!   value), `equals` / `notequals` (case-insensitive, trimmed), `present`, `missing`,
//!   `empty`, on a keyword (`BurnedInAnnotation`) or a tag (`00280301`, `(0028,0301)`);
//! - a matching label's `coordinates` boxes are blanked and its `keepcoordinates` boxes
//!   restored, in order, the last one winning; boxes are `xmin,ymin,xmax,ymax` with the
//!   maximum excluded (deid's slices), `ctpcoordinates` / `ctpkeepcoordinates` are
//!   `x,y,width,height`, `all` is the whole image, and `from:SequenceOfUltrasoundRegions`
//!   is each region's RegionLocationMinX0/MinY0/MaxX1/MaxY1.
//!
//! One difference on purpose: an ultrasound region's maxima are kept (DICOM defines
//! MaxX1/MaxY1 as the region's last column and row; deid drops them).

use std::fmt;

use dicom_core::Tag;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::value::Value;
use dicom_dictionary_std::{StandardDataDictionary, tags};
use dicom_object::InMemDicomObject;
use regex::{Regex, RegexBuilder};

/// A parsed recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// File name, for messages.
    pub name: String,
    labels: Vec<Label>,
}

#[derive(Debug, Clone)]
struct Label {
    /// One entry per condition line; each line is a chain of tests.
    lines: Vec<Vec<(Join, Test)>>,
    boxes: Vec<(Paint, BoxSpec)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Join {
    And,
    Or,
}

#[derive(Debug, Clone)]
struct Test {
    field: Tag,
    kind: TestKind,
}

#[derive(Debug, Clone)]
enum TestKind {
    Contains(Regex),
    NotContains(Regex),
    Equals(String),
    NotEquals(String),
    Present,
    Missing,
    Empty,
}

/// Whether a box is blanked or kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    Blank,
    Keep,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum BoxSpec {
    All,
    /// `xmin, ymin, xmax, ymax`, maxima excluded.
    Rect(u32, u32, u32, u32),
    UltrasoundRegions,
}

/// A box in pixels: columns `x0..x1`, rows `y0..y1` (ends excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

/// What the recipes say to do with one image: boxes to blank or keep, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaskPlan {
    pub steps: Vec<(Paint, Area)>,
}

/// An area of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    All,
    Rect(Rect),
}

impl MaskPlan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// A recipe that cannot be used, with its file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("deid recipe {file}, line {line}: {problem}")]
pub struct RecipeError {
    pub file: String,
    pub line: usize,
    pub problem: String,
}

impl Recipe {
    /// Parses the text of a recipe named `name`.
    pub fn parse(name: &str, text: &str) -> Result<Self, RecipeError> {
        let error = |line: usize, problem: String| RecipeError { file: name.to_owned(), line, problem };
        let mut labels: Vec<Label> = Vec::new();
        let mut in_filter = false;
        let mut in_label = false;
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            // As deid: a line starting with `#` is a comment (a `#` inside a value is kept).
            let line = raw.trim();
            if line.starts_with('#') {
                continue;
            }
            if line.is_empty() {
                continue;
            }
            let (word, rest) = line.split_once(char::is_whitespace).map(|(w, r)| (w, r.trim())).unwrap_or((line, ""));
            if word.eq_ignore_ascii_case("FORMAT") {
                if !rest.eq_ignore_ascii_case("dicom") {
                    return Err(error(number, format!("FORMAT {rest:?}: only dicom recipes are understood")));
                }
                continue;
            }
            if let Some(section) = word.strip_prefix('%') {
                in_filter = section.eq_ignore_ascii_case("filter");
                in_label = false;
                if !in_filter {
                    return Err(error(
                        number,
                        format!("section %{section}: only %filter sections (pixel masking) are understood; header changes belong in tag-operation files"),
                    ));
                }
                continue;
            }
            if !in_filter {
                return Err(error(number, "expected FORMAT dicom or a %filter section".to_owned()));
            }
            if word.eq_ignore_ascii_case("LABEL") {
                labels.push(Label { lines: Vec::new(), boxes: Vec::new() });
                in_label = true;
                continue;
            }
            if !in_label {
                return Err(error(number, "a filter line before any LABEL".to_owned()));
            }
            let label = labels.last_mut().expect("a label is open");
            let paint = match word.to_ascii_lowercase().as_str() {
                "coordinates" | "ctpcoordinates" => Some(Paint::Blank),
                "keepcoordinates" | "ctpkeepcoordinates" => Some(Paint::Keep),
                _ => None,
            };
            if let Some(paint) = paint {
                let ctp = word.to_ascii_lowercase().starts_with("ctp");
                let spec = parse_box(rest, ctp).map_err(|problem| error(number, problem))?;
                label.boxes.push((paint, spec));
            } else {
                label.lines.push(parse_condition_line(line).map_err(|problem| error(number, problem))?);
            }
        }
        if labels.is_empty() {
            return Err(error(0, "no LABEL: the recipe masks nothing".to_owned()));
        }
        Ok(Self { name: name.to_owned(), labels })
    }

    /// Number of labels.
    pub fn labels(&self) -> usize {
        self.labels.len()
    }

    /// The steps this recipe adds for `object` (its original header), after `plan`'s.
    pub fn evaluate(&self, object: &InMemDicomObject, plan: &mut MaskPlan) {
        for label in &self.labels {
            if !label.lines.iter().all(|line| evaluate_line(line, object)) {
                continue;
            }
            for (paint, spec) in &label.boxes {
                match spec {
                    BoxSpec::All => plan.steps.push((*paint, Area::All)),
                    BoxSpec::Rect(x0, y0, x1, y1) => plan.steps.push((*paint, Area::Rect(Rect { x0: *x0, y0: *y0, x1: *x1, y1: *y1 }))),
                    BoxSpec::UltrasoundRegions => {
                        for rect in ultrasound_regions(object) {
                            plan.steps.push((*paint, Area::Rect(rect)));
                        }
                    }
                }
            }
        }
    }
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} labels)", self.name, self.labels.len())
    }
}

/// The plan of several recipes, in order.
pub fn plan(recipes: &[Recipe], object: &InMemDicomObject) -> MaskPlan {
    let mut plan = MaskPlan::default();
    for recipe in recipes {
        recipe.evaluate(object, &mut plan);
    }
    plan
}

fn parse_box(spec: &str, ctp: bool) -> Result<BoxSpec, String> {
    let spec = spec.trim();
    if spec.eq_ignore_ascii_case("all") {
        return Ok(BoxSpec::All);
    }
    if let Some(field) = spec.strip_prefix("from:") {
        return if field.trim() == "SequenceOfUltrasoundRegions" {
            Ok(BoxSpec::UltrasoundRegions)
        } else {
            Err(format!("coordinates from:{field}: only from:SequenceOfUltrasoundRegions is understood"))
        };
    }
    let numbers: Vec<u32> = spec
        .split(',')
        .map(|n| n.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("coordinates {spec:?}: expected all, from:SequenceOfUltrasoundRegions or four whole numbers"))?;
    let [a, b, c, d] = numbers[..] else {
        return Err(format!("coordinates {spec:?}: expected four numbers, got {}", numbers.len()));
    };
    let (x0, y0, x1, y1) = if ctp { (a, b, a.saturating_add(c), b.saturating_add(d)) } else { (a, b, c, d) };
    if x1 < x0 || y1 < y0 {
        return Err(format!("coordinates {spec:?}: the maximum is below the minimum (the order is xmin,ymin,xmax,ymax)"));
    }
    Ok(BoxSpec::Rect(x0, y0, x1, y1))
}

fn parse_condition_line(line: &str) -> Result<Vec<(Join, Test)>, String> {
    let mut tests = Vec::new();
    let mut join = Join::And;
    let mut words: Vec<&str> = Vec::new();
    let flush = |words: &mut Vec<&str>, join: Join, tests: &mut Vec<(Join, Test)>| -> Result<(), String> {
        if words.is_empty() {
            return Ok(());
        }
        tests.push((join, parse_test(words)?));
        words.clear();
        Ok(())
    };
    for word in line.split_whitespace() {
        match word {
            "+" | "||" => {
                flush(&mut words, join, &mut tests)?;
                join = if word == "+" { Join::And } else { Join::Or };
            }
            _ => words.push(word),
        }
    }
    flush(&mut words, join, &mut tests)?;
    if tests.is_empty() {
        return Err("an empty condition".to_owned());
    }
    // A line that starts with a join continues nothing: its first test stands alone.
    tests[0].0 = Join::And;
    Ok(tests)
}

fn parse_test(words: &[&str]) -> Result<Test, String> {
    let action = words[0].to_ascii_lowercase();
    let field_name = words.get(1).ok_or_else(|| format!("{action}: which field?"))?;
    let field = field_tag(field_name).ok_or_else(|| format!("{field_name:?} is not a DICOM keyword or tag"))?;
    let value = words[2.min(words.len())..].join(" ");
    let regex = |value: &str| {
        RegexBuilder::new(value).case_insensitive(true).build().map_err(|_| format!("{action} {field_name}: {value:?} is not a valid regular expression"))
    };
    let needs_value = || if value.is_empty() { Err(format!("{action} {field_name}: a value is needed")) } else { Ok(()) };
    let kind = match action.as_str() {
        "contains" => {
            needs_value()?;
            TestKind::Contains(regex(&value)?)
        }
        "notcontains" => {
            needs_value()?;
            TestKind::NotContains(regex(&value)?)
        }
        "equals" => TestKind::Equals(value.trim().to_lowercase()),
        "notequals" => TestKind::NotEquals(value.trim().to_lowercase()),
        "present" => TestKind::Present,
        "missing" => TestKind::Missing,
        "empty" => TestKind::Empty,
        other => {
            return Err(format!(
                "{other:?} is not a filter action (contains, notcontains, equals, notequals, present, missing, empty, coordinates, keepcoordinates)"
            ));
        }
    };
    Ok(Test { field, kind })
}

/// A keyword, or a tag as `00280301`, `0x00280301` or `(0028,0301)`.
fn field_tag(name: &str) -> Option<Tag> {
    let hex = name.strip_prefix("0x").or_else(|| name.strip_prefix("0X")).unwrap_or(name);
    if hex.len() == 8
        && let Ok(value) = u32::from_str_radix(hex, 16)
    {
        return Some(Tag((value >> 16) as u16, (value & 0xFFFF) as u16));
    }
    StandardDataDictionary.by_expr(name).map(|entry| entry.tag_range().inner())
}

fn evaluate_line(line: &[(Join, Test)], object: &InMemDicomObject) -> bool {
    let mut result = true;
    for (index, (join, test)) in line.iter().enumerate() {
        let value = evaluate_test(test, object);
        result = match (index, join) {
            (0, _) => value,
            (_, Join::And) => result && value,
            (_, Join::Or) => result || value,
        };
    }
    result
}

fn evaluate_test(test: &Test, object: &InMemDicomObject) -> bool {
    let element = object.element_opt(test.field).ok().flatten();
    let text = || {
        element.and_then(|e| match e.value() {
            Value::Primitive(_) => e.to_str().ok().map(|s| s.trim_matches([' ', '\0']).to_lowercase()),
            _ => Some(String::new()),
        })
    };
    match &test.kind {
        TestKind::Present => element.is_some(),
        TestKind::Missing => element.is_none(),
        TestKind::Empty => element.is_some_and(|e| match e.value() {
            Value::Sequence(sequence) => sequence.items().is_empty(),
            _ => text().is_some_and(|t| t.is_empty()),
        }),
        TestKind::Contains(regex) => text().is_some_and(|t| regex.is_match(&t)),
        TestKind::NotContains(regex) => !text().is_some_and(|t| regex.is_match(&t)),
        TestKind::Equals(value) => text().is_some_and(|t| t == *value),
        TestKind::NotEquals(value) => text().is_none_or(|t| t != *value),
    }
}

/// The regions of SequenceOfUltrasoundRegions that give all four corners, as boxes with
/// DICOM's inclusive maxima turned into excluded ends.
fn ultrasound_regions(object: &InMemDicomObject) -> Vec<Rect> {
    let Some(element) = object.element_opt(tags::SEQUENCE_OF_ULTRASOUND_REGIONS).ok().flatten() else { return Vec::new() };
    let Value::Sequence(sequence) = element.value() else { return Vec::new() };
    let number = |item: &InMemDicomObject, tag| item.element_opt(tag).ok().flatten().and_then(|e| e.to_int::<u32>().ok());
    sequence
        .items()
        .iter()
        .filter_map(|item| {
            let x0 = number(item, tags::REGION_LOCATION_MIN_X0)?;
            let y0 = number(item, tags::REGION_LOCATION_MIN_Y0)?;
            let x1 = number(item, tags::REGION_LOCATION_MAX_X1)?;
            let y1 = number(item, tags::REGION_LOCATION_MAX_Y1)?;
            (x1 >= x0 && y1 >= y0).then(|| Rect { x0, y0, x1: x1.saturating_add(1), y1: y1.saturating_add(1) })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::value::{DataSetSequence, PrimitiveValue};
    use dicom_core::{DataElement, Length, VR};

    const PIXL_RECIPE: &str = "FORMAT dicom\n\n### Image clean-up\n\n%filter whitelist\n\nLABEL Marked as Clean Catch All\n  contains BurnedInAnnotation No\n\n\
        %filter graylist\n\n# Coordinates from fields\n\nLABEL Blank Image\n    coordinates all\n\nLABEL Clean Ultrasound Regions\n    present SequenceOfUltrasoundRegions\n    keepcoordinates from:SequenceOfUltrasoundRegions\n";

    fn us(regions: &[(u32, u32, u32, u32)], burned: &str) -> InMemDicomObject {
        let mut object = InMemDicomObject::new_empty();
        object.put(DataElement::new(tags::BURNED_IN_ANNOTATION, VR::CS, PrimitiveValue::from(burned)));
        if !regions.is_empty() {
            let items = regions.iter().map(|&(x0, y0, x1, y1)| {
                InMemDicomObject::from_element_iter([
                    DataElement::new(tags::REGION_LOCATION_MIN_X0, VR::UL, PrimitiveValue::from(x0)),
                    DataElement::new(tags::REGION_LOCATION_MIN_Y0, VR::UL, PrimitiveValue::from(y0)),
                    DataElement::new(tags::REGION_LOCATION_MAX_X1, VR::UL, PrimitiveValue::from(x1)),
                    DataElement::new(tags::REGION_LOCATION_MAX_Y1, VR::UL, PrimitiveValue::from(y1)),
                ])
            });
            object.put(DataElement::new(
                tags::SEQUENCE_OF_ULTRASOUND_REGIONS,
                VR::SQ,
                Value::Sequence(DataSetSequence::new(items.collect::<Vec<_>>(), Length::UNDEFINED)),
            ));
        }
        object
    }

    #[test]
    fn pixls_recipe_blanks_all_then_keeps_the_regions() {
        let recipe = Recipe::parse("us-deid.recipe", PIXL_RECIPE).unwrap();
        assert_eq!(recipe.labels(), 3);
        let plan = plan(std::slice::from_ref(&recipe), &us(&[(100, 80, 539, 399), (10, 5, 20, 6)], "YES"));
        assert_eq!(
            plan.steps,
            vec![
                (Paint::Blank, Area::All),
                (Paint::Keep, Area::Rect(Rect { x0: 100, y0: 80, x1: 540, y1: 400 })),
                (Paint::Keep, Area::Rect(Rect { x0: 10, y0: 5, x1: 21, y1: 7 })),
            ]
        );
        // Marked clean or not, the image is masked (deid's whitelist does not exempt).
        assert_eq!(super::plan(std::slice::from_ref(&recipe), &us(&[(1, 1, 2, 2)], "NO")).steps.len(), 2);
        // No regions: everything is blanked.
        assert_eq!(super::plan(&[recipe], &us(&[], "YES")).steps, vec![(Paint::Blank, Area::All)]);
    }

    #[test]
    fn conditions_joins_and_boxes() {
        let recipe = Recipe::parse(
            "r",
            "%filter graylist\nLABEL a\n  equals Modality us || contains Modality ^CT\n  missing PatientName + present 00280301\n  coordinates 0,0,10,20\n\
             LABEL b\n  notequals Modality US\n  ctpcoordinates 5,5,10,10\n",
        )
        .unwrap();
        let mut object = us(&[], "YES");
        object.put(DataElement::new(tags::MODALITY, VR::CS, PrimitiveValue::from("US")));
        assert_eq!(plan(std::slice::from_ref(&recipe), &object).steps, vec![(Paint::Blank, Area::Rect(Rect { x0: 0, y0: 0, x1: 10, y1: 20 }))]);
        object.put(DataElement::new(tags::MODALITY, VR::CS, PrimitiveValue::from("MR")));
        assert_eq!(plan(&[recipe], &object).steps, vec![(Paint::Blank, Area::Rect(Rect { x0: 5, y0: 5, x1: 15, y1: 15 }))]);
    }

    #[test]
    fn bad_recipes_name_the_line() {
        let cases = [
            ("%filter graylist\nLABEL a\n  coordinates 1,2,3\n", 3, "four numbers"),
            ("%filter graylist\nLABEL a\n  resembles Modality US\n", 3, "not a filter action"),
            ("%filter graylist\nLABEL a\n  contains NoSuchKeyword x\n", 3, "not a DICOM keyword"),
            ("%header\nREMOVE PatientName\n", 1, "only %filter"),
            ("%filter graylist\n  coordinates all\n", 2, "before any LABEL"),
            ("%filter graylist\nLABEL a\n  coordinates 10,10,5,5\n", 3, "below the minimum"),
            ("%filter graylist\nLABEL a\n  keepcoordinates from:PatientName\n", 3, "only from:SequenceOfUltrasoundRegions"),
        ];
        for (text, line, problem) in cases {
            let error = Recipe::parse("bad.recipe", text).unwrap_err();
            assert_eq!(error.line, line, "{error}");
            assert!(error.to_string().contains(problem), "{error}");
            assert!(error.to_string().starts_with("deid recipe bad.recipe, line"), "{error}");
        }
    }
}
