//! Policy diff: what a change of policy changes in what each purpose receives.
//!
//! Compares two *compiled* policies (their resolved plans), never their YAML
//! text: a reordered or restyled file with the same effect has no changes.
//! Every change is classified as **widening** (some purpose may now receive
//! more), **narrowing** (less), **neutral** (no disclosure effect, but worth
//! saying) or **changed** (routing: output topic, subject or event-time path;
//! neutral for disclosure, but review it).
//!
//! Pure: two compiled policies in, a list of changes out. It must never look
//! at key bytes (plans compiled with [`dummy_keys`] give the same result as
//! plans compiled with the real secrets: keys only change pseudonym values,
//! not what is disclosed) and never read files or the environment.
//!
//! Over 600 lines: `stream` walks every field path, span detector and output
//! of a stream in one function so that each kind of change is decided (and
//! its impact judged) in exactly one place; splitting it would spread one
//! comparison over files.

use std::fmt;

use serde::Serialize;

use super::keys::Keys;
use super::plan::{decide_class, ClassDecision, Compiled, Leaf, Reason, StreamPlan};
use super::{Action, ActionKind, Basis, FieldPath, Generalize, Policy, Segment, Unclassified};
use crate::classify::Detector;

/// Keys for a diff: every key the policy declares, with the same dummy bytes.
/// What a purpose receives does not depend on key bytes, only pseudonym values do.
pub fn dummy_keys(policy: &Policy) -> Keys {
    Keys::from_pairs(
        policy
            .keys
            .iter()
            .map(|(name, _)| (name.clone(), b"custos-policy-diff-dummy-key".to_vec())),
    )
}

/// What a change does to disclosure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    /// Some purpose may receive more than before.
    Widening,
    /// Some purpose receives less than before.
    Narrowing,
    /// No disclosure effect (said because a reviewer wants to know).
    Neutral,
    /// Routing changed (topic, subject, event time): not a disclosure change by itself.
    Changed,
}

impl Impact {
    pub fn name(self) -> &'static str {
        match self {
            Impact::Widening => "widening",
            Impact::Narrowing => "narrowing",
            Impact::Neutral => "neutral",
            Impact::Changed => "changed",
        }
    }
}

impl fmt::Display for Impact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What was compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A stream appeared or disappeared.
    Stream,
    /// The input topic of a stream.
    StreamTopic,
    Subject,
    EventTime,
    MaxFutureSkew,
    /// What happens to unclassified fields.
    Unclassified,
    /// A purpose's output of a stream appeared or disappeared.
    Output,
    /// The topic of an output.
    OutputTopic,
    Basis,
    Retention,
    /// The classes of a path.
    Classes,
    /// A path is scanned for personal data, or no longer.
    Scan,
    /// The action a purpose gives a path.
    Action,
    /// The action a purpose gives a class detected inside a scanned path.
    Span,
    /// The action a purpose gives a card number, IBAN or US SSN found inside
    /// a kept value of a field that is not scanned (the engine's guard).
    Guard,
    /// `$key` and headers classified like the subject: an erasure or
    /// objection found under them applies too.
    SubjectAliases,
    Invariant,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Stream => "stream",
            Kind::StreamTopic => "stream_topic",
            Kind::Subject => "subject",
            Kind::EventTime => "event_time",
            Kind::MaxFutureSkew => "max_future_skew",
            Kind::Unclassified => "unclassified",
            Kind::Output => "output",
            Kind::OutputTopic => "output_topic",
            Kind::Basis => "basis",
            Kind::Retention => "retention",
            Kind::Classes => "classes",
            Kind::Scan => "scan",
            Kind::Action => "action",
            Kind::Span => "span",
            Kind::Guard => "guard",
            Kind::SubjectAliases => "subject_aliases",
            Kind::Invariant => "invariant",
        }
    }
}

/// One difference between two policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub kind: Kind,
    /// `None` for policy-wide changes (invariants).
    pub stream: Option<String>,
    /// `None` for changes that concern every purpose of a stream.
    pub purpose: Option<String>,
    /// A policy path (`customer.email`, `$key`, `$headers.NAME`), a detected
    /// class inside a scanned path (`notes ⟶ pii.contact.email`), or the
    /// classes of an invariant.
    pub path: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub rule_before: Option<String>,
    pub rule_after: Option<String>,
    pub impact: Impact,
    /// Why the change has this impact, in a few words.
    pub note: String,
}

