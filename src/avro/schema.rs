//! Avro schemas as custos reads them: a resolved type tree (named types
//! inlined, logical types recognised), the classes a schema gives its
//! fields, and the JSON form custos writes derived schemas in.
//!
//! `apache-avro` validates every schema first (so what is parsed here is a
//! valid Avro schema) and gives the Parsing Canonical Form; this tree is what
//! the per-record code walks, with nothing left to look up by name.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::policy::{FieldPath, Segment};

/// The logical type of an `int`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntLogical {
    Plain,
    /// Days since 1970-01-01; custos reads it as `YYYY-MM-DD`.
    Date,
}

/// The logical type of a `long`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LongLogical {
    Plain,
    /// Epoch milliseconds: read as a number (what `event_time` expects).
    TimestampMillis,
    /// Epoch microseconds: read as an RFC 3339 time with microseconds.
    TimestampMicros,
    /// Epoch nanoseconds: read as an RFC 3339 time with nanoseconds.
    TimestampNanos,
}

/// A decimal's precision and scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecimalSpec {
    pub precision: u32,
    pub scale: u32,
}

/// One field of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub ty: Ty,
    pub doc: Option<String>,
    pub default: Option<Value>,
    /// Every other attribute as written (`classes`, `confluent:tags`, `order`, `aliases`, …).
    pub attrs: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Full name (`namespace.name`).
    pub name: String,
    pub doc: Option<String>,
    pub fields: Vec<Field>,
    /// Attributes other than type, name, namespace, doc and fields.
    pub attrs: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Enum {
    pub name: String,
    pub doc: Option<String>,
    pub symbols: Vec<String>,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fixed {
    pub name: String,
    pub size: usize,
    pub decimal: Option<DecimalSpec>,
}

/// An Avro type with named references resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    Null,
    Boolean,
    Int(IntLogical),
    Long(LongLogical),
    Float,
    Double,
    /// `bytes`, maybe a decimal.
    Bytes(Option<DecimalSpec>),
    /// `string`; `true` for the `uuid` logical type.
    String(bool),
    Record(Arc<Record>),
    Enum(Arc<Enum>),
    Fixed(Arc<Fixed>),
    Array(Box<Ty>),
    Map(Box<Ty>),
    Union(Vec<Ty>),
}

/// What a value of a type looks like once decoded for governance (the
/// engine governs JSON): text, a number, a boolean, null or a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Null,
    Bool,
    Number,
    Text,
    Container,
}

impl Ty {
    /// How values of this (non-union) type are seen by the engine.
    pub fn shape(&self) -> Shape {
        match self {
            Ty::Null => Shape::Null,
            Ty::Boolean => Shape::Bool,
            Ty::Int(IntLogical::Date) => Shape::Text,
            Ty::Int(_) | Ty::Float | Ty::Double => Shape::Number,
            Ty::Long(LongLogical::TimestampMicros | LongLogical::TimestampNanos) => Shape::Text,
            Ty::Long(_) => Shape::Number,
            Ty::Bytes(Some(_)) => Shape::Number,
            Ty::Fixed(f) if f.decimal.is_some() => Shape::Number,
            Ty::Bytes(None) | Ty::Fixed(_) | Ty::String(_) | Ty::Enum(_) => Shape::Text,
            Ty::Record(_) | Ty::Array(_) | Ty::Map(_) | Ty::Union(_) => Shape::Container,
        }
    }

    /// The branches of a union, or the type itself.
    pub fn branches(&self) -> &[Ty] {
        match self {
            Ty::Union(b) => b,
            other => std::slice::from_ref(other),
        }
    }

    /// What identifies a branch of a union: two branches may not share it.
    pub fn union_key(&self) -> String {
        match self {
            Ty::Null => "null".into(),
            Ty::Boolean => "boolean".into(),
            Ty::Int(_) => "int".into(),
            Ty::Long(_) => "long".into(),
            Ty::Float => "float".into(),
            Ty::Double => "double".into(),
            Ty::Bytes(_) => "bytes".into(),
            Ty::String(_) => "string".into(),
            Ty::Record(r) => r.name.clone(),
            Ty::Enum(e) => e.name.clone(),
            Ty::Fixed(f) => f.name.clone(),
            Ty::Array(_) => "array".into(),
            Ty::Map(_) => "map".into(),
            Ty::Union(_) => "union".into(),
        }
    }

