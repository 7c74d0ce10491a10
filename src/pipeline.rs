//! One input record in, everything custos writes for it out (pure: no I/O,
//! no clock, no metrics registry).
//!
//! `custos run` and `custos apply` both call [`process`]; they differ only
//! in where the results go (the producer, or NDJSON files). What comes out:
//! the outputs per purpose or the dead letter (tombstones and header names
//! that are not UTF-8 included, with one wording), the audit record (not yet
//! sealed into its chain: the caller owns the chain) and what the metrics
//! count ([`Processed::deltas`]).

use std::borrow::Cow;

use crate::audit::{self, AuditKey, StreamAudit};
use crate::engine::{
    self, DeadLetterReason, Governed, Outcome, Record, Scratch, Suppression, Verdict,
};
use crate::policy::plan::StreamPlan;
use crate::state::SubjectState;

/// A record's headers as they arrive: names as bytes (a producer may send
/// names that are not UTF-8), values `None` where the header has no value.
pub type RawHeaders = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// One input record, wherever it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp, epoch milliseconds (`None`: the broker gave none).
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
    /// `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(Vec<u8>, Option<Vec<u8>>)],
}

impl Input<'_> {
    /// `topic/partition/offset`, the `custos-source` of everything written for it.
    pub fn source(&self) -> String {
        engine::source_of(self.topic, self.partition, self.offset)
    }
}

/// What every record processed by one worker (or one `apply`) shares.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub policy: &'a str,
    pub worker: &'a str,
    pub now_ms: i64,
    pub limits: engine::Limits,
}

/// The record for the dead-letter topic: the input unchanged (a tombstone
/// stays a tombstone, a header without value stays without), except that
/// input headers named `custos-*` are not copied (they could pass for
/// custos's own), then `custos-error` and `custos-source`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterRecord {
    pub reason: DeadLetterReason,
    /// Why, in words (for logs and `apply --dead-letter`; never record content).
    pub detail: String,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Names that are not UTF-8 are written with U+FFFD (librdkafka's API
    /// takes text names); the raw record stays at `custos-source`.
    pub headers: Vec<(Cow<'static, str>, Option<Vec<u8>>)>,
}

/// What custos writes for one input record.
#[derive(Debug)]
pub enum Written {
    Governed {
        governed: Governed,
        /// The outputs' record timestamp: the input's own; without a usable
        /// one, the event time (never "now": that would restart downstream
        /// retention).
        timestamp: Option<i64>,
    },
    DeadLetter(DeadLetterRecord),
}

/// The result of [`process`].
#[derive(Debug)]
pub struct Processed {
    pub written: Written,
    /// The audit record, to be sealed as the next of its input partition's
    /// chain (`None` when the caller keeps no audit trail).
    pub audit: Option<audit::Unsealed>,
}

/// What one record adds to the metrics (everything but time).
#[derive(Debug, Clone, PartialEq)]
pub struct Deltas<'a> {
    pub dead_letter: Option<DeadLetterReason>,
    /// Per output of the plan: emitted or why suppressed (see [`Deltas::suppressions`]).
    pub outcomes: &'a [Outcome],
    pub unclassified_fields: u32,
    pub detections: &'a [engine::Detection],
    pub field_actions: &'a [[u32; 7]],
    pub class_occurrences: &'a [u32],
}

impl Deltas<'_> {
    /// Per output of the plan: `None` when emitted, else why suppressed.
    pub fn suppressions(&self) -> impl Iterator<Item = Option<Suppression>> + '_ {
        self.outcomes.iter().map(|o| match o {
            Outcome::Emitted(_) => None,
            Outcome::Suppressed(s) => Some(*s),
        })
    }
}

impl Processed {
    /// What this record adds to the metrics.
    pub fn deltas(&self) -> Deltas<'_> {
        match &self.written {
            Written::DeadLetter(d) => Deltas {
                dead_letter: Some(d.reason),
                outcomes: &[],
                unclassified_fields: 0,
                detections: &[],
                field_actions: &[],
                class_occurrences: &[],
            },
            Written::Governed { governed: g, .. } => Deltas {
                dead_letter: None,
                outcomes: &g.outcomes,
                unclassified_fields: g.unclassified_fields,
                detections: &g.detections,
                field_actions: &g.field_actions,
                class_occurrences: &g.class_occurrences,
            },
        }
    }
}

/// Headers the engine reads: UTF-8 names, missing values as empty bytes.
/// `None` when a name is not UTF-8.
fn text_headers(raw: &[(Vec<u8>, Option<Vec<u8>>)]) -> Option<Vec<(String, Vec<u8>)>> {
    raw.iter()
        .map(|(n, v)| {
            std::str::from_utf8(n)
                .ok()
                .map(|n| (n.to_string(), v.clone().unwrap_or_default()))
        })
        .collect()
}

