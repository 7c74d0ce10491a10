//! The worker loop: consume every stream's topic in one group, govern each
//! record with the pure engine, produce each entitled output and dead letter,
//! and store an input offset only when it and everything before it in its
//! partition is acknowledged (at-least-once).
//!
//! Threads: the consumer loop runs on the caller's thread (librdkafka's
//! rebalance callbacks run inside its `poll`); delivery reports arrive on the
//! threaded producer's poll thread and only touch the offset tracker; the
//! consent/erasure reader has its own thread. Record content is never logged.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use super::offsets::{OffsetTracker, Tp};
use super::subjects::{self, SharedState};
use super::topics::{self, TopicSpec};
use super::{base_config, now_ms, WorkerError};
use crate::audit::{self, AuditKey, Chains, StreamAudit};
use crate::config::{AuditLevel, Config, Guarantee};
use crate::engine::{self, Outcome, Scratch};
use crate::lineage::{self, EventType};
use crate::pipeline;
use crate::policy::plan::Compiled;
use crate::policy::Format;
use crate::state::MemoryState;
use crate::telemetry::{Metrics, StreamMetrics};

/// How the worker is run (not user configuration).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Skip topic management: the embedded broker has no admin API.
    pub skip_topic_management: bool,
    /// Tests only: on stop, exit without draining or committing, as a killed process would.
    pub crash_on_stop: bool,
    /// exactly_once: this instance's stable name; the transactional id is
    /// `<group_id>-<instance>`. Default: `CUSTOS_INSTANCE_ID`, else `HOSTNAME`
    /// (the pod name on Kubernetes), else `custos`.
    pub instance_id: Option<String>,
}

/// Flags shared with whoever runs the worker.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Set to stop: the worker drains, commits and leaves the group.
    pub stop: Arc<AtomicBool>,
    /// What `/readyz` reports.
    pub health: Arc<crate::health::Health>,
    /// Input offsets finished: every output and dead letter acknowledged
    /// (at_least_once, counted when the offset is stored) or committed in a
    /// transaction (exactly_once). Benchmarks time against it.
    pub finished: Arc<AtomicU64>,
}

/// One output record waiting to be (re)sent.
#[derive(Debug, Clone)]
struct OutRecord {
    /// An audit record: never resent out of its chain's order.
    audit: bool,
    topic: Arc<str>,
    key: Option<Vec<u8>>,
    /// `None` for a tombstone (dead letters keep the input's null value).
    payload: Option<Vec<u8>>,
    /// Header values `None` where the input header had no value.
    headers: Vec<(Cow<'static, str>, Option<Vec<u8>>)>,
    timestamp: Option<i64>,
}

/// The input record an output belongs to (the delivery opaque).
#[derive(Debug)]
struct Origin {
    tp: Tp,
    offset: i64,
    /// The partition's generation in the offset tracker (0 in exactly_once).
    generation: u64,
}

struct Shared {
    tracker: Mutex<OffsetTracker>,
    retries: Mutex<Vec<(OutRecord, Arc<Origin>)>>,
    metrics: Metrics,
    /// exactly_once: the open transaction (None in at_least_once).
    txn: Option<Mutex<Txn>>,
    /// exactly_once: a delivery in the open transaction failed; it must abort.
    txn_failed: AtomicBool,
    /// exactly_once: a transaction could be neither confirmed nor aborted
    /// (e.g. on revoke); the worker stops and the next start settles it.
    txn_unresolved: AtomicBool,
    /// exactly_once: `transaction.timeout.ms`, how long a commit may be retried.
    txn_timeout: Duration,
    /// [`Control::finished`].
    finished: Arc<AtomicU64>,
    /// Audit chain heads of the assigned input partitions.
    chains: Mutex<Chains>,
    /// Assigned partitions whose chain head is not looked up yet.
    unseeded: Mutex<std::collections::HashSet<Tp>>,
    /// at_least_once: an audit record could not be delivered; the worker stops.
    audit_failed: AtomicBool,
    /// Where a record the broker refuses for good is reported instead.
    dead_letter_topic: Arc<str>,
    /// What `/readyz` reports.
    health: Arc<crate::health::Health>,
    /// Delivery acknowledgements so far (the consumer loop watches it move).
    acks: AtomicU64,
    /// The lag series currently exported, so revoked partitions' go away.
    lag_series: Mutex<std::collections::HashSet<(String, String)>>,
    /// [`Control::stop`]: loops that may block watch it.
    stop: Arc<AtomicBool>,
    /// `delivery.drain_timeout_ms`.
    drain: Duration,
    /// The one deadline of the whole shutdown, set when the stop is first seen.
    stop_deadline: Mutex<Option<Instant>>,
}

/// librdkafka errors that no retry can fix: the record itself is refused.
fn permanent(e: &KafkaError) -> Option<&'static str> {
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

/// What is sent to the dead-letter topic instead of a record the broker
/// refuses for good: no value (the raw input stays at `custos-source`), the
/// reason and the topic that refused it. Sending it acknowledges the
/// refused record's place, so its partition moves on.
fn refused_record(
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
            (
                Cow::Borrowed("custos-refused-by"),
                Some(topic.as_bytes().to_vec()),
            ),
        ],
        timestamp: None,
    }
}

/// The open transaction of an exactly_once worker.
#[derive(Debug, Default)]
struct Txn {
    open: bool,
    offsets: HashMap<Tp, TxnPart>,
    records: u64,
}

/// One input partition's part in the open transaction.
#[derive(Debug)]
struct TxnPart {
    /// First offset in this transaction (where an abort rewinds to).
    first: i64,
    /// Next offset to consume (what the transaction commits).
    next: i64,
    /// The audit chain head before this transaction (restored on abort).
    start_head: Option<String>,
    /// The audit chain head after the last record (the commit metadata).
    head: String,
}

