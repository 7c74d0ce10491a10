//! Carrying out erasure requests: what an erasure does to data custos
//! already wrote.
//!
//! The worker's group consumes the erasure topic next to the streams, so
//! each erasure record is carried out by one worker, with the same delivery
//! guarantee as a governed event (its outputs acknowledged, or committed in
//! the transaction, before its offset moves) and an audit record in the
//! chain of its erasure-topic partition. (Every worker also *reads* the
//! whole erasure topic for the subject state, and shreds the subject's data
//! keys when it does: see `kafka::keys`.)
//!
//! For every compacted output topic whose record key is the subject's id or
//! its pseudonym (a stream whose `subject` is `$key`, or whose `$key` shares
//! a class with the subject field, and a purpose that keeps or pseudonymizes
//! the key), a tombstone with that governed key is written: compaction then
//! removes the subject's records. Keys custos cannot recompute from the id
//! (masked, generalized, encrypted, redacted, or scanned keys) get no
//! tombstone; the `erasure` audit record lists what was done.

use serde_json::{json, Value};

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::transform::{self, Op};

/// A compacted output whose record key derives from the subject.
struct Target {
    stream: String,
    purpose: String,
    topic: Arc<str>,
    /// Keep or pseudonymize: what the purpose does to the key.
    op: Op,
}

/// What erasures do beyond the subject state.
pub(super) struct Eraser {
    targets: Vec<Target>,
    /// The KEK names the policy encrypts under (data keys to shred).
    keks: Vec<String>,
}

impl Eraser {
    /// `compacted`: the output topics whose `cleanup.policy` has `compact`.
    pub(super) fn new(
        compiled: &Compiled,
        compacted: &std::collections::HashSet<String>,
    ) -> Eraser {
        let mut targets = Vec::new();
        for s in &compiled.streams {
            let key_is_subject = s.subject == Some(crate::policy::FieldPath::Key)
                || s.subject_aliases.contains(&crate::policy::FieldPath::Key);
            if !key_is_subject || s.key.scan {
                continue;
            }
            for (i, o) in s.outputs.iter().enumerate() {
                if !compacted.contains(&o.topic) {
                    continue;
                }
                let op = &s.key.decisions[i].op;
                if matches!(op, Op::Keep | Op::Pseudonymize(_)) {
                    targets.push(Target {
                        stream: s.name.clone(),
                        purpose: o.name.clone(),
                        topic: Arc::from(o.topic.as_str()),
                        op: op.clone(),
                    });
                }
            }
        }
        Eraser {
            targets,
            keks: compiled
                .keks()
                .iter()
                .map(|k| k.name().to_string())
                .collect(),
        }
    }

    /// The tombstones and the audit record for one erasure-topic record.
    /// The erasure is applied to this worker's subject state first (its
    /// follower may not have read it yet), so nothing more of the subject
    /// is written here after the tombstones.
    ///
    /// # Errors
    /// The subject's data keys could not be destroyed: the worker stops
    /// without committing the erasure record, and carries it out again on
    /// the next start.
    pub(super) fn execute(
        &self,
        msg: &BorrowedMessage<'_>,
        actx: &AuditCtx<'_>,
        keys: Option<&KafkaKeys>,
        state: &SharedState,
    ) -> Result<(Vec<OutRecord>, audit::Unsealed), WorkerError> {
        let key = msg.key().and_then(|k| std::str::from_utf8(k).ok());
        // Malformed records are read the most protective way here too.
        let _ = state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply_erasure(key, msg.payload());
        let (subjects, requested_at) = crate::state::erasure_request(key, msg.payload());
        let mut outs = Vec::new();
        let mut tombstones: Vec<Value> = Vec::new();
        for t in &self.targets {
            for s in &subjects {
                let governed = match &t.op {
                    Op::Pseudonymize(mac) => transform::pseudonym(mac, s.as_bytes()).into_bytes(),
                    _ => s.as_bytes().to_vec(),
                };
                outs.push(OutRecord {
                    audit: false,
                    topic: t.topic.clone(),
                    key: Some(governed),
                    payload: None,
                    headers: vec![(
                        Cow::Borrowed("custos-source"),
                        Some(
                            engine::source_of(msg.topic(), msg.partition(), msg.offset())
                                .into_bytes(),
                        ),
                    )],
                    timestamp: None,
                });
            }
            if !subjects.is_empty() {
                tombstones.push(json!({
                    "stream": t.stream,
                    "purpose": t.purpose,
                    "topic": &*t.topic,
                    "count": subjects.len(),
                }));
            }
        }
        // Every worker shreds on reading the erasure; this one makes sure
        // before it records that it is done.
        let data_keys = match keys {
            Some(k) if !subjects.is_empty() => {
                let n = k.shred(&subjects).map_err(WorkerError::Keys)?;
                json!({ "destroyed": true, "keks": self.keks, "records": n })
            }
            _ => json!({ "destroyed": false, "keks": [] }),
        };
        let mut actions = serde_json::Map::new();
        actions.insert("data_keys".into(), data_keys);
        actions.insert("tombstones".into(), Value::Array(tombstones));
        if subjects.is_empty() {
            actions.insert(
                "note".into(),
                Value::String(
                    match msg.payload() {
                        None => "a tombstone on the erasure topic: an erasure is permanent, nothing is undone",
                        Some(_) => "the record names no subject",
                    }
                    .into(),
                ),
            );
        }
        let record = audit::erasure(
            actx.key,
            &audit::Source {
                topic: msg.topic(),
                partition: msg.partition(),
                offset: msg.offset(),
                timestamp: msg.timestamp().to_millis(),
            },
            &subjects,
            requested_at.as_deref(),
            Value::Object(actions),
            &audit::Context {
                policy: actx.policy,
                worker: actx.worker,
                processed_at_ms: now_ms(),
            },
        );
        Ok((outs, record))
    }
}
