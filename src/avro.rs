//! Avro streams: Confluent wire format in, per-purpose derived schemas out.
//!
//! A writer schema seen for the first time is compiled once into a
//! [`SchemaPlan`]: the stream's plan with the classes the schema adds
//! (`"classes"` attributes, `"confluent:tags"` mapped through the policy's
//! `tags:`), and one derived schema per output purpose. Per record, nothing
//! looks anything up by name: the value is decoded straight into the JSON
//! the engine governs, and each purpose's output is encoded with its
//! derived schema.

pub mod derive;
pub mod registry;
pub mod schema;
pub mod standin;
pub mod value;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::policy::plan::{compile_stream, Compiled, StreamPlan};
use std::collections::HashMap;

use crate::policy::{FieldPath, FieldSpec, Policy, Segment, Stream};

pub use self::derive::Derived;
pub use self::schema::Schema;

/// The first byte of a Confluent wire-format value.
pub const MAGIC: u8 = 0;

/// Splits a Confluent wire-format value into its schema id and Avro body.
///
/// # Errors
/// Too short or no magic byte: the reason, for the dead letter.
pub fn split_wire(value: &[u8]) -> Result<(u32, &[u8]), String> {
    match value {
        [MAGIC, a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        [MAGIC, ..] => Err("the value is shorter than the 5-byte wire-format header".into()),
        _ => Err(
            "the value does not start with the wire-format magic byte 0 (not Confluent Avro)"
                .into(),
        ),
    }
}

/// Writes the wire-format header for `id` followed by nothing; the Avro body is appended.
pub fn wire_header(id: u32, out: &mut Vec<u8>) {
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
}

/// One writer schema of a stream, compiled.
#[derive(Debug)]
pub struct SchemaPlan {
    pub writer: Schema,
    /// The stream's plan with the schema's classes.
    pub plan: StreamPlan,
    /// Per output of `plan`, in its order.
    pub derived: Vec<Derived>,
}

/// The stream as the policy has it, plus the classes `schema` gives its
/// fields (added to a path the policy names too: several sources on one
/// field are several classes, the most restrictive action wins). A class
/// the schema gives a record also goes to every classified path inside it.
///
/// # Errors
/// A class the schema names that the policy's taxonomy does not have.
pub fn with_schema_classes(
    policy: &Policy,
    stream: &Stream,
    schema: &Schema,
) -> Result<Stream, String> {
    let mut out = stream.clone();
    let mut marked: Vec<(FieldPath, String)> = Vec::new();
    for (path, class, source) in schema::schema_classes(schema, &policy.tags) {
        if !policy.taxonomy.contains(&class) {
            let from = match source {
                schema::ClassSource::Attribute => "its `classes` attribute".to_string(),
                schema::ClassSource::Tag(t) => format!("tag `{t}` (policy `tags:`)"),
            };
            return Err(format!(
                "the schema classifies `{path}` as `{class}` through {from}, and the policy's taxonomy has no such class"
            ));
        }
        match out.fields.iter_mut().find(|f| f.path == path) {
            Some(f) => {
                if !f.classes.contains(&class) {
                    f.classes.push(class.clone());
                }
            }
            None => out.fields.push(FieldSpec {
                path: path.clone(),
                classes: vec![class.clone()],
                scan: false,
                pos: stream.pos,
            }),
        }
        marked.push((path, class));
    }
    // A class the schema puts on a record (or on the field holding it)
    // holds for everything inside, even where a field inside names classes
    // of its own: a record marked sensitive stays sensitive throughout. And
    // a field the schema classifies keeps the classes of every path above
    // it, the policy's included: a schema can add classes, never weaken one.
    let mut by_path: HashMap<Vec<Segment>, Vec<String>> = HashMap::new();
    for (p, class) in &marked {
        if let FieldPath::Value(segs) = p {
            let e = by_path.entry(segs.clone()).or_default();
            if !e.contains(class) {
                e.push(class.clone());
            }
        }
    }
    // A policy path naming a map key (`contacts.primary`) is a map value
    // too: the classes the schema gives below the map's values apply there.
    let named: Vec<Vec<Segment>> = out
        .fields
        .iter()
        .filter_map(|f| match &f.path {
            FieldPath::Value(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let mut extra: Vec<(Vec<Segment>, String)> = Vec::new();
    for (m, classes) in &by_path {
        for (i, seg) in m.iter().enumerate() {
            if *seg != Segment::Each {
                continue;
            }
            for p in &named {
                if p.len() > i && p[..i] == m[..i] && matches!(p[i], Segment::Field(_)) {
                    let mut path = p[..=i].to_vec();
                    path.extend_from_slice(&m[i + 1..]);
                    for c in classes {
                        extra.push((path.clone(), c.clone()));
                    }
                }
            }
        }
    }
    for (path, class) in extra {
        let fp = FieldPath::Value(path.clone());
        match out.fields.iter_mut().find(|f| f.path == fp) {
            Some(f) => {
                if !f.classes.contains(&class) {
                    f.classes.push(class.clone());
                }
            }
            None => out.fields.push(FieldSpec {
                path: fp,
                classes: vec![class.clone()],
                scan: false,
                pos: stream.pos,
            }),
        }
        let e = by_path.entry(path).or_default();
        if !e.contains(&class) {
            e.push(class);
        }
    }
    let all: HashMap<Vec<Segment>, Vec<String>> = out
        .fields
        .iter()
        .filter_map(|f| match &f.path {
            FieldPath::Value(s) => Some((s.clone(), f.classes.clone())),
            _ => None,
        })
        .collect();
    for f in &mut out.fields {
        let FieldPath::Value(segs) = &f.path else {
            continue;
        };
        let touched = by_path.contains_key(segs);
        for n in 1..segs.len() {
            let above = &segs[..n];
            // Schema marks flow into every path below them; the policy's
            // classes flow into the paths the schema classifies.
            let add = by_path
                .get(above)
                .into_iter()
                .flatten()
                .chain(all.get(above).into_iter().flatten().filter(|_| touched));
            for c in add {
                if !f.classes.contains(c) {
                    f.classes.push(c.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Compiles stream `si` of a policy for one writer schema.
///
/// # Errors
/// Classes the taxonomy does not have, a key missing, or a derived schema
/// that is not valid Avro: the reason, for the dead letter of every record
/// written with this schema.
pub fn compile_for_schema(
    compiled: &Compiled,
    si: usize,
    schema: Schema,
) -> Result<SchemaPlan, String> {
    let stream = &compiled.policy.streams[si];
    let augmented = with_schema_classes(&compiled.policy, stream, &schema)?;
    let plan =
        compile_stream(&compiled.policy, &augmented, &compiled.keys).map_err(|e| e.to_string())?;
    let derived = (0..plan.outputs.len())
        .map(|i| derive::derive(&schema, &plan, i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SchemaPlan {
        writer: schema,
        plan,
        derived,
    })
}

/// A shared compiled schema.
pub type SharedPlan = Arc<SchemaPlan>;
