//! Metrics, all defined here with their contract names, in one
//! `prometheus::Registry` built at start-up. Label values come only from the
//! policy (streams, purposes) or fixed sets (reasons), never from data.
//!
//! Notable events are functions that both log (key/value, no personal data)
//! and count, so logs and metrics never disagree.

pub mod events;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::classify::Detector;
use crate::engine::{DeadLetterReason, Suppression};
use crate::policy::plan::StreamPlan;
use crate::policy::ActionKind;

/// Every metric custos exports.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub consumed: IntCounterVec,
    pub emitted: IntCounterVec,
    pub suppressed: IntCounterVec,
    pub dead_lettered: IntCounterVec,
    pub unclassified: IntCounterVec,
    pub field_actions: IntCounterVec,
    pub class_occurrences: IntCounterVec,
    pub detections: IntCounterVec,
    pub processing: HistogramVec,
    pub lag: IntGaugeVec,
    pub consent_subjects: IntGauge,
    pub erased_subjects: IntGauge,
    pub transactions: IntCounterVec,
    pub audit_records: IntCounterVec,
    pub produce_failures: IntCounterVec,
    pub rebalances: IntCounterVec,
    pub chain_restarts: IntCounter,
    /// Subjects (per KEK) with a data key in memory.
    pub data_keys: IntGauge,
    /// Data keys this worker made (candidates written to the keys topic).
    pub data_keys_created: IntCounter,
    /// Keys-topic records tombstoned by crypto-shredding.
    pub data_keys_destroyed: IntCounter,
    /// Tombstones for compacted output keys past their purpose's retention, by purpose.
    pub retention_tombstones: IntCounterVec,
    /// Schema registry requests that failed, by kind (`unavailable`, `not_found`, `refused`).
    pub registry_errors: IntCounterVec,
    /// OpenLineage events for `lineage.openlineage_url`, by outcome (`sent`, `failed`, `dropped`).
    pub lineage_http: IntCounterVec,
    pub policy_info: IntGaugeVec,
    /// 1 when `/readyz` answers 200, else 0; set at each scrape.
    pub ready: IntGauge,
    pub build_info: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn plain_counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("metric definition is valid");
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition is valid");
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("metric definition is valid");
    r.register(Box::new(g.clone()))
        .expect("metric names are unique");
    g
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("metric definition is valid");
    r.register(Box::new(g.clone()))
        .expect("metric names are unique");
    g
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let processing = HistogramVec::new(
            HistogramOpts::new(
                "custos_processing_duration_seconds",
                "Time to govern one record",
            )
            .buckets(vec![
                0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005,
                0.01,
            ]),
            &["stream"],
        )
        .expect("metric definition is valid");
        r.register(Box::new(processing.clone()))
            .expect("metric names are unique");
        let m = Metrics {
            consumed: counter(
                &r,
                "custos_records_consumed_total",
                "Input records consumed",
                &["stream"],
            ),
            emitted: counter(
                &r,
                "custos_records_emitted_total",
                "Governed records produced to a purpose's topic",
                &["stream", "purpose"],
            ),
            suppressed: counter(
                &r,
                "custos_records_suppressed_total",
                "Records a purpose did not get, by reason",
                &["stream", "purpose", "reason"],
            ),
            dead_lettered: counter(
                &r,
                "custos_records_dead_lettered_total",
                "Records sent to the dead-letter topic",
                &["stream", "reason"],
            ),
            unclassified: counter(
                &r,
                "custos_unclassified_fields_total",
                "Unclassified fields seen (never emitted)",
                &["stream"],
            ),
            field_actions: counter(
                &r,
                "custos_field_actions_total",
                "Classified values each purpose got, by the action applied (drop included)",
                &["stream", "purpose", "action"],
            ),
            class_occurrences: counter(
                &r,
                "custos_class_occurrences_total",
                "Classified values seen, by class",
                &["stream", "class"],
            ),
            detections: counter(
                &r,
                "custos_detections_total",
                "Personal data found in scanned fields",
                &["stream", "detector"],
            ),
            processing,
            lag: gauge_vec(
                &r,
                "custos_consumer_lag_records",
                "Records behind the end of each input partition",
                &["topic", "partition"],
            ),
            consent_subjects: gauge(
                &r,
                "custos_consent_subjects",
                "Subjects with a consent record",
            ),
            erased_subjects: gauge(
                &r,
                "custos_erased_subjects",
                "Subjects with an erasure request",
            ),
            transactions: counter(
                &r,
                "custos_transactions_total",
                "Kafka transactions by outcome",
                &["outcome"],
            ),
            audit_records: counter(
                &r,
                "custos_audit_records_total",
                "Audit records written, by type",
                &["type"],
            ),
            produce_failures: counter(
                &r,
                "custos_produce_failures_total",
                "Produce attempts that failed after librdkafka's own retries (retried by custos)",
                &["topic"],
            ),
            lineage_http: counter(
                &r,
                "custos_lineage_http_events_total",
                "OpenLineage events for lineage.openlineage_url, by outcome (sent; failed: given up after retries; dropped: the queue was full)",
                &["outcome"],
            ),
            registry_errors: counter(
                &r,
                "custos_schema_registry_errors_total",
                "Schema registry requests that failed, by kind (unavailable: retried with backoff; not_found and refused: the records dead-lettered)",
                &["kind"],
            ),
            rebalances: counter(
                &r,
                "custos_rebalances_total",
                "Consumer group rebalances seen by this worker, by kind (assign, revoke)",
                &["kind"],
            ),
            chain_restarts: {
                let c = IntCounter::new(
                    "custos_audit_chain_restarts_total",
                    "Input partitions whose audit chain restarted (no chain head with the committed offset)",
                )
                .expect("metric definition is valid");
                r.register(Box::new(c.clone()))
                    .expect("metric names are unique");
                c
            },
            data_keys: gauge(
                &r,
                "custos_data_keys",
                "Subjects (per KEK) with a data key for the encrypt action",
            ),
            data_keys_created: plain_counter(
                &r,
                "custos_data_keys_created_total",
                "Data keys this worker wrote to the keys topic (candidates, whether or not they won)",
            ),
            data_keys_destroyed: plain_counter(
                &r,
                "custos_data_keys_destroyed_total",
                "Keys-topic records tombstoned because their subject was erased (crypto-shredding)",
            ),
            retention_tombstones: counter(
                &r,
                "custos_retention_tombstones_total",
                "Tombstones written for compacted output keys whose last write is older than the purpose's retention",
                &["purpose"],
            ),
            policy_info: gauge_vec(
                &r,
                "custos_policy_info",
                "The loaded policy",
                &["policy", "digest"],
            ),
            ready: gauge(
                &r,
                "custos_ready",
                "1 when the worker is ready (what /readyz answers 200 for), else 0",
            ),
            build_info: gauge_vec(&r, "custos_build_info", "The custos build", &["version"]),
            registry: r,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// A stream's counters, resolved once so the hot path increments them
    /// without hashing label values or allocating.
    pub fn stream(&self, plan: &StreamPlan) -> StreamMetrics {
        let s = plan.name.as_str();
        StreamMetrics {
            stream: plan.name.clone(),
            consumed: self.consumed.with_label_values(&[s]),
            processing: self.processing.with_label_values(&[s]),
            unclassified: self.unclassified.with_label_values(&[s]),
            detections: Detector::ALL.map(|d| self.detections.with_label_values(&[s, d.name()])),
            classes: plan
                .class_names
                .iter()
                .map(|c| self.class_occurrences.with_label_values(&[s, c]))
                .collect(),
            dead_lettered: DeadLetterReason::ALL
                .map(|r| self.dead_lettered.with_label_values(&[s, r.code()])),
            outputs: plan
                .outputs
                .iter()
                .map(|o| OutputMetrics {
                    actions: ActionKind::ALL.map(|a| {
                        self.field_actions
                            .with_label_values(&[s, &o.name, a.name()])
                    }),
                    purpose: o.name.clone(),
                    emitted: self.emitted.with_label_values(&[s, &o.name]),
                    suppressed: Suppression::ALL
                        .map(|r| self.suppressed.with_label_values(&[s, &o.name, r.name()])),
                })
                .collect(),
        }
    }
}

