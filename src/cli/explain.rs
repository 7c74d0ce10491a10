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
        Some(s) => vec![policy.stream(s).ok_or_else(|| {
            Failure::new(format!(
                "unknown stream `{s}`; the policy has: {}",
                policy
                    .streams
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?],
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
