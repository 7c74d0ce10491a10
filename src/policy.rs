//! The policy: load the YAML policy file, validate it, compile it into plans.
//!
//! Loading is pure: it takes the file's text and name and returns a [`Policy`]
//! or *every* problem found, each with file, line and column. Secrets are
//! resolved separately ([`keys`]) because that needs the environment; plans are
//! compiled from a loaded policy and resolved keys ([`plan`]). Nothing in here
//! reads events, the clock or the network.

pub mod diff;
pub mod keys;
pub mod parse;
pub mod plan;
pub mod taxonomy;
pub mod yaml;

use std::fmt;

use sha2::{Digest, Sha256};

pub use taxonomy::Taxonomy;
pub use yaml::Pos;

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub pos: Pos,
    pub message: String,
}

/// Every problem found in a policy file; the worker refuses to start with any.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct PolicyErrors {
    pub file: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, d.pos.line, d.pos.col, d.message
            )?;
        }
        Ok(())
    }
}

/// The lawful basis of a purpose (GDPR Art. 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    Consent,
    Contract,
    LegalObligation,
    LegitimateInterest,
    VitalInterests,
    PublicTask,
}

impl Basis {
    pub const ALL: [(&'static str, Basis); 6] = [
        ("consent", Basis::Consent),
        ("contract", Basis::Contract),
        ("legal_obligation", Basis::LegalObligation),
        ("legitimate_interest", Basis::LegitimateInterest),
        ("vital_interests", Basis::VitalInterests),
        ("public_task", Basis::PublicTask),
    ];

    pub fn name(self) -> &'static str {
        Basis::ALL
            .iter()
            .find(|(_, b)| *b == self)
            .map(|(n, _)| *n)
            .unwrap_or("consent")
    }
}

/// The kind of an action, ordered from most to least restrictive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ActionKind {
    Drop,
    Redact,
    Pseudonymize,
    Encrypt,
    Mask,
    Generalize,
    Keep,
}

impl ActionKind {
    pub const ALL: [ActionKind; 7] = [
        ActionKind::Drop,
        ActionKind::Redact,
        ActionKind::Pseudonymize,
        ActionKind::Encrypt,
        ActionKind::Mask,
        ActionKind::Generalize,
        ActionKind::Keep,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Drop => "drop",
            ActionKind::Redact => "redact",
            ActionKind::Pseudonymize => "pseudonymize",
            ActionKind::Encrypt => "encrypt",
            ActionKind::Mask => "mask",
            ActionKind::Generalize => "generalize",
            ActionKind::Keep => "keep",
        }
    }

    pub fn from_name(name: &str) -> Option<ActionKind> {
        ActionKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

// `generalize`'s parameters are the transform's own types: `transform`
// depends on nothing in `policy`.
pub use crate::transform::{DateUnit, Generalize};

/// An action with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Drop,
    Redact,
    Pseudonymize {
        key: String,
    },
    Encrypt {
        key: String,
    },
    Mask {
        keep_first: usize,
        keep_last: usize,
        ch: char,
    },
    Generalize(Generalize),
    Keep,
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Drop => ActionKind::Drop,
            Action::Redact => ActionKind::Redact,
            Action::Pseudonymize { .. } => ActionKind::Pseudonymize,
            Action::Encrypt { .. } => ActionKind::Encrypt,
            Action::Mask { .. } => ActionKind::Mask,
            Action::Generalize(_) => ActionKind::Generalize,
            Action::Keep => ActionKind::Keep,
        }
    }

    /// The action as written in a policy, for `explain` and `report`.
    pub fn describe(&self) -> String {
        match self {
            Action::Drop | Action::Redact | Action::Keep => self.kind().name().to_string(),
            Action::Pseudonymize { key } => format!("pseudonymize(key={key})"),
            Action::Encrypt { key } => format!("encrypt(key={key})"),
            Action::Mask {
                keep_first,
                keep_last,
                ch,
            } => format!("mask(keep_first={keep_first}, keep_last={keep_last}, char={ch})"),
            Action::Generalize(g) => match g {
                Generalize::Date(u) => format!(
                    "generalize(date={})",
                    match u {
                        DateUnit::Year => "year",
                        DateUnit::Month => "month",
                        DateUnit::Day => "day",
                    }
                ),
                Generalize::Round(d) => format!("generalize(round={d})"),
                Generalize::Bucket(w) => format!("generalize(bucket={w})"),
                Generalize::Prefix(n) => format!("generalize(prefix={n})"),
                Generalize::Network { v4, v6 } if v4 == v6 => format!("generalize(network={v4})"),
                Generalize::Network { v4, v6 } => format!("generalize(network=v4/{v4},v6/{v6})"),
            },
        }
    }
}

