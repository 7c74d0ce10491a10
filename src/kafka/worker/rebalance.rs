//! The consumer's context: statistics (lag, broker reachability) and the
//! rebalance callbacks that drain and commit revoked partitions before they go.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::telemetry::events::{Event, Rebalanced};

pub(super) struct WorkerContext {
    pub(super) shared: Arc<Shared>,
    pub(super) producer: Arc<Prod>,
    pub(super) drain: Duration,
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
        Rebalanced {
            assigned: false,
            partitions: tpl.count(),
        }
        .emit(&self.shared.metrics);
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
        // Their summaries are written first: their records wait for them.
        summary::write(&self.producer, &self.shared, Which::Partitions(&revoked));
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
        if commit.count() > 0 && consumer.assignment_lost() {
            // The group has given them to others already: a commit would be
            // refused (and, with the broker away, wait for it unbounded).
            tracing::warn!(
                partitions = commit.count(),
                "partitions lost, not revoked (membership ended); not committed: the next owner processes their records since the last commit again"
            );
        } else if commit.count() > 0 {
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
            Rebalanced {
                assigned: true,
                partitions: tpl.count(),
            }
            .emit(&self.shared.metrics);
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
    pub(super) fn inflight(&self, tps: &[Tp]) -> usize {
        self.shared
            .tracker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .inflight(|tp| tps.contains(tp))
    }
}
