use super::*;

fn key() -> AuditKey {
    AuditKey::new(b"audit-key")
}

fn ctx() -> Context<'static> {
    Context {
        policy: "p@0",
        worker: "w",
        processed_at_ms: 1_795_392_000_123,
    }
}

fn rec(offset: i64) -> Unsealed {
    rec_at(offset, ctx().processed_at_ms)
}

/// A record processed at another time (a redo after a crash).
fn rec_at(offset: i64, processed_at_ms: i64) -> Unsealed {
    let src = Source {
        topic: "t",
        partition: 0,
        offset,
        timestamp: None,
    };
    let cx = Context {
        processed_at_ms,
        ..ctx()
    };
    dead_letter("s", &src, "decode", &cx)
}

fn chain(n: i64) -> Vec<Vec<u8>> {
    let mut c = Chains::default();
    (0..n)
        .map(|i| c.append(&key(), "t/0", &rec(i)).0.into_bytes())
        .collect()
}

/// A record with one value changed after sealing (its hash left as it was).
fn altered_in_place(record: &[u8]) -> Vec<u8> {
    String::from_utf8(record.to_vec())
        .unwrap()
        .replace("decode", "schema")
        .into_bytes()
}

fn verify(records: &[Vec<u8>]) -> Vec<ChainReport> {
    let mut v = Verifier::new(key());
    for (i, r) in records.iter().enumerate() {
        v.check(&format!("0/{i}"), r);
    }
    v.finish()
}

/// The record without `hash`, as the verifier sees it.
fn without_hash(text: &str) -> Value {
    let mut v: Value = serde_json::from_str(text).unwrap();
    v.as_object_mut().unwrap().remove("hash");
    v
}

#[test]
fn canonical_sorts_keys_without_whitespace() {
    assert_eq!(
        canonical(&json!({"b": [1, {"d": "x", "c": null}], "a": "é\n"})),
        r#"{"a":"é\n","b":[1,{"c":null,"d":"x"}]}"#
    );
}

#[test]
fn records_are_written_in_canonical_form_and_the_hash_is_the_spec_formula() {
    let (text, h) = seal(&key(), "abc", &rec(7));
    let v = without_hash(&text);
    let body = canonical(&v);
    assert_eq!(
        format!("{},\"hash\":\"{h}\"}}", &body[..body.len() - 1]),
        text
    );
    let mut m = HmacSha256::new_from_slice(b"audit-key").unwrap();
    m.update(format!("abc\n{body}").as_bytes());
    assert_eq!(h, hex::encode(m.finalize().into_bytes()));
    assert_eq!(v["prev"], json!("abc"));
    assert_eq!(v["type"], json!("dead_letter"));
    assert_eq!(v["source"]["offset"], json!(7));
    assert_eq!(v["processed_at"], json!("2026-11-23T00:00:00.123Z"));
}

#[test]
fn governed_records_are_canonical_too() {
    use crate::classify::Detector;
    use crate::engine::{Detection, Output};
    let text = "version: 1\nname: t\nkeys: { k: { env: K } }\npurposes:\n  a:\n    basis: contract\n    retention: 1d\n    rules:\n      - { classes: [pii.contact.email], action: keep }\n      - { classes: [pii.identifier], action: { pseudonymize: { key: k } } }\n  b:\n    basis: consent\n    retention: 1d\n    rules: []\nstreams:\n  s:\n    topic: \"in \\\"q\\\"\"\n    subject: id\n    fields: { id: pii.identifier.customer_id, email: pii.contact.email, note: { classes: [internal], scan: true } }\n    outputs: { a: out.a, b: out.b }\nconsent: { topic: c }\n";
    let p = crate::policy::load(text, "t.yaml").unwrap();
    let keys = crate::policy::keys::Keys::from_pairs([("k", b"x".to_vec())]);
    let c = crate::policy::plan::compile(std::sync::Arc::new(p), &keys).unwrap();
    let sa = StreamAudit::new(&c.streams[0]);
    let g = Governed {
        subject: Some("c-\"1".into()),
        event_time_ms: 0,
        outcomes: vec![
            Outcome::Emitted(Output {
                output: 0,
                key: None,
                value: vec![],
                headers: vec![],
            }),
            Outcome::Suppressed(Suppression::Consent),
        ],
        detections: vec![Detection {
            field: "note".into(),
            detector: Detector::Email,
            count: 2,
        }],
        unclassified_fields: 0,
        field_actions: vec![],
        class_occurrences: vec![],
    };
    let src = Source {
        topic: "in \"q\"",
        partition: 3,
        offset: 9,
        timestamp: Some(5),
    };
    let (text, _) = seal(&key(), "", &governed(&sa, &key(), &src, &g, &ctx()));
    let v = without_hash(&text);
    let body = canonical(&v);
    assert!(text.starts_with(&body[..body.len() - 1]), "{text}\n{body}");
    assert_eq!(v["outcomes"][0]["status"], json!("emitted"));
    assert_eq!(v["outcomes"][0]["dropped"], json!(["note"]));
    assert_eq!(
        v["outcomes"][0]["transformed"],
        json!({"id": "pseudonymize"})
    );
    assert_eq!(
        v["outcomes"][1],
        json!({"purpose": "b", "status": "suppressed", "reason": "consent"})
    );
    assert_eq!(
        v["detections"][0],
        json!({"field": "note", "class": "pii.contact.email", "count": 2})
    );
    assert_eq!(v["subject"], json!(key().subject("c-\"1")));
    assert_eq!(v["source"]["topic"], json!("in \"q\""));
    let mut ver = Verifier::new(key());
    ver.check("x", text.as_bytes());
    assert!(ver.finish()[0].breaks.is_empty());
}

