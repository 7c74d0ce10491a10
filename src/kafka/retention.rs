//! Retention tombstones for compacted output topics: once an output key's
//! last write is older than its purpose's retention, a tombstone removes it.
//!
//! **The schedule is rebuilt from the outputs**, not kept on a topic of its
//! own: a compacted output topic already holds (about) one record per key,
//! with its timestamp, so reading it from its beginning gives every key's
//! last write; a schedule topic would double every output write to keep a
//! copy of what the output topic holds anyway. It survives restarts and
//! rebalances for the same reason: it is the topic. Memory: one entry per
//! live key (a 128-bit keyed hash, the timestamp, and the key, which the
//! tombstone needs).
//!
//! The worker group shares the compacted outputs' partitions in a group of
//! its own (`<group_id>-retention`, nothing committed: every assignment is
//! read from the beginning); a partition is swept only once it has been
//! read to its end (the high watermark at assignment reached and the end of
//! partition reported: a broker that misreports one of them makes custos
//! wait, never tombstone a key whose newer record it has not read).
//! Tombstones are written to the key's own partition with `acks=all`;
//! each sweep that wrote any writes one `retention` audit record per
//! partition, in the chain `<output topic>/<partition>`.
//!
//! A record the worker writes for a key in the instant between a sweep's
//! decision and its tombstone is removed with it by compaction; the key's
//! next write restores it. (Kafka has no conditional write to prevent it.)

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use siphasher::sip128::{Hasher128, SipHasher13};

use super::subjects::Quiet;
use super::WorkerError;
use crate::audit::{self, AuditKey, Chains};
use crate::policy::plan::Compiled;
use crate::telemetry::Metrics;

/// The time the sweeper reads (injectable for tests).
#[derive(Clone)]
pub struct Clock(pub Arc<dyn Fn() -> i64 + Send + Sync>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock(..)")
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock(Arc::new(super::now_ms))
    }
}

/// One partition's keys with their last write.
#[derive(Default)]
pub struct Schedule {
    hash_keys: (u64, u64),
    entries: HashMap<u128, (i64, Box<[u8]>)>,
}

impl Schedule {
    /// A schedule hashing keys under a key drawn at random (so a hostile key
    /// cannot be made to collide with another).
    pub fn new() -> Schedule {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).expect("the operating system's random generator failed");
        Schedule {
            hash_keys: (
                u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
                u64::from_le_bytes(b[8..].try_into().unwrap_or_default()),
            ),
            entries: HashMap::new(),
        }
    }

    fn hash(&self, key: &[u8]) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.hash_keys.0, self.hash_keys.1);
        h.write(key);
        h.finish128().as_u128()
    }

    /// A record read from the topic, in order: a tombstone forgets the key;
    /// a record sets its last write (records without a timestamp count as
    /// written at `read_at`).
    pub fn read(&mut self, key: &[u8], timestamp: Option<i64>, tombstone: bool, read_at: i64) {
        let h = self.hash(key);
        if tombstone {
            self.entries.remove(&h);
        } else {
            self.entries
                .insert(h, (timestamp.unwrap_or(read_at), key.into()));
        }
    }

    /// Removes and returns the keys last written before `cutoff`, with
    /// their last write (to put one back whose tombstone failed).
    pub fn due(&mut self, cutoff: i64) -> Vec<(Box<[u8]>, i64)> {
        let mut out = Vec::new();
        self.entries.retain(|_, (ts, key)| {
            if *ts < cutoff {
                out.push((std::mem::take(key), *ts));
                false
            } else {
                true
            }
        });
        out
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A compacted output with its purpose and retention.
#[derive(Debug, Clone)]
pub struct Target {
    pub topic: String,
    pub purpose: String,
    pub retention_ms: i64,
}

/// The compacted outputs of a policy (`compacted`: their names).
pub fn targets(compiled: &Compiled, compacted: &std::collections::HashSet<String>) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for s in &compiled.streams {
        for o in &s.outputs {
            if compacted.contains(&o.topic) && !out.iter().any(|t| t.topic == o.topic) {
                out.push(Target {
                    topic: o.topic.clone(),
                    purpose: o.name.clone(),
                    retention_ms: o.retention_ms,
                });
            }
        }
    }
    out
}

