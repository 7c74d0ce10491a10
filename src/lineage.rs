//! OpenLineage run events: what each stream's plan reads and
//! writes, field by field, and how each output field was derived.
//!
//! Pure: events are built from a compiled plan; the worker sends them to
//! `lineage.topic` (START when a plan is compiled and the worker starts,
//! COMPLETE at a graceful stop, FAIL on a fatal error). Events describe the
//! policy (paths, classes, actions), never record content.

use serde_json::{json, Map, Value};

use crate::policy::plan::StreamPlan;
use crate::policy::ActionKind;

const PRODUCER: &str = "https://github.com/custos-governance/custos";
const RUN_EVENT_SCHEMA: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const SCHEMA_FACET: &str =
    "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet";
const TAGS_FACET: &str =
    "https://openlineage.io/spec/facets/1-0-0/TagsDatasetFacet.json#/$defs/TagsDatasetFacet";
const COLUMN_LINEAGE_FACET: &str =
    "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet";

/// The OpenLineage event types custos emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Start,
    Complete,
    Fail,
}

impl EventType {
    pub fn name(self) -> &'static str {
        match self {
            EventType::Start => "START",
            EventType::Complete => "COMPLETE",
            EventType::Fail => "FAIL",
        }
    }
}

/// The job name of a stream: `<policy>.<stream>`.
pub fn job_name(policy: &str, plan: &StreamPlan) -> String {
    format!("{policy}.{}", plan.name)
}

/// A random (version 4) UUID for a run.
pub fn run_id(random: [u8; 16]) -> String {
    let mut b = random;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Where the run happens, the same for all its events.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// The policy name (the job name's prefix).
    pub policy: &'a str,
    /// `kafka://host:port` of the cluster: the datasets' namespace.
    pub namespace: &'a str,
    pub run_id: &'a str,
}

/// One RunEvent for a stream's plan.
pub fn run_event(plan: &StreamPlan, run: &Run<'_>, kind: EventType, event_time: &str) -> Value {
    // `$key` and `$headers.*` are not in the value: no columns.
    let column = |p: &str| !p.starts_with('$');
    let paths: Vec<&(String, std::sync::Arc<crate::policy::plan::Leaf>)> =
        plan.fields.iter().filter(|(p, _)| column(p)).collect();
    let schema_fields: Vec<Value> = paths.iter().map(|(p, _)| json!({"name": p})).collect();
    let tags: Vec<Value> = paths
        .iter()
        .flat_map(|(p, leaf)| {
            leaf.classes
                .iter()
                .map(move |c| json!({"key": "classification", "value": c, "source": "custos", "field": p}))
        })
        .collect();
    let input = json!({
        "namespace": run.namespace,
        "name": plan.topic,
        "facets": {
            "schema": {"_producer": PRODUCER, "_schemaURL": SCHEMA_FACET, "fields": schema_fields},
            "tags": {"_producer": PRODUCER, "_schemaURL": TAGS_FACET, "tags": tags}
        }
    });
    let outputs: Vec<Value> = plan
        .outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let mut fields = Map::new();
            for (p, leaf, d) in plan.named_decisions(i) {
                if !column(p) || d.kind == ActionKind::Drop {
                    continue;
                }
                // A kept scanned field still has its detected spans transformed.
                let spans_changed =
                    leaf.scan && o.spans.iter().any(|sp| sp.kind != ActionKind::Keep);
                let keep = d.kind == ActionKind::Keep && !spans_changed;
                let description = if spans_changed && d.kind == ActionKind::Keep {
                    "keep (detected personal data transformed)"
                } else {
                    d.kind.name()
                };
                fields.insert(
                    p.to_string(),
                    json!({"inputFields": [{
                        "namespace": run.namespace, "name": plan.topic, "field": p,
                        "transformations": [{
                            "type": "DIRECT",
                            "subtype": if keep { "IDENTITY" } else { "TRANSFORMATION" },
                            "description": description,
                            "masking": !keep
                        }]
                    }]}),
                );
            }
            json!({
                "namespace": run.namespace,
                "name": o.topic,
                "facets": {"columnLineage": {
                    "_producer": PRODUCER, "_schemaURL": COLUMN_LINEAGE_FACET, "fields": fields
                }}
            })
        })
        .collect();
    json!({
        "eventType": kind.name(),
        "eventTime": event_time,
        "run": {"runId": run.run_id},
        "job": {"namespace": "custos", "name": job_name(run.policy, plan)},
        "inputs": [input],
        "outputs": outputs,
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT_SCHEMA
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> crate::policy::plan::Compiled {
        let text = "version: 1\nname: shop\nkeys: { k: { env: K } }\npurposes:\n  a:\n    basis: contract\n    retention: 1d\n    rules:\n      - { classes: [internal], action: keep }\n      - { classes: [pii.identifier], action: { pseudonymize: { key: k } } }\nstreams:\n  orders:\n    topic: shop.orders\n    fields: { $key: pii.identifier.customer_id, order_id: internal, customer.id: pii.identifier.customer_id, customer.email: pii.contact.email }\n    outputs: { a: shop.orders.a }\n";
        let p = crate::policy::load(text, "t.yaml").unwrap();
        let keys = crate::policy::keys::Keys::from_pairs([("k", b"x".to_vec())]);
        crate::policy::plan::compile(std::sync::Arc::new(p), &keys).unwrap()
    }

    #[test]
    fn run_event_has_jobs_datasets_and_column_lineage() {
        let c = plan();
        let run = Run {
            policy: "shop",
            namespace: "kafka://broker:9092",
            run_id: "r",
        };
        let e = run_event(
            &c.streams[0],
            &run,
            EventType::Start,
            "2026-11-23T00:00:00.000Z",
        );
        assert_eq!(e["eventType"], "START");
        assert_eq!(
            e["job"],
            json!({"namespace": "custos", "name": "shop.orders"})
        );
        assert_eq!(e["inputs"][0]["name"], "shop.orders");
        let tags = e["inputs"][0]["facets"]["tags"]["tags"].as_array().unwrap();
        assert!(tags.contains(&json!({"key": "classification", "value": "pii.contact.email", "source": "custos", "field": "customer.email"})));
        let cols = &e["outputs"][0]["facets"]["columnLineage"]["fields"];
        assert_eq!(e["outputs"][0]["name"], "shop.orders.a");
        let t = &cols["customer.id"]["inputFields"][0]["transformations"][0];
        assert_eq!(t["subtype"], "TRANSFORMATION");
        assert_eq!(t["masking"], true);
        assert_eq!(t["description"], "pseudonymize");
        let t = &cols["order_id"]["inputFields"][0]["transformations"][0];
        assert_eq!(
            (t["subtype"].as_str(), t["masking"].as_bool()),
            (Some("IDENTITY"), Some(false))
        );
        assert!(
            cols.get("customer.email").is_none(),
            "dropped fields have no lineage"
        );
        assert!(cols.get("$key").is_none());
    }

    #[test]
    fn run_ids_are_version_4_uuids() {
        let id = run_id([0xff; 16]);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }
}
