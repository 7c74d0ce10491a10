//! Regression tests for the leaks an adversarial review found (hostile and
//! careless producers against the example shop policy). Each case names the
//! way data got out; every one failed before its fix.

use std::sync::Arc;

use custos::engine::{self, DeadLetterReason, Outcome, Record, Scratch, Suppression, Verdict};
use custos::policy::{self, keys::Keys, plan::Compiled};
use custos::state::MemoryState;
use serde_json::{json, Value};

const SHOP: &str = include_str!("../examples/shop/policy.yaml");
/// 2026-11-23T00:00:00Z
const NOW: i64 = 1_795_392_000_000;

fn compile(text: &str) -> Compiled {
    let p = policy::load(text, "policy.yaml").unwrap_or_else(|e| panic!("{e}"));
    let keys = Keys::from_pairs([
        ("analytics", b"analytics-key-0123456789".to_vec()),
        ("marketing", b"marketing-key-0123456789".to_vec()),
    ]);
    policy::plan::compile(Arc::new(p), &keys).unwrap()
}

/// The shop policy with extra lines under the orders stream's `fields:`.
fn shop_with_fields(extra: &str) -> String {
    SHOP.replace(
        "      order_id: internal\n",
        &format!("      order_id: internal\n{extra}"),
    )
}

struct Rec<'a> {
    key: Option<&'a [u8]>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: Option<i64>,
}

fn rec(value: Value) -> Rec<'static> {
    Rec {
        key: None,
        value: serde_json::to_vec(&value).unwrap(),
        headers: Vec::new(),
        timestamp: Some(NOW),
    }
}

fn govern(c: &Compiled, r: &Rec<'_>, state: &MemoryState) -> Verdict {
    let plan = &c.streams[0];
    let record = Record {
        topic: &plan.topic,
        partition: 0,
        offset: 7,
        timestamp: r.timestamp,
        key: r.key,
        value: &r.value,
        headers: &r.headers,
    };
    engine::govern(
        plan,
        &c.policy.id(),
        &record,
        state,
        NOW,
        &mut Scratch::default(),
    )
}

/// Every emitted output as one text (key, value and headers) per purpose.
fn emitted(c: &Compiled, v: &Verdict) -> Vec<(String, String)> {
    let Verdict::Governed(g) = v else {
        return Vec::new();
    };
    g.outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Emitted(out) => {
                let mut text = String::from_utf8_lossy(&out.value).into_owned();
                if let Some(k) = &out.key {
                    text.push_str(" key=");
                    text.push_str(&String::from_utf8_lossy(k));
                }
                for (n, v) in &out.headers {
                    text.push_str(&format!(" {n}={}", String::from_utf8_lossy(v)));
                }
                Some((c.streams[0].outputs[out.output].name.clone(), text))
            }
            Outcome::Suppressed(_) => None,
        })
        .collect()
}

/// The purposes whose output contains `secret`.
fn leaks(c: &Compiled, v: &Verdict, secret: &str) -> Vec<String> {
    emitted(c, v)
        .into_iter()
        .filter(|(_, t)| t.contains(secret))
        .map(|(p, _)| p)
        .collect()
}

fn dead(v: &Verdict) -> Option<DeadLetterReason> {
    match v {
        Verdict::DeadLetter(d) => Some(d.reason),
        Verdict::Governed(_) => None,
    }
}

fn order() -> Value {
    json!({"order_id": "o-1", "created_at": "2026-11-22T10:00:00Z",
           "customer": {"id": "c-4", "email": "ada@example.com"},
           "notes": "leave at door"})
}

fn state(c: &Compiled) -> MemoryState {
    MemoryState::for_policy(&c.policy)
}

#[test]
fn scanned_keys_and_headers_are_governed() {
    let c = compile(&shop_with_fields(
        "      $headers.note: { classes: [internal], scan: true }\n",
    ));
    let mut r = rec(order());
    r.headers = vec![("note".into(), b"ada@example.com +44 20 7946 0958".to_vec())];
    let v = govern(&c, &r, &state(&c));
    assert_eq!(leaks(&c, &v, "ada@example.com +44"), vec!["support"]);
    assert!(leaks(&c, &v, "7946").iter().all(|p| p == "support"));
    let out = emitted(&c, &v);
    let analytics = &out.iter().find(|(p, _)| p == "analytics").unwrap().1;
    assert!(
        analytics.contains("note=[REDACTED:pii.contact.email] [REDACTED:pii.contact.phone]"),
        "{analytics}"
    );

    // A scanned key: e-mail addresses in it are the e-mail class's business.
    let c = compile(&SHOP.replace(
        "      $key: pii.identifier.customer_id\n",
        "      $key: { classes: [internal], scan: true }\n",
    ));
    let mut r = rec(order());
    r.key = Some(b"ada@example.com");
    let v = govern(&c, &r, &state(&c));
    assert_eq!(leaks(&c, &v, "ada@example.com"), vec!["support"]);
}

