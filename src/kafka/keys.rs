//! The keys topic: every subject's data key for `encrypt`, wrapped under
//! its KEK ([`crate::crypto`] has the record format).
//!
//! Every worker reads the whole topic (no group, nothing committed) to its
//! end before it governs anything, then follows it. **Agreement**: a worker
//! that needs a key for a subject without one produces a candidate record
//! (its own record key, so compaction keeps every candidate), waits until
//! its reader has read past it, and uses whichever key of that subject the
//! topic holds first (the partition's order is the same for every reader,
//! and the subject's records all go to one partition). A worker whose
//! candidate lost tombstones it. Keys are durable (acknowledged by every
//! in-sync replica, outside any transaction) before anything is encrypted
//! under them.
//!
//! **Crypto-shredding**: when an erasure is read, every worker tombstones
//! every key record the subject has (winner and losers) and forgets them;
//! the tombstones are idempotent, so several workers doing it is harmless,
//! and a key a worker made while the erasure was on its way is shredded by
//! that worker when it reads the erasure (it read its own key back before
//! using it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;

use super::subjects::catch_up;
use super::worker::Control;
use super::{now_ms, WorkerError};
use crate::audit::AuditKey;
use crate::crypto::{Applied, DataKey, KeyRing, KeySource, Unavailable};
use crate::policy::plan::Compiled;
use crate::telemetry::Metrics;

/// The data keys of every subject, fed by the keys topic.
pub struct KafkaKeys {
    topic: String,
    ring: RwLock<KeyRing>,
    /// Per partition: the offset after the last one read.
    read: Mutex<HashMap<i32, i64>>,
    progress: Condvar,
    producer: FutureProducer,
    /// Why keys could not be had; the worker stops on it.
    failed: Mutex<Option<String>>,
    timeout: Duration,
    metrics: Metrics,
}

impl std::fmt::Debug for KafkaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaKeys")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// The keys, and the thread that follows the keys topic.
pub type Started = (Arc<KafkaKeys>, JoinHandle<()>);