    /// The name Avro's JSON encoding wraps a union branch in.
    pub fn branch_name(&self) -> String {
        self.union_key()
    }
}

/// A writer schema, parsed and resolved.
#[derive(Debug, Clone)]
pub struct Schema {
    pub root: Ty,
    /// The schema text as given.
    pub text: String,
    /// Parsing Canonical Form.
    pub canonical: String,
}

impl Schema {
    /// Parses a schema (JSON text).
    ///
    /// # Errors
    /// A description of what is wrong: invalid Avro, recursive types
    /// (custos cannot derive schemas for them), a root that is not a record.
    pub fn parse(text: &str) -> Result<Schema, String> {
        let parsed = apache_avro::Schema::parse_str(text)
            .map_err(|e| format!("not a valid Avro schema: {e}"))?;
        let json: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let mut p = Parser::default();
        let mut root = p.ty(&json, None)?;
        if !matches!(root, Ty::Record(_)) {
            return Err("the schema's top level is not a record: custos governs records".into());
        }
        let size = expanded(&root, &mut HashMap::new());
        if size > MAX_PATHS {
            return Err(format!(
                "the schema expands to {size} value paths (named types used many times over), more than the {MAX_PATHS} custos governs per schema"
            ));
        }
        let deep = depth(&root, &mut HashMap::new());
        if deep > MAX_DEPTH {
            return Err(format!(
                "the schema nests {deep} levels deep (records, arrays, maps, unions), more than the {MAX_DEPTH} custos governs"
            ));
        }
        let Ty::Record(r) = &mut root else {
            return Err("the schema's top level is not a record: custos governs records".into());
        };
        // Marks on the top-level record classify every field of it.
        let top = p.type_marks(&json, None)?;
        if !top.classes.is_empty() || !top.tags.is_empty() {
            let r = Arc::make_mut(r);
            for f in &mut r.fields {
                for (key, add) in [("classes", &top.classes), ("confluent:tags", &top.tags)] {
                    let mut list: Vec<Value> = f
                        .attrs
                        .get(key)
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    for a in add {
                        if !list.iter().any(|x| x == a) {
                            list.push(json!(a));
                        }
                    }
                    if !list.is_empty() {
                        f.attrs.insert(key.into(), Value::Array(list));
                    }
                }
            }
        }
        Ok(Schema {
            root,
            text: text.to_string(),
            canonical: parsed.canonical_form(),
        })
    }

    /// `sha256:` + hex SHA-256 of the Parsing Canonical Form.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.canonical)
    }
}

/// Most value paths a schema may expand to (every use of a named type
/// counts): compiling, deriving and explaining walk every path.
pub const MAX_PATHS: usize = 10_000;

/// Deepest nesting custos governs (the engine reads JSON to 128 levels; a
/// union and its branch count as two).
pub const MAX_DEPTH: usize = 60;

/// How deep a type nests, memoised per record.
fn depth(ty: &Ty, memo: &mut HashMap<String, usize>) -> usize {
    match ty {
        Ty::Record(r) => {
            if let Some(n) = memo.get(&r.name) {
                return *n;
            }
            let n = 1 + r
                .fields
                .iter()
                .map(|f| depth(&f.ty, memo))
                .max()
                .unwrap_or(0);
            memo.insert(r.name.clone(), n);
            n
        }
        Ty::Array(i) | Ty::Map(i) => 1 + depth(i, memo),
        Ty::Union(bs) => 1 + bs.iter().map(|b| depth(b, memo)).max().unwrap_or(0),
        _ => 1,
    }
}

/// The number of value paths of a type, named types counted at every use
/// (memoised per record, so counting itself stays linear).
fn expanded(ty: &Ty, memo: &mut HashMap<String, usize>) -> usize {
    match ty {
        Ty::Record(r) => {
            if let Some(n) = memo.get(&r.name) {
                return *n;
            }
            let n = r
                .fields
                .iter()
                .fold(1usize, |acc, f| acc.saturating_add(expanded(&f.ty, memo)));
            memo.insert(r.name.clone(), n);
            n
        }
        Ty::Array(i) | Ty::Map(i) => expanded(i, memo).saturating_add(1),
        Ty::Union(bs) => bs
            .iter()
            .fold(1usize, |acc, b| acc.saturating_add(expanded(b, memo))),
        _ => 1,
    }
}

