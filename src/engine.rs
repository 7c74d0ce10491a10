//! Per-event governance: decode, read subject and event time,
//! decide per purpose (erasure, consent, objection, retention), apply the plan
//! and build each output record.
//!
//! Architecture invariant: this is the pure core. It does no I/O, takes no
//! locks, reads no clock (`now_ms` is passed in) and cannot fail: every input
//! ends as a [`Verdict`], either governed outputs or a dead letter. It never
//! logs, so it can never log personal data.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;

use crate::classify::{self, Detector, Span};
use crate::codec::{self, Kind, Tape, Tok};
use crate::policy::plan::{Leaf, Node, OutputPlan, SpanDecision, StreamPlan};
use crate::policy::{ActionKind, Basis, FieldPath, Segment, Unclassified};
use crate::state::{canonical_subject, SubjectState};
use crate::transform::{self, Op};

/// Records larger than this go to the dead-letter topic (`too_large`).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// A record whose governed output for some purpose (key, value and headers)
/// would be larger than this goes to the dead-letter topic (`too_large`)
/// with nothing emitted: below librdkafka's and Kafka's default message size
/// limit of about 1 MB, so a governed record is never refused by the broker.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 900_000;

/// Size limits of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Input value size above which the record is dead-lettered.
    pub max_record_bytes: usize,
    /// Size of one governed output (key + value + headers) above which the
    /// whole record is dead-lettered.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

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

/// `topic/partition/offset`: the `custos-source` header of everything
/// custos writes for an input record (outputs, dead letters, refusals).
pub fn source_of(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic}/{partition}/{offset}")
}

/// True for a header name custos writes itself (`custos-*`, any case): never
/// copied from an input record.
pub fn is_custos_header(name: &str) -> bool {
    name.len() >= 7 && name.as_bytes()[..7].eq_ignore_ascii_case(b"custos-")
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
    pub const ALL: [Suppression; 4] = [
        Suppression::Consent,
        Suppression::Objection,
        Suppression::Erasure,
        Suppression::Expired,
    ];

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
    /// No usable age: the event time is present but not RFC 3339 or epoch
    /// millis, or too far in the future; or there is no event time and no
    /// usable record timestamp.
    EventTime,
    /// The subject id is present but not a string or number.
    Subject,
}

impl DeadLetterReason {
    pub const ALL: [DeadLetterReason; 6] = [
        DeadLetterReason::Decode,
        DeadLetterReason::Schema,
        DeadLetterReason::TooLarge,
        DeadLetterReason::Unclassified,
        DeadLetterReason::EventTime,
        DeadLetterReason::Subject,
    ];

