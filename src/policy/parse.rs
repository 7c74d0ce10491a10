//! Turns the marked YAML tree into a [`Policy`], collecting every problem.
//!
//! Each check reports at the position of the offending node and carries on, so
//! a user sees all errors of a file in one run. Pure: no environment, no files.

use std::collections::{HashMap, HashSet};

use super::taxonomy::{self, Taxonomy};
use super::yaml::{self, Kind, Node, Pos};
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

    match top.get("version") {
        Some(v) if v.as_str() == Some("1") => {}
        Some(v) => cx.err(
            v.pos,
            "unsupported policy `version`; this custos reads version 1",
        ),
        None => cx.err(root.pos, "missing `version: 1` in the policy"),
    }
    let name = match top.get("name") {
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
    };

    // Classes first: everything else refers to them.
    let mut tax = Taxonomy::default();
    let mut declared = Vec::new();
    if let Some(node) = top.get("classes") {
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

    let mut tags = Vec::new();
    if let Some(node) = top.get("tags") {
        for (tag, _pos, class) in cx.named(node, "`tags`") {
            if let Some(c) = cx.string(class, &format!("the class of tag `{tag}`")) {
                if cx.class(&tax, &c, class.pos, &format!("tag `{tag}`")) {
                    tags.push((tag.to_string(), c));
                }
            }
        }
    }

    let mut keys = Vec::new();
    if let Some(node) = top.get("keys") {
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
    let key_names: HashSet<&str> = keys.iter().map(|(n, _)| n.as_str()).collect();

    let mut purposes: Vec<Purpose> = Vec::new();
    match top.get("purposes") {
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
                if let Some(p) = parse_purpose(&mut cx, &tax, &key_names, pname, ppos, pnode) {
                    purposes.push(p);
                }
            }
        }
        None => cx.err(root.pos, "missing `purposes` in the policy"),
    }
    let purpose_names: HashSet<&str> = purposes.iter().map(|p| p.name.as_str()).collect();

    let mut invariants = Vec::new();
    if let Some(node) = top.get("invariants") {
        match node.as_seq() {
            Some(items) => {
                for item in items {
                    let f = cx.map(item, "an invariant", &["classes", "purposes", "only"]);
                    let classes: Vec<String> = match f.get("classes") {
                        Some(n) => cx
                            .strings(n, "`classes` of an invariant")
                            .into_iter()
                            .filter(|(c, pos)| cx.class(&tax, c, *pos, "an invariant"))
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

    let topic_of = |cx: &mut Ctx, node: Option<&&Node>, what: &str| -> Option<String> {
        let node = node?;
        let f = cx.map(node, what, &["topic"]);
        match f.get("topic") {
            Some(t) => cx.string(t, &format!("`topic` of {what}")),
            None => {
                cx.err(node.pos, format!("{what} needs a `topic`"));
                None
            }
        }
    };
    let consent_topic = topic_of(&mut cx, top.get("consent"), "`consent`");
    let erasure_topic = topic_of(&mut cx, top.get("erasure"), "`erasure`");
    if !top.contains_key("consent") {
        for p in purposes.iter().filter(|p| p.basis == Basis::Consent) {
            cx.err(p.pos, format!("purpose `{}` has basis `consent` but the policy has no `consent: {{ topic: … }}` to read consent from", p.name));
        }
    }

    let mut streams: Vec<Stream> = Vec::new();
    match top.get("streams") {
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
                if let Some(s) = parse_stream(&mut cx, &tax, &purpose_names, sname, spos, snode) {
                    streams.push(s);
                }
            }
        }
        None => cx.err(root.pos, "missing `streams` in the policy"),
    }
    // Topics must not collide: a stream reading another's output would loop,
    // two purposes sharing a topic would mix what each may see.
    let mut seen_topics: HashMap<&str, String> = HashMap::new();
    for s in &streams {
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
    for s in &streams {
        for (p, t) in &s.outputs {
            let me = format!("output of purpose `{p}` in stream `{}`", s.name);
            if let Some(prev) = seen_topics.insert(t, me.clone()) {
                cx.err(s.pos, format!("topic `{t}` is both the {me} and the {prev}; every output needs its own topic"));
            }
        }
    }

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
    check_invariants(&policy, &mut cx);

    if cx.diags.is_empty() {
        Ok(policy)
    } else {
        Err(cx.diags)
    }
}

fn parse_purpose(
    cx: &mut Ctx,
    tax: &Taxonomy,
    keys: &HashSet<&str>,
    name: &str,
    pos: Pos,
    node: &Node,
) -> Option<Purpose> {
    let what = format!("purpose `{name}`");
    let f = cx.map(node, &what, &["description", "basis", "retention", "rules"]);
    let description = f
        .get("description")
        .and_then(|d| cx.string(d, &format!("`description` of {what}")));
    let basis = match f.get("basis") {
        Some(b) => {
            let text = b.as_str().unwrap_or_default();
            let found = Basis::ALL.iter().find(|(n, _)| *n == text).map(|(_, b)| *b);
            if found.is_none() {
                cx.err(b.pos, format!("unknown basis `{text}` in {what}; use one of consent, contract, legal_obligation, legitimate_interest, vital_interests, public_task"));
            }
            found
        }
        None => {
            cx.err(pos, format!("{what} needs a `basis`"));
            None
        }
    };
    let retention = match f.get("retention") {
        Some(r) => {
            let text = r.as_str().unwrap_or_default().to_string();
            match parse_duration(&text) {
                Ok(ms) => Some((ms, text)),
                Err(e) => {
                    cx.err(r.pos, format!("{e} (retention of {what})"));
                    None
                }
            }
        }
        None => {
            cx.err(
                pos,
                format!("{what} needs a `retention`, e.g. `retention: 30d`"),
            );
            None
        }
    };
    let mut rules = Vec::new();
    let mut seen: HashMap<String, Pos> = HashMap::new();
    match f.get("rules").map(|r| (r, r.as_seq())) {
        Some((_, Some(items))) => {
            for item in items {
                let rf = cx.map(item, &format!("a rule of {what}"), &["classes", "action"]);
                let mut classes = Vec::new();
                let mut class_pos = Vec::new();
                match rf.get("classes") {
                    Some(c) => {
                        for (cname, cpos) in
                            cx.strings(c, &format!("`classes` of a rule of {what}"))
                        {
                            if !cx.class(tax, &cname, cpos, &format!("a rule of {what}")) {
                                continue;
                            }
                            if let Some(prev) = seen.get(&cname) {
                                cx.err(cpos, format!("class `{cname}` has two rules in {what} (the other at line {}); keep one", prev.line));
                                continue;
                            }
                            seen.insert(cname.clone(), cpos);
                            classes.push(cname);
                            class_pos.push(cpos);
                        }
                    }
                    None => cx.err(item.pos, format!("a rule of {what} needs `classes`")),
                }
                let action = match rf.get("action") {
                    Some(a) => parse_action(cx, keys, a, &what),
                    None => {
                        cx.err(item.pos, format!("a rule of {what} needs an `action`"));
                        None
                    }
                };
                if let Some(action) = action {
                    rules.push(Rule {
                        classes,
                        class_pos,
                        action,
                        pos: item.pos,
                    });
                }
            }
        }
        Some((r, None)) if !r.is_null() => {
            cx.err(r.pos, format!("`rules` of {what} must be a list"));
        }
        Some((_, None)) => {}
        None => {}
    }
    // Errors were reported above; a placeholder keeps later checks from
    // reporting the purpose as unknown.
    let (retention_ms, retention_text) = retention.unwrap_or_default();
    Some(Purpose {
        name: name.to_string(),
        description,
        basis: basis.unwrap_or(Basis::Contract),
        retention_ms,
        retention_text,
        rules,
        pos,
    })
}

fn parse_action(cx: &mut Ctx, keys: &HashSet<&str>, node: &Node, what: &str) -> Option<Action> {
    const KNOWN: &str = "drop, redact, pseudonymize, encrypt, mask, generalize, keep";
    let (name, params, npos) = match &node.kind {
        Kind::Scalar { text, .. } => (text.as_str(), None, node.pos),
        Kind::Map(entries) if entries.len() == 1 => {
            let (k, v) = &entries[0];
            (k.as_str().unwrap_or_default(), Some(v), k.pos)
        }
        _ => {
            cx.err(node.pos, format!("the action of a rule of {what} must be a name like `keep` or a mapping like `{{ mask: {{ keep_last: 4 }} }}`"));
            return None;
        }
    };
    let key_param = |cx: &mut Ctx, params: Option<&Node>, action: &str| -> Option<String> {
        let Some(p) = params else {
            cx.err(
                npos,
                format!("`{action}` needs a key: `{{ {action}: {{ key: NAME }} }}` ({what})"),
            );
            return None;
        };
        let f = cx.map(p, &format!("`{action}` in {what}"), &["key"]);
        let k = match f.get("key") {
            Some(k) => cx.string(k, &format!("`key` of `{action}`"))?,
            None => {
                cx.err(p.pos, format!("`{action}` needs a `key` ({what})"));
                return None;
            }
        };
        if !keys.contains(k.as_str()) {
            let pos = f.get("key").map_or(p.pos, |n| n.pos);
            cx.err(
                pos,
                format!(
                    "unknown key `{k}` in {what}; declare it under `keys:` with `env` or `file`"
                ),
            );
            return None;
        }
        Some(k)
    };
    let no_params = |cx: &mut Ctx, params: Option<&Node>, action: Action| -> Option<Action> {
        match params {
            Some(p) if !p.is_null() => {
                cx.err(
                    p.pos,
                    format!("`{}` takes no parameters ({what})", action.kind().name()),
                );
                None
            }
            _ => Some(action),
        }
    };
    match name {
        "drop" => no_params(cx, params, Action::Drop),
        "redact" => no_params(cx, params, Action::Redact),
        "keep" => no_params(cx, params, Action::Keep),
        "pseudonymize" => {
            key_param(cx, params, "pseudonymize").map(|key| Action::Pseudonymize { key })
        }
        "encrypt" => {
            cx.err(npos, format!("action `encrypt` is not supported yet by this custos ({what}); use `pseudonymize` or `drop` until crypto-shredding lands"));
            None
        }
        "mask" => {
            let mut keep_first = 0;
            let mut keep_last = 0;
            let mut ch = '*';
            if let Some(p) = params.filter(|p| !p.is_null()) {
                let f = cx.map(
                    p,
                    &format!("`mask` in {what}"),
                    &["keep_first", "keep_last", "char"],
                );
                if let Some(n) = f.get("keep_first") {
                    keep_first = cx.uint(n, "`keep_first`", 1_000)? as usize;
                }
                if let Some(n) = f.get("keep_last") {
                    keep_last = cx.uint(n, "`keep_last`", 1_000)? as usize;
                }
                if let Some(n) = f.get("char") {
                    let s = n.as_str().unwrap_or_default();
                    let mut chars = s.chars();
                    match (chars.next(), chars.next()) {
                        (Some(c), None) => ch = c,
                        _ => {
                            cx.err(n.pos, "`char` of `mask` must be exactly one character");
                            return None;
                        }
                    }
                }
            }
            Some(Action::Mask {
                keep_first,
                keep_last,
                ch,
            })
        }
        "generalize" => {
            let Some(p) = params.filter(|p| !p.is_null()) else {
                cx.err(
                    npos,
                    format!(
                        "`generalize` needs one of date, round, bucket, prefix, network ({what})"
                    ),
                );
                return None;
            };
            let entries = p.as_map().unwrap_or_default();
            if entries.len() != 1 {
                cx.err(p.pos, format!("`generalize` takes exactly one of date, round, bucket, prefix, network ({what})"));
                return None;
            }
            let (k, v) = &entries[0];
            let g = match k.as_str().unwrap_or_default() {
                "date" => match v.as_str().unwrap_or_default() {
                    "year" => Generalize::Date(DateUnit::Year),
                    "month" => Generalize::Date(DateUnit::Month),
                    "day" => Generalize::Date(DateUnit::Day),
                    other => {
                        cx.err(
                            v.pos,
                            format!("`date` must be year, month or day, not `{other}`"),
                        );
                        return None;
                    }
                },
                "round" => Generalize::Round(cx.uint(v, "`round`", 15)? as u32),
                "bucket" => match v
                    .as_str()
                    .and_then(|s| rust_decimal::Decimal::from_str_exact(s.trim()).ok())
                {
                    Some(w) if w > rust_decimal::Decimal::ZERO => Generalize::Bucket(w),
                    _ => {
                        cx.err(
                            v.pos,
                            "`bucket` must be a decimal number greater than zero (at most 28 digits)",
                        );
                        return None;
                    }
                },
                "prefix" => Generalize::Prefix(cx.uint(v, "`prefix`", 10_000)? as usize),
                "network" => network_prefixes(cx, v)?,
                other => {
                    cx.err(k.pos, format!("unknown generalization `{other}`; use date, round, bucket, prefix or network"));
                    return None;
                }
            };
            Some(Action::Generalize(g))
        }
        other => {
            cx.err(
                npos,
                format!("unknown action `{other}` in {what}; actions: {KNOWN}"),
            );
            None
        }
    }
}

/// `network: N` (both address families) or `network: { v4: N, v6: M }`. A
/// prefix that would keep an address whole (32 for IPv4, 128 for IPv6) is
/// refused: the field would say `generalize` and carry the address.
fn network_prefixes(cx: &mut Ctx, v: &Node) -> Option<Generalize> {
    let (v4, v6) = if v.as_map().is_some() {
        let m = cx.map(v, "`network`", &["v4", "v6"]);
        let (Some(a), Some(b)) = (m.get("v4"), m.get("v6")) else {
            cx.err(v.pos, "`network` as a mapping needs both `v4` and `v6` prefixes, e.g. `{ v4: 24, v6: 48 }`");
            return None;
        };
        (
            cx.uint(a, "`network.v4`", 31)? as u8,
            cx.uint(b, "`network.v6`", 127)? as u8,
        )
    } else {
        let n = cx.uint(v, "`network`", 127)?;
        if n >= 32 {
            cx.err(v.pos, format!("`network: {n}` would keep IPv4 addresses whole (they have 32 bits); write separate prefixes, e.g. `network: {{ v4: 24, v6: {n} }}`"));
            return None;
        }
        (n as u8, n as u8)
    };
    Some(Generalize::Network { v4, v6 })
}

fn parse_path(cx: &mut Ctx, text: &str, pos: Pos, what: &str) -> Option<FieldPath> {
    match FieldPath::parse(text) {
        Ok(FieldPath::Header(h)) if h.to_ascii_lowercase().starts_with("custos-") => {
            cx.err(pos, format!("header `{h}` is custos's own (`custos-*` headers are written by custos and never copied from the input) ({what})"));
            None
        }
        Ok(p) => Some(p),
        Err(e) => {
            cx.err(pos, format!("{e} ({what})"));
            None
        }
    }
}

fn parse_stream(
    cx: &mut Ctx,
    tax: &Taxonomy,
    purposes: &HashSet<&str>,
    name: &str,
    pos: Pos,
    node: &Node,
) -> Option<Stream> {
    let what = format!("stream `{name}`");
    let f = cx.map(
        node,
        &what,
        &[
            "topic",
            "format",
            "subject",
            "event_time",
            "fields",
            "unclassified",
            "outputs",
            "max_future_skew",
        ],
    );
    let topic = match f.get("topic") {
        Some(t) => cx.string(t, &format!("`topic` of {what}")),
        None => {
            cx.err(pos, format!("{what} needs a `topic`"));
            None
        }
    };
    let format = match f.get("format").map(|n| (n, n.as_str())) {
        None | Some((_, Some("json"))) => Format::Json,
        Some((_, Some("avro"))) => Format::Avro,
        Some((n, _)) => {
            cx.err(n.pos, format!("`format` of {what} must be json or avro"));
            Format::Json
        }
    };
    let single_path = |cx: &mut Ctx, key: &str| -> Option<FieldPath> {
        let n = f.get(key)?;
        let text = cx.string(n, &format!("`{key}` of {what}"))?;
        let p = parse_path(cx, &text, n.pos, &format!("`{key}` of {what}"))?;
        if let FieldPath::Value(segs) = &p {
            if segs.contains(&Segment::Each) {
                cx.err(
                    n.pos,
                    format!("`{key}` of {what} cannot go through an array"),
                );
                return None;
            }
        }
        Some(p)
    };
    let subject = single_path(cx, "subject");
    let event_time = single_path(cx, "event_time");
    let max_future_skew_ms = match f.get("max_future_skew") {
        None => DEFAULT_MAX_FUTURE_SKEW_MS,
        Some(n) => match n.as_str().map(super::parse_duration) {
            Some(Ok(ms)) => ms,
            Some(Err(e)) => {
                cx.err(n.pos, format!("`max_future_skew` of {what}: {e}"));
                DEFAULT_MAX_FUTURE_SKEW_MS
            }
            None => {
                cx.err(
                    n.pos,
                    format!("`max_future_skew` of {what} must be a duration such as `1d`"),
                );
                DEFAULT_MAX_FUTURE_SKEW_MS
            }
        },
    };
    let unclassified = match f.get("unclassified").map(|n| (n, n.as_str())) {
        None | Some((_, Some("drop"))) => Unclassified::Drop,
        Some((_, Some("dead_letter"))) => Unclassified::DeadLetter,
        Some((n, _)) => {
            cx.err(
                n.pos,
                format!("`unclassified` of {what} must be drop or dead_letter"),
            );
            Unclassified::Drop
        }
    };
    let mut fields: Vec<FieldSpec> = Vec::new();
    let mut seen: HashSet<FieldPath> = HashSet::new();
    if let Some(fnode) = f.get("fields") {
        for (ptext, ppos, cnode) in cx.named(fnode, &format!("`fields` of {what}")) {
            let Some(path) = parse_path(cx, ptext, ppos, &format!("`fields` of {what}")) else {
                continue;
            };
            if !seen.insert(path.clone()) {
                cx.err(
                    ppos,
                    format!("field path `{ptext}` is classified twice in {what}"),
                );
                continue;
            }
            let fwhat = format!("field `{ptext}` of {what}");
            let (class_list, scan) = match &cnode.kind {
                Kind::Map(_) => {
                    let m = cx.map(cnode, &fwhat, &["classes", "class", "scan"]);
                    let classes = match (m.get("classes"), m.get("class")) {
                        (Some(c), None) | (None, Some(c)) => {
                            cx.strings(c, &format!("`classes` of {fwhat}"))
                        }
                        (Some(_), Some(_)) => {
                            cx.err(
                                cnode.pos,
                                format!("{fwhat} has both `classes` and `class`; use `classes`"),
                            );
                            Vec::new()
                        }
                        (None, None) => {
                            cx.err(cnode.pos, format!("{fwhat} needs `classes`"));
                            Vec::new()
                        }
                    };
                    let scan = match m.get("scan") {
                        Some(s) => cx.bool(s, &format!("`scan` of {fwhat}")).unwrap_or(false),
                        None => false,
                    };
                    (classes, scan)
                }
                _ => (cx.strings(cnode, &format!("the class of {fwhat}")), false),
            };
            let classes: Vec<String> = class_list
                .into_iter()
                .filter(|(c, p)| cx.class(tax, c, *p, &fwhat))
                .map(|(c, _)| c)
                .fold(Vec::new(), |mut acc, c| {
                    if !acc.contains(&c) {
                        acc.push(c);
                    }
                    acc
                });
            if classes.is_empty() {
                continue;
            }
            fields.push(FieldSpec {
                path,
                classes,
                scan,
                pos: ppos,
            });
        }
    }
    let mut outputs = Vec::new();
    if let Some(onode) = f.get("outputs") {
        for (pname, ppos, tnode) in cx.named(onode, &format!("`outputs` of {what}")) {
            if !purposes.contains(pname) {
                cx.err(ppos, format!("unknown purpose `{pname}` in `outputs` of {what}; declare it under `purposes:`"));
                continue;
            }
            if let Some(t) = cx.string(tnode, &format!("the output topic of purpose `{pname}`")) {
                outputs.push((pname.to_string(), t));
            }
        }
    }
    Some(Stream {
        name: name.to_string(),
        topic: topic.unwrap_or_default(),
        format,
        subject,
        event_time,
        max_future_skew_ms,
        fields,
        unclassified,
        outputs,
        pos,
    })
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
