//! Delivery: sending records, retrying what failed, reading delivery reports
//! into the offset tracker, and reporting records the broker refuses for good.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::telemetry::events::{Event, ProduceFailed, ProduceOutcome};

/// librdkafka errors that no retry can fix: the record itself is refused.
pub(super) fn permanent(e: &KafkaError) -> Option<&'static str> {
    match e {
        KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::MessageBatchTooLarge,
        ) => Some("too_large"),
        KafkaError::MessageProduction(
            RDKafkaErrorCode::InvalidRecord | RDKafkaErrorCode::InvalidMessage,
        ) => Some("refused"),
        _ => None,
    }
}

/// The header that marks a refused record's stub on the dead-letter topic.
const REFUSED_BY: &str = "custos-refused-by";

/// What is sent to the dead-letter topic instead of a record the broker
/// refuses for good: no value (the raw input stays at `custos-source`), the
/// reason and the topic that refused it. Sending it acknowledges the
/// refused record's place, so its partition moves on.
pub(super) fn refused_record(
    shared: &Shared,
    topic: &str,
    origin: &Origin,
    reason: &'static str,
) -> OutRecord {
    OutRecord {
        audit: false,
        topic: shared.dead_letter_topic.clone(),
        key: None,
        payload: None,
        headers: vec![
            (
                Cow::Borrowed("custos-error"),
                Some(reason.as_bytes().to_vec()),
            ),
            (
                Cow::Borrowed("custos-source"),
                Some(engine::source_of(&origin.tp.0, origin.tp.1, origin.offset).into_bytes()),
            ),
            (Cow::Borrowed(REFUSED_BY), Some(topic.as_bytes().to_vec())),
        ],
        timestamp: None,
    }
}

pub(super) struct DeliveryContext {
    pub(super) shared: Arc<Shared>,
    pub(super) audit_topic: String,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Arc<Origin>;

    fn delivery(&self, result: &DeliveryResult<'_>, origin: Arc<Origin>) {
        if result.is_ok() {
            self.shared.acks.fetch_add(1, Ordering::Relaxed);
        }
        match result {
            Ok(_) => {
                // The record's last output landed: the record is done.
                if origin.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                    let mut tracker = self
                        .shared
                        .tracker
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if origin.covers.is_empty() {
                        tracker.ack(&origin.tp, origin.offset, origin.generation);
                    }
                    // A summary: it was what each record it counts waited for
                    // last, or one of the things.
                    for c in &origin.covers {
                        if c.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                            tracker.ack(&c.tp, c.offset, c.generation);
                        }
                    }
                }
            }
            Err((
                KafkaError::MessageProduction(
                    RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight,
                ),
                _,
            )) => {
                // Our own abort purged it: the transaction is already being redone.
            }
            Err((e, msg)) if self.shared.txn.is_some() => {
                // The transaction will abort and its input be consumed again.
                tracing::warn!(topic = msg.topic(), error = %e, "produce failed inside a transaction; it will abort");
                self.shared.txn_failed.store(true, Ordering::SeqCst);
            }
            Err((e, _)) if !self.shared.current(&origin) => {
                // Revoked since: the partition's next owner reprocesses it.
                tracing::debug!(error = %e, "produce failed for a revoked partition");
            }
            Err((e, msg)) if msg.topic() == self.audit_topic => {
                // Sent again later it would stand after newer records of its
                // chain. Stop instead: the offset never moved past it, so the
                // next start redoes it from the committed chain head (a replay).
                if !self.shared.audit_failed.swap(true, Ordering::SeqCst) {
                    tracing::error!(error = %e, source_partition = origin.tp.1, source_offset = origin.offset, "audit record not delivered after librdkafka's retries: stopping");
                }
            }
            Err((e, msg)) => {
                // A refused record's stub refused in turn is retried, never
                // replaced by a stub of itself (a tombstone's dead letter is
                // not a stub: it is replaced like any record).
                let is_stub = msg.topic() == &*self.shared.dead_letter_topic
                    && msg.headers().is_some_and(|h| {
                        (0..h.count())
                            .filter_map(|i| h.try_get(i))
                            .any(|x| x.key == REFUSED_BY)
                    });
                // librdkafka has already retried for delivery.timeout.ms.
                requeue(&self.shared, e, msg.topic(), is_stub, origin, || {
                    OutRecord {
                        audit: false,
                        topic: Arc::from(msg.topic()),
                        key: msg.key().map(<[u8]>::to_vec),
                        payload: msg.payload().map(<[u8]>::to_vec),
                        headers: owned_headers(msg)
                            .into_iter()
                            .map(|(k, v)| (Cow::Owned(k), v))
                            .collect(),
                        timestamp: msg.timestamp().to_millis(),
                    }
                });
            }
        }
    }
}

/// Waits until every produced record is acknowledged (or `timeout`); true when all are.
///
/// rdkafka's `flush` polls the delivery-report queue itself in 100 ms steps,
/// racing the threaded producer's own poll thread for the reports, so each
/// call took a full 100 ms; this asks librdkafka without blocking (which
/// also makes it send lingering batches now) and sleeps briefly instead.
pub(super) fn flush(producer: &Prod, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if producer.flush(Duration::ZERO).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_micros(250));
    }
}

