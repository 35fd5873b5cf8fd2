//! Tag-operation schemes in PIXL's YAML format, read unchanged.
//!
//! Base files are lists of `{name, group, element, op}` (integers; YAML hex literals such
//! as `0x0010` allowed) and merge in order, a later file winning for the same tag.
//! Manufacturer-override files are lists of `{manufacturer: <regex>, tags: [...]}`; the
//! entries of every override whose regex is found (case-insensitive) in an instance's
//! Manufacturer override and extend the base.

use std::collections::BTreeMap;

use dicom_core::Tag;
use serde::Deserialize;

/// What happens to an element. The names are PIXL's (and dicom-anonymizer's, whose
/// compound operations PIXL accepts: they are fixed aliases there, and here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum TagOp {
    #[serde(rename = "keep")]
    Keep,
    #[serde(rename = "delete")]
    Delete,
    /// A dummy value of the element's VR (dicom-anonymizer's dummies); in a sequence,
    /// every nested value that the allow-list keeps is dummied too, and nested UIDs are
    /// remapped. dicom-anonymizer's `empty_or_replace`, `delete_or_replace` and
    /// `delete_or_empty_or_replace` do exactly this.
    #[serde(rename = "replace", alias = "empty_or_replace", alias = "delete_or_replace", alias = "delete_or_empty_or_replace")]
    Replace,
    /// A new UID derived from the original with the project's key.
    #[serde(rename = "replace_UID")]
    ReplaceUid,
    /// dicom-anonymizer's `delete_or_empty_or_replace_UID`: a UI value is remapped as by
    /// `replace_UID`, any other is emptied.
    #[serde(rename = "delete_or_empty_or_replace_UID")]
    ReplaceUidOrEmpty,
    /// The value's keyed hash (hasher-api), 64 hex characters, as PIXL: only for LO values
    /// (PatientID); an instance with another VR under `secure-hash` is dropped with the
    /// reason, as PIXL skips it.
    #[serde(rename = "secure-hash")]
    SecureHash,
    /// pixl's extension of `secure-hash` to any text VR, the hash cut to the VR's maximum
    /// length (AccessionNumber is SH: 16 characters).
    #[serde(rename = "secure-hash-any-vr")]
    SecureHashAnyVr,
    /// Dates moved back by a per-patient number of days; times kept.
    #[serde(rename = "date-shift")]
    DateShift,
    /// Kept, with an empty value (for Type 2 elements); dicom-anonymizer's
    /// `delete_or_empty` does exactly this.
    #[serde(rename = "empty", alias = "delete_or_empty")]
    Empty,
}

/// One entry of a tag-operation file. `name` is for people and optional, as in PIXL.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TagRule {
    #[serde(default)]
    pub name: Option<String>,
    pub group: u16,
    pub element: u16,
    pub op: TagOp,
}

impl TagRule {
    pub fn tag(&self) -> Tag {
        Tag(self.group, self.element)
    }
}

#[derive(Debug, Clone, Deserialize)]
struct OverrideEntry {
    manufacturer: String,
    tags: Vec<TagRule>,
}

/// A tag-operation file that cannot be used. Names the file, the entry and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    #[error("{file}: {location}: {problem}")]
    Invalid { file: String, location: String, problem: String },
}

/// Manufacturer-specific rules.
#[derive(Debug, Clone)]
pub struct ManufacturerOverride {
    pub pattern: regex::Regex,
    pub rules: Vec<TagRule>,
}

/// A merged scheme: the base rules and the overrides, ready to resolve per instance.
#[derive(Debug, Clone, Default)]
pub struct TagScheme {
    base: BTreeMap<Tag, TagOp>,
    overrides: Vec<ManufacturerOverride>,
    /// File names the scheme came from, for the DeidentificationMethod marker.
    pub sources: Vec<String>,
}

/// The operations that apply to one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedScheme {
    pub ops: BTreeMap<Tag, TagOp>,
}

impl ResolvedScheme {
    /// The operation for `tag`, folding repeating groups (overlays 60xx, curves 50xx) onto
    /// their first group as the standard lists them.
    pub fn op(&self, tag: Tag) -> Option<TagOp> {
        let group = tag.group();
        let folded = if (0x6000..=0x60FF).contains(&group) && group.is_multiple_of(2) {
            Tag(0x6000, tag.element())
        } else if (0x5000..=0x50FF).contains(&group) && group.is_multiple_of(2) {
            Tag(0x5000, tag.element())
        } else {
            tag
        };
        self.ops.get(&folded).copied()
    }
}

fn parse_yaml<T: for<'de> Deserialize<'de>>(file: &str, text: &str) -> Result<T, SchemeError> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let location = error.path().to_string();
        let problem = error.into_inner().to_string();
        // serde_yaml_ng repeats the path at the start of some messages.
        let problem = match problem.split_once(": ") {
            Some((head, rest)) if location.trim_start_matches('.').starts_with(head.trim_start_matches('.')) => rest.to_owned(),
            _ => problem,
        };
        SchemeError::Invalid { file: file.to_owned(), location: if location == "." { "file".to_owned() } else { format!("entry {location}") }, problem }
    })
}

impl TagScheme {
    /// Tags with a base rule.
    pub fn base_len(&self) -> usize {
        self.base.len()
    }

    /// The manufacturer override entries, in file order.
    pub fn overrides(&self) -> &[ManufacturerOverride] {
        &self.overrides
    }

    /// Manufacturer override entries.
    pub fn overrides_len(&self) -> usize {
        self.overrides.len()
    }

