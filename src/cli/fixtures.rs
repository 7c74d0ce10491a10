//! Fixture files of `custos policy test`: YAML cases with an input event,
//! the data subject's state and what each purpose must (or must not) get.
//!
//! ```yaml
//! keys: { analytics: test-only-analytics-key }   # optional: test secrets
//! stream: orders                                  # default for every case
//! now: 2026-11-23T00:00:00Z                       # default for every case
//! cases:
//!   - name: support sees the e-mail
//!     key: c-1                                    # optional record key
//!     headers: { trace-id: abc }                  # optional
//!     timestamp: 2026-11-20T09:15:00Z             # optional (default: now)
//!     value: { customer: { id: c-1, email: a@example.com } }
//!     consent: [ { subject: c-1, purposes: { marketing: true } } ]
//!     erasure: [ { subject: c-9 } ]
//!     expect:
//!       support: { has: [customer.email] }
//!       analytics: { lacks: [customer.email] }
//!       marketing: { suppressed: consent }
//!   - name: bad event time
//!     value: { created_at: soon }
//!     dead_letter: event_time
//! ```
//!
//! Parsing only: text in, cases out, every error with its line and column.
//! Never reads files, the environment or the clock.

use serde_json::{Map, Number, Value};

use crate::policy::yaml::{self, Kind, Node, Pos};

/// What is wrong with a fixture file, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{line}:{col}: {message}")]
pub struct FixtureError {
    pub line: u32,
    pub col: u32,
    pub message: String,
}

fn err(pos: Pos, message: impl Into<String>) -> FixtureError {
    FixtureError {
        line: pos.line,
        col: pos.col,
        message: message.into(),
    }
}

/// One fixture file.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixture {
    /// Key name → secret bytes for this file's cases (test secrets only).
    pub keys: Vec<(String, String)>,
    pub cases: Vec<Case>,
}

/// The input value of a case.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A JSON value (written as YAML).
    Json(Value),
    /// Bytes given as text, for undecodable input (`value_raw: "{not json"`).
    Raw(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub name: String,
    pub line: u32,
    pub stream: Option<String>,
    pub now: Option<String>,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    /// RFC 3339 text or epoch millis.
    pub timestamp: Option<Value>,
    pub value: Input,
    /// Consent-topic values, applied in order.
    pub consent: Vec<Value>,
    /// Erasure-topic values, applied in order.
    pub erasure: Vec<Value>,
    pub expect: Expect,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// The whole record goes to the dead-letter topic with this reason.
    DeadLetter(String),
    /// Per purpose (by name, in the order written).
    Purposes(Vec<(String, PurposeExpect)>),
}

/// What one purpose must get. Every given part must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PurposeExpect {
    /// The exact output value (numbers compare by value).
    pub value: Option<Value>,
    /// The purpose gets nothing, for this reason (consent, objection, erasure, expired).
    pub suppressed: Option<String>,
    /// Dotted paths that must be in the output value.
    pub has: Vec<String>,
    /// Dotted paths that must not be in the output value.
    pub lacks: Vec<String>,
    /// The output record key (`null`: no key).
    pub key: Option<Option<String>>,
}

/// A YAML node as JSON: plain scalars that read as JSON numbers, `true`,
/// `false` and null become those; everything else is a string (quote a
/// string that looks like a number).
pub fn to_json(node: &Node) -> Result<Value, FixtureError> {
    Ok(match &node.kind {
        Kind::Scalar { text, plain } => {
            if !plain {
                Value::String(text.clone())
            } else if node.is_null() {
                Value::Null
            } else if text == "true" || text == "false" {
                Value::Bool(text == "true")
            } else if let Ok(n) = serde_json::from_str::<Number>(text) {
                Value::Number(n)
            } else {
                Value::String(text.clone())
            }
        }
        Kind::Seq(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Kind::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                let name = scalar(k, "a mapping key")?;
                if m.insert(name.to_string(), to_json(v)?).is_some() {
                    return Err(err(k.pos, format!("duplicate key `{name}`")));
                }
            }
            Value::Object(m)
        }
    })
}

fn scalar<'a>(node: &'a Node, what: &str) -> Result<&'a str, FixtureError> {
    node.as_str().ok_or_else(|| {
        err(
            node.pos,
            format!("{what} must be text, not {}", node.type_name()),
        )
    })
}

