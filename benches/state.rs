//! Memory of the subject state: bytes per data subject for consent and
//! erasure, and for the `encrypt` action's data keys, measured with a
//! counting allocator around the shipped one (mimalloc), for 1,000,000
//! subjects with ids like `customer-0001234567`.
//!
//! Run: `cargo bench --bench state` (prints the figures; no timing).

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

const SUBJECTS: usize = 1_000_000;

fn main() {
    let purposes = ["analytics", "marketing", "support", "fraud"];
    let before = LIVE.load(Ordering::Relaxed);
    let mut state = MemoryState::new(&purposes);
    let empty = LIVE.load(Ordering::Relaxed);
    let mut rec = Vec::with_capacity(128);
    for i in 0..SUBJECTS {
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
    for i in SUBJECTS..2 * SUBJECTS {
        rec.clear();
        rec.extend_from_slice(format!(r#"{{"subject":"customer-{i:010}"}}"#).as_bytes());
        state
            .apply_erasure(None, Some(&rec))
            .expect("a valid erasure record");
    }
    let both = LIVE.load(Ordering::Relaxed);
    let per = |bytes: isize| bytes as f64 / SUBJECTS as f64;
    println!("subject state, ids of 19 bytes, 4 purposes:");
    println!(
        "  {SUBJECTS} subjects with consent:           {:>6.1} bytes per subject",
        per(consent - empty)
    );
    println!(
        "  + {SUBJECTS} other subjects erased:         {:>6.1} bytes per subject (all {} subjects)",
        (both - empty) as f64 / (2 * SUBJECTS) as f64,
        2 * SUBJECTS
    );
    println!(
        "  10 million subjects (consent or erasure): about {:.0} MiB",
        (both - empty) as f64 / (2 * SUBJECTS) as f64 * 1e7 / (1024.0 * 1024.0)
    );
    let _ = before;
    std::hint::black_box(&state);

    // Data keys: the keys-topic records a worker reads at start, one per
    // subject, into its ring (hash, key and the table's overhead).
    let audit = custos::audit::AuditKey::new(b"bench-audit-key");
    let kek = || custos::crypto::Kek::new("kek", b"bench-kek-0123456789abcdef-012345");
    let maker = custos::crypto::KeyRing::new(vec![kek()], &audit);
    let records: Vec<(String, Vec<u8>)> = (0..SUBJECTS)
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
        "  {SUBJECTS} subjects with a data key:      {:>6.1} bytes per subject; read at {:.0} records/s (unwrap included)",
        per(after_ring - before_ring),
        SUBJECTS as f64 / secs
    );
    std::hint::black_box(&ring);
}