/// Counts of changes by impact (`changed` counts as neutral here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub widening: usize,
    pub narrowing: usize,
    pub neutral: usize,
}

pub fn summary(changes: &[Change]) -> Summary {
    let mut s = Summary::default();
    for c in changes {
        match c.impact {
            Impact::Widening => s.widening += 1,
            Impact::Narrowing => s.narrowing += 1,
            Impact::Neutral | Impact::Changed => s.neutral += 1,
        }
    }
    s
}

/// Compares two actions by what they disclose: `None` when equal.
///
/// Kinds compare by restrictiveness (drop < redact < pseudonymize < encrypt <
/// mask < generalize < keep). Within a kind: a mask that keeps more
/// characters, a generalization that keeps more (more decimals, a finer date,
/// a narrower bucket, a longer prefix or network) widens; a different
/// pseudonymization or encryption key, or a different mask character, is
/// neutral; two generalizations of different sorts cannot be ordered and are
/// reported as widening so that a person looks at them.
pub fn compare_actions(before: &Action, after: &Action) -> Option<(Impact, String)> {
    if before == after {
        return None;
    }
    let (kb, ka) = (before.kind(), after.kind());
    if kb != ka {
        return Some(if ka > kb {
            (
                Impact::Widening,
                format!("less restrictive: {} → {}", kb.name(), ka.name()),
            )
        } else {
            (
                Impact::Narrowing,
                format!("more restrictive: {} → {}", kb.name(), ka.name()),
            )
        });
    }
    let order = |more: bool, less: bool, what: &str| -> (Impact, String) {
        if more && !less {
            (Impact::Widening, format!("{what}: keeps more"))
        } else if less && !more {
            (Impact::Narrowing, format!("{what}: keeps less"))
        } else if more && less {
            (
                Impact::Widening,
                format!("{what}: keeps more of one part and less of another"),
            )
        } else {
            (Impact::Neutral, format!("{what}: same amount kept"))
        }
    };
    Some(match (before, after) {
        (Action::Pseudonymize { .. }, Action::Pseudonymize { .. })
        | (Action::Encrypt { .. }, Action::Encrypt { .. }) => (
            Impact::Neutral,
            "other key: different pseudonym values, same disclosure".to_string(),
        ),
        (
            Action::Mask {
                keep_first: f0,
                keep_last: l0,
                ..
            },
            Action::Mask {
                keep_first: f1,
                keep_last: l1,
                ..
            },
        ) => order(f1 > f0 || l1 > l0, f1 < f0 || l1 < l0, "mask"),
        (Action::Generalize(g0), Action::Generalize(g1)) => match (g0, g1) {
            (Generalize::Round(a), Generalize::Round(b)) => order(b > a, b < a, "round"),
            (Generalize::Date(a), Generalize::Date(b)) => {
                let rank = |u: &super::DateUnit| match u {
                    super::DateUnit::Year => 0,
                    super::DateUnit::Month => 1,
                    super::DateUnit::Day => 2,
                };
                order(rank(b) > rank(a), rank(b) < rank(a), "date")
            }
            (Generalize::Bucket(a), Generalize::Bucket(b)) => order(b < a, b > a, "bucket"),
            (Generalize::Prefix(a), Generalize::Prefix(b)) => order(b > a, b < a, "prefix"),
            (Generalize::Network { v4: a4, v6: a6 }, Generalize::Network { v4: b4, v6: b6 }) => {
                order(b4 > a4 || b6 > a6, b4 < a4 || b6 < a6, "network")
            }
            _ => (
                Impact::Widening,
                "another sort of generalization: cannot be ordered, review it".to_string(),
            ),
        },
        _ => (Impact::Neutral, "same action".to_string()),
    })
}

/// The rule that decided a field's action for a purpose, as `explain` shows
/// it: the winning class's rule (or the default), and when several classes
/// compete, which one won.
pub fn decided_by(purpose: &str, winner: ActionKind, per_class: &[ClassDecision]) -> String {
    match per_class.iter().find(|d| d.action.kind() == winner) {
        Some(d) => {
            let base = d.reason.describe(purpose);
            if per_class.len() > 1 {
                format!(
                    "{base}; most restrictive of {} classes (via {})",
                    per_class.len(),
                    d.class
                )
            } else {
                base
            }
        }
        None => Reason::Default.describe(purpose),
    }
}

