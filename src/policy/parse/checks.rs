//! Cross-reference checks over the whole policy, once every section is read:
//! state topics for consent-based purposes, topic collisions, invariants.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Everything that needs more than one section: run after all are read,
/// adding its errors to the section errors (all reported at once).
pub(super) fn cross_references(policy: &Policy, consent_declared: bool, cx: &mut Ctx) {
    if !consent_declared {
        for p in policy.purposes.iter().filter(|p| p.basis == Basis::Consent) {
            cx.err(p.pos, format!("purpose `{}` has basis `consent` but the policy has no `consent: {{ topic: … }}` to read consent from", p.name));
        }
    }
    // Topics must not collide: a stream reading another's output would loop,
    // two purposes sharing a topic would mix what each may see.
    let mut seen_topics: HashMap<&str, String> = HashMap::new();
    for s in &policy.streams {
        if let Some(prev) = seen_topics.insert(&s.topic, format!("input of stream `{}`", s.name)) {
            cx.err(
                s.pos,
                format!(
                    "topic `{}` of stream `{}` is already the {prev}",
                    s.topic, s.name
                ),
            );
        }
    }
    for s in &policy.streams {
        for (p, t) in &s.outputs {
            let me = format!("output of purpose `{p}` in stream `{}`", s.name);
            if let Some(prev) = seen_topics.insert(t, me.clone()) {
                cx.err(s.pos, format!("topic `{t}` is both the {me} and the {prev}; every output needs its own topic"));
            }
        }
    }
    check_invariants(policy, cx);
    check_encrypt_subjects(policy, cx);
}

/// `encrypt` uses the data subject's key: a stream that encrypts anything
/// for any purpose must say where its subject is (without one, every such
/// value would be redacted).
fn check_encrypt_subjects(policy: &Policy, cx: &mut Ctx) {
    for s in policy.streams.iter().filter(|s| s.subject.is_none()) {
        let scanned = s.fields.iter().any(|f| f.scan);
        let detector_classes = crate::classify::Detector::ALL
            .iter()
            .filter(|_| scanned)
            .map(|d| (d.class(), "a detector's finding".to_string()));
        let field_classes = s.fields.iter().flat_map(|f| {
            f.classes
                .iter()
                .map(move |c| (c.as_str(), format!("`{}`", f.path)))
        });
        let found = field_classes
            .chain(detector_classes)
            .find_map(|(class, what)| {
                s.outputs.iter().find_map(|(p, _)| {
                    let pi = policy.purpose_index(p)?;
                    let d = crate::policy::plan::decide_class(policy, pi, class);
                    matches!(d.action, Action::Encrypt { .. })
                        .then(|| (p.clone(), class, what.clone()))
                })
            });
        if let Some((purpose, class, what)) = found {
            cx.err(
                s.pos,
                format!("stream `{}` encrypts {what} (class `{class}`) for purpose `{purpose}` but has no `subject:`; encrypt uses the data subject's own key: add `subject: <path of the subject id>`", s.name),
            );
        }
    }
}

/// Every (purpose, class) named by an invariant must only get allowed actions:
/// the action of the rule that covers the class, and of every rule for a class
/// below it. `drop` is always allowed (it can never expose anything).
fn check_invariants(policy: &Policy, cx: &mut Ctx) {
    for (i, inv) in policy.invariants.iter().enumerate() {
        let allowed = |k: ActionKind| k == ActionKind::Drop || inv.only.contains(&k);
        let only: Vec<&str> = inv.only.iter().map(|k| k.name()).collect();
        for pname in &inv.purposes {
            let Some(purpose) = policy.purposes.iter().find(|p| &p.name == pname) else {
                continue;
            };
            for class in &inv.classes {
                let mut found: Vec<(&Rule, String, Pos)> = Vec::new();
                if let Some((rule, rc)) = policy.rule_for(purpose, class) {
                    let pos = rule
                        .classes
                        .iter()
                        .position(|c| c == rc)
                        .map_or(rule.pos, |i| rule.class_pos[i]);
                    found.push((rule, class.clone(), pos));
                }
                for rule in &purpose.rules {
                    for (rc, pos) in rule.classes.iter().zip(&rule.class_pos) {
                        if rc != class && taxonomy::is_within(rc, class) {
                            found.push((rule, rc.clone(), *pos));
                        }
                    }
                }
                for (rule, c, pos) in found {
                    let k = rule.action.kind();
                    if !allowed(k) {
                        cx.err(
                            pos,
                            format!(
                                "invariant {} (line {}) violated: purpose `{}` gives class `{}` the action `{}`, but the invariant allows only [{}] for class `{}`",
                                i + 1,
                                inv.pos.line,
                                purpose.name,
                                c,
                                k.name(),
                                only.join(", "),
                                class
                            ),
                        );
                    }
                }
            }
        }
    }
}