/// A message's headers as owned pairs, for resending our own records
/// (custos writes only UTF-8 header names).
pub(super) fn owned_headers(msg: &impl Message) -> Vec<(String, Option<Vec<u8>>)> {
    let Some(h) = msg.headers() else {
        return Vec::new();
    };
    (0..h.count())
        .filter_map(|i| h.try_get(i))
        .map(|x| (x.key.to_string(), x.value.map(<[u8]>::to_vec)))
        .collect()
}

/// Stores every offset that became safe (auto-commit then commits it).
pub(super) fn store(consumer: &BaseConsumer<WorkerContext>, shared: &Shared) {
    let ready = shared
        .tracker
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .committable();
    if ready.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for c in &ready {
        // The chain head travels with the offset (commit metadata).
        add_offset(&mut tpl, &c.tp, c.offset, c.head.as_deref());
        shared.finished.fetch_add(c.advanced, Ordering::Relaxed);
    }
    if let Err(e) = consumer.store_offsets(&tpl) {
        // A partition revoked a moment ago: its offsets were committed on revoke.
        tracing::debug!(error = %e, "store offsets");
    }
}

pub(super) fn send(producer: &Prod, shared: &Shared, out: OutRecord, origin: Arc<Origin>) {
    let mut headers = OwnedHeaders::new_with_capacity(out.headers.len());
    for (k, v) in &out.headers {
        headers = headers.insert(Header {
            key: k,
            value: v.as_deref(),
        });
    }
    let mut record: BaseRecord<'_, [u8], [u8], Arc<Origin>> =
        BaseRecord::with_opaque_to(&out.topic, origin.clone()).headers(headers);
    if let Some(p) = &out.payload {
        record = record.payload(&p[..]);
    }
    if let Some(k) = &out.key {
        record = record.key(&k[..]);
    }
    if let Some(ts) = out.timestamp {
        record = record.timestamp(ts);
    }
    let mut record = record;
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                if shared.deadline().is_some_and(|d| Instant::now() >= d) {
                    // Shutting down and out of time: the record is not sent,
                    // its input offset never committed (reprocessed later).
                    tracing::warn!(topic = %out.topic, "shutdown deadline reached with the producer queue full: record not sent, its input will be reprocessed");
                    if shared.txn.is_some() {
                        shared.txn_failed.store(true, Ordering::SeqCst);
                    }
                    return;
                }
                record = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => {
                // Not accepted at all (e.g. larger than message.max.bytes):
                // keep it for retry so the partition never moves past it.
                if shared.txn.is_some() {
                    // exactly_once: the transaction must not commit without it.
                    tracing::error!(topic = %out.topic, error = %e, "produce refused; the transaction will abort");
                    shared.txn_failed.store(true, Ordering::SeqCst);
                    return;
                }
                if out.audit || matches!(e, KafkaError::MessageProduction(RDKafkaErrorCode::Fatal))
                {
                    // Resent later, an audit record would stand after newer
                    // records of its chain; a fatal producer never recovers.
                    if !shared.audit_failed.swap(true, Ordering::SeqCst) {
                        tracing::error!(topic = %out.topic, error = %e, "produce refused: stopping");
                    }
                    return;
                }
                let is_stub = out.topic == shared.dead_letter_topic
                    && out.headers.iter().any(|(k, _)| k == REFUSED_BY);
                requeue(shared, &e, &out.topic, is_stub, origin.clone(), || {
                    out.clone()
                });
                return;
            }
        }
    }
}

/// A record that could not be produced: counted and logged, then queued for
/// [`resend`]: as it is (`as_is`; its input offset stays uncommitted), or,
/// when the broker refuses it for good, replaced by its stub on the
/// dead-letter topic so the partition moves on (a stub refused in turn is
/// retried as it is, never replaced by a stub of itself).
fn requeue(
    shared: &Shared,
    e: &KafkaError,
    topic: &str,
    is_stub: bool,
    origin: Arc<Origin>,
    as_is: impl FnOnce() -> OutRecord,
) {
    let refused = permanent(e).filter(|_| !is_stub);
    ProduceFailed {
        topic,
        error: e,
        source: Some((&origin.tp.0, origin.tp.1, origin.offset)),
        outcome: if refused.is_some() {
            ProduceOutcome::Refused
        } else {
            ProduceOutcome::Retried
        },
    }
    .emit(&shared.metrics);
    let rec = match refused {
        Some(reason) => refused_record(shared, topic, &origin, reason),
        None => as_is(),
    };
    shared
        .retries
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((rec, origin));
}

pub(super) fn resend(producer: &Prod, shared: &Shared) {
    let pending: Vec<(OutRecord, Arc<Origin>)> = std::mem::take(
        &mut *shared
            .retries
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    for (rec, origin) in pending {
        // A revoked partition's records are reprocessed by its next owner.
        if shared.current(&origin) {
            send(producer, shared, rec, origin);
        }
    }
}
