//! `custos explain`: the resolution rules made visible. For every classified
//! path of every stream: its classes and, per purpose, the action that wins
//! and the rule (or the default) that decided it. Pure: policy in, text out.

use serde_json::{json, Value};

use super::{ExplainFormat, Failure};
use crate::classify::Detector;
use crate::policy::diff::decided_by;
use crate::policy::plan::{decide_class, decide_field, ClassDecision, Reason};
use crate::policy::{Policy, Stream, Unclassified};

struct Row {
    path: String,
    classes: Vec<String>,
    scan: bool,
    purposes: Vec<PurposeRow>,
}

struct PurposeRow {
    purpose: String,
    topic: Option<String>,
    action: String,
    kind: &'static str,
    decided_by: String,
    per_class: Vec<ClassDecision>,
}

fn purpose_row(policy: &Policy, stream: &Stream, pi: usize, classes: &[String]) -> PurposeRow {
    let p = &policy.purposes[pi];
    let (action, per_class) = decide_field(policy, pi, classes);
    let decided_by = decided_by(&p.name, action.kind(), &per_class);
    PurposeRow {
        purpose: p.name.clone(),
        topic: stream
            .outputs
            .iter()
            .find(|(n, _)| n == &p.name)
            .map(|(_, t)| t.clone()),
        action: action.describe(),
        kind: action.kind().name(),
        decided_by,
        per_class,
    }
}

fn rows(policy: &Policy, stream: &Stream, purposes: &[usize]) -> Vec<Row> {
    let mut out = Vec::new();
    for f in &stream.fields {
        out.push(Row {
            path: f.path.to_string(),
            classes: f.classes.clone(),
            scan: f.scan,
            purposes: purposes
                .iter()
                .map(|&pi| purpose_row(policy, stream, pi, &f.classes))
                .collect(),
        });
        if f.scan {
            for d in Detector::ALL {
                if d == Detector::Ipv4 {
                    continue; // same class as ipv6; one row for both
                }
                let label = if d == Detector::Ipv6 {
                    "ipv4/ipv6"
                } else {
                    d.name()
                };
                let classes = vec![d.class().to_string()];
                out.push(Row {
                    path: format!("{} ⟨scan: {label}⟩", f.path),
                    classes: classes.clone(),
                    scan: false,
                    purposes: purposes
                        .iter()
                        .map(|&pi| {
                            let mut r = purpose_row(policy, stream, pi, &classes);
                            let cd = decide_class(policy, pi, d.class());
                            if matches!(
                                cd.action.kind(),
                                crate::policy::ActionKind::Drop | crate::policy::ActionKind::Redact
                            ) {
                                r.action =
                                    format!("{} → [REDACTED:{}]", cd.action.describe(), d.class());
                            }
                            r
                        })
                        .collect(),
                });
            }
        }
    }
    out
}

