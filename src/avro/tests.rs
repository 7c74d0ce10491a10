//! Avro unit tests. apache-avro (an implementation nobody here wrote)
//! writes the inputs and reads the outputs, so custos's decoder and encoder
//! are held against it, not against themselves.

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::types::Value as AV;
use serde_json::{json, Value};

use super::schema::{Schema, Ty};
use super::*;
use crate::codec::Tape;
use crate::engine::{DeadLetterReason, Outcome, Scratch};
use crate::pipeline::{self, Context, Input, Written};
use crate::policy::{self, keys::Keys, plan};
use crate::state::MemoryState;

const ALL_TYPES: &str = r#"{
  "type": "record", "name": "All", "namespace": "t",
  "fields": [
    {"name": "n", "type": "null"},
    {"name": "b", "type": "boolean"},
    {"name": "i", "type": "int"},
    {"name": "l", "type": "long"},
    {"name": "f", "type": "float"},
    {"name": "d", "type": "double"},
    {"name": "by", "type": "bytes"},
    {"name": "s", "type": "string"},
    {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "e", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
    {"name": "fx", "type": {"type": "fixed", "name": "Four", "size": 4}},
    {"name": "dec", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "fdec", "type": {"type": "fixed", "name": "Money", "size": 8, "logicalType": "decimal", "precision": 12, "scale": 3}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "tsm", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "tsu", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "arr", "type": {"type": "array", "items": {"type": "record", "name": "Inner",
        "fields": [{"name": "x", "type": "long"}, {"name": "y", "type": ["null", "string"], "default": null}]}}},
    {"name": "m", "type": {"type": "map", "values": "long"}},
    {"name": "un", "type": ["null", "string", "long"]},
    {"name": "un2", "type": ["null", "Inner"], "default": null}
  ]
}"#;

fn inner(x: i64, y: Option<&str>) -> AV {
    AV::Record(vec![
        ("x".into(), AV::Long(x)),
        (
            "y".into(),
            match y {
                None => AV::Union(0, Box::new(AV::Null)),
                Some(s) => AV::Union(1, Box::new(AV::String(s.into()))),
            },
        ),
    ])
}

fn all_value(un: AV) -> AV {
    AV::Record(vec![
        ("n".into(), AV::Null),
        ("b".into(), AV::Boolean(true)),
        ("i".into(), AV::Int(-42)),
        ("l".into(), AV::Long(1 << 40)),
        ("f".into(), AV::Float(1.5)),
        ("d".into(), AV::Double(-2.25)),
        ("by".into(), AV::Bytes(vec![0, 1, 0xff, b'a'])),
        ("s".into(), AV::String("héllo \"q\"".into())),
        (
            "u".into(),
            AV::String("0b7e0ad0-6a63-4f2c-9c1d-3b0e3e8f0a11".into()),
        ),
        ("e".into(), AV::Enum(1, "GREEN".into())),
        ("fx".into(), AV::Fixed(4, vec![1, 2, 3, 4])),
        (
            "dec".into(),
            AV::Decimal(apache_avro::Decimal::from(vec![0xfe, 0x0c])),
        ), // -500 → -5.00
        (
            "fdec".into(),
            AV::Decimal(apache_avro::Decimal::from(vec![
                0, 0, 0, 0, 0, 0, 0x30, 0x39,
            ])),
        ), // 12345 → 12.345
        ("day".into(), AV::Date(20_000)),
        ("tsm".into(), AV::TimestampMillis(1_795_392_000_123)),
        ("tsu".into(), AV::TimestampMicros(1_795_392_000_123_456)),
        (
            "arr".into(),
            AV::Array(vec![inner(1, None), inner(2, Some("two"))]),
        ),
        (
            "m".into(),
            AV::Map(HashMap::from([("k".to_string(), AV::Long(7))])),
        ),
        ("un".into(), un),
        (
            "un2".into(),
            AV::Union(1, Box::new(inner(3, Some("three")))),
        ),
    ])
}

fn apache(text: &str) -> apache_avro::Schema {
    apache_avro::Schema::parse_str(text).unwrap()
}

#[allow(deprecated)]
fn written(text: &str, v: AV) -> Vec<u8> {
    apache_avro::to_avro_datum(&apache(text), v).unwrap()
}

#[allow(deprecated)]
fn read_back(schema_text: &str, bytes: &[u8]) -> AV {
    let s = apache(schema_text);
    let mut r = bytes;
    let v = apache_avro::from_avro_datum(&s, &mut r, None).unwrap();
    assert!(r.is_empty(), "bytes left over");
    v
}

#[test]
fn every_type_decodes_to_the_documented_json_and_encodes_back_byte_for_byte() {
    let schema = Schema::parse(ALL_TYPES).unwrap();
    for un in [
        AV::Union(0, Box::new(AV::Null)),
        AV::Union(1, Box::new(AV::String("s".into()))),
        AV::Union(2, Box::new(AV::Long(9))),
    ] {
        let bytes = written(ALL_TYPES, all_value(un));
        let mut json = Vec::new();
        value::decode(&schema.root, &bytes, &mut json).unwrap();
        let v: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["b"], json!(true));
        assert_eq!(v["i"], json!(-42));
        assert_eq!(v["l"], json!(1_i64 << 40));
        assert_eq!(v["f"], json!(1.5));
        assert_eq!(v["by"], json!("\u{0}\u{1}\u{ff}a"));
        assert_eq!(v["s"], json!("héllo \"q\""));
        assert_eq!(v["e"], json!("GREEN"));
        assert_eq!(v["dec"].to_string(), "-5.00");
        assert_eq!(v["fdec"].to_string(), "12.345");
        assert_eq!(v["day"], json!("2024-10-04"));
        assert_eq!(v["tsm"], json!(1_795_392_000_123_i64));
        assert_eq!(v["tsu"], json!("2026-11-23T00:00:00.123456Z"));
        assert_eq!(v["arr"], json!([{"x": 1, "y": null}, {"x": 2, "y": "two"}]));
        assert_eq!(v["m"], json!({"k": 7}));
        assert_eq!(v["un2"], json!({"x": 3, "y": "three"}));
        // Back: the same bytes as apache-avro wrote.
        let mut out = Vec::new();
        value::encode(&schema.root, &v, &mut out).unwrap();
        assert_eq!(out, bytes, "re-encoded {v}");
        // Straight from the JSON text (the worker's path): the same bytes.
        let mut from_text = Vec::new();
        value::encode_json(
            &schema.root,
            &json,
            &mut crate::codec::Tape::default(),
            &mut from_text,
        )
        .unwrap();
        assert_eq!(from_text, bytes);
        // Avro's JSON encoding, there and back.
        let aj = value::to_avro_json(&schema.root, &v).unwrap();
        assert_eq!(value::from_avro_json(&schema.root, &aj).unwrap(), v);
    }
}

