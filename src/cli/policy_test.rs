//! `custos policy test POLICY [FIXTURES…]`: runs fixture cases through the
//! same engine as `custos apply` and `custos run` and says, per purpose,
//! where the output differs from what the fixture expects.
//!
//! Keys: a fixture's `keys:` gives test secrets for its cases; any key it
//! does not give is read from the environment exactly as `apply` reads it.
//! A key found in neither is an error (exit 2): pseudonym values depend on
//! key bytes, so custos never makes one up. Never put production secrets in
//! a fixture. Exit 0 when every case passes, 1 when any fails, 2 on a bad
//! policy, fixture or missing key. Output goes to stdout (it shows fixture
//! data, which is test data, never record content from a topic).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use serde_json::Value;

use super::fixtures::{self, Case, Expect, Fixture, Input, PurposeExpect};
use super::{load_policy, Failure};
use crate::engine::{self, Limits, Outcome, Record, Scratch, Verdict};
use crate::policy::keys::{read_secret, Keys};
use crate::policy::plan::{self, Compiled, StreamPlan};
use crate::policy::Policy;
use crate::state::MemoryState;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The policy file
    pub policy: PathBuf,
    /// Fixture files (YAML); default: every `*.yaml` in `tests/` next to the policy
    pub fixtures: Vec<PathBuf>,
}

const BAD_INPUT: i32 = 2;

fn bad(message: String) -> Failure {
    let mut f = Failure::new(message);
    f.code = BAD_INPUT;
    f
}

fn default_fixtures(policy: &Path) -> Result<Vec<PathBuf>, Failure> {
    let dir = policy
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| {
            bad(format!(
                "no fixtures given and cannot read {}: {e}; pass fixture files",
                dir.display()
            ))
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(bad(format!(
            "no fixtures given and no *.yaml in {}; pass fixture files",
            dir.display()
        )));
    }
    Ok(files)
}

/// The policy's keys for one fixture file: the fixture's test secrets, else the environment.
fn keys_for(policy: &Policy, fx: &Fixture, file: &Path) -> Result<Keys, Failure> {
    let mut pairs = Vec::new();
    let mut missing = Vec::new();
    for (name, src) in &policy.keys {
        if let Some((_, secret)) = fx.keys.iter().find(|(k, _)| k == name) {
            pairs.push((name.clone(), secret.as_bytes().to_vec()));
            continue;
        }
        match read_secret(name, src, |v| std::env::var(v).ok()) {
            Ok(bytes) => pairs.push((name.clone(), bytes)),
            Err(e) => missing.push(e.to_string()),
        }
    }
    if !missing.is_empty() {
        return Err(bad(format!(
            "{}: {}; or give a test secret in the fixture (`keys: {{ NAME: test-only-secret }}`)",
            file.display(),
            missing.join("; ")
        )));
    }
    Ok(Keys::from_pairs(pairs))
}

/// Runs `custos policy test`.
///
/// # Errors
/// Exit 1 when a case fails, 2 on a bad policy, fixture or missing key.
pub fn run(args: &TestArgs) -> Result<(), Failure> {
    let policy = load_policy(&args.policy).map_err(|mut f| {
        f.code = BAD_INPUT;
        f
    })?;
    let files = if args.fixtures.is_empty() {
        default_fixtures(&args.policy)?
    } else {
        args.fixtures.clone()
    };
    let policy = Arc::new(policy);
    let mut report = String::new();
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| {
            bad(format!(
                "cannot read fixture {}: {e}; check the path",
                file.display()
            ))
        })?;
        let fx = fixtures::parse(&text).map_err(|e| {
            let mut f = bad(format!("{}:{e}", file.display()));
            f.located = true;
            f
        })?;
        let keys = keys_for(&policy, &fx, file)?;
        let compiled = plan::compile(policy.clone(), &keys)
            .map_err(|e| bad(format!("{}: {e}", args.policy.display())))?;
        let _ = writeln!(report, "{}", file.display());
        for case in &fx.cases {
            let problems = run_case(&compiled, case).map_err(|m| {
                bad(format!(
                    "{}:{}: {}: {m}",
                    file.display(),
                    case.line,
                    case.name
                ))
            })?;
            if problems.is_empty() {
                passed += 1;
                let _ = writeln!(report, "  ok    {}", case.name);
            } else {
                failed += 1;
                let _ = writeln!(report, "  FAIL  {} (line {})", case.name, case.line);
                for p in problems {
                    for (i, l) in p.lines().enumerate() {
                        let indent = if i == 0 { "        " } else { "          " };
                        let _ = writeln!(report, "{indent}{l}");
                    }
                }
            }
        }
    }
    let total = passed + failed;
    let _ = writeln!(
        report,
        "{total} case{}: {passed} passed, {failed} failed",
        if total == 1 { "" } else { "s" }
    );
    print!("{report}");
    if failed > 0 {
        return Err(Failure::new(format!(
            "{failed} of {total} case{} failed",
            if total == 1 { "" } else { "s" }
        )));
    }
    Ok(())
}

