//! Evaluation of FHIRPath over FHIR resources in their JSON form, without a type model.
//!
//! Choice elements are found by their JSON names (`value` finds `valueQuantity` and
//! remembers `Quantity` as the item's type, which `ofType()` reads); other types are
//! inferred from the JSON (`resourceType`, booleans, integers, decimals, strings).
//! Errors never carry a value of the data, only the expression's own words.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::Value;

use super::FhirPathError;
use super::parse::{BinOp, Expr};

/// One item of a FHIRPath collection. Its `Debug` names the kind of item, never its value.
#[derive(Clone)]
pub enum Item<'a> {
    /// A node of the resource; `ty` is the type a choice element's name gave it
    /// (`Quantity` for `valueQuantity`).
    Node {
        value: &'a Value,
        ty: Option<&'a str>,
    },
    Bool(bool),
    Int(i64),
    Dec(f64),
    Str(String),
    Date(String),
    DateTime(String),
    Time(String),
}

impl std::fmt::Debug for Item<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Item::Node { .. } => "node",
            Item::Bool(_) => "boolean",
            Item::Int(_) => "integer",
            Item::Dec(_) => "decimal",
            Item::Str(_) => "string",
            Item::Date(_) => "date",
            Item::DateTime(_) => "dateTime",
            Item::Time(_) => "time",
        };
        f.write_str(kind)
    }
}

impl<'a> Item<'a> {
    pub fn node(value: &'a Value) -> Self {
        Item::Node { value, ty: None }
    }

    /// The item as a JSON value (nodes as they are, literals converted).
    pub fn to_json(&self) -> Value {
        match self {
            Item::Node { value, .. } => (*value).clone(),
            Item::Bool(b) => Value::Bool(*b),
            Item::Int(i) => Value::from(*i),
            Item::Dec(d) => serde_json::Number::from_f64(*d).map(Value::Number).unwrap_or(Value::Null),
            Item::Str(s) | Item::Date(s) | Item::DateTime(s) | Item::Time(s) => Value::String(s.clone()),
        }
    }

    /// The item's primitive value, if it has one.
    fn primitive(&self) -> Option<Prim<'_>> {
        Some(match self {
            Item::Node { value, ty } => match value {
                Value::Bool(b) => Prim::Bool(*b),
                Value::Number(n) => match n.as_i64() {
                    Some(i) if !is_decimal_type(*ty) => Prim::Int(i),
                    _ => Prim::Dec(n.as_f64()?),
                },
                Value::String(s) => Prim::Str(s),
                _ => return None,
            },
            Item::Bool(b) => Prim::Bool(*b),
            Item::Int(i) => Prim::Int(*i),
            Item::Dec(d) => Prim::Dec(*d),
            Item::Str(s) | Item::Date(s) | Item::DateTime(s) | Item::Time(s) => Prim::Str(s),
        })
    }

    /// The item's type name (FHIR or System), as far as it is known.
    pub fn type_name(&self) -> Option<Cow<'a, str>> {
        Some(match self {
            Item::Node { ty: Some(ty), .. } => Cow::Borrowed(*ty),
            Item::Node { value, ty: None } => match value {
                Value::Bool(_) => Cow::Borrowed("boolean"),
                Value::Number(n) if n.is_i64() || n.is_u64() => Cow::Borrowed("integer"),
                Value::Number(_) => Cow::Borrowed("decimal"),
                Value::String(_) => Cow::Borrowed("string"),
                Value::Object(map) => Cow::Borrowed(map.get("resourceType")?.as_str()?),
                _ => return None,
            },
            Item::Bool(_) => Cow::Borrowed("boolean"),
            Item::Int(_) => Cow::Borrowed("integer"),
            Item::Dec(_) => Cow::Borrowed("decimal"),
            Item::Str(_) => Cow::Borrowed("string"),
            Item::Date(_) => Cow::Borrowed("date"),
            Item::DateTime(_) => Cow::Borrowed("dateTime"),
            Item::Time(_) => Cow::Borrowed("time"),
        })
    }
}

fn is_decimal_type(ty: Option<&str>) -> bool {
    ty.is_some_and(|t| t.eq_ignore_ascii_case("decimal"))
}

#[derive(Debug, Clone, Copy)]
enum Prim<'s> {
    Bool(bool),
    Int(i64),
    Dec(f64),
    Str(&'s str),
}