/// The leaf that governs `path` in a plan: the node named by the path, or
/// the nearest ancestor it inherits from (unclassified at the root).
fn leaf_at<'a>(plan: &'a StreamPlan, path: &str) -> &'a Leaf {
    match FieldPath::parse(path) {
        Ok(FieldPath::Key) => &plan.key,
        Ok(FieldPath::Header(h)) => plan
            .headers
            .iter()
            .find(|(n, _)| *n == h)
            .map_or(&*plan.root.leaf, |(_, l)| &**l),
        Ok(FieldPath::Value(segs)) => {
            let mut node = &plan.root;
            for seg in &segs {
                let next = match seg {
                    Segment::Field(name) => node.child(name),
                    Segment::Each => node.each.as_deref(),
                };
                match next {
                    Some(n) => node = n,
                    None => break,
                }
            }
            &node.leaf
        }
        // Paths come from compiled plans: they always parse.
        Err(_) => &plan.root.leaf,
    }
}

fn unclassified_name(u: Unclassified) -> &'static str {
    match u {
        Unclassified::Drop => "drop",
        Unclassified::DeadLetter => "dead_letter",
    }
}

fn opt_path(p: &Option<FieldPath>) -> String {
    p.as_ref().map_or("none".to_string(), ToString::to_string)
}

/// Every change from `old` to `new`: policy-wide first, then per stream (in
/// `new`'s order, removed streams last), stream-wide before per purpose (in
/// policy order), paths in policy order.
pub fn diff(old: &Compiled, new: &Compiled) -> Vec<Change> {
    let mut out = Vec::new();
    invariants(&old.policy, &new.policy, &mut out);
    for ns in &new.streams {
        match old.stream(&ns.name) {
            Some(os) => stream(old, new, os, ns, &mut out),
            None => {
                out.push(stream_level(
                    ns,
                    Kind::Stream,
                    None,
                    Some(format!("topic {}", ns.topic)),
                    Impact::Widening,
                    "new stream",
                ));
                for o in &ns.outputs {
                    output_added(new, ns, o, &mut out);
                }
            }
        }
    }
    for os in &old.streams {
        if new.stream(&os.name).is_none() {
            out.push(stream_level(
                os,
                Kind::Stream,
                Some(format!("topic {}", os.topic)),
                None,
                Impact::Narrowing,
                "stream removed: no purpose receives it",
            ));
        }
    }
    out
}

fn stream_level(
    s: &StreamPlan,
    kind: Kind,
    before: Option<String>,
    after: Option<String>,
    impact: Impact,
    note: &str,
) -> Change {
    Change {
        kind,
        stream: Some(s.name.clone()),
        purpose: None,
        path: None,
        before,
        after,
        rule_before: None,
        rule_after: None,
        impact,
        note: note.to_string(),
    }
}

fn invariants(old: &Policy, new: &Policy, out: &mut Vec<Change>) {
    let norm = |p: &Policy| -> Vec<(String, String)> {
        p.invariants
            .iter()
            .map(|i| {
                let mut c = i.classes.clone();
                c.sort();
                c.dedup();
                let mut ps = i.purposes.clone();
                ps.sort();
                ps.dedup();
                let mut only: Vec<&str> = i.only.iter().map(|k| k.name()).collect();
                only.sort();
                only.dedup();
                (
                    c.join(", "),
                    format!("purposes [{}] only [{}]", ps.join(", "), only.join(", ")),
                )
            })
            .collect()
    };
    let (o, n) = (norm(old), norm(new));
    let inv = |(classes, rest): &(String, String), before: bool, impact, note: &str| Change {
        kind: Kind::Invariant,
        stream: None,
        purpose: None,
        path: Some(classes.clone()),
        before: before.then(|| rest.clone()),
        after: (!before).then(|| rest.clone()),
        rule_before: None,
        rule_after: None,
        impact,
        note: note.to_string(),
    };
    for i in o.iter().filter(|i| !n.contains(i)) {
        out.push(inv(
            i,
            true,
            Impact::Widening,
            "invariant removed: nothing stops these classes any more",
        ));
    }
    for i in n.iter().filter(|i| !o.contains(i)) {
        out.push(inv(i, false, Impact::Narrowing, "invariant added"));
    }
}