fn stream_of<'a>(compiled: &'a Compiled, case: &Case) -> Result<&'a StreamPlan, String> {
    let names = || {
        compiled
            .streams
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &case.stream {
        Some(s) => compiled
            .stream(s)
            .ok_or_else(|| format!("unknown stream `{s}`; the policy has: {}", names())),
        None if compiled.streams.len() == 1 => Ok(&compiled.streams[0]),
        None => Err(format!("no `stream:`; the policy has several: {}", names())),
    }
}

/// Runs one case: `Ok` with the failed expectations (empty when it passes),
/// `Err` when the case itself is unusable.
fn run_case(compiled: &Compiled, case: &Case) -> Result<Vec<String>, String> {
    let plan = stream_of(compiled, case)?;
    let now = case
        .now
        .as_deref()
        .ok_or("no `now:`; give the processing time (RFC 3339) in the case or the file")?;
    let now_ms = chrono::DateTime::parse_from_rfc3339(now)
        .map_err(|_| format!("now `{now}` is not RFC 3339; write e.g. 2026-11-22T10:00:00Z"))?
        .timestamp_millis();
    let mut state = MemoryState::for_policy(&compiled.policy);
    for (records, consent) in [(&case.consent, true), (&case.erasure, false)] {
        for (i, r) in records.iter().enumerate() {
            let bytes = serde_json::to_vec(r).map_err(|e| e.to_string())?;
            let res = if consent {
                state.apply_consent(None, Some(&bytes))
            } else {
                state.apply_erasure(None, Some(&bytes))
            };
            res.map_err(|e| {
                format!(
                    "{} record {}: {e}",
                    if consent { "consent" } else { "erasure" },
                    i + 1
                )
            })?;
        }
    }
    let timestamp = match &case.timestamp {
        None => Some(now_ms),
        Some(t) => Some(
            engine::parse_time(t)
                .ok_or_else(|| format!("timestamp {t} is neither RFC 3339 nor epoch millis"))?,
        ),
    };
    let value = match &case.value {
        Input::Json(v) => serde_json::to_vec(v).map_err(|e| e.to_string())?,
        Input::Raw(s) => s.as_bytes().to_vec(),
    };
    let headers: Vec<(String, Vec<u8>)> = case
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    let rec = Record {
        topic: &plan.topic,
        partition: 0,
        offset: 0,
        timestamp,
        key: case.key.as_deref().map(str::as_bytes),
        value: &value,
        headers: &headers,
    };
    let verdict = engine::govern_with_limits(
        plan,
        &compiled.policy.id(),
        &rec,
        &state,
        now_ms,
        &mut Scratch::default(),
        Limits::default(),
    );
    let mut problems = Vec::new();
    match (&case.expect, &verdict) {
        (Expect::DeadLetter(want), Verdict::DeadLetter(d)) => {
            if d.reason.code() != want {
                problems.push(format!(
                    "expected dead letter `{want}`, got dead letter `{}` ({})",
                    d.reason.code(),
                    d.detail
                ));
            }
        }
        (Expect::DeadLetter(want), Verdict::Governed(g)) => {
            let got: Vec<String> = plan
                .outputs
                .iter()
                .zip(&g.outcomes)
                .map(|(o, out)| match out {
                    Outcome::Emitted(_) => format!("{} emitted", o.name),
                    Outcome::Suppressed(s) => format!("{} suppressed ({})", o.name, s.name()),
                })
                .collect();
            problems.push(format!(
                "expected dead letter `{want}`, but the record was governed: {}",
                got.join(", ")
            ));
        }
        (Expect::Purposes(_), Verdict::DeadLetter(d)) => problems.push(format!(
            "dead-lettered: {} ({}); expected outputs",
            d.reason.code(),
            d.detail
        )),
        (Expect::Purposes(per), Verdict::Governed(g)) => {
            for (purpose, want) in per {
                let i = plan.output_index(purpose)?;
                check_purpose(purpose, want, &g.outcomes[i], &mut problems);
            }
        }
    }
    Ok(problems)
}

