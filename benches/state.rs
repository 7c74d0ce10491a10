//! Memory of the subject state: bytes per data subject for consent and
//! erasure, measured with a counting allocator around the shipped one
//! (mimalloc), for 1,000,000 subjects with ids like `customer-0001234567`.
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
}
