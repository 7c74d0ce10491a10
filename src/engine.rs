//! Per-event governance (SPEC §3): decode, read subject and event time,
//! decide per purpose (erasure, consent, objection, retention), apply the plan
//! and build each output record.
//!
//! Architecture invariant: this is the pure core. It does no I/O, takes no
//! locks, reads no clock (`now_ms` is passed in) and cannot fail: every input
//! ends as a [`Verdict`], either governed outputs or a dead letter. It never
//! logs, so it can never log personal data.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::classify::{self, Detector, Span};
use crate::policy::plan::{Leaf, Node, OutputPlan, StreamPlan};
use crate::policy::{Basis, FieldPath, Segment, Unclassified};
use crate::state::{subject_text, SubjectState};
use crate::transform::{self, Op};

/// Records larger than this go to the dead-letter topic (`too_large`).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// One input record, as read from Kafka (or an NDJSON line).
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Record timestamp, epoch milliseconds.
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub headers: &'a [(String, Vec<u8>)],
}

/// Why a purpose did not get an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suppression {
    Erasure,
    Consent,
    Objection,
    Expired,
}

impl Suppression {
    pub const ALL: [Suppression; 4] = [Suppression::Consent, Suppression::Objection, Suppression::Erasure, Suppression::Expired];

    pub fn name(self) -> &'static str {
        match self {
            Suppression::Erasure => "erasure",
            Suppression::Consent => "consent",
            Suppression::Objection => "objection",
            Suppression::Expired => "expired",
        }
    }
}

/// Why a record went to the dead-letter topic (the `custos-error` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// Not decodable (bad JSON, not an object, bad UTF-8, nesting too deep).
    Decode,
    /// No usable schema (Avro).
    Schema,
    /// Larger than the record size limit.
    TooLarge,
    /// Unclassified fields in a stream with `unclassified: dead_letter`.
    Unclassified,
    /// The event time field holds neither RFC 3339 nor epoch millis.
    EventTime,
}

impl DeadLetterReason {
    pub const ALL: [DeadLetterReason; 5] = [
        DeadLetterReason::Decode,
        DeadLetterReason::Schema,
        DeadLetterReason::TooLarge,
        DeadLetterReason::Unclassified,
        DeadLetterReason::EventTime,
    ];

    pub fn code(self) -> &'static str {
        match self {
            DeadLetterReason::Decode => "decode",
            DeadLetterReason::Schema => "schema",
            DeadLetterReason::TooLarge => "too_large",
            DeadLetterReason::Unclassified => "unclassified",
            DeadLetterReason::EventTime => "event_time",
        }
    }
}

/// A record the engine could not govern. `detail` never holds record content.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub reason: DeadLetterReason,
    pub detail: String,
}

/// One governed output record.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Index into the stream plan's outputs.
    pub output: usize,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// `custos-*` headers first, then governed input headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Emitted(Output),
    Suppressed(Suppression),
}

/// Personal data found in a scanned field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub field: String,
    pub detector: Detector,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Governed {
    pub subject: Option<String>,
    pub event_time_ms: i64,
    /// One per output of the stream plan, in its order.
    pub outcomes: Vec<Outcome>,
    pub detections: Vec<Detection>,
    pub unclassified_fields: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Governed(Governed),
    DeadLetter(DeadLetter),
}

/// Reusable buffers, one per worker thread.
#[derive(Debug, Default)]
pub struct Scratch {
    bufs: Vec<Vec<u8>>,
    bits: Vec<u64>,
    spans: Vec<Span>,
    text: String,
}

/// Governs one record of a stream.
pub fn govern(
    plan: &StreamPlan,
    policy_id: &str,
    rec: &Record<'_>,
    state: &dyn SubjectState,
    now_ms: i64,
    scratch: &mut Scratch,
) -> Verdict {
    govern_with_limit(plan, policy_id, rec, state, now_ms, scratch, DEFAULT_MAX_RECORD_BYTES)
}

