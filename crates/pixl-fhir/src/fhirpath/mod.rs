//! A focused FHIRPath engine for SQL-on-FHIR views: the normative grammar, the
//! functions views use (and the common string and collection functions), evaluated over
//! `serde_json::Value` without a FHIR type model. `docs/architecture.md` records why this
//! is ours rather than `helios-sof`'s.

mod boundary;
pub mod eval;
pub mod parse;

pub use eval::{Env, FUNCTIONS, Item, evaluate, is_single_bool, reference_parts, to_bool};
pub use parse::{Expr, parse};

/// A FHIRPath failure. The message names the expression's parts, never a data value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FhirPathError {
    #[error("FHIRPath syntax: {0}")]
    Parse(String),
    #[error("FHIRPath evaluation: {0}")]
    Eval(String),
}