/// Renders the explanation.
///
/// # Errors
/// An unknown `--stream` or `--purpose`.
pub fn explain(
    policy: &Policy,
    stream: Option<&str>,
    purpose: Option<&str>,
    format: ExplainFormat,
) -> Result<String, Failure> {
    let streams: Vec<&Stream> = match stream {
        Some(s) => vec![&policy.streams[super::stream_index(policy, s)?]],
        None => policy.streams.iter().collect(),
    };
    let purposes: Vec<usize> = match purpose {
        Some(p) => vec![policy.purpose_index(p).ok_or_else(|| {
            Failure::new(format!(
                "unknown purpose `{p}`; the policy has: {}",
                policy
                    .purposes
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?],
        None => (0..policy.purposes.len()).collect(),
    };
    Ok(match format {
        ExplainFormat::Json => {
            let v = json!({
                "policy": policy.id(),
                "streams": streams.iter().map(|s| stream_json(policy, s, &purposes)).collect::<Vec<_>>(),
            });
            let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
            text.push('\n');
            text
        }
        ExplainFormat::Table => {
            let mut out = format!("policy {}\n", policy.id());
            for s in streams {
                out.push_str(&stream_table(policy, s, &purposes));
            }
            out
        }
    })
}

fn unclassified_text(s: &Stream) -> &'static str {
    match s.unclassified {
        Unclassified::Drop => "drop",
        Unclassified::DeadLetter => "dead_letter",
    }
}

fn stream_json(policy: &Policy, s: &Stream, purposes: &[usize]) -> Value {
    let fields: Vec<Value> = rows(policy, s, purposes)
        .into_iter()
        .map(|r| {
            json!({
                "path": r.path,
                "classes": r.classes,
                "scan": r.scan,
                "purposes": r.purposes.into_iter().map(|p| json!({
                    "purpose": p.purpose,
                    "topic": p.topic,
                    "action": p.kind,
                    "params": p.action,
                    "decided_by": p.decided_by,
                    "classes": p.per_class.iter().map(|c| json!({
                        "class": c.class,
                        "action": c.action.kind().name(),
                        "rule": match &c.reason {
                            Reason::Rule { index, class, line } => json!({"index": index, "class": class, "line": line}),
                            Reason::Default => Value::Null,
                        },
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "stream": s.name,
        "topic": s.topic,
        "subject": s.subject.as_ref().map(ToString::to_string),
        "event_time": s.event_time.as_ref().map(ToString::to_string),
        "unclassified": unclassified_text(s),
        "fields": fields,
        "default": format!("any other field is unclassified: {} (every purpose); input headers not listed are not copied; an unclassified $key becomes a null key", unclassified_text(s)),
    })
}

fn stream_table(policy: &Policy, s: &Stream, purposes: &[usize]) -> String {
    let mut lines: Vec<[String; 5]> = vec![[
        "PATH".into(),
        "CLASSES".into(),
        "PURPOSE".into(),
        "ACTION".into(),
        "DECIDED BY".into(),
    ]];
    for r in rows(policy, s, purposes) {
        for (i, p) in r.purposes.iter().enumerate() {
            let path = if i == 0 {
                format!("{}{}", r.path, if r.scan { " (scan)" } else { "" })
            } else {
                String::new()
            };
            let classes = if i == 0 {
                r.classes.join(",")
            } else {
                String::new()
            };
            let purpose = match &p.topic {
                Some(_) => p.purpose.clone(),
                None => format!("{} (no output)", p.purpose),
            };
            lines.push([
                path,
                classes,
                purpose,
                p.action.clone(),
                p.decided_by.clone(),
            ]);
        }
    }
    let mut widths = [0usize; 5];
    for l in &lines {
        for (i, c) in l.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = format!(
        "\nstream {} (topic {}, subject {}, event time {}, unclassified: {})\n",
        s.name,
        s.topic,
        s.subject
            .as_ref()
            .map_or("none".to_string(), ToString::to_string),
        s.event_time
            .as_ref()
            .map_or("record timestamp".to_string(), ToString::to_string),
        unclassified_text(s)
    );
    for l in lines {
        let mut line = String::new();
        for (i, c) in l.iter().enumerate() {
            if i == 4 {
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "(any other field: unclassified → {} for every purpose)\n",
        unclassified_text(s)
    ));
    out
}

/// One path of an Avro schema for `explain --schema`.
struct SchemaRow {
    path: String,
    ty: String,
    /// (class, where it came from)
    classes: Vec<(String, String)>,
    /// The ancestor path the classes are inherited from, if not the path's own.
    inherited: Option<String>,
    /// A record, array or map: without classes of its own, its fields decide.
    container: bool,
    /// A record or a map (not an array), in some branch.
    record_or_map: bool,
}

fn type_text(ty: &crate::avro::schema::Ty) -> String {
    use crate::avro::schema::{IntLogical, LongLogical, Ty};
    match ty {
        Ty::Union(bs) => bs.iter().map(type_text).collect::<Vec<_>>().join("|"),
        Ty::Array(i) => format!("array<{}>", type_text(i)),
        Ty::Map(v) => format!("map<{}>", type_text(v)),
        Ty::Record(r) => r.name.clone(),
        Ty::Enum(e) => format!("enum {}", e.name),
        Ty::Fixed(f) => match f.decimal {
            Some(d) => format!("decimal({},{}) fixed", d.precision, d.scale),
            None => format!("fixed {}", f.name),
        },
        Ty::Bytes(Some(d)) => format!("decimal({},{})", d.precision, d.scale),
        Ty::Int(IntLogical::Date) => "date".into(),
        Ty::Long(LongLogical::TimestampMillis) => "timestamp-millis".into(),
        Ty::Long(LongLogical::TimestampMicros) => "timestamp-micros".into(),
        Ty::Long(LongLogical::TimestampNanos) => "timestamp-nanos".into(),
        Ty::String(true) => "uuid".into(),
        other => other.branch_name(),
    }
}

fn schema_rows(
    policy: &Policy,
    stream: &Stream,
    schema: &crate::avro::Schema,
    governed: &Stream,
) -> Vec<SchemaRow> {
    use crate::avro::schema::{paths, schema_classes, ClassSource};
    let mut explicit: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut add = |path: String, class: String, from: String| match explicit
        .iter_mut()
        .find(|(p, _)| *p == path)
    {
        Some((_, cs)) => {
            if !cs.iter().any(|(c, _)| *c == class) {
                cs.push((class, from));
            }
        }
        None => explicit.push((path, vec![(class, from)])),
    };
    for f in &stream.fields {
        for c in &f.classes {
            add(
                f.path.to_string(),
                c.clone(),
                format!("policy line {}", f.pos.line),
            );
        }
    }
    for (path, class, source) in schema_classes(schema, &policy.tags) {
        let from = match source {
            ClassSource::Attribute => "schema `classes`".to_string(),
            ClassSource::Tag(t) => format!("tag {t}"),
        };
        add(path.to_string(), class, from);
    }
    paths(schema)
        .into_iter()
        .map(|(path, ty)| {
            let own = explicit.iter().find(|(p, _)| *p == path);
            let (classes, inherited) = match own {
                Some((_, cs)) => {
                    // Classes that reach the path from above (a record the
                    // schema marks, or the policy's path over one the schema
                    // classifies): the worker governs with them too.
                    let mut cs = cs.clone();
                    let above = governed
                        .fields
                        .iter()
                        .find(|f| f.path.to_string() == path)
                        .map(|f| f.classes.clone())
                        .unwrap_or_default();
                    for c in above {
                        if !cs.iter().any(|(x, _)| *x == c) {
                            cs.push((c, "from above".to_string()));
                        }
                    }
                    (cs, None)
                }
                None => explicit
                    .iter()
                    .filter(|(p, _)| {
                        path.len() > p.len()
                            && path.starts_with(p.as_str())
                            && matches!(path.as_bytes()[p.len()], b'.' | b'[')
                    })
                    .max_by_key(|(p, _)| p.len())
                    .map_or((Vec::new(), None), |(p, cs)| (cs.clone(), Some(p.clone()))),
            };
            let container = ty
                .branches()
                .iter()
                .any(|b| b.shape() == crate::avro::schema::Shape::Container);
            let record_or_map = ty.branches().iter().any(|b| {
                matches!(
                    b,
                    crate::avro::schema::Ty::Record(_) | crate::avro::schema::Ty::Map(_)
                )
            });
            SchemaRow {
                path,
                container,
                record_or_map,
                ty: type_text(&ty),
                classes,
                inherited,
            }
        })
        .collect()
}

/// `explain --schema`: every path of an Avro writer schema, its classes and
/// where each came from (policy line, the schema's `classes` attribute, a
/// `confluent:tags` value through `tags:`), and what each purpose does.
///
/// # Errors
/// An unknown stream or purpose, or a schema class the taxonomy lacks.
pub fn explain_schema(
    policy: &Policy,
    stream: &str,
    purpose: Option<&str>,
    format: ExplainFormat,
    schema: &crate::avro::Schema,
) -> Result<String, Failure> {
    let s = &policy.streams[super::stream_index(policy, stream)?];
    // The same check the worker makes: a class the taxonomy lacks makes the schema unusable.
    let governed = crate::avro::with_schema_classes(policy, s, schema).map_err(Failure::new)?;
    let purposes: Vec<usize> = match purpose {
        Some(p) => vec![policy
            .purpose_index(p)
            .ok_or_else(|| Failure::new(format!("unknown purpose `{p}`")))?],
        None => (0..policy.purposes.len())
            .filter(|&pi| {
                s.outputs
                    .iter()
                    .any(|(n, _)| *n == policy.purposes[pi].name)
            })
            .collect(),
    };
    let rows = schema_rows(policy, s, schema, &governed);
    let unclassified = unclassified_text(s);
    let verdicts = |r: &SchemaRow| -> Vec<(String, String, String)> {
        let classes: Vec<String> = r.classes.iter().map(|(c, _)| c.clone()).collect();
        purposes
            .iter()
            .map(|&pi| {
                if classes.is_empty() && r.container {
                    (
                        policy.purposes[pi].name.clone(),
                        "(per field below)".to_string(),
                        "its fields".to_string(),
                    )
                } else if classes.is_empty() {
                    (
                        policy.purposes[pi].name.clone(),
                        format!("{unclassified} (unclassified)"),
                        "default".to_string(),
                    )
                } else {
                    let row = purpose_row(policy, s, pi, &classes);
                    // A record or map with classes of its own and none
                    // inside passes whole only where kept (as a JSON object):
                    // any other action removes it.
                    let inside = rows.iter().any(|o| {
                        o.inherited.is_none()
                            && !o.classes.is_empty()
                            && o.path.len() > r.path.len()
                            && o.path.starts_with(r.path.as_str())
                            && matches!(o.path.as_bytes()[r.path.len()], b'.' | b'[')
                    });
                    if r.inherited.is_some() && !r.path.ends_with("[]") && row.kind != "keep" {
                        // A record member the policy does not name: like an
                        // unnamed member of a JSON object, it passes only
                        // where its inherited class is kept.
                        (
                            row.purpose,
                            "drop (an unnamed member passes only where kept)".to_string(),
                            row.decided_by,
                        )
                    } else if r.record_or_map && !inside && row.kind != "keep" {
                        (
                            row.purpose,
                            format!(
                                "drop (a {} passes whole only where kept)",
                                if r.ty.starts_with("map") {
                                    "map"
                                } else {
                                    "record"
                                }
                            ),
                            row.decided_by,
                        )
                    } else {
                        (row.purpose, row.action, row.decided_by)
                    }
                }
            })
            .collect()
    };
    Ok(match format {
        ExplainFormat::Json => {
            let fields: Vec<Value> = rows
                .iter()
                .map(|r| {
                    json!({
                        "path": r.path,
                        "type": r.ty,
                        "classes": r.classes.iter().map(|(c, f)| json!({"class": c, "from": f})).collect::<Vec<_>>(),
                        "inherited_from": r.inherited,
                        "purposes": verdicts(r).into_iter().map(|(p, a, d)| json!({"purpose": p, "action": a, "decided_by": d})).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let v = json!({"policy": policy.id(), "stream": s.name, "schema": schema.fingerprint(), "fields": fields});
            let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
            text.push('\n');
            text
        }
        ExplainFormat::Table => {
            let mut lines: Vec<[String; 6]> = vec![[
                "PATH".into(),
                "TYPE".into(),
                "CLASSES (FROM)".into(),
                "PURPOSE".into(),
                "ACTION".into(),
                "DECIDED BY".into(),
            ]];
            for r in &rows {
                let mut classes = r
                    .classes
                    .iter()
                    .map(|(c, f)| format!("{c} ({f})"))
                    .collect::<Vec<_>>()
                    .join(", ");
                if let Some(p) = &r.inherited {
                    classes = format!("{classes} inherited from {p}");
                }
                for (i, (p, a, d)) in verdicts(r).into_iter().enumerate() {
                    let first = i == 0;
                    lines.push([
                        if first { r.path.clone() } else { String::new() },
                        if first { r.ty.clone() } else { String::new() },
                        if first {
                            classes.clone()
                        } else {
                            String::new()
                        },
                        p,
                        a,
                        d,
                    ]);
                }
            }
            let mut widths = [0usize; 6];
            for l in &lines {
                for (i, c) in l.iter().enumerate() {
                    widths[i] = widths[i].max(c.chars().count());
                }
            }
            let mut out = format!(
                "policy {}\nstream {} (topic {}) with schema {}\n",
                policy.id(),
                s.name,
                s.topic,
                schema.fingerprint()
            );
            for l in lines {
                let mut line = String::new();
                for (i, c) in l.iter().enumerate() {
                    line.push_str(c);
                    if i < 5 {
                        line.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
                    }
                }
                out.push_str(line.trim_end());
                out.push('\n');
            }
            out
        }
    })
}