impl KafkaKeys {
    /// Reads the keys topic to its end, then follows it in a thread until
    /// `stop`. `None` when the policy encrypts nothing and there is no keys
    /// topic (with one, its keys are followed so that erasures still shred
    /// them after the policy stopped encrypting).
    ///
    /// # Errors
    /// The topic is missing (while the policy encrypts), has more than one
    /// partition, holds keys whose subjects are hashed under another audit
    /// key, or is unreadable within `timeout`; the producer cannot be made.
    pub fn start(
        base: &ClientConfig,
        topic: &str,
        compiled: &Compiled,
        audit: &AuditKey,
        control: &Control,
        timeout: Duration,
        metrics: &Metrics,
    ) -> Result<Option<Started>, WorkerError> {
        let mut pconf = base.clone();
        pconf
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0");
        let producer: FutureProducer = pconf.create()?;
        // All topics (asking for one could create it on a broker that
        // auto-creates topics).
        let md = producer.client().fetch_metadata(None, timeout)?;
        let partitions = match md.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => t.partitions().len(),
            _ if !compiled.encrypts() => return Ok(None),
            _ => return Err(WorkerError::MissingTopic(topic.to_string())),
        };
        if partitions != 1 {
            return Err(WorkerError::Keys(format!("the keys topic `{topic}` has {partitions} partitions; it needs exactly one (the agreement on each subject's key is the order of one partition): recreate it with one partition")));
        }
        let keys = Arc::new(KafkaKeys {
            topic: topic.to_string(),
            ring: RwLock::new(KeyRing::new(compiled.keks(), audit)),
            read: Mutex::new(HashMap::new()),
            progress: Condvar::new(),
            producer,
            failed: Mutex::new(None),
            timeout,
            metrics: metrics.clone(),
        });
        let stop: Arc<AtomicBool> = control.stop.clone();
        let consumer = catch_up(base, topic, &stop, timeout, metrics, |m| {
            keys.read_record(m)
        })?;
        let Some(consumer) = consumer else {
            return Ok(None); // stopped while starting
        };
        let foreign = keys
            .ring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .foreign_subjects;
        if foreign > 0 {
            return Err(WorkerError::Keys(format!("{foreign} key(s) on `{topic}` name their subjects under another audit key, so erasures could not find them: run with the audit key that made them (the audit key cannot be changed while the keys topic holds keys)")));
        }
        let n = keys
            .ring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        keys.metrics.data_keys.set(n as i64);
        tracing::info!(topic, data_keys = n, "keys topic read to its end");
        let k = keys.clone();
        let health = control.health.clone();
        let handle = std::thread::Builder::new()
            .name("custos-keys".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(m)) => k.read_record(&m),
                        Some(Err(KafkaError::PartitionEOF(p))) => {
                            let pos = consumer.position().ok().and_then(|tpl| {
                                tpl.find_partition(&k.topic, p)
                                    .and_then(|e| e.offset().to_raw())
                            });
                            if let Some(pos) = pos {
                                k.advance(p, pos);
                            }
                        }
                        None => {}
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "keys topic reader");
                            if matches!(
                                e.rdkafka_error_code(),
                                Some(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition)
                            ) {
                                health.set_state_lost();
                            }
                        }
                    }
                }
            })
            .map_err(|e| WorkerError::Admin {
                topic: topic.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Some((keys, handle)))
    }

    fn advance(&self, partition: i32, next: i64) {
        let mut r = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        let e = r.entry(partition).or_insert(0);
        if next > *e {
            *e = next;
            self.progress.notify_all();
        }
    }

    fn read_record(&self, m: &impl Message) {
        if let Some(key) = m.key() {
            let applied = self
                .ring
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .apply(key, m.payload());
            match applied {
                Ok(Applied::Erased) => {
                    // A key of a subject erased while this worker ran.
                    if let Ok(text) = std::str::from_utf8(key) {
                        let _ = self.queue_tombstone(text);
                    }
                }
                Ok(Applied::Won | Applied::Destroyed) => {
                    let n = self
                        .ring
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .len();
                    self.metrics.data_keys.set(n as i64);
                }
                Ok(Applied::Lost) => {}
                // Coordinates only: a record that is not custos's, or a KEK
                // that changed without its keys being re-wrapped.
                Err(e) => tracing::warn!(
                    topic = m.topic(),
                    partition = m.partition(),
                    offset = m.offset(),
                    error = %e,
                    "keys record skipped"
                ),
            }
        }
        self.advance(m.partition(), m.offset() + 1);
    }

    /// Why the worker must stop, once keys could not be had.
    pub fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn fail(&self, why: String) -> Unavailable {
        tracing::error!(topic = %self.topic, reason = %why, "no data key could be had");
        let mut f = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        f.get_or_insert(why);
        Unavailable
    }

    /// Queues a tombstone for a keys record; the future says when it is
    /// acknowledged.
    fn queue_tombstone(
        &self,
        record_key: &str,
    ) -> Result<rdkafka::producer::DeliveryFuture, String> {
        let record: FutureRecord<'_, str, [u8]> =
            FutureRecord::to(&self.topic).partition(0).key(record_key);
        self.producer
            .send_result(record)
            .map_err(|(e, _)| format!("a keys tombstone could not be queued: {e}"))
    }

    /// Crypto-shredding: tombstones every key record of these subjects,
    /// waits until every tombstone is acknowledged, then forgets their keys
    /// (and remembers them as erased: a key of theirs read later is
    /// tombstoned too). Returns how many records were tombstoned.
    ///
    /// # Errors
    /// A tombstone not queued or not acknowledged: nothing is forgotten, and
    /// the caller must not report the keys destroyed.
    pub fn shred(&self, subjects: &[String]) -> Result<usize, String> {
        let mut pending = Vec::new();
        for s in subjects {
            let records = self
                .ring
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .records_of(s);
            for r in &records {
                pending.push(self.queue_tombstone(r)?);
            }
        }
        let n = pending.len();
        for f in pending {
            match futures::executor::block_on(f) {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    return Err(format!("a keys tombstone was not acknowledged: {e}"))
                }
                Err(_) => return Err("the keys producer went away".into()),
            }
        }
        let mut ring = self.ring.write().unwrap_or_else(PoisonError::into_inner);
        for s in subjects {
            ring.forget(s);
        }
        drop(ring);
        if n > 0 {
            self.metrics.data_keys_destroyed.inc_by(n as u64);
            tracing::info!(records = n, "data keys of erased subjects destroyed");
        }
        Ok(n)
    }
}