/// FHIR data types that name a choice element (`value[x]` → `valueQuantity`).
const CHOICE_TYPES: &[&str] = &[
    "Base64Binary",
    "Boolean",
    "Canonical",
    "Code",
    "Date",
    "DateTime",
    "Decimal",
    "Id",
    "Instant",
    "Integer",
    "Integer64",
    "Markdown",
    "Oid",
    "PositiveInt",
    "String",
    "Time",
    "UnsignedInt",
    "Uri",
    "Url",
    "Uuid",
    "Address",
    "Age",
    "Annotation",
    "Attachment",
    "CodeableConcept",
    "CodeableReference",
    "Coding",
    "ContactPoint",
    "Count",
    "Distance",
    "Duration",
    "HumanName",
    "Identifier",
    "Money",
    "Period",
    "Quantity",
    "Range",
    "Ratio",
    "RatioRange",
    "Reference",
    "SampledData",
    "Signature",
    "Timing",
    "ContactDetail",
    "Contributor",
    "DataRequirement",
    "Expression",
    "ParameterDefinition",
    "RelatedArtifact",
    "TriggerDefinition",
    "UsageContext",
    "Availability",
    "ExtendedContactDetail",
    "Dosage",
    "Meta",
];

/// What an evaluation can see besides its focus. Its `Debug` shows no value.
pub struct Env<'a, 'c> {
    /// The resource being evaluated (`%resource`, `getResourceKey()` at the root).
    pub resource: &'a Value,
    /// The view's constants and `%rowIndex`.
    pub constants: &'c HashMap<String, Item<'static>>,
    pub row_index: i64,
}

impl std::fmt::Debug for Env<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").field("constants", &self.constants.len()).field("row_index", &self.row_index).finish_non_exhaustive()
    }
}

type Collection<'a> = Vec<Item<'a>>;

fn eval_err(message: impl Into<String>) -> FhirPathError {
    FhirPathError::Eval(message.into())
}

/// Evaluates `expr` with `focus` as its input collection.
pub fn evaluate<'a>(expr: &Expr, focus: &[Item<'a>], env: &Env<'a, '_>) -> Result<Collection<'a>, FhirPathError> {
    eval(expr, focus, None, env)
}

/// `this`: the `$this` and `$index` of an enclosing function's iteration.
fn eval<'a>(expr: &Expr, focus: &[Item<'a>], this: Option<(&Item<'a>, usize)>, env: &Env<'a, '_>) -> Result<Collection<'a>, FhirPathError> {
    Ok(match expr {
        Expr::Empty => Vec::new(),
        Expr::Bool(b) => vec![Item::Bool(*b)],
        Expr::Str(s) => vec![Item::Str(s.clone())],
        Expr::Int(i) => vec![Item::Int(*i)],
        Expr::Dec(d) => vec![Item::Dec(*d)],
        Expr::Date(s) => vec![Item::Date(s.clone())],
        Expr::DateTime(s) => vec![Item::DateTime(s.clone())],
        Expr::Time(s) => vec![Item::Time(s.clone())],
        Expr::Constant(name) => match name.as_str() {
            "rowIndex" => vec![Item::Int(env.row_index)],
            "resource" | "rootResource" | "context" => vec![Item::node(env.resource)],
            "ucum" => vec![Item::Str("http://unitsofmeasure.org".into())],
            _ => match env.constants.get(name) {
                Some(item) => vec![item.clone()],
                None => return Err(eval_err(format!("undefined constant %{name}"))),
            },
        },
        Expr::This => match this {
            Some((item, _)) => vec![item.clone()],
            None => focus.to_vec(),
        },
        Expr::Index => match this {
            Some((_, index)) => vec![Item::Int(index as i64)],
            None => return Err(eval_err("$index outside an iterating function")),
        },
        Expr::Member(name) => {
            let input: Vec<Item<'a>> = match this {
                Some((item, _)) => vec![item.clone()],
                None => focus.to_vec(),
            };
            // `Patient.name`: a leading type name selects resources of that type.
            if name.starts_with(|c: char| c.is_ascii_uppercase()) {
                let typed: Vec<Item<'a>> = input.iter().filter(|i| i.type_name().as_deref() == Some(name.as_str())).cloned().collect();
                if !typed.is_empty() {
                    return Ok(typed);
                }
            }
            children(&input, name)
        }
        Expr::Child(base, name) => children(&eval(base, focus, this, env)?, name),
        Expr::Call(name, args) => {
            let input: Vec<Item<'a>> = match this {
                Some((item, _)) => vec![item.clone()],
                None => focus.to_vec(),
            };
            call(name, &input, args, this, env)?
        }
        Expr::Method(base, name, args) => {
            let input = eval(base, focus, this, env)?;
            call(name, &input, args, this, env)?
        }
        Expr::Indexer(base, index) => {
            let input = eval(base, focus, this, env)?;
            let index = eval(index, focus, this, env)?;
            match single_int(&index)? {
                Some(i) if i >= 0 => input.into_iter().nth(i as usize).into_iter().collect(),
                _ => Vec::new(),
            }
        }
        Expr::Negate(inner) => {
            let value = eval(inner, focus, this, env)?;
            match singleton(&value)?.and_then(|i| i.primitive()) {
                None => Vec::new(),
                Some(Prim::Int(i)) => vec![Item::Int(-i)],
                Some(Prim::Dec(d)) => vec![Item::Dec(-d)],
                Some(_) => return Err(eval_err("unary minus needs a number")),
            }
        }
        Expr::Is(inner, type_name) => {
            let value = eval(inner, focus, this, env)?;
            match singleton(&value)? {
                None => Vec::new(),
                Some(item) => vec![Item::Bool(is_type(item, type_name))],
            }
        }
        Expr::As(inner, type_name) => eval(inner, focus, this, env)?.into_iter().filter(|i| is_type(i, type_name)).collect(),
        Expr::Binary(op, left, right) => binary(*op, left, right, focus, this, env)?,
    })
}

