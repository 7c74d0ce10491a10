//! Transactions of an exactly_once worker: ending one (commit with the
//! consumed offsets, or abort and rewind) by librdkafka's rules.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::telemetry::events::{Event, TransactionAborted, TransactionCommitted};

/// How a transaction ended, as far as this worker can tell.
pub(super) enum TxnEnd {
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

pub(super) fn txn_fatal(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(r) if r.is_fatal() || r.code() == RDKafkaErrorCode::UnsupportedFeature)
}

pub(super) fn txn_retriable(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(r) if r.is_retriable() && !r.is_fatal() && !r.txn_requires_abort())
}

pub(super) fn txn_requires_abort(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(r) if r.txn_requires_abort())
}

/// Sends the offsets and commits, following librdkafka's rules: a
/// retriable error of `commit_transaction` means "call it again" (the commit
/// may already be under way on the broker, so aborting and redoing the
/// records would write them twice); only an error that requires an abort
/// means the transaction did not commit.
pub(super) fn end_transaction(
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
pub(super) fn finish(
    producer: &Prod,
    consumer: &BaseConsumer<WorkerContext>,
    t: &mut Txn,
    shared: &Shared,
    timeout: Duration,
) -> Result<(), WorkerError> {
    if !t.open {
        return Ok(());
    }
    // The transaction's summaries go in it; each is its partition's new head.
    for (tp, head) in summary::write(producer, shared, Which::All) {
        if let Some(part) = t.offsets.get_mut(&tp) {
            part.head = head;
        }
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
            TransactionCommitted {
                records: t.records,
                offsets: &|| {
                    let mut parts: Vec<String> = t
                        .offsets
                        .iter()
                        .map(|(tp, p)| format!("{}/{}:{}..{}", tp.0, tp.1, p.first, p.next))
                        .collect();
                    parts.sort();
                    parts.join(" ")
                },
            }
            .emit(&shared.metrics);
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
    TransactionAborted {
        records: t.records,
        error: &e,
    }
    .emit(&shared.metrics);
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
