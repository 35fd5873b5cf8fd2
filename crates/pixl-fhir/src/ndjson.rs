//! NDJSON files of FHIR resources, read line by line with a bound on the line length.
//! Errors name the file and line and the kind of fault, never the line's content (serde's
//! own messages can quote values).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The default bound on one line (one resource): 64 MiB.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// A line that is not a resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("{path}:{line}: not valid JSON ({kind} error at column {column})")]
    Json { path: PathBuf, line: u64, kind: &'static str, column: usize },
    #[error("{path}:{line}: longer than {max} bytes")]
    TooLong { path: PathBuf, line: u64, max: usize },
    #[error("{path}:{line}: not a FHIR resource (no resourceType)")]
    NotAResource { path: PathBuf, line: u64 },
    #[error("{path}: no line of it is a FHIR resource (is it compressed, or not NDJSON?)")]
    NoResource { path: PathBuf },
    #[error("{path}:{line}: a {found} where the file holds {expected} resources")]
    WrongType { path: PathBuf, line: u64, expected: String, found: String },
}

/// Reads one NDJSON file. Its `Debug` shows no line.
pub struct NdjsonReader {
    path: PathBuf,
    reader: BufReader<File>,
    line: u64,
    max_line: usize,
    buf: Vec<u8>,
}

impl std::fmt::Debug for NdjsonReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NdjsonReader").field("path", &self.path).field("line", &self.line).finish_non_exhaustive()
    }
}

/// A resource type as read from the data, safe to print: a FHIR type name, or a placeholder.
pub fn printable_type(found: &str) -> String {
    if !found.is_empty() && found.len() <= 64 && found.chars().all(|c| c.is_ascii_alphanumeric()) && found.starts_with(|c: char| c.is_ascii_uppercase()) {
        found.to_owned()
    } else {
        "resource of another type".to_owned()
    }
}

impl NdjsonReader {
    pub fn open(path: &Path, max_line: usize) -> std::io::Result<Self> {
        Ok(Self { path: path.to_owned(), reader: BufReader::with_capacity(1 << 20, File::open(path)?), line: 0, max_line, buf: Vec::new() })
    }

    /// The next non-blank line as a resource; `None` at the end of the file.
    pub fn next_resource(&mut self) -> Option<std::io::Result<Result<Value, LineError>>> {
        loop {
            self.buf.clear();
            self.line += 1;
            let mut too_long = false;
            loop {
                let available = match self.reader.fill_buf() {
                    Ok(bytes) => bytes,
                    Err(e) => return Some(Err(e)),
                };
                if available.is_empty() {
                    break;
                }
                let (chunk, done) = match memchr(available) {
                    Some(at) => (&available[..at], Some(at + 1)),
                    None => (available, None),
                };
                if !too_long {
                    if self.buf.len() + chunk.len() > self.max_line {
                        too_long = true;
                        self.buf.clear();
                    } else {
                        self.buf.extend_from_slice(chunk);
                    }
                }
                let consumed = done.unwrap_or(available.len());
                self.reader.consume(consumed);
                if done.is_some() {
                    break;
                }
            }
            if too_long {
                return Some(Ok(Err(LineError::TooLong { path: self.path.clone(), line: self.line, max: self.max_line })));
            }
            if self.buf.is_empty() {
                // End of file (nothing read) or a blank line.
                if self.reader.fill_buf().map(|b| b.is_empty()).unwrap_or(true) {
                    return None;
                }
                continue;
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(Ok(self.parse()));
        }
    }

    fn parse(&self) -> Result<Value, LineError> {
        let value: Value = serde_json::from_slice(&self.buf).map_err(|e| LineError::Json {
            path: self.path.clone(),
            line: self.line,
            kind: match e.classify() {
                serde_json::error::Category::Syntax => "syntax",
                serde_json::error::Category::Eof => "unexpected end",
                serde_json::error::Category::Data => "data",
                serde_json::error::Category::Io => "read",
            },
            column: e.column(),
        })?;
        if value.get("resourceType").and_then(Value::as_str).is_none() {
            return Err(LineError::NotAResource { path: self.path.clone(), line: self.line });
        }
        Ok(value)
    }

    pub fn line(&self) -> u64 {
        self.line
    }
}

fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == b'\n')
}

/// The resource type of a file: that of its first resource (`None` when it has none).
pub fn file_type(path: &Path) -> std::io::Result<Option<String>> {
    let mut reader = NdjsonReader::open(path, MAX_LINE_BYTES)?;
    while let Some(next) = reader.next_resource() {
        if let Ok(resource) = next? {
            return Ok(resource.get("resourceType").and_then(Value::as_str).map(str::to_owned));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_checked_and_located() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Patient.ndjson");
        let long = format!("{{\"resourceType\":\"Patient\",\"x\":\"{}\"}}", "a".repeat(200));
        std::fs::write(
            &path,
            format!("{{\"resourceType\":\"Patient\",\"id\":\"1\"}}\r\n\n{{\"broken\n{{\"id\":\"2\"}}\n{long}\n{{\"resourceType\":\"Patient\",\"id\":\"3\"}}"),
        )
        .unwrap();
        let mut reader = NdjsonReader::open(&path, 100).unwrap();
        let mut seen = Vec::new();
        while let Some(next) = reader.next_resource() {
            seen.push(next.unwrap().map(|v| v["id"].as_str().unwrap().to_owned()).map_err(|e| e.to_string()));
        }
        assert_eq!(seen.len(), 5, "{seen:?}");
        assert_eq!(seen[0], Ok("1".into()));
        assert!(seen[1].as_ref().unwrap_err().contains(":3: not valid JSON"), "{seen:?}");
        assert!(seen[2].as_ref().unwrap_err().contains(":4: not a FHIR resource"), "{seen:?}");
        assert!(seen[3].as_ref().unwrap_err().contains(":5: longer than 100 bytes"), "{seen:?}");
        assert_eq!(seen[4], Ok("3".into()));
        assert_eq!(file_type(&path).unwrap().as_deref(), Some("Patient"));
    }
}