fn dead(reason: DeadLetterReason, detail: impl Into<String>) -> Verdict {
    Verdict::DeadLetter(DeadLetter { reason, detail: detail.into() })
}

/// [`govern`] with an explicit record size limit.
pub fn govern_with_limit(
    plan: &StreamPlan,
    policy_id: &str,
    rec: &Record<'_>,
    state: &dyn SubjectState,
    now_ms: i64,
    scratch: &mut Scratch,
    max_record_bytes: usize,
) -> Verdict {
    if rec.value.len() > max_record_bytes {
        return dead(
            DeadLetterReason::TooLarge,
            format!("value of {} bytes is over the limit of {max_record_bytes}", rec.value.len()),
        );
    }
    let value: Value = match serde_json::from_slice(rec.value) {
        Ok(v) => v,
        Err(e) => return dead(DeadLetterReason::Decode, format!("not valid JSON: {e}")),
    };
    let Value::Object(map) = &value else {
        return dead(DeadLetterReason::Decode, "the value is not a JSON object");
    };

    let subject = plan.subject.as_ref().and_then(|p| read_path(p, rec, &value)).and_then(|v| subject_text(&v));
    let event_time_ms = match plan.event_time.as_ref().and_then(|p| read_path(p, rec, &value)) {
        None => rec.timestamp.unwrap_or(now_ms),
        Some(v) => match parse_time(&v) {
            Some(t) => t,
            None => return dead(DeadLetterReason::EventTime, "the event time is neither RFC 3339 nor epoch milliseconds"),
        },
    };

    // Decide per purpose, before any transform.
    let n = plan.outputs.len();
    let mut suppressed: Vec<Option<Suppression>> = Vec::with_capacity(n);
    let mut active: u64 = 0;
    let erased = subject.as_deref().is_some_and(|s| state.is_erased(s));
    for (i, out) in plan.outputs.iter().enumerate() {
        let s = decide(out, subject.as_deref(), erased, state, event_time_ms, now_ms);
        if s.is_none() {
            active |= 1 << i;
        }
        suppressed.push(s);
    }

    let words = plan.pairs.len().div_ceil(64).max(1);
    scratch.bufs.resize_with(n, Vec::new);
    scratch.bits.clear();
    scratch.bits.resize(n * words, 0);
    for b in &mut scratch.bufs[..n] {
        b.clear();
    }
    let mut detections: Vec<Detection> = Vec::new();
    let mut w = Walker {
        outputs: &plan.outputs,
        bufs: &mut scratch.bufs[..n],
        bits: &mut scratch.bits,
        words,
        unclassified: 0,
        detections: &mut detections,
        spans: &mut scratch.spans,
        text: &mut scratch.text,
    };
    let written = w.object(map, &plan.root.leaf, Some(&plan.root), "", active);
    let unclassified = w.unclassified;
    if unclassified > 0 && plan.unclassified == Unclassified::DeadLetter {
        return dead(
            DeadLetterReason::Unclassified,
            format!("{unclassified} unclassified field(s) and the stream says `unclassified: dead_letter`"),
        );
    }

    let key_value: Option<Value> = match rec.key {
        Some(k) if plan.key.is_classified() => match std::str::from_utf8(k) {
            Ok(s) => Some(Value::String(s.to_string())),
            Err(_) => return dead(DeadLetterReason::Decode, "the record key is not UTF-8"),
        },
        _ => None,
    };
    let source = format!("{}/{}/{}", rec.topic, rec.partition, rec.offset);
    let mut outcomes = Vec::with_capacity(n);
    for (i, out) in plan.outputs.iter().enumerate() {
        if let Some(s) = suppressed[i] {
            outcomes.push(Outcome::Suppressed(s));
            continue;
        }
        let mut value = std::mem::take(&mut scratch.bufs[i]);
        if written & (1 << i) == 0 {
            value.clear();
            value.extend_from_slice(b"{}");
        }
        let classes = classes_header(plan, &scratch.bits[i * words..(i + 1) * words]);
        let key = key_value.as_ref().and_then(|k| {
            transform::apply(&plan.key.decisions[i].op, k).and_then(|v| scalar_bytes(&v))
        });
        let mut headers = vec![
            ("custos-policy".to_string(), policy_id.as_bytes().to_vec()),
            ("custos-purpose".to_string(), out.name.as_bytes().to_vec()),
            ("custos-classes".to_string(), classes.into_bytes()),
            ("custos-source".to_string(), source.as_bytes().to_vec()),
        ];
        for (name, leaf) in &plan.headers {
            for (hn, hv) in rec.headers.iter().filter(|(hn, _)| hn == name) {
                let d = &leaf.decisions[i];
                if matches!(d.op, Op::Keep) {
                    headers.push((hn.clone(), hv.clone()));
                    continue;
                }
                let v = Value::String(String::from_utf8_lossy(hv).into_owned());
                if let Some(b) = transform::apply(&d.op, &v).and_then(|v| scalar_bytes(&v)) {
                    headers.push((hn.clone(), b));
                }
            }
        }
        outcomes.push(Outcome::Emitted(Output { output: i, key, value, headers }));
    }
    Verdict::Governed(Governed {
        subject,
        event_time_ms,
        outcomes,
        detections,
        unclassified_fields: unclassified,
    })
}

