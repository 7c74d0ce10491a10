//! The schema of one purpose's output, derived from the writer schema and
//! the purpose's plan: what the engine's walk can write, as a type.
//!
//! It follows the walk's rules exactly (see `engine/walk.rs`): a field
//! nothing classifies is removed; a dropped field is removed; a record left
//! without fields is removed (the root record stays, maybe empty); members
//! of a record or map the policy does not name survive only where their
//! inherited class is kept; the types of transformed values change to what
//! the transform writes (the table is in docs/avro.md).

use serde_json::Value;

use super::schema::{self, Field, Record, Shape, Ty};
use crate::policy::plan::{Leaf, Node, StreamPlan};
use crate::transform::{self, Generalize, Op};

/// A derived schema.
#[derive(Debug, Clone)]
pub struct Derived {
    pub ty: Ty,
    /// The schema as JSON text (what is registered).
    pub text: String,
    /// Parsing Canonical Form.
    pub canonical: String,
}

impl Derived {
    /// `sha256:` + hex of the canonical form's SHA-256.
    pub fn fingerprint(&self) -> String {
        schema::fingerprint(&self.canonical)
    }
}

/// Derives output `output`'s schema.
///
/// # Errors
/// When the derived schema is not valid Avro (a bug: it names the cause).
pub fn derive(
    writer: &schema::Schema,
    plan: &StreamPlan,
    output: usize,
) -> Result<Derived, String> {
    let d = Deriver { p: output };
    let ty = match &writer.root {
        Ty::Record(r) => Ty::Record(std::sync::Arc::new(
            d.record(r, &plan.root.leaf, Some(&plan.root))
                .unwrap_or_else(|| Record {
                    fields: Vec::new(),
                    attrs: classification(&r.attrs),
                    ..(**r).clone()
                }),
        )),
        other => other.clone(),
    };
    let json = schema::to_json(&ty);
    let text = serde_json::to_string(&json).map_err(|e| e.to_string())?;
    let parsed = apache_avro::Schema::parse_str(&text)
        .map_err(|e| format!("the derived schema is not valid Avro ({e}): {text}"))?;
    Ok(Derived {
        ty,
        text,
        canonical: parsed.canonical_form(),
    })
}

struct Deriver {
    p: usize,
}

fn is_keep(leaf: &Leaf, p: usize) -> bool {
    leaf.is_classified() && matches!(leaf.decisions[p].op, Op::Keep)
}

