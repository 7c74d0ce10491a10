//! Everything that talks to Kafka: the worker loop, the consent and erasure
//! readers, topic management and the embedded broker.
//!
//! The governance itself is the pure [`crate::engine`]; this module only moves
//! bytes and offsets around it. It must never commit an offset before every
//! output and dead letter of that record and all earlier records of its
//! partition is acknowledged by the broker, and never log record content.

pub mod embedded;
pub mod keys;
pub mod offsets;
pub mod retention;
pub mod subjects;
pub mod topics;
pub mod worker;

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

/// Errors that stop the worker (bad records never do: they are dead-lettered).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("kafka client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("encrypt: {0}; custos stopped before writing the record (its offset is not committed) and governs it again on the next start")]
    Keys(String),
    #[error("topic `{topic}` keeps data for {actual} but purpose `{purpose}` allows {allowed}; lower its retention.ms or set kafka.manage_topics = true")]
    Retention {
        topic: String,
        purpose: String,
        actual: String,
        allowed: String,
    },
    #[error("topic `{0}` does not exist; create it or set kafka.manage_topics = true")]
    MissingTopic(String),
    #[error("topic management failed for `{topic}`: {reason}")]
    Admin { topic: String, reason: String },
    #[error("{what} did not finish within {secs} s: {reason}")]
    Timeout {
        what: String,
        secs: u64,
        reason: String,
    },
    #[error("schema registry: {0}")]
    Registry(String),
    #[error("an audit record could not be delivered to the audit topic, or the producer failed for good (see the log); custos stopped without committing past it and redoes it on the next start")]
    AuditUndeliverable,
    #[error("exactly_once needs a stable instance id per worker (the transactional.id that fences a dead predecessor): set CUSTOS_INSTANCE_ID (on Kubernetes: the StatefulSet pod name) or export HOSTNAME")]
    NoInstanceId,
    #[error("the consent or erasure topic was lost while running (deleted or unreadable); custos stopped rather than govern without the data subjects' wishes")]
    SubjectStateLost,
    #[error("the shutdown did not finish within delivery.drain_timeout_ms: {records} record(s) not committed; they are processed again by the next owner of their partitions")]
    DrainIncomplete { records: u64 },
}

/// A librdkafka configuration with the bootstrap servers and the user's
/// `[kafka.properties]` applied (TLS, SASL and tuning pass through unchanged).
pub fn base_config(bootstrap: &str, properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// Milliseconds since the epoch, from the system clock (the only clock read
/// on the processing path; the engine gets it as an argument).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
