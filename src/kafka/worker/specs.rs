//! The topics a policy writes, with what they must look like.

#[allow(clippy::wildcard_imports)]
use super::*;

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
    // The wrapped data keys of `encrypt`: compacted (a key lives until its
    // subject is erased), one partition (one order for the agreement on a
    // subject's key; a topic with more works too: a subject's records all go
    // to one partition).
    if compiled.encrypts() {
        specs.push(TopicSpec {
            name: config.encryption.keys_topic.clone(),
            retention: None,
            compacted: true,
            partitions: 1,
            optional: false,
            no_compaction: false,
        });
    }
    // The consent and erasure topics are inputs owned by the privacy team:
    // never created here. A missing one (a typo, a deleted topic) refuses the
    // start instead of silently forgetting every erasure.
    specs
}