impl KeySource for KafkaKeys {
    fn data_key(&self, kek: &str, subject: &str) -> Result<DataKey, Unavailable> {
        let hash = {
            let ring = self.ring.read().unwrap_or_else(PoisonError::into_inner);
            let hash = ring.subject_hash(kek, subject);
            if let Some(k) = ring.get(kek, &hash) {
                return Ok(k);
            }
            if ring.is_unreadable(kek, &hash) {
                drop(ring);
                return Err(self.fail("a subject's data key on the keys topic is wrapped under a KEK this worker does not have (see the `keys record skipped` warning for its fingerprint): give the worker that KEK, or finish the rotation with `custos keys rotate`".into()));
            }
            hash
        };
        if self.failure().is_some() {
            return Err(Unavailable);
        }
        let (record_key, value) = self
            .ring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .candidate(kek, hash, &crate::audit::rfc3339_ms(now_ms()));
        let partition = 0;
        let record = FutureRecord::to(&self.topic)
            .partition(partition)
            .key(record_key.as_str())
            .payload(value.as_slice());
        let delivered = match self.producer.send_result(record) {
            Ok(f) => futures::executor::block_on(f),
            Err((e, _)) => {
                return Err(self.fail(format!("a new data key could not be queued: {e}")))
            }
        };
        let offset = match delivered {
            Ok(Ok(d)) => d.offset,
            Ok(Err((e, _))) => {
                return Err(self.fail(format!("a new data key was not acknowledged: {e}")))
            }
            Err(_) => return Err(self.fail("the keys producer went away".into())),
        };
        self.metrics.data_keys_created.inc();
        // Wait for the reader to pass our record: the topic's first key of
        // the subject is then in the ring.
        let deadline = Instant::now() + self.timeout;
        let mut r = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        while r.get(&partition).copied().unwrap_or(0) <= offset {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(r);
                return Err(self.fail(format!(
                    "the keys topic reader did not read back a new data key within {} s",
                    self.timeout.as_secs()
                )));
            }
            r = self
                .progress
                .wait_timeout(r, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(r);
        let ring = self.ring.read().unwrap_or_else(PoisonError::into_inner);
        let key = match ring.get(kek, &hash) {
            Some(k) => k,
            None if ring.is_unreadable(kek, &hash) => {
                drop(ring);
                return Err(self.fail("the subject's data key that came first on the keys topic is wrapped under a KEK this worker does not have".into()));
            }
            // Destroyed meanwhile (the subject was erased): redacted.
            None => return Err(Unavailable),
        };
        drop(ring);
        if hex::encode(key.id()) != record_key.rsplit('/').next().unwrap_or_default() {
            // Another worker's candidate came first: ours is never used, and
            // is tombstoned before anything goes on (a loser left behind
            // could come first after a rotation re-writes the topic).
            let acked = self
                .queue_tombstone(&record_key)
                .map(futures::executor::block_on);
            if !matches!(acked, Ok(Ok(Ok(_)))) {
                tracing::warn!(topic = %self.topic, "a losing data key candidate was not tombstoned; it is never used");
            }
        }
        Ok(key)
    }
}
