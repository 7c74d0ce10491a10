//! Per-event governance through the library API: one `check` per case.

use std::sync::Arc;

use custos::engine::{self, DeadLetterReason, Outcome, Record, Scratch, Suppression, Verdict};
use custos::policy::{self, keys::Keys, plan::Compiled};
use custos::state::MemoryState;
use custos::transform::pseudonym_with_key;
use serde_json::{json, Value};

const NOW: i64 = 1_795_000_000_000; // 2026-11-18T...

fn compile(text: &str) -> Compiled {
    let p = policy::load(text, "test.yaml").unwrap_or_else(|e| panic!("{e}"));
    let keys = Keys::from_pairs([("k1", b"key-one".to_vec()), ("k2", b"key-two".to_vec())]);
    policy::plan::compile(Arc::new(p), &keys).unwrap()
}

struct In<'a> {
    key: Option<&'a str>,
    value: Value,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: Option<i64>,
}

fn event(value: Value) -> In<'static> {
    In {
        key: None,
        value,
        headers: Vec::new(),
        timestamp: Some(NOW),
    }
}

fn govern(c: &Compiled, input: &In<'_>, state: &MemoryState) -> Verdict {
    let bytes = serde_json::to_vec(&input.value).unwrap();
    govern_bytes(c, input, &bytes, state)
}

fn govern_bytes(c: &Compiled, input: &In<'_>, bytes: &[u8], state: &MemoryState) -> Verdict {
    let plan = &c.streams[0];
    let rec = Record {
        topic: &plan.topic,
        partition: 2,
        offset: 41,
        timestamp: input.timestamp,
        key: input.key.map(str::as_bytes),
        value: bytes,
        headers: &input.headers,
    };
    engine::govern(
        plan,
        &c.policy.id(),
        &rec,
        state,
        NOW,
        &mut Scratch::default(),
    )
}

/// purpose → Some(value) when emitted, Err(reason) when suppressed.
fn outcomes(c: &Compiled, v: &Verdict) -> Vec<(String, Result<Value, Suppression>)> {
    let Verdict::Governed(g) = v else {
        panic!("dead letter: {v:?}")
    };
    g.outcomes
        .iter()
        .zip(&c.streams[0].outputs)
        .map(|(o, plan)| {
            (
                plan.name.clone(),
                match o {
                    Outcome::Emitted(out) => {
                        Ok(serde_json::from_slice(&out.value).expect("output is JSON"))
                    }
                    Outcome::Suppressed(s) => Err(*s),
                },
            )
        })
        .collect()
}

/// Governs `input` and compares every purpose's outcome.
fn check(
    c: &Compiled,
    input: In<'_>,
    state: &MemoryState,
    expected: &[(&str, Result<Value, Suppression>)],
) {
    let v = govern(c, &input, state);
    let got = outcomes(c, &v);
    let want: Vec<(String, Result<Value, Suppression>)> = expected
        .iter()
        .map(|(p, r)| (p.to_string(), r.clone()))
        .collect();
    assert_eq!(got, want);
}

fn header<'a>(v: &'a Verdict, output: usize, name: &str) -> Option<&'a str> {
    let Verdict::Governed(g) = v else { return None };
    match &g.outcomes[output] {
        Outcome::Emitted(o) => o
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| std::str::from_utf8(v).unwrap()),
        Outcome::Suppressed(_) => None,
    }
}

const SHOP: &str = r#"
version: 1
name: shop
keys:
  k1: { env: K1 }
  k2: { env: K2 }