    pub fn code(self) -> &'static str {
        match self {
            DeadLetterReason::Decode => "decode",
            DeadLetterReason::Schema => "schema",
            DeadLetterReason::TooLarge => "too_large",
            DeadLetterReason::Unclassified => "unclassified",
            DeadLetterReason::EventTime => "event_time",
            DeadLetterReason::Subject => "subject",
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
    pub headers: Vec<(Cow<'static, str>, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Emitted(Output),
    Suppressed(Suppression),
}

/// Personal data found in a scanned field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub field: Arc<str>,
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
    /// Per output: classified values it got, by winning action (in
    /// [`ActionKind::ALL`] order; drop included). Suppressed outputs count nothing.
    pub field_actions: Vec<[u32; 7]>,
    /// Per class of the plan ([`StreamPlan::class_names`]): classified values seen.
    pub class_occurrences: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Governed(Governed),
    DeadLetter(DeadLetter),
}

/// Reusable buffers, one per worker thread.
#[derive(Debug, Default)]
pub struct Scratch {
    tape: Tape,
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
    govern_with_limits(
        plan,
        policy_id,
        rec,
        state,
        now_ms,
        scratch,
        Limits::default(),
    )
}

fn dead(reason: DeadLetterReason, detail: impl Into<String>) -> Verdict {
    Verdict::DeadLetter(DeadLetter {
        reason,
        detail: detail.into(),
    })
}

/// [`govern`] with explicit size limits.
pub fn govern_with_limits(
    plan: &StreamPlan,
    policy_id: &str,
    rec: &Record<'_>,
    state: &dyn SubjectState,
    now_ms: i64,
    scratch: &mut Scratch,
    limits: Limits,
) -> Verdict {
    let max_record_bytes = limits.max_record_bytes;
    if rec.value.len() > max_record_bytes {
        return dead(
            DeadLetterReason::TooLarge,
            format!(
                "value of {} bytes is over the limit of {max_record_bytes}",
                rec.value.len()
            ),
        );
    }
    let mut tape = std::mem::take(&mut scratch.tape);
    let verdict = govern_tape(plan, policy_id, rec, state, now_ms, scratch, &mut tape);
    scratch.tape = tape;
    match verdict {
        Verdict::Governed(g) => check_output_sizes(plan, g, limits.max_output_bytes),
        dl => dl,
    }
}

/// Dead-letters a record one of whose outputs would exceed `max` bytes: a
/// produce the broker refuses would otherwise stall its partition.
fn check_output_sizes(plan: &StreamPlan, g: Governed, max: usize) -> Verdict {
    for o in &g.outcomes {
        if let Outcome::Emitted(out) = o {
            let size = out.value.len()
                + out.key.as_ref().map_or(0, Vec::len)
                + out
                    .headers
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>();
            if size > max {
                let purpose = plan.outputs.get(out.output).map_or("", |p| p.name.as_str());
                return dead(
                    DeadLetterReason::TooLarge,
                    format!("the output for purpose `{purpose}` would be {size} bytes, over the limit of {max}"),
                );
            }
        }
    }
    Verdict::Governed(g)
}

fn govern_tape(
    plan: &StreamPlan,
    policy_id: &str,
    rec: &Record<'_>,
    state: &dyn SubjectState,
    now_ms: i64,
    scratch: &mut Scratch,
    tape: &mut Tape,
) -> Verdict {
    if let Err(e) = tape.parse(rec.value) {
        return dead(DeadLetterReason::Decode, format!("not valid JSON: {e}"));
    }
    if tape.root().map(|t| t.kind) != Some(Kind::Object) {
        return dead(DeadLetterReason::Decode, "the value is not a JSON object");
    }
    let doc = Doc {
        src: rec.value,
        tape,
    };

    let subject = match plan.subject.as_ref().map(|p| read_path(p, rec, &doc)) {
        None | Some(Found::Missing | Found::Null) => None,
        Some(Found::Scalar(v)) => match canonical_subject(&v) {
            Ok(s) => s,
            Err(_) => {
                return dead(
                    DeadLetterReason::Subject,
                    "the subject id is a number too long to be an id",
                )
            }
        },
        Some(Found::Unusable) => {
            return dead(
                DeadLetterReason::Subject,
                "the subject id is not a string or number (or its path runs through something that is not an object)",
            )
        }
    };
    // The key or a header classified like the subject names it too: an
    // erasure or objection for any of them counts (most protective). A key
    // written by a serializer names the same subject as what it holds:
    // `"c-1"` or `'c-1'` with its quotes (white space around them ignored),
    // and every string and number anywhere in an object or array key
    // (`{"id":"c-1"}`, Kafka Connect's `{"schema":…,"payload":{"id":"c-1"}}`,
    // `["c-1"]`, duplicate members included).
    let mut aliases: Vec<String> = Vec::new();
    for p in &plan.subject_aliases {
        if let Found::Scalar(v) = read_path(p, rec, &doc) {
            let inner: Vec<Value> = v
                .as_str()
                .and_then(crate::state::canonical_subject_str)
                .filter(|t| t.len() >= 2 && t.starts_with(['"', '\'', '{', '[']))
                .map(|t| key_scalars(&t))
                .unwrap_or_default();
            for v in std::iter::once(v).chain(inner) {
                if let Ok(Some(a)) = canonical_subject(&v) {
                    if subject.as_ref() != Some(&a) && !aliases.contains(&a) {
                        aliases.push(a);
                    }
                }
            }
        }
    }
    let erased = subject.iter().chain(&aliases).any(|s| state.is_erased(s));
    if erased {
        // Nothing about an erased subject is written anywhere, not even to
        // the dead-letter topic for an unrelated defect of the event.
        return Verdict::Governed(Governed {
            subject,
            event_time_ms: rec.timestamp.unwrap_or(now_ms),
            outcomes: vec![Outcome::Suppressed(Suppression::Erasure); plan.outputs.len()],
            detections: Vec::new(),
            unclassified_fields: 0,
            field_actions: vec![[0; 7]; plan.outputs.len()],
            class_occurrences: vec![0; plan.class_names.len()],
        });
    }
    let event_time_ms = match plan.event_time.as_ref().map(|p| read_path(p, rec, &doc)) {
        None | Some(Found::Missing) => match rec.timestamp {
            Some(t) if t >= 0 => t,
            _ => {
                return dead(
                    DeadLetterReason::EventTime,
                    "the record has no usable timestamp and the event no event time: its age is unknown",
                )
            }
        },
        Some(Found::Scalar(v)) => match parse_time(&v) {
            Some(t) => t,
            None => {
                return dead(
                    DeadLetterReason::EventTime,
                    "the event time is neither RFC 3339 nor epoch milliseconds",
                )
            }
        },
        Some(Found::Null | Found::Unusable) => {
            return dead(
                DeadLetterReason::EventTime,
                "the event time is not a string or number",
            )
        }
    };
    if event_time_ms > now_ms.saturating_add(plan.max_future_skew_ms) {
        return dead(
            DeadLetterReason::EventTime,
            format!(
                "the event time is more than {} s in the future (epoch seconds, micro- or nanoseconds instead of milliseconds?)",
                plan.max_future_skew_ms / 1000
            ),
        );
    }

    // Decide per purpose, before any transform.
    let n = plan.outputs.len();
    let mut suppressed: Vec<Option<Suppression>> = Vec::with_capacity(n);
    let mut active: u64 = 0;
    for (i, out) in plan.outputs.iter().enumerate() {
        let s = decide(
            out,
            subject.as_deref(),
            &aliases,
            erased,
            state,
            event_time_ms,
            now_ms,
        );
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
        doc: &doc,
        actions: vec![[0; 7]; n],
        classes: vec![0; plan.class_names.len()],
        outputs: &plan.outputs,
        bufs: &mut scratch.bufs[..n],
        bits: &mut scratch.bits,
        words,
        unclassified: 0,
        detections: &mut detections,
        spans: &mut scratch.spans,
        text: &mut scratch.text,
    };
    let written = w.object(0, &plan.root.leaf, Some(&plan.root), "", active);
    let unclassified = w.unclassified;
    let (field_actions, class_occurrences) = (
        std::mem::take(&mut w.actions),
        std::mem::take(&mut w.classes),
    );
    if unclassified > 0 && plan.unclassified == Unclassified::DeadLetter {
        return dead(
            DeadLetterReason::Unclassified,
            format!("{unclassified} unclassified field(s) and the stream says `unclassified: dead_letter`"),
        );
    }

    // Key and headers are text like any other value: scanned where the
    // policy says so, then governed by the field's action per purpose.
    let key_text: Option<(&str, &Leaf)> = match rec.key {
        Some(k) if plan.key.is_classified() => match std::str::from_utf8(k) {
            Ok(s) => Some((s, &plan.key)),
            Err(_) => return dead(DeadLetterReason::Decode, "the record key is not UTF-8"),
        },
        _ => None,
    };
    let mut texts: Vec<ScannedText> = Vec::new();
    if let Some((s, leaf)) = key_text {
        texts.push(ScannedText::new(s, leaf, "$key", &mut detections));
    }
    let mut header_texts: Vec<(usize, &str, usize)> = Vec::new();
    for (name, leaf) in &plan.headers {
        for (ri, (hn, hv)) in rec.headers.iter().enumerate() {
            if hn != name || !leaf.scan {
                continue;
            }
            let Ok(s) = std::str::from_utf8(hv) else {
                return dead(
                    DeadLetterReason::Decode,
                    format!("header `{name}` is scanned but not UTF-8"),
                );
            };
            header_texts.push((ri, s, texts.len()));
            let field = format!("$headers.{name}");
            texts.push(ScannedText::new(s, leaf, &field, &mut detections));
        }
    }
    let source = source_of(rec.topic, rec.partition, rec.offset);
    let mut outcomes = Vec::with_capacity(n);
    for (i, out) in plan.outputs.iter().enumerate() {
        if let Some(s) = suppressed[i] {
            outcomes.push(Outcome::Suppressed(s));
            continue;
        }
        // Hand the buffer out and leave one sized for the next event.
        let cap = scratch.bufs[i].capacity();
        let mut value = std::mem::replace(&mut scratch.bufs[i], Vec::with_capacity(cap));
        if written & (1 << i) == 0 {
            value.clear();
            value.extend_from_slice(b"{}");
        }
        let classes = classes_header(plan, &scratch.bits[i * words..(i + 1) * words]);
        // A key that governance drops or redacts is null: a constant
        // "[REDACTED]" key would put every record on one partition and let
        // compaction keep only one of them.
        let key = key_text.and_then(|(s, leaf)| {
            let d = &leaf.decisions[i];
            if matches!(d.op, Op::Redact) {
                return None;
            }
            texts[0].govern(s, leaf, out, i, &mut scratch.text)
        });
        let mut headers: Vec<(Cow<'static, str>, Vec<u8>)> =
            Vec::with_capacity(4 + plan.headers.len());
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
                let governed = if leaf.scan {
                    header_texts
                        .iter()
                        .find(|(r, _, _)| *r == ri)
                        .and_then(|&(_, s, ti)| {
                            texts[ti].govern(s, leaf, out, i, &mut scratch.text)
                        })
                } else if matches!(d.op, Op::Keep) {
                    Some(hv.clone())
                } else {
                    let v = Value::String(String::from_utf8_lossy(hv).into_owned());
                    transform::apply(&d.op, &v).and_then(|v| scalar_bytes(&v))
                };
                if let Some(b) = governed {
                    headers.push((Cow::Owned(hn.clone()), b));
                }
            }
        }
        outcomes.push(Outcome::Emitted(Output {
            output: i,
            key,
            value,
            headers,
        }));
    }
    Verdict::Governed(Governed {
        subject,
        event_time_ms,
        outcomes,
        detections,
        unclassified_fields: unclassified,
        field_actions,
        class_occurrences,
    })
}