#[test]
fn an_intact_chain_verifies() {
    let r = verify(&chain(5));
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].checked, r[0].replays), (5, 0));
    assert!(r[0].breaks.is_empty(), "{:?}", r[0].breaks);
}

#[test]
fn altered_removed_and_reordered_records_are_breaks() {
    let mut altered = chain(4);
    altered[2] = altered_in_place(&altered[2]);
    let r = verify(&altered);
    assert_eq!(r[0].breaks.len(), 1);
    assert_eq!(r[0].breaks[0].position, "0/2");
    assert!(r[0].breaks[0].reason.contains("altered"));

    let mut removed = chain(4);
    removed.remove(1);
    let r = verify(&removed);
    assert_eq!(r[0].breaks.len(), 1);
    assert_eq!(r[0].breaks[0].position, "0/1");
    assert!(r[0].breaks[0].reason.contains("missing"));

    let mut swapped = chain(4);
    swapped.swap(1, 2);
    assert!(!verify(&swapped)[0].breaks.is_empty());

    // Signed with another key: every record fails.
    let mut v = Verifier::new(AuditKey::new(b"other"));
    for (i, r) in chain(3).iter().enumerate() {
        v.check(&i.to_string(), r);
    }
    assert_eq!(v.finish()[0].breaks.len(), 3);
}

#[test]
fn a_replay_from_a_committed_head_is_not_a_break() {
    // Records 0..3 written; the worker dies after committing offset 1
    // (head = hash of record 1); the next owner redoes 2 and 3.
    let k = key();
    let mut c = Chains::default();
    let mut out = Vec::new();
    let mut heads = Vec::new();
    for i in 0..4 {
        let (text, h) = c.append(&k, "t/0", &rec(i));
        heads.push(h);
        out.push(text.into_bytes());
    }
    let mut next = Chains::default();
    next.set_head("t/0".into(), heads[1].clone());
    for i in 2..4 {
        let redo = rec_at(i, ctx().processed_at_ms + 5_000);
        out.push(next.append(&k, "t/0", &redo).0.into_bytes());
    }
    let r = verify(&out);
    assert_eq!((r[0].checked, r[0].replays), (6, 1));
    assert!(r[0].breaks.is_empty(), "{:?}", r[0].breaks);
}

