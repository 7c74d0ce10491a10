//! `audit.level = "summary"`: one chained audit record per input partition
//! per flush instead of one per input record.
//!
//! A governed record is counted into its partition's open summary. Under
//! at_least_once its offset waits for that summary as it waits for its
//! outputs (the summary's delivery acknowledges every record it covers), so
//! no offset is committed before the audit record that counts it is
//! acknowledged; summaries are written every `audit.summary_interval_ms`, at
//! [`MAX_RECORDS`], on revoke and on stop. Under exactly_once each
//! transaction writes its partitions' summaries before it commits, so a
//! summary is committed or aborted with the records it counts.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A summary is written at the latest when it counts this many records
/// (bounds the memory its offsets and acknowledgements hold; `audit verify`
/// refuses a summary claiming more).
pub(super) const MAX_RECORDS: usize = audit::SUMMARY_MAX_RECORDS as usize;

/// What every summary of this worker shares.
pub(super) struct SummaryCtx {
    pub(super) key: AuditKey,
    pub(super) policy: String,
    pub(super) worker: String,
    pub(super) topic: Arc<str>,
    /// Per stream of the policy.
    pub(super) audits: Vec<StreamAudit>,
    pub(super) interval: Duration,
    pub(super) written: prometheus::IntCounter,
}

/// One input partition's summary, still open.
pub(super) struct Open {
    stream: usize,
    tally: audit::Tally,
    /// at_least_once: the records counted, each waiting for this summary.
    covers: Vec<Arc<Origin>>,
    generation: u64,
    since: Instant,
}

/// The open summaries (`level = "summary"`).
pub(super) struct Summaries {
    pub(super) ctx: SummaryCtx,
    open: HashMap<Tp, Open>,
}

/// What one governed record adds to its partition's summary.
pub(super) struct Count {
    pub(super) outcomes: Vec<Option<engine::Suppression>>,
    pub(super) dead_letter: Option<&'static str>,
    pub(super) detections: Vec<engine::Detection>,
}

impl Summaries {
    pub(super) fn new(ctx: SummaryCtx) -> Summaries {
        Summaries {
            ctx,
            open: HashMap::new(),
        }
    }

    /// Whether the record at `offset` of `tp` comes at or before the last
    /// one its open summary counts (the partition was read again from an
    /// earlier offset): that summary must be written first, as summaries
    /// count ascending offsets.
    pub(super) fn goes_back(&self, tp: &Tp, offset: i64) -> bool {
        self.open
            .get(tp)
            .and_then(|o| o.tally.last())
            .is_some_and(|last| offset <= last)
    }

    /// Counts the record at `origin` (stream `stream`). Returns true when
    /// its summary is full and must be written now.
    pub(super) fn add(
        &mut self,
        stream: usize,
        origin: &Arc<Origin>,
        count: &Count,
        alo: bool,
    ) -> bool {
        let open = self.open.entry(origin.tp.clone()).or_insert_with(|| Open {
            stream,
            tally: audit::Tally::default(),
            covers: Vec::new(),
            generation: origin.generation,
            since: Instant::now(),
        });
        open.tally.add(
            origin.offset,
            count.outcomes.iter().copied(),
            count.dead_letter,
            &count.detections,
        );
        if alo {
            open.covers.push(origin.clone());
        }
        open.tally.records as usize >= MAX_RECORDS
    }

    /// Takes the open summaries of the partitions `which` selects.
    fn take(&mut self, which: &dyn Fn(&Tp, &Open) -> bool) -> Vec<(Tp, Open)> {
        let keys: Vec<Tp> = self
            .open
            .iter()
            .filter(|(tp, o)| which(tp, o))
            .map(|(tp, _)| tp.clone())
            .collect();
        keys.into_iter()
            .filter_map(|tp| self.open.remove(&tp).map(|o| (tp, o)))
            .collect()
    }
}

/// Which open summaries [`write`] writes.
pub(super) enum Which<'a> {
    All,
    /// Those waiting longer than the interval, or full.
    Due,
    Partitions(&'a [Tp]),
}

/// Seals and sends the selected summaries, each as the next record of its
/// partition's chain. Returns each partition's new chain head (exactly_once
/// commits it with the transaction's offsets; at_least_once hands it to the
/// offset tracker here, at the summary's last offset).
pub(super) fn write(producer: &Prod, shared: &Shared, which: Which<'_>) -> Vec<(Tp, String)> {
    let Some(summaries) = &shared.summaries else {
        return Vec::new();
    };
    if shared.audit_failed.load(Ordering::SeqCst) {
        // The chain's last record never landed: the worker stops.
        return Vec::new();
    }
    let mut s = summaries.lock().unwrap_or_else(PoisonError::into_inner);
    let interval = s.ctx.interval;
    let taken = s.take(&|tp, o| match &which {
        Which::All => true,
        Which::Due => o.since.elapsed() >= interval || o.tally.records as usize >= MAX_RECORDS,
        Which::Partitions(tps) => tps.contains(tp),
    });
    let mut heads = Vec::with_capacity(taken.len());
    for (tp, open) in taken {
        let Some(last) = open.tally.last() else {
            continue;
        };
        let ctx = &s.ctx;
        let record = ctx.audits[open.stream].summary(
            &tp.0,
            tp.1,
            &open.tally,
            &audit::Context {
                policy: &ctx.policy,
                worker: &ctx.worker,
                processed_at_ms: now_ms(),
            },
        );
        let chain = chain_of(&tp);
        let (text, hash) = shared
            .chains
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .append(&ctx.key, &chain, &record);
        if shared.txn.is_none() {
            shared
                .tracker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .set_head(&tp, last, open.generation, hash.clone());
        }
        ctx.written.inc();
        let origin = Arc::new(Origin {
            tp: tp.clone(),
            offset: last,
            generation: open.generation,
            pending: std::sync::atomic::AtomicU32::new(1),
            covers: open.covers,
        });
        let out = OutRecord {
            audit: true,
            topic: ctx.topic.clone(),
            key: Some(chain.into_bytes()),
            payload: Some(text.into_bytes()),
            headers: Vec::new(),
            timestamp: None,
        };
        send(producer, shared, out, origin);
        heads.push((tp, hash));
    }
    heads
}