/// One stream's metrics (see [`Metrics::stream`]).
#[derive(Clone)]
pub struct StreamMetrics {
    stream: String,
    pub consumed: IntCounter,
    pub processing: Histogram,
    pub unclassified: IntCounter,
    detections: [IntCounter; 7],
    dead_lettered: [IntCounter; DeadLetterReason::ALL.len()],
    outputs: Vec<OutputMetrics>,
    /// Per class id of the plan.
    classes: Vec<IntCounter>,
}

#[derive(Clone)]
struct OutputMetrics {
    /// Per action, in [`ActionKind::ALL`] order.
    actions: [IntCounter; 7],
    purpose: String,
    emitted: IntCounter,
    suppressed: [IntCounter; 4],
}

fn slot<T: PartialEq>(all: &[T], x: &T) -> usize {
    all.iter().position(|a| a == x).unwrap_or(0)
}

impl StreamMetrics {
    /// Counts one processed record (`source`: its coordinates, for the log line
    /// of a dead letter; built only then).
    pub fn observe(&self, d: &crate::pipeline::Deltas<'_>, source: impl FnOnce() -> String) {
        self.consumed.inc();
        if let Some(reason) = d.dead_letter {
            self.dead_letter(reason, &source());
            return;
        }
        if d.unclassified_fields > 0 {
            self.unclassified.inc_by(u64::from(d.unclassified_fields));
        }
        for x in d.detections {
            self.detected(x.detector, u64::from(x.count));
        }
        self.fields(d.field_actions, d.class_occurrences);
        for (i, o) in d.suppressions().enumerate() {
            match o {
                None => self.emitted(i),
                Some(s) => self.suppression(i, s),
            }
        }
    }

