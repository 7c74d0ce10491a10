//! Reads the consent and erasure topics: to their end before the
//! worker processes any event, then live for as long as the worker runs.
//!
//! Both topics are compacted and keyed by subject; every worker reads all
//! their partitions (no consumer group, nothing committed). A malformed
//! record is skipped with a warning that names its coordinates, not content.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::worker::Control;
use super::WorkerError;
use crate::health::Health;
use crate::state::MemoryState;
use crate::telemetry::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Consent,
    Erasure,
}

/// A client context that does not report end-of-partition as an error (it
/// is how the catch-up knows it reached the end).
pub struct Quiet;

impl rdkafka::ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        if !is_end_of_partition(&error) {
            tracing::warn!(error = %error, reason, "consent/erasure reader");
        }
    }
}

/// End of partition, as a partition error or as a global one (librdkafka
/// reports it both ways): how the catch-up knows it is done, not a problem.
fn is_end_of_partition(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::PartitionEOF(_)
            | KafkaError::Global(rdkafka::error::RDKafkaErrorCode::PartitionEOF)
    )
}

impl rdkafka::consumer::ConsumerContext for Quiet {}

/// The reader's context: quiet about end of partition, lag from statistics.
pub(super) struct Reader {
    metrics: Metrics,
}

impl rdkafka::ClientContext for Reader {
    fn error(&self, error: KafkaError, reason: &str) {
        Quiet.error(error, reason);
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .lag
                        .with_label_values(&[topic, &partition.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Reader {}

/// A consumer error that means the topic is gone.
fn topic_gone(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition
                | rdkafka::types::RDKafkaErrorCode::UnknownTopic
        )
    )
}

/// Shared consent and erasure state, fed by the reader thread.
pub type SharedState = Arc<RwLock<MemoryState>>;

/// Called with the subjects an erasure record newly erased (after the
/// state has them): crypto-shredding.
pub type OnErased = Arc<dyn Fn(&[String]) + Send + Sync>;

/// Loads both topics to their end, then follows them in a thread until `stop`.
///
/// # Errors
/// A topic that does not exist, or a broker that cannot be reached within `timeout`.
pub fn load_and_follow(
    base: &ClientConfig,
    policy: &crate::policy::Policy,
    state: SharedState,
    metrics: Metrics,
    control: &Control,
    timeout: Duration,
    on_erased: Option<OnErased>,
) -> Result<Option<JoinHandle<()>>, WorkerError> {
    let stop: Arc<AtomicBool> = control.stop.clone();
    let health: Arc<Health> = control.health.clone();
    let topics: Vec<(&str, Kind)> = policy
        .consent_topic
        .as_deref()
        .map(|t| (t, Kind::Consent))
        .into_iter()
        .chain(policy.erasure_topic.as_deref().map(|t| (t, Kind::Erasure)))
        .collect();
    if topics.is_empty() {
        return Ok(None);
    }
    // One consumer per topic: end-of-partition events name only the partition.
    let mut readers: Vec<(Kind, BaseConsumer<Reader>)> = Vec::new();
    for (topic, kind) in &topics {
        let consumer = catch_up(base, topic, &stop, timeout, &metrics, |m| {
            apply(&state, Some(*kind), m, on_erased.as_ref());
        })?;
        let Some(consumer) = consumer else {
            return Ok(None); // stopped while starting
        };
        readers.push((*kind, consumer));
    }
    update_gauges(&state, &metrics);
    tracing::info!(
        consent_subjects = metrics.consent_subjects.get(),
        erased_subjects = metrics.erased_subjects.get(),
        "consent and erasure state loaded"
    );

    let handle = std::thread::Builder::new()
        .name("custos-subjects".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for (kind, consumer) in &readers {
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(m)) => {
                            apply(&state, Some(*kind), &m, on_erased.as_ref());
                            update_gauges(&state, &metrics);
                        }
                        Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                        Some(Err(e)) if topic_gone(&e) => {
                            // Fail closed: the worker stops governing.
                            tracing::error!(error = %e, "consent/erasure topic gone while running");
                            health.set_state_lost();
                        }
                        Some(Err(e)) => tracing::warn!(error = %e, "consent/erasure reader"),
                    }
                }
            }
        })
        .map_err(|e| WorkerError::Admin {
            topic: "consent/erasure".into(),
            reason: e.to_string(),
        })?;
    Ok(Some(handle))
}

