//! Topic management: output topics never keep data longer than
//! their purpose allows.
//!
//! With `kafka.manage_topics`, missing topics are created (outputs with
//! `retention.ms` = the purpose's retention) and a delete-policy output topic
//! with a longer retention is lowered. Without it, such a topic stops the
//! worker with the topic and both retentions named.

use std::time::Duration;

use futures::executor::block_on;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigEntry, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use super::WorkerError;

/// A topic custos writes or reads, and what it must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    /// For outputs: the purpose and its retention in ms.
    pub retention: Option<(String, i64)>,
    pub compacted: bool,
    pub partitions: i32,
    /// Best effort (lineage): a missing one is a warning, not a refusal.
    pub optional: bool,
    /// The audit topic: compaction would keep one record per chain and
    /// destroy the trail, so an existing compacted one refuses the start.
    pub no_compaction: bool,
}

/// `30d`-style rendering of milliseconds, for messages.
pub fn human_ms(ms: i64) -> String {
    if ms < 0 {
        return "forever (retention.ms = -1)".into();
    }
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms % per == 0 {
            return format!("{}{unit} ({ms} ms)", ms / per);
        }
    }
    format!("{ms} ms")
}

/// What to do with one existing delete-policy topic's retention.
#[derive(Debug, PartialEq, Eq)]
pub enum RetentionCheck {
    Fine,
    Lower { from: i64, to: i64 },
}

/// Pure decision: is `actual` (retention.ms, -1 = forever) within `allowed`?
pub fn check_retention(cleanup_policy: &str, actual: i64, allowed: i64) -> RetentionCheck {
    if !cleanup_policy.split(',').any(|p| p.trim() == "delete") {
        return RetentionCheck::Fine;
    }
    if actual < 0 || actual > allowed {
        RetentionCheck::Lower {
            from: actual,
            to: allowed,
        }
    } else {
        RetentionCheck::Fine
    }
}

/// The topics among `names` whose `cleanup.policy` includes `compact`.
///
/// # Errors
/// A broker that cannot describe topic configurations (librdkafka's mock
/// cluster has no DescribeConfigs) or a topic it cannot describe.
pub fn compacted(
    base: &ClientConfig,
    names: &[&str],
    timeout: Duration,
) -> Result<std::collections::HashSet<String>, WorkerError> {
    let mut out = std::collections::HashSet::new();
    if names.is_empty() {
        return Ok(out);
    }
    let admin: AdminClient<DefaultClientContext> = base.create()?;
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let specs: Vec<ResourceSpecifier<'_>> =
        names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
    let described = block_on(admin.describe_configs(&specs, &opts))?;
    for (name, r) in names.iter().zip(described) {
        let resource = r.map_err(|e| WorkerError::Admin {
            topic: (*name).to_string(),
            reason: e.to_string(),
        })?;
        let compact = resource
            .entry_map()
            .get("cleanup.policy")
            .and_then(|e| e.value.as_deref())
            .is_some_and(|v| v.split(',').any(|p| p.trim() == "compact"));
        if compact {
            out.insert((*name).to_string());
        }
    }
    Ok(out)
}

/// Makes every topic in `specs` exist and respect its retention.
///
/// # Errors
/// Missing topics or too-long retention without `manage`, or admin failures.
pub fn ensure(
    base: &ClientConfig,
    specs: &[TopicSpec],
    manage: bool,
    timeout: Duration,
) -> Result<(), WorkerError> {
    let admin: AdminClient<DefaultClientContext> = base.create()?;
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let md = admin.inner().fetch_metadata(None, timeout)?;
    let exists = |name: &str| {
        md.topics()
            .iter()
            .any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
    };

    for spec in specs {
        if !exists(&spec.name) {
            if !manage && spec.optional {
                tracing::warn!(topic = %spec.name, "topic does not exist and kafka.manage_topics = false: its events are not written until it is created");
                continue;
            }
            if !manage {
                return Err(WorkerError::MissingTopic(spec.name.clone()));
            }
            create(&admin, &opts, spec)?;
            tracing::info!(topic = %spec.name, retention_ms = spec.retention.as_ref().map(|r| r.1), "created topic");
            continue;
        }
        if spec.retention.is_none() && !spec.no_compaction {
            continue;
        }
        let spec_name = spec.name.as_str();
        let described =
            block_on(admin.describe_configs([&ResourceSpecifier::Topic(spec_name)], &opts))?;
        let resource = described
            .into_iter()
            .next()
            .ok_or_else(|| WorkerError::Admin {
                topic: spec.name.clone(),
                reason: "no configuration returned".into(),
            })?
            .map_err(|e| WorkerError::Admin {
                topic: spec.name.clone(),
                reason: e.to_string(),
            })?;
        let entries = resource.entry_map();
        let cleanup = entries
            .get("cleanup.policy")
            .and_then(|e| e.value.clone())
            .unwrap_or_else(|| "delete".into());
        if spec.no_compaction && cleanup.contains("compact") {
            return Err(WorkerError::Admin {
                topic: spec.name.clone(),
                reason: format!("cleanup.policy is `{cleanup}`: compaction keeps one record per key and would destroy the audit trail; use cleanup.policy=delete"),
            });
        }
        let Some((purpose, allowed)) = &spec.retention else {
            continue;
        };
        let actual = entries
            .get("retention.ms")
            .and_then(|e| e.value.as_deref())
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(604_800_000);
        if let RetentionCheck::Lower { from, to } = check_retention(&cleanup, actual, *allowed) {
            if !manage {
                return Err(WorkerError::Retention {
                    topic: spec.name.clone(),
                    purpose: purpose.clone(),
                    actual: human_ms(from),
                    allowed: human_ms(to),
                });
            }
            let settings = lowered_settings(&resource.entries, to);
            let mut alter = AlterConfig::new(ResourceSpecifier::Topic(spec_name));
            for (k, v) in &settings {
                alter = alter.set(k, v);
            }
            let results =
                block_on(admin.alter_configs([&alter], &opts)).map_err(|e| WorkerError::Admin {
                    topic: spec.name.clone(),
                    reason: format!(
                        "cannot lower retention.ms to {} ({e}); lower it by hand",
                        human_ms(to)
                    ),
                })?;
            for r in results {
                r.map_err(|(_, e)| WorkerError::Admin {
                    topic: spec.name.clone(),
                    reason: e.to_string(),
                })?;
            }
            tracing::info!(topic = %spec.name, from_ms = from, to_ms = to, "lowered retention to the purpose's");
        }
    }
    Ok(())
}