/// The tape the decoder writes is the one the JSON parser makes of the same
/// text: the engine governs it without parsing.
fn decoded_with_tape(ty: &Ty, bytes: &[u8]) -> Result<Vec<u8>, value::DecodeError> {
    let (mut json, mut tape) = (Vec::new(), Tape::default());
    value::decode_limited(ty, bytes, &mut json, &mut tape, usize::MAX)?;
    assert!(tape.spans(&json));
    let mut parsed = Tape::default();
    parsed.parse(&json).unwrap();
    assert_eq!(tape.toks, parsed.toks, "{}", String::from_utf8_lossy(&json));
    Ok(json)
}

#[test]
fn the_decoders_tape_is_the_parsers_for_every_type() {
    let schema = Schema::parse(ALL_TYPES).unwrap();
    for un in [
        AV::Union(0, Box::new(AV::Null)),
        AV::Union(1, Box::new(AV::String("s".into()))),
        AV::Union(2, Box::new(AV::Long(9))),
    ] {
        let json = decoded_with_tape(&schema.root, &written(ALL_TYPES, all_value(un))).unwrap();
        // Escaped strings, bytes, decimals, dates and nested containers are there.
        let text = String::from_utf8(json).unwrap();
        assert!(text.contains(r#""s":"héllo \"q\"""#), "{text}");
        assert!(text.contains(r#""arr":[{"x":1,"y":null}"#), "{text}");
    }
    // Floats JSON cannot hold are strings; empty containers are hollow.
    let odd = r#"{"type":"record","name":"O","fields":[
        {"name":"d","type":"double"},{"name":"f","type":"float"},
        {"name":"a","type":{"type":"array","items":"int"}},
        {"name":"m","type":{"type":"map","values":{"type":"array","items":"null"}}}]}"#;
    let s = Schema::parse(odd).unwrap();
    let v = AV::Record(vec![
        ("d".into(), AV::Double(f64::NAN)),
        ("f".into(), AV::Float(f32::NEG_INFINITY)),
        ("a".into(), AV::Array(Vec::new())),
        (
            "m".into(),
            AV::Map(HashMap::from([(
                "k\n\"".to_string(),
                AV::Array(Vec::new()),
            )])),
        ),
    ]);
    let json = decoded_with_tape(&s.root, &written(odd, v)).unwrap();
    assert_eq!(
        String::from_utf8(json).unwrap(),
        r#"{"d":"NaN","f":"-Infinity","a":[],"m":{"k\n\"":[]}}"#
    );
}

#[test]
fn a_map_with_a_key_twice_does_not_decode() {
    let text = r#"{"type":"record","name":"M","fields":[{"name":"m","type":{"type":"map","values":"string"}}]}"#;
    let s = Schema::parse(text).unwrap();
    // One block of two entries, both keyed "a": which one a reader keeps is
    // up to the reader, a way past governance.
    let mut bytes = vec![4];
    for v in ["kept", "smuggled"] {
        bytes.extend_from_slice(&[2, b'a', (v.len() * 2) as u8]);
        bytes.extend_from_slice(v.as_bytes());
    }
    bytes.push(0);
    match decoded_with_tape(&s.root, &bytes) {
        Err(value::DecodeError::Bad(why)) => assert!(why.contains("same key twice"), "{why}"),
        other => panic!("{other:?}"),
    }
    // The same entries under two keys decode.
    bytes[2] = b'b';
    let json = decoded_with_tape(&s.root, &bytes).unwrap();
    assert_eq!(json, br#"{"m":{"b":"kept","a":"smuggled"}}"#);
}

#[test]
fn corrupt_data_is_an_error_not_a_panic() {
    let schema = Schema::parse(ALL_TYPES).unwrap();
    let bytes = written(ALL_TYPES, all_value(AV::Union(0, Box::new(AV::Null))));
    for cut in 0..bytes.len() {
        let mut out = Vec::new();
        assert!(
            value::decode(&schema.root, &bytes[..cut], &mut out).is_err(),
            "cut at {cut}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(value::decode(&schema.root, &longer, &mut Vec::new())
        .unwrap_err()
        .contains("left over"));
    // Zero-size items in block after block: stopped at the size limit.
    let nulls = Schema::parse(r#"{"type":"record","name":"N","fields":[{"name":"a","type":{"type":"array","items":"null"}}]}"#).unwrap();
    let mut blocks = Vec::new();
    for _ in 0..2000 {
        blocks.extend_from_slice(&[0x80, 0x7d]); // a block of 8,000 nulls
    }
    blocks.push(0);
    let mut out = Vec::new();
    match value::decode_limited(
        &nulls.root,
        &blocks,
        &mut out,
        &mut Tape::default(),
        100_000,
    ) {
        Err(value::DecodeError::TooLarge(_)) => assert!(out.len() < 200_000),
        other => panic!("{other:?}"),
    }
    // A huge array count with no data behind it.
    let s = Schema::parse(r#"{"type":"record","name":"A","fields":[{"name":"a","type":{"type":"array","items":"null"}}]}"#).unwrap();
    assert!(value::decode(&s.root, &[0xfe, 0xff, 0xff, 0xff, 0x0f], &mut Vec::new()).is_err());
}

#[test]
fn wire_format_header() {
    assert_eq!(split_wire(&[0, 0, 0, 1, 2, 9]).unwrap(), (258, &[9u8][..]));
    assert!(split_wire(b"{\"a\":1}").unwrap_err().contains("magic byte"));
    assert!(split_wire(&[0, 0, 1]).unwrap_err().contains("shorter"));
    let mut h = Vec::new();
    wire_header(258, &mut h);
    assert_eq!(h, [0, 0, 0, 1, 2]);
}

#[test]
fn recursive_and_non_record_schemas_are_refused() {
    let e = Schema::parse(
        r#"{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}"#,
    )
    .unwrap_err();
    assert!(e.contains("recursive"), "{e}");
    assert!(Schema::parse(r#""string""#)
        .unwrap_err()
        .contains("not a record"));
    assert!(Schema::parse(r#"{"type":"record","name":"X"}"#)
        .unwrap_err()
        .contains("not a valid Avro schema"));
}

pub(crate) const POLICY: &str = r#"
version: 1
name: avro-shop
tags:
  PII: pii.contact.email
  SENSITIVE: sensitive
keys:
  a: { env: KA }
purposes:
  analytics:
    basis: legitimate_interest
    retention: 3650d
    rules:
      - { classes: [internal, public, behavioral], action: keep }
      - { classes: [pii.identifier], action: { pseudonymize: { key: a } } }
      - { classes: [pii.date_of_birth], action: { generalize: { date: year } } }
      - { classes: [pii.name], action: redact }
  support:
    basis: contract
    retention: 3650d
    rules:
      - { classes: [pii, behavioral, public, internal], action: keep }
      - { classes: [pii.financial.card], action: { mask: { keep_last: 4 } } }
streams:
  orders:
    topic: shop.orders.avro
    format: avro
    subject: customer.id
    event_time: created_at
    fields:
      notes: { classes: [internal], scan: true }
    outputs:
      analytics: out.analytics
      support: out.support
"#;

pub(crate) fn compiled() -> plan::Compiled {
    let p = policy::load(POLICY, "p.yaml").unwrap();
    plan::compile(
        Arc::new(p),
        &Keys::from_pairs([("a", b"0123456789abcdef0123".to_vec())]),
    )
    .unwrap()
}

pub(crate) fn order_schema() -> &'static str {
    include_str!("../../schemas/avro/shop-order.avsc")
}

fn field<'a>(schema: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = schema;
    for (i, name) in path.iter().enumerate() {
        let fields = cur.get("fields")?.as_array()?;
        let f = fields.iter().find(|f| f["name"] == *name)?;
        if i + 1 == path.len() {
            return Some(f);
        }
        cur = &f["type"];
        if let Some(bs) = cur.as_array() {
            cur = bs.iter().find(|b| b.is_object())?;
        }
    }
    None
}

#[test]
fn derived_schemas_follow_the_plan() {
    let c = compiled();
    let sp = compile_for_schema(&c, 0, Schema::parse(order_schema()).unwrap()).unwrap();
    let a: Value = serde_json::from_str(&sp.derived[0].text).unwrap();
    let s: Value = serde_json::from_str(&sp.derived[1].text).unwrap();
    // Nothing classifies `channel`, `attributes`, `payment.currency`: gone for both.
    for d in [&a, &s] {
        assert!(field(d, &["channel"]).is_none());
        assert!(field(d, &["attributes"]).is_none());
        assert!(field(d, &["payment", "currency"]).is_none());
    }
    // analytics: the id is pseudonymized (a string, annotated), the name
    // redacted (still a string), the birth date generalized to a year
    // (text, nullable as before), email and health notes and the card dropped.
    let id = field(&a, &["customer", "id"]).unwrap();
    assert_eq!(id["type"], json!("string"));
    assert_eq!(id["custos.action"], json!("pseudonymize"));
    assert_eq!(
        field(&a, &["customer", "name"]).unwrap()["type"],
        json!("string")
    );
    assert_eq!(
        field(&a, &["customer", "birth_date"]).unwrap()["type"],
        json!(["null", "string"])
    );
    assert!(field(&a, &["customer", "email"]).is_none());
    assert!(field(&a, &["customer", "health_notes"]).is_none());
    assert!(field(&a, &["payment", "card_number"]).is_none());
    assert_eq!(
        field(&a, &["payment", "amount"]).unwrap()["type"]["logicalType"],
        json!("decimal")
    );
    // support keeps the customer (email through the PII tag) and masks the card.
    assert_eq!(
        field(&s, &["customer", "email"]).unwrap()["type"],
        json!(["null", "string"])
    );
    assert_eq!(
        field(&s, &["customer", "birth_date"]).unwrap()["type"],
        json!(["null", {"type": "int", "logicalType": "date"}])
    );
    assert_eq!(
        field(&s, &["payment", "card_number"]).unwrap()["custos.action"],
        json!("mask")
    );
    // `sensitive` has no rule anywhere: dropped for both.
    assert!(field(&s, &["customer", "health_notes"]).is_none());
    // Docs stay.
    assert!(a["doc"].as_str().is_some());
}

#[test]
fn a_class_the_taxonomy_lacks_makes_the_schema_unusable() {
    let c = compiled();
    let text = r#"{"type":"record","name":"O","fields":[{"name":"x","type":"string","classes":["pii.nonsense"]}]}"#;
    let e = compile_for_schema(&c, 0, Schema::parse(text).unwrap()).unwrap_err();
    assert!(e.contains("pii.nonsense") && e.contains("`x`"), "{e}");
}

fn order_value(card: &str, notes: Option<&str>) -> AV {
    AV::Record(vec![
        ("order_id".into(), AV::String("o-1".into())),
        ("created_at".into(), AV::TimestampMillis(1_795_391_000_000)),
        ("channel".into(), AV::Enum(0, "web".into())),
        (
            "customer".into(),
            AV::Record(vec![
                ("id".into(), AV::String("c-1".into())),
                (
                    "email".into(),
                    AV::Union(1, Box::new(AV::String("ana@example.com".into()))),
                ),
                ("name".into(), AV::String("Ana".into())),
                ("birth_date".into(), AV::Union(1, Box::new(AV::Date(3000)))),
                (
                    "health_notes".into(),
                    AV::Union(1, Box::new(AV::String("asthma".into()))),
                ),
            ]),
        ),
        (
            "payment".into(),
            AV::Record(vec![
                ("card_number".into(), AV::String(card.into())),
                (
                    "amount".into(),
                    AV::Decimal(apache_avro::Decimal::from(vec![0x30, 0x39])),
                ),
                ("currency".into(), AV::Fixed(3, b"EUR".to_vec())),
            ]),
        ),
        (
            "items".into(),
            AV::Array(vec![AV::Record(vec![
                ("sku".into(), AV::String("sku-1".into())),
                ("qty".into(), AV::Int(2)),
            ])]),
        ),
        (
            "attributes".into(),
            AV::Map(HashMap::from([(
                "gift".to_string(),
                AV::String("yes".into()),
            )])),
        ),
        (
            "notes".into(),
            match notes {
                None => AV::Union(0, Box::new(AV::Null)),
                Some(n) => AV::Union(1, Box::new(AV::String(n.into()))),
            },
        ),
    ])
}

fn govern(sp: &SchemaPlan, value: &[u8]) -> pipeline::Processed {
    let (mut json, mut scratch) = (Vec::new(), Scratch::default());
    let decoded = value::decode_limited(
        &sp.writer.root,
        value,
        &mut json,
        scratch.decoded_tape(),
        usize::MAX,
    )
    .map(|()| json.as_slice())
    .map_err(|e| (DeadLetterReason::Schema, format!("{e:?}")));
    let input = Input {
        topic: "shop.orders.avro",
        partition: 0,
        offset: 1,
        timestamp: Some(1_795_391_000_000),
        key: None,
        value: Some(value),
        headers: &[],
    };
    let cx = Context {
        policy: "avro-shop@0",
        worker: "w",
        now_ms: 1_795_392_000_000,
        limits: crate::engine::Limits::default(),
    };
    let mut encode = |i: usize, json: &[u8], made: Option<&Tape>| -> Result<Vec<u8>, String> {
        let v: Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        value::encode(&sp.derived[i].ty, &v, &mut out)?;
        // The walk built the output's tape as it wrote it: the parser's of
        // the same text, and it encodes to the same bytes.
        let made = made.expect("the walk's tape of a decoded value's output");
        let mut parsed = Tape::default();
        parsed.parse(json).unwrap();
        assert_eq!(made.toks, parsed.toks, "{}", String::from_utf8_lossy(json));
        let mut from_tape = Vec::new();
        value::encode_tape(&sp.derived[i].ty, json, made, &mut from_tape)?;
        assert_eq!(from_tape, out);
        Ok(out)
    };
    pipeline::process_decoded(
        &sp.plan,
        None,
        &input,
        decoded,
        &MemoryState::default(),
        &cx,
        &mut scratch,
        &mut encode,
    )
}

fn field_of<'a>(v: &'a AV, name: &str) -> &'a AV {
    match v {
        AV::Record(fs) => {
            &fs.iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("no {name} in {v:?}"))
                .1
        }
        AV::Union(_, b) => field_of(b, name),
        other => panic!("{other:?} is not a record"),
    }
}

#[test]
fn an_avro_order_is_governed_and_every_output_reads_with_its_derived_schema() {
    let c = compiled();
    let sp = compile_for_schema(&c, 0, Schema::parse(order_schema()).unwrap()).unwrap();
    let bytes = written(
        order_schema(),
        order_value("4111 1111 1111 1111", Some("call ana@example.com")),
    );
    let p = govern(&sp, &bytes);
    let Written::Governed { governed, .. } = &p.written else {
        panic!("{:?}", p.written)
    };
    let outs: Vec<&crate::engine::Output> = governed
        .outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Emitted(o) => Some(o),
            Outcome::Suppressed(_) => None,
        })
        .collect();
    assert_eq!(outs.len(), 2);
    let a = read_back(&sp.derived[0].text, &outs[0].value);
    let s = read_back(&sp.derived[1].text, &outs[1].value);
    let pseudonym = crate::transform::pseudonym_with_key(b"0123456789abcdef0123", b"c-1");
    assert_eq!(
        *field_of(field_of(&a, "customer"), "id"),
        AV::String(pseudonym)
    );
    assert_eq!(
        *field_of(field_of(&a, "customer"), "name"),
        AV::String("[REDACTED]".into())
    );
    assert_eq!(
        *field_of(field_of(&a, "customer"), "birth_date"),
        AV::Union(1, Box::new(AV::String("1978".into())))
    );
    // The scanned note: the e-mail address inside is redacted for analytics (no rule).
    assert_eq!(
        *field_of(&a, "notes"),
        AV::Union(
            1,
            Box::new(AV::String("call [REDACTED:pii.contact.email]".into()))
        )
    );
    assert_eq!(
        *field_of(field_of(&s, "payment"), "card_number"),
        AV::String("***************1111".into())
    );
    assert_eq!(
        *field_of(field_of(&s, "customer"), "email"),
        AV::Union(1, Box::new(AV::String("ana@example.com".into())))
    );
    // Nothing unclassified, nothing dropped leaks: compare the text of everything.
    for out in [format!("{a:?}"), format!("{s:?}")] {
        assert!(
            !out.contains("asthma") && !out.contains("EUR") && !out.contains("gift"),
            "{out}"
        );
    }
    assert!(!format!("{a:?}").contains("ana@example.com") && !format!("{a:?}").contains("4111"));
}

#[test]
fn bad_bytes_dead_letter_with_reason_schema_and_the_original_value() {
    let c = compiled();
    let sp = compile_for_schema(&c, 0, Schema::parse(order_schema()).unwrap()).unwrap();
    let mut bytes = written(order_schema(), order_value("4111 1111 1111 1111", None));
    bytes.truncate(bytes.len() - 3);
    let p = govern(&sp, &bytes);
    let Written::DeadLetter(d) = &p.written else {
        panic!("{:?}", p.written)
    };
    assert_eq!(d.reason, DeadLetterReason::Schema);
    assert_eq!(d.value.as_deref(), Some(&bytes[..]));
}

#[test]
fn a_kept_number_that_turns_out_to_be_a_card_dead_letters_rather_than_break_the_schema() {
    // `qty` is kept for support; a card number in it is caught by the guard
    // of kept values and rewritten as text, which an `int` cannot hold: the
    // record is dead-lettered (fail closed), never written half.
    let text = r#"{"type":"record","name":"O","fields":[
        {"name":"created_at","type":"long","classes":["public"]},
        {"name":"customer","type":{"type":"record","name":"C","fields":[{"name":"id","type":"string","classes":["pii.identifier.customer_id"]}]}},
        {"name":"ref","type":"long","classes":["internal"]}]}"#;
    let c = compiled();
    let sp = compile_for_schema(&c, 0, Schema::parse(text).unwrap()).unwrap();
    let v = |r: i64| {
        AV::Record(vec![
            ("created_at".into(), AV::Long(1_795_391_000_000)),
            (
                "customer".into(),
                AV::Record(vec![("id".into(), AV::String("c".into()))]),
            ),
            ("ref".into(), AV::Long(r)),
        ])
    };
    let ok = govern(&sp, &written(text, v(12)));
    assert!(
        matches!(ok.written, Written::Governed { .. }),
        "{:?}",
        ok.written
    );
    let card = govern(&sp, &written(text, v(4_111_111_111_111_111)));
    let Written::DeadLetter(d) = &card.written else {
        panic!("{:?}", card.written)
    };
    assert_eq!(d.reason, DeadLetterReason::Schema);
    assert!(d.detail.contains("derived schema"), "{}", d.detail);
}

