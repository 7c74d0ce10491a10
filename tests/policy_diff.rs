//! `policy diff` against the example policy: every single-rule widening
//! mutation (an action made less restrictive, a class added to a rule that
//! allows more) is reported as widening for that purpose, and none of them
//! is reported as narrowing.

use std::collections::BTreeSet;
use std::sync::Arc;

use custos::policy::diff::{self, Change, Impact};
use custos::policy::plan::{self, Compiled, Reason};
use custos::policy::{self, Action, Generalize, Policy};

fn shop() -> Policy {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop/policy.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    policy::load(&text, "policy.yaml").unwrap()
}

fn compile(p: Policy) -> Compiled {
    let keys = diff::dummy_keys(&p);
    plan::compile(Arc::new(p), &keys).unwrap()
}

fn widens_for(changes: &[Change], purpose: &str) -> bool {
    changes
        .iter()
        .any(|c| c.impact == Impact::Widening && c.purpose.as_deref() == Some(purpose))
}

fn assert_never_narrowing(changes: &[Change], what: &str) {
    assert!(
        changes.iter().all(|c| c.impact != Impact::Narrowing),
        "{what}: {changes:#?}"
    );
}

#[test]
fn the_example_diffed_with_itself_has_no_changes() {
    assert_eq!(diff::diff(&compile(shop()), &compile(shop())), vec![]);
}