/// Continues `tp`'s audit chain from the head committed with its offset.
fn seed_chain(
    consumer: &BaseConsumer<WorkerContext>,
    shared: &Shared,
    tp: &Tp,
    chain: &str,
    timeout: Duration,
) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&tp.0, tp.1);
    match consumer.committed_offsets(tpl, timeout) {
        Ok(committed) => {
            for e in committed.elements() {
                let head = e.metadata();
                let mut chains = shared.chains.lock().unwrap_or_else(PoisonError::into_inner);
                if !head.is_empty() {
                    chains.set_head(chain.to_string(), head.to_string());
                } else {
                    chains.forget(chain);
                    if matches!(e.offset(), Offset::Offset(o) if o > 0) {
                        tracing::warn!(topic = e.topic(), partition = e.partition(), "committed offset without audit chain head (the broker keeps no commit metadata): the partition's audit chain restarts");
                    }
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, topic = %tp.0, partition = tp.1, "cannot read the committed offset: the partition's audit chain restarts");
        }
    }
}

/// Sends the OpenLineage events of every stream to `lineage.topic`.
struct Lineage {
    producer: BaseProducer,
    topic: String,
    namespace: String,
    /// One run per stream (each stream is its own job).
    run_ids: Vec<String>,
}

impl Lineage {
    fn new(
        base: &ClientConfig,
        bootstrap: &str,
        cfg: &Config,
        compiled: &Compiled,
    ) -> Result<Lineage, WorkerError> {
        let run_ids = (0..compiled.streams.len())
            .map(|i| {
                let mut random = [0u8; 16];
                // Without OS randomness the run id is still unique enough.
                if getrandom::fill(&mut random).is_err() {
                    random[..8].copy_from_slice(&now_ms().to_be_bytes());
                    random[8..12].copy_from_slice(&std::process::id().to_be_bytes());
                    random[12..].copy_from_slice(&(i as u32).to_be_bytes());
                }
                lineage::run_id(random)
            })
            .collect();
        let first = bootstrap.split(',').next().unwrap_or(bootstrap).trim();
        let mut pconf = base.clone();
        // Lineage is best effort: it must not hold up a start or a stop.
        pconf
            .set("message.timeout.ms", "5000")
            .set("statistics.interval.ms", "0");
        Ok(Lineage {
            producer: pconf.create()?,
            topic: cfg.lineage.topic.clone(),
            namespace: format!("kafka://{first}"),
            run_ids,
        })
    }

    /// Best effort: lineage describes the plan, it carries no record, so a
    /// failure to send it is logged and processing goes on.
    fn emit(&self, compiled: &Compiled, kind: EventType, timeout: Duration) {
        let time = audit::rfc3339_ms(now_ms());
        for (plan, run_id) in compiled.streams.iter().zip(&self.run_ids) {
            let run = lineage::Run {
                policy: &compiled.policy.name,
                namespace: &self.namespace,
                run_id,
            };
            let event = lineage::run_event(plan, &run, kind, &time).to_string();
            let job = lineage::job_name(&compiled.policy.name, plan);
            let record = BaseRecord::<str, str>::to(&self.topic)
                .key(&job)
                .payload(&event);
            if let Err((e, _)) = self.producer.send(record) {
                tracing::warn!(error = %e, job, "lineage event not sent");
            }
        }
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, event = kind.name(), "lineage events not delivered");
        }
    }
}

/// `topic/partition`: an audit chain's name and the audit records' key.
fn chain_of(tp: &Tp) -> String {
    audit::chain_name(&tp.0, tp.1)
}

/// Adds `tp` at `offset` with the chain head as commit metadata.
fn add_offset(tpl: &mut TopicPartitionList, tp: &Tp, offset: i64, head: Option<&str>) {
    let mut e = tpl.add_partition(&tp.0, tp.1);
    let _ = e.set_offset(Offset::Offset(offset));
    if let Some(h) = head {
        e.set_metadata(h);
    }
}

struct DeliveryContext {
    shared: Arc<Shared>,
    audit_topic: String,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Arc<Origin>;

    fn delivery(&self, result: &DeliveryResult<'_>, origin: Arc<Origin>) {
        if result.is_ok() {
            self.shared.acks.fetch_add(1, Ordering::Relaxed);
        }
        match result {
            Ok(_) => self
                .shared
                .tracker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .ack(&origin.tp, origin.offset, origin.generation),
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
                self.shared
                    .metrics
                    .produce_failures
                    .with_label_values(&[msg.topic()])
                    .inc();
                let stub =
                    msg.payload().is_some() || msg.topic() != &*self.shared.dead_letter_topic;
                if let (Some(reason), true) = (permanent(e), stub) {
                    // Refused for good: retrying would stall the partition forever.
                    tracing::error!(topic = msg.topic(), error = %e, source_partition = origin.tp.1, source_offset = origin.offset, "record refused by the broker; reported on the dead-letter topic instead");
                    let rec = refused_record(&self.shared, msg.topic(), &origin, reason);
                    self.shared
                        .retries
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((rec, origin));
                    return;
                }
                // librdkafka has already retried for delivery.timeout.ms: keep
                // the record and send it again; its offset stays uncommitted.
                tracing::error!(topic = msg.topic(), error = %e, source_partition = origin.tp.1, source_offset = origin.offset, "produce failed; will retry");
                let rec = OutRecord {
                    audit: false,
                    topic: Arc::from(msg.topic()),
                    key: msg.key().map(<[u8]>::to_vec),
                    payload: msg.payload().map(<[u8]>::to_vec),
                    headers: owned_headers(msg)
                        .into_iter()
                        .map(|(k, v)| (Cow::Owned(k), v))
                        .collect(),
                    timestamp: msg.timestamp().to_millis(),
                };
                self.shared
                    .retries
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((rec, origin));
            }
        }
    }
}

impl Shared {
    /// The shutdown deadline once a stop was requested: every blocking step
    /// of the shutdown (queueing, flushing, draining, committing) shares it.
    fn deadline(&self) -> Option<Instant> {
        if !self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let mut d = self
            .stop_deadline
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Some(*d.get_or_insert_with(|| Instant::now() + self.drain))
    }

    /// Time left before the shutdown deadline, or `default` while running.
    fn remaining(&self, default: Duration) -> Duration {
        match self.deadline() {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => default,
        }
    }

    /// Whether `origin`'s partition is still tracked in the same generation
    /// (not revoked since): only then do its acks and retries count.
    fn current(&self, origin: &Origin) -> bool {
        self.tracker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_current(&origin.tp, origin.generation)
    }
}

type Prod = ThreadedProducer<DeliveryContext>;

struct WorkerContext {
    shared: Arc<Shared>,
    producer: Arc<Prod>,
    drain: Duration,
}