#[test]
fn the_stand_in_registry_speaks_confluents_api() {
    let r = standin::StandIn::start("127.0.0.1:0").unwrap();
    let c = registry::Registry::plain(&r.url());
    let v1 = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#;
    let v2 = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"long","default":0}]}"#;
    let bad = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"c","type":"long"}]}"#;
    let id1 = c.register("t-value", v1).unwrap();
    assert_eq!(
        c.register("t-value", v1).unwrap(),
        id1,
        "registering again finds it"
    );
    assert_eq!(c.schema_by_id(id1).unwrap(), v1);
    assert!(c.compatible("t-value", "latest", v2).unwrap());
    assert!(!c.compatible("t-value", "latest", bad).unwrap());
    let id2 = c.register("t-value", v2).unwrap();
    assert_ne!(id1, id2);
    match c.register("t-value", bad) {
        Err(registry::RegistryError::Incompatible {
            subject, version, ..
        }) => {
            assert_eq!(
                (subject.as_str(), version.as_str()),
                ("t-value", " (version 2)")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        c.schema_by_id(999),
        Err(registry::RegistryError::NotFound(_))
    ));
    r.set_down(true);
    assert!(matches!(
        c.schema_by_id(id1),
        Err(registry::RegistryError::Unavailable(_))
    ));
    r.set_down(false);
    assert_eq!(r.subjects()["t-value"].len(), 2);
    drop(r);
    assert!(matches!(
        c.schema_by_id(id1),
        Err(registry::RegistryError::Unavailable(_))
    ));
}

