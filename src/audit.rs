//! Audit records: one JSON record per input record, chained per
//! input partition with an HMAC so that a removed, reordered or altered record
//! is detected; verification of a chain and tracing of a subject.
//!
//! Pure: records are built from the engine's verdict and sealed with the
//! previous record's hash; no I/O, no clock (the processing time is passed
//! in). Records never contain raw personal data: the subject appears only as
//! `HMAC-SHA256(audit key, subject id)` in hex, fields only as policy paths,
//! dead letters only with their reason.
//!
//! **Chain**: `hash = hex(HMAC-SHA256(key, prev + "\n" + canonical))` where
//! `canonical` is the record without `hash`, serialized with object keys
//! sorted and no whitespace. A chain is identified by the input
//! `source.topic` and `source.partition`.
//!
//! **Replays**: at-least-once delivery re-processes the records after the
//! last committed offset when a worker dies; the next owner continues the
//! chain from the committed head (offset-commit metadata), so the replayed
//! records fork from an earlier record of the same chain. The verifier counts
//! such forks as replays, not breaks; a record whose `prev` matches no earlier
//! record of its chain is a break (a record was removed or reordered).
//!
//! **Restarts**: a record with an empty `prev` after the start of its chain
//! says that its worker did not know the head (a broker that drops
//! offset-commit metadata, as tansu 0.6.0 does). It is signed like any other
//! record, so only a holder of the key can write one; verification counts
//! restarts separately so that an auditor sees every one.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::engine::{Governed, Outcome, Suppression};
use crate::policy::plan::StreamPlan;
use crate::policy::ActionKind;

type HmacSha256 = Hmac<Sha256>;

/// The audit key (`audit.key`): signs the chain and hides subject ids.
#[derive(Clone)]
pub struct AuditKey(HmacSha256);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

impl AuditKey {
    pub fn new(bytes: &[u8]) -> AuditKey {
        AuditKey(HmacSha256::new_from_slice(bytes).expect("HMAC takes keys of any length"))
    }

    /// `hex(HMAC-SHA256(key, subject id))`: the subject as audit records show it.
    ///
    /// The same key signs the chain over `prev + "\n" + …`. A subject id with
    /// a newline could make custos publish a valid chain hash for a record an
    /// attacker wrote, so such an id is hashed as `"subject:" + id` instead
    /// (no chain input starts with `s`; no id without a newline can collide).
    pub fn subject(&self, id: &str) -> String {
        let mut m = self.0.clone();
        if id.contains('\n') {
            m.update(b"subject:");
        }
        m.update(id.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    /// A key derived for another use: `HMAC-SHA256(key, "derive\n" + label)`.
    /// No subject hash covers that text (ids with a newline are hashed as
    /// `"subject:" + id`) and no chain hash does (what follows the newline of
    /// a chain input is a record, which starts with `{`; labels do not), so
    /// no audit record can ever show the derived key.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        debug_assert!(!label.starts_with('{'));
        let mut m = self.0.clone();
        m.update(b"derive\n");
        m.update(label.as_bytes());
        m.finalize().into_bytes().into()
    }

    fn chain_hash(&self, prev: &str, canonical: &str) -> String {
        let mut m = self.0.clone();
        m.update(prev.as_bytes());
        m.update(b"\n");
        m.update(canonical.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }
}

/// A JSON string literal, escaped exactly as [`canonical`] writes it.
fn jstr(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// The per-stream part of audit records that does not change per event,
/// already in canonical form.
#[derive(Debug, Clone)]
pub struct StreamAudit {
    stream: String,
    /// The stream's name as it is.
    name: String,
    /// Per output: its purpose and topic.
    outputs: Vec<(String, String)>,
    /// Per output: the canonical outcome object when emitted.
    emitted: Vec<String>,
    /// Per output, per reason (in [`Suppression::ALL`] order): when suppressed.
    suppressed: Vec<[String; 4]>,
}

impl StreamAudit {
    /// From a stream plan: per output, the named paths it drops and the
    /// ones it transforms (with the action). These are the plan's decisions
    /// for the paths the policy names; they are listed whether or not a
    /// given event carries the field.
    pub fn new(plan: &StreamPlan) -> StreamAudit {
        let mut emitted = Vec::new();
        let mut suppressed = Vec::new();
        let mut outputs = Vec::new();
        for (i, o) in plan.outputs.iter().enumerate() {
            outputs.push((o.name.to_string(), o.topic.to_string()));
            let mut dropped = Vec::new();
            let mut transformed = Map::new();
            for (path, _, d) in plan.named_decisions(i) {
                match d.kind {
                    ActionKind::Keep => {}
                    ActionKind::Drop => dropped.push(Value::String(path.to_string())),
                    k => {
                        transformed.insert(path.to_string(), Value::String(k.name().into()));
                    }
                }
            }
            emitted.push(canonical(&json!({
                "purpose": o.name, "topic": o.topic, "status": "emitted",
                "dropped": dropped, "transformed": transformed})));
            suppressed.push(Suppression::ALL.map(|r| {
                canonical(&json!({"purpose": o.name, "status": "suppressed", "reason": r.name()}))
            }));
        }
        StreamAudit {
            stream: jstr(&plan.name),
            name: plan.name.to_string(),
            outputs,
            emitted,
            suppressed,
        }
    }
}

/// Where an input record came from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
}

impl Source<'_> {
    fn write(&self, out: &mut String) {
        use std::fmt::Write;
        let ts = self
            .timestamp
            .map_or_else(|| "null".to_string(), |t| t.to_string());
        let _ = write!(
            out,
            r#""source":{{"offset":{},"partition":{},"timestamp":{ts},"topic":{}}}"#,
            self.offset,
            self.partition,
            jstr(self.topic)
        );
    }

    /// The chain this record belongs to (also the audit record's Kafka key).
    pub fn chain(&self) -> String {
        chain_name(self.topic, self.partition)
    }
}

/// An audit chain's name, `<input topic>/<partition>`: also the audit
/// records' Kafka key and the chain head's commit-metadata owner.
pub fn chain_name(topic: &str, partition: impl std::fmt::Display) -> String {
    format!("{topic}/{partition}")
}

/// Who and when, the same for every record of a worker.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub policy: &'a str,
    pub worker: &'a str,
    pub processed_at_ms: i64,
}