/// The children named `name` of every item (arrays flattened; choice elements found by
/// their typed names).
fn children<'a>(input: &[Item<'a>], name: &str) -> Collection<'a> {
    let mut out = Vec::new();
    for item in input {
        let Item::Node { value: Value::Object(map), .. } = item else { continue };
        if let Some(value) = map.get(name) {
            push_flat(&mut out, value, None);
            continue;
        }
        for (key, value) in map {
            if let Some(suffix) = key.strip_prefix(name)
                && CHOICE_TYPES.contains(&suffix)
            {
                push_flat(&mut out, value, Some(suffix));
            }
        }
    }
    out
}

fn push_flat<'a>(out: &mut Collection<'a>, value: &'a Value, ty: Option<&'a str>) {
    match value {
        Value::Array(items) => out.extend(items.iter().filter(|v| !v.is_null()).map(|value| Item::Node { value, ty })),
        Value::Null => {}
        value => out.push(Item::Node { value, ty }),
    }
}

/// Whether `item` is of type `type_name` (case-insensitive for the first letter, so
/// `ofType(string)` matches `valueString`; namespaces dropped).
fn is_type(item: &Item<'_>, type_name: &str) -> bool {
    let Some(actual) = item.type_name() else { return false };
    let wanted = type_name.rsplit('.').next().unwrap_or(type_name);
    if actual == wanted {
        return true;
    }
    let (mut a, mut w) = (actual.chars(), wanted.chars());
    match (a.next(), w.next()) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(&y) && a.as_str() == w.as_str() && is_primitive_name(wanted),
        _ => false,
    }
}

fn is_primitive_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase()) || matches!(name, "String" | "Boolean" | "Integer" | "Decimal" | "Date" | "DateTime" | "Time")
}

/// At most one item, or an error.
fn singleton<'c, 'a>(collection: &'c [Item<'a>]) -> Result<Option<&'c Item<'a>>, FhirPathError> {
    match collection {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(eval_err("a collection of more than one item where a single item is expected")),
    }
}

