//! Turns the marked YAML tree into a [`Policy`], collecting every problem.
//!
//! Each check reports at the position of the offending node and carries on, so
//! a user sees all errors of a file in one run. Pure: no environment, no files.

use std::collections::{HashMap, HashSet};

use super::taxonomy::{self, Taxonomy};
use super::yaml::{self, Kind, Node, Pos};
mod checks;
mod purpose;
mod stream;

use self::purpose::parse_purpose;
use self::stream::parse_stream;
use super::{
    parse_duration, Action, ActionKind, Basis, DateUnit, Diagnostic, FieldPath, FieldSpec, Format,
    Generalize, Invariant, KeySource, Policy, Purpose, Rule, Segment, Stream, Unclassified,
};

/// Most purposes one stream may fan out to (a bit mask per event tracks them).
pub const MAX_PURPOSES: usize = 64;

/// Event times further than this in the future are dead-lettered (`event_time`)
/// unless a stream sets `max_future_skew`: one day.
pub const DEFAULT_MAX_FUTURE_SKEW_MS: i64 = 86_400_000;

struct Ctx {
    diags: Vec<Diagnostic>,
}

impl Ctx {
    fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            pos,
            message: message.into(),
        });
    }

    /// The entries of a mapping node, reporting unknown and duplicate keys.
    fn map<'a>(
        &mut self,
        node: &'a Node,
        what: &str,
        allowed: &[&str],
    ) -> HashMap<&'a str, &'a Node> {
        let mut out = HashMap::new();
        let Some(entries) = node.as_map() else {
            self.err(
                node.pos,
                format!("{what} must be a mapping, found {}", node.type_name()),
            );
            return out;
        };
        for (k, v) in entries {
            let Some(key) = k.as_str() else {
                self.err(k.pos, format!("keys of {what} must be plain names"));
                continue;
            };
            if !allowed.is_empty() && !allowed.contains(&key) {
                let hint = allowed
                    .iter()
                    .map(|a| (taxonomy::edit_distance(a, key), a))
                    .filter(|(d, _)| *d <= 2)
                    .min()
                    .map(|(_, a)| format!(" (did you mean `{a}`?)"))
                    .unwrap_or_default();
                self.err(
                    k.pos,
                    format!(
                        "unknown key `{key}` in {what}{hint}; allowed keys: {}",
                        allowed.join(", ")
                    ),
                );
                continue;
            }
            if out.insert(key, v).is_some() {
                self.err(k.pos, format!("duplicate key `{key}` in {what}"));
            }
        }
        out
    }

    /// The entries of a mapping whose keys are names chosen by the user, in order.
    fn named<'a>(&mut self, node: &'a Node, what: &str) -> Vec<(&'a str, Pos, &'a Node)> {
        let mut out: Vec<(&str, Pos, &Node)> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        let Some(entries) = node.as_map() else {
            if !node.is_null() {
                self.err(
                    node.pos,
                    format!("{what} must be a mapping, found {}", node.type_name()),
                );
            }
            return out;
        };
        for (k, v) in entries {
            let Some(key) = k.as_str() else {
                self.err(k.pos, format!("keys of {what} must be plain names"));
                continue;
            };
            if !seen.insert(key) {
                self.err(k.pos, format!("duplicate `{key}` in {what}"));
                continue;
            }
            out.push((key, k.pos, v));
        }
        out
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match node.as_str() {
            Some(s) if !node.is_null() && !s.trim().is_empty() => Some(s.to_string()),
            _ => {
                self.err(
                    node.pos,
                    format!(
                        "{what} must be a non-empty string, found {}",
                        node.type_name()
                    ),
                );
                None
            }
        }
    }

    fn uint(&mut self, node: &Node, what: &str, max: u64) -> Option<u64> {
        match node.as_str().and_then(|s| s.trim().parse::<u64>().ok()) {
            Some(n) if n <= max => Some(n),
            _ => {
                self.err(
                    node.pos,
                    format!("{what} must be a whole number from 0 to {max}"),
                );
                None
            }
        }
    }

    fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match (&node.kind, node.as_str()) {
            (Kind::Scalar { plain: true, .. }, Some("true" | "True" | "TRUE")) => Some(true),
            (Kind::Scalar { plain: true, .. }, Some("false" | "False" | "FALSE")) => Some(false),
            _ => {
                self.err(node.pos, format!("{what} must be true or false"));
                None
            }
        }
    }

    /// A list of strings; a single scalar counts as a list of one.
    fn strings(&mut self, node: &Node, what: &str) -> Vec<(String, Pos)> {
        match &node.kind {
            Kind::Scalar { text, .. } if !node.is_null() => vec![(text.clone(), node.pos)],
            Kind::Seq(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item.as_str() {
                        Some(s) if !item.is_null() => out.push((s.to_string(), item.pos)),
                        _ => self.err(
                            item.pos,
                            format!("{what} must hold names, found {}", item.type_name()),
                        ),
                    }
                }
                if out.is_empty() && items.is_empty() {
                    self.err(node.pos, format!("{what} must not be empty"));
                }
                out
            }
            _ => {
                self.err(
                    node.pos,
                    format!("{what} must be a name or a list of names"),
                );
                Vec::new()
            }
        }
    }

    fn class(&mut self, tax: &Taxonomy, name: &str, pos: Pos, what: &str) -> bool {
        if tax.contains(name) {
            return true;
        }
        let hint = tax
            .suggest(name)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        self.err(
            pos,
            format!("unknown class `{name}` in {what}{hint}; use a built-in class or declare it under `classes:`"),
        );
        false
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Parses a policy's text into a [`Policy`], or returns every diagnostic.
pub fn parse(text: &str, digest: String) -> Result<Policy, Vec<Diagnostic>> {
    let root = match yaml::parse(text) {
        Ok(n) => n,
        Err(e) => {
            return Err(vec![Diagnostic {
                pos: e.pos,
                message: format!("YAML syntax error: {}", e.message),
            }])
        }
    };
    let mut cx = Ctx { diags: Vec::new() };
    let top = cx.map(
        &root,
        "the policy",
        &[
            "version",
            "name",
            "classes",
            "tags",
            "keys",
            "purposes",
            "invariants",
            "streams",
            "consent",
            "erasure",
        ],
    );
    let name = parse_head(&mut cx, &root, &top);
    // Classes first: everything else refers to them.
    let (tax, declared) = parse_classes(&mut cx, top.get("classes").copied());
    let tags = parse_tags(&mut cx, &tax, top.get("tags").copied());
    let keys = parse_keys(&mut cx, top.get("keys").copied());
    let key_names: HashSet<&str> = keys.iter().map(|(n, _)| n.as_str()).collect();
    let purposes = parse_purposes(
        &mut cx,
        &root,
        &tax,
        &key_names,
        top.get("purposes").copied(),
    );
    let invariants = parse_invariants(&mut cx, &tax, &purposes, top.get("invariants").copied());
    let consent_topic = parse_state_topic(&mut cx, top.get("consent").copied(), "`consent`");
    let erasure_topic = parse_state_topic(&mut cx, top.get("erasure").copied(), "`erasure`");
    let purpose_names: HashSet<&str> = purposes.iter().map(|p| p.name.as_str()).collect();
    let streams = parse_streams(
        &mut cx,
        &root,
        &tax,
        &purpose_names,
        top.get("streams").copied(),
    );
    let policy = Policy {
        name,
        digest,
        taxonomy: tax,
        declared,
        tags,
        keys,
        purposes,
        invariants,
        streams,
        consent_topic,
        erasure_topic,
    };
    checks::cross_references(&policy, top.contains_key("consent"), &mut cx);
    if cx.diags.is_empty() {
        Ok(policy)
    } else {
        Err(cx.diags)
    }
}

/// `version` and `name`.
fn parse_head(cx: &mut Ctx, root: &Node, top: &HashMap<&str, &Node>) -> String {
    match top.get("version") {
        Some(v) if v.as_str() == Some("1") => {}
        Some(v) => cx.err(
            v.pos,
            "unsupported policy `version`; this custos reads version 1",
        ),
        None => cx.err(root.pos, "missing `version: 1` in the policy"),
    }
    match top.get("name") {
        Some(n) => match cx.string(n, "`name`") {
            Some(s) if is_identifier(&s) => s,
            Some(s) => {
                cx.err(
                    n.pos,
                    format!("policy name `{s}` may only hold letters, digits, `_`, `-` and `.`"),
                );
                String::new()
            }
            None => String::new(),
        },
        None => {
            cx.err(root.pos, "missing `name` in the policy");
            String::new()
        }
    }
}

/// `classes`: the taxonomy with the policy's own classes declared.
fn parse_classes(cx: &mut Ctx, node: Option<&Node>) -> (Taxonomy, Vec<(String, String)>) {
    let mut tax = Taxonomy::default();
    let mut declared = Vec::new();
    if let Some(node) = node {
        for (cname, pos, desc) in cx.named(node, "`classes`") {
            if !taxonomy::is_valid_name(cname) {
                cx.err(pos, format!("bad class name `{cname}`; use dot-separated words like `pii.identifier.loyalty_id`"));
                continue;
            }
            let d = if desc.is_null() {
                String::new()
            } else {
                match desc.as_str() {
                    Some(s) => s.to_string(),
                    None => {
                        cx.err(
                            desc.pos,
                            format!("the description of class `{cname}` must be a string"),
                        );
                        String::new()
                    }
                }
            };
            tax.declare(cname, &d);
            declared.push((cname.to_string(), d));
        }
    }
    (tax, declared)
}

/// `tags`: schema tags mapped to classes.
fn parse_tags(cx: &mut Ctx, tax: &Taxonomy, node: Option<&Node>) -> Vec<(String, String)> {
    let mut tags = Vec::new();
    if let Some(node) = node {
        for (tag, _pos, class) in cx.named(node, "`tags`") {
            if let Some(c) = cx.string(class, &format!("the class of tag `{tag}`")) {
                if cx.class(tax, &c, class.pos, &format!("tag `{tag}`")) {
                    tags.push((tag.to_string(), c));
                }
            }
        }
    }
    tags
}

/// `keys`: where each named secret comes from (never the secret itself).
fn parse_keys(cx: &mut Ctx, node: Option<&Node>) -> Vec<(String, KeySource)> {
    let mut keys = Vec::new();
    if let Some(node) = node {
        for (kname, _pos, src) in cx.named(node, "`keys`") {
            let what = format!("key `{kname}`");
            if let Some(m) = src.as_map() {
                if m.iter()
                    .any(|(k, _)| matches!(k.as_str(), Some("value" | "secret" | "bytes")))
                {
                    cx.err(src.pos, format!("{what} is written inline; secrets never go in the policy: use `{{ env: VAR }}` or `{{ file: PATH }}`"));
                    continue;
                }
            }
            let f = cx.map(src, &what, &["env", "file"]);
            match (f.get("env"), f.get("file")) {
                (Some(e), None) => {
                    if let Some(v) = cx.string(e, &format!("`env` of {what}")) {
                        keys.push((kname.to_string(), KeySource::Env(v)));
                    }
                }
                (None, Some(p)) => {
                    if let Some(v) = cx.string(p, &format!("`file` of {what}")) {
                        keys.push((kname.to_string(), KeySource::File(v)));
                    }
                }
                (Some(_), Some(_)) => cx.err(
                    src.pos,
                    format!("{what} must have either `env` or `file`, not both"),
                ),
                (None, None) if src.as_map().is_some() => {
                    cx.err(src.pos, format!("{what} needs `env: VAR` or `file: PATH`"))
                }
                _ => {}
            }
        }
    }
    keys
}

/// `purposes`.
fn parse_purposes(
    cx: &mut Ctx,
    root: &Node,
    tax: &Taxonomy,
    key_names: &HashSet<&str>,
    node: Option<&Node>,
) -> Vec<Purpose> {
    let mut purposes: Vec<Purpose> = Vec::new();
    match node {
        Some(node) => {
            let entries = cx.named(node, "`purposes`");
            if entries.is_empty() && node.as_map().is_some() {
                cx.err(
                    node.pos,
                    "`purposes` is empty; declare at least one purpose",
                );
            }
            if entries.len() > MAX_PURPOSES {
                cx.err(
                    node.pos,
                    format!("at most {MAX_PURPOSES} purposes are supported"),
                );
            }
            for (pname, ppos, pnode) in entries {
                if !is_identifier(pname) {
                    cx.err(ppos, format!("purpose name `{pname}` may only hold letters, digits, `_`, `-` and `.`"));
                }
                if let Some(p) = parse_purpose(cx, tax, key_names, pname, ppos, pnode) {
                    purposes.push(p);
                }
            }
        }
        None => cx.err(root.pos, "missing `purposes` in the policy"),
    }
    purposes
}

/// `invariants`: what classes may only ever get, per purpose.
fn parse_invariants(
    cx: &mut Ctx,
    tax: &Taxonomy,
    purposes: &[Purpose],
    node: Option<&Node>,
) -> Vec<Invariant> {
    let purpose_names: HashSet<&str> = purposes.iter().map(|p| p.name.as_str()).collect();
    let mut invariants = Vec::new();
    if let Some(node) = node {
        match node.as_seq() {
            Some(items) => {
                for item in items {
                    let f = cx.map(item, "an invariant", &["classes", "purposes", "only"]);
                    let classes: Vec<String> = match f.get("classes") {
                        Some(n) => cx
                            .strings(n, "`classes` of an invariant")
                            .into_iter()
                            .filter(|(c, pos)| cx.class(tax, c, *pos, "an invariant"))
                            .map(|(c, _)| c)
                            .collect(),
                        None => {
                            cx.err(item.pos, "an invariant needs `classes`");
                            Vec::new()
                        }
                    };
                    let ps: Vec<String> = match f.get("purposes") {
                        Some(n) => cx
                            .strings(n, "`purposes` of an invariant")
                            .into_iter()
                            .filter(|(p, pos)| {
                                let ok = purpose_names.contains(p.as_str());
                                if !ok {
                                    cx.err(*pos, format!("unknown purpose `{p}` in an invariant"));
                                }
                                ok
                            })
                            .map(|(p, _)| p)
                            .collect(),
                        None => purposes.iter().map(|p| p.name.clone()).collect(),
                    };
                    let only: Vec<ActionKind> = match f.get("only") {
                        Some(n) => cx
                            .strings(n, "`only` of an invariant")
                            .into_iter()
                            .filter_map(|(a, pos)| {
                                let k = ActionKind::from_name(&a);
                                if k.is_none() {
                                    cx.err(pos, format!("unknown action `{a}` in an invariant; actions: drop, redact, pseudonymize, encrypt, mask, generalize, keep"));
                                }
                                k
                            })
                            .collect(),
                        None => {
                            cx.err(item.pos, "an invariant needs `only: [actions]`");
                            Vec::new()
                        }
                    };
                    invariants.push(Invariant {
                        classes,
                        purposes: ps,
                        only,
                        pos: item.pos,
                    });
                }
            }
            None => cx.err(node.pos, "`invariants` must be a list"),
        }
    }
    invariants
}

/// `consent` or `erasure`: `{ topic: … }`.
fn parse_state_topic(cx: &mut Ctx, node: Option<&Node>, what: &str) -> Option<String> {
    let node = node?;
    let f = cx.map(node, what, &["topic"]);
    match f.get("topic") {
        Some(t) => cx.string(t, &format!("`topic` of {what}")),
        None => {
            cx.err(node.pos, format!("{what} needs a `topic`"));
            None
        }
    }
}

/// `streams`.
fn parse_streams(
    cx: &mut Ctx,
    root: &Node,
    tax: &Taxonomy,
    purpose_names: &HashSet<&str>,
    node: Option<&Node>,
) -> Vec<Stream> {
    let mut streams: Vec<Stream> = Vec::new();
    match node {
        Some(node) => {
            for (sname, spos, snode) in cx.named(node, "`streams`") {
                if !is_identifier(sname) {
                    cx.err(
                        spos,
                        format!(
                            "stream name `{sname}` may only hold letters, digits, `_`, `-` and `.`"
                        ),
                    );
                }
                if let Some(s) = parse_stream(cx, tax, purpose_names, sname, spos, snode) {
                    streams.push(s);
                }
            }
        }
        None => cx.err(root.pos, "missing `streams` in the policy"),
    }
    streams
}