impl ClientContext for WorkerContext {
    /// librdkafka statistics (every `statistics.interval.ms`): per-partition lag.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let up = statistics.brokers.values().any(|b| b.state == "UP");
        self.shared.health.brokers_up(up, now_ms());
        let mut seen = self
            .shared
            .lag_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut now: std::collections::HashSet<(String, String)> = Default::default();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's internal UA partition and unknown lags;
                // partitions no longer assigned are "none"/"stopped".
                let assigned = matches!(
                    p.fetch_state.as_str(),
                    "active" | "offset-query" | "offset-wait"
                );
                // exactly_once commits offsets in transactions, which
                // librdkafka's committed-offset lag does not see: the lag of
                // the offsets stored after each commit stands in.
                let lag = if p.consumer_lag >= 0 {
                    p.consumer_lag
                } else {
                    p.consumer_lag_stored
                };
                if *partition >= 0 && lag >= 0 && assigned {
                    let key = (topic.clone(), partition.to_string());
                    self.shared
                        .metrics
                        .lag
                        .with_label_values(&[&key.0, &key.1])
                        .set(lag);
                    now.insert(key);
                }
            }
        }
        // Lag of partitions this worker no longer reads disappears.
        for (t, p) in seen.difference(&now) {
            let _ = self.shared.metrics.lag.remove_label_values(&[t, p]);
        }
        *seen = now;
    }
}

impl ConsumerContext for WorkerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        if let Some(txn) = &self.shared.txn {
            // Finish the open transaction before the partitions move.
            let mut t = txn.lock().unwrap_or_else(PoisonError::into_inner);
            let left = self.shared.remaining(self.drain);
            if let Err(e) = finish(&self.producer, consumer, &mut t, &self.shared, left) {
                tracing::warn!(error = %e, "transaction on revoke not committed; its records are redone by whoever owns the partitions next, or settled by the next start");
            }
            let mut chains = self
                .shared
                .chains
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for e in tpl.elements() {
                chains.forget(&audit::chain_name(e.topic(), e.partition()));
            }
            return;
        }
        // Drain what is in flight, then commit the revoked partitions before
        // another worker may start on them.
        let revoked: Vec<Tp> = tpl
            .elements()
            .iter()
            .map(|e| (Arc::from(e.topic()), e.partition()))
            .collect();
        let left = self.shared.remaining(self.drain);
        let deadline = Instant::now() + left;
        flush(&self.producer, left);
        while self.inflight(&revoked) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut commit = TopicPartitionList::new();
        {
            let mut t = self
                .shared
                .tracker
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for tp in &revoked {
                // Without a head nothing was finished since the assignment:
                // the committed offset (and its chain head) stand as they are.
                if let Some((off, Some(head))) = t.remove(tp) {
                    add_offset(&mut commit, tp, off, Some(&head));
                }
            }
        }
        {
            let mut chains = self
                .shared
                .chains
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for tp in &revoked {
                chains.forget(&chain_of(tp));
            }
        }
        self.shared
            .retries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(_, o)| !revoked.contains(&o.tp));
        if commit.count() > 0 {
            match consumer.commit(&commit, CommitMode::Sync) {
                Ok(()) => tracing::info!(
                    partitions = commit.count(),
                    "revoked partitions drained and committed"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "commit on revoke failed; the next owner may reprocess")
                }
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(partitions = tpl.count(), "partitions assigned");
            // Each partition's audit chain continues from the head committed
            // with its offset; it is looked up when the partition's first
            // record arrives (by then librdkafka has its stable committed
            // offset, even right after another instance's open transaction).
            let mut unseeded = self
                .shared
                .unseeded
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for e in tpl.elements() {
                unseeded.insert((Arc::from(e.topic()), e.partition()));
            }
        }
    }
}

impl WorkerContext {
    fn inflight(&self, tps: &[Tp]) -> usize {
        self.shared
            .tracker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .inflight(|tp| tps.contains(tp))
    }
}

/// Everything `run` needs.
pub struct Worker {
    pub config: Config,
    pub bootstrap: String,
    pub compiled: Arc<Compiled>,
    pub metrics: Metrics,
    pub options: Options,
    pub control: Control,
    /// Signs the audit chain and hides subject ids (`audit.key`).
    pub audit_key: AuditKey,
}

/// The topics a policy writes, with what they must look like.
pub fn topic_specs(
    compiled: &Compiled,
    config: &Config,
    partitions: impl Fn(&str) -> i32,
) -> Vec<TopicSpec> {
    let mut specs = Vec::new();
    for s in &compiled.streams {
        for o in &s.outputs {
            specs.push(TopicSpec {
                name: o.topic.clone(),
                retention: Some((o.name.clone(), o.retention_ms)),
                compacted: false,
                partitions: partitions(&s.topic),
                optional: false,
                no_compaction: false,
            });
        }
    }
    specs.push(TopicSpec {
        name: config.dead_letter.topic.clone(),
        retention: None,
        compacted: false,
        partitions: 1,
        optional: false,
        no_compaction: false,
    });
    specs.push(TopicSpec {
        name: config.lineage.topic.clone(),
        retention: None,
        compacted: false,
        partitions: 1,
        optional: true,
        no_compaction: false,
    });
    // Audit records are keyed by input partition: as many partitions as the
    // widest input spreads the chains without splitting any.
    specs.push(TopicSpec {
        name: config.audit.topic.clone(),
        retention: None,
        compacted: false,
        partitions: compiled
            .streams
            .iter()
            .map(|s| partitions(&s.topic))
            .max()
            .unwrap_or(1),
        optional: false,
        no_compaction: true,
    });
    // The consent and erasure topics are inputs owned by the privacy team:
    // never created here. A missing one (a typo, a deleted topic) refuses the
    // start instead of silently forgetting every erasure.
    specs
}