purposes:
  analytics:
    basis: legitimate_interest
    retention: 30d
    rules:
      - classes: [public, internal, behavioral]
        action: keep
      - classes: [pii.identifier]
        action: { pseudonymize: { key: k1 } }
      - classes: [pii.location]
        action: { generalize: { round: 1 } }
      - classes: [pii.date_of_birth]
        action: { generalize: { date: year } }
      - classes: [pii.contact.postal_code]
        action: { generalize: { prefix: 3 } }
  marketing:
    basis: consent
    retention: 90d
    rules:
      - classes: [pii.contact.email, pii.name, behavioral.purchase]
        action: keep
      - classes: [pii.identifier.customer_id]
        action: { pseudonymize: { key: k2 } }
  support:
    basis: contract
    retention: 365d
    rules:
      - classes: [pii, behavioral, public, internal]
        action: keep
      - classes: [pii.financial.card]
        action: { mask: { keep_last: 4 } }
streams:
  orders:
    topic: shop.orders
    subject: customer.id
    event_time: created_at
    fields:
      $key: pii.identifier.customer_id
      order_id: internal
      created_at: public
      customer.id: pii.identifier.customer_id
      customer.email: pii.contact.email
      customer.name: pii.name
      customer.birth_date: pii.date_of_birth
      customer.address: pii.contact.address
      customer.address.postal_code: pii.contact.postal_code
      customer.geo.lat: pii.location.precise
      customer.geo.lon: pii.location.precise
      customer.health_notes: sensitive.health
      payment.card_number: pii.financial.card
      payment.amount: behavioral.purchase
      items[].sku: behavioral.purchase
      items[].qty: behavioral.purchase
      notes: { classes: [internal], scan: true }
    outputs:
      support: shop.orders.support
      analytics: shop.orders.analytics
      marketing: shop.orders.marketing
consent:
  topic: privacy.consent
erasure:
  topic: privacy.erasure
"#;

fn order() -> Value {
    json!({
        "order_id": "o-1",
        "created_at": "2026-11-17T10:00:00Z",
        "customer": {
            "id": "c-1", "email": "ada@example.com", "name": "Ada",
            "birth_date": "1985-12-10",
            "address": {"street": "12 Way", "postal_code": "NW1 6XE"},
            "geo": {"lat": 51.52343, "lon": -0.15871},
            "health_notes": "asthma"
        },
        "payment": {"card_number": "4111111111111111", "amount": 12.5},
        "items": [{"sku": "A", "qty": 2, "price": 9.5}, {"price": 1}],
        "notes": "mail ada@example.com",
        "coupon": "X1"
    })
}

fn consented(subject: &str, purposes: Value) -> MemoryState {
    let mut s = MemoryState::for_policy(&compile(SHOP).policy);
    s.apply_consent(
        None,
        Some(
            json!({"subject": subject, "purposes": purposes})
                .to_string()
                .as_bytes(),
        ),
    )
    .unwrap();
    s
}

#[test]
fn spec_example_fans_out_per_purpose() {
    let c = compile(SHOP);
    let ps = |k: &[u8], v: &str| Value::String(pseudonym_with_key(k, v.as_bytes()));
    check(
        &c,
        event(order()),
        &consented("c-1", json!({"marketing": true})),
        &[
            // Outputs come in policy order, whatever order the stream lists them.
            (
                "analytics",
                Ok(json!({
                    "order_id": "o-1", "created_at": "2026-11-17T10:00:00Z",
                    "customer": {"id": ps(b"key-one", "c-1"), "birth_date": "1985", "address": {"postal_code": "NW1"}, "geo": {"lat": 51.5, "lon": -0.2}},
                    "payment": {"amount": 12.5},
                    "items": [{"sku": "A", "qty": 2}],
                    "notes": "mail [REDACTED:pii.contact.email]"
                })),
            ),
            (
                "marketing",
                Ok(json!({
                    "customer": {"id": ps(b"key-two", "c-1"), "email": "ada@example.com", "name": "Ada"},
                    "payment": {"amount": 12.5},
                    "items": [{"sku": "A", "qty": 2}]
                })),
            ),
            (
                "support",
                Ok(json!({
                    "order_id": "o-1", "created_at": "2026-11-17T10:00:00Z",
                    "customer": {"id": "c-1", "email": "ada@example.com", "name": "Ada", "birth_date": "1985-12-10",
                        "address": {"street": "12 Way", "postal_code": "NW1 6XE"}, "geo": {"lat": 51.52343, "lon": -0.15871}},
                    "payment": {"card_number": "************1111", "amount": 12.5},
                    "items": [{"sku": "A", "qty": 2}],
                    "notes": "mail ada@example.com"
                })),
            ),
        ],
    );
}

