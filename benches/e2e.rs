//! End-to-end throughput: custos governing the core bench's order event for
//! 3 purposes vs. a plain consume→produce pass-through with the same client
//! settings, on the same broker, in the same run.
//!
//! Run: `cargo bench --bench e2e` (embedded mock broker), or with
//! `CUSTOS_BENCH_BOOTSTRAP=host:port` against a real broker.
//! `CUSTOS_BENCH_EVENTS` (default 40000) and `CUSTOS_BENCH_PARTITIONS`
//! (default 8) size the run; a second custos run on 32 partitions reports RSS.
//! `CUSTOS_BENCH_ONLY=alo` (or `eos`, or `fan`) runs only custos
//! at_least_once (or exactly_once, or the fan-out pass-through), for
//! profiling, or to time each mode on a fresh broker;
//! `CUSTOS_BENCH_BROKER_PID` (the broker's process id, when it runs on this
//! machine) adds the broker's CPU time per input to each line;
//! `CUSTOS_BENCH_PROPS="k=v,k=v"` adds librdkafka settings to both sides;
//! `CUSTOS_BENCH_TXN_MS` sets `transaction_interval_ms` and, for the run
//! with audit summaries, `audit.summary_interval_ms` (default 100).

/// The shipped binary's allocator (src/main.rs), so the figures are its.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use custos::config::Config;
use custos::kafka::embedded::Embedded;
use custos::kafka::topics::{self, TopicSpec};
use custos::kafka::worker::{Control, Options, Worker};
use custos::policy::{self, keys::Keys};
use custos::telemetry::{total, Metrics};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientConfig, ClientContext};

const POLICY: &str = include_str!("../examples/shop/policy.yaml");

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Extra librdkafka settings for the pass-through and custos alike.
fn props() -> Vec<(String, String)> {
    std::env::var("CUSTOS_BENCH_PROPS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn event(i: u64, now: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "order_id": format!("o-{i}"), "created_at": now, "channel": "web",
        "customer": {"id": format!("c-{}", i % 1000), "email": "ada.lovelace@example.com", "name": "Ada Lovelace",
            "birth_date": "1985-12-10",
            "address": {"street": "12 Analytical Engine Way", "city": "London", "postal_code": "NW1 6XE", "country": "GB"},
            "geo": {"lat": 51.523431, "lon": -0.158712}, "health_notes": "allergic to penicillin", "segment": "gold"},
        "payment": {"card_number": "4111 1111 1111 1111", "amount": 129.90, "currency": "GBP", "method": "card"},
        "items": [{"sku": "BK-101", "qty": 2, "price": 19.95, "title": "Notes on the Analytical Engine"},
                  {"sku": "PEN-7", "qty": 1, "price": 89.99, "title": "Fountain pen"},
                  {"sku": "INK-3", "qty": 3, "price": 4.50, "title": "Ink cartridges"}],
        "notes": "Please call +44 20 7946 0958 before delivery, or write to ada.lovelace@example.com; leave the parcel with the neighbour at number 14 if nobody answers the door.",
        "shipping": {"method": "express", "eta_days": 2}
    }))
    .unwrap()
}

struct Broker {
    _mock: Option<Embedded>,
    bootstrap: String,
    name: String,
}

impl Broker {
    fn new() -> Broker {
        match std::env::var("CUSTOS_BENCH_BOOTSTRAP") {
            Ok(b) if !b.is_empty() => Broker {
                _mock: None,
                name: format!("external broker at {b}"),
                bootstrap: b,
            },
            _ => {
                let m = Embedded::start(1).unwrap();
                let b = m.bootstrap_servers();
                Broker {
                    _mock: Some(m),
                    bootstrap: b,
                    name: "embedded librdkafka mock cluster (in-process)".into(),
                }
            }
        }
    }

    fn topic(&self, name: &str, partitions: i32) {
        match &self._mock {
            Some(m) => {
                let _ = m.create_topic(name, partitions); // already there on a second run
            }
            None => topics::ensure(
                ClientConfig::new().set("bootstrap.servers", &self.bootstrap),
                &[TopicSpec {
                    name: name.into(),
                    retention: None,
                    compacted: false,
                    partitions,
                    optional: false,
                    no_compaction: false,
                }],
                true,
                Duration::from_secs(30),
            )
            .unwrap(),
        }
    }
}