/// Paths of both plans: `new`'s in policy order, then paths only `old` names.
fn paths(old: &StreamPlan, new: &StreamPlan) -> Vec<String> {
    let mut all: Vec<String> = new.fields.iter().map(|(p, _)| p.clone()).collect();
    for (p, _) in &old.fields {
        if !all.contains(p) {
            all.push(p.clone());
        }
    }
    all
}

/// One detected class per row (ipv4 and ipv6 share a class).
fn span_classes() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for d in Detector::ALL {
        if !v.contains(&d.class()) {
            v.push(d.class());
        }
    }
    v
}

fn stream(old: &Compiled, new: &Compiled, os: &StreamPlan, ns: &StreamPlan, out: &mut Vec<Change>) {
    let mut routing = |kind, before: String, after: String, impact, note: &str| {
        if before != after {
            out.push(stream_level(
                ns,
                kind,
                Some(before),
                Some(after),
                impact,
                note,
            ));
        }
    };
    routing(
        Kind::StreamTopic,
        os.topic.clone(),
        ns.topic.clone(),
        Impact::Changed,
        "input topic changed",
    );
    routing(
        Kind::Subject,
        opt_path(&os.subject),
        opt_path(&ns.subject),
        Impact::Changed,
        "consent, objection and erasure are checked against another path",
    );
    routing(
        Kind::EventTime,
        opt_path(&os.event_time),
        opt_path(&ns.event_time),
        Impact::Changed,
        "retention counts from another time",
    );
    routing(
        Kind::MaxFutureSkew,
        format!("{}ms", os.max_future_skew_ms),
        format!("{}ms", ns.max_future_skew_ms),
        Impact::Changed,
        "another bound on event times in the future",
    );
    let aliases = |p: &StreamPlan| -> Vec<String> {
        let mut v: Vec<String> = p.subject_aliases.iter().map(ToString::to_string).collect();
        v.sort();
        v
    };
    let (ao, an) = (aliases(os), aliases(ns));
    if ao != an {
        let removed = ao.iter().any(|a| !an.contains(a));
        let text = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        out.push(stream_level(
            ns,
            Kind::SubjectAliases,
            Some(text(&ao)),
            Some(text(&an)),
            if removed {
                Impact::Widening
            } else {
                Impact::Narrowing
            },
            if removed {
                "an erasure or objection found under a removed alias no longer applies"
            } else {
                "an erasure or objection found under the new alias applies too"
            },
        ));
    }
    if os.unclassified != ns.unclassified {
        out.push(stream_level(
            ns,
            Kind::Unclassified,
            Some(unclassified_name(os.unclassified).into()),
            Some(unclassified_name(ns.unclassified).into()),
            Impact::Neutral,
            "unclassified fields reach no purpose either way; only whether the record is dead-lettered changes",
        ));
    }

    let paths = paths(os, ns);
    // Classes and scanning of every path, whatever the purposes.
    for path in &paths {
        let (lo, ln) = (leaf_at(os, path), leaf_at(ns, path));
        let (mut co, mut cn) = (lo.classes.clone(), ln.classes.clone());
        co.sort();
        cn.sort();
        if co != cn {
            let reaches = ln.decisions.iter().any(|d| d.kind != ActionKind::Drop);
            let (impact, note) = if co.is_empty() && reaches {
                (
                    Impact::Widening,
                    "newly classified: reaches a purpose that never received it",
                )
            } else if co.is_empty() {
                (Impact::Neutral, "newly classified (no purpose receives it)")
            } else if cn.is_empty() {
                (
                    Impact::Narrowing,
                    "no longer classified: reaches no purpose",
                )
            } else {
                (
                    Impact::Neutral,
                    "other classes (their effect is in the action rows)",
                )
            };
            out.push(Change {
                path: Some(path.clone()),
                ..stream_level(
                    ns,
                    Kind::Classes,
                    Some(classes_text(&lo.classes)),
                    Some(classes_text(&ln.classes)),
                    impact,
                    note,
                )
            });
        }
        if lo.scan != ln.scan {
            let (impact, note) = if lo.scan {
                (
                    Impact::Widening,
                    "no longer scanned: personal data inside it is no longer transformed",
                )
            } else {
                (
                    Impact::Narrowing,
                    "now scanned: personal data inside it is transformed",
                )
            };
            out.push(Change {
                path: Some(path.clone()),
                ..stream_level(
                    ns,
                    Kind::Scan,
                    Some(scan_text(lo.scan)),
                    Some(scan_text(ln.scan)),
                    impact,
                    note,
                )
            });
        }
    }

    for (ni, no) in ns.outputs.iter().enumerate() {
        let Some(oi) = os.outputs.iter().position(|o| o.name == no.name) else {
            output_added(new, ns, no, out);
            continue;
        };
        let oo = &os.outputs[oi];
        let purpose = |kind, before, after, impact, note: &str| Change {
            purpose: Some(no.name.clone()),
            ..stream_level(ns, kind, Some(before), Some(after), impact, note)
        };
        if oo.topic != no.topic {
            out.push(purpose(
                Kind::OutputTopic,
                oo.topic.clone(),
                no.topic.clone(),
                Impact::Changed,
                "output topic changed: check who reads the new one",
            ));
        }
        if oo.basis != no.basis {
            let (impact, note) = if oo.basis == Basis::Consent {
                (Impact::Widening, "no longer needs consent")
            } else if no.basis == Basis::Consent {
                (Impact::Narrowing, "now needs consent")
            } else {
                (
                    Impact::Neutral,
                    "another lawful basis, no consent either way",
                )
            };
            out.push(purpose(
                Kind::Basis,
                oo.basis.name().into(),
                no.basis.name().into(),
                impact,
                note,
            ));
        }
        if oo.retention_ms != no.retention_ms {
            let (impact, note) = if no.retention_ms > oo.retention_ms {
                (Impact::Widening, "kept longer")
            } else {
                (Impact::Narrowing, "kept shorter")
            };
            out.push(purpose(
                Kind::Retention,
                old.policy.purposes[oo.purpose].retention_text.clone(),
                new.policy.purposes[no.purpose].retention_text.clone(),
                impact,
                note,
            ));
        }
        // The guard acts on kept values of fields that are not scanned.
        let keeps_unscanned = |p: &StreamPlan, i: usize| {
            p.fields.iter().any(|(_, l)| {
                !l.scan
                    && l.decisions
                        .get(i)
                        .is_some_and(|d| d.kind == ActionKind::Keep)
            })
        };
        if keeps_unscanned(os, oi) || keeps_unscanned(ns, ni) {
            for class in guard_classes() {
                let c0 = decide_class(&old.policy, oo.purpose, class);
                let c1 = decide_class(&new.policy, no.purpose, class);
                if let Some((impact, note)) =
                    compare_actions(&span_norm(&c0.action), &span_norm(&c1.action))
                {
                    out.push(Change {
                        path: Some(format!("kept values ⟶ {class}")),
                        rule_before: Some(c0.reason.describe(&no.name)),
                        rule_after: Some(c1.reason.describe(&no.name)),
                        ..purpose(
                            Kind::Guard,
                            span_text(&c0.action, class),
                            span_text(&c1.action, class),
                            impact,
                            &format!("found inside kept values that are not scanned: {note}"),
                        )
                    });
                }
            }
        }
        for path in &paths {
            let (lo, ln) = (leaf_at(os, path), leaf_at(ns, path));
            let (Some(d0), Some(d1)) = (lo.decisions.get(oi), ln.decisions.get(ni)) else {
                continue;
            };
            if let Some((impact, note)) = compare_actions(&d0.action, &d1.action) {
                out.push(Change {
                    path: Some(path.clone()),
                    rule_before: Some(decided_by(&no.name, d0.kind, &d0.per_class)),
                    rule_after: Some(decided_by(&no.name, d1.kind, &d1.per_class)),
                    ..purpose(
                        Kind::Action,
                        d0.action.describe(),
                        d1.action.describe(),
                        impact,
                        &note,
                    )
                });
            }
            // Detected spans matter where the field is scanned in both and
            // reaches the purpose in either (a dropped or redacted field
            // carries no span).
            let reaches = |k: ActionKind| k > ActionKind::Redact;
            if lo.scan && ln.scan && (reaches(d0.kind) || reaches(d1.kind)) {
                for class in span_classes() {
                    let c0 = decide_class(&old.policy, oo.purpose, class);
                    let c1 = decide_class(&new.policy, no.purpose, class);
                    if let Some((impact, note)) =
                        compare_actions(&span_norm(&c0.action), &span_norm(&c1.action))
                    {
                        out.push(Change {
                            path: Some(format!("{path} ⟶ {class}")),
                            rule_before: Some(c0.reason.describe(&no.name)),
                            rule_after: Some(c1.reason.describe(&no.name)),
                            ..purpose(
                                Kind::Span,
                                span_text(&c0.action, class),
                                span_text(&c1.action, class),
                                impact,
                                &format!("detected in scanned text: {note}"),
                            )
                        });
                    }
                }
            }
        }
    }
    for oo in &os.outputs {
        if !ns.outputs.iter().any(|o| o.name == oo.name) {
            out.push(Change {
                purpose: Some(oo.name.clone()),
                ..stream_level(
                    ns,
                    Kind::Output,
                    Some(output_text(old, oo)),
                    None,
                    Impact::Narrowing,
                    "output removed: the purpose no longer receives this stream",
                )
            });
        }
    }
}