impl Worker {
    /// Runs until `control.stop` is set; returns after draining and committing.
    ///
    /// # Errors
    /// Startup failures (unreachable broker, topics, retention) and fatal
    /// client errors. Bad records never stop the worker.
    pub fn run(self) -> Result<(), WorkerError> {
        let cfg = &self.config;
        let eos = cfg.delivery.guarantee == Guarantee::ExactlyOnce;
        if let Some(s) = self
            .compiled
            .policy
            .streams
            .iter()
            .find(|s| s.format == Format::Avro)
        {
            return Err(WorkerError::AvroUnsupported(s.name.clone()));
        }
        if cfg.audit.level == AuditLevel::Summary {
            return Err(WorkerError::AuditSummaryUnsupported);
        }
        if cfg.lineage.openlineage_url.is_some() {
            return Err(WorkerError::LineageHttpUnsupported);
        }
        let base = base_config(&self.bootstrap, &cfg.kafka.properties);
        let drain = Duration::from_millis(cfg.delivery.drain_timeout_ms);
        let startup = Duration::from_secs(30);

        if !self.options.skip_topic_management {
            let probe: BaseConsumer = base.clone().create()?;
            let md = probe.fetch_metadata(None, startup)?;
            let partitions = |t: &str| {
                md.topics()
                    .iter()
                    .find(|x| x.name() == t)
                    .map_or(1, |x| x.partitions().len().max(1) as i32)
            };
            let specs = topic_specs(&self.compiled, cfg, partitions);
            topics::ensure(&base, &specs, cfg.kafka.manage_topics, startup)?;
        }

        let state: SharedState =
            Arc::new(RwLock::new(MemoryState::for_policy(&self.compiled.policy)));
        let follower = subjects::load_and_follow(
            &base,
            self.compiled.policy.consent_topic.as_deref(),
            self.compiled.policy.erasure_topic.as_deref(),
            state.clone(),
            self.metrics.clone(),
            &self.control,
            startup,
        )?;

        let shared = Arc::new(Shared {
            tracker: Mutex::new(OffsetTracker::new()),
            retries: Mutex::new(Vec::new()),
            metrics: self.metrics.clone(),
            txn: eos.then(|| Mutex::new(Txn::default())),
            txn_failed: AtomicBool::new(false),
            txn_unresolved: AtomicBool::new(false),
            txn_timeout: Duration::from_millis(
                base.get("transaction.timeout.ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(60_000),
            ),
            finished: self.control.finished.clone(),
            chains: Mutex::new(Chains::default()),
            unseeded: Mutex::new(std::collections::HashSet::new()),
            audit_failed: AtomicBool::new(false),
            dead_letter_topic: Arc::from(cfg.dead_letter.topic.as_str()),
            health: self.control.health.clone(),
            acks: AtomicU64::new(0),
            lag_series: Mutex::new(Default::default()),
            stop: self.control.stop.clone(),
            drain,
            stop_deadline: Mutex::new(None),
        });
        let mut pconf = base.clone();
        pconf.set("enable.idempotence", "true");
        if pconf.get("linger.ms").is_none() && pconf.get("queue.buffering.max.ms").is_none() {
            pconf.set("linger.ms", "5"); // the user's `[kafka.properties]` tuning wins
        }
        let instance = self
            .options
            .instance_id
            .clone()
            .or_else(|| std::env::var("CUSTOS_INSTANCE_ID").ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .filter(|i| !i.trim().is_empty());
        // exactly_once: every instance needs its own stable transactional.id.
        // A shared default would make instances fence each other, and one
        // that changes at every start would never fence its zombie.
        let instance = match (instance, eos) {
            (Some(i), _) => i,
            (None, false) => "custos".into(),
            (None, true) => return Err(WorkerError::NoInstanceId),
        };
        if !eos && pconf.get("enable.gapless.guarantee").is_none() {
            // A record that fails for good fails the producer instead of
            // letting later records of its partition through (audit chains).
            pconf.set("enable.gapless.guarantee", "true");
        }
        if eos {
            pconf.set(
                "transactional.id",
                format!("{}-{instance}", cfg.kafka.group_id),
            );
        }
        let producer: Arc<Prod> = Arc::new(pconf.create_with_context(DeliveryContext {
            shared: shared.clone(),
            audit_topic: cfg.audit.topic.clone(),
        })?);
        if eos {
            // Fences any earlier producer with this id and aborts its open transaction.
            producer.init_transactions(startup)?;
        }
        // In an Arc so that the final commit can run on a thread of its own
        // and be given up on at the shutdown deadline.
        // Static group membership when the instance id is given explicitly
        // (CUSTOS_INSTANCE_ID: the pod name of a StatefulSet): a restarted
        // worker takes its partitions back at once instead of after the
        // session timeout. Not from HOSTNAME: two workers on one host would
        // fence each other.
        let static_id = self
            .options
            .instance_id
            .clone()
            .or_else(|| std::env::var("CUSTOS_INSTANCE_ID").ok())
            .filter(|i| !i.trim().is_empty());
        let consumer: Arc<BaseConsumer<WorkerContext>> = Arc::new(
            consumer_config(&base, cfg, static_id.as_deref()).create_with_context(
                WorkerContext {
                    shared: shared.clone(),
                    producer: producer.clone(),
                    drain,
                },
            )?,
        );
        let topics: Vec<&str> = self
            .compiled
            .streams
            .iter()
            .map(|s| s.topic.as_str())
            .collect();
        consumer.subscribe(&topics)?;
        let lineage = Lineage::new(&base, &self.bootstrap, cfg, &self.compiled)?;
        lineage.emit(&self.compiled, EventType::Start, LINEAGE_FLUSH);
        self.control.health.set_started();
        tracing::info!(policy = %self.compiled.policy.id(), streams = topics.len(), group = %cfg.kafka.group_id, "worker running");

        let by_topic: HashMap<&str, usize> = self
            .compiled
            .streams
            .iter()
            .enumerate()
            .map(|(i, s)| (s.topic.as_str(), i))
            .collect();
        let policy_id = self.compiled.policy.id();
        let ctxs: Vec<StreamCtx> = self
            .compiled
            .streams
            .iter()
            .map(|s| StreamCtx {
                metrics: self.metrics.stream(s),
                topics: s
                    .outputs
                    .iter()
                    .map(|o| Arc::from(o.topic.as_str()))
                    .collect(),
                audit: StreamAudit::new(s),
            })
            .collect();
        let audit_topic: Arc<str> = Arc::from(cfg.audit.topic.as_str());
        let audit_counts =
            ["record", "dead_letter"].map(|t| self.metrics.audit_records.with_label_values(&[t]));
        let actx = AuditCtx {
            key: &self.audit_key,
            policy: &policy_id,
            worker: &instance,
        };
        let dead_letter_topic: Arc<str> = Arc::from(cfg.dead_letter.topic.as_str());
        let limits = cfg.delivery.limits();
        let mut scratch = Scratch::default();
        let mut last_store = Instant::now();
        let mut last_retry = Instant::now();
        let (mut last_health, mut last_acks) = (Instant::now(), 0u64);
        // Per stream: partition → its topic-partition handle and audit chain
        // name (no allocation per record).
        let mut tps: Vec<HashMap<i32, (Tp, String)>> = vec![HashMap::new(); ctxs.len()];
        let interval = Duration::from_millis(cfg.delivery.transaction_interval_ms);
        let mut txn_started = Instant::now();

        let mut crashed = false;
        let result = (|| -> Result<(), WorkerError> {
            while !self.control.stop.load(Ordering::Relaxed) {
                if let Some(txn) = &shared.txn {
                    let mut t = txn.lock().unwrap_or_else(PoisonError::into_inner);
                    if t.open && txn_started.elapsed() >= interval {
                        finish(&producer, &consumer, &mut t, &shared, drain)?;
                    }
                }
                if shared.audit_failed.load(Ordering::SeqCst) {
                    return Err(WorkerError::AuditUndeliverable);
                }
                if shared.txn_unresolved.load(Ordering::SeqCst) {
                    // Set on revoke: see `finish`.
                    return Err(WorkerError::Timeout {
                        what: "a transaction commit on revoke".into(),
                        secs: drain.max(shared.txn_timeout).as_secs(),
                        reason: "its outcome is unknown, so its records are not redone: the next start settles it".into(),
                    });
                }
                if self.control.health.state_lost() {
                    // Fail closed: no governing without the subject state.
                    return Err(WorkerError::SubjectStateLost);
                }
                if last_health.elapsed() >= Duration::from_secs(1) {
                    let acks = shared.acks.load(Ordering::Relaxed);
                    let waiting = match &shared.txn {
                        Some(t) => t.lock().unwrap_or_else(PoisonError::into_inner).open,
                        None => {
                            shared
                                .tracker
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .inflight(|_| true)
                                > 0
                        }
                    };
                    let was_stalled = self.control.health.produce_stalled(now_ms());
                    self.control
                        .health
                        .produce_progress(waiting, acks != last_acks, now_ms());
                    if !was_stalled && self.control.health.produce_stalled(now_ms()) {
                        tracing::warn!("producer stalled: records in flight and no acknowledgement for 30 s (broker unreachable or refusing the producer); not ready");
                    }
                    last_acks = acks;
                    last_health = Instant::now();
                }
                if !eos && last_retry.elapsed() >= Duration::from_secs(1) {
                    resend(&producer, &shared);
                    last_retry = Instant::now();
                }
                if !eos && last_store.elapsed() >= Duration::from_millis(100) {
                    store(&consumer, &shared);
                    last_store = Instant::now();
                }
                let msg = match consumer.poll(Duration::from_millis(100)) {
                    None => continue,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "consumer error");
                        continue;
                    }
                    Some(Ok(m)) => m,
                };
                let Some(&si) = by_topic.get(msg.topic()) else {
                    continue;
                };
                let (tp, chain) = tps[si].entry(msg.partition()).or_insert_with(|| {
                    let tp: Tp = (Arc::from(msg.topic()), msg.partition());
                    let chain = chain_of(&tp);
                    (tp, chain)
                });
                let tp = tp.clone();
                let seed = shared
                    .unseeded
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&tp);
                if seed {
                    tracing::debug!(topic = %tp.0, partition = tp.1, offset = msg.offset(), "first record after assignment");
                    seed_chain(&consumer, &shared, &tp, chain, drain);
                }
                let (mut outs, record, dead) = {
                    let state = state.read().unwrap_or_else(PoisonError::into_inner);
                    govern_message(
                        &self.compiled,
                        si,
                        &ctxs[si],
                        &actx,
                        &msg,
                        &state,
                        &mut scratch,
                        &dead_letter_topic,
                        limits,
                    )
                };
                // The audit record: next in its input partition's chain, acknowledged
                // (or committed) with the outputs before the offset may move.
                let (start_head, (text, hash)) = {
                    let mut c = shared.chains.lock().unwrap_or_else(PoisonError::into_inner);
                    let start = eos.then(|| c.head(chain).map(str::to_string)).flatten();
                    (start, c.append(&self.audit_key, chain, &record))
                };
                audit_counts[usize::from(dead)].inc();
                outs.push(OutRecord {
                    audit: true,
                    topic: audit_topic.clone(),
                    key: Some(chain.as_bytes().to_vec()),
                    payload: Some(text.into_bytes()),
                    headers: Vec::new(),
                    // Written now (the input's time is in `source.timestamp`):
                    // the audit topic's retention counts from when it was written.
                    timestamp: None,
                });
                let mut generation = 0;
                if let Some(txn) = &shared.txn {
                    let mut t = txn.lock().unwrap_or_else(PoisonError::into_inner);
                    if !t.open {
                        producer.begin_transaction()?;
                        t.open = true;
                        txn_started = Instant::now();
                    }
                    let e = t.offsets.entry(tp.clone()).or_insert(TxnPart {
                        first: msg.offset(),
                        next: msg.offset() + 1,
                        start_head,
                        head: String::new(),
                    });
                    e.next = msg.offset() + 1;
                    e.head = hash;
                    t.records += 1;
                } else {
                    generation = shared
                        .tracker
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .begin(&tp, msg.offset(), outs.len() as u32, Some(hash));
                }
                let origin = Arc::new(Origin {
                    tp: tp.clone(),
                    offset: msg.offset(),
                    generation,
                });
                for out in outs {
                    send(&producer, &shared, out, origin.clone());
                }
            }

            self.control.health.set_draining();
            if self.options.crash_on_stop {
                tracing::warn!("stopping without drain or commit (crash simulation)");
                crashed = true;
                return Ok(());
            }
            // One deadline for the whole shutdown, counted from the stop.
            let deadline = shared.deadline().unwrap_or_else(|| Instant::now() + drain);
            let left = || deadline.saturating_duration_since(Instant::now());
            if let Some(txn) = &shared.txn {
                let mut t = txn.lock().unwrap_or_else(PoisonError::into_inner);
                let pending = t.records;
                let outcome = finish(&producer, &consumer, &mut t, &shared, left());
                drop(t);
                if let Err(e) = &outcome {
                    tracing::warn!(error = %e, "final transaction failed; its input will be reprocessed");
                }
                if outcome.is_err() || Instant::now() >= deadline {
                    abandon(consumer, producer, follower);
                    return Err(WorkerError::DrainIncomplete { records: pending });
                }
                consumer.unsubscribe();
                drop(consumer);
                if let Some(h) = follower {
                    let _ = h.join();
                }
                tracing::info!("worker stopped");
                return Ok(());
            }
            // Graceful stop: drain, commit, leave the group.
            tracing::info!(drain_ms = left().as_millis() as u64, "draining");
            flush(&producer, left());
            let left_over = loop {
                resend(&producer, &shared);
                let left_over = shared
                    .tracker
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .inflight(|_| true);
                if left_over == 0 || Instant::now() >= deadline {
                    if left_over > 0 {
                        tracing::warn!(
                            records = left_over,
                            "drain timeout: records in flight will be reprocessed by the next owner"
                        );
                    }
                    break left_over;
                }
                flush(&producer, Duration::from_millis(100).min(left()));
            };
            if shared.audit_failed.load(Ordering::SeqCst) {
                // Offsets stay where the undelivered audit record holds them.
                abandon(consumer, producer, follower);
                return Err(WorkerError::AuditUndeliverable);
            }
            store(&consumer, &shared);
            // Commit without blocking past the deadline: a synchronous commit
            // waits for the broker as long as librdkafka's own timeouts say
            // (~45 s with the broker down), so it runs on a thread of its own.
            let committed = {
                let (tx, rx) = std::sync::mpsc::channel();
                let c = consumer.clone();
                let spawned = std::thread::Builder::new()
                    .name("custos-final-commit".into())
                    .spawn(move || {
                        let _ = tx.send(c.commit_consumer_state(CommitMode::Sync));
                    });
                match spawned.map(|_| rx.recv_timeout(left())) {
                    Ok(Ok(
                        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)),
                    )) => true,
                    Ok(Ok(Err(e))) => {
                        tracing::warn!(error = %e, "final commit failed");
                        false
                    }
                    Ok(Err(_)) | Err(_) => {
                        tracing::warn!("final commit not confirmed before the shutdown deadline");
                        false
                    }
                }
            };
            if left_over > 0 || !committed {
                abandon(consumer, producer, follower);
                return Err(WorkerError::DrainIncomplete {
                    records: left_over as u64,
                });
            }
            consumer.unsubscribe();
            drop(consumer);
            if let Some(h) = follower {
                let _ = h.join();
            }
            tracing::info!("worker stopped");
            Ok(())
        })();
        if !crashed {
            // Within what is left of the shutdown deadline (a moment at least).
            let left = shared
                .remaining(LINEAGE_FLUSH)
                .clamp(Duration::from_millis(500), LINEAGE_FLUSH);
            lineage.emit(
                &self.compiled,
                if result.is_ok() {
                    EventType::Complete
                } else {
                    EventType::Fail
                },
                left,
            );
        }
        if matches!(result, Err(WorkerError::DrainIncomplete { .. })) {
            // Out of time: no graceful close of the lineage producer either.
            std::mem::forget(lineage);
        }
        result
    }
}

