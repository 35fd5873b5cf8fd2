//! One parquet file per view, written as rows arrive: rows are buffered up to a batch and
//! flushed as a record batch, row groups are bounded, so memory is bounded by the batch
//! and row-group sizes, never by the input. The file is written under a temporary name
//! and renamed when finished: a reader never sees half a table.
//!
//! Arrow types come from the columns' declared FHIR types: `boolean` → Boolean;
//! `integer`, `integer64`, `positiveInt`, `unsignedInt` → Int64; `decimal` → Float64;
//! everything else (`string`, `code`, `id`, `uri`, the date/time types, which FHIR allows
//! to be partial, and undeclared) → Utf8 (a non-string value as its JSON text);
//! `collection: true` → a List of that type.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use crate::view::{Column, Row};

/// Rows buffered before they become a record batch.
pub const BATCH_ROWS: usize = 8_192;
/// Rows per parquet row group.
pub const ROW_GROUP_ROWS: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Float,
    Text,
}

fn kind(ty: Option<&str>) -> Kind {
    match ty {
        Some("boolean") => Kind::Bool,
        Some("integer" | "integer64" | "positiveInt" | "unsignedInt") => Kind::Int,
        Some("decimal") => Kind::Float,
        _ => Kind::Text,
    }
}

fn data_type(kind: Kind) -> DataType {
    match kind {
        Kind::Bool => DataType::Boolean,
        Kind::Int => DataType::Int64,
        Kind::Float => DataType::Float64,
        Kind::Text => DataType::Utf8,
    }
}

/// The Arrow schema of a view's columns.
pub fn schema(columns: &[Column]) -> Schema {
    Schema::new(
        columns
            .iter()
            .map(|c| {
                let inner = data_type(kind(c.ty.as_deref()));
                if c.collection {
                    Field::new(&c.name, DataType::List(Arc::new(Field::new("item", inner, true))), true)
                } else {
                    Field::new(&c.name, inner, true)
                }
            })
            .collect::<Vec<_>>(),
    )
}

/// Why a table could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot write parquet {path}: {source}")]
    Parquet { path: PathBuf, source: parquet::errors::ParquetError },
    #[error("cannot build a batch of {path}: {source}")]
    Arrow { path: PathBuf, source: arrow_schema::ArrowError },
}

/// A parquet file being written.
pub struct TableWriter {
    path: PathBuf,
    temp: PathBuf,
    columns: Vec<Column>,
    kinds: Vec<Kind>,
    schema: Arc<Schema>,
    buffer: Vec<Row>,
    writer: Option<ArrowWriter<File>>,
    rows: u64,
    /// Values that did not fit their declared type (written as null), per column.
    pub mismatches: u64,
}

impl std::fmt::Debug for TableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter").field("path", &self.path).field("rows", &self.rows).finish_non_exhaustive()
    }
}

