//! One purpose: basis, retention, rules and their actions.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn parse_purpose(
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

pub(super) fn parse_action(
    cx: &mut Ctx,
    keys: &HashSet<&str>,
    node: &Node,
    what: &str,
) -> Option<Action> {
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
        "encrypt" => key_param(cx, params, "encrypt").map(|key| Action::Encrypt { key }),
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
pub(super) fn network_prefixes(cx: &mut Ctx, v: &Node) -> Option<Generalize> {
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
