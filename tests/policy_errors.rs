//! Policy validation: every error at once, each with line and column.

use custos::policy;

const BASE: &str = r#"version: 1
name: t
keys:
  k: { env: K }
purposes:
  analytics:
    basis: legitimate_interest
    retention: 30d
    rules:
      - classes: [public]
        action: keep
streams:
  s:
    topic: in
    fields:
      a: public
    outputs:
      analytics: out
"#;

/// Loads `text` and checks that the located diagnostics are exactly `expected`
/// (each `line:col: fragment of the message`).
fn check(text: &str, expected: &[(&str, &str)]) {
    let errs = policy::load(text, "p.yaml").expect_err("policy should be rejected");
    let got: Vec<String> = errs
        .diagnostics
        .iter()
        .map(|d| format!("{}:{}: {}", d.pos.line, d.pos.col, d.message))
        .collect();
    assert_eq!(got.len(), expected.len(), "diagnostics: {got:#?}");
    for ((loc, frag), g) in expected.iter().zip(&got) {
        assert!(
            g.starts_with(&format!("{loc}: ")),
            "expected location {loc} in {g}"
        );
        assert!(g.contains(frag), "expected {frag:?} in {g}");
    }
    let shown = errs.to_string();
    assert!(shown.starts_with("p.yaml:"), "{shown}");
}

fn replace(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replace(from, to)
}

#[test]
fn base_policy_is_valid() {
    let p = policy::load(BASE, "p.yaml").unwrap();
    assert_eq!(p.name, "t");
    assert_eq!(p.digest.len(), 12);
    assert_eq!(p.purposes[0].retention_ms, 30 * 86_400_000);
}

#[test]
fn yaml_syntax_error_is_located() {
    check("version: 1\nname: [x\n", &[("3:1", "YAML syntax error")]);
}

#[test]
fn unknown_keys_everywhere() {
    check(
        &replace("name: t", "name: t\nnmae: x"),
        &[(
            "3:1",
            "unknown key `nmae` in the policy (did you mean `name`?)",
        )],
    );
    check(
        &replace("    basis:", "    basiss: x\n    basis:"),
        &[("7:5", "unknown key `basiss`")],
    );
    check(
        &replace("    topic: in", "    topic: in\n    formt: json"),
        &[("15:5", "unknown key `formt` in stream `s`")],
    );
}

#[test]
fn unknown_class_with_suggestion() {
    check(&replace("      a: public", "      a: pii.contcat.email"), &[("16:10", "unknown class `pii.contcat.email` in field `a` of stream `s` (did you mean `pii.contact.email`?)")]);
    check(
        &replace("[public]", "[pubic]"),
        &[("10:19", "unknown class `pubic`")],
    );
}

#[test]
fn declared_classes_are_usable() {
    let text = replace("keys:", "classes:\n  acme.score: A score\nkeys:")
        .replace("      a: public", "      a: acme.score");
    policy::load(&text, "p.yaml").unwrap();
}

#[test]
fn unknown_purpose_and_key() {
    check(
        &replace("      analytics: out", "      analytcs: out"),
        &[("18:7", "unknown purpose `analytcs` in `outputs`")],
    );
    check(
        &replace("action: keep", "action: { pseudonymize: { key: nokey } }"),
        &[("11:40", "unknown key `nokey`")],
    );
}

#[test]
fn bad_durations_and_bases() {
    check(
        &replace("retention: 30d", "retention: 30"),
        &[("8:16", "has no unit")],
    );
    check(
        &replace("retention: 30d", "retention: 4w"),
        &[("8:16", "bad duration unit")],
    );
    check(
        &replace("basis: legitimate_interest", "basis: because"),
        &[("7:12", "unknown basis `because`")],
    );
}

#[test]
fn duplicate_rules() {
    check(
        &replace(
            "        action: keep\n",
            "        action: keep\n      - classes: [internal, public]\n        action: drop\n",
        ),
        &[(
            "12:29",
            "class `public` has two rules in purpose `analytics`",
        )],
    );
}

