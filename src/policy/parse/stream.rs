//! One stream: topic, format, subject, event time, field classes, outputs.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn parse_path(cx: &mut Ctx, text: &str, pos: Pos, what: &str) -> Option<FieldPath> {
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

pub(super) fn parse_stream(
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