#[test]
fn forged_trails_that_used_to_verify_are_caught() {
    let one = |records: &[Vec<u8>]| verify(records).remove(0);
    // A duplicated record.
    let mut dup = chain(4);
    dup.insert(2, dup[1].clone());
    assert!(!one(&dup).breaks.is_empty());
    // A duplicate key (here "stream"; "subject" alike): serde keeps the
    // last, a first-wins reader sees the forged one; the hash still
    // matches but the bytes are not canonical.
    let k = key();
    let mut c = Chains::default();
    let (text, _) = c.append(&k, "t/0", &rec(0));
    assert!(text.contains("\"stream\":\"s\""), "{text}");
    let forged = text.replacen("{", "{\"stream\":\"forged\",", 1);
    let r = one(&[forged.into_bytes()]);
    assert!(
        r.breaks.iter().any(|b| b.reason.contains("canonical")),
        "{:?}",
        r.breaks
    );
    // Whitespace or reordering of an intact record: not what custos wrote.
    let spaced = String::from_utf8(chain(1).remove(0))
        .unwrap()
        .replacen(",", ", ", 1);
    assert!(!one(&[spaced.into_bytes()]).breaks.is_empty());
    // Records deleted just before a restart: the restart is suspicious.
    let mut out = chain(5);
    out.truncate(2); // records of offsets 2..4 deleted
    let mut fresh = Chains::default();
    out.push(fresh.append(&k, "t/0", &rec(5)).0.into_bytes());
    let r = one(&out);
    assert_eq!(r.restarts, 1);
    assert_eq!(r.suspicious_restarts, vec!["0/2".to_string()]);
    assert_eq!(r.covered.iter().copied().collect::<Vec<_>>(), vec![0, 1, 5]);
    // A legitimate restart (from the committed offset) is not.
    let mut out = chain(3);
    let mut fresh = Chains::default();
    out.push(fresh.append(&k, "t/0", &rec_at(3, 7)).0.into_bytes());
    let r = one(&out);
    assert!(r.suspicious_restarts.is_empty());
    assert_eq!(r.covered.last(), Some(&3));
}

#[test]
fn a_restart_without_a_known_head_is_counted_not_hidden() {
    let mut out = chain(3);
    let mut fresh = Chains::default(); // head unknown: prev = ""
    out.push(fresh.append(&key(), "t/0", &rec(3)).0.into_bytes());
    let rep = verify(&out);
    assert_eq!((rep[0].checked, rep[0].restarts), (4, 1));
    assert!(rep[0].breaks.is_empty());
}

#[test]
fn a_subject_with_a_newline_cannot_sign_a_chain_record() {
    let k = key();
    let (text, h) = seal(&k, "", &rec(0));
    let forged_body = text.replace("decode", "schema");
    // What an attacker would put in an event's subject field.
    let subject = format!("{h}\n{forged_body}");
    let mut m = HmacSha256::new_from_slice(b"audit-key").unwrap();
    m.update(subject.as_bytes());
    assert_ne!(k.subject(&subject), hex::encode(m.finalize().into_bytes()));
    // Ordinary ids keep the spec's formula.
    let mut m = HmacSha256::new_from_slice(b"audit-key").unwrap();
    m.update(b"c-1");
    assert_eq!(k.subject("c-1"), hex::encode(m.finalize().into_bytes()));
}

#[test]
fn a_trail_that_starts_mid_chain_says_so() {
    let r = verify(&chain(4)[2..]);
    assert!(r[0].starts_mid_chain && r[0].breaks.is_empty());
    assert!(!verify(&chain(2))[0].starts_mid_chain);
}

#[test]
fn garbage_is_reported_not_fatal() {
    let mut records = chain(2);
    records.insert(1, b"{oops".to_vec());
    let r = verify(&records);
    let broken: u64 = r.iter().map(|c| c.breaks.len() as u64).sum();
    assert_eq!(broken, 1);
    assert!(r.iter().any(|c| c.chain == "t/0" && c.breaks.is_empty()));
}

