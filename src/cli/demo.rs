//! `custos demo`: the whole flow on an embedded broker, with nothing
//! installed. Loads the shop example (orders for several subjects, consent
//! and erasure records, two bad records), runs the real worker on it and
//! prints what each purpose received, the dead letters, the audit trail (its
//! chains verified) and the counts.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};

use super::run::init_tracing;
use super::Failure;
use crate::audit::{AuditKey, Verifier};
use crate::avro::{self, registry::Registry, standin::StandIn};
use crate::config::{Config, LogFormat};
use crate::kafka::embedded::Embedded;
use crate::kafka::worker::{topic_specs, Control, Options, Worker};
use crate::policy::{self, keys::Keys, plan};
use crate::telemetry::{total, Metrics};

const POLICY: &str = include_str!("../../examples/shop/policy.yaml");
const ORDER_SCHEMA: &str = include_str!("../../schemas/avro/shop-order.avsc");
const DAY: i64 = 86_400_000;

fn fail(what: &str) -> impl Fn(crate::kafka::WorkerError) -> Failure + '_ {
    move |e| Failure::new(format!("demo: {what}: {e}"))
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The demo's input: (key, value bytes).
fn orders(now: i64) -> Vec<(Option<String>, Vec<u8>)> {
    let order = |id: &str, days_ago: i64, subject: &str, name: &str, email: &str, extra: Value| {
        let mut v = json!({
            "order_id": id,
            "created_at": rfc3339(now - days_ago * DAY),
            "customer": {"id": subject, "email": email, "name": name, "birth_date": "1985-12-10",
                "address": {"street": "12 Analytical Way", "city": "London", "postal_code": "NW1 6XE"},
                "geo": {"lat": 51.52343, "lon": -0.15871}},
            "payment": {"card_number": "4111 1111 1111 1111", "amount": 129.90},
            "items": [{"sku": "BK-101", "qty": 2, "price": 19.95}],
            "coupon": "WELCOME10"
        });
        if let (Value::Object(m), Value::Object(x)) = (&mut v, extra) {
            m.extend(x);
        }
        (
            Some(subject.to_string()),
            serde_json::to_vec(&v).unwrap_or_default(),
        )
    };
    vec![
        order(
            "o-1001",
            1,
            "c-1",
            "Ada Lovelace",
            "ada@example.com",
            json!({"notes": "Call +44 20 7946 0958 or write to ada@example.com before delivery"}),
        ),
        order(
            "o-1002",
            1,
            "c-2",
            "Grace Hopper",
            "grace@example.org",
            json!({"notes": "leave at door"}),
        ),
        order(
            "o-1003",
            2,
            "c-3",
            "Alan Turing",
            "alan@example.net",
            json!({"notes": "customer ip 81.2.69.160"}),
        ),
        order(
            "o-0999",
            120,
            "c-1",
            "Ada Lovelace",
            "ada@example.com",
            json!({}),
        ),
        order(
            "o-1004",
            1,
            "c-4",
            "Linus T",
            "linus@example.com",
            json!({}),
        ),
        order(
            "o-1005",
            3,
            "c-5",
            "Barbara Liskov",
            "barbara@example.com",
            json!({"customer": {"id": "c-5", "health_notes": "asthma"}}),
        ),
        (
            Some("c-6".into()),
            br#"{"order_id": "o-broken", "created_at": "#.to_vec(),
        ),
        (None, b"[1,2,3]".to_vec()),
    ]
}

