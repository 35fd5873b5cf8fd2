//! The wire types: every message that crosses RabbitMQ, as one closed, versioned enum.
//!
//! Messages carry database keys and pseudonymous identifiers only, never an MRN, an
//! accession number or an original UID: a message that ends in a dead-letter queue, or is
//! read by someone with broker access, identifies nobody. Consumers look the raw values up
//! in Postgres, inside the identifiable zone.

use serde::{Deserialize, Serialize};

use crate::ids::{ProjectSlug, PseudoStudyUid, StudyId};

/// Every message on every pixl queue. The `type` tag carries the version, so a consumer
/// meeting a newer message it does not know dead-letters it instead of misreading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum QueueMessage {
    /// Retrieve a study from the archive (queues `imaging-primary`, `imaging-secondary`).
    #[serde(rename = "imaging.v1")]
    ImagingV1(StudyRef),
    /// De-identify a retrieved study (queue `anonymise`).
    #[serde(rename = "anonymise.v1")]
    AnonymiseV1(StudyRef),
    /// Upload a de-identified study (queue `export`).
    #[serde(rename = "export.v1")]
    ExportV1(ExportRequest),
    /// Gather, de-identify and check a study's EHR fields and report (queue `ehr`).
    #[serde(rename = "ehr.v1")]
    EhrV1(StudyRef),
}

/// A study of a project, by database key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyRef {
    pub study_id: StudyId,
    pub project: ProjectSlug,
}

/// A de-identified study ready for upload; everything in it is safe to export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    pub study_id: StudyId,
    pub project: ProjectSlug,
    pub pseudo_study_uid: PseudoStudyUid,
}

/// The largest message body a consumer reads: pixl's messages are a few hundred bytes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// A message body that is not a pixl message. Says what kind of problem it is and where,
/// never what the body held: serde's own messages quote values (`invalid type: string
/// "<value>"`), and a malformed message may carry an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message is not a valid pixl message: {size} bytes, more than the {MAX_MESSAGE_BYTES} allowed")]
    TooLarge { size: usize },
    #[error("message is not a valid pixl message: {kind} at line {line} column {column}")]
    Syntax { kind: &'static str, line: usize, column: usize },
    #[error("message is not a valid pixl message: it has no \"type\" naming a message kind")]
    NoType,
    #[error("message is not a valid pixl message: unknown type (this pixl knows {})", KNOWN_TYPES.join(", "))]
    UnknownType,
    #[error("message is not a valid pixl message: a {kind} message with a missing, unknown or malformed field")]
    Fields { kind: &'static str },
}

/// The message kinds this version understands, by their `type` tag.
pub const KNOWN_TYPES: [&str; 4] = ["imaging.v1", "anonymise.v1", "export.v1", "ehr.v1"];

impl QueueMessage {
    pub fn encode(&self) -> Vec<u8> {
        // Serializing these plain structs to a Vec cannot fail.
        serde_json::to_vec(self).expect("queue messages always serialize")
    }

    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError::TooLarge { size: body.len() });
        }
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|error| DecodeError::Syntax {
            kind: match error.classify() {
                serde_json::error::Category::Eof => "truncated JSON",
                _ => "invalid JSON",
            },
            line: error.line(),
            column: error.column(),
        })?;
        let kind = value.get("type").and_then(serde_json::Value::as_str).ok_or(DecodeError::NoType)?;
        let kind = KNOWN_TYPES.into_iter().find(|known| *known == kind).ok_or(DecodeError::UnknownType)?;
        serde_json::from_value(value).map_err(|_| DecodeError::Fields { kind })
    }

    /// The study this message is about.
    pub fn study_id(&self) -> StudyId {
        match self {
            Self::ImagingV1(r) | Self::AnonymiseV1(r) | Self::EhrV1(r) => r.study_id,
            Self::ExportV1(r) => r.study_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slug() -> ProjectSlug {
        ProjectSlug::parse("test-extract-uclh-omop-cdm").unwrap()
    }

    #[test]
    fn wire_format_is_stable() {
        let cases = [
            (
                QueueMessage::ImagingV1(StudyRef { study_id: StudyId(7), project: slug() }),
                r#"{"type":"imaging.v1","study_id":7,"project":"test-extract-uclh-omop-cdm"}"#,
            ),
            (
                QueueMessage::AnonymiseV1(StudyRef { study_id: StudyId(8), project: slug() }),
                r#"{"type":"anonymise.v1","study_id":8,"project":"test-extract-uclh-omop-cdm"}"#,
            ),
            (
                QueueMessage::ExportV1(ExportRequest { study_id: StudyId(9), project: slug(), pseudo_study_uid: PseudoStudyUid::parse("2.25.1234").unwrap() }),
                r#"{"type":"export.v1","study_id":9,"project":"test-extract-uclh-omop-cdm","pseudo_study_uid":"2.25.1234"}"#,
            ),
        ];
        for (message, json) in cases {
            assert_eq!(String::from_utf8(message.encode()).unwrap(), json);
            assert_eq!(QueueMessage::decode(json.as_bytes()).unwrap(), message);
        }
    }

    #[test]
    fn decode_errors_never_quote_the_body() {
        let mrn = "40012345678";
        for (body, expected) in [
            (format!(r#"{{"type":"imaging.v1","study_id":"{mrn}","project":"p"}}"#), "imaging.v1 message with a missing, unknown or malformed field"),
            (format!(r#"{{"type":"imaging.v1","study_id":7,"project":"p","mrn":"{mrn}"}}"#), "malformed field"),
            (format!(r#"{{"type":"{mrn}","study_id":7}}"#), "unknown type"),
            (format!(r#"{{"type":"imaging.v1","study_id":7,"project":"{mrn}"#), "truncated JSON at line 1"),
            (format!(r#"{{"{mrn}": 1}}"#), "no \"type\""),
            (format!("{mrn} plain text"), "invalid JSON at line 1"),
            (format!(r#"{{"type":"imaging.v1","pad":"{}"}}"#, "9".repeat(MAX_MESSAGE_BYTES)), "more than the 16384 allowed"),
        ] {
            let error = QueueMessage::decode(body.as_bytes()).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains(mrn), "{error}");
        }
    }

    #[test]
    fn unknown_versions_and_bad_fields_are_rejected() {
        for body in [
            r#"{"type":"imaging.v2","study_id":7,"project":"p"}"#,
            r#"{"type":"imaging.v1","study_id":"x","project":"p"}"#,
            r#"{"type":"imaging.v1","study_id":7,"project":"../etc"}"#,
            r#"{"type":"imaging.v1","study_id":7,"project":"p","mrn":"123"}"#,
            "not json",
        ] {
            assert!(QueueMessage::decode(body.as_bytes()).is_err(), "{body}");
        }
    }
}