fn decide(
    out: &OutputPlan,
    subject: Option<&str>,
    erased: bool,
    state: &dyn SubjectState,
    event_time_ms: i64,
    now_ms: i64,
) -> Option<Suppression> {
    if erased {
        return Some(Suppression::Erasure);
    }
    match out.basis {
        Basis::Consent => match subject {
            Some(s) if state.consent(s, &out.name) == Some(true) => {}
            _ => return Some(Suppression::Consent),
        },
        Basis::LegitimateInterest => {
            if subject.is_some_and(|s| state.consent(s, &out.name) == Some(false)) {
                return Some(Suppression::Objection);
            }
        }
        Basis::Contract | Basis::LegalObligation | Basis::VitalInterests | Basis::PublicTask => {}
    }
    if event_time_ms < now_ms.saturating_sub(out.retention_ms) {
        return Some(Suppression::Expired);
    }
    None
}

/// A governed scalar as bytes for a key or header: strings raw, null as absent.
fn scalar_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.as_bytes().to_vec()),
        other => Some(other.to_string().into_bytes()),
    }
}

fn classes_header(plan: &StreamPlan, bits: &[u64]) -> String {
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

/// Reads a value at a path without arrays (subject, event time).
pub fn read_path(path: &FieldPath, rec: &Record<'_>, value: &Value) -> Option<Value> {
    match path {
        FieldPath::Key => rec.key.and_then(|k| std::str::from_utf8(k).ok()).map(|s| Value::String(s.to_string())),
        FieldPath::Header(h) => rec
            .headers
            .iter()
            .find(|(n, _)| n == h)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(|s| Value::String(s.to_string())),
        FieldPath::Value(segs) => {
            let mut v = value;
            for s in segs {
                match s {
                    Segment::Field(name) => v = v.get(name.as_str())?,
                    Segment::Each => return None,
                }
            }
            (!v.is_null()).then(|| v.clone())
        }
    }
}

/// Epoch millis from a number, a string of digits, or an RFC 3339 string.
pub fn parse_time(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite() && f.abs() < 9e15).map(|f| f as i64)),
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                return s.parse().ok();
            }
            chrono::DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp_millis())
        }
        _ => None,
    }
}

/// Walks one event once, writing every active purpose's output side by side.
struct Walker<'a> {
    outputs: &'a [OutputPlan],
    bufs: &'a mut [Vec<u8>],
    bits: &'a mut [u64],
    words: usize,
    unclassified: u32,
    detections: &'a mut Vec<Detection>,
    spans: &'a mut Vec<Span>,
    text: &'a mut String,
}

