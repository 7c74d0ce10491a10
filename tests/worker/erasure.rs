//! What an erasure does to data custos already wrote: tombstones in the
//! compacted outputs keyed by the subject, and an `erasure` audit record,
//! under both delivery guarantees.

use std::collections::BTreeMap;

use super::*;

#[test]
fn an_erasure_tombstones_compacted_outputs_keyed_by_the_subject_and_is_audited() {
    erasure_case("at_least_once");
}

#[test]
fn under_exactly_once_an_erasure_tombstones_and_audits_in_committed_transactions() {
    erasure_case("exactly_once");
}

/// A compacted topic's view after compaction: the last value per key,
/// keys whose last record is a tombstone gone.
fn compacted(seen: &[Seen]) -> BTreeMap<String, Value> {
    let mut view = BTreeMap::new();
    for (k, v, _) in seen {
        let k = k.clone().expect("compacted outputs are keyed");
        if v == &json!("") {
            view.remove(&k);
        } else {
            view.insert(k, v.clone());
        }
    }
    view
}

fn erasure_case(guarantee: &str) {
    let broker = Broker::from_env();
    let n = Names::new();
    // analytics is compacted (its key: the subject's pseudonym).
    create_topics(&broker, &n, 2, true);
    let compiled = compile(&n);
    let b = broker.bootstrap();
    let p = producer(&b);
    produce(&p, &n.input, &(0..10).map(event).collect::<Vec<_>>());
    let options = Options {
        skip_topic_management: true,
        instance_id: Some("w1".into()),
        // librdkafka's mock cluster cannot describe topic configurations.
        assume_compacted: vec![n.analytics.clone()],
        ..Options::default()
    };
    let w = start_options(&broker, &compiled, config(&n, guarantee), options);
    let mut a = Reader::for_guarantee(&b, &n.analytics, guarantee);
    wait_until("10 analytics outputs", || {
        a.poll();
        a.seen.len() >= 10
    });
    // The key s-2's records have in the analytics topic.
    let s2_key = a
        .seen
        .iter()
        .find(|(_, v, _)| v["n"].as_u64() == Some(2))
        .and_then(|(k, _, _)| k.clone())
        .unwrap();
    assert!(s2_key.starts_with("ps_"));

    produce(
        &p,
        &n.erasure,
        &[(
            Some("s-2".into()),
            br#"{"subject":"s-2","requested_at":"2026-12-01T08:00:00Z"}"#.to_vec(),
        )],
    );
    let mut audit = Reader::for_guarantee(&b, &n.audit, guarantee);
    wait_until("the erasure audit record", || {
        audit.poll();
        audit.seen.iter().any(|(_, v, _)| v["type"] == "erasure")
    });
    wait_until("the tombstone", || {
        a.poll();
        a.seen.len() >= 11
    });
    assert_eq!(
        total(&w.metrics.audit_records, |l| l
            .contains(&("type", "erasure"))),
        1
    );
    w.stop();
    a.poll();
    audit.poll();

    // One tombstone, with the governed key s-2's records have, and nothing
    // for the other subjects.
    let tombstones: Vec<&Seen> = a.seen.iter().filter(|(_, v, _)| v == &json!("")).collect();
    assert_eq!(tombstones.len(), 1, "{:?}", a.seen);
    assert_eq!(tombstones[0].0.as_deref(), Some(s2_key.as_str()));
    let source = &tombstones[0]
        .2
        .iter()
        .find(|(k, _)| k == "custos-source")
        .unwrap()
        .1;
    assert!(source.starts_with(&format!("{}/0/", n.erasure)), "{source}");

    // The audit record: the subject as an HMAC only, what was done, chained.
    let (_, record, _) = audit
        .seen
        .iter()
        .find(|(_, v, _)| v["type"] == "erasure")
        .unwrap();
    let key = AuditKey::new(AUDIT_KEY);
    assert_eq!(record["subject"], json!(key.subject("s-2")));
    assert_eq!(record["requested_at"], "2026-12-01T08:00:00Z");
    assert_eq!(record["source"]["topic"], json!(n.erasure));
    assert_eq!(
        record["actions"]["tombstones"],
        json!([{"stream": "events", "purpose": "analytics", "topic": n.analytics, "count": 1}])
    );
    assert_eq!(record["actions"]["data_keys"]["destroyed"], false);
    assert!(!record.to_string().contains("s-2"), "{record}");
    let (records, _, _) = verify_audit(&audit);
    assert_eq!(records, 11, "10 events and the erasure");

    // After compaction, the analytics topic holds nothing of s-2 and still
    // everything of the others (s-0 … s-4, two events each).
    let view = compacted(&a.seen);
    assert!(!view.contains_key(&s2_key), "{view:?}");
    assert_eq!(view.len(), 4, "{view:?}");
    // Nowhere custos writes for itself does s-2 appear in the clear: the
    // audit trail (every record, keys and headers too) and the dead letters.
    let mut dead = Reader::for_guarantee(&b, &n.dead_letter, guarantee);
    dead.poll();
    for (k, v, h) in audit.seen.iter().chain(&dead.seen) {
        let all = format!("{k:?} {v} {h:?}");
        assert!(!all.contains("s-2"), "{all}");
    }
}