#[test]
fn a_compatible_writer_evolution_gives_compatible_derived_schemas() {
    // v2 adds an optional classified field and an unclassified one: every
    // purpose's derived schema stays BACKWARD compatible by the registry's check.
    let c = compiled();
    let v1 = order_schema().to_string();
    let mut j: Value = serde_json::from_str(&v1).unwrap();
    j["fields"].as_array_mut().unwrap().push(json!({"name": "coupon", "type": ["null", "string"], "default": null, "classes": ["internal"]}));
    j["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "tracking", "type": ["null", "string"], "default": null}));
    let v2 = j.to_string();
    let r = standin::StandIn::start("127.0.0.1:0").unwrap();
    let reg = registry::Registry::plain(&r.url());
    let d1 = compile_for_schema(&c, 0, Schema::parse(&v1).unwrap()).unwrap();
    let d2 = compile_for_schema(&c, 0, Schema::parse(&v2).unwrap()).unwrap();
    for (i, o) in d1.plan.outputs.iter().enumerate() {
        let subject = format!("{}-value", o.topic);
        reg.register(&subject, &d1.derived[i].text).unwrap();
        assert!(
            reg.compatible(&subject, "latest", &d2.derived[i].text)
                .unwrap(),
            "{}",
            o.name
        );
        assert!(d2.derived[i].text.contains("coupon") && !d2.derived[i].text.contains("tracking"));
    }
}

#[test]
fn schema_classes_come_from_attributes_and_mapped_tags_only() {
    let s = Schema::parse(order_schema()).unwrap();
    let tags = vec![("PII".to_string(), "pii.contact.email".to_string())];
    let found: Vec<(String, String)> = schema::schema_classes(&s, &tags)
        .into_iter()
        .map(|(p, c, _)| (p.to_string(), c))
        .collect();
    assert!(found.contains(&("customer.email".into(), "pii.contact.email".into())));
    assert!(found.contains(&("items[].sku".into(), "behavioral.purchase".into())));
    // SENSITIVE is not mapped here: health_notes gets no class from it.
    assert!(!found.iter().any(|(p, _)| p == "customer.health_notes"));
    assert!(matches!(s.root, Ty::Record(_)));
}

#[test]
fn basic_authentication_is_sent_and_refused_credentials_are_their_own_error() {
    let r = standin::StandIn::start("127.0.0.1:0").unwrap();
    r.require_basic_auth("custos", "s3cret");
    let v1 = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#;
    let id = r.register("t-value", v1).unwrap();
    let cfg = |user: &str| crate::config::SchemaRegistrySection {
        username: Some(user.into()),
        ..Default::default()
    };
    let good = registry::Registry::new(&cfg("custos"), &r.url(), Some(b"s3cret")).unwrap();
    assert_eq!(good.schema_by_id(id).unwrap(), v1);
    let bad = registry::Registry::new(&cfg("custos"), &r.url(), Some(b"wrong")).unwrap();
    let got = bad.schema_by_id(id);
    assert!(
        matches!(
            got,
            Err(registry::RegistryError::Unauthorized { status: 401, .. })
        ),
        "{got:?}"
    );
    let none = registry::Registry::plain(&r.url());
    assert!(matches!(
        none.register("t-value", v1),
        Err(registry::RegistryError::Unauthorized { .. })
    ));
}

#[test]
fn defaults_in_derived_schemas_are_governed_like_values() {
    // Writer defaults are data: a redacted name's default is redacted, a
    // generalized date's default generalized, a nullable's default null.
    let text = r#"{"type":"record","name":"O","fields":[
        {"name":"created_at","type":"long","classes":["public"]},
        {"name":"customer","type":{"type":"record","name":"C","fields":[
            {"name":"id","type":"string","classes":["pii.identifier.customer_id"],"default":"nobody"},
            {"name":"name","type":"string","classes":["pii.name"],"default":"Jane Roe"},
            {"name":"birth_date","type":{"type":"int","logicalType":"date"},"classes":["pii.date_of_birth"],"default":0}]}},
        {"name":"tags","type":{"type":"array","items":"string"},"classes":["internal"],"default":[]}]}"#;
    let c = compiled();
    let sp = compile_for_schema(&c, 0, Schema::parse(text).unwrap()).unwrap();
    let a: Value = serde_json::from_str(&sp.derived[0].text).unwrap();
    let pseudonym = crate::transform::pseudonym_with_key(b"0123456789abcdef0123", b"nobody");
    assert_eq!(
        field(&a, &["customer", "id"]).unwrap()["default"],
        json!(pseudonym)
    );
    assert_eq!(
        field(&a, &["customer", "name"]).unwrap()["default"],
        json!("[REDACTED]")
    );
    assert_eq!(
        field(&a, &["customer", "birth_date"]).unwrap()["default"],
        json!("1970")
    );
    assert_eq!(field(&a, &["tags"]).unwrap()["default"], json!([]));
    assert!(!sp.derived[0].text.contains("Jane Roe") && !sp.derived[0].text.contains("nobody"));
    // support keeps them all: the writer's defaults unchanged.
    let s: Value = serde_json::from_str(&sp.derived[1].text).unwrap();
    assert_eq!(
        field(&s, &["customer", "name"]).unwrap()["default"],
        json!("Jane Roe")
    );
    assert_eq!(
        field(&s, &["customer", "birth_date"]).unwrap()["default"],
        json!(0)
    );
}