fn map<'a>(node: &'a Node, what: &str) -> Result<&'a [(Node, Node)], FixtureError> {
    node.as_map().ok_or_else(|| {
        err(
            node.pos,
            format!("{what} must be a mapping, not {}", node.type_name()),
        )
    })
}

fn seq<'a>(node: &'a Node, what: &str) -> Result<&'a [Node], FixtureError> {
    node.as_seq().ok_or_else(|| {
        err(
            node.pos,
            format!("{what} must be a list, not {}", node.type_name()),
        )
    })
}

/// The entries of a mapping, refusing unknown and duplicate keys.
fn entries<'a>(
    node: &'a Node,
    what: &str,
    allowed: &[&str],
) -> Result<Vec<(&'a str, &'a Node, Pos)>, FixtureError> {
    let mut out: Vec<(&str, &Node, Pos)> = Vec::new();
    for (k, v) in map(node, what)? {
        let name = scalar(k, "a key")?;
        if !allowed.contains(&name) {
            return Err(err(
                k.pos,
                format!("unknown key `{name}` in {what}; use {}", allowed.join(", ")),
            ));
        }
        if out.iter().any(|(n, ..)| *n == name) {
            return Err(err(k.pos, format!("duplicate key `{name}` in {what}")));
        }
        out.push((name, v, k.pos));
    }
    Ok(out)
}

fn strings(node: &Node, what: &str) -> Result<Vec<String>, FixtureError> {
    seq(node, what)?
        .iter()
        .map(|n| scalar(n, what).map(str::to_string))
        .collect()
}

fn json_list(node: &Node, what: &str) -> Result<Vec<Value>, FixtureError> {
    seq(node, what)?.iter().map(to_json).collect()
}

/// Parses a fixture file.
///
/// # Errors
/// YAML syntax, unknown or duplicate keys, missing parts; with line and column.
pub fn parse(text: &str) -> Result<Fixture, FixtureError> {
    let root = yaml::parse(text).map_err(|e| err(e.pos, e.message))?;
    let mut fx = Fixture {
        keys: Vec::new(),
        cases: Vec::new(),
    };
    let mut stream = None;
    let mut now = None;
    let mut cases = None;
    for (name, v, _) in entries(
        &root,
        "the fixture file",
        &["keys", "stream", "now", "cases"],
    )? {
        match name {
            "keys" => {
                for (k, secret) in map(v, "keys")? {
                    fx.keys.push((
                        scalar(k, "a key name")?.to_string(),
                        scalar(secret, "a key's test secret")?.to_string(),
                    ));
                }
            }
            "stream" => stream = Some(scalar(v, "stream")?.to_string()),
            "now" => now = Some(scalar(v, "now")?.to_string()),
            _ => cases = Some(v),
        }
    }
    let cases = cases.ok_or_else(|| err(root.pos, "no `cases:`; add a list of cases"))?;
    for (i, c) in seq(cases, "cases")?.iter().enumerate() {
        fx.cases
            .push(parse_case(c, i, stream.as_deref(), now.as_deref())?);
    }
    if fx.cases.is_empty() {
        return Err(err(cases.pos, "`cases:` is empty; add at least one case"));
    }
    Ok(fx)
}

