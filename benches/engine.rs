//! Governance throughput: one ~1 KB order event (≈20 fields, nested objects,
//! an array of objects, a scanned free-text field with two detections)
//! governed for 3 purposes with outputs serialized.
//!
//! `custos` walks precompiled plans; `naive` is the obvious alternative kept
//! for comparison: parse to `serde_json::Value`, and for every leaf of every
//! purpose look the path up in the policy, match rules by string and build a
//! new `Value` to serialize.
//!
//! Run: `cargo bench --bench engine`

/// The shipped binary's allocator (src/main.rs), so the figures are its.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use custos::classify;
use custos::engine::{self, Outcome, Record, Scratch, Verdict};
use custos::policy::{self, keys::Keys, Action, FieldPath, Policy, Segment};
use custos::state::MemoryState;
use custos::transform;
use serde_json::{Map, Value};

#[path = "bench_event.rs"]
mod bench_event;
use bench_event::{avro_event, event, ORDER_SCHEMA};

const POLICY: &str = include_str!("../examples/shop/policy.yaml");
const NOW: i64 = 1_795_400_000_000;

fn compiled() -> (policy::plan::Compiled, Keys) {
    let p = policy::load(POLICY, "policy.yaml").unwrap();
    let keys = Keys::from_pairs([
        ("analytics", b"analytics-key".to_vec()),
        ("marketing", b"marketing-key".to_vec()),
    ]);
    (policy::plan::compile(Arc::new(p), &keys).unwrap(), keys)
}

fn state() -> MemoryState {
    let mut s = MemoryState::new(&["analytics", "marketing", "support"]);
    s.apply_consent(
        None,
        Some(br#"{"subject":"c-1","purposes":{"marketing":true}}"#),
    )
    .unwrap();
    s
}

/// The naive baseline: per event, per purpose, per leaf, resolve through the policy.
fn naive(policy: &Policy, keys: &Keys, value: &[u8], state: &MemoryState) -> Vec<Vec<u8>> {
    let v: Value = serde_json::from_slice(value).unwrap();
    let stream = &policy.streams[0];
    let subject = v
        .pointer("/customer/id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut outs = Vec::new();
    for (pname, _topic) in &stream.outputs {
        let purpose = policy.purposes.iter().find(|p| &p.name == pname).unwrap();
        if purpose.basis == policy::Basis::Consent
            && !matches!(
                custos::state::SubjectState::consent(
                    state,
                    subject,
                    policy.purpose_index(pname).unwrap()
                ),
                Some(true)
            )
        {
            continue;
        }
        let mut path = Vec::new();
        if let Some(out) = naive_walk(policy, keys, stream, purpose, &v, &mut path) {
            outs.push(serde_json::to_vec(&out).unwrap());
        }
    }
    outs
}

fn naive_classes<'a>(stream: &'a policy::Stream, path: &[String]) -> Option<&'a policy::FieldSpec> {
    // Longest policy path that is a prefix of this leaf's path.
    stream
        .fields
        .iter()
        .filter(|f| match &f.path {
            FieldPath::Value(segs) => {
                let names: Vec<String> = segs
                    .iter()
                    .map(|s| match s {
                        Segment::Field(n) => n.clone(),
                        Segment::Each => "[]".into(),
                    })
                    .collect();
                names.len() <= path.len() && names.iter().zip(path).all(|(a, b)| a == b)
            }
            _ => false,
        })
        .max_by_key(|f| match &f.path {
            FieldPath::Value(s) => s.len(),
            _ => 0,
        })
}