struct Part {
    schedule: Schedule,
    /// The offset after the last record read.
    position: i64,
}

impl Part {
    fn new() -> Part {
        Part {
            schedule: Schedule::new(),
            position: 0,
        }
    }
}

/// What the sweeper needs besides the topics.
pub struct Sweep {
    pub audit_topic: String,
    pub audit_key: AuditKey,
    pub policy: String,
    pub worker: String,
    pub interval: Duration,
    pub clock: Clock,
}

/// Starts the sweeper thread (none when no output is compacted).
///
/// # Errors
/// The clients cannot be made or the topics not subscribed.
pub fn start(
    base: &ClientConfig,
    group: &str,
    targets: Vec<Target>,
    sweep: Sweep,
    metrics: Metrics,
    stop: Arc<AtomicBool>,
) -> Result<Option<JoinHandle<()>>, WorkerError> {
    if targets.is_empty() {
        return Ok(None);
    }
    let consumer: BaseConsumer<Quiet> = base
        .clone()
        .set("group.id", format!("{group}-retention"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create_with_context(Quiet)?;
    let topics: Vec<&str> = targets.iter().map(|t| t.topic.as_str()).collect();
    consumer.subscribe(&topics)?;
    let producer: FutureProducer = base
        .clone()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    let handle = std::thread::Builder::new()
        .name("custos-retention".into())
        .spawn(move || run(&consumer, &producer, &targets, &sweep, &metrics, &stop))
        .map_err(|e| WorkerError::Admin {
            topic: "retention".into(),
            reason: e.to_string(),
        })?;
    Ok(Some(handle))
}

fn run(
    consumer: &BaseConsumer<Quiet>,
    producer: &FutureProducer,
    targets: &[Target],
    sweep: &Sweep,
    metrics: &Metrics,
    stop: &AtomicBool,
) {
    let mut parts: HashMap<(String, i32), Part> = HashMap::new();
    let mut chains = Chains::default();
    let mut last_sweep = Instant::now();
    let mut last_assignment = Instant::now() - Duration::from_secs(1);
    while !stop.load(Ordering::Relaxed) {
        if last_assignment.elapsed() >= Duration::from_millis(500) {
            last_assignment = Instant::now();
            follow_assignment(consumer, &mut parts);
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                // A record can arrive before the assignment is looked at.
                let p = parts
                    .entry((m.topic().to_string(), m.partition()))
                    .or_insert_with(Part::new);
                if m.offset() < p.position {
                    // Read again from an earlier offset (revoked and assigned
                    // again between two looks at the assignment): an old
                    // record must not overwrite a newer write, so rebuild.
                    *p = Part::new();
                }
                p.position = m.offset() + 1;
                if let Some(key) = m.key() {
                    let ts = m.timestamp().to_millis().filter(|t| *t >= 0);
                    p.schedule
                        .read(key, ts, m.payload().is_none(), (sweep.clock.0)());
                }
            }
            // End-of-partition events name no topic: the sweep asks for the
            // high watermark of each partition itself.
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => tracing::warn!(error = %e, "retention sweeper"),
        }
        if last_sweep.elapsed() >= sweep.interval {
            last_sweep = Instant::now();
            sweep_once(
                consumer,
                producer,
                targets,
                sweep,
                metrics,
                &mut parts,
                &mut chains,
                stop,
            );
        }
    }
}

/// Keeps one schedule per assigned partition: a new assignment is read from
/// the beginning (nothing is committed), a revoked one is dropped.
fn follow_assignment(consumer: &BaseConsumer<Quiet>, parts: &mut HashMap<(String, i32), Part>) {
    let Ok(assigned) = consumer.assignment() else {
        return;
    };
    let now: Vec<(String, i32)> = assigned
        .elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect();
    parts.retain(|k, _| now.contains(k));
    for k in now {
        parts.entry(k).or_insert_with(Part::new);
    }
}

/// True when every record of the partition up to its current end has been
/// read: the position has reached the high watermark the broker reports
/// now. Under `read_committed` the position stops at the last stable
/// offset, so a partition with an open transaction waits for the next sweep.
fn caught_up(consumer: &BaseConsumer<Quiet>, topic: &str, partition: i32, position: i64) -> bool {
    let position = consumer
        .position()
        .ok()
        .and_then(|tpl| tpl.find_partition(topic, partition)?.offset().to_raw())
        .map_or(position, |p| p.max(position));
    match consumer.fetch_watermarks(topic, partition, Duration::from_secs(5)) {
        Ok((_, high)) => position >= high,
        Err(e) => {
            tracing::debug!(topic, partition, error = %e, "retention: high watermark not known; the partition waits");
            false
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn sweep_once(
    consumer: &BaseConsumer<Quiet>,
    producer: &FutureProducer,
    targets: &[Target],
    sweep: &Sweep,
    metrics: &Metrics,
    parts: &mut HashMap<(String, i32), Part>,
    chains: &mut Chains,
    stop: &AtomicBool,
) {
    let now = (sweep.clock.0)();
    for ((topic, partition), p) in parts.iter_mut() {
        let Some(t) = targets.iter().find(|t| &t.topic == topic) else {
            continue;
        };
        let cutoff = now.saturating_sub(t.retention_ms);
        if p.schedule.is_empty() || !caught_up(consumer, topic, *partition, p.position) {
            continue;
        }
        let due = p.schedule.due(cutoff);
        if due.is_empty() {
            continue;
        }
        // Every tombstone queued, then each acknowledgement awaited; a key
        // whose tombstone failed goes back into the schedule.
        let mut pending = Vec::with_capacity(due.len());
        for (key, ts) in due {
            let headers = OwnedHeaders::new().insert(Header {
                key: "custos-purpose",
                value: Some(t.purpose.as_bytes()),
            });
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
                .partition(*partition)
                .key(&key[..])
                .headers(headers);
            let queued = loop {
                match producer.send_result(record) {
                    Ok(f) => break Some(f),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if !stop.load(Ordering::Relaxed) =>
                    {
                        record = back;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err((e, _)) => {
                        tracing::error!(topic = %topic, error = %e, "retention tombstone not queued; the key is swept again");
                        break None;
                    }
                }
            };
            pending.push((key, ts, queued));
        }
        let mut written = 0usize;
        for (key, ts, queued) in pending {
            let acked = queued.map(futures::executor::block_on);
            if matches!(acked, Some(Ok(Ok(_)))) {
                written += 1;
            } else {
                p.schedule.read(&key, Some(ts), false, now);
            }
        }
        if written == 0 {
            continue;
        }
        metrics
            .retention_tombstones
            .with_label_values(&[&t.purpose])
            .inc_by(written as u64);
        tracing::info!(topic = %topic, partition, tombstones = written, "retention tombstones written");
        let record = audit::retention(
            topic,
            *partition,
            p.position,
            &t.purpose,
            written,
            cutoff,
            &audit::Context {
                policy: &sweep.policy,
                worker: &sweep.worker,
                processed_at_ms: now,
            },
        );
        let chain = audit::retention_chain(topic, *partition);
        let (text, _) = chains.append(&sweep.audit_key, &chain, &record);
        let audit_record: FutureRecord<'_, str, str> = FutureRecord::to(&sweep.audit_topic)
            .key(chain.as_str())
            .payload(text.as_str());
        match producer
            .send_result(audit_record)
            .map(futures::executor::block_on)
        {
            Ok(Ok(Ok(_))) => metrics
                .audit_records
                .with_label_values(&["retention"])
                .inc(),
            _ => tracing::error!(topic = %topic, partition, "retention audit record not written"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_write_decides_and_tombstones_forget() {
        let mut s = Schedule::new();
        s.read(b"a", Some(100), false, 0);
        s.read(b"b", Some(100), false, 0);
        s.read(b"a", Some(500), false, 0); // a written again later
        s.read(b"c", None, false, 50); // no timestamp: when it was read
        s.read(b"b", None, true, 0); // b already tombstoned
        assert_eq!(s.len(), 2);
        assert!(s.due(50).is_empty());
        assert_eq!(s.due(101), vec![(Box::from(&b"c"[..]), 50)]);
        assert_eq!(s.len(), 1);
        assert_eq!(s.due(501), vec![(Box::from(&b"a"[..]), 500)]);
        assert!(s.is_empty());
    }
}