#[test]
fn unknown_and_unsupported_actions() {
    check(
        &replace("action: keep", "action: scramble"),
        &[("11:17", "unknown action `scramble`")],
    );
    // encrypt needs the subject whose key it uses.
    check(
        &replace("action: keep", "action: { encrypt: { key: k } }"),
        &[("13:3", "stream `s` encrypts `a` (class `public`) for purpose `analytics` but has no `subject:`")],
    );
    let with_subject = replace("action: keep", "action: { encrypt: { key: k } }")
        .replace("    topic: in\n", "    topic: in\n    subject: a\n");
    assert!(policy::load(&with_subject, "p.yaml").is_ok());
    check(
        &replace("action: keep", "action: { generalize: { date: week } }"),
        &[("11:39", "`date` must be year, month or day")],
    );
    check(
        &replace("action: keep", "action: { mask: { char: ab } }"),
        &[("11:33", "exactly one character")],
    );
}

#[test]
fn inline_secret_and_missing_key_source() {
    check(
        &replace("  k: { env: K }", "  k: { value: hunter2 }"),
        &[("4:6", "secrets never go in the policy")],
    );
    check(
        &replace("  k: { env: K }", "  k: {}"),
        &[("4:6", "needs `env: VAR` or `file: PATH`")],
    );
}

#[test]
fn invariant_violation_names_purpose_class_action() {
    let text = replace("[public]", "[public, sensitive.health]")
        + "invariants:\n  - classes: [sensitive]\n    purposes: [analytics]\n    only: [drop, redact]\n";
    check(&text, &[("10:27", "invariant 1 (line 20) violated: purpose `analytics` gives class `sensitive.health` the action `keep`")]);
    // A broader rule covering the class violates too.
    let text = replace("[public]", "[public, sensitive]")
        + "invariants:\n  - classes: [sensitive.health]\n    purposes: [analytics]\n    only: [redact]\n";
    check(
        &text,
        &[("10:27", "gives class `sensitive.health` the action `keep`")],
    );
    // Default drop never violates.
    let text = BASE.to_string()
        + "invariants:\n  - classes: [sensitive]\n    purposes: [analytics]\n    only: [redact]\n";
    policy::load(&text, "p.yaml").unwrap();
}

#[test]
fn consent_basis_needs_consent_topic() {
    check(
        &replace("basis: legitimate_interest", "basis: consent"),
        &[("6:3", "has basis `consent` but the policy has no `consent")],
    );
    let text = replace("basis: legitimate_interest", "basis: consent")
        + "consent:\n  topic: privacy.consent\n";
    policy::load(&text, "p.yaml").unwrap();
}

#[test]
fn bad_paths_and_topics() {
    check(
        &replace("      a: public", "      a[1]: public"),
        &[("16:7", "bad array syntax")],
    );
    check(
        &replace("      a: public", "      $value: public"),
        &[("16:7", "unknown special path")],
    );
    check(
        &replace("      analytics: out", "      analytics: in"),
        &[("13:3", "every output needs its own topic")],
    );
}

#[test]
fn all_errors_at_once_sorted_by_position() {
    let text = replace("retention: 30d", "retention: 30x")
        .replace("[public]", "[pubic]")
        .replace("      a: public", "      a: nope");
    let errs = policy::load(&text, "p.yaml").unwrap_err();
    let lines: Vec<u32> = errs.diagnostics.iter().map(|d| d.pos.line).collect();
    assert_eq!(lines, vec![8, 10, 16]);
}

#[test]
fn missing_required_parts() {
    let errs = policy::load("version: 1\n", "p.yaml")
        .unwrap_err()
        .to_string();
    for frag in ["missing `name`", "missing `purposes`", "missing `streams`"] {
        assert!(errs.contains(frag), "{frag} in {errs}");
    }
}
