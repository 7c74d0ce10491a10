//! Property tests of the invariants that matter most: deny by default, a
//! class without an allowing rule never reaches an output, pseudonyms are
//! deterministic and key-separated, outputs are valid JSON, scanning is safe.

use std::sync::Arc;

use custos::audit::AuditKey;
use custos::classify;
use custos::crypto::{self, DecryptCounts, KeyIndex, KeyRing, LocalKeys};
use custos::engine::{self, Outcome, Record, Scratch, Verdict};
use custos::policy::{self, keys::Keys, taxonomy::is_within};
use custos::state::{MemoryState, WithKeys};
use custos::transform::pseudonym_with_key;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const CLASSES: &[&str] = &[
    "public",
    "internal",
    "pii",
    "pii.contact",
    "pii.contact.email",
    "pii.name",
    "behavioral",
    "behavioral.purchase",
    "sensitive.health",
];
const ACTIONS: &[&str] = &[
    "keep",
    "drop",
    "redact",
    "{ pseudonymize: { key: k } }",
    "{ mask: { keep_first: 0 } }",
    "{ encrypt: { key: k } }",
];
/// (path in the policy, how to place a value there)
const PATHS: &[&str] = &["a", "b.c", "b.d", "e[].f", "e[].g", "h"];

#[derive(Debug, Clone)]
struct Case {
    field_classes: Vec<Vec<usize>>, // per path: class indexes
    rules: Vec<(usize, usize)>,     // (class index, action index), classes unique
    extra: Vec<(String, Value)>,    // unclassified top-level members
    elements: usize,
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{1,5}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn arb_case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(
            prop::collection::btree_set(0..CLASSES.len(), 1..3),
            PATHS.len(),
        ),
        prop::collection::btree_map(0..CLASSES.len(), 0..ACTIONS.len(), 0..6),
        prop::collection::vec(("x[a-z]{0,4}", arb_json()), 0..3),
        0usize..3,
    )
        .prop_map(|(fc, rules, extra, elements)| Case {
            field_classes: fc.into_iter().map(|s| s.into_iter().collect()).collect(),
            rules: rules.into_iter().collect(),
            extra,
            elements,
        })
}

fn policy_text(case: &Case) -> String {
    let mut t = String::from("version: 1\nname: prop\nkeys:\n  k: { env: K }\npurposes:\n  p:\n    basis: contract\n    retention: 1d\n    rules:\n");
    for (c, a) in &case.rules {
        t.push_str(&format!(
            "      - classes: [{}]\n        action: {}\n",
            CLASSES[*c], ACTIONS[*a]
        ));
    }
    t.push_str("streams:\n  s:\n    topic: in\n    subject: a\n    fields:\n");
    for (i, p) in PATHS.iter().enumerate() {
        let cs: Vec<&str> = case.field_classes[i].iter().map(|c| CLASSES[*c]).collect();
        t.push_str(&format!("      {p}: [{}]\n", cs.join(", ")));
    }
    t.push_str("    outputs:\n      p: out\n");
    t
}

/// The same policy as [`policy_text`], written otherwise: top-level and
/// purpose keys in another order, rules, fields and classes reversed, flow
/// style, `24h` for `1d`.
fn policy_text_reordered(case: &Case) -> String {
    let mut t = String::from("streams:\n  s:\n    outputs: { p: out }\n    fields:\n");
    for (i, p) in PATHS.iter().enumerate().rev() {
        let cs: Vec<&str> = case.field_classes[i]
            .iter()
            .rev()
            .map(|c| CLASSES[*c])
            .collect();
        t.push_str(&format!("      {p}: {{ classes: [{}] }}\n", cs.join(", ")));
    }
    t.push_str("    subject: a\n    topic: in\nkeys: { k: { env: K } }\nname: prop-reordered\npurposes:\n  p:\n    rules:\n");
    for (c, a) in case.rules.iter().rev() {
        t.push_str(&format!(
            "      - {{ action: {}, classes: [{}] }}\n",
            ACTIONS[*a], CLASSES[*c]
        ));
    }
    t.push_str("    retention: 24h\n    basis: contract\nversion: 1\n");
    t
}