/// Governs one input record: outputs or the dead letter, and the audit record.
pub fn process(
    plan: &StreamPlan,
    audit_with: Option<(&StreamAudit, &AuditKey)>,
    input: &Input<'_>,
    state: &dyn SubjectState,
    cx: &Context<'_>,
    scratch: &mut Scratch,
) -> Processed {
    let text = text_headers(input.headers);
    let verdict = match (input.value, &text) {
        (None, _) => dead(
            DeadLetterReason::Decode,
            "tombstone (null value) on an input topic",
        ),
        (Some(_), None) => dead(DeadLetterReason::Decode, "a header name is not UTF-8"),
        (Some(value), Some(headers)) => {
            let rec = Record {
                topic: input.topic,
                partition: input.partition,
                offset: input.offset,
                timestamp: input.timestamp,
                key: input.key,
                value,
                headers,
            };
            engine::govern_with_limits(plan, cx.policy, &rec, state, cx.now_ms, scratch, cx.limits)
        }
    };
    match verdict {
        Verdict::DeadLetter(d) => refuse(plan, input, d.reason, d.detail, cx, audit_with.is_some()),
        Verdict::Governed(g) => Processed {
            audit: audit_with.map(|(sa, key)| {
                audit::governed(sa, key, &audit_source(input), &g, &audit_context(cx))
            }),
            written: Written::Governed {
                timestamp: input
                    .timestamp
                    .filter(|t| *t >= 0)
                    .or(Some(g.event_time_ms)),
                governed: g,
            },
        },
    }
}

/// Re-encodes one output's governed JSON (output index, JSON, the tape the
/// walk built of that JSON when it could) into the stream's format.
pub type Encoder<'a> =
    dyn FnMut(usize, &[u8], Option<&engine::Tape>) -> Result<Vec<u8>, String> + 'a;

/// Governs a record whose value was decoded from another format (Avro)
/// into the JSON the engine governs: `decoded` is that JSON (its tape in
/// [`Scratch::decoded_tape`], as the decoder left it), or why the
/// value did not decode (`schema`, or `too_large` for a datum whose JSON
/// would pass the record size limit). Each emitted output's
/// JSON is then re-encoded by `encode(output index, json)`; an output that
/// does not fit makes the whole record a `schema` dead letter (nothing is
/// written half). Dead letters carry the input value as it arrived.
#[allow(clippy::too_many_arguments)]
pub fn process_decoded(
    plan: &StreamPlan,
    audit_with: Option<(&StreamAudit, &AuditKey)>,
    input: &Input<'_>,
    decoded: Result<&[u8], (DeadLetterReason, String)>,
    state: &dyn SubjectState,
    cx: &Context<'_>,
    scratch: &mut Scratch,
    encode: &mut Encoder<'_>,
) -> Processed {
    let processed = (|| {
        let json = match (input.value, decoded) {
            (None, _) => return process(plan, audit_with, input, state, cx, scratch),
            (Some(_), Err((reason, why))) => {
                return refuse(plan, input, reason, why, cx, audit_with.is_some())
            }
            (Some(_), Ok(json)) => json,
        };
        let as_json = Input {
            value: Some(json),
            ..*input
        };
        let mut processed = process(plan, audit_with, &as_json, state, cx, scratch);
        match &mut processed.written {
            Written::DeadLetter(d) => d.value = input.value.map(<[u8]>::to_vec),
            Written::Governed { governed, .. } => {
                for o in &mut governed.outcomes {
                    if let Outcome::Emitted(out) = o {
                        let tape = scratch
                            .output_tape(out.output)
                            .filter(|t| t.spans(&out.value));
                        match encode(out.output, &out.value, tape) {
                            Ok(v) => out.value = v,
                            Err(why) => {
                                let purpose =
                                    plan.outputs.get(out.output).map_or("", |p| p.name.as_str());
                                return refuse(
                                plan,
                                input,
                                DeadLetterReason::Schema,
                                format!("the output for purpose `{purpose}` does not fit its derived schema: {why}"),
                                cx,
                                audit_with.is_some(),
                            );
                            }
                        }
                    }
                }
            }
        }
        processed
    })();
    // Governed, refused or not decoded: the tape is never left behind to be
    // taken for another value's.
    scratch.decoded_tape().begin();
    processed
}

/// Dead-letters a record without governing it: what [`process`] does for a
/// record the engine refuses, and what `apply` does for a line that is not
/// a record at all (not an envelope, too long to read).
pub fn refuse(
    plan: &StreamPlan,
    input: &Input<'_>,
    reason: DeadLetterReason,
    detail: String,
    cx: &Context<'_>,
    audited: bool,
) -> Processed {
    let mut headers: Vec<(Cow<'static, str>, Option<Vec<u8>>)> = input
        .headers
        .iter()
        .map(|(k, v)| {
            (
                Cow::Owned(String::from_utf8_lossy(k).into_owned()),
                v.clone(),
            )
        })
        .filter(|(k, _)| !engine::is_custos_header(k))
        .collect();
    headers.push((
        Cow::Borrowed("custos-error"),
        Some(reason.code().as_bytes().to_vec()),
    ));
    headers.push((
        Cow::Borrowed("custos-source"),
        Some(input.source().into_bytes()),
    ));
    Processed {
        audit: audited.then(|| {
            audit::dead_letter(
                &plan.name,
                &audit_source(input),
                reason.code(),
                &audit_context(cx),
            )
        }),
        written: Written::DeadLetter(DeadLetterRecord {
            reason,
            detail,
            key: input.key.map(<[u8]>::to_vec),
            value: input.value.map(<[u8]>::to_vec),
            headers,
        }),
    }
}

fn audit_source<'a>(input: &Input<'a>) -> audit::Source<'a> {
    audit::Source {
        topic: input.topic,
        partition: input.partition,
        offset: input.offset,
        timestamp: input.timestamp,
    }
}