fn check_purpose(purpose: &str, want: &PurposeExpect, got: &Outcome, problems: &mut Vec<String>) {
    match (got, &want.suppressed) {
        (Outcome::Suppressed(s), Some(reason)) => {
            if s.name() != reason {
                problems.push(format!(
                    "{purpose}: expected suppressed ({reason}), got suppressed ({})",
                    s.name()
                ));
            }
        }
        (Outcome::Suppressed(s), None) => problems.push(format!(
            "{purpose}: expected an output, got suppressed ({})",
            s.name()
        )),
        (Outcome::Emitted(o), Some(reason)) => problems.push(format!(
            "{purpose}: expected suppressed ({reason}), got an output: {}",
            String::from_utf8_lossy(&o.value)
        )),
        (Outcome::Emitted(o), None) => {
            let actual: Value = match serde_json::from_slice(&o.value) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!("{purpose}: output is not JSON: {e}"));
                    return;
                }
            };
            if let Some(expected) = &want.value {
                let mut lines = Vec::new();
                diff_values("", expected, &actual, &mut lines);
                if !lines.is_empty() {
                    problems.push(format!(
                        "{purpose}: value differs (expected vs actual)\n{}\nactual value: {}",
                        lines.join("\n"),
                        short(&actual, 400)
                    ));
                }
            }
            for p in &want.has {
                if lookup(&actual, p).is_none() {
                    problems.push(format!(
                        "{purpose}: expected `{p}` in the output, it is not there"
                    ));
                }
            }
            for p in &want.lacks {
                if let Some(v) = lookup(&actual, p) {
                    problems.push(format!(
                        "{purpose}: expected no `{p}` in the output, got {}",
                        short(v, 120)
                    ));
                }
            }
            if let Some(key) = &want.key {
                let got = o.key.as_deref().map(String::from_utf8_lossy);
                if got.as_deref() != key.as_deref() {
                    problems.push(format!(
                        "{purpose}: key: expected {}, got {}",
                        key.as_deref().map_or("null".into(), |k| format!("{k:?}")),
                        got.as_deref().map_or("null".into(), |k| format!("{k:?}"))
                    ));
                }
            }
        }
    }
}

/// A dotted path into a value; a numeric segment indexes an array.
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn short(v: &Value, max: usize) -> String {
    let s = v.to_string();
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}

fn same_number(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    a.to_string() == b.to_string()
        || matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

/// One line per difference: `path: expected X, got Y` (numbers compare by value).
fn diff_values(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    let at = |p: &str| {
        if p.is_empty() {
            "(value)".to_string()
        } else {
            p.to_string()
        }
    };
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                match a.get(k) {
                    Some(av) => diff_values(&join(k), ev, av, out),
                    None => out.push(format!(
                        "- {}: expected {}, missing",
                        join(k),
                        short(ev, 120)
                    )),
                }
            }
            for (k, av) in a {
                if !e.contains_key(k) {
                    out.push(format!(
                        "+ {}: not expected, got {}",
                        join(k),
                        short(av, 120)
                    ));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                diff_values(&join(&i.to_string()), ev, av, out);
            }
        }
        (Value::Number(e), Value::Number(a)) if same_number(e, a) => {}
        (e, a) if e == a => {}
        (e, a) => out.push(format!(
            "~ {}: expected {}, got {}",
            at(path),
            short(e, 120),
            short(a, 120)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn value_diff_names_paths() {
        let mut out = Vec::new();
        diff_values(
            "",
            &json!({"a": 1.50, "b": {"c": "x"}, "d": [1, 2]}),
            &json!({"a": 1.5, "b": {"c": "y", "e": true}, "d": [1, 2]}),
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                "~ b.c: expected \"x\", got \"y\"".to_string(),
                "+ b.e: not expected, got true".to_string()
            ]
        );
        assert_eq!(lookup(&json!({"a": [{"b": 1}]}), "a.0.b"), Some(&json!(1)));
    }
}