/// How long lineage events may take to be delivered (they are best effort).
const LINEAGE_FLUSH: Duration = Duration::from_secs(6);

/// Leaves without the clients' graceful close, which waits for the broker
/// (leave group, final requests) as long as librdkafka's own timeouts say:
/// the shutdown deadline has passed and the process is about to exit.
fn abandon(
    consumer: Arc<BaseConsumer<WorkerContext>>,
    producer: Arc<Prod>,
    follower: Option<std::thread::JoinHandle<()>>,
) {
    std::mem::forget(consumer);
    std::mem::forget(producer);
    drop(follower); // detached: it watches the stop flag
}

/// How a transaction ended, as far as this worker can tell.
enum TxnEnd {
    Committed,
    /// Never committed (a delivery failed, the offsets were not accepted, or
    /// librdkafka says the commit failed and requires an abort): abort and redo.
    Abort(KafkaError),
    /// The commit was sent and its outcome is unknown (still retriable when
    /// time ran out, or an error that is neither abortable nor fatal): it may
    /// complete on the broker, so the records must not be redone here.
    Unresolved(KafkaError),
    /// Fenced by another instance, or a broker without transactions.
    Fatal(KafkaError),
}

fn txn_fatal(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(r) if r.is_fatal() || r.code() == RDKafkaErrorCode::UnsupportedFeature)
}