fn audit_context<'a>(cx: &Context<'a>) -> audit::Context<'a> {
    audit::Context {
        policy: cx.policy,
        worker: cx.worker,
        processed_at_ms: cx.now_ms,
    }
}

fn dead(reason: DeadLetterReason, detail: &str) -> Verdict {
    Verdict::DeadLetter(engine::DeadLetter {
        reason,
        detail: detail.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{self, keys::Keys, plan};
    use crate::state::MemoryState;

    const POLICY: &str = r#"
version: 1
name: pipe
keys: { k: { env: K } }
purposes:
  analytics:
    basis: legitimate_interest
    retention: 30d
    rules:
      - { classes: [internal], action: keep }
streams:
  events:
    topic: in
    subject: user
    fields:
      user: pii.identifier.customer_id
      n: internal
    outputs: { analytics: out.analytics }
"#;

    fn run(input: &Input<'_>) -> Processed {
        let p = policy::load(POLICY, "p.yaml").unwrap();
        let c = plan::compile(
            std::sync::Arc::new(p),
            &Keys::from_pairs([("k", b"0123456789abcdef".to_vec())]),
        )
        .unwrap();
        let plan = &c.streams[0];
        let state = MemoryState::default();
        let cx = Context {
            policy: "pipe@0",
            worker: "w",
            now_ms: 1_795_392_000_000,
            limits: engine::Limits::default(),
        };
        process(
            plan,
            Some((&StreamAudit::new(plan), &AuditKey::new(b"audit"))),
            input,
            &state,
            &cx,
            &mut Scratch::default(),
        )
    }

    fn input<'a>(value: Option<&'a [u8]>, headers: &'a [(Vec<u8>, Option<Vec<u8>>)]) -> Input<'a> {
        Input {
            topic: "in",
            partition: 2,
            offset: 7,
            timestamp: Some(1_795_391_000_000),
            key: Some(b"k-1"),
            value,
            headers,
        }
    }

    fn header<'a>(d: &'a DeadLetterRecord, name: &str) -> Vec<Option<&'a [u8]>> {
        d.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_deref())
            .collect()
    }

    #[test]
    fn a_tombstone_is_dead_lettered_as_a_tombstone_with_its_headers() {
        let h = vec![
            (b"trace".to_vec(), None),
            (b"custos-source".to_vec(), Some(b"forged".to_vec())),
        ];
        let p = run(&input(None, &h));
        let Written::DeadLetter(d) = &p.written else {
            panic!("{:?}", p.written)
        };
        assert_eq!(d.reason, DeadLetterReason::Decode);
        assert!(d.detail.contains("tombstone"), "{}", d.detail);
        assert_eq!(
            (d.value.as_deref(), d.key.as_deref()),
            (None, Some(&b"k-1"[..]))
        );
        assert_eq!(header(d, "trace"), vec![None]);
        assert_eq!(header(d, "custos-source"), vec![Some(&b"in/2/7"[..])]);
        assert_eq!(header(d, "custos-error"), vec![Some(&b"decode"[..])]);
        assert_eq!(p.deltas().dead_letter, Some(DeadLetterReason::Decode));
        assert!(format!("{:?}", p.audit).contains("dead_letter"));
    }

    #[test]
    fn a_header_name_that_is_not_utf8_dead_letters_the_record() {
        let h = vec![(vec![0xff, b'x'], Some(b"v".to_vec()))];
        let p = run(&input(Some(br#"{"user":"u","n":1}"#), &h));
        let Written::DeadLetter(d) = &p.written else {
            panic!("{:?}", p.written)
        };
        assert!(d.detail.contains("UTF-8"));
        assert_eq!(header(d, "\u{fffd}x"), vec![Some(&b"v"[..])]);
    }

    #[test]
    fn a_governed_record_keeps_its_time_or_takes_the_event_time() {
        let p = run(&input(Some(br#"{"user":"u","n":1}"#), &[]));
        let Written::Governed {
            governed,
            timestamp,
        } = &p.written
        else {
            panic!("{:?}", p.written)
        };
        assert_eq!(*timestamp, Some(1_795_391_000_000));
        assert_eq!(governed.outcomes.len(), 1);
        assert_eq!(p.deltas().suppressions().collect::<Vec<_>>(), vec![None]);
        assert_eq!(p.deltas().class_occurrences.iter().sum::<u32>(), 2);
        // A negative broker timestamp is no time at all: without an event
        // time the record's age is unknown.
        let mut i = input(Some(br#"{"user":"u","n":1}"#), &[]);
        i.timestamp = Some(-1);
        assert_eq!(
            run(&i).deltas().dead_letter,
            Some(DeadLetterReason::EventTime)
        );
    }
}
