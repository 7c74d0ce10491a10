//! `custos apply --envelope` against the engine, side by side in one run.
//!
//! The engine figure is `engine::govern` in a loop over the bench event (as
//! `cargo bench --bench engine`, `govern_3_purposes/custos`); the apply
//! figure is the release binary governing the same event, as envelopes in a
//! file, for the same 3 purposes, output to /dev/null, process start
//! included. Rounds alternate so that machine noise hits both alike.
//!
//! Run: `cargo bench --bench apply` (`CUSTOS_BENCH_APPLY_EVENTS`, default 50000).

use std::hint::black_box;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use custos::engine::{self, Outcome, Record, Scratch, Verdict};
use custos::policy::{self, keys::Keys};
use custos::state::MemoryState;

#[path = "bench_event.rs"]
mod bench_event;

const NOW: i64 = 1_795_400_000_000;
const NOW_RFC3339: &str = "2026-11-22T10:13:20Z";

fn main() {
    let n: usize = std::env::var("CUSTOS_BENCH_APPLY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let root = env!("CARGO_MANIFEST_DIR");
    let policy_path = format!("{root}/examples/shop/policy.yaml");
    let value = bench_event::event();
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("orders.ndjson");
    let consent = dir.path().join("consent.ndjson");
    std::fs::write(
        &consent,
        b"{\"subject\":\"c-1\",\"purposes\":{\"marketing\":true}}\n",
    )
    .expect("write consent");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).expect("input file"));
    let envelope = format!(
        "{{\"key\":\"c-1\",\"value\":{},\"timestamp\":{NOW}}}\n",
        std::str::from_utf8(&value).expect("utf-8")
    );
    for _ in 0..n {
        f.write_all(envelope.as_bytes()).expect("write input");
    }
    f.flush().expect("flush input");
    drop(f);

    let text = std::fs::read_to_string(&policy_path).expect("policy");
    let p = policy::load(&text, "policy.yaml").expect("policy loads");
    let keys = Keys::from_pairs([
        ("analytics", b"analytics-secret-0123456789".to_vec()),
        ("marketing", b"marketing-secret-0123456789".to_vec()),
    ]);
    let compiled = policy::plan::compile(Arc::new(p), &keys).expect("compiles");
    let plan = &compiled.streams[0];
    let mut state = MemoryState::new(&["analytics", "marketing", "support"]);
    state
        .apply_consent(
            None,
            Some(br#"{"subject":"c-1","purposes":{"marketing":true}}"#),
        )
        .expect("consent");
    let policy_id = compiled.policy.id();
    let mut scratch = Scratch::default();

    let engine_round = |scratch: &mut Scratch| {
        let t = Instant::now();
        for i in 0..n {
            let rec = Record {
                topic: "shop.orders",
                partition: 0,
                offset: i as i64,
                timestamp: Some(NOW),
                key: Some(b"c-1"),
                value: black_box(&value),
                headers: &[],
            };
            let v = engine::govern(plan, &policy_id, &rec, &state, NOW, scratch);
            if let Verdict::Governed(g) = &v {
                assert_eq!(
                    g.outcomes
                        .iter()
                        .filter(|o| matches!(o, Outcome::Emitted(_)))
                        .count(),
                    3
                );
            } else {
                panic!("bench event must govern");
            }
            black_box(v);
        }
        n as f64 / t.elapsed().as_secs_f64()
    };
    let apply_round = || {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_custos"))
            .args([
                "apply",
                &policy_path,
                "--stream",
                "orders",
                "--envelope",
                "--input",
                &input.display().to_string(),
                "--consent",
                &consent.display().to_string(),
                "--now",
                NOW_RFC3339,
            ])
            .env("CUSTOS_KEY_ANALYTICS", "analytics-secret-0123456789")
            .env("CUSTOS_KEY_MARKETING", "marketing-secret-0123456789")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("custos apply runs");
        let secs = t.elapsed().as_secs_f64();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let want = format!("{n} records: {n} governed, 0 dead-lettered");
        assert!(err.contains(&want), "{err}");
        n as f64 / secs
    };

    let (mut eng, mut app) = (Vec::new(), Vec::new());
    engine_round(&mut scratch); // warm-up
    for _ in 0..3 {
        eng.push(engine_round(&mut scratch));
        app.push(apply_round());
    }
    eng.sort_by(f64::total_cmp);
    app.sort_by(f64::total_cmp);
    let (e, a) = (eng[1], app[1]);
    println!(
        "apply_vs_engine: {n} events of {} bytes, 3 purposes, median of 3 alternating rounds",
        value.len()
    );
    println!("  engine (in-process govern)        {:>9.0} events/s", e);
    println!("  custos apply --envelope (process) {:>9.0} events/s", a);
    println!("  apply / engine                    {:>9.2}", a / e);
}