/// A dropped span leaves a redaction marker: drop and redact disclose the same.
fn span_norm(a: &Action) -> Action {
    match a {
        Action::Drop => Action::Redact,
        other => other.clone(),
    }
}

/// The classes the engine's guard looks for in kept values that are not scanned.
fn guard_classes() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for d in [Detector::Card, Detector::Iban, Detector::UsSsn] {
        if !v.contains(&d.class()) {
            v.push(d.class());
        }
    }
    v
}

/// A span action as `explain` shows it: drop and redact leave a marker.
fn span_text(a: &Action, class: &str) -> String {
    if a.kind() <= ActionKind::Redact {
        format!("{} → [REDACTED:{class}]", a.describe())
    } else {
        a.describe()
    }
}

fn classes_text(c: &[String]) -> String {
    if c.is_empty() {
        "unclassified".into()
    } else {
        c.join(", ")
    }
}

fn scan_text(scan: bool) -> String {
    if scan { "scan" } else { "no scan" }.into()
}

fn output_text(c: &Compiled, o: &super::plan::OutputPlan) -> String {
    format!(
        "topic {}, basis {}, retention {}",
        o.topic,
        o.basis.name(),
        c.policy.purposes[o.purpose].retention_text
    )
}

/// A new output, and every path it receives (anything but drop).
fn output_added(c: &Compiled, s: &StreamPlan, o: &super::plan::OutputPlan, out: &mut Vec<Change>) {
    let i = s.outputs.iter().position(|x| x.name == o.name).unwrap_or(0);
    out.push(Change {
        purpose: Some(o.name.clone()),
        ..stream_level(
            s,
            Kind::Output,
            None,
            Some(output_text(c, o)),
            Impact::Widening,
            "new output: the purpose receives this stream",
        )
    });
    for (path, leaf) in &s.fields {
        let Some(d) = leaf.decisions.get(i) else {
            continue;
        };
        if d.kind == ActionKind::Drop {
            continue;
        }
        out.push(Change {
            kind: Kind::Action,
            stream: Some(s.name.clone()),
            purpose: Some(o.name.clone()),
            path: Some(path.clone()),
            before: None,
            after: Some(d.action.describe()),
            rule_before: None,
            rule_after: Some(decided_by(&o.name, d.kind, &d.per_class)),
            impact: Impact::Widening,
            note: "received by a new output".into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_order() {
        let keep = Action::Keep;
        let drop = Action::Drop;
        assert_eq!(compare_actions(&keep, &keep), None);
        assert_eq!(
            compare_actions(&drop, &keep).map(|x| x.0),
            Some(Impact::Widening)
        );
        assert_eq!(
            compare_actions(&keep, &drop).map(|x| x.0),
            Some(Impact::Narrowing)
        );
        let ps = |k: &str| Action::Pseudonymize { key: k.into() };
        assert_eq!(
            compare_actions(&ps("a"), &ps("b")).map(|x| x.0),
            Some(Impact::Neutral)
        );
        let mask = |f, l| Action::Mask {
            keep_first: f,
            keep_last: l,
            ch: '*',
        };
        assert_eq!(
            compare_actions(&mask(0, 4), &mask(0, 6)).map(|x| x.0),
            Some(Impact::Widening)
        );
        assert_eq!(
            compare_actions(&mask(2, 4), &mask(0, 4)).map(|x| x.0),
            Some(Impact::Narrowing)
        );
        let g = |x| Action::Generalize(x);
        assert_eq!(
            compare_actions(&g(Generalize::Round(1)), &g(Generalize::Round(2))).map(|x| x.0),
            Some(Impact::Widening)
        );
        assert_eq!(
            compare_actions(&g(Generalize::Round(1)), &g(Generalize::Prefix(2))).map(|x| x.0),
            Some(Impact::Widening)
        );
    }
}