    /// Field actions per purpose and class occurrences of one governed event.
    pub fn fields(&self, field_actions: &[[u32; 7]], class_occurrences: &[u32]) {
        for (o, counts) in self.outputs.iter().zip(field_actions) {
            for (c, n) in o.actions.iter().zip(counts) {
                if *n > 0 {
                    c.inc_by(u64::from(*n));
                }
            }
        }
        for (c, n) in self.classes.iter().zip(class_occurrences) {
            if *n > 0 {
                c.inc_by(u64::from(*n));
            }
        }
    }

    pub fn detected(&self, d: Detector, n: u64) {
        self.detections[slot(&Detector::ALL, &d)].inc_by(n);
    }

    /// Output `i` of the stream got the record.
    pub fn emitted(&self, i: usize) {
        self.outputs[i].emitted.inc();
    }

    /// Output `i` of the stream did not get the record.
    pub fn suppression(&self, i: usize, reason: Suppression) {
        let o = &self.outputs[i];
        tracing::debug!(stream = %self.stream, purpose = %o.purpose, reason = reason.name(), "record suppressed");
        o.suppressed[slot(&Suppression::ALL, &reason)].inc();
    }

    /// A record went to the dead-letter topic.
    pub fn dead_letter(&self, reason: DeadLetterReason, source: &str) {
        tracing::warn!(
            stream = %self.stream,
            reason = reason.code(),
            source,
            "record dead-lettered"
        );
        self.dead_lettered[slot(&DeadLetterReason::ALL, &reason)].inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Sum of a counter over all its label sets matching `filter` (for summaries and tests).
pub fn total(c: &IntCounterVec, filter: impl Fn(&[(&str, &str)]) -> bool) -> u64 {
    use prometheus::core::Collector;
    let mut sum = 0;
    for mf in c.collect() {
        for m in mf.get_metric() {
            let labels: Vec<(&str, &str)> = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if filter(&labels) {
                sum += m.get_counter().get_value() as u64;
            }
        }
    }
    sum
}
