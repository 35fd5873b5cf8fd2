//! The Bulk Data completion manifest (STU3; STU2 is a subset) and OperationOutcomes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One page of a completion manifest (or a partial manifest of a 202 answer).
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub transaction_time: Option<String>,
    #[serde(default)]
    pub request: Option<String>,
    #[serde(default)]
    pub requires_access_token: Option<bool>,
    #[serde(default)]
    pub output_organized_by: Option<String>,
    #[serde(default)]
    pub output: Vec<OutputFile>,
    #[serde(default)]
    pub deleted: Vec<OutputFile>,
    /// `outcome` is the STU4 ballot's name for `error`.
    #[serde(default, alias = "outcome")]
    pub error: Vec<OutputFile>,
    #[serde(default)]
    pub link: Vec<Link>,
}

/// One file of a manifest.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OutputFile {
    #[serde(default, rename = "type")]
    pub resource_type: Option<String>,
    pub url: String,
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default)]
    pub continues_in_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Link {
    pub relation: String,
    pub url: String,
}

impl Manifest {
    /// The URL of the next page, if any.
    pub fn next(&self) -> Option<&str> {
        self.link.iter().find(|l| l.relation == "next").map(|l| l.url.as_str())
    }
}

/// Issue codes that mean "try again later" (FHIR R4 `IssueType`: transient and its
/// children).
pub const TRANSIENT_CODES: &[&str] = &["transient", "lock-error", "no-store", "exception", "timeout", "incomplete", "throttled"];

/// The severities and codes of an OperationOutcome's issues (no diagnostics text: a
/// server may quote data in it).
pub fn outcome_issues(outcome: &Value) -> Vec<(String, String)> {
    outcome
        .get("issue")
        .and_then(Value::as_array)
        .map(|issues| {
            issues
                .iter()
                .map(|issue| {
                    let field = |name: &str| crate::http::printable(issue.get(name).and_then(Value::as_str).unwrap_or("unknown"), 40);
                    (field("severity"), field("code"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether an OperationOutcome says the failure is transient (every error issue is).
pub fn is_transient(outcome: &Value) -> bool {
    let issues = outcome_issues(outcome);
    let errors: Vec<&(String, String)> = issues.iter().filter(|(severity, _)| severity == "error" || severity == "fatal").collect();
    !errors.is_empty() && errors.iter().all(|(_, code)| TRANSIENT_CODES.contains(&code.as_str()))
}

/// "error/processing ×2, warning/informational" for messages.
pub fn summarise(counts: &BTreeMap<(String, String), u64>) -> String {
    counts
        .iter()
        .map(|((severity, code), n)| if *n == 1 { format!("{severity}/{code}") } else { format!("{severity}/{code} ×{n}") })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_stu3_and_stu4_names() {
        let manifest: Manifest = serde_json::from_value(json!({
            "transactionTime": "2026-01-01T00:00:00Z", "request": "x", "requiresAccessToken": true,
            "output": [{"type": "Patient", "url": "u1", "count": 3}],
            "outcome": [{"type": "OperationOutcome", "url": "u2"}],
            "link": [{"relation": "next", "url": "p2"}],
            "extension": {"a": 1}
        }))
        .unwrap();
        assert_eq!(manifest.output[0].count, Some(3));
        assert_eq!(manifest.error[0].url, "u2");
        assert_eq!(manifest.next(), Some("p2"));
    }

    #[test]
    fn transient_only_when_every_error_is() {
        let issue = |severity: &str, code: &str| json!({"severity": severity, "code": code, "diagnostics": "Patient 123 locked"});
        assert!(is_transient(&json!({"resourceType": "OperationOutcome", "issue": [issue("error", "transient")]})));
        assert!(is_transient(&json!({"issue": [issue("error", "throttled"), issue("warning", "processing")]})));
        assert!(!is_transient(&json!({"issue": [issue("error", "transient"), issue("fatal", "processing")]})));
        assert!(!is_transient(&json!({"issue": []})));
        assert!(!is_transient(&json!("text")));
        assert_eq!(outcome_issues(&json!({"issue": [issue("error", "transient")]})), vec![("error".to_owned(), "transient".to_owned())]);
    }
}
