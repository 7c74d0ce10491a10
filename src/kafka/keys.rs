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
use crate::crypto::{Applied, DataKey, KeyRing, KeySource, SubjectHash, Unavailable};
use crate::policy::plan::Compiled;
use crate::telemetry::Metrics;

/// The data keys of every subject, fed by the keys topic.
pub struct KafkaKeys {
    topic: String,
    partitions: i32,
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

/// The partition of a subject's key records: the same for every worker.
fn partition_of(hash: &SubjectHash, partitions: i32) -> i32 {
    let n = u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]);
    (n % partitions.max(1) as u32) as i32
}

impl KafkaKeys {
    /// Reads the keys topic to its end, then follows it in a thread until
    /// `stop`. `None` when the policy encrypts nothing.
    ///
    /// # Errors
    /// The topic is missing or unreadable within `timeout`, or the producer
    /// cannot be made.
    pub fn start(
        base: &ClientConfig,
        topic: &str,
        compiled: &Compiled,
        audit: &AuditKey,
        control: &Control,
        timeout: Duration,
        metrics: &Metrics,
    ) -> Result<Option<Started>, WorkerError> {
        if !compiled.encrypts() {
            return Ok(None);
        }
        let mut pconf = base.clone();
        pconf
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0");
        let producer: FutureProducer = pconf.create()?;
        let md = producer.client().fetch_metadata(Some(topic), timeout)?;
        let partitions = match md.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                t.partitions().len() as i32
            }
            _ => return Err(WorkerError::MissingTopic(topic.to_string())),
        };
        let keys = Arc::new(KafkaKeys {
            topic: topic.to_string(),
            partitions,
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

    fn tombstone(&self, record_key: &str, hash: &SubjectHash) {
        let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic)
            .partition(partition_of(hash, self.partitions))
            .key(record_key);
        if let Err((e, _)) = self.producer.send_result(record) {
            tracing::error!(topic = %self.topic, error = %e, "keys tombstone not queued");
        }
    }

    /// Crypto-shredding: tombstones every key record of these subjects and
    /// forgets their keys.
    pub fn shred(&self, subjects: &[String]) {
        for s in subjects {
            let (records, hashes): (Vec<String>, Vec<SubjectHash>) = {
                let ring = self.ring.read().unwrap_or_else(PoisonError::into_inner);
                let records = ring.records_of(s);
                let hashes = records
                    .iter()
                    .filter_map(|r| crate::crypto::RecordKey::parse(r.as_bytes()).ok())
                    .map(|r| r.subject)
                    .collect();
                (records, hashes)
            };
            if records.is_empty() {
                continue;
            }
            for (r, h) in records.iter().zip(&hashes) {
                self.tombstone(r, h);
            }
            self.ring
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .forget(s);
            self.metrics
                .data_keys_destroyed
                .inc_by(records.len() as u64);
            tracing::info!(
                records = records.len(),
                "data keys of an erased subject destroyed"
            );
        }
        if self.producer.flush(self.timeout).is_err() {
            tracing::error!(topic = %self.topic, "keys tombstones not acknowledged in time; the next erasure read (every restart) tombstones them again");
        }
    }
}

impl KeySource for KafkaKeys {
    fn data_key(&self, kek: &str, subject: &str) -> Result<DataKey, Unavailable> {
        let hash = {
            let ring = self.ring.read().unwrap_or_else(PoisonError::into_inner);
            let hash = ring.subject_hash(kek, subject);
            if let Some(k) = ring.get(&hash) {
                return Ok(k);
            }
            if ring.is_unreadable(&hash) {
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
        let partition = partition_of(&hash, self.partitions);
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
        let key = match ring.get(&hash) {
            Some(k) => k,
            None if ring.is_unreadable(&hash) => {
                drop(ring);
                return Err(self.fail("the subject's data key that came first on the keys topic is wrapped under a KEK this worker does not have".into()));
            }
            // Destroyed meanwhile (the subject was erased): redacted.
            None => return Err(Unavailable),
        };
        drop(ring);
        if hex::encode(key.id()) != record_key.rsplit('/').next().unwrap_or_default() {
            // Another worker's candidate came first: ours is never used.
            self.tombstone(&record_key, &hash);
        }
        Ok(key)
    }
}