/// One rule of a purpose: these classes get this action.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub classes: Vec<String>,
    /// Where each class was written, same order as `classes`.
    pub class_pos: Vec<Pos>,
    pub action: Action,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Purpose {
    pub name: String,
    pub description: Option<String>,
    pub basis: Basis,
    /// Retention in milliseconds.
    pub retention_ms: i64,
    /// The retention as written (`30d`).
    pub retention_text: String,
    pub rules: Vec<Rule>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Invariant {
    pub classes: Vec<String>,
    pub purposes: Vec<String>,
    pub only: Vec<ActionKind>,
    pub pos: Pos,
}

/// Where a value is read from in an input record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldPath {
    /// The Kafka record key.
    Key,
    /// An input header.
    Header(String),
    /// A path into the value: object keys and `[]` (every array element).
    Value(Vec<Segment>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    Field(String),
    Each,
}

impl FieldPath {
    /// Parses `a.b[].c`, `$key` or `$headers.NAME`.
    ///
    /// # Errors
    /// Returns a description of what is wrong with the path.
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        if text == "$key" {
            return Ok(FieldPath::Key);
        }
        if let Some(name) = text.strip_prefix("$headers.") {
            if name.is_empty() {
                return Err("a header path needs a name: `$headers.NAME`".into());
            }
            return Ok(FieldPath::Header(name.to_string()));
        }
        if text.starts_with('$') {
            return Err(format!(
                "unknown special path `{text}`; use `$key` or `$headers.NAME`"
            ));
        }
        if text.is_empty() {
            return Err("empty field path".into());
        }
        let mut segs = Vec::new();
        for part in text.split('.') {
            let mut name = part;
            let mut each = 0;
            while let Some(rest) = name.strip_suffix("[]") {
                name = rest;
                each += 1;
            }
            if name.is_empty() {
                return Err(format!("empty segment in field path `{text}`"));
            }
            if name.contains('[') || name.contains(']') {
                return Err(format!(
                    "bad array syntax in field path `{text}`; write `items[]` for every element"
                ));
            }
            segs.push(Segment::Field(name.to_string()));
            segs.extend(std::iter::repeat_n(Segment::Each, each));
        }
        Ok(FieldPath::Value(segs))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldPath::Key => f.write_str("$key"),
            FieldPath::Header(h) => write!(f, "$headers.{h}"),
            FieldPath::Value(segs) => {
                let mut first = true;
                for s in segs {
                    match s {
                        Segment::Field(n) => {
                            if !first {
                                f.write_str(".")?;
                            }
                            f.write_str(n)?;
                        }
                        Segment::Each => f.write_str("[]")?,
                    }
                    first = false;
                }
                Ok(())
            }
        }
    }
}

/// A classified path of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    pub path: FieldPath,
    pub classes: Vec<String>,
    pub scan: bool,
    pub pos: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Avro,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unclassified {
    Drop,
    DeadLetter,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    pub name: String,
    pub topic: String,
    pub format: Format,
    pub subject: Option<FieldPath>,
    pub event_time: Option<FieldPath>,
    /// Event times later than now plus this are dead-lettered (`event_time`).
    pub max_future_skew_ms: i64,
    pub fields: Vec<FieldSpec>,
    pub unclassified: Unclassified,
    /// purpose name → output topic, in the order written.
    pub outputs: Vec<(String, String)>,
    pub pos: Pos,
}

impl Stream {
    /// Warnings about this stream that are not errors: a `subject` path that
    /// no `fields` entry classifies is most likely a typo, and a typo makes
    /// every event subject-less (no consent purpose, no erasure check).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(subject) = &self.subject {
            let declared = self.fields.iter().any(|f| match (&f.path, subject) {
                (FieldPath::Value(fp), FieldPath::Value(sp)) => sp.starts_with(fp),
                (a, b) => a == b,
            });
            if !declared {
                out.push(format!(
                    "stream `{}`: the subject path `{subject}` is not in `fields`; if it is a typo, every event has no subject: it goes to no purpose with basis `consent` and erasure and objection cannot reach it",
                    self.name
                ));
            }
        }
        out
    }
}