/// An erasure record: canonical (the verifier accepts it in a chain), the
/// subjects as HMACs only, and byte for byte the golden file the JSON Schema
/// check validates (`UPDATE_GOLDEN=1` rewrites it).
#[test]
fn erasure_records_are_canonical_verifiable_and_hold_no_subject_id() {
    let src = Source {
        topic: "privacy.erasure",
        partition: 0,
        offset: 7,
        timestamp: Some(1_795_391_000_000),
    };
    let actions = json!({
        "data_keys": {"destroyed": true, "keks": ["support_kek"]},
        "tombstones": [{"stream": "orders", "purpose": "support", "topic": "shop.orders.support", "count": 1}],
    });
    let cx = Context {
        policy: "acme-shop@4be1c0d2a9f1",
        worker: "custos-0",
        ..ctx()
    };
    let u = erasure(
        &key(),
        &src,
        &["c-42".to_string()],
        Some("2026-11-30T09:00:00Z"),
        actions,
        &cx,
    );
    let mut chains = Chains::default();
    let (first, _) = chains.append(&key(), "privacy.erasure/0", &rec(0));
    let (text, _) = chains.append(&key(), "privacy.erasure/0", &u);
    assert!(!text.contains("c-42"), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["subject"], json!(key().subject("c-42")));
    assert_eq!(v["type"], "erasure");
    assert!(v.get("subjects").is_none());
    let mut verifier = Verifier::new(key());
    verifier.check("a", first.as_bytes());
    verifier.check("b", text.as_bytes());
    let reports = verifier.finish();
    assert!(reports.iter().all(|r| r.breaks.is_empty()), "{reports:?}");
    // Two subjects (a key and a body that disagree): both, hashed.
    let two = erasure(
        &key(),
        &src,
        &["a".into(), "b".into()],
        None,
        json!({}),
        &ctx(),
    );
    let (t2, _) = seal(&key(), "", &two);
    let v2: Value = serde_json::from_str(&t2).unwrap();
    assert_eq!(
        v2["subjects"],
        json!([key().subject("a"), key().subject("b")])
    );
    assert_eq!(v2["requested_at"], Value::Null);

    let golden =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/audit-erasure.json");
    let pretty = format!("{text}\n");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &pretty).unwrap();
    }
    assert_eq!(std::fs::read_to_string(&golden).unwrap(), pretty);
}

/// A retention record: canonical, verifiable, and byte for byte the golden
/// file the JSON Schema check validates (`UPDATE_GOLDEN=1` rewrites it).
#[test]
fn retention_records_are_canonical_and_verifiable() {
    let cx = Context {
        policy: "acme-shop@4be1c0d2a9f1",
        worker: "custos-0",
        ..ctx()
    };
    let u = retention(
        "shop.orders.support",
        0,
        1042,
        "support",
        12,
        1_792_800_000_000,
        &cx,
    );
    let mut chains = Chains::default();
    let (text, _) = chains.append(&key(), "shop.orders.support/0", &u);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (v["type"].clone(), v["tombstones"].clone()),
        (json!("retention"), json!(12))
    );
    let mut verifier = Verifier::new(key());
    verifier.check("a", text.as_bytes());
    assert!(verifier.finish().iter().all(|r| r.breaks.is_empty()));
    let golden =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/audit-retention.json");
    let line = format!("{text}\n");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &line).unwrap();
    }
    assert_eq!(std::fs::read_to_string(&golden).unwrap(), line);
}

/// Retention chains restart with every assignment and may sweep twice at
/// one position: neither is a break or a suspicious restart.
#[test]
fn retention_chains_verify_across_restarts_and_repeated_positions() {
    let mut chains = Chains::default();
    let mut verifier = Verifier::new(key());
    let chain = retention_chain("out", 0);
    for (position, restart) in [(10, false), (10, false), (25, true), (30, false)] {
        if restart {
            chains = Chains::default();
        }
        let u = retention("out", 0, position, "p", 1, 0, &ctx());
        let (text, _) = chains.append(&key(), &chain, &u);
        verifier.check("x", text.as_bytes());
    }
    let reports = verifier.finish();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].chain, "retention:out/0");
    assert!(reports[0].breaks.is_empty(), "{:?}", reports[0].breaks);
    assert!(reports[0].suspicious_restarts.is_empty());
    assert_eq!(reports[0].restarts, 1);
}

/// The policy of [`governed_records_are_canonical_too`], compiled.
fn two_purposes() -> StreamAudit {
    let text = "version: 1\nname: t\nkeys: { k: { env: K } }\npurposes:\n  a:\n    basis: contract\n    retention: 1d\n    rules:\n      - { classes: [pii.contact.email], action: keep }\n  b:\n    basis: consent\n    retention: 1d\n    rules: []\nstreams:\n  s:\n    topic: in\n    subject: id\n    fields: { id: pii.identifier.customer_id, note: { classes: [internal], scan: true } }\n    outputs: { a: out.a, b: out.b }\nconsent: { topic: c }\n";
    let p = crate::policy::load(text, "t.yaml").unwrap();
    let keys = crate::policy::keys::Keys::from_pairs([("k", b"x".to_vec())]);
    let c = crate::policy::plan::compile(std::sync::Arc::new(p), &keys).unwrap();
    StreamAudit::new(&c.streams[0])
}