#[test]
fn headers_and_key() {
    let c = compile(SHOP);
    let mut input = event(order());
    input.key = Some("c-1");
    input.headers = vec![("trace".into(), b"t-1".to_vec())];
    let v = govern(&c, &input, &MemoryState::for_policy(&c.policy));
    // analytics is output 0 (policy order).
    assert_eq!(header(&v, 0, "custos-purpose"), Some("analytics"));
    assert_eq!(header(&v, 0, "custos-source"), Some("shop.orders/2/41"));
    assert_eq!(header(&v, 0, "custos-policy"), Some(c.policy.id().as_str()));
    assert!(c.policy.id().starts_with("shop@") && c.policy.id().len() == "shop@".len() + 12);
    assert_eq!(
        header(&v, 0, "custos-classes"),
        Some("behavioral.purchase=keep,internal=keep,pii.contact.email=redact,pii.contact.postal_code=generalize,pii.date_of_birth=generalize,pii.identifier.customer_id=pseudonymize,pii.location.precise=generalize,public=keep")
    );
    // Unlisted input headers are not copied.
    assert_eq!(header(&v, 0, "trace"), None);
    let Verdict::Governed(g) = &v else { panic!() };
    let Outcome::Emitted(a) = &g.outcomes[0] else {
        panic!()
    };
    assert_eq!(
        a.key.as_deref(),
        Some(pseudonym_with_key(b"key-one", b"c-1").as_bytes())
    );
    let Outcome::Emitted(s) = &g.outcomes[2] else {
        panic!()
    };
    assert_eq!(s.key.as_deref(), Some(&b"c-1"[..]));
    // marketing: no consent.
    assert_eq!(g.outcomes[1], Outcome::Suppressed(Suppression::Consent));
}

#[test]
fn unclassified_key_becomes_null_and_headers_are_governed() {
    let c = compile(
        r#"
version: 1
name: h
keys: { k1: { env: K } }
purposes:
  p:
    basis: contract
    retention: 1d
    rules:
      - { classes: [internal], action: keep }
      - { classes: [pii.identifier], action: { pseudonymize: { key: k1 } } }
streams:
  s:
    topic: in
    fields:
      a: internal
      $headers.trace: internal
      $headers.user: pii.identifier.account_id
    outputs: { p: out }
"#,
    );
    let mut input = event(json!({"a": 1}));
    input.key = Some("secret-key");
    input.headers = vec![
        ("trace".into(), b"t-9".to_vec()),
        ("user".into(), b"u-1".to_vec()),
        ("other".into(), b"x".to_vec()),
    ];
    let v = govern(&c, &input, &MemoryState::for_policy(&c.policy));
    let Verdict::Governed(g) = &v else { panic!() };
    let Outcome::Emitted(o) = &g.outcomes[0] else {
        panic!()
    };
    assert_eq!(o.key, None);
    let names: Vec<&str> = o.headers.iter().map(|(n, _)| n.as_ref()).collect();
    assert_eq!(
        names,
        [
            "custos-policy",
            "custos-purpose",
            "custos-classes",
            "custos-source",
            "trace",
            "user"
        ]
    );
    assert_eq!(header(&v, 0, "trace"), Some("t-9"));
    assert_eq!(
        header(&v, 0, "user"),
        Some(pseudonym_with_key(b"key-one", b"u-1").as_str())
    );
}