#[test]
fn a_404_that_is_not_the_registrys_answer_is_unavailable_not_unknown() {
    let r = standin::StandIn::start("127.0.0.1:0").unwrap();
    let wrong_base = registry::Registry::plain(&format!("{}/not-the-api", r.url()));
    assert!(matches!(
        wrong_base.schema_by_id(1),
        Err(registry::RegistryError::Unavailable(_))
    ));
    let right = registry::Registry::plain(&r.url());
    assert!(matches!(
        right.schema_by_id(1),
        Err(registry::RegistryError::NotFound(_))
    ));
    assert!(right.probe().is_ok());
    r.set_down(true);
    assert!(right.probe().is_err());
}

#[test]
fn marks_on_a_type_classify_its_field_and_bad_marks_refuse_the_schema() {
    // Classes or tags written on a record type, a union branch or an item
    // type classify the field that holds it: never silently ignored.
    let text = r#"{"type":"record","name":"O","fields":[
        {"name":"created_at","type":"long","classes":["public"]},
        {"name":"customer","type":{"type":"record","name":"C","fields":[{"name":"id","type":"string","classes":["pii.identifier.customer_id"]}]}},
        {"name":"health","type":{"type":"record","name":"Health","classes":["sensitive.health"],
            "fields":[{"name":"txt","type":"string","classes":["internal"]}]}},
        {"name":"again","type":"Health"},
        {"name":"note","type":["null",{"type":"string","confluent:tags":["SENSITIVE"]}],"default":null,"classes":["internal"]},
        {"name":"list","type":{"type":"array","items":{"type":"string","classes":["pii.name"]}},"classes":["internal"]}]}"#;
    let c = compiled();
    let sp = compile_for_schema(&c, 0, Schema::parse(text).unwrap()).unwrap();
    let a: Value = serde_json::from_str(&sp.derived[0].text).unwrap();
    for gone in ["health", "again", "note"] {
        assert!(
            field(&a, &[gone]).is_none(),
            "{gone} reached analytics: {}",
            sp.derived[0].text
        );
    }
    // The items' class joins the field's: analytics redacts names.
    assert_eq!(
        field(&a, &["list"]).unwrap()["classes"],
        json!(["internal", "pii.name"])
    );
    // Marks that are not lists of strings: refused, not ignored.
    for bad in [
        r#""classes":"sensitive.health""#,
        r#""classes":["public",5]"#,
        r#""confluent:tags":{"a":1}"#,
    ] {
        let t = format!(
            r#"{{"type":"record","name":"B","fields":[{{"name":"x","type":"string",{bad}}}]}}"#
        );
        let e = Schema::parse(&t).unwrap_err();
        assert!(
            e.contains("list of strings") || e.contains("not a string"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn a_schema_that_expands_beyond_the_path_limit_is_refused_quickly() {
    // Each level uses the one below twice: 2^24 paths from a 3 KB schema.
    let mut t =
        r#"{"type":"record","name":"T0","fields":[{"name":"v","type":"string"}]}"#.to_string();
    for i in 1..=24 {
        t = format!(
            r#"{{"type":"record","name":"T{i}","fields":[{{"name":"a","type":{t}}},{{"name":"b","type":"T{}"}}]}}"#,
            i - 1
        );
    }
    let started = std::time::Instant::now();
    let e = Schema::parse(&t).unwrap_err();
    assert!(e.contains("value paths"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn derived_schemas_copy_classification_only_and_no_scanned_default() {
    let text = r#"{"type":"record","name":"O","x-owner":"ada@example.com","fields":[
        {"name":"created_at","type":"long","classes":["public"],"x-pii":"Ada Lovelace"},
        {"name":"customer","type":{"type":"record","name":"C","fields":[{"name":"id","type":"string","classes":["pii.identifier.customer_id"]}]}},
        {"name":"notes","type":["string","null"],"default":"call ada@example.com"}]}"#;
    let c = compiled();
    let sp = compile_for_schema(&c, 0, Schema::parse(text).unwrap()).unwrap();
    for d in &sp.derived {
        assert!(
            !d.text.contains("ada@example.com") && !d.text.contains("Ada Lovelace"),
            "{}",
            d.text
        );
        assert!(d.text.contains("\"classes\""), "{}", d.text);
    }
}

#[test]
fn a_schema_adds_classes_and_never_weakens_the_policys() {
    // The policy classifies `customer` as a whole; a producer's schema
    // marking `customer.email` internal must not make it pass.
    let policy = POLICY.replace(
        "      notes: { classes: [internal], scan: true }\n",
        "      notes: { classes: [internal], scan: true }\n      customer: pii.contact\n      contacts.primary: internal\n",
    );
    let p = policy::load(&policy, "p.yaml").unwrap();
    let c = plan::compile(
        Arc::new(p),
        &Keys::from_pairs([
            ("k", b"0123456789abcdef".to_vec()),
            ("a", b"0123456789abcdef".to_vec()),
        ]),
    )
    .unwrap();
    let text = r#"{"type":"record","name":"O","fields":[
        {"name":"created_at","type":"long","classes":["public"]},
        {"name":"customer","type":{"type":"record","name":"C","fields":[
            {"name":"id","type":"string","classes":["pii.identifier.customer_id"]},
            {"name":"email","type":"string","classes":["internal"]}]}},
        {"name":"contacts","type":{"type":"map","values":{"type":"record","name":"K","fields":[
            {"name":"email","type":"string","classes":["pii.contact.email"]}]}}},
        {"name":"work","type":{"type":"record","name":"W","classes":["sensitive.health"],"fields":[{"name":"x","type":"string","classes":["internal"]}]}},
        {"name":"home","type":{"type":"W"}}]}"#;
    let sp = compile_for_schema(&c, 0, Schema::parse(text).unwrap()).unwrap();
    let a: Value = serde_json::from_str(&sp.derived[0].text).unwrap();
    assert!(
        field(&a, &["customer", "email"]).is_none(),
        "{}",
        sp.derived[0].text
    );
    // `home` refers to W as {"type": "W"}: W's class holds there too.
    assert!(
        field(&a, &["home"]).is_none() && field(&a, &["work"]).is_none(),
        "{}",
        sp.derived[0].text
    );
    // The map value the policy names (`contacts.primary`) keeps the
    // schema's class below it: the e-mail in it is governed, not copied whole.
    let bytes = {
        use apache_avro::types::Value as AV;
        let rec = AV::Record(vec![
            ("created_at".into(), AV::Long(1_795_391_000_000)),
            (
                "customer".into(),
                AV::Record(vec![
                    ("id".into(), AV::String("c-9".into())),
                    ("email".into(), AV::String("eve@example.com".into())),
                ]),
            ),
            (
                "contacts".into(),
                AV::Map(HashMap::from([(
                    "primary".to_string(),
                    AV::Record(vec![("email".into(), AV::String("bob@example.com".into()))]),
                )])),
            ),
            (
                "work".into(),
                AV::Record(vec![("x".into(), AV::String("asthma".into()))]),
            ),
            (
                "home".into(),
                AV::Record(vec![("x".into(), AV::String("asthma".into()))]),
            ),
        ]);
        written(text, rec)
    };
    let p = govern(&sp, &bytes);
    let Written::Governed { governed, .. } = &p.written else {
        panic!("{:?}", p.written)
    };
    let Outcome::Emitted(out) = &governed.outcomes[0] else {
        panic!()
    };
    let shown = String::from_utf8_lossy(&out.value);
    assert!(
        !shown.contains("bob@example.com") && !shown.contains("eve@") && !shown.contains("asthma"),
        "{shown}"
    );
}

#[test]
fn schemas_too_deep_or_with_oversized_names_or_marks_are_refused() {
    let mut ty = r#""string""#.to_string();
    for _ in 0..62 {
        ty = format!(r#"{{"type":"array","items":{ty}}}"#);
    }
    let t = format!(r#"{{"type":"record","name":"D","fields":[{{"name":"n","type":{ty}}}]}}"#);
    let e = Schema::parse(&t).unwrap_err();
    assert!(e.contains("levels deep"), "{e}");
    let long = "x".repeat(300);
    let t =
        format!(r#"{{"type":"record","name":"R","fields":[{{"name":"{long}","type":"string"}}]}}"#);
    assert!(Schema::parse(&t).unwrap_err().contains("bytes"));
    let many: Vec<String> = (0..100).map(|i| format!("T{i}")).collect();
    let t = format!(
        r#"{{"type":"record","name":"R","fields":[{{"name":"a","type":"string","confluent:tags":{}}}]}}"#,
        json!(many)
    );
    assert!(Schema::parse(&t).unwrap_err().contains("more than 64"));
}

#[test]
fn the_registry_client_trusts_the_configured_ca_and_only_it() {
    // A one-endpoint HTTPS registry with a certificate from a test CA
    // (tests/fixtures/tls, made with openssl; no secret).
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    let identity = native_tls::Identity::from_pkcs8(
        &std::fs::read(format!("{dir}/server.pem")).unwrap(),
        &std::fs::read(format!("{dir}/server.key")).unwrap(),
    )
    .unwrap();
    let acceptor = native_tls::TlsAcceptor::new(identity).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let schema = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#;
    let body = json!({ "schema": schema }).to_string();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for conn in listener.incoming().take(2) {
            let Ok(mut tls) = acceptor.accept(conn.unwrap()) else {
                continue; // the client that does not trust the CA hangs up
            };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = tls.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            let _ = write!(
                tls,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let url = format!("https://127.0.0.1:{port}");
    let untrusting = registry::Registry::plain(&url);
    assert!(matches!(
        untrusting.schema_by_id(1),
        Err(registry::RegistryError::Unavailable(_))
    ));
    let cfg = crate::config::SchemaRegistrySection {
        ca_file: Some(format!("{dir}/ca.pem").into()),
        ..Default::default()
    };
    let trusting = registry::Registry::new(&cfg, &url, None).unwrap();
    assert_eq!(trusting.schema_by_id(1).unwrap(), schema);
}

#[test]
fn a_record_with_two_fields_of_one_name_is_refused() {
    // The decoder never checks a record's members for duplicates: the
    // schema must not have any.
    let e = Schema::parse(
        r#"{"type":"record","name":"D","fields":[{"name":"a","type":"string"},{"name":"a","type":"long"}]}"#,
    )
    .unwrap_err();
    assert!(
        e.contains("two fields named `a`") || e.contains("Duplicate"),
        "{e}"
    );
}

/// The encoder's shortcuts from JSON text (plain numbers, a union's null or
/// string branch) give the bytes encoding the same value as a
/// `serde_json::Value` gives, also for unions only derived schemas have
/// (`[enum, string]` for a scanned enum: a symbol stays the enum).
#[test]
fn encoding_from_text_gives_the_bytes_of_encoding_from_a_value() {
    use super::schema::{Enum, IntLogical, LongLogical};
    let color = Ty::Enum(Arc::new(Enum {
        name: "C".into(),
        doc: None,
        symbols: vec!["RED".into()],
        default: None,
    }));
    let unions = [
        Ty::Union(vec![
            Ty::Null,
            color.clone(),
            Ty::Long(LongLogical::Plain),
            Ty::String(false),
        ]),
        Ty::Union(vec![color.clone(), Ty::String(false)]),
        Ty::Union(vec![Ty::Bytes(None), Ty::String(false)]),
        Ty::Union(vec![Ty::Int(IntLogical::Date), Ty::String(false)]),
        Ty::Union(vec![Ty::Null, Ty::String(false)]),
        Ty::Union(vec![Ty::String(false), Ty::Null]),
    ];
    let texts = [
        r#""RED""#,
        r#""BLUE""#,
        r#""é\"x""#,
        r#""2024-10-04""#,
        "null",
        "7",
    ];
    let mut cases: Vec<(Ty, &str)> = Vec::new();
    for u in &unions {
        cases.extend(texts.iter().map(|t| (u.clone(), *t)));
    }
    for (ty, nums) in [
        (
            Ty::Long(LongLogical::Plain),
            &["-12", "0", "-0", "1.0", "1e3", "9223372036854775808", "1.5"][..],
        ),
        (
            Ty::Int(IntLogical::Plain),
            &["2147483647", "2147483648", "-3", "4e0"][..],
        ),
        (Ty::Double, &["-0", "1.5", "1e400", "-2.5e-300", "12"][..]),
        (Ty::Float, &["1.5", "3.4e39", "1e400", "-7"][..]),
    ] {
        cases.extend(nums.iter().map(|n| (ty.clone(), *n)));
    }
    let mut tape = Tape::default();
    for (ty, text) in cases {
        let v: Value = serde_json::from_str(text).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let from_value = value::encode(&ty, &v, &mut a).map(|()| a);
        let from_text = value::encode_json(&ty, text.as_bytes(), &mut tape, &mut b).map(|()| b);
        assert_eq!(
            from_text.is_ok(),
            from_value.is_ok(),
            "{text} as {ty:?}: {from_text:?} against {from_value:?}"
        );
        if let (Ok(x), Ok(y)) = (&from_text, &from_value) {
            assert_eq!(x, y, "{text} as {ty:?}");
        }
    }
}