/// Where a named secret's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env(String),
    File(String),
}

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// First 12 hex characters of the SHA-256 of the policy file.
    pub digest: String,
    pub taxonomy: Taxonomy,
    /// Classes declared by the policy (`classes:`), in file order.
    pub declared: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    pub keys: Vec<(String, KeySource)>,
    pub purposes: Vec<Purpose>,
    pub invariants: Vec<Invariant>,
    pub streams: Vec<Stream>,
    pub consent_topic: Option<String>,
    pub erasure_topic: Option<String>,
}

impl Policy {
    /// `<name>@<digest>`, as in the `custos-policy` header.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.digest)
    }

    pub fn purpose_index(&self, name: &str) -> Option<usize> {
        self.purposes.iter().position(|p| p.name == name)
    }

    pub fn stream(&self, name: &str) -> Option<&Stream> {
        self.streams.iter().find(|s| s.name == name)
    }

    /// The action a purpose gives one class: the rule whose class is the most
    /// specific prefix of it, or `None` (deny by default: drop).
    pub fn rule_for<'a>(&self, purpose: &'a Purpose, class: &str) -> Option<(&'a Rule, &'a str)> {
        let mut best: Option<(&Rule, &str)> = None;
        for rule in &purpose.rules {
            for rc in &rule.classes {
                if taxonomy::is_within(class, rc) && best.is_none_or(|(_, b)| rc.len() > b.len()) {
                    best = Some((rule, rc.as_str()));
                }
            }
        }
        best
    }
}

/// Loads and validates a policy from its text.
///
/// # Errors
/// Returns every problem found, with positions in `file`.
pub fn load(text: &str, file: &str) -> Result<Policy, PolicyErrors> {
    let digest = hex::encode(Sha256::digest(text.as_bytes()))[..12].to_string();
    parse::parse(text, digest).map_err(|mut diagnostics| {
        diagnostics.sort();
        diagnostics.dedup();
        PolicyErrors {
            file: file.to_string(),
            diagnostics,
        }
    })
}

/// Parses a duration with a unit: `30s`, `15m`, `12h`, `30d` → milliseconds.
///
/// # Errors
/// Returns a message saying what is wrong.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
        format!("duration `{text}` has no unit; write e.g. `30d` (units s, m, h, d)")
    })?;
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "bad duration `{text}`; write e.g. `30d` (units s, m, h, d)"
        ));
    }
    let n: i64 = num
        .parse()
        .map_err(|_| format!("duration `{text}` is too large"))?;
    let per: i64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "bad duration unit in `{text}`; use s, m, h or d (e.g. `30d`)"
            ))
        }
    };
    if n == 0 {
        return Err(format!("duration `{text}` must be greater than zero"));
    }
    n.checked_mul(per)
        .ok_or_else(|| format!("duration `{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (t, ms) in [
            ("30s", 30_000),
            ("15m", 900_000),
            ("2h", 7_200_000),
            ("30d", 2_592_000_000),
        ] {
            assert_eq!(parse_duration(t), Ok(ms), "{t}");
        }
        for t in [
            "30",
            "d",
            "30w",
            "-1d",
            "0d",
            "1.5d",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(t).is_err(), "{t}");
        }
    }

    #[test]
    fn paths() {
        let check = |t: &str| FieldPath::parse(t).map(|p| p.to_string());
        assert_eq!(check("a.b[].c"), Ok("a.b[].c".into()));
        assert_eq!(check("m[][]"), Ok("m[][]".into()));
        assert_eq!(check("$key"), Ok("$key".into()));
        assert_eq!(check("$headers.trace-id"), Ok("$headers.trace-id".into()));
        for bad in ["", "a..b", "$value", "a[0]", "[]", "$headers."] {
            assert!(FieldPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn action_order_is_restrictiveness() {
        assert!(ActionKind::Drop < ActionKind::Redact);
        assert!(ActionKind::Redact < ActionKind::Pseudonymize);
        assert!(ActionKind::Pseudonymize < ActionKind::Encrypt);
        assert!(ActionKind::Encrypt < ActionKind::Mask);
        assert!(ActionKind::Mask < ActionKind::Generalize);
        assert!(ActionKind::Generalize < ActionKind::Keep);
    }
}