#[test]
fn suppression_reasons() {
    let c = compile(SHOP);
    // Erasure wins over everything.
    let mut erased = consented("c-1", json!({"marketing": true}));
    erased
        .apply_erasure(None, Some(br#"{"subject":"c-1"}"#))
        .unwrap();
    check(
        &c,
        event(order()),
        &erased,
        &[
            ("analytics", Err(Suppression::Erasure)),
            ("marketing", Err(Suppression::Erasure)),
            ("support", Err(Suppression::Erasure)),
        ],
    );
    // Objection stops legitimate interest; withdrawal stops consent; contract ignores both.
    let objected = consented(
        "c-1",
        json!({"analytics": false, "marketing": false, "support": false}),
    );
    let v = govern(&c, &event(order()), &objected);
    let got: Vec<Option<Suppression>> =
        outcomes(&c, &v).into_iter().map(|(_, r)| r.err()).collect();
    assert_eq!(
        got,
        vec![
            Some(Suppression::Objection),
            Some(Suppression::Consent),
            None
        ]
    );
    // No subject id: consent purposes get nothing; others do.
    let mut no_subject = order();
    no_subject["customer"].as_object_mut().unwrap().remove("id");
    let v = govern(
        &c,
        &event(no_subject),
        &consented("c-1", json!({"marketing": true})),
    );
    let got: Vec<Option<Suppression>> =
        outcomes(&c, &v).into_iter().map(|(_, r)| r.err()).collect();
    assert_eq!(got, vec![None, Some(Suppression::Consent), None]);
}

#[test]
fn retention_uses_event_time() {
    let c = compile(SHOP);
    let state = consented("c-1", json!({"marketing": true}));
    let day = 86_400_000i64;
    let at = |ms: i64| {
        let mut o = order();
        o["created_at"] = json!(ms);
        o
    };
    let status = |v: Value| -> Vec<Option<Suppression>> {
        outcomes(&c, &govern(&c, &event(v), &state))
            .into_iter()
            .map(|(_, r)| r.err())
            .collect()
    };
    assert_eq!(status(at(NOW - 29 * day)), vec![None, None, None]);
    assert_eq!(
        status(at(NOW - 31 * day)),
        vec![Some(Suppression::Expired), None, None]
    );
    assert_eq!(
        status(at(NOW - 91 * day)),
        vec![Some(Suppression::Expired), Some(Suppression::Expired), None]
    );
    assert_eq!(
        status(at(NOW - 366 * day)),
        vec![Some(Suppression::Expired); 3]
    );
    // RFC 3339 works too; a malformed event time is a dead letter, not a guess.
    let mut o = order();
    o["created_at"] = json!("yesterday");
    assert!(
        matches!(govern(&c, &event(o), &state), Verdict::DeadLetter(d) if d.reason == DeadLetterReason::EventTime)
    );
    // A missing event time falls back to the record timestamp.
    let mut o = order();
    o.as_object_mut().unwrap().remove("created_at");
    let mut input = event(o);
    input.timestamp = Some(NOW - 31 * day);
    let got: Vec<Option<Suppression>> = outcomes(&c, &govern(&c, &input, &state))
        .into_iter()
        .map(|(_, r)| r.err())
        .collect();
    assert_eq!(got, vec![Some(Suppression::Expired), None, None]);
}

const MULTI: &str = r#"
version: 1
name: m
purposes:
  p:
    basis: contract
    retention: 1d
    rules:
      - { classes: [internal, public], action: keep }
      - { classes: [pii.contact], action: { mask: { keep_first: 1 } } }
      - { classes: [pii.name], action: redact }
streams:
  s:
    topic: in
    unclassified: UNCLASSIFIED
    fields:
      both: [pii.contact.email, public]
      named: [pii.name, internal]
      doc: internal
      doc.secret: sensitive.health
      doc.inner.deep: sensitive
      list[]: public
      matrix[][]: internal
      rows[].cells[].v: public
    outputs: { p: out }
"#;

#[test]
fn most_restrictive_class_wins_and_specific_paths_override() {
    let c = compile(&MULTI.replace("UNCLASSIFIED", "drop"));
    check(
        &c,
        event(json!({
            "both": "bob@example.com",
            "named": "Bob",
            "doc": {"title": "t", "secret": "s", "inner": {"deep": 1, "shallow": 2}},
            "list": [1, 2],
            "matrix": [[1], []],
            "rows": [{"cells": [{"v": 1, "w": 2}]}, {"cells": [{"w": 3}]}],
            "extra": {"x": 1}
        })),
        &MemoryState::for_policy(&c.policy),
        &[(
            "p",
            Ok(json!({
                "both": "b**************",
                "named": "[REDACTED]",
                "doc": {"title": "t", "inner": {"shallow": 2}},
                "list": [1, 2],
                "matrix": [[1]],
                "rows": [{"cells": [{"v": 1}]}]
            })),
        )],
    );
}

#[test]
fn emptied_structure_is_removed_and_field_order_kept() {
    let c = compile(&MULTI.replace("UNCLASSIFIED", "drop"));
    check(
        &c,
        event(
            json!({"doc": {"secret": "s", "inner": {"deep": 1}}, "rows": [{"cells": [{"w": 1}]}], "z": 1, "named": "x", "both": "a@b.cd"}),
        ),
        &MemoryState::for_policy(&c.policy),
        &[("p", Ok(json!({"named": "[REDACTED]", "both": "a*****"})))],
    );
    // Order is the input's, not alphabetical.
    let v = govern(
        &c,
        &event(json!({"named": "x", "both": "a@b.cd"})),
        &MemoryState::for_policy(&c.policy),
    );
    let Verdict::Governed(g) = v else { panic!() };
    let Outcome::Emitted(o) = &g.outcomes[0] else {
        panic!()
    };
    assert_eq!(
        std::str::from_utf8(&o.value).unwrap(),
        r#"{"named":"[REDACTED]","both":"a*****"}"#
    );
}

#[test]
fn unclassified_dead_letter_mode() {
    let c = compile(&MULTI.replace("UNCLASSIFIED", "dead_letter"));
    let v = govern(
        &c,
        &event(json!({"named": "x", "surprise": {"a": 1}})),
        &MemoryState::for_policy(&c.policy),
    );
    assert!(matches!(v, Verdict::DeadLetter(d) if d.reason == DeadLetterReason::Unclassified));
    let v = govern(
        &c,
        &event(json!({"named": "x"})),
        &MemoryState::for_policy(&c.policy),
    );
    assert!(matches!(v, Verdict::Governed(_)));
}

#[test]
fn undecodable_records_are_dead_letters() {
    let c = compile(&MULTI.replace("UNCLASSIFIED", "drop"));
    let input = event(json!(null));
    for (bytes, reason) in [
        (&b"{not json"[..], DeadLetterReason::Decode),
        (&b"[1,2]"[..], DeadLetterReason::Decode),
        (&b"\"just a string\""[..], DeadLetterReason::Decode),
        (&b"{\"named\":\"\xff\xfe\"}"[..], DeadLetterReason::Decode),
        (&b""[..], DeadLetterReason::Decode),
    ] {
        match govern_bytes(&c, &input, bytes, &MemoryState::for_policy(&c.policy)) {
            Verdict::DeadLetter(d) => {
                assert_eq!(d.reason, reason);
                assert!(
                    !d.detail.contains("named"),
                    "detail must not echo content: {}",
                    d.detail
                );
            }
            other => panic!("expected dead letter for {bytes:?}, got {other:?}"),
        }
    }
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    let bytes = format!("{{\"list\":{deep}}}");
    assert!(
        matches!(govern_bytes(&c, &input, bytes.as_bytes(), &MemoryState::for_policy(&c.policy)), Verdict::DeadLetter(d) if d.reason == DeadLetterReason::Decode)
    );
    let plan = &c.streams[0];
    let rec = Record {
        topic: "in",
        partition: 0,
        offset: 0,
        timestamp: None,
        key: None,
        value: br#"{"named":"x"}"#,
        headers: &[],
    };
    let v = engine::govern_with_limits(
        plan,
        "m@x",
        &rec,
        &MemoryState::for_policy(&c.policy),
        NOW,
        &mut Scratch::default(),
        engine::Limits {
            max_record_bytes: 5,
            ..engine::Limits::default()
        },
    );
    assert!(matches!(v, Verdict::DeadLetter(d) if d.reason == DeadLetterReason::TooLarge));
}

#[test]
fn numbers_pass_through_exactly() {
    let c = compile(&MULTI.replace("UNCLASSIFIED", "drop"));
    let input = event(json!(null));
    let raw = br#"{"list":[12345678901234567890123,1.50,-0.0,1e400]}"#;
    let v = govern_bytes(&c, &input, raw, &MemoryState::for_policy(&c.policy));
    let Verdict::Governed(g) = v else { panic!() };
    let Outcome::Emitted(o) = &g.outcomes[0] else {
        panic!()
    };
    // Kept numbers are copied as written: big integers, trailing zeros, huge exponents.
    assert_eq!(
        std::str::from_utf8(&o.value).unwrap(),
        std::str::from_utf8(raw).unwrap()
    );
}

#[test]
fn duplicate_keys_are_dead_letters() {
    // Parsers disagree on which duplicate wins: refusing them closes a smuggling route.
    let c = compile(&MULTI.replace("UNCLASSIFIED", "drop"));
    let input = event(json!(null));
    for raw in [
        &br#"{"named":"first","named":"second"}"#[..],
        br#"{"doc":{"title":"a","title":"b"}}"#,
        br#"{"named":"a","\u006eamed":"b"}"#,
    ] {
        let v = govern_bytes(&c, &input, raw, &MemoryState::for_policy(&c.policy));
        assert!(
            matches!(&v, Verdict::DeadLetter(d) if d.reason == DeadLetterReason::Decode && d.detail.contains("duplicate")),
            "{v:?}"
        );
    }
}

#[test]
fn scanned_spans_get_their_purpose_action_in_place() {
    let c = compile(
        r#"
version: 1
name: scan
keys: { k1: { env: K } }
purposes:
  a:
    basis: contract
    retention: 1d
    rules:
      - { classes: [internal], action: keep }
      - { classes: [pii.contact.phone], action: { mask: { keep_last: 2 } } }
      - { classes: [pii.identifier.ip_address], action: { generalize: { network: 24 } } }
      - { classes: [pii.contact.email], action: { pseudonymize: { key: k1 } } }
  b:
    basis: contract
    retention: 1d
    rules:
      - { classes: [internal], action: { generalize: { prefix: 12 } } }
streams:
  s:
    topic: in
    fields:
      text: { classes: [internal], scan: true }
    outputs: { a: out.a, b: out.b }
"#,
    );
    let text = "ip 10.1.2.3 tel +44 20 7946 0958 mail x@y.io card 4111 1111 1111 1111";
    let ps = pseudonym_with_key(b"key-one", b"x@y.io");
    check(
        &c,
        event(json!({"text": text})),
        &MemoryState::for_policy(&c.policy),
        &[
            (
                "a",
                Ok(
                    json!({"text": format!("ip 10.1.2.0 tel **************58 mail {ps} card [REDACTED:pii.financial.card]")}),
                ),
            ),
            // The field's own action applies after the spans: no span can leak through a prefix.
            ("b", Ok(json!({"text": "ip [REDACTED"}))),
        ],
    );
    let Verdict::Governed(g) = govern(
        &c,
        &event(json!({"text": text})),
        &MemoryState::for_policy(&c.policy),
    ) else {
        panic!()
    };
    let found: Vec<(&str, u32)> = g
        .detections
        .iter()
        .map(|d| (d.detector.name(), d.count))
        .collect();
    assert_eq!(
        found,
        vec![("ipv4", 1), ("phone", 1), ("email", 1), ("card", 1)]
    );
}

#[test]
fn consent_basis_without_any_state_suppresses() {
    let c = compile(SHOP);
    let v = govern(&c, &event(order()), &MemoryState::for_policy(&c.policy));
    let got: Vec<Option<Suppression>> =
        outcomes(&c, &v).into_iter().map(|(_, r)| r.err()).collect();
    assert_eq!(got, vec![None, Some(Suppression::Consent), None]);
}

/// Found in review: data hidden in keys, in an unexpected shape, or in a number.
#[test]
fn no_leak_through_keys_shapes_or_numbers() {
    let c = compile(SHOP);
    let state = consented("c-1", json!({"marketing": true}));
    let leaked = |event: Value, secret: &str| -> Vec<String> {
        let v = govern(&c, &event_with(event), &state);
        outcomes(&c, &v)
            .into_iter()
            .filter_map(|(p, r)| r.ok().filter(|v| v.to_string().contains(secret)).map(|_| p))
            .collect()
    };
    let base = order();
    // A map keyed by card numbers: the key is card data, support may only see it masked.
    let mut e = base.clone();
    e["payment"]["card_number"] = json!({"4111111111111111": "visa"});
    assert_eq!(leaked(e, "4111111111111111"), Vec::<String>::new());
    // A map at the subject path, or the customer object wrapped in an
    // array: the subject cannot be read, so erasure and objection could not
    // be checked: the event is dead-lettered (`subject`), never emitted.
    let dead_subject = |event: Value| {
        matches!(govern(&c, &event_with(event), &state),
            Verdict::DeadLetter(d) if d.reason == DeadLetterReason::Subject)
    };
    let mut e = base.clone();
    e["customer"]["id"] = json!({"c-123": 1});
    assert!(dead_subject(e));
    let mut e = base.clone();
    e["customer"] = json!([{"id": "c-1", "email": "ada@example.com", "health_notes": "asthma"}]);
    assert!(dead_subject(e));
    // items[] given as an object keyed by position: element rules still apply.
    let mut e = base.clone();
    e["items"] = json!({"0": {"sku": "A", "secret": "s3cr3t"}});
    assert_eq!(leaked(e, "s3cr3t"), Vec::<String>::new());
    // A card number written as a JSON number in a scanned field.
    let mut e = base;
    e["notes"] = json!(4111111111111111u64);
    // (support keeps notes but masks the card span: `************1111`.)
    assert_eq!(leaked(e, "4111111111111111"), Vec::<String>::new());
}

fn event_with(value: Value) -> In<'static> {
    event(value)
}

#[test]
fn field_actions_and_class_occurrences_count_classified_values() {
    use custos::policy::ActionKind;
    let c = compile(SHOP);
    let plan = &c.streams[0];
    let state = consented("c-1", json!({"marketing": true}));
    let Verdict::Governed(g) = govern(&c, &event(order()), &state) else {
        panic!("dead letter")
    };
    let class = |name: &str| {
        let i = plan.class_names.iter().position(|c| c == name).unwrap();
        g.class_occurrences[i]
    };
    assert_eq!(class("internal"), 2, "order_id and notes");
    assert_eq!(class("behavioral.purchase"), 3, "amount, sku, qty");
    assert_eq!(class("pii.location.precise"), 2);
    assert_eq!(class("pii.contact.address"), 1, "the unnamed street");
    assert_eq!(class("sensitive.health"), 1);
    // 16 classified values (price and coupon are unclassified): every
    // purpose accounts for each of them with exactly one action.
    for (o, counts) in plan.outputs.iter().zip(&g.field_actions) {
        assert_eq!(counts.iter().sum::<u32>(), 16, "{}: {counts:?}", o.name);
    }
    let by = |purpose: &str, a: ActionKind| {
        let i = plan.outputs.iter().position(|o| o.name == purpose).unwrap();
        g.field_actions[i][a as usize]
    };
    assert_eq!(
        by("analytics", ActionKind::Generalize),
        4,
        "birth date, postal code, lat, lon"
    );
    assert_eq!(by("analytics", ActionKind::Pseudonymize), 1);
    assert_eq!(by("analytics", ActionKind::Keep), 6);
    assert_eq!(
        by("analytics", ActionKind::Drop),
        5,
        "email, name, street, health, card"
    );
    assert_eq!(by("support", ActionKind::Mask), 1);
    assert_eq!(by("support", ActionKind::Drop), 1, "health notes");
    assert_eq!(by("marketing", ActionKind::Keep), 5);
    assert_eq!(g.unclassified_fields, 3, "two prices and the coupon");
}

/// A value decoded from another format (Avro) is governed from the tape its
/// decoder wrote, and only from a tape of the whole value: any other tape
/// in the scratch (none, or one of another value) is not trusted and the
/// text is parsed, with the same verdict as for JSON.
#[test]
fn a_decoded_value_is_governed_from_its_tape_and_only_from_its_own() {
    let c = compile(SHOP);
    let state = consented("c-1", json!({"marketing": true}));
    let bytes = serde_json::to_vec(&order()).unwrap();
    let plan = &c.streams[0];
    let rec = |value: &'static [u8]| Record {
        topic: "shop.orders",
        partition: 2,
        offset: 41,
        timestamp: Some(NOW),
        key: None,
        value,
        headers: &[],
    };
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    let expected = engine::govern(
        plan,
        &c.policy.id(),
        &rec(bytes),
        &state,
        NOW,
        &mut Scratch::default(),
    );
    assert!(matches!(expected, Verdict::Governed(_)));
    let decoded = |scratch: &mut Scratch| {
        engine::govern_with_limits(
            plan,
            &c.policy.id(),
            &rec(bytes),
            &state,
            NOW,
            scratch,
            engine::Limits::default(),
        )
    };
    // Its own tape.
    let mut scratch = Scratch::default();
    scratch.decoded_tape().parse(bytes).unwrap();
    assert_eq!(decoded(&mut scratch), expected);
    // The tape is used up: governing again parses.
    assert!(scratch.decoded_tape().toks.is_empty());
    assert_eq!(decoded(&mut scratch), expected);
    // A tape of another value: not trusted, not even one of a text as long.
    let other = br#"{"order_id":"o-2","customer":{"email":"bob@example.com"}}"#;
    scratch.decoded_tape().parse(other).unwrap();
    assert_eq!(decoded(&mut scratch), expected);
    let same_length = format!(r#"{{"p":"{}"}}"#, "x".repeat(bytes.len() - 8));
    assert_eq!(same_length.len(), bytes.len());
    scratch
        .decoded_tape()
        .parse(same_length.as_bytes())
        .unwrap();
    assert_eq!(decoded(&mut scratch), expected);
    // Nor one of the same text elsewhere in memory.
    let copy = bytes.to_vec();
    scratch.decoded_tape().parse(&copy).unwrap();
    assert!(!scratch.decoded_tape().spans(bytes));
    // A tape that is not one: the text is parsed, and a bad text is a dead letter.
    let mut scratch = Scratch::default();
    scratch.decoded_tape().parse(b"{}").unwrap();
    let broken: &'static [u8] = b"{\"order_id\": ";
    match engine::govern_with_limits(
        plan,
        &c.policy.id(),
        &rec(broken),
        &state,
        NOW,
        &mut scratch,
        engine::Limits::default(),
    ) {
        Verdict::DeadLetter(d) => assert_eq!(d.reason, DeadLetterReason::Decode),
        v => panic!("{v:?}"),
    }
}