fn fill(b: &Broker, topic: &str, n: u64) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &b.bootstrap)
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for i in 0..n {
        let v = event(i, &now);
        let key = format!("c-{}", i % 1000);
        let mut r = BaseRecord::<str, [u8]>::to(topic).key(&key).payload(&v[..]);
        loop {
            match p.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    p.poll(Duration::from_millis(5));
                }
            }
        }
    }
    p.flush(Duration::from_secs(120)).unwrap();
}

struct Acks(Arc<AtomicU64>);
impl ClientContext for Acks {}
impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if r.is_ok() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Consume → produce unchanged to every topic of `outputs` (one for the
/// plain pass-through; as many as custos writes per input for the fan-out
/// one), same client settings as the worker; returns seconds until every
/// copy is acknowledged.
fn pass_through(b: &Broker, input: &str, outputs: &[&str], n: u64) -> Timed {
    let acks = Arc::new(AtomicU64::new(0));
    let mut pc = ClientConfig::new();
    pc.set("bootstrap.servers", &b.bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5");
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &b.bootstrap)
        .set("group.id", format!("bench-pt-{input}"))
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    for (k, v) in props() {
        pc.set(&k, &v);
        cc.set(&k, &v);
    }
    let producer: ThreadedProducer<Acks> = pc.create_with_context(Acks(acks.clone())).unwrap();
    let consumer: BaseConsumer = cc.create().unwrap();
    consumer.subscribe(&[input]).unwrap();
    // Timed from the first record (the group join before it is not throughput).
    let mut start = Instant::now();
    let mut cpu = Cpu::now();
    let mut consumed = 0;
    while consumed < n {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            if consumed == 0 {
                start = Instant::now();
                cpu = Cpu::now();
            }
            consumed += 1;
            for output in outputs {
                let mut r =
                    BaseRecord::<[u8], [u8]>::to(output).payload(m.payload().unwrap_or_default());
                if let Some(k) = m.key() {
                    r = r.key(k);
                }
                let mut r = r;
                loop {
                    match producer.send(r) {
                        Ok(()) => break,
                        Err((_, back)) => {
                            r = back;
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
            }
            let _ = consumer.store_offset(m.topic(), m.partition(), m.offset());
        }
    }
    while acks.load(Ordering::Relaxed) < n * outputs.len() as u64 {
        producer.poll(Duration::from_millis(1));
    }
    Timed::since(start, cpu)
}

/// The custos worker on the same input; returns seconds until every output is acknowledged.
fn custos_run(
    b: &Broker,
    partitions: i32,
    n: u64,
    tag: &str,
    guarantee: &str,
    level: &str,
) -> Result<Timed, String> {
    let text = POLICY.replace("shop.orders", &format!("{tag}.orders"));
    let mut p = policy::load(&text, "policy.yaml").unwrap();
    // The JSON orders only (the example's Avro stream needs a registry).
    p.streams.retain(|s| s.format == policy::Format::Json);
    let keys = Keys::from_pairs([("analytics", b"a".to_vec()), ("marketing", b"m".to_vec())]);
    let compiled = Arc::new(policy::plan::compile(Arc::new(p), &keys).unwrap());
    let plan = &compiled.streams[0];
    b.topic(&plan.topic, partitions);
    let outputs: Vec<String> = plan
        .outputs
        .iter()
        .map(|o| o.topic.clone())
        .chain([
            format!("{tag}.dl"),
            format!("{tag}.audit"),
            format!("{tag}.lineage"),
        ])
        .collect();
    for t in &outputs {
        b.topic(t, partitions);
    }
    for t in ["privacy.consent", "privacy.erasure"] {
        b.topic(t, 1);
    }
    fill(b, &plan.topic, n);
    // Everyone consents to marketing: the worst case, 3 outputs per event.
    let cp: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &b.bootstrap)
        .create()
        .unwrap();
    for i in 0..1000 {
        let k = format!("c-{i}");
        let v = format!(r#"{{"subject":"{k}","purposes":{{"marketing":true}}}}"#);
        let _ = cp.send(
            BaseRecord::<str, str>::to("privacy.consent")
                .key(&k)
                .payload(&v),
        );
        cp.poll(Duration::ZERO);
    }
    cp.flush(Duration::from_secs(30)).unwrap();

    let cfg = Config::parse(
        &format!("policy = \"x\"\n[kafka]\ngroup_id = \"bench-{tag}\"\nmanage_topics = false\n[kafka.properties]\n{}\n[delivery]\nguarantee = \"{guarantee}\"\ntransaction_interval_ms = {}\n[dead_letter]\ntopic = \"{tag}.dl\"\n[audit]\ntopic = \"{tag}.audit\"\nlevel = \"{level}\"\nsummary_interval_ms = {}\n[lineage]\ntopic = \"{tag}.lineage\"\n",
            props().iter().map(|(k, v)| format!("\"{k}\" = \"{v}\"\n")).collect::<String>(),
            env_num("CUSTOS_BENCH_TXN_MS", 100),
            env_num("CUSTOS_BENCH_TXN_MS", 100)),
        "bench",
        Default::default(),
    )
    .unwrap();
    let metrics = Metrics::new();
    let control = Control::default();
    let worker = Worker {
        config: cfg,
        bootstrap: b.bootstrap.clone(),
        compiled: compiled.clone(),
        metrics: metrics.clone(),
        options: Options {
            skip_topic_management: true,
            // exactly_once needs a stable instance id (its transactional.id).
            instance_id: Some(format!("bench-{tag}")),
            ..Options::default()
        },
        control: control.clone(),
        audit_key: custos::audit::AuditKey::new(b"bench-audit-key"),
    };
    let handle = std::thread::spawn(move || worker.run());
    while !control.health.problems(custos::kafka::now_ms()).is_empty() {
        if handle.is_finished() {
            return Err(format!("{:?}", handle.join().unwrap().err()));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // Timed from the first record consumed (the group join before it is not
    // throughput) until every input is finished: all its outputs acknowledged
    // (at_least_once) or committed (exactly_once), like the pass-through's acks.
    let deadline = Instant::now() + Duration::from_secs(60);
    while total(&metrics.consumed, |_| true) == 0 {
        if handle.is_finished() || Instant::now() > deadline {
            control.stop.store(true, Ordering::SeqCst);
            return Err(format!("{:?}", handle.join().unwrap().err()));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let start = Instant::now();
    let cpu = Cpu::now();
    while control.finished.load(Ordering::Relaxed) < n {
        if handle.is_finished() || Instant::now() > deadline {
            let (c, f) = (
                total(&metrics.consumed, |_| true),
                control.finished.load(Ordering::Relaxed),
            );
            control.stop.store(true, Ordering::SeqCst);
            let e = handle.join().unwrap().err();
            let probe: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &b.bootstrap)
                .create()
                .unwrap();
            let hw: Vec<i64> = (0..partitions)
                .map(|p| {
                    probe
                        .fetch_watermarks(&plan.topic, p, Duration::from_secs(5))
                        .map_or(-1, |w| w.1)
                })
                .collect();
            return Err(format!(
                "{e:?} after {c} consumed, {f} finished; input high watermarks {hw:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let timed = Timed::since(start, cpu);
    control.stop.store(true, Ordering::SeqCst);
    handle.join().unwrap().map_err(|e| e.to_string())?;
    Ok(timed)
}

/// CPU seconds (user + system) process `pid` has used so far, from
/// `/proc/<pid>/stat` (clock ticks of 10 ms).
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU used from `start()` to `end()`: this process's (client or worker,
/// with librdkafka's threads) and the broker's when `CUSTOS_BENCH_BROKER_PID`
/// names it.
#[derive(Clone, Copy)]
struct Cpu {
    own: f64,
    broker: Option<f64>,
}

impl Cpu {
    fn now() -> Cpu {
        Cpu {
            own: cpu_secs("self").unwrap_or(0.0),
            broker: std::env::var("CUSTOS_BENCH_BROKER_PID")
                .ok()
                .and_then(|p| cpu_secs(&p)),
        }
    }
}

/// A timed run: seconds until every input was finished, CPU used meanwhile.
struct Timed {
    secs: f64,
    cpu: Cpu,
}

impl Timed {
    fn since(start: Instant, cpu: Cpu) -> Timed {
        let now = Cpu::now();
        Timed {
            secs: start.elapsed().as_secs_f64(),
            cpu: Cpu {
                own: now.own - cpu.own,
                broker: now.broker.zip(cpu.broker).map(|(a, b)| a - b),
            },
        }
    }

    /// `s  events/s  CPU per input` for `n` inputs.
    fn line(&self, n: u64) -> String {
        let per = |s: f64| 1e6 * s / n as f64;
        format!(
            "{:>7.2} s  {:>8.0} events/s  cpu {:>5.1} µs/input{}",
            self.secs,
            n as f64 / self.secs,
            per(self.cpu.own),
            self.cpu
                .broker
                .map(|b| format!(" (broker {:.1})", per(b)))
                .unwrap_or_default()
        )
    }
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: only run when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if let Ok(level) = std::env::var("CUSTOS_BENCH_LOG") {
        custos::cli::run::init_tracing(custos::config::LogFormat::Text, &level);
    }
    let n = env_num("CUSTOS_BENCH_EVENTS", 40_000);
    let partitions = env_num("CUSTOS_BENCH_PARTITIONS", 8) as i32;
    let b = Broker::new();
    println!(
        "broker: {}; {n} events of {} bytes; {partitions} input partitions",
        b.name,
        event(0, "2026-11-23T00:00:00Z").len()
    );

    let only = std::env::var("CUSTOS_BENCH_ONLY").unwrap_or_default();
    // The fair limit: as many records written per input as custos writes
    // (3 purposes + 1 audit record), same client settings.
    let fan_out = || {
        b.topic("fan.in", partitions);
        let fan_outs = ["fan.out.1", "fan.out.2", "fan.out.3", "fan.out.4"];
        for t in fan_outs {
            b.topic(t, partitions);
        }
        fill(&b, "fan.in", n);
        let fan = pass_through(&b, "fan.in", &fan_outs, n);
        println!("fan-out pass-through (4 out):    {}", fan.line(n));
        fan
    };
    if let Some(guarantee) = match only.as_str() {
        "alo" => Some("at_least_once"),
        "eos" => Some("exactly_once"),
        "fan" => {
            fan_out();
            return;
        }
        _ => None,
    } {
        let t = custos_run(&b, partitions, n, &only, guarantee, "record")
            .unwrap_or_else(|e| panic!("{guarantee} run: {e}"));
        println!("custos {guarantee} (3+1 out):  {}", t.line(n));
        return;
    }
    b.topic("pt.in", partitions);
    b.topic("pt.out", partitions);
    fill(&b, "pt.in", n);
    let pt = pass_through(&b, "pt.in", &["pt.out"], n);
    println!("pass-through (1 out):            {}", pt.line(n));
    let fan = fan_out();
    let alo =
        custos_run(&b, partitions, n, "alo", "at_least_once", "record").expect("at_least_once run");
    println!(
        "custos at_least_once (3+1 out):  {}  = {:.0}% of pass-through, {:.0}% of fan-out pass-through",
        alo.line(n),
        100.0 * pt.secs / alo.secs,
        100.0 * fan.secs / alo.secs
    );
    // Audit summaries instead of a record per event: 3 outputs per input.
    let sum = custos_run(&b, partitions, n, "sum", "at_least_once", "summary")
        .expect("at_least_once summary run");
    println!(
        "custos at_least_once, summaries: {}  = {:.0}% of fan-out pass-through, {:.2}x at_least_once with a record per event",
        sum.line(n),
        100.0 * fan.secs / sum.secs,
        alo.secs / sum.secs
    );
    match custos_run(&b, partitions, n, "eos", "exactly_once", "record") {
        Ok(eos) => println!(
            "custos exactly_once (3+1 out):   {}  = {:.0}% of at_least_once",
            eos.line(n),
            100.0 * alo.secs / eos.secs
        ),
        Err(e) => println!("custos exactly_once: not measured on this broker ({e})"),
    }
    let before = rss_mb();
    let big =
        custos_run(&b, 32, n / 4, "rss", "at_least_once", "record").expect("32-partition run");
    println!("custos on 32 partitions:       {:>7.2} s  ({} events); process RSS {:.0} MB (was {:.0} MB before; includes the in-process broker when embedded)", big.secs, n / 4, rss_mb(), before);
}