/// `sha256:` + hex SHA-256 of a canonical form.
pub fn fingerprint(canonical: &str) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    )
}

#[derive(Default)]
struct Parser {
    named: HashMap<String, Ty>,
    /// Classes and tags written on a named type itself (a record, enum or
    /// fixed): they classify every field of that type.
    named_marks: HashMap<String, Marks>,
    /// Names being defined (a reference to one of them is recursion).
    open: Vec<String>,
}

/// Type names that are not references to named types.
const KEYWORDS: [&str; 14] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string", "record", "error",
    "enum", "fixed", "array", "map",
];

/// `classes` and `confluent:tags` values.
#[derive(Debug, Clone, Default)]
struct Marks {
    classes: Vec<String>,
    tags: Vec<String>,
}

impl Marks {
    fn merge(&mut self, other: Marks) -> Result<(), String> {
        for c in other.classes {
            if !self.classes.contains(&c) {
                self.classes.push(c);
            }
        }
        for t in other.tags {
            if !self.tags.contains(&t) {
                self.tags.push(t);
            }
        }
        if self.classes.len() > MAX_MARKS || self.tags.len() > MAX_MARKS {
            return Err(format!(
                "a field with more than {MAX_MARKS} classes or tags"
            ));
        }
        Ok(())
    }
}

/// The marks an object carries. Anything but a list of strings is refused:
/// a marking custos cannot read must not be silently ignored.
fn marks_of(o: &Map<String, Value>) -> Result<Marks, String> {
    let list = |key: &str| -> Result<Vec<String>, String> {
        match o.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(xs)) => xs
                .iter()
                .map(|x| {
                    x.as_str().map(str::to_string).ok_or_else(|| {
                        format!(
                            "`{key}` holds {x}, not a string: custos reads only lists of strings"
                        )
                    })
                })
                .collect(),
            Some(other) => Err(format!(
                "`{key}` is {other}, not a list of strings: custos reads only lists of strings"
            )),
        }
    };
    let dedupe = |mut xs: Vec<String>, key: &str| -> Result<Vec<String>, String> {
        xs.sort();
        xs.dedup();
        if xs.len() > MAX_MARKS {
            return Err(format!("`{key}` lists more than {MAX_MARKS} values"));
        }
        Ok(xs)
    };
    Ok(Marks {
        classes: dedupe(list("classes")?, "classes")?,
        tags: dedupe(list("confluent:tags")?, "confluent:tags")?,
    })
}

/// Most `classes` or `confluent:tags` values on one object, and most bytes
/// in a name or symbol: a schema is refused beyond them (compiling one
/// must stay cheap, whoever registered it).
const MAX_MARKS: usize = 64;
const MAX_NAME: usize = 256;

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME {
        return Err(format!(
            "a {what} name of {} bytes (custos takes up to {MAX_NAME})",
            name.len()
        ));
    }
    Ok(())
}

fn full_name(
    obj: &Map<String, Value>,
    ns: Option<&str>,
) -> Result<(String, Option<String>), String> {
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .ok_or("a named type without `name`")?;
    check_name("type", name)?;
    if name.contains('.') {
        let ns = name.rsplit_once('.').map(|(n, _)| n.to_string());
        return Ok((name.to_string(), ns));
    }
    let ns = match obj.get("namespace").and_then(Value::as_str) {
        Some(n) if n.len() > MAX_NAME => return Err(check_name("namespace", n).unwrap_err()),
        Some(n) => (!n.is_empty()).then(|| n.to_string()),
        None => ns.map(str::to_string),
    };
    Ok((
        match &ns {
            Some(n) => format!("{n}.{name}"),
            None => name.to_string(),
        },
        ns,
    ))
}

fn decimal_spec(obj: &Map<String, Value>) -> Option<DecimalSpec> {
    if obj.get("logicalType").and_then(Value::as_str) != Some("decimal") {
        return None;
    }
    let precision = obj.get("precision").and_then(Value::as_u64)? as u32;
    let scale = obj.get("scale").and_then(Value::as_u64).unwrap_or(0) as u32;
    (scale <= precision && precision > 0).then_some(DecimalSpec { precision, scale })
}

