//! Memory of one frame body: whatever the bytes, decoding allocates at most twice the body (its
//! strings copied into growing buffers) plus a bounded overhead per CBOR item, never the ~32x of
//! a generic value tree.
//!
//! Small inputs are stretched into large bodies so the fuzzer can reach the shapes that cost the
//! most (millions of one-byte items): `data[0]` picks a repeat count 2^(data[0] % 21), `data[1]`
//! splits the rest into a prefix and a unit, and the body is the prefix followed by the unit
//! repeated, up to the 16 MiB frame cap. A counting global allocator measures the peak.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;
use vettid_protocol::codec::decode_body;
use vettid_protocol::{DEFAULT_MAX_FRAME_LEN, MAX_FRAME_ITEMS};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as the old and the new block both live, the worst moment of a move.
        grew(new_size);
        // SAFETY: same contract as ours.
        let out = unsafe { System.realloc(ptr, layout, new_size) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        out
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Allowed per CBOR item on top of the strings: the dearest typed element (a `String` or a pair
/// of them) in a vector that may have doubled.
const PER_ITEM: usize = 64;

fuzz_target!(|data: &[u8]| {
    let [shift, split, rest @ ..] = data else {
        return;
    };
    let (prefix, unit) = rest.split_at((*split as usize).min(rest.len()));
    let mut body = prefix.to_vec();
    if !unit.is_empty() {
        let times = 1usize << (shift % 21);
        let room = (DEFAULT_MAX_FRAME_LEN - body.len()) / unit.len();
        for _ in 0..times.min(room) {
            body.extend_from_slice(unit);
        }
    }
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let decoded = decode_body::<vettid_protocol::ToEnclave>(&body);
    let peak = PEAK.load(Ordering::Relaxed) - base;
    drop(decoded);
    let bound = 2 * body.len() + PER_ITEM * MAX_FRAME_ITEMS + 64 * 1024;
    assert!(
        peak <= bound,
        "decoding a {}-byte body allocated {peak} bytes at its peak (bound {bound})",
        body.len()
    );
});