/// The full configuration to send with AlterConfigs (which replaces a
/// topic's whole configuration): every explicitly set, writable entry as it
/// is, and `retention.ms` = `to`. Sensitive entries cannot be read back and
/// are therefore not carried over.
pub fn lowered_settings(entries: &[ConfigEntry], to: i64) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = entries
        .iter()
        .filter(|e| !e.is_default && !e.is_read_only && !e.is_sensitive && e.name != "retention.ms")
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    out.push(("retention.ms".into(), to.to_string()));
    out
}

fn create(
    admin: &AdminClient<DefaultClientContext>,
    opts: &AdminOptions,
    spec: &TopicSpec,
) -> Result<(), WorkerError> {
    let retention = spec.retention.as_ref().map(|r| r.1.to_string());
    // -1: the broker's default replication factor; brokers that predate it get 1.
    for replication in [-1, 1] {
        let mut t = NewTopic::new(
            &spec.name,
            spec.partitions.max(1),
            TopicReplication::Fixed(replication),
        );
        if let Some(r) = &retention {
            t = t.set("retention.ms", r);
        }
        if spec.compacted {
            t = t.set("cleanup.policy", "compact");
        }
        let results = block_on(admin.create_topics([&t], opts))?;
        match results.into_iter().next() {
            Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => return Ok(()),
            Some(Err((_, RDKafkaErrorCode::InvalidReplicationFactor))) if replication == -1 => {
                continue
            }
            Some(Err((_, e))) => {
                return Err(WorkerError::Admin {
                    topic: spec.name.clone(),
                    reason: e.to_string(),
                })
            }
            None => {
                return Err(WorkerError::Admin {
                    topic: spec.name.clone(),
                    reason: "no result".into(),
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_decisions() {
        let day = 86_400_000;
        assert_eq!(
            check_retention("delete", 7 * day, 30 * day),
            RetentionCheck::Fine
        );
        assert_eq!(
            check_retention("delete", 30 * day, 30 * day),
            RetentionCheck::Fine
        );
        assert_eq!(
            check_retention("delete", 31 * day, 30 * day),
            RetentionCheck::Lower {
                from: 31 * day,
                to: 30 * day
            }
        );
        assert_eq!(
            check_retention("compact,delete", -1, day),
            RetentionCheck::Lower { from: -1, to: day }
        );
        assert_eq!(check_retention("compact", -1, day), RetentionCheck::Fine);
        assert_eq!(human_ms(30 * day), "30d (2592000000 ms)");
        assert_eq!(human_ms(-1), "forever (retention.ms = -1)");
    }

    #[test]
    fn lowering_keeps_the_topics_other_settings() {
        use rdkafka::admin::ConfigSource;
        let entry =
            |name: &str, value: &str, default: bool, ro: bool, sensitive: bool| ConfigEntry {
                name: name.into(),
                value: Some(value.into()),
                source: ConfigSource::DynamicTopic,
                is_read_only: ro,
                is_default: default,
                is_sensitive: sensitive,
            };
        let entries = [
            entry("cleanup.policy", "delete", false, false, false),
            entry("retention.ms", "-1", false, false, false),
            entry("max.message.bytes", "2097152", false, false, false),
            entry("segment.ms", "604800000", true, false, false), // default: not pinned
            entry("message.format.version", "3.0", false, true, false), // read-only
            entry("secret.thing", "x", false, false, true),
        ];
        assert_eq!(
            lowered_settings(&entries, 86_400_000),
            vec![
                ("cleanup.policy".to_string(), "delete".to_string()),
                ("max.message.bytes".to_string(), "2097152".to_string()),
                ("retention.ms".to_string(), "86400000".to_string()),
            ]
        );
    }
}