fn compiled_for_diff(text: &str) -> Result<policy::plan::Compiled, TestCaseError> {
    let p =
        policy::load(text, "prop.yaml").map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
    let keys = policy::diff::dummy_keys(&p);
    policy::plan::compile(Arc::new(p), &keys).map_err(|e| TestCaseError::fail(e.to_string()))
}

/// Independent oracle: does the purpose keep this field unchanged?
fn oracle_keeps(case: &Case, path: usize) -> bool {
    oracle_action(case, path) == "keep"
}

/// The action the field gets: the most restrictive of its classes' (drop <
/// redact < pseudonymize < encrypt < mask < generalize < keep; no rule: drop).
fn oracle_action(case: &Case, path: usize) -> &'static str {
    const ORDER: &[&str] = &[
        "drop",
        "redact",
        "{ pseudonymize: { key: k } }",
        "{ encrypt: { key: k } }",
        "{ mask: { keep_first: 0 } }",
        "keep",
    ];
    case.field_classes[path]
        .iter()
        .map(|&fc| {
            let class = CLASSES[fc];
            case.rules
                .iter()
                .filter(|(rc, _)| is_within(class, CLASSES[*rc]))
                .max_by_key(|(rc, _)| CLASSES[*rc].len())
                .map_or("drop", |(_, a)| ACTIONS[*a])
        })
        .min_by_key(|a| ORDER.iter().position(|o| o == a))
        .unwrap_or("drop")
}

fn event(case: &Case) -> Value {
    let mut e = Vec::new();
    for i in 0..case.elements {
        e.push(json!({"f": format!("SENTINEL3x{i}Z"), "g": format!("SENTINEL4x{i}Z"), "other": "UNCLASSIFIEDe"}));
    }
    let mut v = json!({
        "a": "SENTINEL0xZ",
        "b": {"c": "SENTINEL1xZ", "d": "SENTINEL2xZ", "zz": "UNCLASSIFIEDb"},
        "e": e,
        "h": "SENTINEL5xZ",
    });
    for (k, x) in &case.extra {
        v.as_object_mut()
            .unwrap()
            .insert(k.clone(), json!({"payload": x, "tag": "UNCLASSIFIEDx"}));
    }
    v
}

const SHOP_POLICY: &str = include_str!("../examples/shop/policy.yaml");