    /// Builds a scheme from `(file name, text)` pairs: base files in order, then override
    /// files.
    pub fn from_yaml(base_files: &[(String, String)], override_files: &[(String, String)]) -> Result<Self, SchemeError> {
        let mut scheme = Self::default();
        for (file, text) in base_files {
            let rules: Vec<TagRule> = parse_yaml(file, text)?;
            for rule in rules {
                scheme.base.insert(rule.tag(), rule.op);
            }
            scheme.sources.push(file.clone());
        }
        for (file, text) in override_files {
            let entries: Vec<OverrideEntry> = parse_yaml(file, text)?;
            for (index, entry) in entries.into_iter().enumerate() {
                let pattern = regex::RegexBuilder::new(&entry.manufacturer).case_insensitive(true).build().map_err(|e| SchemeError::Invalid {
                    file: file.clone(),
                    location: format!("entry [{index}].manufacturer"),
                    problem: e.to_string(),
                })?;
                scheme.overrides.push(ManufacturerOverride { pattern, rules: entry.tags });
            }
            scheme.sources.push(file.clone());
        }
        Ok(scheme)
    }

    /// The operations for an instance of `manufacturer`.
    pub fn resolve(&self, manufacturer: Option<&str>) -> ResolvedScheme {
        let mut ops = self.base.clone();
        if let Some(manufacturer) = manufacturer {
            for entry in self.overrides.iter().filter(|o| o.pattern.is_match(manufacturer)) {
                for rule in &entry.rules {
                    ops.insert(rule.tag(), rule.op);
                }
            }
        }
        ResolvedScheme { ops }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    const BASE: &str = r#"
- name: "Patient ID"
  group: 0x0010
  element: 0x0020
  op: "secure-hash"
- name: "Series Description"
  group: 0x0008
  element: 0x103E
  op: "keep"
"#;

    #[test]
    fn later_base_files_win_and_overrides_match_case_insensitively() {
        let second = "- {name: Series Description, group: 0x0008, element: 0x103E, op: delete}\n";
        let overrides = r#"
- manufacturer: "^philips"
  tags:
    - {name: "Private creator", group: 0x2001, element: 0x0010, op: keep}
    - {name: "Series Description", group: 0x0008, element: 0x103E, op: keep}
"#;
        let scheme = TagScheme::from_yaml(&files(&[("base.yaml", BASE), ("mri.yaml", second)]), &files(&[("philips.yaml", overrides)])).unwrap();
        let plain = scheme.resolve(Some("GE MEDICAL SYSTEMS"));
        assert_eq!(plain.op(Tag(0x0008, 0x103E)), Some(TagOp::Delete));
        assert_eq!(plain.op(Tag(0x2001, 0x0010)), None);
        let philips = scheme.resolve(Some("Philips Medical Systems"));
        assert_eq!(philips.op(Tag(0x0008, 0x103E)), Some(TagOp::Keep));
        assert_eq!(philips.op(Tag(0x2001, 0x0010)), Some(TagOp::Keep));
        assert_eq!(scheme.resolve(None).op(Tag(0x0010, 0x0020)), Some(TagOp::SecureHash));
        assert_eq!(scheme.sources, ["base.yaml", "mri.yaml", "philips.yaml"]);
    }

    #[test]
    fn repeating_groups_fold_onto_the_first() {
        let overlay = "- {name: Overlay Rows, group: 0x6000, element: 0x0010, op: keep}\n";
        let scheme = TagScheme::from_yaml(&files(&[("o.yaml", overlay)]), &[]).unwrap().resolve(None);
        assert_eq!(scheme.op(Tag(0x6002, 0x0010)), Some(TagOp::Keep));
        assert_eq!(scheme.op(Tag(0x6001, 0x0010)), None, "odd groups are private, not overlays");
    }

    #[test]
    fn bad_files_name_file_entry_and_problem() {
        let cases = [
            ("- {name: x, group: 16, element: 32, op: obliterate}\n", "x.yaml: entry [0].op: unknown variant `obliterate`"),
            ("- {name: x, group: 70000, element: 32, op: keep}\n", "x.yaml: entry [0].group:"),
            ("- {name: x, group: 16, element: 32}\n", "x.yaml: entry [0]: missing field `op`"),
            ("- {name: x, group: 16, op: keep}\n", "missing field `element`"),
            ("{not: a list}\n", "x.yaml: file: invalid type"),
        ];
        for (text, expected) in cases {
            let error = TagScheme::from_yaml(&files(&[("x.yaml", text)]), &[]).unwrap_err().to_string();
            assert!(error.contains(expected), "expected {expected:?} in {error:?}");
        }
        // Keys PIXL ignores are ignored here too.
        assert!(TagScheme::from_yaml(&files(&[("x.yaml", "- {name: x, group: 16, element: 32, op: keep, colour: red}\n")]), &[]).is_ok());
        let bad_regex = "- {manufacturer: \"(\", tags: []}\n";
        let error = TagScheme::from_yaml(&[], &files(&[("o.yaml", bad_regex)])).unwrap_err().to_string();
        assert!(error.starts_with("o.yaml: entry [0].manufacturer:"), "{error}");
    }

    #[test]
    fn the_shipped_profiles_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../projects/configs/tag-operations");
        let mut base = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                base.push((path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&path).unwrap()));
            }
        }
        assert!(!base.is_empty());
        TagScheme::from_yaml(&base, &[]).unwrap();
    }
}