fn naive_walk(
    policy: &Policy,
    keys: &Keys,
    stream: &policy::Stream,
    purpose: &policy::Purpose,
    v: &Value,
    path: &mut Vec<String>,
) -> Option<Value> {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, c) in m {
                path.push(k.clone());
                if let Some(x) = naive_walk(policy, keys, stream, purpose, c, path) {
                    out.insert(k.clone(), x);
                }
                path.pop();
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(a) => {
            path.push("[]".into());
            let out: Vec<Value> = a
                .iter()
                .filter_map(|c| naive_walk(policy, keys, stream, purpose, c, path))
                .collect();
            path.pop();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        scalar => {
            let spec = naive_classes(stream, path)?;
            let mut action = Action::Keep;
            for c in &spec.classes {
                let a = policy
                    .rule_for(purpose, c)
                    .map(|(r, _)| r.action.clone())
                    .unwrap_or(Action::Drop);
                if a.kind() < action.kind() {
                    action = a;
                }
            }
            let op = policy::plan::lower(&action, |k| keys.get(k)).unwrap();
            if spec.scan {
                if let Value::String(s) = scalar {
                    let mut text = String::new();
                    let mut last = 0;
                    for span in classify::detect(s) {
                        text.push_str(&s[last..span.start]);
                        let a = policy
                            .rule_for(purpose, span.detector.class())
                            .map(|(r, _)| r.action.clone())
                            .unwrap_or(Action::Drop);
                        transform::apply_span(
                            &policy::plan::lower(&a, |k| keys.get(k)).unwrap(),
                            &s[span.start..span.end],
                            span.detector.class(),
                            &mut text,
                        );
                        last = span.end;
                    }
                    text.push_str(&s[last..]);
                    return transform::apply(&op, &Value::String(text)).map(|c| c.into_owned());
                }
            }
            transform::apply(&op, scalar).map(|c| c.into_owned())
        }
    }
}

/// The bench order as an input record at `NOW`.
fn rec(value: &[u8]) -> Record<'_> {
    Record {
        topic: "shop.orders",
        partition: 0,
        offset: 1,
        timestamp: Some(NOW),
        key: Some(b"c-1"),
        value,
        headers: &[],
    }
}