/// A key or header value with the spans the detectors found in it (none
/// when the field is not scanned).
struct ScannedText {
    spans: Vec<Span>,
}

impl ScannedText {
    fn new(s: &str, leaf: &Leaf, field: &str, detections: &mut Vec<Detection>) -> Self {
        let mut spans = Vec::new();
        if leaf.scan {
            classify::detect_into(s, &mut spans);
            count_detections(detections, field, &spans);
        }
        ScannedText { spans }
    }

    /// The governed text for output `p`, or `None` when it is dropped.
    fn govern(
        &self,
        s: &str,
        leaf: &Leaf,
        out: &OutputPlan,
        p: usize,
        text: &mut String,
    ) -> Option<Vec<u8>> {
        let op = &leaf.decisions[p].op;
        if matches!(op, Op::Drop) {
            return None;
        }
        let governed: &str = if self.spans.is_empty() {
            s
        } else {
            text.clear();
            rewrite_spans(s, &self.spans, out, text, |_| {});
            text.as_str()
        };
        if matches!(op, Op::Keep) {
            return Some(governed.as_bytes().to_vec());
        }
        let v = Value::String(governed.to_string());
        transform::apply(op, &v).and_then(|v| scalar_bytes(&v))
    }
}

/// Values with fewer digits cannot hold a card, IBAN or SSN.
const GUARD_MIN_DIGITS: usize = 9;

