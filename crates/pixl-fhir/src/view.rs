//! SQL on FHIR v2 ViewDefinitions: parsed, checked once ([`View::compile`]), then run
//! over each resource to give rows ([`View::rows`]).
//!
//! Semantics follow the specification: a select's own columns, its nested selects and its
//! `unionAll` are combined as a cartesian product; `forEach` gives one set of rows per
//! item, `forEachOrNull` one row of nulls when there is none, `repeat` walks its paths
//! recursively (depth first); the view's `where` paths must each give one boolean;
//! `%rowIndex` is the 0-based index of the item within the nearest iterating select.

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;
use serde_json::Value;

use crate::fhirpath::{self, Env, Expr, FhirPathError, Item};

/// Why a view cannot be used, or failed on a resource. Messages name the view's parts
/// (column, path), never a value of the data.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("the ViewDefinition is not valid JSON of the expected shape at {path}: {message}")]
    Shape { path: String, message: String },
    #[error("the ViewDefinition names no resource type")]
    NoResource,
    #[error("constant {0:?} has no value[x]")]
    ConstantWithoutValue(String),
    #[error("constant {0:?} has more than one value[x]")]
    ConstantTwoValues(String),
    #[error("path {path:?}: {source}")]
    Path { path: String, source: FhirPathError },
    #[error("path {path:?} uses {name}(), which this engine does not support")]
    UnknownFunction { path: String, name: String },
    #[error("path {path:?} uses the undefined constant %{name}")]
    UndefinedConstant { path: String, name: String },
    #[error("a select has both forEach and forEachOrNull")]
    TwoIterations,
    #[error("the branches of a unionAll have different columns ({first:?} and {other:?})")]
    UnionColumns { first: Vec<String>, other: Vec<String> },
    #[error("column name {0:?} is used twice")]
    DuplicateColumn(String),
    #[error("column name {0:?} is not valid (letters, digits and _, starting with a letter)")]
    BadColumnName(String),
    #[error("column {column:?} gave more than one value and is not declared collection: true")]
    NotSingle { column: String },
    #[error("where path {path:?} did not give a single boolean")]
    WhereNotBoolean { path: String },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ViewJson {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    constant: Vec<serde_json::Map<String, Value>>,
    #[serde(default)]
    select: Vec<SelectJson>,
    #[serde(default, rename = "where")]
    where_: Vec<WhereJson>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SelectJson {
    #[serde(default)]
    column: Vec<ColumnJson>,
    #[serde(default)]
    select: Vec<SelectJson>,
    #[serde(default)]
    for_each: Option<String>,
    #[serde(default)]
    for_each_or_null: Option<String>,
    #[serde(default)]
    repeat: Option<Vec<String>>,
    #[serde(default)]
    union_all: Vec<SelectJson>,
}

#[derive(Debug, Deserialize)]
struct ColumnJson {
    name: String,
    path: String,
    #[serde(default, rename = "type")]
    ty: Option<String>,
    #[serde(default)]
    collection: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct WhereJson {
    path: String,
}

/// A column of a view's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// The declared FHIR type (`string`, `integer`, `dateTime`, ...), if any.
    pub ty: Option<String>,
    pub collection: bool,
}

#[derive(Debug)]
enum Iteration {
    None,
    ForEach(Expr),
    ForEachOrNull(Expr),
    Repeat(Vec<Expr>),
}

#[derive(Debug)]
struct Node {
    iteration: Iteration,
    /// Own columns: expression, name, collection.
    columns: Vec<(Expr, String, bool)>,
    selects: Vec<Node>,
    union: Vec<Node>,
    /// Number of output columns this node gives (own, nested, union).
    width: usize,
}

/// A checked ViewDefinition, ready to run.
#[derive(Debug)]
pub struct View {
    pub name: String,
    pub resource: String,
    pub columns: Vec<Column>,
    root: Node,
    wheres: Vec<(Expr, String)>,
    constants: HashMap<String, Item<'static>>,
}

/// One output row: a value per column (JSON null when absent; an array for collection
/// columns).
pub type Row = Vec<Value>;

impl View {
    /// Parses and checks a ViewDefinition (JSON).
    pub fn from_json(json: &Value) -> Result<Self, ViewError> {
        let parsed: ViewJson = serde_path_to_error::deserialize(json).map_err(|e| ViewError::Shape {
            path: e.path().to_string(),
            // serde's message names the expected shape; values of a view are not secret.
            message: e.inner().to_string(),
        })?;
        Self::compile(parsed)
    }

    fn compile(parsed: ViewJson) -> Result<Self, ViewError> {
        let resource = parsed.resource.filter(|r| !r.is_empty()).ok_or(ViewError::NoResource)?;
        let mut constants = HashMap::new();
        for constant in parsed.constant {
            let name = constant.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            let values: Vec<(&String, &Value)> = constant.iter().filter(|(k, _)| k.starts_with("value")).collect();
            let item = match values.as_slice() {
                [] => return Err(ViewError::ConstantWithoutValue(name)),
                [(key, value)] => constant_item(key, value).ok_or_else(|| ViewError::ConstantWithoutValue(name.clone()))?,
                _ => return Err(ViewError::ConstantTwoValues(name)),
            };
            constants.insert(name, item);
        }
        let mut columns = Vec::new();
        let compile_path = |path: &str| -> Result<Expr, ViewError> {
            let expr = fhirpath::parse(path).map_err(|source| ViewError::Path { path: path.to_owned(), source })?;
            let mut functions = BTreeSet::new();
            functions_used(&expr, &mut functions);
            if let Some(name) = functions.into_iter().find(|f| !fhirpath::FUNCTIONS.contains(&f.as_str())) {
                return Err(ViewError::UnknownFunction { path: path.to_owned(), name });
            }
            let mut used = BTreeSet::new();
            constants_used(&expr, &mut used);
            for name in used {
                if !constants.contains_key(&name) && !matches!(name.as_str(), "rowIndex" | "resource" | "rootResource" | "context" | "ucum") {
                    return Err(ViewError::UndefinedConstant { path: path.to_owned(), name });
                }
            }
            Ok(expr)
        };
        let root_selects = parsed.select.into_iter().map(|s| compile_select(s, &compile_path, &mut columns)).collect::<Result<Vec<_>, _>>()?;
        let width = root_selects.iter().map(|s| s.width).sum();
        let root = Node { iteration: Iteration::None, columns: Vec::new(), selects: root_selects, union: Vec::new(), width };
        let mut seen = BTreeSet::new();
        for column in &columns {
            let valid = column.name.starts_with(|c: char| c.is_ascii_alphabetic()) && column.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(ViewError::BadColumnName(column.name.clone()));
            }
            if !seen.insert(column.name.clone()) {
                return Err(ViewError::DuplicateColumn(column.name.clone()));
            }
        }
        let wheres = parsed.where_.into_iter().map(|w| Ok((compile_path(&w.path)?, w.path))).collect::<Result<Vec<_>, ViewError>>()?;
        let name = parsed.name.unwrap_or_else(|| resource.to_lowercase());
        Ok(Self { name, resource, columns, root, wheres, constants })
    }

    /// The rows `resource` gives (none if it is of another type or fails a `where`).
    pub fn rows(&self, resource: &Value, out: &mut Vec<Row>) -> Result<(), ViewError> {
        if resource.get("resourceType").and_then(Value::as_str) != Some(self.resource.as_str()) {
            return Ok(());
        }
        let focus = Item::node(resource);
        let env = Env { resource, constants: &self.constants, row_index: 0 };
        for (expr, path) in &self.wheres {
            let result = fhirpath::evaluate(expr, std::slice::from_ref(&focus), &env).map_err(|source| ViewError::Path { path: path.clone(), source })?;
            if result.is_empty() {
                return Ok(());
            }
            if !fhirpath::is_single_bool(&result) {
                return Err(ViewError::WhereNotBoolean { path: path.clone() });
            }
            if fhirpath::to_bool(&result).ok().flatten() != Some(true) {
                return Ok(());
            }
        }
        out.extend(self.node_rows(&self.root, &focus, 0, resource)?);
        Ok(())
    }

    fn node_rows<'a>(&self, node: &Node, focus: &Item<'a>, row_index: i64, resource: &'a Value) -> Result<Vec<Row>, ViewError> {
        let env = Env { resource, constants: &self.constants, row_index };
        let items = |expr: &Expr| {
            fhirpath::evaluate(expr, std::slice::from_ref(focus), &env).map_err(|source| ViewError::Path { path: String::from("forEach"), source })
        };
        match &node.iteration {
            Iteration::None => self.combine(node, focus, row_index, resource),
            Iteration::ForEach(expr) => {
                let mut rows = Vec::new();
                for (index, item) in items(expr)?.iter().enumerate() {
                    rows.extend(self.combine(node, item, index as i64, resource)?);
                }
                Ok(rows)
            }
            Iteration::ForEachOrNull(expr) => {
                let found = items(expr)?;
                if found.is_empty() {
                    return self.null_row(node, row_index, resource);
                }
                let mut rows = Vec::new();
                for (index, item) in found.iter().enumerate() {
                    rows.extend(self.combine(node, item, index as i64, resource)?);
                }
                Ok(rows)
            }
            Iteration::Repeat(paths) => {
                let mut found = Vec::new();
                self.walk(paths, focus, &env, &mut found, 0)?;
                let mut rows = Vec::new();
                for (index, item) in found.iter().enumerate() {
                    rows.extend(self.combine(node, item, index as i64, resource)?);
                }
                Ok(rows)
            }
        }
    }

    /// The one row of `forEachOrNull` without items: its own columns evaluated on an
    /// empty focus (so `%rowIndex` is 0 and paths are null), nulls for everything nested.
    fn null_row(&self, node: &Node, _row_index: i64, resource: &Value) -> Result<Vec<Row>, ViewError> {
        let env = Env { resource, constants: &self.constants, row_index: 0 };
        let mut row = Vec::with_capacity(node.width);
        for (expr, name, collection) in &node.columns {
            let result = fhirpath::evaluate(expr, &[], &env).map_err(|source| ViewError::Path { path: name.clone(), source })?;
            row.push(cell(&result, name, *collection)?);
        }
        row.resize(node.width, Value::Null);
        Ok(vec![row])
    }

    /// Depth-first, pre-order: every item each path gives, then that item's own.
    fn walk<'a>(&self, paths: &[Expr], focus: &Item<'a>, env: &Env<'a, '_>, out: &mut Vec<Item<'a>>, depth: usize) -> Result<(), ViewError> {
        // FHIR resources are trees; a bound keeps a malicious nesting from exhausting the stack.
        if depth > 64 {
            return Ok(());
        }
        for path in paths {
            let children =
                fhirpath::evaluate(path, std::slice::from_ref(focus), env).map_err(|source| ViewError::Path { path: String::from("repeat"), source })?;
            for child in children {
                out.push(child.clone());
                self.walk(paths, &child, env, out, depth + 1)?;
            }
        }
        Ok(())
    }

    fn combine<'a>(&self, node: &Node, focus: &Item<'a>, row_index: i64, resource: &'a Value) -> Result<Vec<Row>, ViewError> {
        let env = Env { resource, constants: &self.constants, row_index };
        let mut own = Vec::with_capacity(node.columns.len());
        for (expr, name, collection) in &node.columns {
            let result = fhirpath::evaluate(expr, std::slice::from_ref(focus), &env).map_err(|source| ViewError::Path { path: name.clone(), source })?;
            own.push(cell(&result, name, *collection)?);
        }
        let mut rows: Vec<Row> = vec![own];
        for select in &node.selects {
            let part = self.node_rows(select, focus, row_index, resource)?;
            rows = product(rows, &part);
        }
        if !node.union.is_empty() {
            let mut part = Vec::new();
            for branch in &node.union {
                part.extend(self.node_rows(branch, focus, row_index, resource)?);
            }
            rows = product(rows, &part);
        }
        Ok(rows)
    }
}