/// RFC 3339 UTC with milliseconds (`2026-11-22T10:00:00.123Z`).
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An audit record in canonical form, waiting for its chain's `prev`:
/// `head` + `"prev":…,` + `tail` is the text the hash covers.
#[derive(Debug, Clone)]
pub struct Unsealed {
    head: String,
    tail: String,
}

/// The audit record of a governed event (`type: record`).
pub fn governed(
    sa: &StreamAudit,
    key: &AuditKey,
    source: &Source<'_>,
    g: &Governed,
    ctx: &Context<'_>,
) -> Unsealed {
    // Keys in sorted order: detections, outcomes, policy | prev |
    // processed_at, source, stream, subject, type, worker.
    let mut head = String::with_capacity(1024);
    head.push_str(r#"{"detections":["#);
    for (i, d) in g.detections.iter().enumerate() {
        if i > 0 {
            head.push(',');
        }
        head.push_str(r#"{"class":"#);
        head.push_str(&jstr(d.detector.class()));
        head.push_str(r#","count":"#);
        head.push_str(&d.count.to_string());
        head.push_str(r#","field":"#);
        head.push_str(&jstr(&d.field));
        head.push('}');
    }
    head.push_str(r#"],"outcomes":["#);
    for (i, o) in g.outcomes.iter().enumerate() {
        if i > 0 {
            head.push(',');
        }
        match o {
            Outcome::Emitted(_) => head.push_str(&sa.emitted[i]),
            Outcome::Suppressed(r) => {
                let slot = Suppression::ALL.iter().position(|x| x == r).unwrap_or(0);
                head.push_str(&sa.suppressed[i][slot]);
            }
        }
    }
    head.push_str(r#"],"policy":"#);
    head.push_str(&jstr(ctx.policy));
    head.push(',');
    let mut tail = String::with_capacity(320);
    tail.push_str(r#""processed_at":""#);
    tail.push_str(&rfc3339_ms(ctx.processed_at_ms));
    tail.push_str("\",");
    source.write(&mut tail);
    tail.push_str(r#","stream":"#);
    tail.push_str(&sa.stream);
    tail.push_str(r#","subject":"#);
    match g.subject.as_deref() {
        Some(s) => {
            tail.push('"');
            tail.push_str(&key.subject(s));
            tail.push('"');
        }
        None => tail.push_str("null"),
    }
    tail.push_str(r#","type":"record","worker":"#);
    tail.push_str(&jstr(ctx.worker));
    tail.push('}');
    Unsealed { head, tail }
}

/// The audit record of a dead-lettered input (`type: dead_letter`).
pub fn dead_letter(stream: &str, source: &Source<'_>, reason: &str, ctx: &Context<'_>) -> Unsealed {
    // Keys in sorted order: policy | prev | processed_at, reason, source,
    // stream, type, worker.
    let head = format!(r#"{{"policy":{},"#, jstr(ctx.policy));
    let mut tail = format!(
        r#""processed_at":"{}","reason":{},"#,
        rfc3339_ms(ctx.processed_at_ms),
        jstr(reason)
    );
    source.write(&mut tail);
    tail.push_str(&format!(
        r#","stream":{},"type":"dead_letter","worker":{}}}"#,
        jstr(stream),
        jstr(ctx.worker)
    ));
    Unsealed { head, tail }
}

/// What one input partition's records came to since its last summary
/// (`level = "summary"`): counts per purpose and outcome, dead letters per
/// reason, detections per field and class, and the input offsets counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub records: u64,
    /// Inclusive ranges of the input offsets counted, ascending.
    pub ranges: Vec<(i64, i64)>,
    /// Per plan output: records emitted.
    pub emitted: Vec<u64>,
    /// Per plan output, per reason in [`Suppression::ALL`] order.
    pub suppressed: Vec<[u64; 4]>,
    pub dead_letters: std::collections::BTreeMap<String, u64>,
    /// (field, class) → findings.
    pub detections: std::collections::BTreeMap<(String, &'static str), u64>,
}

impl Tally {
    /// Counts the record at input `offset`: its outcome per output
    /// (`None`: emitted) or the dead letter's reason, and its detections.
    pub fn add(
        &mut self,
        offset: i64,
        outcomes: impl Iterator<Item = Option<Suppression>>,
        dead_letter: Option<&str>,
        detections: &[crate::engine::Detection],
    ) {
        self.records += 1;
        match self.ranges.last_mut() {
            Some((_, end)) if *end + 1 == offset => *end = offset,
            _ => self.ranges.push((offset, offset)),
        }
        if let Some(reason) = dead_letter {
            *self.dead_letters.entry(reason.to_string()).or_default() += 1;
        }
        for (i, o) in outcomes.enumerate() {
            if self.emitted.len() <= i {
                self.emitted.resize(i + 1, 0);
                self.suppressed.resize(i + 1, [0; 4]);
            }
            match o {
                None => self.emitted[i] += 1,
                Some(r) => {
                    let slot = Suppression::ALL.iter().position(|x| *x == r).unwrap_or(0);
                    self.suppressed[i][slot] += 1;
                }
            }
        }
        for d in detections {
            *self
                .detections
                .entry((d.field.to_string(), d.detector.class()))
                .or_default() += u64::from(d.count);
        }
    }

    /// The last input offset counted.
    pub fn last(&self) -> Option<i64> {
        self.ranges.last().map(|r| r.1)
    }
}

impl StreamAudit {
    /// The summary record of one input partition (`type: summary`).
    pub fn summary(&self, topic: &str, partition: i32, t: &Tally, ctx: &Context<'_>) -> Unsealed {
        let outcomes: Vec<Value> = self
            .outputs
            .iter()
            .enumerate()
            .map(|(i, (purpose, out_topic))| {
                let suppressed: Map<String, Value> = Suppression::ALL
                    .iter()
                    .enumerate()
                    .filter_map(|(slot, r)| {
                        let n = t.suppressed.get(i).map_or(0, |s| s[slot]);
                        (n > 0).then(|| (r.name().to_string(), Value::from(n)))
                    })
                    .collect();
                json!({
                    "purpose": purpose,
                    "topic": out_topic,
                    "emitted": t.emitted.get(i).copied().unwrap_or(0),
                    "suppressed": suppressed,
                })
            })
            .collect();
        let mut m = Map::new();
        m.insert(
            "dead_letters".into(),
            t.dead_letters
                .iter()
                .map(|(r, n)| (r.clone(), Value::from(*n)))
                .collect::<Map<String, Value>>()
                .into(),
        );
        m.insert(
            "detections".into(),
            t.detections
                .iter()
                .map(|((field, class), n)| json!({"class": class, "count": n, "field": field}))
                .collect::<Vec<_>>()
                .into(),
        );
        m.insert("outcomes".into(), outcomes.into());
        m.insert("policy".into(), Value::String(ctx.policy.into()));
        m.insert(
            "processed_at".into(),
            Value::String(rfc3339_ms(ctx.processed_at_ms)),
        );
        m.insert("records".into(), Value::from(t.records));
        m.insert(
            "source".into(),
            json!({
                "topic": topic,
                "partition": partition,
                "offset": t.last().unwrap_or(-1),
                "offsets": t.ranges.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
                "timestamp": null,
            }),
        );
        m.insert("stream".into(), Value::String(self.name.clone()));
        m.insert("type".into(), Value::String("summary".into()));
        m.insert("worker".into(), Value::String(ctx.worker.into()));
        unsealed(&m)
    }
}

/// An audit record from its members (without `prev` and `hash`, which
/// sealing adds): for the rarer record types, built as JSON values.
///
/// # Panics
/// When `members` holds `prev` or `hash`, or no member sorts after `prev`
/// (every record has `type`).
pub fn unsealed(members: &Map<String, Value>) -> Unsealed {
    let mut keys: Vec<&String> = members.keys().collect();
    keys.sort();
    assert!(!members.contains_key("prev") && !members.contains_key("hash"));
    let member = |k: &String| format!("{}:{}", jstr(k), canonical(&members[k]));
    let head: Vec<String> = keys
        .iter()
        .filter(|k| k.as_str() < "prev")
        .map(|k| member(k))
        .collect();
    let tail: Vec<String> = keys
        .iter()
        .filter(|k| k.as_str() > "prev")
        .map(|k| member(k))
        .collect();
    assert!(!tail.is_empty(), "an audit record has a `type`");
    let mut h = String::from("{");
    for m in head {
        h.push_str(&m);
        h.push(',');
    }
    Unsealed {
        head: h,
        tail: format!("{}}}", tail.join(",")),
    }
}

/// The audit record of a carried-out erasure request (`type: erasure`):
/// the subjects as HMACs, never their ids; `actions` says what was done.
pub fn erasure(
    key: &AuditKey,
    source: &Source<'_>,
    subjects: &[String],
    requested_at: Option<&str>,
    actions: Value,
    ctx: &Context<'_>,
) -> Unsealed {
    let mut src = String::new();
    source.write(&mut src);
    let src: Value = serde_json::from_str(&src["\"source\":".len()..]).unwrap_or(Value::Null);
    let at = rfc3339_ms(ctx.processed_at_ms);
    let mut m = Map::new();
    m.insert("actions".into(), actions);
    m.insert("completed_at".into(), Value::String(at.clone()));
    m.insert("policy".into(), Value::String(ctx.policy.into()));
    m.insert("processed_at".into(), Value::String(at));
    m.insert(
        "requested_at".into(),
        requested_at.map_or(Value::Null, |r| Value::String(r.into())),
    );
    m.insert("source".into(), src);
    m.insert(
        "subject".into(),
        subjects
            .first()
            .map_or(Value::Null, |s| Value::String(key.subject(s))),
    );
    if subjects.len() > 1 {
        m.insert(
            "subjects".into(),
            Value::Array(
                subjects
                    .iter()
                    .map(|s| Value::String(key.subject(s)))
                    .collect(),
            ),
        );
    }
    m.insert("type".into(), Value::String("erasure".into()));
    m.insert("worker".into(), Value::String(ctx.worker.into()));
    unsealed(&m)
}

/// The chain of an output partition's retention records: apart from input
/// chains (`audit verify` holds those against the input; these follow the
/// sweeps, which commit nothing and restart with the worker).
pub fn retention_chain(topic: &str, partition: impl std::fmt::Display) -> String {
    format!("retention:{}", chain_name(topic, partition))
}

/// The audit record of a retention sweep of one output partition (`type:
/// retention`): how many keys last written before `older_than_ms` were
/// tombstoned. `position` is how far the partition had been read.
pub fn retention(
    topic: &str,
    partition: i32,
    position: i64,
    purpose: &str,
    tombstones: usize,
    older_than_ms: i64,
    ctx: &Context<'_>,
) -> Unsealed {
    let mut m = Map::new();
    m.insert(
        "older_than".into(),
        Value::String(rfc3339_ms(older_than_ms)),
    );
    m.insert("policy".into(), Value::String(ctx.policy.into()));
    m.insert(
        "processed_at".into(),
        Value::String(rfc3339_ms(ctx.processed_at_ms)),
    );
    m.insert("purpose".into(), Value::String(purpose.into()));
    m.insert(
        "source".into(),
        json!({"offset": position, "partition": partition, "timestamp": null, "topic": topic}),
    );
    m.insert("tombstones".into(), Value::from(tombstones));
    m.insert("type".into(), Value::String("retention".into()));
    m.insert("worker".into(), Value::String(ctx.worker.into()));
    unsealed(&m)
}

/// Serializes with object keys sorted and no whitespace: the form the chain
/// hash is computed over, independent of field order.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Seals a record as the successor of `prev`: returns the record's JSON
/// (canonical, with `hash` last) and its hash (the chain's next `prev`).
pub fn seal(key: &AuditKey, prev: &str, u: &Unsealed) -> (String, String) {
    let mut text = String::with_capacity(u.head.len() + u.tail.len() + 160);
    text.push_str(&u.head);
    text.push_str(r#""prev":"#);
    text.push_str(&jstr(prev));
    text.push(',');
    text.push_str(&u.tail);
    let hash = key.chain_hash(prev, &text);
    text.pop(); // the closing brace
    text.push_str(r#","hash":""#);
    text.push_str(&hash);
    text.push_str("\"}");
    (text, hash)
}

/// The chain heads of the input partitions a worker owns.
#[derive(Debug, Default)]
pub struct Chains {
    heads: HashMap<String, String>,
}

impl Chains {
    /// Continues a chain from a known head (e.g. the committed offset's metadata).
    pub fn set_head(&mut self, chain: String, head: String) {
        self.heads.insert(chain, head);
    }

    /// The chain's current head, if it has one.
    pub fn head(&self, chain: &str) -> Option<&str> {
        self.heads.get(chain).map(String::as_str)
    }

    pub fn forget(&mut self, chain: &str) {
        self.heads.remove(chain);
    }

    /// Seals `record` as the next of `chain`: returns its JSON and hash.
    pub fn append(&mut self, key: &AuditKey, chain: &str, record: &Unsealed) -> (String, String) {
        let prev = self.heads.get(chain).map_or("", String::as_str);
        let (text, hash) = seal(key, prev, record);
        self.heads.insert(chain.to_string(), hash.clone());
        (text, hash)
    }
}

/// A place in the audit stream: `partition/offset` of the audit topic, or a line number.
pub type Position = String;

/// Something wrong with a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub position: Position,
    pub reason: String,
}

/// What verification found for one chain (or for records without a chain).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainReport {
    pub chain: String,
    pub checked: u64,
    pub replays: u64,
    pub restarts: u64,
    /// The first record seen continues an earlier record (the trail's start
    /// was deleted, e.g. by the audit topic's retention).
    pub starts_mid_chain: bool,
    /// Restarts whose input offset lies beyond the record before them plus
    /// one: records before the restart may have been deleted (or the input
    /// has a gap there, such as a transaction marker). Reported, not a break.
    pub suspicious_restarts: Vec<Position>,
    /// The input offsets the chain's records cover (`source.offset`):
    /// `custos audit verify` checks that every input record in the chain's
    /// range, and below the committed offset, is among them.
    pub covered: std::collections::BTreeSet<i64>,
    pub breaks: Vec<Break>,
}

#[derive(Debug, Default)]
struct ChainState {
    report: ChainReport,
    /// The last record's hash and input offset (an unsigned record's as it
    /// claims: its successor links to it).
    last: Option<([u8; 32], i64)>,
    /// Every signed record's hash, with its input offset.
    seen: HashMap<[u8; 32], i64>,
}

/// A chain hash as custos writes it: 64 lowercase hex digits.
fn chain_hash_bytes(hash: &str) -> Option<[u8; 32]> {
    if hash.len() != 64 || hash.bytes().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    hex::decode(hash).ok()?.try_into().ok()
}

/// The record types custos writes to an audit topic.
const RECORD_TYPES: [&str; 5] = ["record", "dead_letter", "erasure", "retention", "summary"];

/// True when `bytes` are exactly what [`seal`] writes for a record whose
/// canonical form without `hash` is `canon`.
fn is_sealed_form(bytes: &[u8], canon: &str, hash: &str) -> bool {
    let Some(body) = canon.strip_suffix('}') else {
        return false;
    };
    let tail = format!(",\"hash\":\"{hash}\"}}");
    bytes.len() == body.len() + tail.len()
        && bytes.starts_with(body.as_bytes())
        && bytes.ends_with(tail.as_bytes())
}

/// The most records one summary counts: the worker writes a summary at the
/// latest when it reaches this many, and `audit verify` refuses one claiming
/// more (a bound on what one record can make the verifier hold).
pub const SUMMARY_MAX_RECORDS: i64 = 10_000;

/// A summary record's `source.offsets`: inclusive ranges, ascending, apart,
/// the last ending at `source.offset`.
fn summary_ranges(record: &Value, offset: i64) -> Result<Vec<(i64, i64)>, &'static str> {
    let bad = "summary offsets are not ascending ranges ending at source.offset";
    let list = record["source"]["offsets"].as_array().ok_or(bad)?;
    let mut out: Vec<(i64, i64)> = Vec::new();
    // As many offsets as records counted, and no more than one summary counts.
    let mut covered = 0i64;
    for r in list {
        let (Some(a), Some(b)) = (r[0].as_i64(), r[1].as_i64()) else {
            return Err(bad);
        };
        let after = out.last().is_none_or(|l| a > l.1);
        if a < 0 || a > b || !after || r.as_array().map_or(0, Vec::len) != 2 {
            return Err(bad);
        }
        covered = covered.saturating_add((b - a).saturating_add(1));
        if covered > SUMMARY_MAX_RECORDS {
            return Err(bad);
        }
        out.push((a, b));
    }
    let records = record["records"].as_i64();
    match out.last() {
        Some(l) if l.1 == offset && records == Some(covered) => Ok(out),
        _ => Err(bad),
    }
}

/// Checks audit records one by one, in the order of the audit stream.
#[derive(Debug)]
pub struct Verifier {
    key: AuditKey,
    chains: HashMap<String, ChainState>,
    order: Vec<String>,
}

impl Verifier {
    pub fn new(key: AuditKey) -> Verifier {
        Verifier {
            key,
            chains: HashMap::new(),
            order: Vec::new(),
        }
    }

    fn state(&mut self, chain: &str) -> &mut ChainState {
        if !self.chains.contains_key(chain) {
            self.order.push(chain.to_string());
            self.chains.insert(
                chain.to_string(),
                ChainState {
                    report: ChainReport {
                        chain: chain.to_string(),
                        ..ChainReport::default()
                    },
                    ..ChainState::default()
                },
            );
        }
        self.chains
            .get_mut(chain)
            .expect("inserted above when missing")
    }

    /// Checks the next record of the audit stream.
    pub fn check(&mut self, position: &str, bytes: &[u8]) {
        let broken = |reason: &str| Break {
            position: position.to_string(),
            reason: reason.to_string(),
        };
        let Ok(mut record) = serde_json::from_slice::<Value>(bytes) else {
            let b = broken("not a JSON audit record");
            self.state("(unreadable)").report.breaks.push(b);
            return;
        };
        let chain = match (
            record["source"]["topic"].as_str(),
            record["source"]["partition"].as_i64(),
        ) {
            (Some(t), Some(p)) if record["type"] == "retention" => retention_chain(t, p),
            (Some(t), Some(p)) => chain_name(t, p),
            _ => {
                let b = broken("record without source topic and partition");
                self.state("(unreadable)").report.breaks.push(b);
                return;
            }
        };
        let offset = record["source"]["offset"].as_i64().unwrap_or(-1);
        // A summary covers ranges of input offsets, ending at its offset.
        let ranges = (record["type"] == "summary").then(|| summary_ranges(&record, offset));
        // Strict reading: a record with duplicate keys can show one value to
        // this verifier and another to a first-wins reader.
        let strict = crate::codec::Tape::default().parse(bytes);
        let hash = record
            .as_object_mut()
            .and_then(|m| m.remove("hash"))
            .and_then(|h| h.as_str().map(str::to_string));
        let prev = record["prev"].as_str().map(str::to_string);
        let (Some(hash), Some(prev)) = (hash, prev) else {
            let b = broken("record without hash or prev");
            let st = self.state(&chain);
            st.report.checked += 1;
            st.report.breaks.push(b);
            return;
        };
        let canon = canonical(&record);
        let expected = self.key.chain_hash(&prev, &canon);
        let st = self.state(&chain);
        st.report.checked += 1;
        // Only a summary signed with the key counts its ranges as covered:
        // a forged one could otherwise make this verifier hold millions.
        let signed = expected == hash && strict.is_ok() && is_sealed_form(bytes, &canon, &hash);
        if expected != hash {
            st.report.breaks.push(broken(
                "hash does not match the record (altered, or signed with another key)",
            ));
        } else if strict.is_err() || !is_sealed_form(bytes, &canon, &hash) {
            // The signed content is intact but the bytes are not the ones
            // custos writes: duplicate keys, reordered or re-encoded members.
            st.report.breaks.push(broken(
                "record is not in the canonical form custos writes (duplicate keys, reordered or re-encoded)",
            ));
        }
        let known = record["type"]
            .as_str()
            .is_some_and(|t| RECORD_TYPES.contains(&t));
        if !known {
            st.report
                .breaks
                .push(broken("record of a type custos does not write"));
        }
        let (h, p) = (chain_hash_bytes(&hash), chain_hash_bytes(&prev));
        if p.is_none() && !prev.is_empty() {
            st.report
                .breaks
                .push(broken("prev is neither empty nor a chain hash"));
        }
        let low = match &ranges {
            Some(Ok(r)) => r.first().map_or(offset, |r| r.0),
            Some(Err(why)) => {
                st.report.breaks.push(broken(why));
                offset
            }
            None => offset,
        };
        // What follows counts only records that are custos's own: an
        // unsigned one is a break above; its successor is linked to the
        // hash it claims (one record altered in place is one break), but it
        // covers no offsets and no later record can replay from it.
        let Some(h) = h else {
            return;
        };
        if !(signed && known) {
            st.last = Some((h, offset));
            return;
        }
        if st.seen.contains_key(&h) {
            st.report
                .breaks
                .push(broken("the same record a second time (duplicated)"));
            return;
        }
        match st.last {
            None => st.report.starts_mid_chain = !prev.is_empty(),
            Some((last, _)) if p == Some(last) => {}
            Some((_, last_offset)) if prev.is_empty() => {
                st.report.restarts += 1;
                // A sweeper restarts its chain with every worker start.
                if low > last_offset.saturating_add(1) && !chain.starts_with("retention:") {
                    st.report.suspicious_restarts.push(position.to_string());
                }
            }
            // Not a chain hash: a break above already.
            Some(_) if p.is_none() => {}
            Some(_) if p.is_some_and(|p| st.seen.contains_key(&p)) => st.report.replays += 1,
            Some(_) => st.report.breaks.push(broken(
                "prev matches no earlier record of this chain (a record is missing or out of order)",
            )),
        }
        // A successor is a later input record than the record it follows
        // (retention sweeps may find a partition where the last one left it).
        let sweeps = chain.starts_with("retention:");
        if let Some(po) = p.and_then(|p| st.seen.get(&p)) {
            if low <= *po && !(sweeps && offset == *po) {
                st.report.breaks.push(broken(
                    "record follows a record of a later input offset (records moved)",
                ));
            }
        }
        match &ranges {
            Some(Ok(r)) => {
                for (a, b) in r {
                    st.report.covered.extend(*a..=*b);
                }
            }
            None if offset >= 0 => {
                st.report.covered.insert(offset);
            }
            _ => {}
        }
        st.seen.insert(h, offset);
        st.last = Some((h, offset));
    }

    /// One report per chain, in the order chains were first seen.
    pub fn finish(self) -> Vec<ChainReport> {
        let Verifier {
            mut chains, order, ..
        } = self;
        order
            .iter()
            .filter_map(|c| chains.remove(c).map(|s| s.report))
            .collect()
    }
}

#[cfg(test)]
mod tests;
