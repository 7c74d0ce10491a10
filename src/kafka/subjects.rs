//! Reads the consent and erasure topics (SPEC §4): to their end before the
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
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::WorkerError;
use crate::state::MemoryState;
use crate::telemetry::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Consent,
    Erasure,
}

/// Shared consent and erasure state, fed by the reader thread.
pub type SharedState = Arc<RwLock<MemoryState>>;

/// Loads both topics to their end, then follows them in a thread until `stop`.
///
/// # Errors
/// A topic that does not exist, or a broker that cannot be reached within `timeout`.
pub fn load_and_follow(
    base: &ClientConfig,
    consent: Option<&str>,
    erasure: Option<&str>,
    state: SharedState,
    metrics: Metrics,
    stop: Arc<AtomicBool>,
    timeout: Duration,
) -> Result<Option<JoinHandle<()>>, WorkerError> {
    let topics: Vec<(&str, Kind)> = consent
        .map(|t| (t, Kind::Consent))
        .into_iter()
        .chain(erasure.map(|t| (t, Kind::Erasure)))
        .collect();
    if topics.is_empty() {
        return Ok(None);
    }
    let consumer: BaseConsumer = base
        .clone()
        .set("group.id", "custos-subject-state")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    let mut targets: Vec<(String, i32, i64)> = Vec::new();
    for (topic, _) in &topics {
        let md = consumer.fetch_metadata(Some(topic), timeout)?;
        let t = md.topics().iter().find(|t| t.name() == *topic);
        let parts = match t {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => t.partitions(),
            _ => return Err(WorkerError::MissingTopic(topic.to_string())),
        };
        for p in parts {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
            let (_, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
            targets.push((topic.to_string(), p.id(), high));
        }
    }
    consumer.assign(&tpl)?;
    let kind_of = |topic: &str| topics.iter().find(|(t, _)| *t == topic).map(|(_, k)| *k);

    // Catch up: every partition read up to the high watermark seen at start.
    let deadline = Instant::now() + timeout;
    let mut positions: Vec<i64> = vec![0; targets.len()];
    let caught_up = |positions: &[i64]| {
        targets
            .iter()
            .zip(positions)
            .all(|((_, _, high), pos)| pos >= high)
    };
    while !caught_up(&positions) {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        if Instant::now() > deadline {
            return Err(WorkerError::Timeout {
                what: "reading the consent and erasure topics".into(),
                secs: timeout.as_secs(),
                reason: "the broker did not deliver them to their end".into(),
            });
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            if let Some(i) = targets
                .iter()
                .position(|(t, p, _)| t == m.topic() && *p == m.partition())
            {
                positions[i] = positions[i].max(m.offset() + 1);
            }
            apply(&state, kind_of(m.topic()), &m);
        }
    }
    update_gauges(&state, &metrics);
    tracing::info!(
        consent_subjects = metrics.consent_subjects.get(),
        erased_subjects = metrics.erased_subjects.get(),
        "consent and erasure state loaded"
    );

    let kinds: Vec<(String, Kind)> = topics.iter().map(|(t, k)| (t.to_string(), *k)).collect();
    let handle = std::thread::Builder::new()
        .name("custos-subjects".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) => {
                        let kind = kinds.iter().find(|(t, _)| t == m.topic()).map(|(_, k)| *k);
                        apply(&state, kind, &m);
                        update_gauges(&state, &metrics);
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "consent/erasure reader"),
                    None => {}
                }
            }
        })
        .map_err(|e| WorkerError::Admin {
            topic: "consent/erasure".into(),
            reason: e.to_string(),
        })?;
    Ok(Some(handle))
}

fn apply(state: &SharedState, kind: Option<Kind>, m: &impl Message) {
    let key = m.key().and_then(|k| std::str::from_utf8(k).ok());
    let value = m.payload();
    let mut s = state
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let result = match kind {
        Some(Kind::Consent) => s.apply_consent(key, value),
        Some(Kind::Erasure) => s.apply_erasure(key, value).map(|erased| {
            if erased.is_some() {
                tracing::info!(
                    topic = m.topic(),
                    partition = m.partition(),
                    offset = m.offset(),
                    "erasure request applied"
                );
            }
        }),
        None => Ok(()),
    };
    if let Err(e) = result {
        // Fail closed: read an unreadable record the most protective way.
        let action = match (kind, key) {
            (Some(Kind::Consent), Some(k)) => {
                s.deny_all(k);
                "treated as withdrawal of every consent"
            }
            (Some(Kind::Erasure), Some(k)) => {
                s.erase(k);
                "treated as an erasure request for its key"
            }
            _ => "skipped (no key)",
        };
        tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e, action, "malformed consent/erasure record");
    }
}

fn update_gauges(state: &SharedState, metrics: &Metrics) {
    let s = state
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    metrics.consent_subjects.set(s.consent_subjects() as i64);
    metrics.erased_subjects.set(s.erased_subjects() as i64);
}
