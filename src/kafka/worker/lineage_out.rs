//! The lineage producer: OpenLineage run events to `lineage.topic`, best effort.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Sends the OpenLineage events of every stream to `lineage.topic`.
pub(super) struct Lineage {
    pub(super) producer: BaseProducer,
    pub(super) topic: String,
    pub(super) namespace: String,
    /// One run per stream (each stream is its own job).
    pub(super) run_ids: Vec<String>,
}

impl Lineage {
    pub(super) fn new(
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
    pub(super) fn emit(&self, compiled: &Compiled, kind: EventType, timeout: Duration) {
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

/// How long lineage events may take to be delivered (they are best effort).
pub(super) const LINEAGE_FLUSH: Duration = Duration::from_secs(6);