#[test]
fn every_less_restrictive_rule_action_is_widening() {
    let base = shop();
    let old = compile(base.clone());
    let candidates = [
        Action::Redact,
        Action::Pseudonymize {
            key: "analytics".into(),
        },
        Action::Mask {
            keep_first: 0,
            keep_last: 2,
            ch: '*',
        },
        Action::Generalize(Generalize::Round(3)),
        Action::Keep,
    ];
    let mut checked = 0;
    for (pi, p) in base.purposes.iter().enumerate() {
        for (ri, r) in p.rules.iter().enumerate() {
            // The rule decides the winning action of some field this purpose receives.
            let effective = old.streams.iter().any(|s| {
                s.outputs
                    .iter()
                    .position(|o| o.purpose == pi)
                    .is_some_and(|oi| {
                        s.fields.iter().any(|(_, leaf)| {
                            let d = &leaf.decisions[oi];
                            d.per_class.iter().any(|c| {
                                matches!(&c.reason, Reason::Rule { index, .. } if *index == ri)
                                    && c.action.kind() == d.kind
                            })
                        })
                    })
            });
            for a in candidates.iter().filter(|a| a.kind() > r.action.kind()) {
                let mut m = base.clone();
                m.purposes[pi].rules[ri].action = a.clone();
                let changes = diff::diff(&old, &compile(m));
                let what = format!("purposes.{}.rules[{ri}] → {}", p.name, a.describe());
                assert_never_narrowing(&changes, &what);
                if effective {
                    assert!(widens_for(&changes, &p.name), "{what}: {changes:#?}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 10, "only {checked} mutations checked");
}

#[test]
fn every_class_added_to_a_more_permissive_rule_is_widening() {
    let base = shop();
    let old = compile(base.clone());
    let classes: BTreeSet<String> = base
        .streams
        .iter()
        .flat_map(|s| s.fields.iter().flat_map(|f| f.classes.clone()))
        .collect();
    let mut checked = 0;
    for (pi, p) in base.purposes.iter().enumerate() {
        for (ri, r) in p.rules.iter().enumerate() {
            for class in &classes {
                let mut m = base.clone();
                m.purposes[pi].rules[ri].classes.push(class.clone());
                m.purposes[pi].rules[ri].class_pos.push(r.pos);
                let before = plan::decide_class(&base, pi, class);
                let after = plan::decide_class(&m, pi, class);
                if after.action.kind() <= before.action.kind() {
                    continue;
                }
                let changes = diff::diff(&old, &compile(m));
                let what = format!("{class} added to purposes.{}.rules[{ri}]", p.name);
                assert_never_narrowing(&changes, &what);
                // Reported on a path of that class, for that purpose.
                let paths: Vec<String> = base
                    .streams
                    .iter()
                    .flat_map(|s| s.fields.iter())
                    .filter(|f| f.classes.contains(class))
                    .map(|f| f.path.to_string())
                    .collect();
                assert!(
                    changes.iter().any(|c| c.impact == Impact::Widening
                        && c.purpose.as_deref() == Some(&p.name)
                        && c.path.as_ref().is_some_and(|x| paths.contains(x))),
                    "{what}: {changes:#?}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "only {checked} mutations checked");
}

#[test]
fn purposes_outputs_bases_retentions_and_invariants() {
    let base = shop();
    let old = compile(base.clone());
    let diff_with = |f: &dyn Fn(&mut Policy)| {
        let mut m = base.clone();
        f(&mut m);
        diff::diff(&old, &compile(m))
    };
    // Marketing no longer needs consent: widening.
    let c = diff_with(&|m| m.purposes[1].basis = policy::Basis::LegitimateInterest);
    assert!(c
        .iter()
        .any(|c| c.kind == diff::Kind::Basis && c.impact == Impact::Widening));
    // Longer retention: widening; shorter: narrowing.
    let c = diff_with(&|m| m.purposes[0].retention_ms *= 2);
    assert!(c
        .iter()
        .any(|c| c.kind == diff::Kind::Retention && c.impact == Impact::Widening));
    let c = diff_with(&|m| m.purposes[0].retention_ms /= 2);
    assert!(c
        .iter()
        .any(|c| c.kind == diff::Kind::Retention && c.impact == Impact::Narrowing));
    // An invariant removed: widening.
    let c = diff_with(&|m| m.invariants.clear());
    assert!(c
        .iter()
        .any(|c| c.kind == diff::Kind::Invariant && c.impact == Impact::Widening));
    // An output removed: narrowing; the same output back is widening.
    let c = diff_with(&|m| m.streams[0].outputs.retain(|(p, _)| p != "support"));
    assert!(c
        .iter()
        .any(|c| c.kind == diff::Kind::Output && c.impact == Impact::Narrowing));
    assert!(c.iter().all(|c| c.impact != Impact::Widening), "{c:#?}");
    let mut fewer = base.clone();
    fewer.streams[0].outputs.retain(|(p, _)| p != "support");
    let back = diff::diff(&compile(fewer), &old);
    assert!(back
        .iter()
        .any(|c| c.kind == diff::Kind::Output && c.impact == Impact::Widening));
    assert!(back.iter().any(|c| c.kind == diff::Kind::Action
        && c.path.as_deref() == Some("customer.email")
        && c.impact == Impact::Widening));
    // Scan removed: widening. Output topic renamed: changed.
    let c = diff_with(&|m| {
        for f in &mut m.streams[0].fields {
            f.scan = false;
        }
    });
    assert!(c
        .iter()
        .any(|c| c.kind == diff::Kind::Scan && c.impact == Impact::Widening));
    let c = diff_with(&|m| m.streams[0].outputs[0].1 = "elsewhere".into());
    assert!(c
        .iter()
        .any(|c| c.kind == diff::Kind::OutputTopic && c.impact == Impact::Changed));
    // `$key` no longer classified like the subject: erasures found under it
    // no longer apply (widening).
    let c = diff_with(&|m| {
        m.streams[0]
            .fields
            .retain(|f| f.path != policy::FieldPath::Key)
    });
    assert!(c
        .iter()
        .any(|c| c.kind == diff::Kind::SubjectAliases && c.impact == Impact::Widening));
    // Support keeps card numbers: also inside kept values that are not scanned (guard).
    let c = diff_with(&|m| m.purposes[2].rules[1].action = Action::Keep);
    assert!(c.iter().any(|c| c.kind == diff::Kind::Guard
        && c.purpose.as_deref() == Some("support")
        && c.impact == Impact::Widening));
    // A subject path changed: changed.
    let c = diff_with(&|m| m.streams[0].subject = None);
    assert!(c
        .iter()
        .any(|c| c.kind == diff::Kind::Subject && c.impact == Impact::Changed));
}