/// The demo's Avro input (Confluent wire format, schema id `id`): three
/// orders, and one record a JSON producer wrote to the Avro topic by mistake.
fn avro_orders(now: i64, id: u32, schema: &avro::Schema) -> Vec<(Option<String>, Vec<u8>)> {
    let order = |oid: &str,
                 days_ago: i64,
                 subject: &str,
                 name: &str,
                 email: &str,
                 notes: Option<&str>| {
        let v = json!({
            "order_id": oid,
            "created_at": now - days_ago * DAY,
            "channel": "web",
            "customer": {"id": subject, "email": email, "name": name, "birth_date": "1985-12-10", "health_notes": null},
            "payment": {"card_number": "4111 1111 1111 1111", "amount": 129.90, "currency": "EUR"},
            "items": [{"sku": "BK-101", "qty": 2}],
            "attributes": {"gift_wrap": "yes"},
            "notes": notes,
        });
        let mut out = Vec::new();
        avro::wire_header(id, &mut out);
        // The example values fit the example schema.
        let _ = avro::value::encode(&schema.root, &v, &mut out);
        (Some(subject.to_string()), out)
    };
    vec![
        order(
            "o-2001",
            1,
            "c-1",
            "Ada Lovelace",
            "ada@example.com",
            Some("Call +44 20 7946 0958 before delivery"),
        ),
        order(
            "o-2002",
            1,
            "c-2",
            "Grace Hopper",
            "grace@example.org",
            None,
        ),
        order("o-2003", 1, "c-4", "Linus T", "linus@example.com", None),
        (Some("c-3".into()), br#"{"order_id":"o-2004"}"#.to_vec()),
    ]
}

/// (key, value) records of one topic.
type Keyed = Vec<(String, Vec<u8>)>;

/// A record read back with its value as bytes.
type RawBack = (Option<String>, Vec<u8>, Vec<(String, String)>);

/// A record read back: key, value, headers.
type ReadBack = (Option<String>, String, Vec<(String, String)>);

fn subject_records() -> (Keyed, Keyed) {
    let consent = vec![
        ("c-1".to_string(), br#"{"subject":"c-1","purposes":{"marketing":true,"analytics":true},"updated_at":"2026-11-01T10:00:00Z"}"#.to_vec()),
        ("c-2".to_string(), br#"{"subject":"c-2","purposes":{"marketing":false,"analytics":false},"updated_at":"2026-11-02T10:00:00Z"}"#.to_vec()),
        ("c-3".to_string(), br#"{"subject":"c-3","purposes":{"marketing":true},"updated_at":"2026-11-03T10:00:00Z"}"#.to_vec()),
    ];
    let erasure = vec![(
        "c-4".to_string(),
        br#"{"subject":"c-4","requested_at":"2026-11-10T12:00:00Z"}"#.to_vec(),
    )];
    (consent, erasure)
}

/// Every record of a topic from the beginning to its end.
fn read_all(bootstrap: &str, topic: &str) -> Vec<ReadBack> {
    read_raw(bootstrap, topic)
        .into_iter()
        .map(|(k, v, h)| (k, String::from_utf8_lossy(&v).into_owned(), h))
        .collect()
}

/// [`read_all`] with the values as bytes.
fn read_raw(bootstrap: &str, topic: &str) -> Vec<RawBack> {
    let Ok(c) = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "custos-demo-reader")
        .set("enable.auto.commit", "false")
        .create::<BaseConsumer>()
    else {
        return Vec::new();
    };
    let Ok(md) = c.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return Vec::new();
    };
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    for t in md.topics() {
        for p in t.partitions() {
            let _ = tpl.add_partition_offset(topic, p.id(), Offset::Beginning);
            if let Ok((lo, hi)) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(5)) {
                remaining += hi - lo;
            }
        }
    }
    if c.assign(&tpl).is_err() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while remaining > 0 && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            remaining -= 1;
            let headers = m
                .headers()
                .map(|h| {
                    use rdkafka::message::Headers;
                    h.iter()
                        .map(|x| {
                            (
                                x.key.to_string(),
                                String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                m.payload().unwrap_or_default().to_vec(),
                headers,
            ));
        }
    }
    out
}

/// A wire-format value as JSON, decoded with the schema its id names.
fn avro_text(client: &Registry, v: &[u8]) -> String {
    let Ok((id, body)) = avro::split_wire(v) else {
        return "(not wire format)".into();
    };
    let Ok(schema) = client
        .schema_by_id(id)
        .map_err(|e| e.to_string())
        .and_then(|t| avro::Schema::parse(&t))
    else {
        return format!("(schema id {id} unreadable)");
    };
    let mut out = Vec::new();
    match avro::value::decode(&schema.root, body, &mut out) {
        Ok(()) => format!("(schema id {id}) {}", String::from_utf8_lossy(&out)),
        Err(e) => format!("(does not decode: {e})"),
    }
}

/// Runs `custos demo`.
///
/// # Errors
/// The embedded broker or the worker failed.
pub fn run() -> Result<(), Failure> {
    init_tracing(LogFormat::Text, "error");
    let started = Instant::now();
    let policy = policy::load(POLICY, "examples/shop/policy.yaml")
        .map_err(|e| Failure::new(e.to_string()))?;
    // Demo secrets unless the real ones are set.
    let keys = Keys::resolve(&policy, |v| {
        std::env::var(v)
            .ok()
            .or_else(|| Some(format!("demo-only-secret-{v}")))
    })
    .map_err(|_| Failure::new("demo: secrets"))?;
    let compiled =
        Arc::new(plan::compile(Arc::new(policy), &keys).map_err(|e| Failure::new(e.to_string()))?);
    // The Avro stream's registry: the in-memory stand-in.
    let registry = StandIn::start("127.0.0.1:0")
        .map_err(|e| Failure::new(format!("demo: schema registry stand-in: {e}")))?;
    let cfg = Config::parse(
        &format!("policy = \"examples/shop/policy.yaml\"\n[kafka]\nbootstrap_servers = \"embedded\"\ngroup_id = \"custos-demo\"\n[delivery]\ndrain_timeout_ms = 5000\n[schema_registry]\nurl = \"{}\"\n", registry.url()),
        "demo",
        Default::default(),
    )
    .map_err(|e| Failure::new(e.to_string()))?;

    let broker = Embedded::start(1).map_err(fail("embedded broker"))?;
    let bootstrap = broker.bootstrap_servers();
    let input_topic = compiled.streams[0].topic.clone();
    let avro_topic = compiled.streams[1].topic.clone();
    for t in [&input_topic, &avro_topic] {
        broker.create_topic(t, 3).map_err(fail("topics"))?;
    }
    // The privacy team's topics: custos reads them, never creates them.
    for t in [
        &compiled.policy.consent_topic,
        &compiled.policy.erasure_topic,
    ]
    .into_iter()
    .flatten()
    {
        broker.create_topic(t, 1).map_err(fail("topics"))?;
    }
    for spec in topic_specs(&compiled, &cfg, |_| 3) {
        broker
            .create_topic(&spec.name, spec.partitions)
            .map_err(fail("topics"))?;
    }

    let now = crate::kafka::now_ms();
    let inputs = orders(now);
    let order_schema =
        avro::Schema::parse(ORDER_SCHEMA).map_err(|e| Failure::new(format!("demo: {e}")))?;
    let schema_id = registry
        .register(&format!("{avro_topic}-value"), ORDER_SCHEMA)
        .map_err(|e| Failure::new(format!("demo: {e}")))?;
    let avro_inputs = avro_orders(now, schema_id, &order_schema);
    let (consent, erasure) = subject_records();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .map_err(|e| Failure::new(format!("demo: producer: {e}")))?;
    let consent_topic = compiled.policy.consent_topic.clone().unwrap_or_default();
    let erasure_topic = compiled.policy.erasure_topic.clone().unwrap_or_default();
    for (topic, recs) in [(&consent_topic, &consent), (&erasure_topic, &erasure)] {
        for (k, v) in recs.iter() {
            let _ = producer.send(
                BaseRecord::<str, [u8]>::to(topic)
                    .key(k.as_str())
                    .payload(&v[..]),
            );
        }
    }
    for (topic, (k, v)) in inputs
        .iter()
        .map(|r| (&input_topic, r))
        .chain(avro_inputs.iter().map(|r| (&avro_topic, r)))
    {
        let mut r = BaseRecord::<str, [u8]>::to(topic)
            .payload(&v[..])
            .timestamp(now);
        if let Some(k) = k {
            r = r.key(k.as_str());
        }
        let _ = producer.send(r);
    }
    producer
        .flush(Duration::from_secs(10))
        .map_err(|e| Failure::new(format!("demo: produce: {e}")))?;

    let audit_key_bytes = std::env::var("CUSTOS_AUDIT_KEY")
        .unwrap_or_else(|_| "demo-only-audit-key".into())
        .into_bytes();
    let metrics = Metrics::new();
    let control = Control::default();
    let worker = Worker {
        config: cfg,
        bootstrap: bootstrap.clone(),
        compiled: compiled.clone(),
        metrics: metrics.clone(),
        options: Options {
            skip_topic_management: true,
            ..Options::default()
        },
        control: control.clone(),
        audit_key: AuditKey::new(&audit_key_bytes),
    };
    let handle = std::thread::spawn(move || worker.run());
    let deadline = Instant::now() + Duration::from_secs(45);
    while total(&metrics.consumed, |_| true) < (inputs.len() + avro_inputs.len()) as u64
        && Instant::now() < deadline
        && !handle.is_finished()
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    control.stop.store(true, Ordering::SeqCst);
    match handle.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(Failure::new(format!("demo: worker: {e}"))),
        Err(_) => return Err(Failure::new("demo: the worker thread panicked")),
    }

    println!(
        "custos demo — policy {} on an embedded broker ({bootstrap})\n",
        compiled.policy.id()
    );
    println!("INPUT {input_topic}: {} records (consent: c-1 analytics+marketing, c-2 objects/withdraws, c-3 marketing; erasure: c-4)", inputs.len());
    if let Some((_, v)) = inputs.first() {
        println!("  e.g. {}\n", String::from_utf8_lossy(v));
    }
    for o in &compiled.streams[0].outputs {
        let recs = read_all(&bootstrap, &o.topic);
        println!(
            "PURPOSE {} ({}, retention {} d) → {}: {} records",
            o.name,
            o.basis.name(),
            o.retention_ms / DAY,
            o.topic,
            recs.len()
        );
        for (k, v, h) in &recs {
            let classes = h
                .iter()
                .find(|(n, _)| n == "custos-classes")
                .map(|(_, c)| c.as_str())
                .unwrap_or("");
            println!("  key={} {v}", k.as_deref().unwrap_or("null"));
            println!("    custos-classes: {classes}");
        }
        println!();
    }
    println!(
        "INPUT {avro_topic} (Avro, Confluent wire format, schema id {schema_id} = schemas/avro/shop-order.avsc): {} records; classes also from the schema's `classes` and `confluent:tags`",
        avro_inputs.len()
    );
    let client = Registry::plain(&registry.url());
    for o in &compiled.streams[1].outputs {
        let recs = read_raw(&bootstrap, &o.topic);
        println!(
            "PURPOSE {} → {} (derived schema registered as {}-value): {} records",
            o.name,
            o.topic,
            o.topic,
            recs.len()
        );
        for (k, v, _) in &recs {
            println!(
                "  key={} {}",
                k.as_deref().unwrap_or("null"),
                avro_text(&client, v)
            );
        }
        println!();
    }
    let dl = read_all(&bootstrap, "custos.dead-letter");
    println!("DEAD LETTERS custos.dead-letter: {} records", dl.len());
    for (_, _, h) in &dl {
        let get = |n: &str| {
            h.iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        println!("  {} ({})", get("custos-source"), get("custos-error"));
    }
    let trail = read_all(&bootstrap, "custos.audit");
    println!(
        "\nAUDIT custos.audit: {} records (subjects as HMAC-SHA256 with the audit key; no personal data)",
        trail.len()
    );
    let mut verifier = Verifier::new(AuditKey::new(&audit_key_bytes));
    let mut rows: Vec<(String, i64, String)> = Vec::new();
    for (_, v, _) in &trail {
        verifier.check("demo", v.as_bytes());
        let r: Value = serde_json::from_str(v).unwrap_or_default();
        let outcomes: Vec<String> = r["outcomes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|o| match o["reason"].as_str() {
                        Some(why) => {
                            format!("{}=suppressed({why})", o["purpose"].as_str().unwrap_or("?"))
                        }
                        None => format!("{}=emitted", o["purpose"].as_str().unwrap_or("?")),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let what = if r["type"] == "dead_letter" {
            format!("dead letter ({})", r["reason"].as_str().unwrap_or("?"))
        } else {
            format!(
                "subject {}… {}",
                r["subject"]
                    .as_str()
                    .map_or("none", |s| &s[..s.len().min(12)]),
                outcomes.join(" ")
            )
        };
        rows.push((
            format!(
                "{}/{}",
                r["source"]["topic"].as_str().unwrap_or("?"),
                r["source"]["partition"]
            ),
            r["source"]["offset"].as_i64().unwrap_or(-1),
            what,
        ));
    }
    rows.sort();
    for (chain, offset, what) in &rows {
        println!("  {chain}/{offset}: {what}");
    }
    let reports = verifier.finish();
    let breaks: usize = reports.iter().map(|r| r.breaks.len()).sum();
    println!(
        "  hash chains: {} input partitions, {} breaks (`custos audit verify` checks a real audit topic)",
        reports.len(),
        breaks
    );
    println!("\nCOUNTS");
    println!(
        "  custos_records_consumed_total        {}",
        total(&metrics.consumed, |_| true)
    );
    for o in &compiled.streams[0].outputs {
        let name = o.name.as_str();
        let by = |r: &str| {
            total(&metrics.suppressed, |l| {
                l.contains(&("stream", "orders"))
                    && l.contains(&("purpose", name))
                    && l.contains(&("reason", r))
            })
        };
        println!(
            "  {name:<10} emitted {}  suppressed: consent {} objection {} erasure {} expired {}",
            total(&metrics.emitted, |l| {
                l.contains(&("stream", "orders")) && l.contains(&("purpose", name))
            }),
            by("consent"),
            by("objection"),
            by("erasure"),
            by("expired"),
        );
    }
    println!(
        "  custos_records_dead_lettered_total   {}",
        total(&metrics.dead_lettered, |_| true)
    );
    println!(
        "  custos_detections_total              {}",
        total(&metrics.detections, |_| true)
    );
    println!(
        "  custos_unclassified_fields_total     {}",
        total(&metrics.unclassified, |_| true)
    );
    println!(
        "  custos_audit_records_total           {}",
        total(&metrics.audit_records, |_| true)
    );
    println!("\ndone in {:.1} s", started.elapsed().as_secs_f64());
    drop(broker);
    Ok(())
}