/// The `classes` and `confluent:tags` of an attribute map, nothing else.
fn classification(attrs: &serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    attrs
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "classes" | "confluent:tags"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A type kept whole, with only the classification attributes of its
/// records and fields (free-form attributes could hold anything).
fn sanitized(ty: &Ty) -> Ty {
    match ty {
        Ty::Record(r) => Ty::Record(std::sync::Arc::new(Record {
            fields: r
                .fields
                .iter()
                .map(|f| Field {
                    ty: sanitized(&f.ty),
                    attrs: classification(&f.attrs),
                    ..f.clone()
                })
                .collect(),
            attrs: classification(&r.attrs),
            ..(**r).clone()
        })),
        Ty::Array(i) => Ty::Array(Box::new(sanitized(i))),
        Ty::Map(v) => Ty::Map(Box::new(sanitized(v))),
        Ty::Union(bs) => Ty::Union(bs.iter().map(sanitized).collect()),
        other => other.clone(),
    }
}

/// One type, or a union of several (deduplicated, first wins).
fn union_of(types: Vec<Ty>) -> Option<Ty> {
    let mut out: Vec<Ty> = Vec::new();
    for t in types.into_iter().flat_map(|t| match t {
        Ty::Union(bs) => bs,
        t => vec![t],
    }) {
        if !out.iter().any(|o| o.union_key() == t.union_key()) {
            out.push(t);
        }
    }
    match out.len() {
        0 => None,
        1 => out.pop(),
        _ => Some(Ty::Union(out)),
    }
}

impl Deriver {
    /// The walk's `value`: what is written for a value of type `ty` under `leaf`/`node`.
    fn value(&self, ty: &Ty, leaf: &Leaf, node: Option<&Node>) -> Option<Ty> {
        if let Ty::Union(bs) = ty {
            let mut out = Vec::new();
            let mut null_first = false;
            for (i, b) in bs.iter().enumerate() {
                if *b == Ty::Null {
                    null_first |= i == 0;
                    continue;
                }
                if let Some(t) = self.value(b, leaf, node) {
                    out.push(t);
                }
            }
            if out.is_empty() {
                return None;
            }
            if bs.contains(&Ty::Null) {
                if null_first {
                    out.insert(0, Ty::Null);
                } else {
                    out.push(Ty::Null);
                }
            }
            return union_of(out);
        }
        let structured = node.is_some_and(Node::has_structure);
        let container = ty.shape() == Shape::Container;
        if !structured && !leaf.scan {
            if !leaf.is_classified() {
                return None;
            }
            if container && is_keep(leaf, self.p) {
                return Some(sanitized(ty));
            }
        }
        match ty {
            Ty::Record(r) => self
                .record(r, leaf, node)
                .map(|r| Ty::Record(std::sync::Arc::new(r))),
            Ty::Map(values) => {
                let mut cands = Vec::new();
                if let Some(n) = node {
                    for (_, c) in &n.children {
                        if c.leaf.is_classified() || c.has_classified {
                            cands.extend(self.value(values, &c.leaf, Some(c)));
                        }
                    }
                }
                // Members the policy does not name.
                let (uleaf, unode) = match node.and_then(|n| n.each.as_deref()) {
                    Some(e) => (&*e.leaf, Some(e)),
                    None => (leaf, None),
                };
                if is_keep(leaf, self.p)
                    && (uleaf.is_classified() || unode.is_some_and(|n| n.has_classified))
                {
                    cands.extend(self.value(values, uleaf, unode));
                }
                union_of(cands).map(|t| Ty::Map(Box::new(t)))
            }
            Ty::Array(items) => {
                let (eleaf, enode) = match node.and_then(|n| n.each.as_deref()) {
                    Some(e) => (&*e.leaf, Some(e)),
                    None => match node.filter(|n| !n.children.is_empty()) {
                        Some(n) => (leaf, Some(n)),
                        None => (leaf, None),
                    },
                };
                if !eleaf.is_classified() && !enode.is_some_and(|n| n.has_classified) {
                    return None;
                }
                self.value(items, eleaf, enode)
                    .map(|t| Ty::Array(Box::new(t)))
            }
            scalar => self.scalar(scalar, crate::policy::plan::scalar_leaf(leaf, node).0),
        }
    }

    fn record(&self, r: &Record, leaf: &Leaf, node: Option<&Node>) -> Option<Record> {
        let unnamed = is_keep(leaf, self.p);
        let mut fields = Vec::new();
        for f in &r.fields {
            let child = node.and_then(|n| n.child(&f.name));
            let (cleaf, cnode, active) = match child {
                Some(c) => (&*c.leaf, Some(c), true),
                None => match node.and_then(|n| n.each.as_deref()) {
                    Some(e) => (&*e.leaf, Some(e), unnamed),
                    None => (leaf, None, unnamed),
                },
            };
            if !active || (!cleaf.is_classified() && !cnode.is_some_and(|n| n.has_classified)) {
                continue;
            }
            let Some(ty) = self.value(&f.ty, cleaf, cnode) else {
                continue;
            };
            // Only the classification is copied: other attributes are the
            // producer's free text (they could hold anything).
            let mut attrs = classification(&f.attrs);
            // A scalar where the policy expects an array: the element's rules
            // (as in the walk).
            let sleaf = crate::policy::plan::scalar_leaf(cleaf, cnode).0;
            let mut acted = sleaf.scan;
            if sleaf.is_classified() && f.ty.shape() != Shape::Container {
                let kind = sleaf.decisions[self.p].kind;
                if kind != crate::policy::ActionKind::Keep {
                    attrs.insert("custos.action".into(), Value::String(kind.name().into()));
                    acted = true;
                }
            }
            // A default is data too: it is governed like a value of the field.
            let default = match &f.default {
                None => None,
                Some(d) if ty == f.ty && !acted => Some(d.clone()),
                // A scanned field's default would need the scan: left out.
                Some(_) if sleaf.scan => ty
                    .branches()
                    .first()
                    .filter(|b| **b == Ty::Null)
                    .map(|_| Value::Null),
                Some(d) => self.default(d, &f.ty, &ty, sleaf),
            };
            fields.push(Field {
                name: f.name.clone(),
                ty,
                doc: f.doc.clone(),
                default,
                attrs,
            });
        }
        if fields.is_empty() {
            return None;
        }
        Some(Record {
            fields,
            attrs: classification(&r.attrs),
            ..r.clone()
        })
    }

    /// The default of a changed or transformed field: the writer's default
    /// (a value of its type's first branch) governed as the field's values
    /// are, where that fits the new type's first branch; `null` where the
    /// new type starts with null; an empty array or map stays empty; else none.
    fn default(&self, d: &Value, orig: &Ty, ty: &Ty, leaf: &Leaf) -> Option<Value> {
        let first = ty.branches().first()?;
        match first {
            Ty::Null => return Some(Value::Null),
            Ty::Array(_) if d.as_array().is_some_and(Vec::is_empty) => return Some(d.clone()),
            Ty::Map(_) if d.as_object().is_some_and(serde_json::Map::is_empty) => {
                return Some(d.clone())
            }
            Ty::Record(_) | Ty::Array(_) | Ty::Map(_) => return None,
            _ => {}
        }
        if !leaf.is_classified() {
            return None;
        }
        let read = super::value::from_avro_json(orig.branches().first()?, d).ok()?;
        let governed = transform::apply(&leaf.decisions[self.p].op, &read)?;
        super::value::to_avro_json(first, &governed).ok()
    }

    /// What the walk writes for a scalar of type `ty`.
    fn scalar(&self, ty: &Ty, leaf: &Leaf) -> Option<Ty> {
        if !leaf.is_classified() {
            return None;
        }
        let shape = ty.shape();
        let string = Ty::String(false);
        let nullable = || vec![Ty::Null, ty.clone()];
        let redacted = || match shape {
            Shape::Text => vec![string.clone()],
            Shape::Null => vec![Ty::Null],
            _ => nullable(),
        };
        let mut types = match &leaf.decisions[self.p].op {
            Op::Drop => return None,
            _ if shape == Shape::Null => vec![Ty::Null],
            Op::Keep => vec![ty.clone()],
            Op::Redact | Op::Mask { .. } => redacted(),
            Op::Pseudonymize(_) => vec![string.clone()],
            // A token, or redacted when the event has no subject to encrypt under.
            Op::Encrypt(_) => match shape {
                Shape::Text => vec![string.clone()],
                _ => vec![Ty::Null, string.clone()],
            },
            Op::Generalize(Generalize::Date(_)) => match shape {
                Shape::Text => vec![string.clone()],
                Shape::Number => vec![Ty::Null, string.clone()],
                _ => nullable(),
            },
            Op::Generalize(Generalize::Round(_)) => match shape {
                Shape::Number => vec![ty.clone()],
                _ => redacted(),
            },
            Op::Generalize(Generalize::Bucket(w)) => match (shape, ty) {
                (Shape::Number, Ty::Int(_) | Ty::Long(_)) if !w.fract().is_zero() => {
                    vec![Ty::Null, Ty::Double]
                }
                (Shape::Number, _) => vec![Ty::Null, ty.clone()],
                _ => redacted(),
            },
            Op::Generalize(Generalize::Prefix(_) | Generalize::Network { .. }) => redacted(),
        };
        if leaf.scan && shape != Shape::Text {
            // A number in a scanned field with a finding is written as text.
            types.push(string);
        }
        union_of(types)
    }
}
