//! Output headers: custos's own (`custos-policy`, `-purpose`, `-classes`,
//! `-source`) and the governed key and input headers.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A key or header value with the spans the detectors found in it (none
/// when the field is not scanned).
pub(super) struct ScannedText {
    pub(super) spans: Vec<Span>,
}

impl ScannedText {
    pub(super) fn new(s: &str, leaf: &Leaf, field: &str, detections: &mut Vec<Detection>) -> Self {
        let mut spans = Vec::new();
        if leaf.scan {
            classify::detect_into(s, &mut spans);
            count_detections(detections, field, &spans);
        }
        ScannedText { spans }
    }

    /// The governed text for output `p`, or `None` when it is dropped.
    pub(super) fn govern(
        &self,
        s: &str,
        leaf: &Leaf,
        out: &OutputPlan,
        p: usize,
        text: &mut String,
        enc: Enc<'_>,
    ) -> Option<Vec<u8>> {
        let op = &leaf.decisions[p].op;
        if matches!(op, Op::Drop) {
            return None;
        }
        let governed: &str = if self.spans.is_empty() {
            s
        } else {
            text.clear();
            rewrite_spans(s, &self.spans, out, text, enc, |_| {});
            text.as_str()
        };
        text_action(op, governed, enc)
    }
}

/// A key or header text under a non-scanning action: bytes, or `None` when dropped.
pub(super) fn text_action(op: &Op, governed: &str, enc: Enc<'_>) -> Option<Vec<u8>> {
    match op {
        Op::Keep => Some(governed.as_bytes().to_vec()),
        Op::Encrypt(kek) => Some(
            enc.seal(kek, &json_string(governed))
                .unwrap_or_else(|| transform::REDACTED.to_string())
                .into_bytes(),
        ),
        _ => {
            let v = Value::String(governed.to_string());
            transform::apply(op, &v).and_then(|v| scalar_bytes(&v))
        }
    }
}

/// A governed scalar as bytes for a key or header: strings raw, null as absent.
pub(super) fn scalar_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.as_bytes().to_vec()),
        other => Some(other.to_string().into_bytes()),
    }
}

pub(super) fn classes_header(plan: &StreamPlan, bits: &[u64]) -> String {
    let mut out = String::new();
    for (wi, &word) in bits.iter().enumerate() {
        let mut w = word;
        while w != 0 {
            let b = w.trailing_zeros() as usize;
            w &= w - 1;
            if let Some(name) = plan.pairs.get(wi * 64 + b) {
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(name);
            }
        }
    }
    out
}

/// The headers of output `i`: custos's own first (`custos-policy`,
/// `custos-purpose`, `custos-classes`, `custos-source`), then each input
/// header the policy classifies, governed by the purpose's action (scanned
/// ones with their spans rewritten); a dropped one is left out.
#[allow(clippy::too_many_arguments)]
pub(super) fn output_headers(
    plan: &StreamPlan,
    policy_id: &str,
    i: usize,
    classes: String,
    source: &str,
    rec: &Record<'_>,
    header_texts: &[(usize, &str, usize)],
    texts: &[ScannedText],
    text: &mut String,
    sealer: &Sealer<'_>,
) -> Vec<(Cow<'static, str>, Vec<u8>)> {
    let mut headers: Vec<(Cow<'static, str>, Vec<u8>)> = Vec::with_capacity(4 + plan.headers.len());
    let out = &plan.outputs[i];
    headers.push((
        Cow::Borrowed("custos-policy"),
        policy_id.as_bytes().to_vec(),
    ));
    headers.push((
        Cow::Borrowed("custos-purpose"),
        out.name.as_bytes().to_vec(),
    ));
    headers.push((Cow::Borrowed("custos-classes"), classes.into_bytes()));
    headers.push((Cow::Borrowed("custos-source"), source.as_bytes().to_vec()));
    for (name, leaf) in &plan.headers {
        for (ri, (hn, hv)) in rec.headers.iter().enumerate() {
            if hn != name {
                continue;
            }
            let d = &leaf.decisions[i];
            let path = [crate::crypto::Seg::Header(hn.as_bytes())];
            let enc = Enc {
                sealer,
                purpose: out.name.as_str(),
                path: &path,
            };
            let governed = if leaf.scan {
                header_texts
                    .iter()
                    .find(|(r, _, _)| *r == ri)
                    .and_then(|&(_, s, ti)| texts[ti].govern(s, leaf, out, i, text, enc))
            } else if matches!(d.op, Op::Keep) {
                Some(hv.clone())
            } else {
                text_action(&d.op, &String::from_utf8_lossy(hv), enc)
            };
            if let Some(b) = governed {
                headers.push((Cow::Owned(hn.clone()), b));
            }
        }
    }
    headers
}