/// Reads one topic from the beginning until every partition is at its end:
/// at or past the high watermark seen at start AND reported at end of
/// partition by the fetcher. Requiring both means a broker that misreports
/// one of them (tansu's ListOffsets) makes custos wait, never start early.
pub(super) fn catch_up(
    base: &ClientConfig,
    topic: &str,
    stop: &AtomicBool,
    timeout: Duration,
    metrics: &Metrics,
    mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> Result<Option<BaseConsumer<Reader>>, WorkerError> {
    let mut conf = base.clone();
    if conf.get("statistics.interval.ms").is_none() {
        conf.set("statistics.interval.ms", "5000");
    }
    let consumer: BaseConsumer<Reader> = conf
        .set("group.id", "custos-subject-state")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .create_with_context(Reader {
            metrics: metrics.clone(),
        })?;
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    let parts = match md.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => t.partitions(),
        _ => return Err(WorkerError::MissingTopic(topic.to_string())),
    };
    let mut tpl = TopicPartitionList::new();
    // (partition, high watermark at start, position, end of partition seen)
    let mut progress: Vec<(i32, i64, i64, bool)> = Vec::new();
    for p in parts {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        let (_, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
        progress.push((p.id(), high, 0, false));
    }
    consumer.assign(&tpl)?;
    // The limit is on *no progress*, not on the total: ten million records
    // take a while to read, and a worker that gives up on a growing topic
    // would refuse every restart.
    let started = Instant::now();
    let mut deadline = Instant::now() + timeout;
    let mut records: u64 = 0;
    let mut next_report = Instant::now() + Duration::from_secs(5);
    while !progress
        .iter()
        .all(|(_, high, pos, eof)| pos >= high && *eof)
    {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        if Instant::now() > deadline {
            return Err(WorkerError::Timeout {
                what: format!(
                    "reading topic `{topic}` to its end ({records} records read, then nothing)"
                ),
                secs: timeout.as_secs(),
                reason:
                    "no record arrived in that time: check the broker and the topic's partitions"
                        .into(),
            });
        }
        if Instant::now() >= next_report {
            next_report = Instant::now() + Duration::from_secs(5);
            let secs = started.elapsed().as_secs_f64().max(0.001);
            tracing::info!(
                topic,
                records,
                rate_per_s = (records as f64 / secs) as u64,
                "reading state topic"
            );
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records += 1;
                deadline = Instant::now() + timeout;
                if let Some(p) = progress.iter_mut().find(|p| p.0 == m.partition()) {
                    p.2 = p.2.max(m.offset() + 1);
                    p.3 = false;
                }
                each(&m);
            }
            Some(Err(KafkaError::PartitionEOF(part))) => {
                // The fetch position, not the last record + 1: a topic that
                // ends with a transaction marker has no record at its end.
                let position = consumer.position().ok().and_then(|tpl| {
                    tpl.find_partition(topic, part)
                        .and_then(|e| e.offset().to_raw())
                });
                if let Some(p) = progress.iter_mut().find(|p| p.0 == part) {
                    p.3 = true;
                    if let Some(pos) = position {
                        p.2 = p.2.max(pos);
                    }
                }
            }
            Some(Err(e)) => tracing::warn!(topic, error = %e, "state topic reader"),
            None => {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(topic, records, secs, "state topic read to its end");
    Ok(Some(consumer))
}

fn apply(state: &SharedState, kind: Option<Kind>, m: &impl Message, on_erased: Option<&OnErased>) {
    // A key that is not UTF-8 cannot name a subject: the body decides.
    let key = m.key().and_then(|k| std::str::from_utf8(k).ok());
    let value = m.payload();
    let mut s = state
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let result = match kind {
        Some(Kind::Consent) => s.apply_consent(key, value),
        Some(Kind::Erasure) => s.apply_erasure(key, value),
        None => return,
    };
    drop(s);
    let what = if kind == Some(Kind::Consent) {
        "consent"
    } else {
        "erasure"
    };
    match result {
        Ok(a) => {
            if let (false, Some(hook)) = (a.newly_erased.is_empty(), on_erased) {
                hook(&a.newly_erased);
            }
            if !a.newly_erased.is_empty() {
                tracing::info!(
                    topic = m.topic(),
                    partition = m.partition(),
                    offset = m.offset(),
                    "erasure request applied"
                );
            }
            if a.unknown_purposes > 0 {
                tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), unknown_purposes = a.unknown_purposes, "consent record names purposes the policy does not have: ignored, never a grant");
            }
            if a.mismatch || a.duplicate_keys {
                tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), key_body_mismatch = a.mismatch, duplicate_keys = a.duplicate_keys, record = what, "ambiguous consent/erasure record read the most protective way: every consent of each subject it names withdrawn, erasure applied to its key");
            }
        }
        Err(e) => {
            // The state already read it the most protective way: a malformed
            // erasure erased its key, whose data keys go too.
            if let (Some(Kind::Erasure), Some(hook)) = (kind, on_erased) {
                if let Some(k) = key.and_then(crate::state::canonical_subject_str) {
                    hook(&[k]);
                }
            }
            tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e, record = what, "malformed consent/erasure record: every consent of its subjects withdrawn (consent) or its key erased (erasure)");
        }
    }
}

fn update_gauges(state: &SharedState, metrics: &Metrics) {
    let s = state
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    metrics.consent_subjects.set(s.consent_subjects() as i64);
    metrics.erased_subjects.set(s.erased_subjects() as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_of_partition_is_not_an_error_either_way() {
        use rdkafka::error::RDKafkaErrorCode;
        assert!(is_end_of_partition(&KafkaError::PartitionEOF(0)));
        assert!(is_end_of_partition(&KafkaError::Global(
            RDKafkaErrorCode::PartitionEOF
        )));
        assert!(!is_end_of_partition(&KafkaError::Global(
            RDKafkaErrorCode::BrokerTransportFailure
        )));
    }
}
