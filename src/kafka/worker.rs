//! The worker loop: consume every stream's topic in one group, govern each
//! record through [`crate::pipeline`], produce each entitled output and dead
//! letter, and store an input offset only when it and everything before it
//! in its partition is acknowledged (at-least-once), or commit it in the
//! transaction that holds its outputs (exactly_once).
//!
//! This file is orchestration: start-up (clients, topics, chain seeding,
//! state catch-up) and the consumer loop in [`Worker::run`]. Its parts:
//! `client` (consumer configuration, raw headers), `delivery` (send, retry,
//! delivery reports, refused records), `rebalance` (statistics and the
//! revoke drain), `txn` (ending a transaction), `lineage_out` (the lineage
//! producer), `specs` (the topics a policy writes). It is over 600 lines
//! because `run` is one loop whose steps share a dozen locals (consumer,
//! producer, transaction timer, health clocks); splitting it further would
//! pass them all around for no reader's benefit.
//!
//! Threads: the consumer loop runs on the caller's thread (librdkafka's
//! rebalance callbacks run inside its `poll`); delivery reports arrive on the
//! threaded producer's poll thread and only touch the offset tracker; the
//! consent/erasure reader has its own thread. Record content is never logged.
//!
//! Lock order of [`Shared`]: `txn` before `chains` (ending a transaction
//! rolls chain heads back while it holds the transaction); every other lock
//! (`tracker`, `retries`, `unseeded`, `lag_series`, `stop_deadline`, the
//! subject state's read lock) is taken alone and released before another is
//! taken. The delivery thread takes only `tracker` and `retries`.
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

use super::keys::KafkaKeys;
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
use crate::state::{MemoryState, SubjectState, WithKeys};
use crate::telemetry::events::{ChainRestarted, Event, RestartCause};
use crate::telemetry::{Metrics, StreamMetrics};

mod avro_in;
mod client;
mod commit;
mod delivery;
mod erasure;
mod lineage_out;
mod rebalance;
mod specs;
mod summary;
mod txn;

