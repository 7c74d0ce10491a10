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
pub use crate::codec::Tape;
use crate::codec::{self, Kind, Tok};
use crate::policy::plan::{Leaf, Node, OutputPlan, SpanDecision, StreamPlan};
use crate::policy::{ActionKind, Basis, FieldPath, Segment, Unclassified};
use crate::state::{canonical_subject, SubjectState};
use crate::transform::{self, Op};

mod decide;
mod headers;
mod read;
mod walk;

use self::decide::*;
use self::headers::*;
use self::read::key_scalars;
pub use self::read::{parse_time, read_path, Doc, Found};
use self::walk::*;

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
    /// Per output of the last value governed from a decoded tape: the tape
    /// of the output's JSON ([`Scratch::output_tape`]).
    out_tapes: Vec<Tape>,
    bufs: Vec<Vec<u8>>,
    bits: Vec<u64>,
    spans: Vec<Span>,
    text: String,
    path: Vec<u32>,
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

impl Scratch {
    /// The tape of output `output`'s JSON, built while the walk wrote it,
    /// for a value governed from a decoder's tape (an encoder into another
    /// format reads it instead of parsing the JSON; it spans only that very
    /// JSON, see [`Tape::spans`]).
    pub fn output_tape(&self, output: usize) -> Option<&Tape> {
        self.out_tapes.get(output)
    }

    /// The tape a decoder of another format fills for the JSON it writes
    /// (Avro: [`crate::avro::value::decode_limited`]), which
    /// [`govern_with_limits`] then governs without parsing the text again.
    pub fn decoded_tape(&mut self) -> &mut Tape {
        &mut self.tape
    }
}

/// [`govern`] with explicit size limits. A value whose tape a decoder of
/// another format left in [`Scratch::decoded_tape`] (the tape of this very
/// text: [`Tape::spans`]) is governed from that tape, and each output's tape
/// is built as the output is written ([`Scratch::output_tape`]); any other
/// value is parsed as JSON.
pub fn govern_with_limits(
    plan: &StreamPlan,
    policy_id: &str,
    rec: &Record<'_>,
    state: &dyn SubjectState,
    now_ms: i64,
    scratch: &mut Scratch,
    limits: Limits,
) -> Verdict {
    let decoded = scratch.tape.spans(rec.value);
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
    let verdict = govern_tape(
        plan, policy_id, rec, state, now_ms, scratch, &mut tape, decoded,
    );
    // Never reused for another value by mistake.
    tape.begin();
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

#[allow(clippy::too_many_arguments)]
fn govern_tape(
    plan: &StreamPlan,
    policy_id: &str,
    rec: &Record<'_>,
    state: &dyn SubjectState,
    now_ms: i64,
    scratch: &mut Scratch,
    tape: &mut Tape,
    decoded: bool,
) -> Verdict {
    if !decoded {
        if let Err(e) = tape.parse(rec.value) {
            return dead(DeadLetterReason::Decode, format!("not valid JSON: {e}"));
        }
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

    let source = source_of(rec.topic, rec.partition, rec.offset);
    let sealer = Sealer::new(&source, subject.as_deref(), state);

    let words = plan.pairs.len().div_ceil(64).max(1);
    scratch.bufs.resize_with(n, Vec::new);
    scratch.bits.clear();
    scratch.bits.resize(n * words, 0);
    for b in &mut scratch.bufs[..n] {
        b.clear();
    }
    // Outputs of a decoded value are encoded back: their tapes are built
    // as they are written.
    scratch.out_tapes.resize_with(n, Tape::default);
    for t in &mut scratch.out_tapes {
        t.begin();
    }
    let mut detections: Vec<Detection> = Vec::new();
    scratch.path.clear();
    let mut w = Walker {
        sealer: &sealer,
        path: &mut scratch.path,
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
        tapes: decoded.then(|| &mut scratch.out_tapes[..n]),
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
            if decoded {
                let t = &mut scratch.out_tapes[i];
                t.begin();
                let _ = t.open(Kind::Object, 0);
                let _ = t.close(&value, value.len(), false);
            }
        }
        if decoded {
            scratch.out_tapes[i].finish(&value);
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
            let path = [crate::crypto::Seg::Key];
            let enc = Enc {
                sealer: &sealer,
                purpose: out.name.as_str(),
                path: &path,
            };
            let key = texts[0].govern(s, leaf, out, i, &mut scratch.text, enc)?;
            // Encryption without a key redacts: a null key, as for redact.
            (key != transform::REDACTED.as_bytes()
                || !matches!(leaf.decisions[i].op, Op::Encrypt(_)))
            .then_some(key)
        });
        let headers = output_headers(
            plan,
            policy_id,
            i,
            classes,
            &source,
            rec,
            &header_texts,
            &texts,
            &mut scratch.text,
            &sealer,
        );
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