fn single_int(collection: &[Item<'_>]) -> Result<Option<i64>, FhirPathError> {
    match singleton(collection)?.and_then(|i| i.primitive()) {
        None => Ok(None),
        Some(Prim::Int(i)) => Ok(Some(i)),
        Some(_) => Err(eval_err("an integer is expected")),
    }
}

fn single_str(collection: &[Item<'_>]) -> Result<Option<String>, FhirPathError> {
    match singleton(collection)?.and_then(|i| i.primitive()) {
        None => Ok(None),
        Some(Prim::Str(s)) => Ok(Some(s.to_owned())),
        Some(_) => Err(eval_err("a string is expected")),
    }
}

/// Boolean evaluation of a collection (FHIRPath's singleton rules): empty → unknown, one
/// boolean → its value, one other item → true.
pub fn to_bool(collection: &[Item<'_>]) -> Result<Option<bool>, FhirPathError> {
    match singleton(collection)? {
        None => Ok(None),
        Some(item) => match item.primitive() {
            Some(Prim::Bool(b)) => Ok(Some(b)),
            _ => Ok(Some(true)),
        },
    }
}

/// Whether a collection is exactly one boolean.
pub fn is_single_bool(collection: &[Item<'_>]) -> bool {
    matches!(collection, [item] if matches!(item.primitive(), Some(Prim::Bool(_))))
}

fn equal(a: &Item<'_>, b: &Item<'_>) -> bool {
    match (a.primitive(), b.primitive()) {
        (Some(x), Some(y)) => match (x, y) {
            (Prim::Bool(x), Prim::Bool(y)) => x == y,
            (Prim::Int(x), Prim::Int(y)) => x == y,
            (Prim::Int(x), Prim::Dec(y)) | (Prim::Dec(y), Prim::Int(x)) => (x as f64) == y,
            (Prim::Dec(x), Prim::Dec(y)) => x == y,
            (Prim::Str(x), Prim::Str(y)) => x == y,
            _ => false,
        },
        (None, None) => a.to_json() == b.to_json(),
        _ => false,
    }
}

fn equivalent(a: &Item<'_>, b: &Item<'_>) -> bool {
    match (a.primitive(), b.primitive()) {
        (Some(Prim::Str(x)), Some(Prim::Str(y))) => {
            let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
            norm(x) == norm(y)
        }
        _ => equal(a, b),
    }
}

fn compare(a: &Item<'_>, b: &Item<'_>) -> Result<Option<std::cmp::Ordering>, FhirPathError> {
    Ok(match (a.primitive(), b.primitive()) {
        (Some(Prim::Int(x)), Some(Prim::Int(y))) => Some(x.cmp(&y)),
        (Some(Prim::Int(x)), Some(Prim::Dec(y))) => (x as f64).partial_cmp(&y),
        (Some(Prim::Dec(x)), Some(Prim::Int(y))) => x.partial_cmp(&(y as f64)),
        (Some(Prim::Dec(x)), Some(Prim::Dec(y))) => x.partial_cmp(&y),
        (Some(Prim::Str(x)), Some(Prim::Str(y))) => {
            // Dates and times of different precision cannot be ordered (empty result).
            let temporal = |i: &Item<'_>| matches!(i, Item::Date(_) | Item::DateTime(_) | Item::Time(_));
            if (temporal(a) || temporal(b)) && precision(x) != precision(y) { None } else { Some(x.cmp(y)) }
        }
        _ => return Err(eval_err("these values cannot be compared")),
    })
}

/// The number of date/time components given (`2020-01` → 2, `2020-01-02T10:00Z` → 5;
/// fractions of a second count with the seconds).
fn precision(text: &str) -> usize {
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None if text.contains(':') => ("", Some(text)),
        None => (text, None),
    };
    let date_parts = if date.is_empty() { 0 } else { date.split('-').count() };
    let time_parts = time.map_or(0, |t| {
        let t = t.split(['Z', '+', '-']).next().unwrap_or(t);
        if t.is_empty() { 0 } else { t.split(':').count() }
    });
    date_parts + time_parts
}

fn number(item: &Item<'_>) -> Option<Prim<'static>> {
    match item.primitive()? {
        Prim::Int(i) => Some(Prim::Int(i)),
        Prim::Dec(d) => Some(Prim::Dec(d)),
        _ => None,
    }
}

fn as_f64(p: Prim<'_>) -> f64 {
    match p {
        Prim::Int(i) => i as f64,
        Prim::Dec(d) => d,
        _ => f64::NAN,
    }
}

fn binary<'a>(
    op: BinOp,
    left: &Expr,
    right: &Expr,
    focus: &[Item<'a>],
    this: Option<(&Item<'a>, usize)>,
    env: &Env<'a, '_>,
) -> Result<Collection<'a>, FhirPathError> {
    let l = eval(left, focus, this, env)?;
    // Short-circuit where the specification allows it.
    match op {
        BinOp::And if to_bool(&l)? == Some(false) => return Ok(vec![Item::Bool(false)]),
        BinOp::Or if to_bool(&l)? == Some(true) => return Ok(vec![Item::Bool(true)]),
        BinOp::Implies if to_bool(&l)? == Some(false) => return Ok(vec![Item::Bool(true)]),
        _ => {}
    }
    let r = eval(right, focus, this, env)?;
    let boolean = |b: Option<bool>| b.map(|b| vec![Item::Bool(b)]).unwrap_or_default();
    Ok(match op {
        BinOp::And => {
            let (x, y) = (to_bool(&l)?, to_bool(&r)?);
            boolean(match (x, y) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            })
        }
        BinOp::Or => {
            let (x, y) = (to_bool(&l)?, to_bool(&r)?);
            boolean(match (x, y) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            })
        }
        BinOp::Xor => boolean(match (to_bool(&l)?, to_bool(&r)?) {
            (Some(x), Some(y)) => Some(x != y),
            _ => None,
        }),
        BinOp::Implies => boolean(match (to_bool(&l)?, to_bool(&r)?) {
            (Some(true), y) => y,
            (None, Some(true)) => Some(true),
            _ => None,
        }),
        BinOp::Eq | BinOp::Ne => {
            if l.is_empty() || r.is_empty() {
                return Ok(Vec::new());
            }
            let same = l.len() == r.len() && l.iter().zip(&r).all(|(a, b)| equal(a, b));
            vec![Item::Bool(same == (op == BinOp::Eq))]
        }
        BinOp::Equiv | BinOp::NotEquiv => {
            let same = l.len() == r.len() && l.iter().all(|a| r.iter().any(|b| equivalent(a, b)));
            vec![Item::Bool(same == (op == BinOp::Equiv))]
        }
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let (Some(a), Some(b)) = (singleton(&l)?, singleton(&r)?) else { return Ok(Vec::new()) };
            let Some(order) = compare(a, b)? else { return Ok(Vec::new()) };
            use std::cmp::Ordering::*;
            vec![Item::Bool(match op {
                BinOp::Lt => order == Less,
                BinOp::Le => order != Greater,
                BinOp::Gt => order == Greater,
                _ => order != Less,
            })]
        }
        BinOp::Union => {
            let mut out: Collection<'a> = Vec::new();
            for item in l.into_iter().chain(r) {
                if !out.iter().any(|o| equal(o, &item)) {
                    out.push(item);
                }
            }
            out
        }
        BinOp::In | BinOp::Contains => {
            let (needle, haystack) = if op == BinOp::In { (l, r) } else { (r, l) };
            match singleton(&needle)? {
                None => Vec::new(),
                Some(n) => vec![Item::Bool(haystack.iter().any(|h| equal(h, n)))],
            }
        }
        BinOp::Concat => {
            let text = |c: &[Item<'_>]| -> Result<String, FhirPathError> { Ok(single_str(c)?.unwrap_or_default()) };
            vec![Item::Str(text(&l)? + &text(&r)?)]
        }
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::IntDiv | BinOp::Mod => {
            let (Some(a), Some(b)) = (singleton(&l)?, singleton(&r)?) else { return Ok(Vec::new()) };
            if op == BinOp::Add
                && let (Some(Prim::Str(x)), Some(Prim::Str(y))) = (a.primitive(), b.primitive())
            {
                return Ok(vec![Item::Str(format!("{x}{y}"))]);
            }
            let (Some(x), Some(y)) = (number(a), number(b)) else { return Err(eval_err("arithmetic needs numbers")) };
            arithmetic(op, x, y).into_iter().collect()
        }
    })
}

fn arithmetic(op: BinOp, x: Prim<'_>, y: Prim<'_>) -> Option<Item<'static>> {
    if let (Prim::Int(a), Prim::Int(b)) = (x, y) {
        return match op {
            BinOp::Add => a.checked_add(b).map(Item::Int),
            BinOp::Sub => a.checked_sub(b).map(Item::Int),
            BinOp::Mul => a.checked_mul(b).map(Item::Int),
            BinOp::Div => (b != 0).then(|| Item::Dec(a as f64 / b as f64)),
            BinOp::IntDiv => a.checked_div(b).map(Item::Int),
            BinOp::Mod => a.checked_rem(b).map(Item::Int),
            _ => None,
        };
    }
    let (a, b) = (as_f64(x), as_f64(y));
    match op {
        BinOp::Add => Some(Item::Dec(a + b)),
        BinOp::Sub => Some(Item::Dec(a - b)),
        BinOp::Mul => Some(Item::Dec(a * b)),
        BinOp::Div => (b != 0.0).then(|| Item::Dec(a / b)),
        BinOp::IntDiv => (b != 0.0).then(|| Item::Int((a / b).trunc() as i64)),
        BinOp::Mod => (b != 0.0).then(|| Item::Dec(a % b)),
        _ => None,
    }
}

fn arity(name: &str, args: &[Expr], allowed: std::ops::RangeInclusive<usize>) -> Result<(), FhirPathError> {
    if allowed.contains(&args.len()) { Ok(()) } else { Err(eval_err(format!("{name}() takes {allowed:?} arguments, got {}", args.len()))) }
}

/// A type name given as a function argument (`ofType(Quantity)`, `getReferenceKey(Patient)`).
fn type_argument(name: &str, arg: &Expr) -> Result<String, FhirPathError> {
    match arg {
        Expr::Member(type_name) => Ok(type_name.clone()),
        Expr::Child(base, type_name) if matches!(**base, Expr::Member(_)) => Ok(type_name.clone()),
        _ => Err(eval_err(format!("{name}() needs a type name"))),
    }
}

fn call<'a>(name: &str, input: &[Item<'a>], args: &[Expr], _outer: Option<(&Item<'a>, usize)>, env: &Env<'a, '_>) -> Result<Collection<'a>, FhirPathError> {
    // Arguments that are not iterated are evaluated with the function's input as their
    // focus (`forEach: name` → `iif(use = 'official', family, {})` reads that name).
    let plain_arg = |i: usize| -> Result<Collection<'a>, FhirPathError> { eval(&args[i], input, None, env) };
    let each = |criteria: &Expr| -> Result<Vec<Collection<'a>>, FhirPathError> {
        input.iter().enumerate().map(|(index, item)| eval(criteria, std::slice::from_ref(item), Some((item, index)), env)).collect()
    };
    let boolean = |b: bool| vec![Item::Bool(b)];
    Ok(match name {
        "where" => {
            arity(name, args, 1..=1)?;
            let results = each(&args[0])?;
            let mut out = Vec::new();
            for (item, result) in input.iter().zip(results) {
                if to_bool(&result)? == Some(true) {
                    out.push(item.clone());
                }
            }
            out
        }
        "select" => {
            arity(name, args, 1..=1)?;
            each(&args[0])?.into_iter().flatten().collect()
        }
        "exists" => {
            arity(name, args, 0..=1)?;
            if args.is_empty() {
                boolean(!input.is_empty())
            } else {
                let mut any = false;
                for result in each(&args[0])? {
                    any |= to_bool(&result)? == Some(true);
                }
                boolean(any)
            }
        }
        "all" => {
            arity(name, args, 1..=1)?;
            let mut all = true;
            for result in each(&args[0])? {
                all &= to_bool(&result)? == Some(true);
            }
            boolean(all)
        }
        "empty" => {
            arity(name, args, 0..=0)?;
            boolean(input.is_empty())
        }
        "count" => {
            arity(name, args, 0..=0)?;
            vec![Item::Int(input.len() as i64)]
        }
        "first" => {
            arity(name, args, 0..=0)?;
            input.first().cloned().into_iter().collect()
        }
        "last" => {
            arity(name, args, 0..=0)?;
            input.last().cloned().into_iter().collect()
        }
        "tail" => {
            arity(name, args, 0..=0)?;
            input.iter().skip(1).cloned().collect()
        }
        "single" => {
            arity(name, args, 0..=0)?;
            singleton(input)?.cloned().into_iter().collect()
        }
        "skip" | "take" => {
            arity(name, args, 1..=1)?;
            let n = single_int(&plain_arg(0)?)?.unwrap_or(0).max(0) as usize;
            if name == "skip" { input.iter().skip(n).cloned().collect() } else { input.iter().take(n).cloned().collect() }
        }
        "distinct" => {
            arity(name, args, 0..=0)?;
            let mut out: Collection<'a> = Vec::new();
            for item in input {
                if !out.iter().any(|o| equal(o, item)) {
                    out.push(item.clone());
                }
            }
            out
        }
        "not" => {
            arity(name, args, 0..=0)?;
            to_bool(input)?.map(|b| boolean(!b)).unwrap_or_default()
        }
        "allTrue" | "anyTrue" | "allFalse" | "anyFalse" => {
            arity(name, args, 0..=0)?;
            let values: Vec<Option<bool>> = input.iter().map(|i| to_bool(std::slice::from_ref(i))).collect::<Result<_, _>>()?;
            boolean(match name {
                "allTrue" => values.iter().all(|v| *v == Some(true)),
                "anyTrue" => values.contains(&Some(true)),
                "allFalse" => values.iter().all(|v| *v == Some(false)),
                _ => values.contains(&Some(false)),
            })
        }
        "iif" => {
            arity(name, args, 2..=3)?;
            let condition = plain_arg(0)?;
            if to_bool(&condition)? == Some(true) {
                plain_arg(1)?
            } else if args.len() == 3 {
                plain_arg(2)?
            } else {
                Vec::new()
            }
        }
        "ofType" => {
            arity(name, args, 1..=1)?;
            let type_name = type_argument(name, &args[0])?;
            input.iter().filter(|i| is_type(i, &type_name)).cloned().collect()
        }
        "is" | "as" => {
            arity(name, args, 1..=1)?;
            let type_name = type_argument(name, &args[0])?;
            if name == "is" {
                match singleton(input)? {
                    None => Vec::new(),
                    Some(item) => boolean(is_type(item, &type_name)),
                }
            } else {
                input.iter().filter(|i| is_type(i, &type_name)).cloned().collect()
            }
        }
        "extension" => {
            arity(name, args, 1..=1)?;
            let url = single_str(&plain_arg(0)?)?.unwrap_or_default();
            children(input, "extension")
                .into_iter()
                .filter(|e| matches!(e, Item::Node { value, .. } if value.get("url").and_then(Value::as_str) == Some(url.as_str())))
                .collect()
        }
        "hasValue" => {
            arity(name, args, 0..=0)?;
            boolean(matches!(input, [item] if item.primitive().is_some()))
        }
        "join" => {
            arity(name, args, 0..=1)?;
            let separator = if args.is_empty() { String::new() } else { single_str(&plain_arg(0)?)?.unwrap_or_default() };
            let mut parts = Vec::with_capacity(input.len());
            for item in input {
                match item.primitive() {
                    Some(Prim::Str(s)) => parts.push(s.to_owned()),
                    _ => return Err(eval_err("join() needs strings")),
                }
            }
            vec![Item::Str(parts.join(&separator))]
        }
        "getResourceKey" => {
            arity(name, args, 0..=0)?;
            input
                .iter()
                .filter_map(|i| match i {
                    Item::Node { value, .. } => value.get("id").and_then(Value::as_str).map(|id| Item::Str(id.to_owned())),
                    _ => None,
                })
                .collect()
        }
        "getReferenceKey" => {
            arity(name, args, 0..=1)?;
            let wanted = args.first().map(|a| type_argument(name, a)).transpose()?;
            input
                .iter()
                .filter_map(|i| match i {
                    Item::Node { value, .. } => value.get("reference").and_then(Value::as_str),
                    _ => None,
                })
                .filter_map(reference_parts)
                .filter(|(ty, _)| wanted.as_deref().is_none_or(|w| w == *ty))
                .map(|(_, id)| Item::Str(id.to_owned()))
                .collect()
        }
        "toString" => {
            arity(name, args, 0..=0)?;
            match singleton(input)?.and_then(|i| i.primitive()) {
                None => Vec::new(),
                Some(Prim::Str(s)) => vec![Item::Str(s.to_owned())],
                Some(Prim::Int(i)) => vec![Item::Str(i.to_string())],
                Some(Prim::Dec(d)) => vec![Item::Str(d.to_string())],
                Some(Prim::Bool(b)) => vec![Item::Str(b.to_string())],
            }
        }
        "toInteger" => {
            arity(name, args, 0..=0)?;
            match singleton(input)?.and_then(|i| i.primitive()) {
                Some(Prim::Int(i)) => vec![Item::Int(i)],
                Some(Prim::Str(s)) => s.trim().parse().ok().map(Item::Int).into_iter().collect(),
                Some(Prim::Bool(b)) => vec![Item::Int(b as i64)],
                _ => Vec::new(),
            }
        }
        "toDecimal" => {
            arity(name, args, 0..=0)?;
            match singleton(input)?.and_then(|i| i.primitive()) {
                Some(p @ (Prim::Int(_) | Prim::Dec(_))) => vec![Item::Dec(as_f64(p))],
                Some(Prim::Str(s)) => s.trim().parse().ok().map(Item::Dec).into_iter().collect(),
                _ => Vec::new(),
            }
        }
        "lower" | "upper" | "length" | "trim" | "startsWith" | "endsWith" | "contains" | "matches" | "replace" | "substring" | "indexOf" => {
            string_function(name, input, args, &plain_arg)?
        }
        "lowBoundary" | "highBoundary" => {
            arity(name, args, 0..=1)?;
            let precision = if args.is_empty() { None } else { single_int(&plain_arg(0)?)? };
            match singleton(input)? {
                None => Vec::new(),
                Some(item) => super::boundary::boundary(item, name == "highBoundary", precision).into_iter().collect(),
            }
        }
        other => return Err(eval_err(format!("function {other}() is not supported"))),
    })
}