fn txn_retriable(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(r) if r.is_retriable() && !r.is_fatal() && !r.txn_requires_abort())
}

fn txn_requires_abort(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(r) if r.txn_requires_abort())
}

/// Sends the offsets and commits, following librdkafka's rules: a
/// retriable error of `commit_transaction` means "call it again" (the commit
/// may already be under way on the broker, so aborting and redoing the
/// records would write them twice); only an error that requires an abort
/// means the transaction did not commit.
fn end_transaction(
    producer: &Prod,
    consumer: &BaseConsumer<WorkerContext>,
    tpl: &TopicPartitionList,
    timeout: Duration,
    txn_timeout: Duration,
) -> TxnEnd {
    // The transaction can be committed until the coordinator aborts it
    // (transaction.timeout.ms): retry until then, each call bounded by `timeout`.
    let deadline = Instant::now() + timeout.max(txn_timeout);
    let Some(cgm) = consumer.group_metadata() else {
        return TxnEnd::Abort(KafkaError::MessageProduction(
            RDKafkaErrorCode::InvalidTransactionalState,
        ));
    };
    loop {
        match producer.send_offsets_to_transaction(tpl, &cgm, timeout) {
            Ok(()) => break,
            Err(e) if txn_fatal(&e) => return TxnEnd::Fatal(e),
            // Nothing is committed before EndTxn: an abort is always safe here.
            Err(e) if txn_retriable(&e) && Instant::now() < deadline => {
                tracing::debug!(error = %e, "sending the offsets to the transaction: retrying");
            }
            Err(e) => return TxnEnd::Abort(e),
        }
    }
    // rdkafka's commit flushes first, polling in 100 ms steps while our poll
    // thread takes the delivery reports: flush here.
    flush(producer, timeout);
    loop {
        match producer.commit_transaction(timeout) {
            Ok(()) => return TxnEnd::Committed,
            Err(e) if txn_fatal(&e) => return TxnEnd::Fatal(e),
            Err(e) if txn_requires_abort(&e) => return TxnEnd::Abort(e),
            Err(e) if txn_retriable(&e) && Instant::now() < deadline => {
                tracing::warn!(error = %e, "transaction commit not confirmed yet: retrying the commit");
            }
            Err(e) => return TxnEnd::Unresolved(e),
        }
    }
}