/// The findings the guard of kept values acts on.
fn guarded_span(s: &Span) -> bool {
    s.detectors
        .iter()
        .any(|d| matches!(d, Detector::Card | Detector::Iban | Detector::UsSsn))
}

/// Counts spans found in `field` by detector.
fn count_detections(detections: &mut Vec<Detection>, field: &str, spans: &[Span]) {
    for span in spans {
        match detections
            .iter_mut()
            .find(|d| &*d.field == field && d.detector == span.detector)
        {
            Some(d) => d.count += 1,
            None => detections.push(Detection {
                field: Arc::from(field),
                detector: span.detector,
                count: 1,
            }),
        }
    }
}

/// The decision of output `out` for a span: the most restrictive of the
/// decisions for every detector whose finding was merged into the span.
fn span_decision<'p>(out: &'p OutputPlan, span: &Span) -> &'p SpanDecision {
    let mut best = &out.spans[span.detector.index()];
    for d in span.detectors.iter() {
        let c = &out.spans[d.index()];
        if c.kind < best.kind {
            best = c;
        }
    }
    best
}

/// Appends `s` to `text` with every span transformed in place by the
/// purpose's span decision; `mark` gets the `custos-classes` pair of each.
fn rewrite_spans(
    s: &str,
    spans: &[Span],
    out: &OutputPlan,
    text: &mut String,
    mut mark: impl FnMut(u16),
) {
    let mut last = 0;
    for span in spans {
        text.push_str(&s[last..span.start]);
        let sd = span_decision(out, span);
        let class = span
            .detectors
            .iter()
            .find(|d| out.spans[d.index()].kind == sd.kind)
            .unwrap_or(span.detector)
            .class();
        transform::apply_span(&sd.op, &s[span.start..span.end], class, text);
        last = span.end;
        if let Some(id) = sd.pair {
            mark(id);
        }
    }
    text.push_str(&s[last..]);
}