#[test]
fn summary_records_count_per_purpose_and_outcome_and_cover_their_offsets() {
    use crate::classify::Detector;
    use crate::engine::Detection;
    let sa = two_purposes();
    let mut t = Tally::default();
    let note = [Detection {
        field: "note".into(),
        detector: Detector::Email,
        count: 2,
    }];
    t.add(
        10,
        [None, Some(Suppression::Consent)].into_iter(),
        None,
        &note,
    );
    t.add(11, [None, None].into_iter(), None, &note);
    t.add(12, std::iter::empty(), Some("parse"), &[]);
    // 13 is a transaction marker: not a record.
    t.add(
        14,
        [Some(Suppression::Erasure), Some(Suppression::Erasure)].into_iter(),
        None,
        &[],
    );
    assert_eq!(t.ranges, vec![(10, 12), (14, 14)]);
    let cx = Context {
        policy: "acme-shop@4be1c0d2a9f1",
        worker: "custos-0",
        ..ctx()
    };
    let mut chains = Chains::default();
    let (text, _) = chains.append(&key(), "in/0", &sa.summary("in", 0, &t, &cx));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], json!("summary"));
    assert_eq!(v["records"], json!(4));
    assert_eq!(v["dead_letters"], json!({"parse": 1}));
    assert_eq!(
        v["outcomes"],
        json!([
            {"purpose": "a", "topic": "out.a", "emitted": 2, "suppressed": {"erasure": 1}},
            {"purpose": "b", "topic": "out.b", "emitted": 1, "suppressed": {"consent": 1, "erasure": 1}},
        ])
    );
    assert_eq!(
        v["detections"],
        json!([{"field": "note", "class": "pii.contact.email", "count": 4}])
    );
    assert_eq!(v["source"]["offset"], json!(14));
    assert_eq!(v["source"]["offsets"], json!([[10, 12], [14, 14]]));
    assert!(v.get("subject").is_none(), "a summary names no subject");
    // The next summary of the partition follows it; the verifier counts
    // every offset of both as covered.
    let mut next = Tally::default();
    next.add(15, [None, None].into_iter(), None, &[]);
    let (second, _) = chains.append(&key(), "in/0", &sa.summary("in", 0, &next, &cx));
    let mut verifier = Verifier::new(key());
    verifier.check("a", text.as_bytes());
    verifier.check("b", second.as_bytes());
    let r = verifier.finish();
    assert!(r[0].breaks.is_empty(), "{:?}", r[0].breaks);
    assert_eq!(
        r[0].covered.iter().copied().collect::<Vec<_>>(),
        vec![10, 11, 12, 14, 15]
    );
    let golden =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/audit-summary.json");
    let line = format!("{text}\n");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &line).unwrap();
    }
    assert_eq!(std::fs::read_to_string(&golden).unwrap(), line);
}

#[test]
fn summaries_whose_offsets_do_not_add_up_or_go_back_are_breaks() {
    let sa = two_purposes();
    let mut t = Tally::default();
    t.add(5, [None, None].into_iter(), None, &[]);
    t.add(6, [None, None].into_iter(), None, &[]);
    let check = |chain: &[Vec<u8>]| {
        let mut v = Verifier::new(key());
        for (i, r) in chain.iter().enumerate() {
            v.check(&format!("p/{i}"), r);
        }
        v.finish()
    };
    // Signed with the key but claiming offsets it did not count.
    for (ranges, records) in [
        (json!([[5, 6]]), 3),
        (json!([[5, 9]]), 2),
        (json!([[6, 5]]), 2),
        (json!([[5, 5], [5, 5]]), 2),
        (json!([[0, 9_223_372_036_854_775_807i64]]), 2),
    ] {
        let mut m: Map<String, Value> =
            serde_json::from_str(&seal(&key(), "", &sa.summary("in", 0, &t, &ctx())).0).unwrap();
        m.remove("hash");
        m.remove("prev");
        m["source"]["offsets"] = ranges.clone();
        m["records"] = json!(records);
        let (forged, _) = seal(&key(), "", &unsealed(&m));
        let r = check(&[forged.into_bytes()]);
        assert!(
            r[0].breaks
                .iter()
                .any(|b| b.reason.contains("summary offsets")),
            "{ranges} {records}: {:?}",
            r[0].breaks
        );
    }
    // Unsigned (altered after sealing): a break, and none of its ranges
    // counts as covered.
    let (text, _) = seal(&key(), "", &sa.summary("in", 0, &t, &ctx()));
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["source"]["offsets"] = json!([[0, 16_000_000]]);
    v["source"]["offset"] = json!(16_000_000);
    v["records"] = json!(16_000_001);
    let r = check(&[v.to_string().into_bytes()]);
    assert!(!r[0].breaks.is_empty());
    assert!(
        r[0].covered.is_empty(),
        "{} offsets covered",
        r[0].covered.len()
    );
    // A summary going back over offsets an earlier one counted.
    let mut c = Chains::default();
    let first = c.append(&key(), "in/0", &sa.summary("in", 0, &t, &ctx())).0;
    let mut back = Tally::default();
    back.add(6, [None, None].into_iter(), None, &[]);
    back.add(7, [None, None].into_iter(), None, &[]);
    let second = c
        .append(&key(), "in/0", &sa.summary("in", 0, &back, &ctx()))
        .0;
    let r = check(&[first.into_bytes(), second.into_bytes()]);
    assert!(
        r[0].breaks
            .iter()
            .any(|b| b.reason.contains("later input offset")),
        "{:?}",
        r[0].breaks
    );
}

