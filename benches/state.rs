//! Memory of the subject state: bytes per data subject for consent and
//! erasure, and for the `encrypt` action's data keys, measured with a
//! counting allocator around the shipped one (mimalloc), for 1,000,000
//! subjects with ids like `customer-0001234567` (`CUSTOS_BENCH_SUBJECTS`
//! sets another count: 10000000 measures the goal's 10 million, in about
//! four minutes and 6 GiB of records to read).
//!
//! Then the price of the compact table (`custos::state::table`) against
//! `std`'s `HashMap` on the same keys in the same run: bytes and lookup
//! time, hits and misses (a subject without consent is a miss). Last, the
//! retention schedule of compacted outputs: bytes per key.
//!
//! Run: `cargo bench --bench state` (prints the figures).

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering};

use custos::state::MemoryState;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;

// SAFETY: every call is passed to mimalloc unchanged; only a counter is kept.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { INNER.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { INNER.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { INNER.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let subjects: usize = std::env::var("CUSTOS_BENCH_SUBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let purposes = ["analytics", "marketing", "support", "fraud"];
    let before = LIVE.load(Ordering::Relaxed);
    let mut state = MemoryState::new(&purposes);
    let empty = LIVE.load(Ordering::Relaxed);
    let mut rec = Vec::with_capacity(128);
    for i in 0..subjects {
        rec.clear();
        rec.extend_from_slice(
            format!(r#"{{"subject":"customer-{i:010}","purposes":{{"marketing":true,"analytics":false}}}}"#)
                .as_bytes(),
        );
        state
            .apply_consent(None, Some(&rec))
            .expect("a valid consent record");
    }
    let consent = LIVE.load(Ordering::Relaxed);
    // Other subjects than those with consent (an erasure removes a consent).
    for i in subjects..2 * subjects {
        rec.clear();
        rec.extend_from_slice(format!(r#"{{"subject":"customer-{i:010}"}}"#).as_bytes());
        state
            .apply_erasure(None, Some(&rec))
            .expect("a valid erasure record");
    }
    let both = LIVE.load(Ordering::Relaxed);
    let per = |bytes: isize| bytes as f64 / subjects as f64;
    println!("subject state, ids of 19 bytes, 4 purposes:");
    println!(
        "  {subjects} subjects with consent:           {:>6.1} bytes per subject",
        per(consent - empty)
    );
    println!(
        "  + {subjects} other subjects erased:         {:>6.1} bytes per subject (all {} subjects)",
        (both - empty) as f64 / (2 * subjects) as f64,
        2 * subjects
    );
    let _ = before;
    std::hint::black_box(&state);

    // Data keys: the keys-topic records a worker reads at start, one per
    // subject, into its ring (hash, key and the table's overhead).
    let audit = custos::audit::AuditKey::new(b"bench-audit-key");
    let kek = || custos::crypto::Kek::new("kek", b"bench-kek-0123456789abcdef-012345");
    let maker = custos::crypto::KeyRing::new(vec![kek()], &audit);
    let records: Vec<(String, Vec<u8>)> = (0..subjects)
        .map(|i| {
            let hash = maker.subject_hash("kek", &format!("customer-{i:010}"));
            maker.candidate("kek", hash, "2026-12-01T00:00:00Z")
        })
        .collect();
    let before_ring = LIVE.load(Ordering::Relaxed);
    let mut ring = custos::crypto::KeyRing::new(vec![kek()], &audit);
    let started = std::time::Instant::now();
    for (k, v) in &records {
        ring.apply(k.as_bytes(), Some(v))
            .expect("a valid keys record");
    }
    let secs = started.elapsed().as_secs_f64();
    let after_ring = LIVE.load(Ordering::Relaxed);
    println!("data keys (encrypt), one KEK:");
    println!(
        "  {subjects} subjects with a data key:      {:>6.1} bytes per subject; read at {:.0} records/s (unwrap included)",
        per(after_ring - before_ring),
        subjects as f64 / secs
    );
    std::hint::black_box(&ring);
    // Every subject with consent also has a data key: the whole state.
    let whole = (consent - empty) + (after_ring - before_ring);
    println!("consent and a data key, both held:");
    println!(
        "  {subjects} subjects:                       {:>6.1} bytes per subject, {:.0} MiB in all",
        per(whole),
        whole as f64 / (1024.0 * 1024.0)
    );
    compare_tables(subjects);
    retention_schedule(subjects);
}

/// The retention schedule of a compacted output (one per partition a
/// worker holds): a key's last write and the key itself (its tombstone
/// needs it), for `n` keys shaped like a pseudonym.
fn retention_schedule(n: usize) {
    let at = LIVE.load(Ordering::Relaxed);
    let mut schedule = custos::kafka::retention::Schedule::new();
    for i in 0..n {
        let key = format!(
            "ps_{:040x}",
            (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
        );
        schedule.read(key.as_bytes(), Some(1_795_000_000_000 + i as i64), false, 0);
    }
    let bytes = LIVE.load(Ordering::Relaxed) - at;
    println!("retention schedule (compacted outputs), keys of 43 bytes:");
    println!(
        "  {n} keys:                          {:>6.1} bytes per key, {:.0} MiB in all",
        bytes as f64 / n as f64,
        bytes as f64 / (1024.0 * 1024.0)
    );
    std::hint::black_box(&schedule);
}

/// The compact table against `std`'s on `n` random keys and 28-byte
/// entries (a consent entry): memory, and lookups in a random order.
fn compare_tables(n: usize) {
    use custos::state::table::SubjectTable;
    use std::collections::HashMap;
    use std::time::Instant;

    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut key = || {
        let mut k = [0u8; 16];
        for half in k.chunks_mut(8) {
            // xorshift64*: uniform keys, as the subject hashes are.
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            half.copy_from_slice(&seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        k
    };
    let present: Vec<[u8; 16]> = (0..n).map(|_| key()).collect();
    let absent: Vec<[u8; 16]> = (0..n).map(|_| key()).collect();
    let value = [7u32; 4];

    let at = LIVE.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut compact = SubjectTable::<[u32; 4]>::default();
    for k in &present {
        compact.insert(k, value);
    }
    let compact_insert = started.elapsed().as_nanos() as f64 / n as f64;
    let compact_bytes = LIVE.load(Ordering::Relaxed) - at;
    let at = LIVE.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut std_map = HashMap::<u128, [u32; 4]>::new();
    for k in &present {
        std_map.insert(u128::from_le_bytes(*k), value);
    }
    let std_insert = started.elapsed().as_nanos() as f64 / n as f64;
    let std_bytes = LIVE.load(Ordering::Relaxed) - at;

    let time = |f: &dyn Fn(&[u8; 16]) -> bool, keys: &[[u8; 16]]| {
        let started = Instant::now();
        let found = keys.iter().filter(|k| f(k)).count();
        let ns = started.elapsed().as_nanos() as f64 / keys.len() as f64;
        (ns, found)
    };
    let compact_get = |k: &[u8; 16]| compact.get(k).is_some();
    let std_get = |k: &[u8; 16]| std_map.contains_key(&u128::from_le_bytes(*k));
    println!("compact table vs std HashMap, {n} keys, 28-byte entries (same run):");
    println!(
        "  memory:  {:>6.1} vs {:>6.1} bytes per key ({:.2}x)",
        compact_bytes as f64 / n as f64,
        std_bytes as f64 / n as f64,
        compact_bytes as f64 / std_bytes as f64
    );
    println!(
        "  inserts  {compact_insert:>6.1} vs {std_insert:>6.1} ns per key, growths included ({:.2}x)",
        compact_insert / std_insert
    );
    for (what, keys, expected) in [("hits", &present, n), ("misses", &absent, 0)] {
        let (c, cf) = time(&compact_get, keys);
        let (s, sf) = time(&std_get, keys);
        assert_eq!((cf, sf), (expected, expected), "both tables answer alike");
        println!(
            "  {what:<7}  {c:>6.1} vs {s:>6.1} ns per lookup ({:.2}x)",
            c / s
        );
    }
}