fn bench(c: &mut Criterion) {
    let (compiled, keys) = compiled();
    let plan = &compiled.streams[0];
    let value = event();
    let state = state();
    let policy_id = compiled.policy.id();
    let mut scratch = Scratch::default();
    // Sanity: both produce three outputs of the same size class.
    let Verdict::Governed(g) =
        engine::govern(plan, &policy_id, &rec(&value), &state, NOW, &mut scratch)
    else {
        panic!("bench event must govern")
    };
    assert_eq!(
        g.outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Emitted(_)))
            .count(),
        3
    );
    assert_eq!(naive(&compiled.policy, &keys, &value, &state).len(), 3);
    eprintln!("event: {} bytes", value.len());

    let mut group = c.benchmark_group("govern_3_purposes");
    group.throughput(Throughput::Elements(1));
    group.bench_function("custos", |b| {
        b.iter(|| {
            let rec = rec(black_box(&value));
            black_box(engine::govern(
                plan,
                &policy_id,
                &rec,
                &state,
                NOW,
                &mut scratch,
            ))
        })
    });
    group.bench_function("naive", |b| {
        b.iter(|| black_box(naive(&compiled.policy, &keys, black_box(&value), &state)))
    });
    group.finish();

    // The same order as Avro (Confluent wire format), governed by the same
    // stream definition, each output encoded with its derived schema: what
    // the worker does per Avro record.
    let mut avro_policy = compiled.policy.as_ref().clone();
    avro_policy.streams[0].format = policy::Format::Avro;
    let avro_compiled = policy::plan::compile(Arc::new(avro_policy), &keys).unwrap();
    let schema = custos::avro::Schema::parse(ORDER_SCHEMA).unwrap();
    let sp = custos::avro::compile_for_schema(&avro_compiled, 0, schema).unwrap();
    let avro_value = avro_event(&sp.writer);
    let mut avro_scratch = Scratch::default();
    let mut json_buf = Vec::new();
    let mut out_tape = custos::codec::Tape::default();
    let mut govern_avro = |value: &[u8], json_buf: &mut Vec<u8>, scratch: &mut Scratch| -> usize {
        let (_, body) = custos::avro::split_wire(value).unwrap();
        custos::avro::value::decode_limited(
            &sp.writer.root,
            body,
            json_buf,
            scratch.decoded_tape(),
            engine::DEFAULT_MAX_RECORD_BYTES,
        )
        .unwrap();
        let Verdict::Governed(g) = engine::govern_with_limits(
            &sp.plan,
            &policy_id,
            &rec(json_buf),
            &state,
            NOW,
            scratch,
            engine::Limits::default(),
        ) else {
            panic!("the Avro order must govern")
        };
        let mut n = 0;
        for o in g.outcomes {
            if let Outcome::Emitted(out) = o {
                let mut bytes = Vec::with_capacity(out.value.len());
                custos::avro::wire_header(7, &mut bytes);
                let ty = &sp.derived[out.output].ty;
                // As the worker does: the tape the walk made of the output.
                match scratch
                    .output_tape(out.output)
                    .filter(|t| t.spans(&out.value))
                {
                    Some(made) => {
                        custos::avro::value::encode_tape(ty, &out.value, made, &mut bytes)
                    }
                    None => {
                        custos::avro::value::encode_json(ty, &out.value, &mut out_tape, &mut bytes)
                    }
                }
                .unwrap();
                n += black_box(bytes).len();
            }
        }
        n
    };
    eprintln!(
        "avro event: {} bytes; outputs {} bytes",
        avro_value.len(),
        govern_avro(&avro_value, &mut json_buf, &mut avro_scratch)
    );
    let mut group = c.benchmark_group("format_3_purposes");
    group.throughput(Throughput::Elements(1));
    group.bench_function("json", |b| {
        b.iter(|| {
            let rec = rec(black_box(&value));
            black_box(engine::govern(
                plan,
                &policy_id,
                &rec,
                &state,
                NOW,
                &mut scratch,
            ))
        })
    });
    group.bench_function("avro", |b| {
        b.iter(|| {
            black_box(govern_avro(
                black_box(&avro_value),
                &mut json_buf,
                &mut avro_scratch,
            ))
        })
    });
    group.finish();

    // `encrypt`: the support purpose's contact data and name encrypted under
    // the subject's data key (held in memory, as in a running worker after
    // its first event of the subject) instead of kept; next to the same
    // policy with those classes pseudonymized.
    let variant = |action: &str| {
        let text = POLICY.replacen("keys:\n", "keys:\n  kek: { env: CUSTOS_KEK }\n", 1).replace(
            "      - classes: [pii, behavioral, public, internal]\n        action: keep\n",
            &format!("      - classes: [pii, behavioral, public, internal]\n        action: keep\n      - classes: [pii.contact, pii.name]\n        action: {action}\n"),
        );
        let p = policy::load(&text, "policy.yaml").unwrap();
        let keys = Keys::from_pairs([
            ("analytics", b"analytics-key".to_vec()),
            ("marketing", b"marketing-key".to_vec()),
            ("kek", b"bench-kek-0123456789abcdef-012345".to_vec()),
        ]);
        policy::plan::compile(Arc::new(p), &keys).unwrap()
    };
    let encrypting = variant("{ encrypt: { key: kek } }");
    let pseudonymizing = variant("{ pseudonymize: { key: kek } }");
    assert!(encrypting.encrypts());
    let local = custos::crypto::LocalKeys::new(
        custos::crypto::KeyRing::new(encrypting.keks(), &custos::audit::AuditKey::new(b"a")),
        "t".into(),
    );
    let with_keys = custos::state::WithKeys {
        state: &state,
        keys: &local,
    };
    let (ep, pp) = (&encrypting.streams[0], &pseudonymizing.streams[0]);
    let mut group = c.benchmark_group("support_contact_3_purposes");
    group.throughput(Throughput::Elements(1));
    group.bench_function("pseudonymize", |b| {
        b.iter(|| {
            let rec = rec(black_box(&value));
            black_box(engine::govern(
                pp,
                &policy_id,
                &rec,
                &with_keys,
                NOW,
                &mut scratch,
            ))
        })
    });
    group.bench_function("encrypt", |b| {
        b.iter(|| {
            let rec = rec(black_box(&value));
            black_box(engine::govern(
                ep,
                &policy_id,
                &rec,
                &with_keys,
                NOW,
                &mut scratch,
            ))
        })
    });
    group.finish();

    // Floors: decoding alone, and a plain pass-through that parses and re-serializes.
    let mut tape = custos::codec::Tape::default();
    c.bench_function("decode_only", |b| {
        b.iter(|| black_box(tape.parse(black_box(&value))))
    });
    c.bench_function("serde_json_roundtrip", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_slice(black_box(&value)).unwrap();
            black_box(serde_json::to_vec(&v).unwrap())
        })
    });

    let notes = "Please call +44 20 7946 0958 before delivery, or write to ada.lovelace@example.com; leave the parcel with the neighbour.";
    c.bench_function("detect_notes", |b| {
        b.iter(|| black_box(classify::detect(black_box(notes))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