/// Governs `rec` as a decoded value (its tape made beforehand, as a decoder
/// of another format makes it): every output's tape, built by the walk as it
/// wrote the output, is the parser's of the output's text. Returns the verdict.
fn governed_with_output_tapes(
    plan: &policy::plan::StreamPlan,
    policy_id: &str,
    rec: &Record<'_>,
    state: &dyn custos::state::SubjectState,
) -> Result<Verdict, TestCaseError> {
    let mut scratch = Scratch::default();
    if scratch.decoded_tape().parse(rec.value).is_err() {
        return Ok(engine::govern(plan, policy_id, rec, state, 0, &mut scratch));
    }
    let v = engine::govern_with_limits(
        plan,
        policy_id,
        rec,
        state,
        0,
        &mut scratch,
        engine::Limits::default(),
    );
    if let Verdict::Governed(g) = &v {
        for o in &g.outcomes {
            if let Outcome::Emitted(out) = o {
                let made = scratch
                    .output_tape(out.output)
                    .filter(|t| t.spans(&out.value));
                let made = made.ok_or_else(|| {
                    TestCaseError::fail(format!(
                        "no tape of the output {}",
                        String::from_utf8_lossy(&out.value)
                    ))
                })?;
                let mut parsed = custos::codec::Tape::default();
                parsed
                    .parse(&out.value)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(
                    &made.toks,
                    &parsed.toks,
                    "output {}",
                    String::from_utf8_lossy(&out.value)
                );
            }
        }
    }
    Ok(v)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_field_reaches_the_output_unchanged_iff_every_class_is_kept(case in arb_case()) {
        let text = policy_text(&case);
        let p = policy::load(&text, "prop.yaml").map_err(|e| TestCaseError::fail(e.to_string()))?;
        let keys = Keys::from_pairs([("k", b"secret".to_vec())]);
        let compiled = policy::plan::compile(Arc::new(p), &keys).unwrap();
        let plan = &compiled.streams[0];
        let value = serde_json::to_vec(&event(&case)).unwrap();
        let rec = Record { topic: "in", partition: 0, offset: 0, timestamp: Some(0), key: None, value: &value, headers: &[] };
        // Real data keys: encrypted values are tokens that decrypt below.
        let memory = MemoryState::for_policy(&compiled.policy);
        let local = LocalKeys::new(KeyRing::new(compiled.keks(), &AuditKey::new(b"a")), "t".into());
        let state = WithKeys { state: &memory, keys: &local };
        let v = engine::govern(plan, "prop@0", &rec, &state, 0, &mut Scratch::default());
        // The same event as a decoded value: outputs with their tapes.
        let decoded = governed_with_output_tapes(plan, "prop@0", &rec, &state)?;
        prop_assert_eq!(matches!(decoded, Verdict::Governed(_)), matches!(v, Verdict::Governed(_)));
        let Verdict::Governed(g) = v else { return Err(TestCaseError::fail("dead letter")) };
        let Outcome::Emitted(out) = &g.outcomes[0] else { return Err(TestCaseError::fail("suppressed")) };
        let text = std::str::from_utf8(&out.value).unwrap();
        let parsed: Value = serde_json::from_str(text).map_err(|e| TestCaseError::fail(format!("invalid JSON output: {e}: {text}")))?;
        prop_assert!(parsed.is_object());
        // Deny by default: nothing unclassified ever appears.
        prop_assert!(!text.contains("UNCLASSIFIED"), "unclassified data leaked: {}", text);
        let mut index = KeyIndex::default();
        for (k, v) in local.take_created() {
            index.apply(&compiled.keks(), k.as_bytes(), v.as_deref()).unwrap();
        }
        let mut clear = parsed.clone();
        let mut counts = DecryptCounts::default();
        crypto::decrypt_value(&index, crypto::Origin { source: "in/0/0", purpose: "p" }, &mut clear, &mut counts);
        prop_assert_eq!(counts.failed, 0);
        let clear = clear.to_string();
        for (i, _) in PATHS.iter().enumerate() {
            let marker = format!("SENTINEL{i}x");
            let reached = !PATHS[i].starts_with("e[]") || case.elements > 0;
            let present = text.contains(&marker);
            let expected = oracle_keeps(&case, i) && reached;
            prop_assert_eq!(present, expected, "path {} in {} with policy\n{}", PATHS[i], text, policy_text(&case));
            // Encrypted values decrypt to exactly what they were.
            let decrypted = clear.contains(&marker);
            let expected = matches!(oracle_action(&case, i), "keep" | "{ encrypt: { key: k } }") && reached;
            prop_assert_eq!(decrypted, expected, "path {} decrypted to {} with policy\n{}", PATHS[i], clear, policy_text(&case));
        }
    }

    #[test]
    fn a_policy_diffed_with_itself_or_a_reordered_copy_has_no_changes(case in arb_case()) {
        let text = policy_text(&case);
        let a = compiled_for_diff(&text)?;
        let b = compiled_for_diff(&text)?;
        prop_assert_eq!(policy::diff::diff(&a, &b), vec![]);
        let reordered = compiled_for_diff(&policy_text_reordered(&case))?;
        let changes = policy::diff::diff(&a, &reordered);
        prop_assert!(changes.is_empty(), "{:#?}\n{}\n{}", changes, text, policy_text_reordered(&case));
        prop_assert_eq!(policy::diff::diff(&reordered, &a), vec![]);
    }

    #[test]
    fn arbitrary_events_give_valid_json_or_a_dead_letter(v in arb_json(), raw in prop::collection::vec(any::<u8>(), 0..64)) {
        let text = "version: 1\nname: j\npurposes:\n  p:\n    basis: contract\n    retention: 1d\n    rules:\n      - { classes: [internal], action: keep }\n      - { classes: [pii], action: redact }\nstreams:\n  s:\n    topic: in\n    fields:\n      a: internal\n      b: pii\n      c: { classes: [internal], scan: true }\n    outputs: { p: out }\n";
        let compiled = policy::plan::compile(Arc::new(policy::load(text, "j.yaml").unwrap()), &Keys::default()).unwrap();
        let plan = &compiled.streams[0];
        let wrapped = serde_json::to_vec(&json!({"a": v.clone(), "b": v.clone(), "c": v, "d": 1})).unwrap();
        for bytes in [&wrapped[..], &raw[..]] {
            let rec = Record { topic: "in", partition: 0, offset: 0, timestamp: Some(0), key: None, value: bytes, headers: &[] };
            let state = MemoryState::for_policy(&compiled.policy);
            let verdict = engine::govern(plan, "j@0", &rec, &state, 0, &mut Scratch::default());
            // As a decoded value: the same verdict, outputs with their tapes.
            let decoded = governed_with_output_tapes(plan, "j@0", &rec, &state)?;
            prop_assert_eq!(&decoded, &verdict);
            match verdict {
                Verdict::Governed(g) => {
                    for o in g.outcomes {
                        if let Outcome::Emitted(out) = o {
                            let parsed: Result<Value, _> = serde_json::from_slice(&out.value);
                            prop_assert!(parsed.is_ok(), "invalid JSON: {:?}", String::from_utf8_lossy(&out.value));
                        }
                    }
                }
                Verdict::DeadLetter(d) => prop_assert!(!d.detail.is_empty()),
            }
        }
    }

    #[test]
    fn tape_parser_agrees_with_serde_json(v in arb_json(), raw in prop::collection::vec(prop_oneof![Just(b'{'), Just(b'}'), Just(b'['), Just(b']'), Just(b'"'), Just(b':'), Just(b','), Just(b'1'), Just(b' '), Just(b'a'), Just(b'\\'), any::<u8>()], 0..24)) {
        let mut tape = custos::codec::Tape::default();
        let text = serde_json::to_vec(&v).unwrap();
        let ours = tape.parse(&text);
        // Generated objects never repeat a key (they are built from a map).
        prop_assert!(ours.is_ok(), "{:?} on {}", ours, String::from_utf8_lossy(&text));
        prop_assert_eq!(tape.toks[0].next as usize, tape.toks.len());
        let theirs: Result<Value, _> = serde_json::from_slice(&raw);
        match tape.parse(&raw) {
            Ok(()) => prop_assert!(theirs.is_ok(), "we accepted what serde_json rejects: {:?}", String::from_utf8_lossy(&raw)),
            Err(custos::codec::JsonError::DuplicateKey(_)) => {}
            Err(e) => prop_assert!(theirs.is_err(), "we rejected ({}) what serde_json accepts: {:?}", e, String::from_utf8_lossy(&raw)),
        }
    }

    #[test]
    fn pseudonyms_are_deterministic_and_key_separated(value in "\\PC{0,40}", k1 in prop::collection::vec(any::<u8>(), 1..40), k2 in prop::collection::vec(any::<u8>(), 1..40)) {
        let a = pseudonym_with_key(&k1, value.as_bytes());
        prop_assert_eq!(&a, &pseudonym_with_key(&k1, value.as_bytes()));
        prop_assert!(a.starts_with("ps_") && a.len() == 35 && a[3..].bytes().all(|b| b.is_ascii_hexdigit()));
        if k1 != k2 {
            prop_assert_ne!(a, pseudonym_with_key(&k2, value.as_bytes()));
        }
    }

    #[test]
    fn detector_spans_are_ordered_in_bounds_and_on_char_boundaries(text in "(\\PC|[0-9 @.:+-]){0,200}") {
        let spans = classify::detect(&text);
        let mut last = 0;
        for s in &spans {
            prop_assert!(s.start >= last && s.start < s.end && s.end <= text.len());
            prop_assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
            last = s.end;
        }
    }

    /// The red-team rounds as a property: a full-length card (15-16 digits,
    /// Luhn-valid, a real issuer prefix) written in any covered grouping and
    /// separator, between any of the neighbours the rounds used (numbers,
    /// letters, `+`, `00`, a decimal point, an expiry, a CVC, line breaks),
    /// never keeps a digit outside a span.
    #[test]
    fn a_card_in_any_covered_layout_and_neighbourhood_keeps_no_digit(
        body in prop::collection::vec(0u8..10, 14),
        brand in prop_oneof![Just("4"), Just("51"), Just("55"), Just("2221"), Just("6011"), Just("37")],
        layout in 0usize..5,
        sep in prop_oneof![Just(" "), Just("-"), Just("."), Just("  "), Just("|"), Just(" - "), Just("/"), Just("_"), Just("\u{a0}"), Just("\n"), Just("\t"), Just("--"), Just(":")],
        before in prop_oneof![Just(""), Just("card "), Just("ref 1234 "), Just("x"), Just("US"), Just("+"), Just("00"), Just("1."), Just("tel 020 7946 0958 "), Just("\n"), Just("Ada\t")],
        after in prop_oneof![Just(""), Just(" 12/28"), Just(" 123"), Just("."), Just("x"), Just(" 1227"), Just("\n06 12 34 56 78"), Just(" 5018 0000 0009")],
    ) {
        // Digits: the brand, the body, then the Luhn check digit.
        let len = if brand == "37" { 15 } else { 16 };
        let mut ds: Vec<u8> = brand.bytes().map(|b| b - b'0').collect();
        ds.extend(body.iter().copied().take(len - 1 - ds.len()));
        let sum: u32 = ds
            .iter()
            .rev()
            .enumerate()
            .map(|(i, &d)| {
                let d = u32::from(d);
                if i % 2 == 0 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }
            })
            .sum();
        ds.push(((10 - sum % 10) % 10) as u8);
        let digits: String = ds.iter().map(|d| char::from(b'0' + d)).collect();
        let groups: Vec<&str> = match (layout, len) {
            (0, _) => vec![&digits[..]],
            (1, 16) => vec![&digits[..4], &digits[4..8], &digits[8..12], &digits[12..]],
            (1, _) => vec![&digits[..4], &digits[4..10], &digits[10..]],
            (2, _) => vec![&digits[..8], &digits[8..]],
            (3, _) => digits.as_bytes().chunks(3).map(|c| std::str::from_utf8(c).unwrap()).collect(),
            _ => digits.as_bytes().chunks(2).map(|c| std::str::from_utf8(c).unwrap()).collect(),
        };
        let card = groups.join(sep);
        let text = format!("{before}{card}{after}");
        let at = before.len();
        let spans = classify::detect(&text);
        for (i, b) in card.bytes().enumerate() {
            if b.is_ascii_digit() {
                let pos = at + i;
                prop_assert!(
                    spans.iter().any(|s| s.start <= pos && pos < s.end),
                    "digit {} of {card:?} in clear in {text:?}: {:?}",
                    i,
                    spans.iter().map(|s| &text[s.start..s.end]).collect::<Vec<_>>()
                );
            }
        }
    }

    /// Every part of a record a producer controls, garbage: the engine never
    /// panics, and whatever it emits is valid JSON without the raw secret.
    #[test]
    fn garbage_in_every_field_of_a_record_never_panics_or_leaks(
        key in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        headers in prop::collection::vec((prop::collection::vec(any::<u8>(), 0..12), prop::collection::vec(any::<u8>(), 0..40)), 0..4),
        timestamp in prop::option::of(any::<i64>()),
        subject in arb_json(),
        time in arb_json(),
        value in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let text = "version: 1\nname: g\nkeys: { k: { env: K } }\npurposes:\n  p:\n    basis: legitimate_interest\n    retention: 1d\n    rules:\n      - { classes: [internal], action: keep }\n      - { classes: [pii.identifier], action: { pseudonymize: { key: k } } }\nstreams:\n  s:\n    topic: in\n    subject: who\n    event_time: at\n    fields:\n      $key: { classes: [pii.identifier], scan: true }\n      $headers.h: { classes: [internal], scan: true }\n      who: pii.identifier\n      at: internal\n      secret: pii.contact.email\n    outputs: { p: out }\n";
        let compiled = policy::plan::compile(
            Arc::new(policy::load(text, "g.yaml").unwrap()),
            &Keys::from_pairs([("k", b"0123456789abcdef".to_vec())]),
        ).unwrap();
        let plan = &compiled.streams[0];
        let hs: Vec<(String, Vec<u8>)> = headers
            .into_iter()
            .map(|(n, v)| (String::from_utf8_lossy(&n).into_owned().replace('\u{fffd}', "h"), v))
            .collect();
        let wrapped = serde_json::to_vec(&json!({"who": subject, "at": time, "secret": "SECRETVALUE"})).unwrap();
        for bytes in [&wrapped[..], &value[..]] {
            let rec = Record { topic: "in", partition: 0, offset: 0, timestamp, key: key.as_deref(), value: bytes, headers: &hs };
            let v = engine::govern(plan, "g@0", &rec, &MemoryState::for_policy(&compiled.policy), 1_795_000_000_000, &mut Scratch::default());
            if let Verdict::Governed(g) = v {
                for o in g.outcomes {
                    if let Outcome::Emitted(out) = o {
                        let parsed: Result<Value, _> = serde_json::from_slice(&out.value);
                        prop_assert!(parsed.is_ok());
                        prop_assert!(!String::from_utf8_lossy(&out.value).contains("SECRETVALUE"));
                    }
                }
            }
        }
    }

    /// The shop order with arbitrary values under the example policy (three
    /// purposes, pseudonyms, generalized numbers, dates and postal codes, a
    /// masked card, a scanned note, an address whose members the policy does
    /// not name, keys that need escapes): as a decoded value, every output's
    /// tape built by the walk is the parser's.
    #[test]
    fn the_walks_output_tapes_are_the_parsers_for_the_shop_order(
        address in prop::collection::vec(("(?s)[a-z\"\\\\\n é]{1,6}", "\\PC{0,10}"), 0..4),
        notes in "(?s)[a-z0-9@. \"\\\\\n-]{0,40}",
        lat in any::<f64>().prop_filter("finite", |x| x.is_finite()),
        birth in "(19[0-9]{2}-[01][0-9]-[0-3][0-9]|\\PC{0,8})",
        card in "[0-9 -]{0,20}",
        items in 0usize..3,
        subject in "[a-z0-9\"-]{1,8}",
    ) {
        let keys = Keys::from_pairs([("analytics", b"ka".to_vec()), ("marketing", b"km".to_vec())]);
        let compiled = policy::plan::compile(Arc::new(policy::load(SHOP_POLICY, "shop.yaml").unwrap()), &keys).unwrap();
        let plan = &compiled.streams[0];
        let mut addr: Map<String, Value> = address.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        addr.insert("postal_code".into(), json!("NW1 6XE"));
        let event = json!({
            "order_id": "o-1", "created_at": "1970-01-01T00:00:00Z",
            "customer": {"id": subject, "email": "ada@example.com", "name": "Ada", "birth_date": birth,
                "address": addr, "geo": {"lat": lat, "lon": -0.15871}, "health_notes": "asthma"},
            "payment": {"card_number": card, "amount": 12.5},
            "items": (0..items).map(|i| json!({"sku": format!("s{i}"), "qty": i})).collect::<Vec<_>>(),
            "notes": notes,
        });
        let value = serde_json::to_vec(&event).unwrap();
        let rec = Record { topic: "shop.orders", partition: 0, offset: 0, timestamp: Some(0), key: None, value: &value, headers: &[] };
        let state = MemoryState::for_policy(&compiled.policy);
        let v = governed_with_output_tapes(plan, "shop@0", &rec, &state)?;
        prop_assert!(matches!(v, Verdict::Governed(_)), "{:?}", v);
    }

    /// Fuzz target for the policy loader: the example policy with bytes cut,
    /// inserted or replaced anywhere loads or fails with diagnostics, never
    /// panics, and every diagnostic points inside the text.
    #[test]
    fn a_mangled_policy_loads_or_fails_with_located_errors(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..8, prop::collection::vec(prop_oneof![
            Just(b':'), Just(b'-'), Just(b' '), Just(b'\n'), Just(b'{'), Just(b'}'), Just(b'['), Just(b']'),
            Just(b'&'), Just(b'*'), Just(b'!'), Just(b'#'), Just(b'"'), Just(b'\''), Just(b'|'), Just(b'>'),
            Just(b'\t'), any::<u8>()], 0..6)), 1..6),
    ) {
        let mut text = SHOP_POLICY.as_bytes().to_vec();
        for (at, cut, insert) in edits {
            let i = at.index(text.len() + 1);
            let j = (i + cut).min(text.len());
            text.splice(i..j, insert);
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        let lines = u32::try_from(text.lines().count().max(1) + 1).unwrap_or(u32::MAX);
        match policy::load(&text, "p.yaml") {
            Ok(p) => prop_assert!(!p.purposes.is_empty()),
            Err(e) => {
                prop_assert!(!e.diagnostics.is_empty());
                for d in &e.diagnostics {
                    prop_assert!(d.pos.line <= lines, "{d:?} past line {lines}");
                }
            }
        }
    }

    /// Fuzz target for the audit verifier: a genuine trail verifies intact;
    /// any one byte changed is a break; a record dropped from the middle or
    /// two records swapped is never reported intact; garbage lines never
    /// panic it.
    #[test]
    fn the_audit_verifier_finds_every_tampering(
        n in 3usize..12,
        victim in any::<prop::sample::Index>(),
        byte in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        how in 0u8..3,
        garbage in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        use custos::audit::{self, AuditKey, Chains, Context, Source, Verifier};
        let key = AuditKey::new(b"audit-key-0123456789abcdef");
        let ctx = Context { policy: "p@0", worker: "w", processed_at_ms: 1_795_392_000_123 };
        let mut chains = Chains::default();
        let chain = audit::chain_name("in", 0);
        let trail: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let src = Source { topic: "in", partition: 0, offset: i as i64, timestamp: Some(1) };
                chains.append(&key, &chain, &audit::dead_letter("s", &src, "decode", &ctx)).0.into_bytes()
            })
            .collect();
        let verify = |lines: &[Vec<u8>]| {
            let mut v = Verifier::new(AuditKey::new(b"audit-key-0123456789abcdef"));
            for (i, l) in lines.iter().enumerate() {
                v.check(&format!("line {}", i + 1), l);
            }
            v.finish()
        };
        // Intact: no break and nothing the verifier reports as unusual.
        let intact = |c: &audit::ChainReport| {
            c.breaks.is_empty()
                && c.replays == 0
                && c.restarts == 0
                && !c.starts_mid_chain
                && c.suspicious_restarts.is_empty()
        };
        let clean = verify(&trail);
        prop_assert!(clean.iter().all(intact), "{clean:?}");
        let mut bad = trail.clone();
        let i = victim.index(n);
        match how {
            0 => {
                let b = byte.index(bad[i].len());
                bad[i][b] ^= flip;
            }
            1 => {
                let i = 1 + victim.index(n - 2); // not the first nor the last
                bad.remove(i);
            }
            _ => {
                let i = victim.index(n - 1);
                bad.swap(i, i + 1);
            }
        }
        let reports = verify(&bad);
        // A changed byte is a break; a dropped or reordered record is a
        // break or shows as a restart, replay or mid-chain start (what
        // at-least-once redelivery looks like): never an intact chain.
        prop_assert!(
            !reports.iter().all(intact),
            "tampering ({how}) at {i} not reported: {reports:?}"
        );
        if how == 0 {
            prop_assert!(reports.iter().any(|c| !c.breaks.is_empty()), "{reports:?}");
        }
        // Garbage between records is a break too, never a panic.
        let mut with_garbage = trail.clone();
        with_garbage.insert(i, garbage);
        let _ = verify(&with_garbage);
    }
}