fn decide(
    out: &OutputPlan,
    subject: Option<&str>,
    aliases: &[String],
    erased: bool,
    state: &dyn SubjectState,
    event_time_ms: i64,
    now_ms: i64,
) -> Option<Suppression> {
    if erased {
        return Some(Suppression::Erasure);
    }
    let objected = || {
        subject
            .into_iter()
            .chain(aliases.iter().map(String::as_str))
            .any(|s| state.consent(s, out.purpose) == Some(false))
    };
    match out.basis {
        Basis::Consent => match subject {
            Some(s) if state.consent(s, out.purpose) == Some(true) && !objected() => {}
            _ => return Some(Suppression::Consent),
        },
        Basis::LegitimateInterest => {
            if objected() {
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

/// A decoded value: the input bytes and their tape.
pub struct Doc<'a> {
    pub src: &'a [u8],
    pub tape: &'a Tape,
}

impl Doc<'_> {
    fn tok(&self, i: usize) -> &Tok {
        &self.tape.toks[i]
    }

    /// A scalar token as a `serde_json::Value` (numbers keep their text).
    fn scalar_value(&self, i: usize) -> Value {
        let t = self.tok(i);
        match t.kind {
            Kind::Null | Kind::Object | Kind::Array => Value::Null,
            Kind::True => Value::Bool(true),
            Kind::False => Value::Bool(false),
            Kind::Str | Kind::StrEsc => Value::String(codec::string(self.src, t).into_owned()),
            Kind::Number => serde_json::from_slice(codec::raw(self.src, t)).unwrap_or(Value::Null),
        }
    }

    fn key_is(&self, k: usize, name: &str) -> bool {
        let t = self.tok(k);
        if t.kind == Kind::Str {
            codec::raw(self.src, t) == name.as_bytes()
        } else {
            codec::string(self.src, t) == name
        }
    }
}

/// What a path finds in a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// Not there: a member is missing, or `null` stands on the way.
    Missing,
    /// The path holds `null`.
    Null,
    /// A string, number or boolean.
    Scalar(Value),
    /// Not a usable scalar: an object or array at the path, something other
    /// than an object on the way, key or header bytes that are not UTF-8, or
    /// a header given more than once with different values.
    Unusable,
}

/// Reads a scalar at a path without arrays (subject, event time).
pub fn read_path(path: &FieldPath, rec: &Record<'_>, doc: &Doc<'_>) -> Found {
    let text = |b: &[u8]| match std::str::from_utf8(b) {
        Ok(s) => Found::Scalar(Value::String(s.to_string())),
        Err(_) => Found::Unusable,
    };
    match path {
        FieldPath::Key => rec.key.map_or(Found::Missing, text),
        FieldPath::Header(h) => {
            let mut values = rec.headers.iter().filter(|(n, _)| n == h).map(|(_, v)| v);
            match values.next() {
                None => Found::Missing,
                Some(first) if values.all(|v| v == first) => text(first),
                Some(_) => Found::Unusable,
            }
        }
        FieldPath::Value(segs) => {
            let mut at = 0usize;
            for s in segs {
                match s {
                    Segment::Field(name) => match doc.tok(at).kind {
                        Kind::Object => {
                            match doc.tape.members(at).find(|(k, _)| doc.key_is(*k, name)) {
                                Some((_, v)) => at = v,
                                None => return Found::Missing,
                            }
                        }
                        Kind::Null => return Found::Missing,
                        _ => return Found::Unusable,
                    },
                    Segment::Each => return Found::Unusable,
                }
            }
            match doc.tok(at).kind {
                Kind::Null => Found::Null,
                Kind::Object | Kind::Array => Found::Unusable,
                _ => Found::Scalar(doc.scalar_value(at)),
            }
        }
    }
}

/// Epoch millis from a number, a string of digits, or an RFC 3339 string.
pub fn parse_time(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 9e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                return s.parse().ok();
            }
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|d| d.timestamp_millis())
        }
        _ => None,
    }
}

/// Walks one event once, writing every active purpose's output side by side.
struct Walker<'a> {
    doc: &'a Doc<'a>,
    actions: Vec<[u32; 7]>,
    classes: Vec<u32>,
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

/// Writes a JSON string (with quotes and escapes).
fn write_str(buf: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(buf, s);
}

/// Writes the governed form of a scalar token; false when it is dropped.
fn write_scalar(op: &Op, doc: &Doc<'_>, i: usize, buf: &mut Vec<u8>) -> bool {
    let t = doc.tok(i);
    match (op, t.kind) {
        (Op::Drop, _) => false,
        (_, Kind::Null) => {
            buf.extend_from_slice(b"null");
            true
        }
        (Op::Keep, _) => {
            buf.extend_from_slice(codec::raw_json(doc.src, t));
            true
        }
        (Op::Redact, Kind::Str | Kind::StrEsc) => {
            buf.extend_from_slice(b"\"[REDACTED]\"");
            true
        }
        (Op::Redact, _) => {
            buf.extend_from_slice(b"null");
            true
        }
        (Op::Pseudonymize(mac), kind) => {
            let p = if matches!(kind, Kind::Str | Kind::StrEsc) {
                transform::pseudonym(mac, codec::string(doc.src, t).as_bytes())
            } else {
                transform::pseudonym(mac, codec::raw(doc.src, t))
            };
            buf.push(b'"');
            buf.extend_from_slice(p.as_bytes());
            buf.push(b'"');
            true
        }
        _ => {
            let v = doc.scalar_value(i);
            match transform::apply(op, &v) {
                Some(out) => {
                    let _ = serde_json::to_writer(buf, &*out);
                    true
                }
                None => false,
            }
        }
    }
}

/// The purposes in `active` whose action for `leaf` is keep.
fn keep_mask(leaf: &Leaf, active: u64) -> u64 {
    each_bit(active)
        .filter(|&p| matches!(leaf.decisions[p].op, Op::Keep))
        .fold(0, |m, p| m | (1 << p))
}