pub(crate) use self::client::raw_headers;
use self::client::*;
use self::delivery::*;
use self::erasure::Eraser;
use self::lineage_out::*;
use self::rebalance::*;
pub use self::specs::topic_specs;
use self::summary::{Count, Summaries, SummaryCtx, Which};
use self::txn::*;

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
    /// Output topics to treat as compacted when the broker cannot describe
    /// topic configurations (librdkafka's mock cluster, the embedded
    /// broker): erasures tombstone the subject's keys there.
    pub assume_compacted: Vec<String>,
    /// The clock of the retention sweeper (tests inject one).
    pub retention_clock: super::retention::Clock,
    /// How often compacted outputs are swept for expired keys (default 60 s).
    pub retention_interval: Option<Duration>,
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
    /// at_least_once: this record's outputs not yet acknowledged; the last
    /// acknowledgement acknowledges the record in the tracker (one lock per
    /// record instead of one per output). A failed output is sent again
    /// with the same origin, so it is counted once, when it lands.
    pending: std::sync::atomic::AtomicU32,
    /// A summary audit record (at_least_once): the records it counts; its
    /// acknowledgement counts as one of theirs.
    covers: Vec<Arc<Origin>>,
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
    /// `audit.level = "summary"`: the open summaries.
    summaries: Option<Mutex<Summaries>>,
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
                        ChainRestarted {
                            topic: e.topic(),
                            partition: e.partition(),
                            cause: RestartCause::NoCommitMetadata,
                            error: None,
                        }
                        .emit(&shared.metrics);
                    }
                }
            }
        }
        Err(e) => {
            ChainRestarted {
                topic: &tp.0,
                partition: tp.1,
                cause: RestartCause::CommittedUnreadable,
                error: Some(&e),
            }
            .emit(&shared.metrics);
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

impl Worker {
    /// Runs until `control.stop` is set; returns after draining and committing.
    ///
    /// # Errors
    /// Startup failures (unreachable broker, topics, retention) and fatal
    /// client errors. Bad records never stop the worker.
    pub fn run(self) -> Result<(), WorkerError> {
        let cfg = &self.config;
        let eos = cfg.delivery.guarantee == Guarantee::ExactlyOnce;
        let mut avro = avro_in::open(cfg, &self.compiled)?;
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

        // Data keys before the erasure topic: reading an erasure shreds the
        // subject's keys, which must be known by then.
        let keys = KafkaKeys::start(
            &base,
            &cfg.encryption.keys_topic,
            &self.compiled,
            &self.audit_key,
            &self.control,
            startup,
            &self.metrics,
        )?;
        let (keys, keys_reader) = match keys {
            Some((k, h)) => (Some(k), Some(h)),
            None => (None, None),
        };
        let on_erased: Option<subjects::OnErased> = keys.clone().map(|k| {
            let hook: subjects::OnErased = Arc::new(move |ids: &[String]| {
                // The group member that carries the erasure out shreds too,
                // and stops (to redo it) if that fails; here it is logged.
                if let Err(e) = k.shred(ids) {
                    tracing::error!(error = %e, "data keys of an erased subject not destroyed yet");
                }
            });
            hook
        });
        let state: SharedState =
            Arc::new(RwLock::new(MemoryState::for_policy(&self.compiled.policy)));
        let follower = subjects::load_and_follow(
            &base,
            &self.compiled.policy,
            state.clone(),
            self.metrics.clone(),
            &self.control,
            startup,
            on_erased,
        )?;
        drop(keys_reader); // detached: it watches the stop flag

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
            summaries: (cfg.audit.level == AuditLevel::Summary).then(|| {
                Mutex::new(Summaries::new(SummaryCtx {
                    key: self.audit_key.clone(),
                    policy: self.compiled.policy.id(),
                    worker: instance.clone(),
                    topic: Arc::from(cfg.audit.topic.as_str()),
                    audits: self.compiled.streams.iter().map(StreamAudit::new).collect(),
                    interval: Duration::from_millis(cfg.audit.summary_interval_ms),
                    written: self.metrics.audit_records.with_label_values(&["summary"]),
                }))
            }),
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
        let mut topics: Vec<&str> = self
            .compiled
            .streams
            .iter()
            .map(|s| s.topic.as_str())
            .collect();
        // The group carries out each erasure record once (see `erasure`).
        let erasure_topic = self.compiled.policy.erasure_topic.as_deref();
        topics.extend(erasure_topic);
        consumer.subscribe(&topics)?;
        // Compacted outputs get erasure and retention tombstones.
        let outputs: Vec<&str> = self
            .compiled
            .streams
            .iter()
            .flat_map(|s| s.outputs.iter().map(|o| o.topic.as_str()))
            .collect();
        let compacted = match topics::compacted(&base, &outputs, Duration::from_secs(10)) {
            Ok(c) => c,
            Err(e) => {
                if self.options.assume_compacted.is_empty() {
                    tracing::warn!(error = %e, "cannot read the output topics' cleanup.policy: no erasure or retention tombstones are written to them");
                }
                self.options.assume_compacted.iter().cloned().collect()
            }
        };
        let eraser = erasure_topic.map(|_| Eraser::new(&self.compiled, &compacted));
        let sweeper = super::retention::start(
            &base,
            &cfg.kafka.group_id,
            super::retention::targets(&self.compiled, &compacted),
            super::retention::Sweep {
                audit_topic: cfg.audit.topic.clone(),
                audit_key: self.audit_key.clone(),
                policy: self.compiled.policy.id(),
                worker: instance.clone(),
                interval: self
                    .options
                    .retention_interval
                    .unwrap_or(Duration::from_secs(60)),
                clock: self.options.retention_clock.clone(),
            },
            self.metrics.clone(),
            self.control.stop.clone(),
        )?;
        drop(sweeper); // detached: it watches the stop flag
        let mut lineage = Lineage::new(&base, &self.bootstrap, cfg, &self.compiled, &self.metrics)?;
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
        let audit_counts = ["record", "dead_letter", "erasure"]
            .map(|t| self.metrics.audit_records.with_label_values(&[t]));
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
        // (The last slot: the erasure topic.)
        let mut tps: Vec<HashMap<i32, (Tp, String)>> = vec![HashMap::new(); ctxs.len() + 1];
        let interval = Duration::from_millis(cfg.delivery.transaction_interval_ms);
        let mut txn_started = Instant::now();

        let summarize = shared.summaries.is_some();
        let mut end_txn_now = false;
        let mut last_summaries = Instant::now();
        let mut crashed = false;
        let result = (|| -> Result<(), WorkerError> {
            while !self.control.stop.load(Ordering::Relaxed) {
                if let Some(txn) = &shared.txn {
                    let mut t = txn.lock().unwrap_or_else(PoisonError::into_inner);
                    if t.open && (txn_started.elapsed() >= interval || end_txn_now) {
                        end_txn_now = false;
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
                if summarize && !eos && last_summaries.elapsed() >= Duration::from_millis(10) {
                    summary::write(&producer, &shared, Which::Due);
                    last_summaries = Instant::now();
                }
                if !eos && last_store.elapsed() >= Duration::from_millis(100) {
                    store(&consumer, &shared);
                    last_store = Instant::now();
                }
                if let Some(a) = avro.as_mut() {
                    let due = a.due(&self.metrics, &self.control.health);
                    if !due.is_empty() {
                        let mut tpl = TopicPartitionList::new();
                        for tp in &due {
                            tpl.add_partition(&tp.0, tp.1);
                        }
                        // A partition revoked meanwhile is not ours to resume.
                        if let Err(e) = consumer.resume(&tpl) {
                            tracing::debug!(error = %e, "resume after the registry backoff");
                        }
                    }
                }
                let msg = match consumer.poll(Duration::from_millis(100)) {
                    None => continue,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "consumer error");
                        continue;
                    }
                    Some(Ok(m)) => m,
                };
                let stream = by_topic.get(msg.topic()).copied();
                let slot = match stream {
                    Some(si) => si,
                    None if eraser.is_some() && erasure_topic == Some(msg.topic()) => ctxs.len(),
                    None => continue,
                };
                let (tp, chain) = tps[slot].entry(msg.partition()).or_insert_with(|| {
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
                let (mut outs, record, kind) = match (stream, &eraser) {
                    (None, Some(eraser)) => {
                        let (outs, record) =
                            eraser.execute(&msg, &actx, keys.as_deref(), &state)?;
                        (outs, Audited::Record(record), 2)
                    }
                    (None, None) => continue,
                    (Some(si), _) => {
                        // Avro: the record's schema, compiled once per id. While the
                        // registry is down, its partition waits (paused, rewound).
                        let avro_in = match (avro.as_mut(), self.compiled.policy.streams[si].format)
                        {
                            (Some(a), Format::Avro) => {
                                if seed {
                                    // A new assignment starts from the committed offset:
                                    // whatever this worker paused before is void.
                                    a.forget(&tp);
                                }
                                if a.is_paused(&tp) {
                                    // Fetched before the pause: it comes again after the rewind.
                                    continue;
                                }
                                match msg.payload() {
                                    None => Some(AvroIn::Dead(String::new())),
                                    Some(v) => match a.lookup(
                                        &self.compiled,
                                        si,
                                        v,
                                        &self.metrics,
                                        &self.control.health,
                                    )? {
                                        avro_in::Lookup::Ready(c) => Some(AvroIn::Ready(c)),
                                        avro_in::Lookup::Dead(why) => Some(AvroIn::Dead(why)),
                                        avro_in::Lookup::Retry => {
                                            let mut tpl = TopicPartitionList::new();
                                            tpl.add_partition(&tp.0, tp.1);
                                            consumer.pause(&tpl)?;
                                            consumer.seek(
                                                &tp.0,
                                                tp.1,
                                                Offset::Offset(msg.offset()),
                                                Duration::from_secs(10),
                                            )?;
                                            a.paused(tp.clone(), msg.offset());
                                            continue;
                                        }
                                    },
                                }
                            }
                            _ => None,
                        };
                        let (outs, record, dead) = {
                            let state = state.read().unwrap_or_else(PoisonError::into_inner);
                            let with_keys = keys.as_deref().map(|k| WithKeys {
                                state: &*state,
                                keys: k,
                            });
                            let subjects: &dyn SubjectState = match &with_keys {
                                Some(w) => w,
                                None => &*state,
                            };
                            govern_message(
                                &self.compiled,
                                si,
                                &ctxs[si],
                                avro_in.as_ref(),
                                &actx,
                                &msg,
                                subjects,
                                &mut scratch,
                                &dead_letter_topic,
                                limits,
                                summarize,
                            )
                        };
                        // A value that should have been encrypted was redacted for
                        // want of a key: write nothing, stop, redo it on restart.
                        if let Some(why) = keys.as_deref().and_then(KafkaKeys::failure) {
                            return Err(WorkerError::Keys(why));
                        }
                        (outs, record, usize::from(dead))
                    }
                };
                // The audit record: next in its input partition's chain, acknowledged
                // (or committed) with the outputs before the offset may move. A
                // summary's record is written later and covers this offset then.
                let (start_head, hash, count) = {
                    let mut c = shared.chains.lock().unwrap_or_else(PoisonError::into_inner);
                    let start = eos.then(|| c.head(chain).map(str::to_string)).flatten();
                    match record {
                        Audited::Record(record) => {
                            let (text, hash) = c.append(&self.audit_key, chain, &record);
                            audit_counts[kind].inc();
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
                            (start, Some(hash), None)
                        }
                        Audited::Count(count) => (start, None, Some(count)),
                    }
                };
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
                    if let Some(hash) = hash {
                        e.head = hash;
                    }
                    t.records += 1;
                } else {
                    generation = shared
                        .tracker
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .begin(&tp, msg.offset(), 1, hash);
                }
                // Counted in a summary (at_least_once): the record also waits
                // for the summary's acknowledgement.
                let waits = outs.len() + usize::from(count.is_some() && !eos);
                let origin = Arc::new(Origin {
                    tp: tp.clone(),
                    offset: msg.offset(),
                    generation,
                    pending: std::sync::atomic::AtomicU32::new(waits as u32),
                    covers: Vec::new(),
                });
                let full = match (&count, &shared.summaries) {
                    (Some(count), Some(s)) => {
                        let back = s
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .goes_back(&tp, msg.offset());
                        if back {
                            summary::write(
                                &producer,
                                &shared,
                                Which::Partitions(std::slice::from_ref(&tp)),
                            );
                        }
                        s.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .add(slot, &origin, count, !eos)
                    }
                    _ => false,
                };
                for out in outs {
                    send(&producer, &shared, out, origin.clone());
                }
                if full && !eos {
                    summary::write(&producer, &shared, Which::Due);
                } else if full {
                    // exactly_once: a full summary ends its transaction.
                    end_txn_now = true;
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
            summary::write(&producer, &shared, Which::All);
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
            let outcome = commit::final_commit(&consumer, deadline);
            let moved_on = matches!(outcome, commit::FinalCommit::GroupMovedOn(_));
            let committed = match outcome {
                commit::FinalCommit::Committed => true,
                commit::FinalCommit::GroupMovedOn(e) => {
                    // Everything was delivered; only the offsets are not
                    // committed, as when partitions are lost at a rebalance.
                    tracing::warn!(error = %e, "the group took the partitions back before the final commit (membership lost, e.g. after an outage longer than the session timeout); everything was delivered, the next owner processes the records since the last commit again");
                    true
                }
                commit::FinalCommit::Failed(Some(e)) => {
                    tracing::warn!(error = %e, "final commit failed");
                    false
                }
                commit::FinalCommit::Failed(None) => {
                    tracing::warn!("final commit not confirmed before the shutdown deadline");
                    false
                }
            };
            if left_over > 0 || !committed {
                abandon(consumer, producer, follower);
                return Err(WorkerError::DrainIncomplete {
                    records: left_over as u64,
                });
            }
            if moved_on {
                // No graceful close: the membership is over (there is no
                // group to leave), and librdkafka's close of a consumer whose
                // assignment was lost can wait on the coordinator unbounded.
                abandon(consumer, producer, follower);
                tracing::info!("worker stopped");
                return Ok(());
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

thread_local! {
    /// The worker loop's buffers for Avro records (decoded JSON, output tape).
    static AVRO_BUFFERS: std::cell::RefCell<(Vec<u8>, crate::codec::Tape)> =
        std::cell::RefCell::new((Vec::new(), crate::codec::Tape::default()));
}

/// An Avro value decoded into the JSON the engine governs, or why not.
fn decode_avro<'j>(
    c: &avro_in::AvroCtx,
    payload: Option<&[u8]>,
    max_len: usize,
    json: &'j mut Vec<u8>,
    tape: &mut crate::codec::Tape,
) -> Result<&'j [u8], (engine::DeadLetterReason, String)> {
    use crate::avro::value::{decode_limited, DecodeError};
    use engine::DeadLetterReason;
    let Some(payload) = payload else {
        return Ok(&[]);
    };
    let (id, body) =
        crate::avro::split_wire(payload).map_err(|why| (DeadLetterReason::Schema, why))?;
    match decode_limited(&c.sp.writer.root, body, json, tape, max_len) {
        Ok(()) => Ok(json.as_slice()),
        Err(DecodeError::TooLarge(why)) => Err((DeadLetterReason::TooLarge, why)),
        Err(DecodeError::Bad(e)) => Err((
            DeadLetterReason::Schema,
            format!("the value does not decode with schema id {id}: {e}"),
        )),
    }
}

/// How an Avro record is read: its compiled schema, or why it cannot be.
enum AvroIn {
    Ready(Arc<avro_in::AvroCtx>),
    Dead(String),
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

/// What a governed record leaves for the audit trail.
enum Audited {
    /// Its own record (not yet sealed).
    Record(audit::Unsealed),
    /// `level = "summary"`: what it adds to its partition's summary.
    Count(Count),
}

/// Governs one consumed message into the records to produce (outputs or a
/// dead letter) and its audit record (not yet sealed) or what it counts in
/// its summary; true for a dead letter.
#[allow(clippy::too_many_arguments)]
fn govern_message(
    compiled: &Compiled,
    si: usize,
    ctx: &StreamCtx,
    avro: Option<&AvroIn>,
    actx: &AuditCtx<'_>,
    msg: &BorrowedMessage<'_>,
    state: &dyn SubjectState,
    scratch: &mut Scratch,
    dead_letter_topic: &Arc<str>,
    limits: engine::Limits,
    summary: bool,
) -> (Vec<OutRecord>, Audited, bool) {
    let (plan, ctx) = match avro {
        Some(AvroIn::Ready(c)) => (&c.sp.plan, &c.ctx),
        _ => (&compiled.streams[si], ctx),
    };
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
    // Summaries count records: no record of each is built.
    let audit_with = (!summary).then_some((&ctx.audit, actx.key));
    let processed = match avro {
        None => pipeline::process(plan, audit_with, &input, state, &cx, scratch),
        Some(AvroIn::Dead(why)) => {
            let none = |_: usize, _: &[u8], _: Option<&engine::Tape>| -> Result<Vec<u8>, String> {
                Err(String::new())
            };
            pipeline::process_decoded(
                plan,
                audit_with,
                &input,
                Err((engine::DeadLetterReason::Schema, why.clone())),
                state,
                &cx,
                scratch,
                &mut { none },
            )
        }
        Some(AvroIn::Ready(c)) => AVRO_BUFFERS.with(|b| {
            // The decoded JSON and the output tape, reused record after record.
            let (json, tape) = &mut *b.borrow_mut();
            json.clear();
            let decoded = decode_avro(
                c,
                msg.payload(),
                limits.max_record_bytes,
                json,
                scratch.decoded_tape(),
            );
            let mut encode = |o: usize, j: &[u8], made: Option<&engine::Tape>| {
                avro_in::encode_output(c, o, j, made, tape)
            };
            pipeline::process_decoded(
                plan,
                audit_with,
                &input,
                decoded,
                state,
                &cx,
                scratch,
                &mut encode,
            )
        }),
    };
    let deltas = processed.deltas();
    sm.observe(&deltas, || input.source());
    let audit = match processed.audit {
        Some(a) => Audited::Record(a),
        None => Audited::Count(Count {
            outcomes: deltas.suppressions().collect(),
            dead_letter: deltas.dead_letter.map(engine::DeadLetterReason::code),
            detections: deltas.detections.to_vec(),
        }),
    };
    let written = processed.written;
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