/// The functions this engine knows; a view using another is refused when compiled.
pub const FUNCTIONS: &[&str] = &[
    "where",
    "select",
    "exists",
    "all",
    "empty",
    "count",
    "first",
    "last",
    "tail",
    "single",
    "skip",
    "take",
    "distinct",
    "not",
    "allTrue",
    "anyTrue",
    "allFalse",
    "anyFalse",
    "iif",
    "ofType",
    "is",
    "as",
    "extension",
    "hasValue",
    "join",
    "getResourceKey",
    "getReferenceKey",
    "toString",
    "toInteger",
    "toDecimal",
    "lower",
    "upper",
    "length",
    "trim",
    "startsWith",
    "endsWith",
    "contains",
    "matches",
    "replace",
    "substring",
    "indexOf",
    "lowBoundary",
    "highBoundary",
];

/// `Patient/123`, `http://server/fhir/Patient/123/_history/2` → (`Patient`, `123`).
pub fn reference_parts(reference: &str) -> Option<(&str, &str)> {
    let without_history = match reference.find("/_history/") {
        Some(at) => &reference[..at],
        None => reference,
    };
    let mut parts = without_history.rsplitn(3, '/');
    let id = parts.next()?;
    let ty = parts.next()?;
    (!id.is_empty() && ty.starts_with(|c: char| c.is_ascii_uppercase())).then_some((ty, id))
}

