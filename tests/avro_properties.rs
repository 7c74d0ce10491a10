//! Property tests of Avro streams: arbitrary records under arbitrary
//! policies never emit a class without an allowing rule, and every output
//! decodes with its derived schema. apache-avro writes the inputs and reads
//! the outputs.

use std::sync::Arc;

use apache_avro::types::Value as AV;
use custos::avro::{self, Schema};
use custos::engine::{Limits, Outcome, Scratch};
use custos::pipeline::{self, Context, Input, Written};
use custos::policy::{self, keys::Keys};
use custos::state::MemoryState;
use proptest::prelude::*;

const CLASSES: &[&str] = &[
    "public",
    "internal",
    "pii.contact.email",
    "pii.name",
    "behavioral.purchase",
    "pii.date_of_birth",
];
const ACTIONS: &[&str] = &[
    "keep",
    "drop",
    "redact",
    "{ pseudonymize: { key: k } }",
    "{ mask: { keep_last: 2 } }",
    "{ generalize: { date: year } }",
    "{ generalize: { round: 1 } }",
    "{ generalize: { prefix: 2 } }",
    "{ generalize: { bucket: 10 } }",
];
/// The schema's classified fields (path, Avro type), in schema order.
const FIELDS: &[(&str, &str)] = &[
    ("a", r#""string""#),
    ("n", r#""long""#),
    ("x", r#""double""#),
    ("o", r#"["null", "string"]"#),
    ("day", r#"{"type": "int", "logicalType": "date"}"#),
    (
        "e",
        r#"{"type": "enum", "name": "E", "symbols": ["ZqEnumA", "ZqEnumB"]}"#,
    ),
    ("by", r#""bytes""#),
];

#[derive(Debug, Clone)]
struct Case {
    /// Per field: class indexes (1–2).
    classes: Vec<Vec<usize>>,
    /// (class, action), classes unique.
    rules: Vec<(usize, usize)>,
    /// Per nested field `r.s`: class indexes.
    nested: Vec<usize>,
    n: i64,
    x: f64,
    day: i32,
    some: bool,
    items: usize,
}

fn arb_case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(
            prop::collection::btree_set(0..CLASSES.len(), 1..3),
            FIELDS.len(),
        ),
        prop::collection::btree_map(0..CLASSES.len(), 0..ACTIONS.len(), 0..7),
        prop::collection::btree_set(0..CLASSES.len(), 1..3),
        (
            0i64..1_000_000,
            -100_000i32..100_000,
            -20_000i32..30_000,
            any::<bool>(),
            0usize..3,
        ),
    )
        .prop_map(|(fc, rules, nested, (n, x, day, some, items))| Case {
            classes: fc.into_iter().map(|s| s.into_iter().collect()).collect(),
            rules: rules.into_iter().collect(),
            nested: nested.into_iter().collect(),
            n,
            x: f64::from(x) / 4.0,
            day,
            some,
            items,
        })
}

fn classes_json(ids: &[usize]) -> String {
    serde_json::to_string(&ids.iter().map(|&c| CLASSES[c]).collect::<Vec<_>>()).unwrap()
}

fn schema_text(case: &Case) -> String {
    let mut fields: Vec<String> = FIELDS
        .iter()
        .zip(&case.classes)
        .map(|((name, ty), cs)| {
            format!(
                r#"{{"name": "{name}", "type": {ty}, "classes": {}}}"#,
                classes_json(cs)
            )
        })
        .collect();
    fields.push(format!(
        r#"{{"name": "r", "type": {{"type": "array", "items": {{"type": "record", "name": "R", "fields": [{{"name": "s", "type": "string", "classes": {}}}]}}}}}}"#,
        classes_json(&case.nested)
    ));
    fields.push(r#"{"name": "u", "type": "string"}"#.into());
    format!(
        r#"{{"type": "record", "name": "P", "fields": [{}]}}"#,
        fields.join(", ")
    )
}

fn policy_text(case: &Case) -> String {
    let mut t = String::from("version: 1\nname: avroprop\nkeys:\n  k: { env: K }\npurposes:\n  p:\n    basis: contract\n    retention: 36500d\n    rules:\n");
    for (c, a) in &case.rules {
        t.push_str(&format!(
            "      - {{ classes: [{}], action: {} }}\n",
            CLASSES[*c], ACTIONS[*a]
        ));
    }
    if case.rules.is_empty() {
        t.push_str("      - { classes: [sensitive.health], action: drop }\n");
    }
    t.push_str("streams:\n  s:\n    topic: in\n    format: avro\n    outputs: { p: out }\n");
    t
}

/// The record, with a marker in every string so that a leak is visible.
fn record(case: &Case) -> AV {
    AV::Record(vec![
        ("a".into(), AV::String("ZqA-marker".into())),
        ("n".into(), AV::Long(case.n)),
        ("x".into(), AV::Double(case.x)),
        (
            "o".into(),
            if case.some {
                AV::Union(1, Box::new(AV::String("ZqO-marker".into())))
            } else {
                AV::Union(0, Box::new(AV::Null))
            },
        ),
        ("day".into(), AV::Date(case.day)),
        ("e".into(), AV::Enum(1, "ZqEnumB".into())),
        ("by".into(), AV::Bytes(b"ZqBy-marker".to_vec())),
        (
            "r".into(),
            AV::Array(
                (0..case.items)
                    .map(|i| AV::Record(vec![("s".into(), AV::String(format!("ZqS{i}-marker")))]))
                    .collect(),
            ),
        ),
        ("u".into(), AV::String("ZqU-unclassified".into())),
    ])
}

/// Kept as it is only when every class of the field is kept.
fn kept(case: &Case, classes: &[usize]) -> bool {
    classes.iter().all(|c| {
        case.rules
            .iter()
            .any(|(rc, a)| rc == c && ACTIONS[*a] == "keep")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn avro_outputs_decode_with_their_derived_schema_and_leak_nothing_unkept(case in arb_case()) {
        let text = schema_text(&case);
        let p = policy::load(&policy_text(&case), "p.yaml").unwrap();
        let compiled = policy::plan::compile(Arc::new(p), &Keys::from_pairs([("k", b"0123456789abcdef".to_vec())])).unwrap();
        let sp = avro::compile_for_schema(&compiled, 0, Schema::parse(&text).unwrap()).unwrap();
        let apache = apache_avro::Schema::parse_str(&text).unwrap();
        #[allow(deprecated)]
        let body = apache_avro::to_avro_datum(&apache, record(&case)).unwrap();
        let (mut json, mut scratch) = (Vec::new(), Scratch::default());
        let decoded = avro::value::decode_limited(&sp.writer.root, &body, &mut json, scratch.decoded_tape(), usize::MAX).map(|()| json.as_slice()).map_err(|e| (custos::engine::DeadLetterReason::Schema, format!("{e:?}")));
        prop_assert!(decoded.is_ok(), "{:?}", decoded);
        // The engine governs the decoder's tape: the parser's of the same text.
        let mut parsed = custos::codec::Tape::default();
        parsed.parse(decoded.as_ref().unwrap()).unwrap();
        prop_assert_eq!(&scratch.decoded_tape().toks, &parsed.toks);
        let input = Input { topic: "in", partition: 0, offset: 0, timestamp: Some(1_795_000_000_000), key: None, value: Some(&body), headers: &[] };
        let cx = Context { policy: "avroprop@0", worker: "w", now_ms: 1_795_000_000_000, limits: Limits::default() };
        let mut tape = custos::codec::Tape::default();
        let mut encode = |o: usize, j: &[u8], made: Option<&custos::codec::Tape>| -> Result<Vec<u8>, String> {
            let mut out = Vec::new();
            avro::value::encode_json(&sp.derived[o].ty, j, &mut tape, &mut out)?;
            // The walk's tape of the output is the parser's of its text.
            let made = made.ok_or("no tape of the output from the walk")?;
            if made.toks != tape.toks {
                return Err(format!("the walk's tape differs from the parser's for {}", String::from_utf8_lossy(j)));
            }
            Ok(out)
        };
        let p = pipeline::process_decoded(&sp.plan, None, &input, decoded, &MemoryState::default(), &cx, &mut scratch, &mut encode);
        let governed = match p.written {
            Written::Governed { governed, .. } => governed,
            // Values here have under 9 digits: the guard of kept values never
            // rewrites one, so every record must govern.
            Written::DeadLetter(d) => panic!("dead-lettered ({:?}): {}", d.reason, d.detail),
        };
        let Outcome::Emitted(out) = &governed.outcomes[0] else { panic!("contract basis is never suppressed") };
        // Every output decodes with its derived schema (apache-avro reads it).
        let derived = apache_avro::Schema::parse_str(&sp.derived[0].text).unwrap();
        let mut r = &out.value[..];
        #[allow(deprecated)]
        let v = apache_avro::from_avro_datum(&derived, &mut r, None);
        prop_assert!(v.is_ok() && r.is_empty(), "{:?} with {}", v, sp.derived[0].text);
        // A marker appears only where every class of its field is kept.
        let shown = String::from_utf8_lossy(&out.value).into_owned();
        for (i, marker) in [(0, "ZqA-marker"), (3, "ZqO-marker"), (5, "ZqEnumB"), (6, "ZqBy-marker")] {
            if !kept(&case, &case.classes[i]) {
                prop_assert!(!shown.contains(marker), "{} leaked: rules {:?} classes {:?}", marker, case.rules, case.classes[i]);
            }
        }
        if !kept(&case, &case.nested) {
            for i in 0..case.items {
                prop_assert!(!shown.contains(&format!("ZqS{i}-marker")), "r[].s leaked");
            }
        }
        prop_assert!(!shown.contains("ZqU-unclassified"), "an unclassified field leaked");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Hostile bytes never panic the decoder: they decode (and then re-encode
    /// to the same bytes) or are refused with a reason.
    #[test]
    fn arbitrary_bytes_decode_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        let text = schema_text(&Case { classes: vec![vec![0]; FIELDS.len()], rules: Vec::new(), nested: vec![0], n: 0, x: 0.0, day: 0, some: false, items: 0 });
        let schema = Schema::parse(&text).unwrap();
        let (mut out, mut tape) = (Vec::new(), custos::codec::Tape::default());
        if avro::value::decode_limited(&schema.root, &bytes, &mut out, &mut tape, 1 << 20).is_ok() {
            let mut parsed = custos::codec::Tape::default();
            parsed.parse(&out).unwrap();
            prop_assert_eq!(&tape.toks, &parsed.toks);
            let mut again = Vec::new();
            avro::value::encode_json(&schema.root, &out, &mut custos::codec::Tape::default(), &mut again).unwrap();
            // Floats may be written back in a different bit pattern (NaN payloads); everything else round-trips.
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let mut back = Vec::new();
            avro::value::decode(&schema.root, &again, &mut back).unwrap();
            prop_assert_eq!(serde_json::from_slice::<serde_json::Value>(&back).unwrap(), v);
        }
    }
}

/// Small schemas with one hard shape each (maps, nested unions, floats,
/// decimals, fixed, micros, empty records), for hostile bytes.
const SHAPES: &[&str] = &[
    r#"{"type":"record","name":"S0","fields":[{"name":"m","type":{"type":"map","values":["null","string","double",{"type":"array","items":"int"}]}}]}"#,
    r#"{"type":"record","name":"S1","fields":[{"name":"a","type":{"type":"array","items":{"type":"record","name":"I","fields":[{"name":"f","type":"float"},{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}}]}}}]}"#,
    r#"{"type":"record","name":"S2","fields":[{"name":"t","type":{"type":"long","logicalType":"timestamp-micros"}},{"name":"x","type":{"type":"fixed","name":"F","size":2}},{"name":"e","type":{"type":"record","name":"E","fields":[]}},{"name":"b","type":"boolean"}]}"#,
    r#"{"type":"record","name":"S3","fields":[{"name":"s","type":"string"},{"name":"mm","type":{"type":"map","values":{"type":"map","values":"long"}}}]}"#,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Whatever hostile bytes decode to, the decoder's tape is the one the
    /// JSON parser makes of the same text (the engine governs it as is).
    #[test]
    fn the_decoders_tape_is_the_parsers_for_hostile_bytes(
        shape in 0..SHAPES.len(),
        bytes in prop::collection::vec(prop_oneof![6 => 0u8..6, 3 => b'a'..=b'c', 1 => any::<u8>()], 0..48),
    ) {
        let schema = Schema::parse(SHAPES[shape]).unwrap();
        let (mut out, mut tape) = (Vec::new(), custos::codec::Tape::default());
        // Every prefix: a datum must use all its bytes, and some prefix of
        // random bytes often is one.
        for end in 0..=bytes.len() {
            match avro::value::decode_limited(&schema.root, &bytes[..end], &mut out, &mut tape, 1 << 16) {
                Ok(()) => {
                    prop_assert!(tape.spans(&out));
                    let mut parsed = custos::codec::Tape::default();
                    parsed.parse(&out).unwrap();
                    prop_assert_eq!(&tape.toks, &parsed.toks);
                }
                Err(_) => prop_assert!(!tape.spans(&out)),
            }
        }
    }
}

fn arb_map_value() -> impl Strategy<Value = AV> {
    prop_oneof![
        Just(AV::Union(0, Box::new(AV::Null))),
        "(?s).{0,8}".prop_map(|s| AV::Union(1, Box::new(AV::String(s)))),
        any::<f64>().prop_map(|x| AV::Union(2, Box::new(AV::Double(x)))),
        prop::collection::vec(any::<i32>().prop_map(AV::Int), 0..4)
            .prop_map(|a| AV::Union(3, Box::new(AV::Array(a)))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Maps with keys that need escapes, unions of every kind in them, maps
    /// of maps: decoded, their tape is the parser's of the same text.
    #[test]
    fn the_decoders_tape_is_the_parsers_for_maps_and_unions(
        m in prop::collection::hash_map("(?s).{0,6}", arb_map_value(), 0..6),
        s in "(?s).{0,12}",
        mm in prop::collection::hash_map(".{0,3}", prop::collection::hash_map("[a-c\"\\\\]{0,2}", any::<i64>(), 0..3), 0..3),
    ) {
        let values = [
            AV::Record(vec![("m".into(), AV::Map(m.into_iter().collect()))]),
            AV::Record(vec![
                ("s".into(), AV::String(s)),
                ("mm".into(), AV::Map(mm.into_iter().map(|(k, v)| (k, AV::Map(v.into_iter().map(|(k, x)| (k, AV::Long(x))).collect()))).collect())),
            ]),
        ];
        for (text, value) in [SHAPES[0], SHAPES[3]].into_iter().zip(values) {
            let apache = apache_avro::Schema::parse_str(text).unwrap();
            #[allow(deprecated)]
            let bytes = apache_avro::to_avro_datum(&apache, value).unwrap();
            let schema = Schema::parse(text).unwrap();
            let (mut out, mut tape) = (Vec::new(), custos::codec::Tape::default());
            avro::value::decode_limited(&schema.root, &bytes, &mut out, &mut tape, 1 << 20).unwrap();
            prop_assert!(tape.spans(&out));
            let mut parsed = custos::codec::Tape::default();
            parsed.parse(&out).unwrap();
            prop_assert_eq!(&tape.toks, &parsed.toks);
        }
    }
}