impl Parser {
    fn primitive(&self, name: &str, ns: Option<&str>) -> Result<Ty, String> {
        Ok(match name {
            "null" => Ty::Null,
            "boolean" => Ty::Boolean,
            "int" => Ty::Int(IntLogical::Plain),
            "long" => Ty::Long(LongLogical::Plain),
            "float" => Ty::Float,
            "double" => Ty::Double,
            "bytes" => Ty::Bytes(None),
            "string" => Ty::String(false),
            other => {
                let full = if other.contains('.') {
                    other.to_string()
                } else {
                    match ns {
                        Some(n) => format!("{n}.{other}"),
                        None => other.to_string(),
                    }
                };
                if self.open.iter().any(|o| *o == full || *o == other) {
                    return Err(format!(
                        "type `{full}` refers to itself: custos does not govern recursive schemas"
                    ));
                }
                self.named
                    .get(&full)
                    .or_else(|| self.named.get(other))
                    .cloned()
                    .ok_or_else(|| format!("unknown type `{other}`"))?
            }
        })
    }

    /// The marks on a field's type itself (a type object, a union branch, an
    /// array's items, a map's values, a named type referred to): they
    /// classify the field, as the field's own would.
    fn type_marks(&self, v: &Value, ns: Option<&str>) -> Result<Marks, String> {
        let mut m = Marks::default();
        match v {
            Value::String(name) => {
                let full = match ns {
                    Some(n) if !name.contains('.') => format!("{n}.{name}"),
                    _ => name.clone(),
                };
                if let Some(x) = self
                    .named_marks
                    .get(&full)
                    .or_else(|| self.named_marks.get(name))
                {
                    m.merge(x.clone())?;
                }
            }
            Value::Array(bs) => {
                for b in bs {
                    m.merge(self.type_marks(b, ns)?)?;
                }
            }
            Value::Object(o) => {
                m.merge(marks_of(o)?)?;
                match o.get("type") {
                    Some(t @ (Value::Object(_) | Value::Array(_))) => {
                        m.merge(self.type_marks(t, ns)?)?;
                    }
                    Some(Value::String(t)) if t == "array" => {
                        if let Some(i) = o.get("items") {
                            m.merge(self.type_marks(i, ns)?)?;
                        }
                    }
                    Some(Value::String(t)) if t == "map" => {
                        if let Some(i) = o.get("values") {
                            m.merge(self.type_marks(i, ns)?)?;
                        }
                    }
                    // `{"type": "Addr"}`: a named type referred to.
                    Some(t @ Value::String(name)) if !KEYWORDS.contains(&name.as_str()) => {
                        m.merge(self.type_marks(t, ns)?)?;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(m)
    }

    fn ty(&mut self, v: &Value, ns: Option<&str>) -> Result<Ty, String> {
        match v {
            Value::String(s) => self.primitive(s, ns),
            Value::Array(branches) => {
                let mut out = Vec::with_capacity(branches.len());
                for b in branches {
                    out.push(self.ty(b, ns)?);
                }
                distinguishable(&out)?;
                Ok(Ty::Union(out))
            }
            Value::Object(obj) => self.complex(obj, ns),
            _ => Err("a type is neither a name, a union nor an object".into()),
        }
    }

    fn complex(&mut self, obj: &Map<String, Value>, ns: Option<&str>) -> Result<Ty, String> {
        let t = obj.get("type").ok_or("a type object without `type`")?;
        let logical = obj.get("logicalType").and_then(Value::as_str);
        let Some(t) = t.as_str() else {
            // {"type": {...}} or {"type": [...]}: the inner type.
            return self.ty(t, ns);
        };
        Ok(match t {
            "int" => Ty::Int(match logical {
                Some("date") => IntLogical::Date,
                _ => IntLogical::Plain,
            }),
            "long" => Ty::Long(match logical {
                Some("timestamp-millis") => LongLogical::TimestampMillis,
                Some("timestamp-micros") => LongLogical::TimestampMicros,
                Some("timestamp-nanos") => LongLogical::TimestampNanos,
                _ => LongLogical::Plain,
            }),
            "bytes" => Ty::Bytes(decimal_spec(obj)),
            "string" => Ty::String(logical == Some("uuid")),
            "array" => Ty::Array(Box::new(
                self.ty(obj.get("items").ok_or("an array without `items`")?, ns)?,
            )),
            "map" => Ty::Map(Box::new(
                self.ty(obj.get("values").ok_or("a map without `values`")?, ns)?,
            )),
            "record" | "error" => {
                let (name, own_ns) = full_name(obj, ns)?;
                self.named_marks.insert(
                    name.clone(),
                    marks_of(obj).map_err(|e| format!("record `{name}`: {e}"))?,
                );
                self.open.push(name.clone());
                let mut fields = Vec::new();
                for f in obj
                    .get("fields")
                    .and_then(Value::as_array)
                    .ok_or("a record without `fields`")?
                {
                    let fo = f.as_object().ok_or("a record field is not an object")?;
                    let fname = fo
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or("a record field without `name`")?;
                    let tv = fo.get("type").ok_or("a record field without `type`")?;
                    let ty = self.ty(tv, own_ns.as_deref())?;
                    check_name("field", fname)?;
                    // The decoder relies on it: a record's members are
                    // never checked for duplicate keys.
                    if fields.iter().any(|f: &Field| f.name == fname) {
                        return Err(format!("record `{name}` has two fields named `{fname}`"));
                    }
                    let mut marks = marks_of(fo).map_err(|e| format!("field `{fname}`: {e}"))?;
                    marks
                        .merge(self.type_marks(tv, own_ns.as_deref())?)
                        .map_err(|e| format!("field `{fname}`: {e}"))?;
                    let mut attrs: Map<String, Value> = fo
                        .iter()
                        .filter(|(k, _)| !matches!(k.as_str(), "name" | "type" | "doc" | "default"))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    // The field's own marks and its type's, as one list each.
                    if !marks.classes.is_empty() {
                        attrs.insert("classes".into(), json!(marks.classes));
                    }
                    if !marks.tags.is_empty() {
                        attrs.insert("confluent:tags".into(), json!(marks.tags));
                    }
                    fields.push(Field {
                        name: fname.to_string(),
                        ty,
                        doc: fo.get("doc").and_then(Value::as_str).map(str::to_string),
                        default: fo.get("default").cloned(),
                        attrs,
                    });
                }
                self.open.pop();
                let attrs: Map<String, Value> = obj
                    .iter()
                    .filter(|(k, _)| {
                        !matches!(k.as_str(), "type" | "name" | "namespace" | "doc" | "fields")
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let ty = Ty::Record(Arc::new(Record {
                    name: name.clone(),
                    doc: obj.get("doc").and_then(Value::as_str).map(str::to_string),
                    fields,
                    attrs,
                }));
                self.named.insert(name, ty.clone());
                ty
            }
            "enum" => {
                let (name, _) = full_name(obj, ns)?;
                self.named_marks.insert(
                    name.clone(),
                    marks_of(obj).map_err(|e| format!("enum `{name}`: {e}"))?,
                );
                let symbols = obj
                    .get("symbols")
                    .and_then(Value::as_array)
                    .ok_or("an enum without `symbols`")?
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect::<Vec<String>>();
                for sym in &symbols {
                    check_name("enum symbol", sym)?;
                }
                let ty = Ty::Enum(Arc::new(Enum {
                    name: name.clone(),
                    doc: obj.get("doc").and_then(Value::as_str).map(str::to_string),
                    symbols,
                    default: obj
                        .get("default")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                }));
                self.named.insert(name, ty.clone());
                ty
            }
            "fixed" => {
                let (name, _) = full_name(obj, ns)?;
                self.named_marks.insert(
                    name.clone(),
                    marks_of(obj).map_err(|e| format!("fixed `{name}`: {e}"))?,
                );
                let size = obj
                    .get("size")
                    .and_then(Value::as_u64)
                    .ok_or("a fixed without `size`")? as usize;
                let decimal = decimal_spec(obj);
                if decimal.is_some() && size > 16 {
                    return Err(format!(
                        "decimal `{name}` is a fixed of {size} bytes: custos reads decimals of up to 16 bytes (38 digits)"
                    ));
                }
                let ty = Ty::Fixed(Arc::new(Fixed {
                    name: name.clone(),
                    size,
                    decimal,
                }));
                self.named.insert(name, ty.clone());
                ty
            }
            other => self.primitive(other, ns)?,
        })
    }
}

/// What a union branch's values look like once decoded: custos reads a
/// union by its value (the JSON it governs has no branch tags), so two
/// branches that read alike could not be told apart on the way out.
fn reads_as(t: &Ty) -> &'static str {
    match t.shape() {
        Shape::Null => "null",
        Shape::Bool => "a boolean",
        Shape::Number => "a number",
        Shape::Text => "text",
        Shape::Container => match t {
            Ty::Array(_) => "an array",
            _ => "an object (record or map)",
        },
    }
}

fn distinguishable(branches: &[Ty]) -> Result<(), String> {
    for (i, a) in branches.iter().enumerate() {
        if let Some(b) = branches[..i].iter().find(|b| reads_as(b) == reads_as(a)) {
            return Err(format!(
                "the union's branches `{}` and `{}` both read as {}: custos reads a union by its value and could not tell them apart when writing the outputs (such unions are not supported; see docs/avro.md)",
                b.union_key(),
                a.union_key(),
                reads_as(a)
            ));
        }
    }
    Ok(())
}

/// Where a class on a schema field came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassSource {
    /// The field's `"classes"` attribute.
    Attribute,
    /// A `"confluent:tags"` value, mapped through the policy's `tags:`.
    Tag(String),
}

/// The classes a schema gives its fields: `(path, class, source)`, in
/// schema order. Tags the policy does not map are skipped (a tag is not
/// necessarily about personal data); an unmapped tag never classifies.
pub fn schema_classes(
    schema: &Schema,
    tags: &[(String, String)],
) -> Vec<(FieldPath, String, ClassSource)> {
    let mut out = Vec::new();
    walk_classes(&schema.root, &mut Vec::new(), tags, &mut out, 0);
    out
}

fn walk_classes(
    ty: &Ty,
    path: &mut Vec<Segment>,
    tags: &[(String, String)],
    out: &mut Vec<(FieldPath, String, ClassSource)>,
    depth: usize,
) {
    if depth > 64 {
        return;
    }
    match ty {
        Ty::Record(r) => {
            for f in &r.fields {
                path.push(Segment::Field(f.name.clone()));
                let here = FieldPath::Value(path.clone());
                if let Some(Value::Array(cs)) = f.attrs.get("classes") {
                    for c in cs.iter().filter_map(Value::as_str) {
                        out.push((here.clone(), c.to_string(), ClassSource::Attribute));
                    }
                }
                if let Some(Value::Array(ts)) = f.attrs.get("confluent:tags") {
                    for t in ts.iter().filter_map(Value::as_str) {
                        for (tag, class) in tags.iter().filter(|(tag, _)| tag == t) {
                            out.push((here.clone(), class.clone(), ClassSource::Tag(tag.clone())));
                        }
                    }
                }
                walk_classes(&f.ty, path, tags, out, depth + 1);
                path.pop();
            }
        }
        Ty::Array(items) | Ty::Map(items) => {
            path.push(Segment::Each);
            walk_classes(items, path, tags, out, depth + 1);
            path.pop();
        }
        Ty::Union(bs) => {
            for b in bs {
                walk_classes(b, path, tags, out, depth + 1);
            }
        }
        _ => {}
    }
}

/// Every path of a schema's values, in schema order, with its type.
pub fn paths(schema: &Schema) -> Vec<(String, Ty)> {
    let mut out = Vec::new();
    fn walk(ty: &Ty, prefix: &str, out: &mut Vec<(String, Ty)>, depth: usize) {
        if depth > 64 {
            return;
        }
        match ty {
            Ty::Record(r) => {
                for f in &r.fields {
                    let p = if prefix.is_empty() {
                        f.name.clone()
                    } else {
                        format!("{prefix}.{}", f.name)
                    };
                    out.push((p.clone(), f.ty.clone()));
                    walk(&f.ty, &p, out, depth + 1);
                }
            }
            Ty::Array(items) | Ty::Map(items) => {
                let p = format!("{prefix}[]");
                if matches!(
                    **items,
                    Ty::Record(_) | Ty::Array(_) | Ty::Map(_) | Ty::Union(_)
                ) {
                    walk(items, &p, out, depth + 1);
                } else {
                    out.push((p, (**items).clone()));
                }
            }
            Ty::Union(bs) => {
                for b in bs {
                    walk(b, prefix, out, depth + 1);
                }
            }
            _ => {}
        }
    }
    walk(&schema.root, "", &mut out, 0);
    out
}

/// Writes a type as schema JSON. Named types are defined once and referred
/// to by name after; two different definitions under one name (a record
/// governed differently in two places) get the second renamed `Name_2`.
pub fn to_json(ty: &Ty) -> Value {
    let mut names: BTreeMap<String, Value> = BTreeMap::new();
    emit(ty, &mut names)
}

fn emit(ty: &Ty, names: &mut BTreeMap<String, Value>) -> Value {
    match ty {
        Ty::Null => json!("null"),
        Ty::Boolean => json!("boolean"),
        Ty::Int(IntLogical::Plain) => json!("int"),
        Ty::Int(IntLogical::Date) => json!({"type": "int", "logicalType": "date"}),
        Ty::Long(LongLogical::Plain) => json!("long"),
        Ty::Long(LongLogical::TimestampMillis) => {
            json!({"type": "long", "logicalType": "timestamp-millis"})
        }
        Ty::Long(LongLogical::TimestampMicros) => {
            json!({"type": "long", "logicalType": "timestamp-micros"})
        }
        Ty::Long(LongLogical::TimestampNanos) => {
            json!({"type": "long", "logicalType": "timestamp-nanos"})
        }
        Ty::Float => json!("float"),
        Ty::Double => json!("double"),
        Ty::Bytes(None) => json!("bytes"),
        Ty::Bytes(Some(d)) => {
            json!({"type": "bytes", "logicalType": "decimal", "precision": d.precision, "scale": d.scale})
        }
        Ty::String(false) => json!("string"),
        Ty::String(true) => json!({"type": "string", "logicalType": "uuid"}),
        Ty::Array(items) => json!({"type": "array", "items": emit(items, names)}),
        Ty::Map(values) => json!({"type": "map", "values": emit(values, names)}),
        Ty::Union(bs) => Value::Array(bs.iter().map(|b| emit(b, names)).collect()),
        Ty::Record(r) => {
            let mut fields = Vec::new();
            for f in &r.fields {
                let mut o = Map::new();
                o.insert("name".into(), json!(f.name));
                o.insert("type".into(), emit(&f.ty, names));
                if let Some(d) = &f.doc {
                    o.insert("doc".into(), json!(d));
                }
                if let Some(d) = &f.default {
                    o.insert("default".into(), d.clone());
                }
                for (k, v) in &f.attrs {
                    o.insert(k.clone(), v.clone());
                }
                fields.push(Value::Object(o));
            }
            let mut o = Map::new();
            o.insert("type".into(), json!("record"));
            o.insert("name".into(), json!(r.name));
            if let Some(d) = &r.doc {
                o.insert("doc".into(), json!(d));
            }
            o.insert("fields".into(), Value::Array(fields));
            for (k, v) in &r.attrs {
                o.insert(k.clone(), v.clone());
            }
            named(r.name.clone(), Value::Object(o), names)
        }
        Ty::Enum(e) => {
            let mut o = Map::new();
            o.insert("type".into(), json!("enum"));
            o.insert("name".into(), json!(e.name));
            if let Some(d) = &e.doc {
                o.insert("doc".into(), json!(d));
            }
            o.insert("symbols".into(), json!(e.symbols));
            if let Some(d) = &e.default {
                o.insert("default".into(), json!(d));
            }
            named(e.name.clone(), Value::Object(o), names)
        }
        Ty::Fixed(f) => {
            let mut o = Map::new();
            o.insert("type".into(), json!("fixed"));
            o.insert("name".into(), json!(f.name));
            o.insert("size".into(), json!(f.size));
            if let Some(d) = f.decimal {
                o.insert("logicalType".into(), json!("decimal"));
                o.insert("precision".into(), json!(d.precision));
                o.insert("scale".into(), json!(d.scale));
            }
            named(f.name.clone(), Value::Object(o), names)
        }
    }
}

fn named(name: String, mut def: Value, names: &mut BTreeMap<String, Value>) -> Value {
    match names.get(&name) {
        None => {
            names.insert(name, def.clone());
            def
        }
        Some(d) if *d == def => Value::String(name),
        Some(_) => {
            let mut n = 2;
            loop {
                let candidate = format!("{name}_{n}");
                let mut renamed = def.clone();
                renamed["name"] = json!(candidate);
                match names.get(&candidate) {
                    Some(d) if *d == renamed => return Value::String(candidate),
                    Some(_) => n += 1,
                    None => {
                        def["name"] = json!(candidate);
                        names.insert(candidate, def.clone());
                        return def;
                    }
                }
            }
        }
    }
}