fn string_function<'a>(
    name: &str,
    input: &[Item<'a>],
    args: &[Expr],
    plain_arg: &dyn Fn(usize) -> Result<Collection<'a>, FhirPathError>,
) -> Result<Collection<'a>, FhirPathError> {
    let Some(text) = single_str(input)? else { return Ok(Vec::new()) };
    let arg_str = |i: usize| -> Result<Option<String>, FhirPathError> { single_str(&plain_arg(i)?) };
    Ok(match name {
        "lower" => vec![Item::Str(text.to_lowercase())],
        "upper" => vec![Item::Str(text.to_uppercase())],
        "trim" => vec![Item::Str(text.trim().to_owned())],
        "length" => vec![Item::Int(text.chars().count() as i64)],
        "startsWith" | "endsWith" | "contains" | "matches" | "indexOf" => {
            arity(name, args, 1..=1)?;
            let Some(arg) = arg_str(0)? else { return Ok(Vec::new()) };
            match name {
                "startsWith" => vec![Item::Bool(text.starts_with(&arg))],
                "endsWith" => vec![Item::Bool(text.ends_with(&arg))],
                "contains" => vec![Item::Bool(text.contains(&arg))],
                "indexOf" => vec![Item::Int(text.find(&arg).map_or(-1, |at| text[..at].chars().count() as i64))],
                _ => {
                    let re = regex::Regex::new(&arg).map_err(|_| eval_err("matches() needs a valid regular expression"))?;
                    vec![Item::Bool(re.is_match(&text))]
                }
            }
        }
        "replace" => {
            arity(name, args, 2..=2)?;
            match (arg_str(0)?, arg_str(1)?) {
                (Some(from), Some(to)) => vec![Item::Str(text.replace(&from, &to))],
                _ => Vec::new(),
            }
        }
        _ => {
            arity(name, args, 1..=2)?;
            let start = single_int(&plain_arg(0)?)?.unwrap_or(0);
            let chars: Vec<char> = text.chars().collect();
            if start < 0 || start as usize >= chars.len() {
                return Ok(Vec::new());
            }
            let length = if args.len() == 2 { single_int(&plain_arg(1)?)?.unwrap_or(0).max(0) as usize } else { chars.len() };
            vec![Item::Str(chars[start as usize..].iter().take(length).collect())]
        }
    })
}