#[test]
fn a_summary_counts_at_most_its_maximum() {
    let sa = two_purposes();
    let mut t = Tally::default();
    t.add(0, [None, None].into_iter(), None, &[]);
    let signed = |last: i64| {
        let mut m: Map<String, Value> =
            serde_json::from_str(&seal(&key(), "", &sa.summary("in", 0, &t, &ctx())).0).unwrap();
        m.remove("hash");
        m.remove("prev");
        m["source"]["offsets"] = json!([[0, last]]);
        m["source"]["offset"] = json!(last);
        m["records"] = json!(last + 1);
        seal(&key(), "", &unsealed(&m)).0.into_bytes()
    };
    let mut v = Verifier::new(key());
    v.check("p/0", &signed(SUMMARY_MAX_RECORDS - 1));
    let r = v.finish();
    assert!(r[0].breaks.is_empty(), "{:?}", r[0].breaks);
    assert_eq!(r[0].covered.len() as i64, SUMMARY_MAX_RECORDS);
    let mut v = Verifier::new(key());
    v.check("p/0", &signed(SUMMARY_MAX_RECORDS));
    let r = v.finish();
    assert!(r[0].breaks[0].reason.contains("summary offsets"));
    assert!(r[0].covered.is_empty());
}

#[test]
fn records_custos_did_not_sign_or_write_shape_nothing() {
    // Altered: a break, and its input offset is not covered.
    let mut altered = chain(3);
    altered[1] = altered_in_place(&altered[1]);
    let r = verify(&altered);
    assert_eq!(r[0].breaks.len(), 1, "{:?}", r[0].breaks);
    assert_eq!(r[0].covered.iter().copied().collect::<Vec<_>>(), vec![0, 2]);

    // Signed, but of a type custos does not write.
    let mut m: Map<String, Value> = serde_json::from_str(&seal(&key(), "", &rec(0)).0).unwrap();
    m.remove("hash");
    m.remove("prev");
    m.insert("type".into(), json!("note"));
    let r = verify(&[seal(&key(), "", &unsealed(&m)).0.into_bytes()]);
    assert!(r[0].breaks[0].reason.contains("type"), "{:?}", r[0].breaks);
    assert!(r[0].covered.is_empty());

    // Signed, with a prev that is not a chain hash.
    let mut c = Chains::default();
    let (first, head) = c.append(&key(), "t/0", &rec(0));
    for prev in [head.to_uppercase(), head[..32].to_string(), "x".repeat(64)] {
        let r = verify(&[
            first.clone().into_bytes(),
            seal(&key(), &prev, &rec(1)).0.into_bytes(),
        ]);
        assert_eq!(r[0].breaks.len(), 1, "{prev}: {:?}", r[0].breaks);
        assert!(
            r[0].breaks[0].reason.contains("prev is neither"),
            "{prev}: {:?}",
            r[0].breaks
        );
    }

    // Signed, with a prev sharing only its first half with the record before.
    let near = format!("{}{}", &head[..32], "0".repeat(32));
    let r = verify(&[
        first.into_bytes(),
        seal(&key(), &near, &rec(1)).0.into_bytes(),
    ]);
    assert!(
        r[0].breaks
            .iter()
            .any(|b| b.reason.contains("matches no earlier")),
        "{:?}",
        r[0].breaks
    );
}
