//! Notable events of the worker: each one type that logs and counts
//! together (as Vector's `internal_events`), so a log line never goes
//! without its metric and a counter never moves without a log line saying
//! why. Record content is never part of an event.

use super::Metrics;

/// Something the worker reports: it logs and counts in one call.
pub trait Event {
    fn emit(self, metrics: &Metrics);
}

/// What became of a record librdkafka could not deliver (after its retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProduceOutcome {
    /// Kept and sent again later; its input offset does not move meanwhile.
    Retried,
    /// Refused for good (too large, invalid): reported on the dead-letter
    /// topic instead, so the partition moves on.
    Refused,
}

/// A produce that failed after librdkafka's own retries.
pub struct ProduceFailed<'a> {
    pub topic: &'a str,
    pub error: &'a dyn std::fmt::Display,
    /// `topic/partition/offset` of the input record it belongs to.
    pub source: Option<(&'a str, i32, i64)>,
    pub outcome: ProduceOutcome,
}

impl Event for ProduceFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics
            .produce_failures
            .with_label_values(&[self.topic])
            .inc();
        let (source_topic, source_partition, source_offset) =
            self.source.map_or(("", -1, -1), |(t, p, o)| (t, p, o));
        match self.outcome {
            ProduceOutcome::Retried => tracing::error!(
                topic = self.topic,
                error = %self.error,
                source_topic,
                source_partition,
                source_offset,
                "produce failed; will retry"
            ),
            ProduceOutcome::Refused => tracing::error!(
                topic = self.topic,
                error = %self.error,
                source_topic,
                source_partition,
                source_offset,
                "record refused by the broker; reported on the dead-letter topic instead"
            ),
        }
    }
}

/// An exactly_once transaction committed.
pub struct TransactionCommitted<'a> {
    pub records: u64,
    /// `topic/partition:first..next` of each input partition, built only
    /// when debug logging is on (tests/broker/eos_kill_test.py reads it).
    pub offsets: &'a dyn Fn() -> String,
}

impl Event for TransactionCommitted<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.transactions.with_label_values(&["committed"]).inc();
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(records = self.records, offsets = %(self.offsets)(), "transaction committed");
        }
    }
}

/// An exactly_once transaction aborted: its records are rewound and redone.
pub struct TransactionAborted<'a> {
    pub records: u64,
    pub error: &'a dyn std::fmt::Display,
}

impl Event for TransactionAborted<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.transactions.with_label_values(&["aborted"]).inc();
        tracing::warn!(error = %self.error, records = self.records, "transaction failed: aborting and reprocessing");
    }
}

/// Partitions assigned to or revoked from this worker.
pub struct Rebalanced {
    pub assigned: bool,
    pub partitions: usize,
}

impl Event for Rebalanced {
    fn emit(self, metrics: &Metrics) {
        let kind = if self.assigned { "assign" } else { "revoke" };
        metrics.rebalances.with_label_values(&[kind]).inc();
        // Operators (and tests/broker/eos_kill_test.py) look for these words.
        if self.assigned {
            tracing::info!(partitions = self.partitions, "partitions assigned");
        } else {
            tracing::info!(partitions = self.partitions, "partitions revoked");
        }
    }
}

/// Why an input partition's audit chain restarts (its next record has
/// `prev = ""`): `custos audit verify` counts these as restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartCause {
    /// The committed offset came without its chain head (a broker that
    /// drops offset-commit metadata).
    NoCommitMetadata,
    /// The committed offset could not be read at all.
    CommittedUnreadable,
}

/// An audit chain restarting.
pub struct ChainRestarted<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub cause: RestartCause,
    pub error: Option<&'a dyn std::fmt::Display>,
}

impl Event for ChainRestarted<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.chain_restarts.inc();
        match self.cause {
            RestartCause::NoCommitMetadata => tracing::warn!(
                topic = self.topic,
                partition = self.partition,
                "committed offset without audit chain head (the broker keeps no commit metadata): the partition's audit chain restarts"
            ),
            RestartCause::CommittedUnreadable => tracing::warn!(
                topic = self.topic,
                partition = self.partition,
                error = %self.error.map(ToString::to_string).unwrap_or_default(),
                "cannot read the committed offset: the partition's audit chain restarts"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::total;

    #[test]
    fn each_event_counts_what_it_logs() {
        let m = Metrics::new();
        let e = "broker said no";
        ProduceFailed {
            topic: "t",
            error: &e,
            source: Some(("in", 0, 7)),
            outcome: ProduceOutcome::Refused,
        }
        .emit(&m);
        TransactionAborted {
            records: 3,
            error: &e,
        }
        .emit(&m);
        TransactionCommitted {
            records: 3,
            offsets: &|| "in/0:0..3".into(),
        }
        .emit(&m);
        Rebalanced {
            assigned: true,
            partitions: 2,
        }
        .emit(&m);
        ChainRestarted {
            topic: "in",
            partition: 0,
            cause: RestartCause::NoCommitMetadata,
            error: None,
        }
        .emit(&m);
        assert_eq!(
            total(&m.produce_failures, |l| l.contains(&("topic", "t"))),
            1
        );
        assert_eq!(
            total(&m.transactions, |l| l.contains(&("outcome", "aborted"))),
            1
        );
        assert_eq!(
            total(&m.transactions, |l| l.contains(&("outcome", "committed"))),
            1
        );
        assert_eq!(total(&m.rebalances, |l| l.contains(&("kind", "assign"))), 1);
        assert_eq!(m.chain_restarts.get(), 1);
        let text = m.render();
        assert!(
            text.contains("custos_audit_chain_restarts_total 1"),
            "{text}"
        );
        assert!(
            text.contains("custos_rebalances_total{kind=\"assign\"} 1"),
            "{text}"
        );
    }
}
