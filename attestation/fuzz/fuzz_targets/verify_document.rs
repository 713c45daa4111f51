//! Fuzzes the full document path: parse, chain, signature and policy. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vettid_attestation::{parse, verify, PcrSet, Policy};

fuzz_target!(|data: &[u8]| {
    let _ = parse(data);
    let set = PcrSet::new("fuzz", vec![1u8; 48], vec![2u8; 48], vec![3u8; 48]).expect("valid set");
    // A fixed clock inside the real samples' era, so mutated real documents reach the chain checks.
    let _ = verify(data, &Policy::new([set]), 1_758_057_949_422);
    let _ = verify(
        data,
        &Policy::skip_pcr_check_unsafe().with_max_age_ms(u64::MAX),
        0,
    );
});