#[test]
fn object_keys_inside_scanned_fields_are_scanned() {
    let c = compile(SHOP);
    let mut e = order();
    e["notes"] = json!({"ada@example.com": 1, "plain": "x"});
    let v = govern(&c, &rec(e), &state(&c));
    assert_eq!(leaks(&c, &v, "ada@example.com"), vec!["support"]);
    // The member without personal data in its key still goes where notes go.
    assert!(leaks(&c, &v, "plain").contains(&"analytics".to_string()));
    let Verdict::Governed(g) = &v else { panic!() };
    assert!(g.detections.iter().any(|d| &*d.field == "notes"));
}

#[test]
fn an_erased_subject_is_found_whatever_its_form() {
    let c = compile(SHOP);
    let mut s = state(&c);
    s.apply_erasure(None, Some(br#"{"subject":42}"#)).unwrap();
    s.apply_erasure(None, Some(br#"{"subject":"Jos\u00e9"}"#))
        .unwrap();
    for id in [
        json!(42),
        json!(42.0),
        serde_json::from_str::<Value>("4.2e1").unwrap(),
        json!("42"),
        json!(" 42 "),
        json!("Jose\u{301}"),
    ] {
        let mut e = order();
        e["customer"]["id"] = id.clone();
        let v = govern(&c, &rec(e), &s);
        let Verdict::Governed(g) = &v else {
            panic!("{id}: {v:?}")
        };
        assert!(
            g.outcomes
                .iter()
                .all(|o| *o == Outcome::Suppressed(Suppression::Erasure)),
            "{id}: {:?}",
            g.outcomes
        );
    }
}

#[test]
fn a_subject_that_is_not_a_scalar_is_dead_lettered() {
    let c = compile(SHOP);
    let cases = [
        json!({"order_id": "o", "created_at": "2026-11-22T10:00:00Z", "customer": [{"id": "c-4"}]}),
        json!({"order_id": "o", "created_at": "2026-11-22T10:00:00Z", "customer": {"id": ["c-4"]}}),
        json!({"order_id": "o", "created_at": "2026-11-22T10:00:00Z", "customer": {"id": {"c-4": 1}}}),
        json!({"order_id": "o", "created_at": "2026-11-22T10:00:00Z", "customer": {"id": true}}),
        json!({"order_id": "o", "created_at": "2026-11-22T10:00:00Z", "customer": "c-4"}),
    ];
    for e in cases {
        let v = govern(&c, &rec(e.clone()), &state(&c));
        assert_eq!(dead(&v), Some(DeadLetterReason::Subject), "{e}");
    }
    // Absent or null: no subject (consent purposes get nothing), not an error.
    for e in [
        json!({"order_id": "o", "created_at": "2026-11-22T10:00:00Z"}),
        json!({"order_id": "o", "created_at": "2026-11-22T10:00:00Z", "customer": {"id": null}}),
    ] {
        let v = govern(&c, &rec(e.clone()), &state(&c));
        let Verdict::Governed(g) = &v else {
            panic!("{e}: {v:?}")
        };
        assert_eq!(g.subject, None);
        assert_eq!(g.outcomes[1], Outcome::Suppressed(Suppression::Consent));
    }
}

#[test]
fn event_times_without_a_usable_age_are_dead_lettered() {
    let c = compile(SHOP);
    for t in [
        json!(null),
        json!({}),
        json!([1]),
        json!(true),
        json!("yesterday"),
        // Epoch microseconds and nanoseconds: centuries ahead, never expired.
        json!(1_577_836_800_000_000i64),
        json!(1_577_836_800_000_000_000i64),
        // Two days ahead of now.
        json!("2026-11-25T00:00:00Z"),
    ] {
        let mut e = order();
        e["created_at"] = t.clone();
        let v = govern(&c, &rec(e), &state(&c));
        assert_eq!(dead(&v), Some(DeadLetterReason::EventTime), "{t}");
    }
    // Within the default skew of one day: governed.
    let mut e = order();
    e["created_at"] = json!("2026-11-23T12:00:00Z");
    assert_eq!(dead(&govern(&c, &rec(e), &state(&c))), None);
    // No event time at all and no usable record timestamp: unknown age.
    let mut e = order();
    e.as_object_mut().unwrap().remove("created_at");
    for ts in [None, Some(-1)] {
        let mut r = rec(e.clone());
        r.timestamp = ts;
        assert_eq!(
            dead(&govern(&c, &r, &state(&c))),
            Some(DeadLetterReason::EventTime),
            "{ts:?}"
        );
    }
    // The skew is the stream's to set.
    let c = compile(&SHOP.replace(
        "    event_time: created_at\n",
        "    event_time: created_at\n    max_future_skew: 7d\n",
    ));
    let mut e = order();
    e["created_at"] = json!("2026-11-25T00:00:00Z");
    assert_eq!(dead(&govern(&c, &rec(e), &state(&c))), None);
}

#[test]
fn network_prefixes_never_keep_an_address_whole() {
    let text = |g: &str| {
        SHOP.replace(
            "      - classes: [pii.contact.postal_code]\n        action: { generalize: { prefix: 3 } }\n",
            &format!("      - classes: [pii.identifier.ip_address]\n        action: {{ generalize: {{ network: {g} }} }}\n"),
        )
    };
    for bad in [
        "32",
        "48",
        "{ v4: 32, v6: 48 }",
        "{ v4: 24, v6: 128 }",
        "{ v4: 24 }",
    ] {
        let e = policy::load(&text(bad), "p.yaml").unwrap_err().to_string();
        assert!(e.contains("network"), "{bad}: {e}");
    }
    let c = compile(&shop_with_fields(
        "      ip: pii.identifier.ip_address\n      ip6: pii.identifier.ip_address\n",
    )
    .replace(
        "      - classes: [pii.contact.postal_code]\n        action: { generalize: { prefix: 3 } }\n",
        "      - classes: [pii.identifier.ip_address]\n        action: { generalize: { network: { v4: 24, v6: 48 } } }\n",
    ));
    let mut e = order();
    e["ip"] = json!("10.1.2.3");
    e["ip6"] = json!("2001:db8:abcd:12::1");
    let v = govern(&c, &rec(e), &state(&c));
    let out = emitted(&c, &v);
    let analytics = &out.iter().find(|(p, _)| p == "analytics").unwrap().1;
    assert!(analytics.contains("\"ip\":\"10.1.2.0\""), "{analytics}");
    assert!(
        analytics.contains("\"ip6\":\"2001:db8:abcd::\""),
        "{analytics}"
    );
}

#[test]
fn outputs_too_large_for_the_broker_dead_letter_the_record() {
    // Short values that pseudonymize into 35 characters each.
    let c = compile(&shop_with_fields("      ids: pii.identifier\n"));
    let mut e = order();
    e["ids"] = Value::Array(vec![json!(0); 100_000]);
    let r = rec(e);
    assert!(r.value.len() < 400_000);
    let v = govern(&c, &r, &state(&c));
    assert_eq!(dead(&v), Some(DeadLetterReason::TooLarge));
}

#[test]
fn custos_headers_cannot_be_classified() {
    let e = policy::load(
        &shop_with_fields("      $headers.custos-purpose: internal\n"),
        "p.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("custos's own"), "{e}");
    let e = policy::load(
        &shop_with_fields("      $headers.Custos-Source: internal\n"),
        "p.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("custos's own"), "{e}");
}

#[test]
fn empty_structure_is_removed_from_kept_subtrees() {
    let c = compile(SHOP);
    let mut e = order();
    e["customer"]["geo"] = json!({"lat": [], "lon": {}});
    e["customer"]["address"] = json!({"street": {"x": [], "y": {}}, "city": []});
    let v = govern(&c, &rec(e), &state(&c));
    let out = emitted(&c, &v);
    let support = &out.iter().find(|(p, _)| p == "support").unwrap().1;
    assert!(!support.contains("geo"), "{support}");
    assert!(!support.contains("address"), "{support}");
    assert!(!support.contains("pii.location"), "{support}");
    assert!(!support.contains("pii.contact.address"), "{support}");
}

#[test]
fn cards_and_phones_beside_other_numbers_are_found() {
    let c = compile(SHOP);
    for (note, secret) in [
        ("card 4111 1111 1111 1111 12/28", "1111 1111"),
        ("card 4111111111111111 123", "4111111111111111"),
        ("qty 2 4111 1111 1111 1111", "1111 1111"),
        ("Call 020 7946 0958 2 times", "7946"),
        ("room 12 +44 20 7946 0958", "7946"),
        ("apt 5 (415) 555-2671", "555-2671"),
    ] {
        let mut e = order();
        e["notes"] = json!(note);
        let v = govern(&c, &rec(e), &state(&c));
        let leaked: Vec<String> = leaks(&c, &v, secret)
            .into_iter()
            .filter(|p| p != "support")
            .collect();
        assert!(leaked.is_empty(), "{note:?} reached {leaked:?}");
    }
    // A card written as a JSON number in exponent form.
    let mut e = order();
    e["notes"] = serde_json::from_str("4.111111111111111E15").unwrap();
    let v = govern(&c, &rec(e), &state(&c));
    assert!(leaks(&c, &v, "4.111111111111111E15").is_empty());
}

#[test]
fn a_redacted_key_is_null() {
    let c = compile(&SHOP.replace(
        "      - classes: [pii.identifier]\n        action: { pseudonymize: { key: analytics } }\n",
        "      - classes: [pii.identifier]\n        action: redact\n",
    ));
    let mut r = rec(order());
    r.key = Some(b"c-4");
    let v = govern(&c, &r, &state(&c));
    let Verdict::Governed(g) = &v else { panic!() };
    let Outcome::Emitted(out) = &g.outcomes[0] else {
        panic!()
    };
    assert_eq!(out.key, None);
}

#[test]
fn invisible_characters_do_not_make_another_subject() {
    let c = compile(SHOP);
    let mut s = state(&c);
    s.apply_erasure(None, Some(br#"{"subject":"c-4"}"#))
        .unwrap();
    for id in [
        "c-4\u{200b}",
        "\u{feff}c-4",
        "c-4\u{ad}",
        "c-4\u{34f}",
        "c-4\u{180e}",
        "c-4\u{0}",
        "\u{ff43}-\u{ff14}",
    ] {
        let mut e = order();
        e["customer"]["id"] = json!(id);
        let v = govern(&c, &rec(e), &s);
        assert!(
            emitted(&c, &v).is_empty(),
            "{id:?} reached {:?}",
            emitted(&c, &v)
        );
    }
}

#[test]
fn an_erased_subject_in_the_key_suppresses_the_event() {
    // `$key` is classified like `customer.id`: it names the subject too.
    let c = compile(SHOP);
    let mut s = state(&c);
    s.apply_erasure(None, Some(br#"{"subject":"c-4"}"#))
        .unwrap();
    for id in [json!(null), json!(""), json!("c-9")] {
        let mut e = order();
        e["customer"]["id"] = id.clone();
        let mut r = rec(e);
        r.key = Some(b"c-4");
        let v = govern(&c, &r, &s);
        assert!(emitted(&c, &v).is_empty(), "{id}: {:?}", emitted(&c, &v));
    }
    // An objection recorded under the key counts as well.
    let mut s = state(&c);
    s.apply_consent(
        None,
        Some(br#"{"subject":"c-4","purposes":{"analytics":false}}"#),
    )
    .unwrap();
    let mut e = order();
    e["customer"]["id"] = json!("c-9");
    let mut r = rec(e);
    r.key = Some(b"c-4");
    let v = govern(&c, &r, &s);
    let Verdict::Governed(g) = &v else { panic!() };
    assert_eq!(g.outcomes[0], Outcome::Suppressed(Suppression::Objection));
}

#[test]
fn cards_ibans_and_ssns_inside_kept_values_of_other_classes_are_caught() {
    // Marketing keeps e-mail addresses; a producer puts a card, an SSN and
    // an IBAN into the e-mail field, as text, nested, or as a number.
    let c = compile(SHOP);
    let mut s = state(&c);
    s.apply_consent(
        None,
        Some(br#"{"subject":"c-1","purposes":{"marketing":true}}"#),
    )
    .unwrap();
    for email in [
        json!("ada@example.com; card 4111 1111 1111 1111"),
        json!(["ada@example.com", {"card": "4111111111111111", "ssn": "123-45-6789"}]),
        json!({"iban": "DE89 3704 0044 0532 0130 00"}),
        json!(4111111111111111u64),
    ] {
        let mut e = order();
        e["customer"]["id"] = json!("c-1");
        e["customer"]["email"] = email.clone();
        let v = govern(&c, &rec(e), &s);
        for secret in ["4111", "123-45-6789", "0532"] {
            let leaked: Vec<String> = leaks(&c, &v, secret)
                .into_iter()
                .filter(|p| p != "support")
                .collect();
            assert!(leaked.is_empty(), "{email}: {secret} reached {leaked:?}");
        }
        assert!(!leaks(&c, &v, "REDACTED:pii").is_empty(), "{email}");
    }
    // Ordinary values with many digits are left alone.
    let mut e = order();
    e["customer"]["id"] = json!("c-1");
    e["customer"]["email"] = json!("order-20261122-123456789@example.com");
    let v = govern(&c, &rec(e), &s);
    assert_eq!(
        leaks(&c, &v, "order-20261122-123456789@example.com"),
        vec!["marketing", "support"]
    );
}

#[test]
fn invisible_and_compatibility_characters_do_not_hide_data() {
    // Red-team round 2: controls, line separators, variation selectors, tag
    // characters, combining marks, keycaps, superscripts and NFKC look-alikes.
    let c = compile(SHOP);
    for (note, secret) in [
        ("4111\u{0}1111\u{0}1111\u{0}1111", "1111"),
        ("4111\u{85}1111\u{85}1111\u{85}1111", "1111"),
        ("4111\u{2028}1111\u{2028}1111\u{2028}1111", "1111"),
        ("4111\u{fe0f}1111\u{e0020}1111\u{3164}1111", "1111"),
        ("4\u{301}1\u{301}1\u{301}1 1111 1111 1111", "1111 1111"),
        ("4\u{fe0f}\u{20e3}1\u{fe0f}\u{20e3}1\u{fe0f}\u{20e3}1\u{fe0f}\u{20e3} 1111 1111 1111", "1111 1111"),
        ("\u{2074}\u{b9}\u{b9}\u{b9} \u{b9}\u{b9}\u{b9}\u{b9} \u{b9}\u{b9}\u{b9}\u{b9} \u{b9}\u{b9}\u{b9}\u{b9}", "\u{b9}\u{b9}\u{b9}\u{b9}"),
        ("call \u{207a}\u{2074}\u{2074} \u{b2}\u{2070} \u{2077}\u{2079}\u{2074}\u{2076} \u{2070}\u{2079}\u{2075}\u{2078}", "\u{2077}\u{2079}"),
        ("call \u{fe62}44 20 7946 0958", "7946"),
        ("ad\u{0}a@exa\u{0}mple.com", "mple.com"),
        ("ada\u{fe6b}example.com", "example.com"),
        ("ada@example\u{2024}com", "ada"),
        ("ada@example\u{3002}com", "ada"),
    ] {
        let mut e = order();
        e["notes"] = json!(note);
        let v = govern(&c, &rec(e), &state(&c));
        let leaked: Vec<String> = leaks(&c, &v, secret)
            .into_iter()
            .filter(|p| p != "support")
            .collect();
        assert!(leaked.is_empty(), "{note:?} reached {leaked:?}");
    }
}

#[test]
fn a_card_in_other_scripts_digits_inside_a_kept_field_is_guarded() {
    // Full-width and Arabic-Indic digits: the guard of kept values used to
    // count ASCII digits only and let these through untouched.
    let c = compile(SHOP);
    for (card, inside) in [
        ("４１１１ １１１１ １１１１ １１１１", false),
        ("٤١١١١١١١١١١١١١١١", false),
        ("４１１１ １１１１ １１１１ １１１１", true),
    ] {
        let mut e = order();
        // Alone, or inside a kept object that would be copied whole.
        e["order_id"] = if inside {
            json!({ "ref": card })
        } else {
            json!(card)
        };
        let v = govern(&c, &rec(e), &state(&c));
        let leaked: Vec<String> = leaks(&c, &v, card)
            .into_iter()
            .filter(|p| p != "support")
            .collect();
        assert!(leaked.is_empty(), "{card} reached {leaked:?}");
    }
}

#[test]
fn object_keys_inside_kept_fields_are_guarded_too() {
    let c = compile(SHOP);
    for member in [
        json!({"4111111111111111": 1}),
        json!({"GB82 WEST 1234 5698 7654 32": 1}),
        json!({"123-45-6789": 1}),
    ] {
        let mut e = order();
        e["order_id"] = member.clone();
        let v = govern(&c, &rec(e), &state(&c));
        let key = member.as_object().unwrap().keys().next().unwrap().clone();
        // Support keeps pii (bank accounts, national ids), not raw cards.
        let leaked: Vec<String> = leaks(&c, &v, &key)
            .into_iter()
            .filter(|p| p != "support" || key.starts_with("4111"))
            .collect();
        assert!(leaked.is_empty(), "{member} reached {leaked:?}");
    }
    // An ordinary key stays.
    let mut e = order();
    e["order_id"] = json!({"line-1": 1});
    let v = govern(&c, &rec(e), &state(&c));
    assert!(leaks(&c, &v, "line-1").contains(&"analytics".to_string()));
}

#[test]
fn an_erased_subject_reaches_no_dead_letter_and_quoted_keys_are_aliases() {
    let c = compile(SHOP);
    let mut s = state(&c);
    s.apply_erasure(None, Some(br#"{"subject":"c-1"}"#))
        .unwrap();
    // An event time that would dead-letter the record: the erasure wins, so
    // the raw record (with the subject's e-mail) is not written anywhere.
    let mut e = order();
    e["customer"]["id"] = json!("c-1");
    e["created_at"] = json!("garbage");
    let v = govern(&c, &rec(e), &s);
    let Verdict::Governed(g) = &v else {
        panic!("dead-lettered: {v:?}")
    };
    assert!(g
        .outcomes
        .iter()
        .all(|o| *o == Outcome::Suppressed(Suppression::Erasure)));
    // A record key written by a JSON serializer, quotes included.
    let mut e = order();
    e["customer"]["id"] = json!("zz-9");
    let mut r = rec(e);
    r.key = Some(br#""c-1""#);
    let v = govern(&c, &r, &s);
    assert!(emitted(&c, &v).is_empty(), "{:?}", emitted(&c, &v));
    // Red-team round 3: white space or invisible characters around the
    // quotes, and object keys as Kafka Connect and Debezium write them.
    // Round 4: Kafka Connect's schema/payload envelope, nested members,
    // duplicate members, arrays and single quotes.
    let keys: [&[u8]; 12] = [
        b"\"c-1\"\n",
        b"\"c-1\"\r\n",
        b"  \"c-1\" ",
        "\"c-1\"\u{200b}".as_bytes(),
        br#"{"id":"c-1"}"#,
        br#" {"tenant":7,"id":"c-1"} "#,
        br#"{"schema":{"type":"struct","fields":[{"field":"id","type":"string"}]},"payload":{"id":"c-1"}}"#,
        br#"{"customer":{"id":"c-1"}}"#,
        br#"{"id":"c-1","id":"zz-1"}"#,
        br#"{"id":["c-1"]}"#,
        br#"["c-1"]"#,
        b"'c-1'",
    ];
    for key in keys {
        let mut e = order();
        e["customer"]["id"] = json!("zz-9");
        let mut r = rec(e);
        r.key = Some(key);
        let v = govern(&c, &r, &s);
        assert!(
            emitted(&c, &v).is_empty(),
            "key {:?}: {:?}",
            String::from_utf8_lossy(key),
            emitted(&c, &v)
        );
    }
}

/// A scalar where the policy expects an array (`x[]`, `x[][]`) is an element:
/// the element rules apply, not the parent's class its array node inherits
/// (a red-team finding: `"aliases":"Ann Smith"` under a kept parent was
/// copied in the clear).
#[test]
fn a_scalar_where_an_array_is_expected_gets_the_element_rules() {
    let c = compile(&shop_with_fields(
        "      meta: internal\n      meta.aliases[]: sensitive.health\n      meta.deep[][]: sensitive.health\n",
    ));
    for shape in [
        json!({"aliases": "SECRET1"}),
        json!({"aliases": 42_424_242}),
        json!({"deep": "SECRET1"}),
        json!({"deep": ["SECRET1"]}),
        json!({"deep": {"k": "SECRET1"}}),
        json!({"deep": [{"k": "SECRET1"}]}),
    ] {
        let mut e = order();
        e["meta"] = shape.clone();
        let v = govern(&c, &rec(e), &state(&c));
        // sensitive.health is dropped for every purpose of the shop policy.
        assert!(
            leaks(&c, &v, "SECRET1").is_empty(),
            "{shape}: {:?}",
            emitted(&c, &v)
        );
        assert!(
            leaks(&c, &v, "42424242").is_empty(),
            "{shape}: {:?}",
            emitted(&c, &v)
        );
    }
    // The right shapes, and the parent's other members, are as before.
    let mut e = order();
    e["meta"] = json!({"aliases": ["SECRET1"], "other": "kept"});
    let v = govern(&c, &rec(e), &state(&c));
    assert!(leaks(&c, &v, "SECRET1").is_empty());
    assert!(!leaks(&c, &v, "kept").is_empty());
}