/// Commits the open transaction with the consumed offsets; when it did not
/// commit (a failed delivery, or an error that requires an abort), aborts
/// and rewinds the partitions to the transaction's first offsets so the
/// records are processed again. A commit whose outcome stays unknown, and a
/// fatal error (another instance with our transactional id fenced us), stop
/// the worker: the next start's `init_transactions` settles the transaction
/// and the consumer resumes from the offsets it committed, if it did.
fn finish(
    producer: &Prod,
    consumer: &BaseConsumer<WorkerContext>,
    t: &mut Txn,
    shared: &Shared,
    timeout: Duration,
) -> Result<(), WorkerError> {
    if !t.open {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (tp, part) in &t.offsets {
        add_offset(&mut tpl, tp, part.next, Some(&part.head));
    }
    let failed = shared.txn_failed.swap(false, Ordering::SeqCst);
    // While stopping, retries end with the shutdown deadline (an unresolved
    // commit is then settled by the next start's init_transactions).
    let txn_timeout = match shared.deadline() {
        Some(d) => d.saturating_duration_since(Instant::now()),
        None => shared.txn_timeout,
    };
    let end = if failed {
        TxnEnd::Abort(KafkaError::MessageProduction(
            RDKafkaErrorCode::InvalidTransactionalState,
        ))
    } else {
        end_transaction(producer, consumer, &tpl, timeout, txn_timeout)
    };
    let e = match end {
        TxnEnd::Committed => {
            shared
                .metrics
                .transactions
                .with_label_values(&["committed"])
                .inc();
            if tracing::enabled!(tracing::Level::DEBUG) {
                let mut parts: Vec<String> = t
                    .offsets
                    .iter()
                    .map(|(tp, p)| format!("{}/{}:{}..{}", tp.0, tp.1, p.first, p.next))
                    .collect();
                parts.sort();
                tracing::debug!(records = t.records, offsets = %parts.join(" "), "transaction committed");
            }
            let done: i64 = t.offsets.values().map(|p| p.next - p.first).sum();
            shared.finished.fetch_add(done as u64, Ordering::Relaxed);
            // Offsets committed in a transaction are not the consumer's own
            // commits: librdkafka's consumer lag stays unknown. Stored here
            // (auto-commit is off, nothing else commits them), they give the
            // statistics a stored-offset lag to report instead.
            if let Err(e) = consumer.store_offsets(&tpl) {
                tracing::debug!(error = %e, "store offsets after a commit");
            }
            *t = Txn::default();
            return Ok(());
        }
        TxnEnd::Fatal(e) => {
            tracing::error!(error = %e, "fenced or fatal transaction error: stepping down");
            return Err(WorkerError::Client(e));
        }
        TxnEnd::Unresolved(e) => {
            // Redoing the records could write them a second time; stopping
            // cannot: the restart settles the transaction either way.
            tracing::error!(error = %e, records = t.records, "transaction commit unconfirmed: stopping without redoing its records (the next start settles it)");
            shared.txn_unresolved.store(true, Ordering::SeqCst);
            return Err(WorkerError::Timeout {
                what: "a transaction commit".into(),
                secs: timeout.max(txn_timeout).as_secs(),
                reason: format!("{e}; its outcome is unknown, so its records are not redone: the next start settles it"),
            });
        }
        TxnEnd::Abort(e) => e,
    };
    tracing::warn!(error = %e, records = t.records, "transaction failed: aborting and reprocessing");
    shared
        .metrics
        .transactions
        .with_label_values(&["aborted"])
        .inc();
    let deadline = Instant::now() + timeout.max(txn_timeout);
    loop {
        match producer.abort_transaction(timeout) {
            Ok(()) => break,
            Err(a) if txn_retriable(&a) && Instant::now() < deadline => {
                tracing::warn!(error = %a, "transaction abort not confirmed yet: retrying the abort");
            }
            Err(a) => {
                // Not aborted for sure: redoing the records now could write
                // them twice; the next start's init_transactions aborts it.
                tracing::error!(error = %a, "transaction abort failed: stopping");
                shared.txn_unresolved.store(true, Ordering::SeqCst);
                return Err(WorkerError::Client(a));
            }
        }
    }
    // Failures reported for the aborted records belong to it, not to the next one.
    shared.txn_failed.store(false, Ordering::SeqCst);
    let mut chains = shared.chains.lock().unwrap_or_else(PoisonError::into_inner);
    for (tp, part) in &t.offsets {
        if let Err(se) = consumer.seek(&tp.0, tp.1, Offset::Offset(part.first), timeout) {
            tracing::warn!(error = %se, partition = tp.1, "rewind after abort failed");
        }
        // The aborted audit records never become visible: the chain
        // goes on from where the transaction started.
        match &part.start_head {
            Some(h) => chains.set_head(chain_of(tp), h.clone()),
            None => chains.forget(&chain_of(tp)),
        }
    }
    *t = Txn::default();
    Ok(())
}

/// Waits until every produced record is acknowledged (or `timeout`); true when all are.
///
/// rdkafka's `flush` polls the delivery-report queue itself in 100 ms steps,
/// racing the threaded producer's own poll thread for the reports, so each
/// call took a full 100 ms; this asks librdkafka without blocking (which
/// also makes it send lingering batches now) and sleeps briefly instead.
fn flush(producer: &Prod, timeout: Duration) -> bool {
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

fn consumer_config(base: &ClientConfig, cfg: &Config, static_id: Option<&str>) -> ClientConfig {
    let eos = cfg.delivery.guarantee == Guarantee::ExactlyOnce;
    let mut c = base.clone();
    // Defaults the user's `[kafka.properties]` may change.
    for (k, v) in [
        ("statistics.interval.ms", "5000"),
        ("auto.offset.reset", "earliest"),
    ] {
        if c.get(k).is_none() {
            c.set(k, v);
        }
    }
    if let Some(id) = static_id {
        if c.get("group.instance.id").is_none() {
            c.set("group.instance.id", id);
        }
    }
    c.set("group.id", &cfg.kafka.group_id)
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    if eos {
        // Offsets travel in the transaction; inputs written transactionally are read committed.
        c.set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
    } else {
        c.set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000");
    }
    c
}

/// Reads a message's headers without trusting their encoding.
#[allow(unsafe_code)]
pub(crate) fn raw_headers(msg: &BorrowedMessage<'_>) -> pipeline::RawHeaders {
    let Some(h) = msg.headers() else {
        return Vec::new();
    };
    let ptr =
        h as *const rdkafka::message::BorrowedHeaders as *const rdkafka::types::RDKafkaHeaders;
    let mut out = Vec::with_capacity(h.count());
    for idx in 0..h.count() {
        let mut name: *const std::ffi::c_char = std::ptr::null();
        let mut value: *const std::ffi::c_void = std::ptr::null();
        let mut size: usize = 0;
        // SAFETY: `ptr` is the librdkafka headers object that `BorrowedHeaders`
        // wraps (rdkafka builds the reference from that very pointer), valid
        // for the lifetime of `msg`; `idx` is below its count; librdkafka
        // returns a NUL-terminated name and a value of `size` bytes or null.
        // The bytes are copied before `msg` can go away.
        unsafe {
            let err = rdkafka::bindings::rd_kafka_header_get_all(
                ptr, idx, &mut name, &mut value, &mut size,
            );
            if err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                || name.is_null()
            {
                continue;
            }
            let n = std::ffi::CStr::from_ptr(name).to_bytes().to_vec();
            let v = (!value.is_null())
                .then(|| std::slice::from_raw_parts(value.cast::<u8>(), size).to_vec());
            out.push((n, v));
        }
    }
    out
}

/// A message's headers as owned pairs, for resending our own records
/// (custos writes only UTF-8 header names).
fn owned_headers(msg: &impl Message) -> Vec<(String, Option<Vec<u8>>)> {
    let Some(h) = msg.headers() else {
        return Vec::new();
    };
    (0..h.count())
        .filter_map(|i| h.try_get(i))
        .map(|x| (x.key.to_string(), x.value.map(<[u8]>::to_vec)))
        .collect()
}

/// Stores every offset that became safe (auto-commit then commits it).
fn store(consumer: &BaseConsumer<WorkerContext>, shared: &Shared) {
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

fn send(producer: &Prod, shared: &Shared, out: OutRecord, origin: Arc<Origin>) {
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
                shared
                    .metrics
                    .produce_failures
                    .with_label_values(&[&out.topic])
                    .inc();
                let is_stub = out.payload.is_none() && out.topic == shared.dead_letter_topic;
                let retry = match permanent(&e) {
                    Some(reason) if !is_stub => {
                        tracing::error!(topic = %out.topic, error = %e, "record refused; reported on the dead-letter topic instead");
                        refused_record(shared, &out.topic, &origin, reason)
                    }
                    _ => {
                        tracing::error!(topic = %out.topic, error = %e, "produce refused; will retry");
                        out.clone()
                    }
                };
                shared
                    .retries
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((retry, origin.clone()));
                return;
            }
        }
    }
}

