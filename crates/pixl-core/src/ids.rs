//! Identifier newtypes, parsed once at the boundary.
//!
//! Raw identifiers (MRN, accession number, original UIDs) and pseudonymous identifiers are
//! different types. Raw identifiers have no `Display`, no `Serialize`, and a redacting
//! `Debug`, so they cannot end up in a log line, an error message or a wire message by
//! accident; code that truly needs the value calls `expose()`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a value could not be parsed as an identifier. Never carries the offending value,
/// because that value may itself be identifying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} characters")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} contains a character that is not allowed ({reason})")]
    BadCharacter { kind: &'static str, reason: &'static str },
}

/// A project slug: lowercase ASCII letters, digits and single hyphens, safe to use as a
/// path component, a queue routing key or a secret-store name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProjectSlug(String);

impl ProjectSlug {
    const MAX_LEN: usize = 63;

    /// Accepts a value that is already a slug, and nothing else.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        const KIND: &str = "project slug";
        if value.is_empty() {
            return Err(IdError::Empty { kind: KIND });
        }
        if value.len() > Self::MAX_LEN {
            return Err(IdError::TooLong { kind: KIND, max: Self::MAX_LEN });
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if !value.chars().all(allowed) {
            return Err(IdError::BadCharacter { kind: KIND, reason: "only a-z, 0-9 and '-'" });
        }
        if value.starts_with('-') || value.ends_with('-') || value.contains("--") {
            return Err(IdError::BadCharacter { kind: KIND, reason: "hyphens only between words" });
        }
        Ok(Self(value.to_owned()))
    }

    /// Slugifies a free-form project name the way PIXL does
    /// ("Test Extract - UCLH OMOP CDM" becomes `test-extract-uclh-omop-cdm`).
    pub fn from_name(name: &str) -> Result<Self, IdError> {
        Self::parse(&slug::slugify(name.trim()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProjectSlug {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ProjectSlug> for String {
    fn from(value: ProjectSlug) -> Self {
        value.0
    }
}

impl fmt::Display for ProjectSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ProjectSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProjectSlug({})", self.0)
    }
}

/// Rejects characters that would corrupt a DICOM query or a COPY stream: control
/// characters, and the backslash that DICOM uses to separate values.
fn check_text(kind: &'static str, value: &str, max: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.chars().count() > max {
        return Err(IdError::TooLong { kind, max });
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(IdError::BadCharacter { kind, reason: "control character" });
    }
    if value.contains('\\') {
        return Err(IdError::BadCharacter { kind, reason: "backslash" });
    }
    Ok(())
}

fn check_uid(kind: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > 64 {
        return Err(IdError::TooLong { kind, max: 64 });
    }
    let well_formed = value.split('.').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if !well_formed {
        return Err(IdError::BadCharacter { kind, reason: "a UID is digits separated by single dots" });
    }
    Ok(())
}

/// Declares a raw (identifying) identifier: trimmed at parse time, redacted in `Debug`,
/// without `Display` or serde.
macro_rules! raw_identifier {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $check:expr) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Trims surrounding whitespace, then validates.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                let trimmed = value.trim();
                let check: fn(&'static str, &str) -> Result<(), IdError> = $check;
                check($kind, trimmed)?;
                Ok(Self(trimmed.to_owned()))
            }

            /// The identifying value itself. Only for the identifiable zone: queries to
            /// the archive, the database, hashing.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

raw_identifier!(
    /// A hospital medical record number (DICOM PatientID).
    Mrn, "MRN", |kind, v| check_text(kind, v, 64)
);
raw_identifier!(
    /// A radiology accession number.
    AccessionNumber, "accession number", |kind, v| check_text(kind, v, 64)
);
raw_identifier!(
    /// An original StudyInstanceUID, as issued by the hospital.
    StudyUid, "study UID", check_uid
);
raw_identifier!(
    /// An original SeriesInstanceUID, as issued by the hospital.
    SeriesUid, "series UID", check_uid
);
raw_identifier!(
    /// An original SOPInstanceUID, as issued by the hospital.
    SopInstanceUid, "SOP instance UID", check_uid
);
raw_identifier!(
    /// A research participant id supplied with the cohort; identifying within the trust.
    ParticipantId, "participant id", |kind, v| check_text(kind, v, 64)
);

/// Database key of a study row. Not an identifier: it means nothing outside this
/// deployment's database, so it may travel in queue messages and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StudyId(pub i64);

impl fmt::Display for StudyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Declares a pseudonymous (exportable) identifier: validated, serialized as a string,
/// printable.
macro_rules! pseudonymous_identifier {
    ($(#[$meta:meta])* $name:ident, $check:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, IdError> {
                let check: fn(&str) -> Result<(), IdError> = $check;
                check(value)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

pseudonymous_identifier!(
    /// A pseudonymous StudyInstanceUID, produced by de-identification. Safe to export.
    PseudoStudyUid,
    |value| check_uid("pseudonymous study UID", value)
);
pseudonymous_identifier!(
    /// A pseudonymous patient id (keyed hash of the MRN). Safe to export.
    PseudoPatientId,
    |value| {
        const KIND: &str = "pseudonymous patient id";
        if value.is_empty() {
            return Err(IdError::Empty { kind: KIND });
        }
        if !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(IdError::BadCharacter { kind: KIND, reason: "hex digits only" });
        }
        Ok(())
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_pixl() {
        let cases = [
            ("Test Extract - UCLH OMOP CDM", Ok("test-extract-uclh-omop-cdm")),
            ("i-am-a-project", Ok("i-am-a-project")),
            (" ms-pinpoint-test ", Ok("ms-pinpoint-test")),
            ("Ünïcödé Project", Ok("unicode-project")),
            ("   ", Err(IdError::Empty { kind: "project slug" })),
        ];
        for (input, expected) in cases {
            let got = ProjectSlug::from_name(input);
            assert_eq!(got.as_ref().map(ProjectSlug::as_str).map_err(Clone::clone), expected, "input {input:?}");
        }
    }

    #[test]
    fn slug_parse_rejects_unsafe_paths() {
        for bad in ["../etc", "A-B", "a_b", "-a", "a-", "a--b", "a/b", ""] {
            assert!(ProjectSlug::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(ProjectSlug::parse("abc-123").unwrap().as_str(), "abc-123");
    }

    #[test]
    fn raw_identifiers_trim_and_redact() {
        let mrn = Mrn::parse("  987654321 ").unwrap();
        assert_eq!(mrn.expose(), "987654321");
        assert_eq!(format!("{mrn:?}"), "Mrn(<redacted>)");
        assert_eq!(Mrn::parse("   "), Err(IdError::Empty { kind: "MRN" }));
        assert!(matches!(AccessionNumber::parse("a\\b"), Err(IdError::BadCharacter { .. })));
        assert!(matches!(Mrn::parse("a\tb"), Err(IdError::BadCharacter { .. })));
    }

    #[test]
    fn uids_are_digits_and_dots() {
        assert!(StudyUid::parse("1.2.840.10008.1").is_ok());
        for bad in ["1..2", "1.2.", "1.a", ".1", &"1".repeat(65)] {
            assert!(StudyUid::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn errors_never_echo_the_value() {
        let err = Mrn::parse("SECRET\u{7}VALUE").unwrap_err().to_string();
        assert!(!err.contains("SECRET"), "{err}");
    }
}