fn parse_case(
    node: &Node,
    index: usize,
    stream: Option<&str>,
    now: Option<&str>,
) -> Result<Case, FixtureError> {
    let mut case = Case {
        name: format!("case {}", index + 1),
        line: node.pos.line,
        stream: stream.map(str::to_string),
        now: now.map(str::to_string),
        key: None,
        headers: Vec::new(),
        timestamp: None,
        value: Input::Json(Value::Null),
        consent: Vec::new(),
        erasure: Vec::new(),
        expect: Expect::Purposes(Vec::new()),
    };
    let mut value = None;
    let mut expect = None;
    let mut dead = None;
    let allowed = [
        "name",
        "stream",
        "now",
        "key",
        "headers",
        "timestamp",
        "value",
        "value_raw",
        "consent",
        "erasure",
        "expect",
        "dead_letter",
    ];
    for (name, v, pos) in entries(node, "a case", &allowed)? {
        match name {
            "name" => case.name = scalar(v, "name")?.to_string(),
            "stream" => case.stream = Some(scalar(v, "stream")?.to_string()),
            "now" => case.now = Some(scalar(v, "now")?.to_string()),
            "key" => case.key = Some(scalar(v, "key")?.to_string()),
            "headers" => {
                for (k, h) in map(v, "headers")? {
                    case.headers.push((
                        scalar(k, "a header name")?.to_string(),
                        scalar(h, "a header value")?.to_string(),
                    ));
                }
            }
            "timestamp" => case.timestamp = Some(to_json(v)?),
            "value" | "value_raw" => {
                if value.is_some() {
                    return Err(err(pos, "give either `value` or `value_raw`, not both"));
                }
                value = Some(if name == "value" {
                    Input::Json(to_json(v)?)
                } else {
                    Input::Raw(scalar(v, "value_raw")?.to_string())
                });
            }
            "consent" => case.consent = json_list(v, "consent")?,
            "erasure" => case.erasure = json_list(v, "erasure")?,
            "expect" => expect = Some(v),
            _ => dead = Some(scalar(v, "dead_letter")?.to_string()),
        }
    }
    case.value = value.ok_or_else(|| {
        err(
            node.pos,
            format!("{} has no `value`; add the input event", case.name),
        )
    })?;
    case.expect = match (expect, dead) {
        (Some(_), Some(_)) => {
            return Err(err(
                node.pos,
                format!(
                "{} has both `expect` and `dead_letter`; a dead-lettered record reaches no purpose",
                case.name
            ),
            ))
        }
        (None, None) => {
            return Err(err(
                node.pos,
                format!(
                    "{} expects nothing; add `expect:` per purpose or `dead_letter: REASON`",
                    case.name
                ),
            ))
        }
        (None, Some(reason)) => Expect::DeadLetter(reason),
        (Some(e), None) => {
            let mut per = Vec::new();
            for (p, v) in map(e, "expect")? {
                per.push((scalar(p, "a purpose name")?.to_string(), parse_expect(v)?));
            }
            Expect::Purposes(per)
        }
    };
    Ok(case)
}

fn parse_expect(node: &Node) -> Result<PurposeExpect, FixtureError> {
    let mut e = PurposeExpect::default();
    for (name, v, _) in entries(
        node,
        "a purpose's expectation",
        &["value", "suppressed", "has", "lacks", "key"],
    )? {
        match name {
            "value" => e.value = Some(to_json(v)?),
            "suppressed" => e.suppressed = Some(scalar(v, "suppressed")?.to_string()),
            "has" => e.has = strings(v, "has")?,
            "lacks" => e.lacks = strings(v, "lacks")?,
            _ => {
                e.key = Some(if v.is_null() {
                    None
                } else {
                    Some(scalar(v, "key")?.to_string())
                })
            }
        }
    }
    if e.suppressed.is_some() && (e.value.is_some() || !e.has.is_empty() || e.key.is_some()) {
        return Err(err(
            node.pos,
            "a suppressed purpose gets no output: drop `value`, `has` and `key` here",
        ));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_case_with_defaults() {
        let fx = parse(
            "stream: s\nnow: 2026-01-01T00:00:00Z\ncases:\n  - name: one\n    value: { a: 1, b: '2', c: 1985-12-10, d: ~, e: true }\n    expect:\n      p: { has: [a], lacks: [b] }\n",
        )
        .unwrap();
        let c = &fx.cases[0];
        assert_eq!(c.stream.as_deref(), Some("s"));
        assert_eq!(
            c.value,
            Input::Json(
                serde_json::json!({"a": 1, "b": "2", "c": "1985-12-10", "d": null, "e": true})
            )
        );
        assert!(matches!(&c.expect, Expect::Purposes(p) if p[0].1.has == vec!["a".to_string()]));
    }

    #[test]
    fn errors_are_located() {
        let e = parse("cases:\n  - value: {}\n    expct: {}\n").unwrap_err();
        assert_eq!((e.line, e.col), (3, 5));
        assert!(e.message.contains("unknown key `expct`"), "{e}");
        let e = parse("cases:\n  - value: {}\n").unwrap_err();
        assert!(e.message.contains("expects nothing"), "{e}");
    }
}