fn resend(producer: &Prod, shared: &Shared) {
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

/// One stream's per-record context, resolved at start.
struct StreamCtx {
    metrics: StreamMetrics,
    /// Output topic per plan output.
    topics: Vec<Arc<str>>,
    audit: StreamAudit,
}

/// What every audit record of this worker shares.
struct AuditCtx<'a> {
    key: &'a AuditKey,
    policy: &'a str,
    worker: &'a str,
}

/// Governs one consumed message into the records to produce (outputs or a
/// dead letter) and its audit record (not yet sealed); true for a dead letter.
#[allow(clippy::too_many_arguments)]
fn govern_message(
    compiled: &Compiled,
    si: usize,
    ctx: &StreamCtx,
    actx: &AuditCtx<'_>,
    msg: &BorrowedMessage<'_>,
    state: &MemoryState,
    scratch: &mut Scratch,
    dead_letter_topic: &Arc<str>,
    limits: engine::Limits,
) -> (Vec<OutRecord>, audit::Unsealed, bool) {
    let plan = &compiled.streams[si];
    let sm = &ctx.metrics;
    let timer = sm.processing.start_timer();
    let raw = raw_headers(msg);
    let input = pipeline::Input {
        topic: msg.topic(),
        partition: msg.partition(),
        offset: msg.offset(),
        timestamp: msg.timestamp().to_millis(),
        key: msg.key(),
        value: msg.payload(),
        headers: &raw,
    };
    let cx = pipeline::Context {
        policy: actx.policy,
        worker: actx.worker,
        now_ms: now_ms(),
        limits,
    };
    let processed = pipeline::process(
        plan,
        Some((&ctx.audit, actx.key)),
        &input,
        state,
        &cx,
        scratch,
    );
    sm.observe(&processed.deltas(), &input.source());
    let pipeline::Processed { written, audit } = processed;
    let audit = audit.expect("asked for an audit record");
    let result = match written {
        pipeline::Written::DeadLetter(d) => {
            let dl = OutRecord {
                audit: false,
                topic: dead_letter_topic.clone(),
                key: d.key,
                payload: d.value,
                headers: d.headers,
                timestamp: input.timestamp,
            };
            (vec![dl], audit, true)
        }
        pipeline::Written::Governed {
            governed,
            timestamp,
        } => {
            let mut outs = Vec::with_capacity(governed.outcomes.len() + 1);
            for (i, o) in governed.outcomes.into_iter().enumerate() {
                if let Outcome::Emitted(out) = o {
                    outs.push(OutRecord {
                        audit: false,
                        topic: ctx.topics[i].clone(),
                        key: out.key,
                        payload: Some(out.value),
                        headers: out.headers.into_iter().map(|(k, v)| (k, Some(v))).collect(),
                        timestamp,
                    });
                }
            }
            (outs, audit, false)
        }
    };
    timer.observe_duration();
    result
}