impl Walker<'_> {
    /// Counts `n` classified values of `leaf` (for the metrics): once per
    /// class, and for `purposes` once by their winning action.
    fn count(&mut self, leaf: &Leaf, n: u32, classes: bool, purposes: u64) {
        if classes {
            for &c in &leaf.class_ids {
                if let Some(x) = self.classes.get_mut(c as usize) {
                    *x += n;
                }
            }
        }
        for p in each_bit(purposes) {
            self.actions[p][leaf.decisions[p].kind as usize] += n;
        }
    }

    fn mark_pairs(&mut self, p: usize, pairs: &[u16]) {
        for &id in pairs {
            let id = id as usize;
            self.bits[p * self.words + id / 64] |= 1 << (id % 64);
        }
    }

    /// Scalars (and empty containers) below token `i`, for unclassified counts.
    fn count_leaves(&self, i: usize) -> u32 {
        self.doc.tok(i).leaves
    }

    /// Writes token `i` under `leaf`/`node` for every purpose in `active`;
    /// returns the purposes for which something was written.
    fn value(
        &mut self,
        i: usize,
        leaf: &Leaf,
        node: Option<&Node>,
        path: &str,
        active: u64,
    ) -> u64 {
        let kind = self.doc.tok(i).kind;
        let container = matches!(kind, Kind::Object | Kind::Array);
        let structured = node.is_some_and(Node::has_structure);
        if !structured && !leaf.scan {
            if !leaf.is_classified() {
                self.unclassified += self.count_leaves(i);
                return 0;
            }
            if container {
                // Uniform subtree: copy it verbatim where the action is keep,
                // unless it holds an empty container (structure does not
                // leak: those are walked and the empty parts removed).
                let tok = self.doc.tok(i);
                let digits = codec::raw_json(self.doc.src, tok)
                    .iter()
                    .filter(|b| b.is_ascii_digit())
                    .count();
                let keep = if tok.hollow || digits >= GUARD_MIN_DIGITS {
                    0
                } else {
                    keep_mask(leaf, active)
                };
                let raw = codec::raw_json(self.doc.src, self.doc.tok(i));
                for p in each_bit(keep) {
                    self.bufs[p].extend_from_slice(raw);
                    self.mark_pairs(p, &leaf.decisions[p].pairs);
                }
                let rest = active & !keep;
                // The values inside count as fields; where other purposes
                // walk the subtree below, the classes are counted there.
                let n = self.count_leaves(i);
                self.count(leaf, n, rest == 0, keep);
                let mut written = keep;
                if rest != 0 {
                    written |= if kind == Kind::Object {
                        self.object(i, leaf, None, path, rest)
                    } else {
                        self.array(i, leaf, None, path, rest)
                    };
                }
                return written;
            }
        }
        match kind {
            Kind::Object => self.object(i, leaf, node, path, active),
            Kind::Array => self.array(i, leaf, node, path, active),
            _ => self.scalar(i, leaf, path, active),
        }
    }

    fn object(
        &mut self,
        i: usize,
        leaf: &Leaf,
        node: Option<&Node>,
        path: &str,
        active: u64,
    ) -> u64 {
        let doc = self.doc;
        let marks = self.open(active, b'{');
        let mut nonempty = 0u64;
        let mut emarks = [0usize; 64];
        // Purposes that may see members the policy does not name (see below).
        let unnamed = keep_mask(leaf, active);
        for (k, v) in doc.tape.members(i) {
            let child = node.and_then(|n| {
                if n.children.len() <= Node::LINEAR_CHILDREN {
                    n.children
                        .iter()
                        .find(|(name, _)| doc.key_is(k, name))
                        .map(|(_, c)| c)
                } else {
                    n.child(&codec::string(doc.src, doc.tok(k)))
                }
            });
            // A member the policy does not name: its key may itself be data
            // (a map keyed by card numbers), so it is emitted only where its
            // inherited class is kept. Data shaped as an object where the
            // policy expects an array keeps the element rules (`each`).
            let (cleaf, cnode, cpath, member_active) = match child {
                Some(c) => (&*c.leaf, Some(c), c.path.as_str(), active),
                None => match node.and_then(|n| n.each.as_deref()) {
                    Some(e) => (&*e.leaf, Some(e), e.path.as_str(), unnamed),
                    None => (leaf, None, path, unnamed),
                },
            };
            if !cleaf.is_classified() && !cnode.is_some_and(|n| n.has_classified) {
                self.unclassified += self.count_leaves(v);
                continue;
            }
            // Inside a scanned field a member's key is text too: one with
            // personal data in it cannot be transformed without breaking the
            // object, so the member goes only where that data is kept.
            let member_active = if child.is_none() && member_active != 0 {
                self.scan_key(k, cpath, member_active, !cleaf.scan)
            } else {
                member_active
            };
            if child.is_none() && cleaf.is_classified() {
                // Purposes that may not see an unnamed member drop it.
                let n = self.count_leaves(v);
                for p in each_bit(active & !member_active) {
                    self.actions[p][ActionKind::Drop as usize] += n;
                }
            }
            let key_json = codec::raw_json(doc.src, doc.tok(k));
            self.separate(member_active, nonempty, &mut emarks, key_json);
            let w = self.value(v, cleaf, cnode, cpath, member_active);
            self.unwind(member_active & !w, &emarks);
            nonempty |= w;
        }
        self.close(active, nonempty, &marks, b'}');
        nonempty
    }

    fn array(
        &mut self,
        i: usize,
        leaf: &Leaf,
        node: Option<&Node>,
        path: &str,
        active: u64,
    ) -> u64 {
        let doc = self.doc;
        // Data shaped as an array where the policy expects an object: the
        // object's rules apply to every element (never the parent's alone).
        let (eleaf, enode, epath) = match node.and_then(|n| n.each.as_deref()) {
            Some(e) => (&*e.leaf, Some(e), e.path.as_str()),
            None => match node.filter(|n| !n.children.is_empty()) {
                Some(n) => (leaf, Some(n), path),
                None => (leaf, None, path),
            },
        };
        if !eleaf.is_classified() && !enode.is_some_and(|n| n.has_classified) {
            self.unclassified += self.count_leaves(i);
            return 0;
        }
        let marks = self.open(active, b'[');
        let mut nonempty = 0u64;
        let mut emarks = [0usize; 64];
        for item in doc.tape.elements(i) {
            self.separate(active, nonempty, &mut emarks, b"");
            let w = self.value(item, eleaf, enode, epath, active);
            self.unwind(active & !w, &emarks);
            nonempty |= w;
        }
        self.close(active, nonempty, &marks, b']');
        nonempty
    }

    /// Opens a container in every active buffer; returns where each began.
    #[inline]
    fn open(&mut self, active: u64, bracket: u8) -> [usize; 64] {
        let mut marks = [0usize; 64];
        for p in each_bit(active) {
            marks[p] = self.bufs[p].len();
            self.bufs[p].push(bracket);
        }
        marks
    }

    /// Starts a member or element: remembers where it began, writes the comma
    /// (when something came before) and, for objects, `"key":`.
    #[inline]
    fn separate(&mut self, active: u64, nonempty: u64, emarks: &mut [usize; 64], key_json: &[u8]) {
        for p in each_bit(active) {
            let buf = &mut self.bufs[p];
            emarks[p] = buf.len();
            if nonempty & (1 << p) != 0 {
                buf.push(b',');
            }
            if !key_json.is_empty() {
                buf.extend_from_slice(key_json);
                buf.push(b':');
            }
        }
    }

    /// Takes back a member or element that governance left empty.
    #[inline]
    fn unwind(&mut self, purposes: u64, emarks: &[usize; 64]) {
        for p in each_bit(purposes) {
            self.bufs[p].truncate(emarks[p]);
        }
    }

    /// Closes a container, or removes it where nothing was written into it
    /// (structure does not leak).
    #[inline]
    fn close(&mut self, active: u64, nonempty: u64, marks: &[usize; 64], bracket: u8) {
        for p in each_bit(active) {
            if nonempty & (1 << p) != 0 {
                self.bufs[p].push(bracket);
            } else {
                self.bufs[p].truncate(marks[p]);
            }
        }
    }

    fn scalar(&mut self, i: usize, leaf: &Leaf, path: &str, active: u64) -> u64 {
        if !leaf.is_classified() {
            self.unclassified += 1;
            return 0;
        }
        self.count(leaf, 1, true, active);
        let doc = self.doc;
        if leaf.scan && matches!(doc.tok(i).kind, Kind::Str | Kind::StrEsc) {
            let s = codec::string(doc.src, doc.tok(i));
            return self.scanned(&s, leaf, path, active);
        }
        if leaf.scan && doc.tok(i).kind == Kind::Number {
            // A number in a scanned field can be a card or phone number too:
            // with findings it is governed as text.
            let raw = std::str::from_utf8(codec::raw(doc.src, doc.tok(i))).unwrap_or_default();
            classify::detect_number(raw, self.spans);
            if !self.spans.is_empty() {
                return self.govern_scanned(raw, leaf, path, active);
            }
        }
        let mut written = 0;
        let mut rest = active;
        if !leaf.scan {
            let keep = keep_mask(leaf, active);
            if keep != 0 {
                let w = self.guard(i, leaf, path, keep);
                if w != 0 {
                    written |= w;
                    rest &= !keep;
                }
            }
        }
        for p in each_bit(rest) {
            let d = &leaf.decisions[p];
            if write_scalar(&d.op, doc, i, &mut self.bufs[p]) {
                written |= 1 << p;
                self.mark_pairs(p, &d.pairs);
            }
        }
        written
    }

    /// Defence in depth for kept values of fields that are not scanned: a
    /// card number, IBAN or US SSN (the detectors with checksums or strict
    /// rules, so ordinary values are not flagged) inside a value the policy
    /// classified as something else still gets the purpose's action for its
    /// own class. Returns the purposes written (0 when nothing was found and
    /// the value is written as usual). Only values with at least 9 digits
    /// are looked at.
    fn guard(&mut self, i: usize, leaf: &Leaf, path: &str, keep: u64) -> u64 {
        let doc = self.doc;
        let tok = doc.tok(i);
        let raw = codec::raw(doc.src, tok);
        if raw.iter().filter(|b| b.is_ascii_digit()).count() < GUARD_MIN_DIGITS {
            return 0;
        }
        let text: std::borrow::Cow<'_, str> = match tok.kind {
            Kind::Str | Kind::StrEsc => codec::string(doc.src, tok),
            Kind::Number => {
                let raw = std::str::from_utf8(raw).unwrap_or_default();
                classify::detect_number(raw, self.spans);
                self.spans.retain(guarded_span);
                if self.spans.is_empty() {
                    return 0;
                }
                std::borrow::Cow::Borrowed(raw)
            }
            _ => return 0,
        };
        if matches!(tok.kind, Kind::Str | Kind::StrEsc) {
            classify::detect_into(&text, self.spans);
            self.spans.retain(guarded_span);
            if self.spans.is_empty() {
                return 0;
            }
        }
        self.govern_scanned(&text, leaf, path, keep)
    }

    /// The purposes of `active` that keep every detection in object key `k`.
    /// `guard_only`: the field is not scanned, so only the guarded kinds
    /// (card, IBAN, SSN) count, as for kept values.
    fn scan_key(&mut self, k: usize, path: &str, active: u64, guard_only: bool) -> u64 {
        let doc = self.doc;
        let raw = codec::raw(doc.src, doc.tok(k));
        if guard_only
            && raw.iter().filter(|b| b.is_ascii_digit()).count() < GUARD_MIN_DIGITS
            && raw.is_ascii()
        {
            return active;
        }
        let key = codec::string(doc.src, doc.tok(k));
        classify::detect_into(&key, self.spans);
        if guard_only {
            self.spans.retain(guarded_span);
        }
        if self.spans.is_empty() {
            return active;
        }
        count_detections(self.detections, path, self.spans);
        let spans = &*self.spans;
        each_bit(active)
            .filter(|&p| {
                spans
                    .iter()
                    .all(|sp| matches!(span_decision(&self.outputs[p], sp).op, Op::Keep))
            })
            .fold(0, |m, p| m | (1 << p))
    }

    fn scanned(&mut self, s: &str, leaf: &Leaf, path: &str, active: u64) -> u64 {
        classify::detect_into(s, self.spans);
        self.govern_scanned(s, leaf, path, active)
    }

    /// Governs scanned text whose spans are in `self.spans`.
    fn govern_scanned(&mut self, s: &str, leaf: &Leaf, path: &str, active: u64) -> u64 {
        count_detections(self.detections, path, self.spans);
        let mut written = 0;
        for p in each_bit(active) {
            let d = &leaf.decisions[p];
            match d.op {
                Op::Drop => continue,
                Op::Redact => {
                    write_str(&mut self.bufs[p], transform::REDACTED);
                    written |= 1 << p;
                    self.mark_pairs(p, &d.pairs);
                    continue;
                }
                Op::Keep if self.spans.is_empty() => {
                    write_str(&mut self.bufs[p], s);
                    written |= 1 << p;
                    self.mark_pairs(p, &d.pairs);
                    continue;
                }
                _ => {}
            }
            // Spans first, in place; then the field's own action on the result.
            self.text.clear();
            let (bits, words) = (&mut *self.bits, self.words);
            rewrite_spans(s, self.spans, &self.outputs[p], self.text, |id| {
                let id = id as usize;
                bits[p * words + id / 64] |= 1 << (id % 64);
            });
            if matches!(d.op, Op::Keep) {
                write_str(&mut self.bufs[p], self.text);
            } else {
                let text = Value::String(std::mem::take(self.text));
                if let Some(out) = transform::apply(&d.op, &text) {
                    let _ = serde_json::to_writer(&mut self.bufs[p], &*out);
                }
                if let Value::String(t) = text {
                    *self.text = t;
                }
            }
            written |= 1 << p;
            self.mark_pairs(p, &d.pairs);
        }
        written
    }
}

/// Every JSON string and number in `text` (a record key that looks like
/// JSON), in order, duplicates of object members included, without building
/// a document: the candidates a key may name a subject by. A single-quoted
/// key (`'c-1'`) gives its content. At most 64.
fn key_scalars(text: &str) -> Vec<Value> {
    const MAX: usize = 64;
    let mut out = Vec::new();
    if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        out.push(Value::String(inner.to_string()));
        return out;
    }
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() && out.len() < MAX {
        match b[i] {
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                if j >= b.len() {
                    break;
                }
                if let Ok(s) = serde_json::from_str::<String>(&text[i..=j]) {
                    out.push(Value::String(s));
                }
                i = j + 1;
            }
            b'-' | b'0'..=b'9' => {
                let j = i
                    + 1
                    + b[i + 1..]
                        .iter()
                        .take_while(|c| {
                            c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-')
                        })
                        .count();
                if let Ok(n) = text[i..j].parse::<serde_json::Number>() {
                    out.push(Value::Number(n));
                }
                i = j;
            }
            _ => i += 1,
        }
    }
    out
}