#[inline]
fn each_bit(mask: u64) -> impl Iterator<Item = usize> {
    let mut m = mask;
    std::iter::from_fn(move || {
        if m == 0 {
            None
        } else {
            let b = m.trailing_zeros() as usize;
            m &= m - 1;
            Some(b)
        }
    })
}

fn count_leaves(v: &Value) -> u32 {
    match v {
        Value::Object(m) => m.values().map(count_leaves).sum::<u32>().max(1),
        Value::Array(a) => a.iter().map(count_leaves).sum::<u32>().max(1),
        _ => 1,
    }
}

impl Walker<'_> {
    fn mark_pairs(&mut self, p: usize, pairs: &[u16]) {
        for &id in pairs {
            let id = id as usize;
            self.bits[p * self.words + id / 64] |= 1 << (id % 64);
        }
    }

    /// Writes `v` under `leaf`/`node` for every purpose in `active`; returns
    /// the purposes for which something was written.
    fn value(&mut self, v: &Value, leaf: &Leaf, node: Option<&Node>, path: &str, active: u64) -> u64 {
        let structured = node.is_some_and(Node::has_structure);
        if !structured && !leaf.scan {
            if !leaf.is_classified() {
                self.unclassified += count_leaves(v);
                return 0;
            }
            if matches!(v, Value::Object(_) | Value::Array(_)) {
                // Uniform subtree: keep it whole where the action is keep.
                let mut keep = 0;
                for p in each_bit(active) {
                    if matches!(leaf.decisions[p].op, Op::Keep) {
                        keep |= 1 << p;
                    }
                }
                let mut written = 0;
                for p in each_bit(keep) {
                    // Writing a Value to a Vec<u8> cannot fail.
                    let _ = serde_json::to_writer(&mut self.bufs[p], v);
                    self.mark_pairs(p, &leaf.decisions[p].pairs);
                    written |= 1 << p;
                }
                let rest = active & !keep;
                if rest != 0 {
                    written |= match v {
                        Value::Object(m) => self.object(m, leaf, None, path, rest),
                        Value::Array(a) => self.array(a, leaf, None, path, rest),
                        _ => 0,
                    };
                }
                return written;
            }
        }
        match v {
            Value::Object(m) => self.object(m, leaf, node, path, active),
            Value::Array(a) => self.array(a, leaf, node, path, active),
            scalar => self.scalar(scalar, leaf, path, active),
        }
    }

    fn object(&mut self, map: &Map<String, Value>, leaf: &Leaf, node: Option<&Node>, path: &str, active: u64) -> u64 {
        let mut marks = [0usize; 64];
        for p in each_bit(active) {
            marks[p] = self.bufs[p].len();
            self.bufs[p].push(b'{');
        }
        let mut nonempty = 0u64;
        let mut emarks = [0usize; 64];
        for (k, cv) in map {
            let (cleaf, cnode, cpath) = match node.and_then(|n| n.child(k)) {
                Some(c) => (&*c.leaf, Some(c), c.path.as_str()),
                None => (leaf, None, path),
            };
            if !cleaf.is_classified() && !cnode.is_some_and(|n| n.has_classified) {
                self.unclassified += count_leaves(cv);
                continue;
            }
            for p in each_bit(active) {
                let buf = &mut self.bufs[p];
                emarks[p] = buf.len();
                if nonempty & (1 << p) != 0 {
                    buf.push(b',');
                }
                let _ = serde_json::to_writer(&mut *buf, k.as_str());
                buf.push(b':');
            }
            let w = self.value(cv, cleaf, cnode, cpath, active);
            for p in each_bit(active & !w) {
                self.bufs[p].truncate(emarks[p]);
            }
            nonempty |= w;
        }
        for p in each_bit(active) {
            if nonempty & (1 << p) != 0 {
                self.bufs[p].push(b'}');
            } else {
                self.bufs[p].truncate(marks[p]);
            }
        }
        nonempty
    }

    fn array(&mut self, items: &[Value], leaf: &Leaf, node: Option<&Node>, path: &str, active: u64) -> u64 {
        let (eleaf, enode, epath) = match node.and_then(|n| n.each.as_deref()) {
            Some(e) => (&*e.leaf, Some(e), e.path.as_str()),
            None => (leaf, None, path),
        };
        if !eleaf.is_classified() && !enode.is_some_and(|n| n.has_classified) {
            self.unclassified += items.iter().map(count_leaves).sum::<u32>().max(1);
            return 0;
        }
        let mut marks = [0usize; 64];
        for p in each_bit(active) {
            marks[p] = self.bufs[p].len();
            self.bufs[p].push(b'[');
        }
        let mut nonempty = 0u64;
        let mut emarks = [0usize; 64];
        for item in items {
            for p in each_bit(active) {
                let buf = &mut self.bufs[p];
                emarks[p] = buf.len();
                if nonempty & (1 << p) != 0 {
                    buf.push(b',');
                }
            }
            let w = self.value(item, eleaf, enode, epath, active);
            for p in each_bit(active & !w) {
                self.bufs[p].truncate(emarks[p]);
            }
            nonempty |= w;
        }
        for p in each_bit(active) {
            if nonempty & (1 << p) != 0 {
                self.bufs[p].push(b']');
            } else {
                self.bufs[p].truncate(marks[p]);
            }
        }
        nonempty
    }

    fn scalar(&mut self, v: &Value, leaf: &Leaf, path: &str, active: u64) -> u64 {
        if !leaf.is_classified() {
            self.unclassified += 1;
            return 0;
        }
        if leaf.scan {
            if let Value::String(s) = v {
                return self.scanned(s, leaf, path, active);
            }
        }
        let mut written = 0;
        for p in each_bit(active) {
            let d = &leaf.decisions[p];
            if let Some(out) = transform::apply(&d.op, v) {
                let _ = serde_json::to_writer(&mut self.bufs[p], &*out);
                written |= 1 << p;
                self.mark_pairs(p, &d.pairs);
            }
        }
        written
    }

    fn scanned(&mut self, s: &str, leaf: &Leaf, path: &str, active: u64) -> u64 {
        classify::detect_into(s, self.spans);
        for span in self.spans.iter() {
            match self.detections.iter_mut().find(|d| d.field == path && d.detector == span.detector) {
                Some(d) => d.count += 1,
                None => self.detections.push(Detection { field: path.to_string(), detector: span.detector, count: 1 }),
            }
        }
        let mut written = 0;
        for p in each_bit(active) {
            let d = &leaf.decisions[p];
            if matches!(d.op, Op::Drop) {
                continue;
            }
            if matches!(d.op, Op::Redact) {
                let _ = serde_json::to_writer(&mut self.bufs[p], transform::REDACTED);
                written |= 1 << p;
                self.mark_pairs(p, &d.pairs);
                continue;
            }
            // Spans first, in place; then the field's own action on the result.
            self.text.clear();
            let mut last = 0;
            for span in self.spans.iter() {
                self.text.push_str(&s[last..span.start]);
                let sd = &self.outputs[p].spans[span.detector.index()];
                transform::apply_span(&sd.op, &s[span.start..span.end], span.detector.class(), self.text);
                last = span.end;
                if let Some(id) = sd.pair {
                    let id = id as usize;
                    self.bits[p * self.words + id / 64] |= 1 << (id % 64);
                }
            }
            self.text.push_str(&s[last..]);
            let text = Value::String(std::mem::take(self.text));
            if let Some(out) = transform::apply(&d.op, &text) {
                let out: Cow<'_, Value> = out;
                let _ = serde_json::to_writer(&mut self.bufs[p], &*out);
                written |= 1 << p;
                self.mark_pairs(p, &d.pairs);
            }
            if let Value::String(t) = text {
                *self.text = t;
            }
        }
        written
    }
}