impl TableWriter {
    /// Starts `path` (written as `path.partial` until [`TableWriter::finish`]).
    pub fn create(path: &Path, columns: &[Column]) -> Result<Self, TableError> {
        let temp = path.with_extension("parquet.partial");
        let file = File::create(&temp).map_err(|source| TableError::Io { path: temp.clone(), source })?;
        let schema = Arc::new(schema(columns));
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(ROW_GROUP_ROWS)).build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|source| TableError::Parquet { path: temp.clone(), source })?;
        Ok(Self {
            path: path.to_owned(),
            temp,
            columns: columns.to_vec(),
            kinds: columns.iter().map(|c| kind(c.ty.as_deref())).collect(),
            schema,
            buffer: Vec::with_capacity(BATCH_ROWS),
            writer: Some(writer),
            rows: 0,
            mismatches: 0,
        })
    }

    pub fn push(&mut self, row: Row) -> Result<(), TableError> {
        self.buffer.push(row);
        self.rows += 1;
        if self.buffer.len() >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn flush(&mut self) -> Result<(), TableError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.buffer);
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for i in 0..self.columns.len() {
            let values = rows.iter().map(|r| r.get(i).unwrap_or(&Value::Null));
            let kind = self.kinds[i];
            arrays.push(if self.columns[i].collection { self.list_array(kind, values) } else { self.array(kind, values) });
        }
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(|source| TableError::Arrow { path: self.temp.clone(), source })?;
        self.writer.as_mut().expect("open until finished").write(&batch).map_err(|source| TableError::Parquet { path: self.temp.clone(), source })?;
        self.buffer = rows;
        self.buffer.clear();
        Ok(())
    }

    fn array<'v>(&mut self, kind: Kind, values: impl Iterator<Item = &'v Value>) -> ArrayRef {
        match kind {
            Kind::Bool => {
                let mut b = BooleanBuilder::new();
                for v in values {
                    b.append_option(self.as_bool(v));
                }
                Arc::new(b.finish())
            }
            Kind::Int => {
                let mut b = Int64Builder::new();
                for v in values {
                    b.append_option(self.as_int(v));
                }
                Arc::new(b.finish())
            }
            Kind::Float => {
                let mut b = Float64Builder::new();
                for v in values {
                    b.append_option(self.as_float(v));
                }
                Arc::new(b.finish())
            }
            Kind::Text => {
                let mut b = StringBuilder::new();
                for v in values {
                    b.append_option(as_text(v));
                }
                Arc::new(b.finish())
            }
        }
    }

    fn list_array<'v>(&mut self, kind: Kind, values: impl Iterator<Item = &'v Value>) -> ArrayRef {
        let items = |v: &'v Value| -> Option<&'v Vec<Value>> { v.as_array() };
        match kind {
            Kind::Bool => {
                let mut b = ListBuilder::new(BooleanBuilder::new());
                for v in values {
                    match items(v) {
                        Some(list) => {
                            for item in list {
                                let x = self.as_bool(item);
                                b.values().append_option(x);
                            }
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Arc::new(b.finish())
            }
            Kind::Int => {
                let mut b = ListBuilder::new(Int64Builder::new());
                for v in values {
                    match items(v) {
                        Some(list) => {
                            for item in list {
                                let x = self.as_int(item);
                                b.values().append_option(x);
                            }
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Arc::new(b.finish())
            }
            Kind::Float => {
                let mut b = ListBuilder::new(Float64Builder::new());
                for v in values {
                    match items(v) {
                        Some(list) => {
                            for item in list {
                                let x = self.as_float(item);
                                b.values().append_option(x);
                            }
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Arc::new(b.finish())
            }
            Kind::Text => {
                let mut b = ListBuilder::new(StringBuilder::new());
                for v in values {
                    match items(v) {
                        Some(list) => {
                            for item in list {
                                b.values().append_option(as_text(item));
                            }
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Arc::new(b.finish())
            }
        }
    }

    fn mismatch<T>(&mut self) -> Option<T> {
        self.mismatches += 1;
        None
    }

    fn as_bool(&mut self, v: &Value) -> Option<bool> {
        match v {
            Value::Null => None,
            Value::Bool(b) => Some(*b),
            _ => self.mismatch(),
        }
    }

    fn as_int(&mut self, v: &Value) -> Option<i64> {
        match v {
            Value::Null => None,
            Value::Number(n) => match n.as_i64() {
                Some(i) => Some(i),
                None => self.mismatch(),
            },
            Value::String(s) => match s.parse() {
                Ok(i) => Some(i),
                Err(_) => self.mismatch(),
            },
            _ => self.mismatch(),
        }
    }

    fn as_float(&mut self, v: &Value) -> Option<f64> {
        match v {
            Value::Null => None,
            Value::Number(n) => n.as_f64(),
            Value::String(s) => match s.parse() {
                Ok(f) => Some(f),
                Err(_) => self.mismatch(),
            },
            _ => self.mismatch(),
        }
    }

    /// Flushes, closes and renames the file into place; returns the number of rows.
    pub fn finish(mut self) -> Result<u64, TableError> {
        self.flush()?;
        let writer = self.writer.take().expect("open until finished");
        let file = writer.into_inner().map_err(|source| TableError::Parquet { path: self.temp.clone(), source })?;
        file.sync_all().map_err(|source| TableError::Io { path: self.temp.clone(), source })?;
        std::fs::rename(&self.temp, &self.path).map_err(|source| TableError::Io { path: self.path.clone(), source })?;
        Ok(self.rows)
    }
}

/// A table never finished (the conversion failed) leaves no partial file behind.
impl Drop for TableWriter {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}
