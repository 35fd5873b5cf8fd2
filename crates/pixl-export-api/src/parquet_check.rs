//! The check every parquet file passes before it leaves: no raw identifier of the project
//! (MRN, accession number, original study UID, participant id) may appear in any string
//! column. export-api never reads a raw identifier: Postgres hands it SHA-256 digests of
//! them (`pixl_identifier_digests`), and each cell is digested the same way (trimmed,
//! upper-cased) and looked up, whole and word by word, and with its digits alone (an
//! identifier written with spaces or dashes, "943 476 5919").

use std::collections::HashMap;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_schema::DataType;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// Digests of a project's raw identifiers, with the kind of each.
#[derive(Debug, Default, Clone)]
pub struct IdentifierDigests {
    digests: HashMap<[u8; 32], String>,
}

/// A string cell holding a raw identifier. Names the place and the kind, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: column {column}, row {row} holds a raw identifier of the project (an {kind})")]
pub struct ParquetLeak {
    pub file: String,
    pub column: String,
    pub row: usize,
    pub kind: String,
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl IdentifierDigests {
    /// The project's digests, computed by Postgres.
    pub async fn load(pool: &PgPool, project: &str) -> Result<Self, sqlx::Error> {
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as("SELECT kind, digest FROM pixl_identifier_digests($1)").bind(project).fetch_all(pool).await?;
        let digests = rows.into_iter().filter_map(|(kind, digest)| Some((<[u8; 32]>::try_from(digest.as_slice()).ok()?, kind))).collect();
        Ok(Self { digests })
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// The kind of raw identifier `cell` holds, if any.
    pub fn find(&self, cell: &str) -> Option<&str> {
        if self.digests.is_empty() {
            return None;
        }
        let upper = cell.trim().to_uppercase();
        if upper.is_empty() {
            return None;
        }
        let lookup = |candidate: &str| self.digests.get(&digest(candidate)).map(String::as_str);
        if let Some(kind) = lookup(&upper) {
            return Some(kind);
        }
        // Words: identifiers are runs of letters, digits and dots (UIDs) or dashes.
        for word in upper.split(|c: char| !(c.is_alphanumeric() || c == '.' || c == '-' || c == '_')).filter(|w| !w.is_empty()) {
            if let Some(kind) = lookup(word).or_else(|| lookup(word.trim_matches(['.', '-', '_']))) {
                return Some(kind);
            }
        }
        let digits: String = upper.chars().filter(char::is_ascii_digit).collect();
        if digits.len() >= 6 && digits.len() < upper.len() {
            return lookup(&digits);
        }
        None
    }

    /// Reads every string column of the parquet file at `path`; the first raw identifier
    /// found is the error. `name` is how the file is named in the error.
    pub fn scan(&self, path: &Path, name: &str) -> Result<(), ScanError> {
        if self.digests.is_empty() {
            return Ok(());
        }
        let file = std::fs::File::open(path).map_err(|e| ScanError::Read(format!("{name}: {}", e.kind())))?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|_| ScanError::Read(format!("{name}: not a readable parquet file")))?
            .build()
            .map_err(|_| ScanError::Read(format!("{name}: not a readable parquet file")))?;
        let mut first_row = 0;
        for batch in reader {
            let batch = batch.map_err(|_| ScanError::Read(format!("{name}: a row group cannot be read")))?;
            for (index, field) in batch.schema().fields().iter().enumerate() {
                let column = batch.column(index);
                let cells: Box<dyn Iterator<Item = Option<&str>>> = match field.data_type() {
                    DataType::Utf8 => Box::new(column.as_string::<i32>().iter()),
                    DataType::LargeUtf8 => Box::new(column.as_string::<i64>().iter()),
                    DataType::Utf8View => Box::new(column.as_string_view().iter()),
                    _ => continue,
                };
                for (offset, cell) in cells.enumerate() {
                    if let Some(kind) = cell.and_then(|cell| self.find(cell)) {
                        return Err(ScanError::Leak(ParquetLeak {
                            file: name.to_owned(),
                            column: field.name().clone(),
                            row: first_row + offset,
                            kind: kind.to_owned(),
                        }));
                    }
                }
            }
            first_row += batch.num_rows();
        }
        Ok(())
    }
}

/// Why a parquet file may not leave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Leak(#[from] ParquetLeak),
    #[error("cannot check {0}")]
    Read(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests(values: &[(&str, &str)]) -> IdentifierDigests {
        IdentifierDigests { digests: values.iter().map(|(kind, value)| (digest(&value.to_uppercase()), (*kind).to_owned())).collect() }
    }

    #[test]
    fn finds_identifiers_whole_in_words_and_spaced_out() {
        let known = digests(&[("MRN", "40012345"), ("accession number", "acc-77"), ("study UID", "1.2.3.4.5"), ("NHS number", "9434765919")]);
        for (cell, kind) in [
            ("40012345", Some("MRN")),
            (" 40012345 ", Some("MRN")),
            ("patient 40012345 seen", Some("MRN")),
            ("ACC-77", Some("accession number")),
            ("study 1.2.3.4.5.", Some("study UID")),
            ("943 476 5919", Some("NHS number")),
            ("4001234", None),
            ("400123456", None),
            ("1.2.3.4.56", None),
            ("", None),
        ] {
            assert_eq!(known.find(cell), kind, "{cell:?}");
        }
    }
}