/// A column's value from its path's result.
fn cell(result: &[Item<'_>], name: &str, collection: bool) -> Result<Value, ViewError> {
    Ok(if collection {
        Value::Array(result.iter().map(Item::to_json).collect())
    } else {
        match result {
            [] => Value::Null,
            [one] => one.to_json(),
            _ => return Err(ViewError::NotSingle { column: name.to_owned() }),
        }
    })
}

fn product(left: Vec<Row>, right: &[Row]) -> Vec<Row> {
    let mut out = Vec::with_capacity(left.len() * right.len());
    for l in &left {
        for r in right {
            let mut row = Vec::with_capacity(l.len() + r.len());
            row.extend_from_slice(l);
            row.extend_from_slice(r);
            out.push(row);
        }
    }
    out
}

fn compile_select(select: SelectJson, compile_path: &dyn Fn(&str) -> Result<Expr, ViewError>, columns: &mut Vec<Column>) -> Result<Node, ViewError> {
    let iteration = match (select.for_each, select.for_each_or_null, select.repeat) {
        (Some(_), Some(_), _) => return Err(ViewError::TwoIterations),
        (Some(path), None, None) => Iteration::ForEach(compile_path(&path)?),
        (None, Some(path), None) => Iteration::ForEachOrNull(compile_path(&path)?),
        (None, None, Some(paths)) => Iteration::Repeat(paths.iter().map(|p| compile_path(p)).collect::<Result<_, _>>()?),
        (None, None, None) => Iteration::None,
        _ => return Err(ViewError::TwoIterations),
    };
    let start = columns.len();
    let mut own = Vec::new();
    for column in select.column {
        own.push((compile_path(&column.path)?, column.name.clone(), column.collection == Some(true)));
        columns.push(Column { name: column.name, ty: column.ty, collection: column.collection == Some(true) });
    }
    let selects = select.select.into_iter().map(|s| compile_select(s, compile_path, columns)).collect::<Result<Vec<_>, _>>()?;
    let mut union = Vec::new();
    let mut union_columns: Option<Vec<String>> = None;
    for branch in select.union_all {
        let mut branch_columns = Vec::new();
        let node = compile_select(branch, compile_path, &mut branch_columns)?;
        let names: Vec<String> = branch_columns.iter().map(|c| c.name.clone()).collect();
        match &union_columns {
            None => {
                union_columns = Some(names);
                columns.extend(branch_columns);
            }
            Some(first) if *first != names => return Err(ViewError::UnionColumns { first: first.clone(), other: names }),
            Some(_) => {}
        }
        union.push(node);
    }
    let width = columns.len() - start;
    Ok(Node { iteration, columns: own, selects, union, width })
}

/// Every function name an expression calls.
fn functions_used(expr: &Expr, out: &mut BTreeSet<String>) {
    expr.visit(&mut |e| {
        if let Expr::Call(name, _) | Expr::Method(_, name, _) = e {
            out.insert(name.clone());
        }
    });
}

/// Every `%constant` an expression reads.
fn constants_used(expr: &Expr, out: &mut BTreeSet<String>) {
    expr.visit(&mut |e| {
        if let Expr::Constant(name) = e {
            out.insert(name.clone());
        }
    });
}

/// A constant's `value[x]` as a FHIRPath item.
fn constant_item(key: &str, value: &Value) -> Option<Item<'static>> {
    let ty = key.strip_prefix("value")?;
    Some(match (ty, value) {
        ("Boolean", Value::Bool(b)) => Item::Bool(*b),
        ("Integer" | "Integer64" | "PositiveInt" | "UnsignedInt", v) => Item::Int(v.as_i64().or_else(|| v.as_str()?.parse().ok())?),
        ("Decimal", v) => Item::Dec(v.as_f64().or_else(|| v.as_str()?.parse().ok())?),
        ("Date", Value::String(s)) => Item::Date(s.clone()),
        ("DateTime" | "Instant", Value::String(s)) => Item::DateTime(s.clone()),
        ("Time", Value::String(s)) => Item::Time(s.clone()),
        (_, Value::String(s)) => Item::Str(s.clone()),
        _ => return None,
    })
}

/// Views from the workshop's shorthand: `{"Patient": [["id", "id"], ["family",
/// "name.family.first()"]], ...}` — one view per resource type, named after it (lower
/// case), with untyped single-valued columns.
pub fn views_from_shorthand(json: &Value) -> Result<Vec<View>, ViewError> {
    let shape = |message: &str, path: String| ViewError::Shape { path, message: message.to_owned() };
    let map = json.as_object().ok_or_else(|| shape("expected an object of resource type to [name, path] pairs", ".".into()))?;
    let mut views = Vec::new();
    for (resource, pairs) in map {
        let pairs = pairs.as_array().ok_or_else(|| shape("expected a list of [name, path] pairs", resource.clone()))?;
        let mut columns = Vec::new();
        for (i, pair) in pairs.iter().enumerate() {
            match pair.as_array().map(Vec::as_slice) {
                Some([Value::String(name), Value::String(path)]) => columns.push(serde_json::json!({"name": name, "path": path})),
                _ => return Err(shape("expected [name, path]", format!("{resource}[{i}]"))),
            }
        }
        views.push(View::from_json(&serde_json::json!({"name": resource.to_lowercase(), "resource": resource, "select": [{"column": columns}]}))?);
    }
    Ok(views)
}

/// Whether a JSON document looks like the workshop's shorthand rather than a
/// ViewDefinition.
pub fn is_shorthand(json: &Value) -> bool {
    json.as_object().is_some_and(|m| !m.is_empty() && m.values().all(|v| v.as_array().is_some_and(|a| a.iter().all(|p| p.is_array()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_read_the_functions_input_and_dates_compare() {
        let view = View::from_json(&json!({"resource": "Patient", "select": [{"forEach": "name", "column": [
            {"name": "official", "path": "iif(use = 'official', family, 'other')"}]}],
            "where": [{"path": "meta.lastUpdated >= @2020-01-01T00:00:00Z"}]}))
        .unwrap();
        let mut rows = Vec::new();
        let patient =
            json!({"resourceType": "Patient", "meta": {"lastUpdated": "2021-03-04T10:00:00Z"}, "name": [{"use": "official", "family": "F"}, {"family": "G"}]});
        view.rows(&patient, &mut rows).unwrap();
        assert_eq!(rows, vec![vec![json!("F")], vec![json!("other")]]);
        let mut older = patient.clone();
        older["meta"]["lastUpdated"] = json!("2019-03-04T10:00:00-05:00");
        rows.clear();
        view.rows(&older, &mut rows).unwrap();
        assert!(rows.is_empty());
    }

    #[test]
    fn an_unsupported_function_is_refused_when_the_view_is_read() {
        let error = View::from_json(&json!({"resource": "Patient", "select": [{"column": [{"name": "t", "path": "birthDate.toDate()"}]}]})).unwrap_err();
        assert!(error.to_string().contains("toDate()"), "{error}");
    }

    #[test]
    fn shorthand_becomes_a_view() {
        let doc = json!({"Patient": [["id", "id"], ["family", "name.family.first()"]]});
        assert!(is_shorthand(&doc));
        let views = views_from_shorthand(&doc).unwrap();
        let mut rows = Vec::new();
        views[0].rows(&json!({"resourceType": "Patient", "id": "p", "name": [{"family": "F"}, {"family": "G"}]}), &mut rows).unwrap();
        assert_eq!(rows, vec![vec![json!("p"), json!("F")]]);
        assert_eq!(views[0].name, "patient");
    }
}
