//! Bounded random mutation of a real document: never a panic, and never a different verified result.

mod common;

use common::*;
use vettid_attestation::{parse, verify};

/// xorshift64*: deterministic, dependency-free randomness for reproducible mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_mutations_of_sample_1_never_panic_or_verify_differently() {
    let (doc, ts, ..) = SAMPLES[0];
    let policy = sample_policy(0);
    let original = verify(doc, &policy, ts).unwrap();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for round in 0..2000 {
        let mut bytes = doc.to_vec();
        for _ in 0..1 + rng.below(4) {
            match rng.below(4) {
                0 => {
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
                1 => {
                    let i = rng.below(bytes.len());
                    bytes[i] = rng.next() as u8;
                }
                2 => {
                    let i = rng.below(bytes.len());
                    bytes.insert(i, rng.next() as u8);
                }
                _ => {
                    let i = rng.below(bytes.len());
                    bytes.remove(i);
                }
            }
        }
        let _ = parse(&bytes);
        if let Ok(verified) = verify(&bytes, &policy, ts) {
            assert_eq!(
                verified, original,
                "round {round}: a mutated document verified with other content"
            );
        }
    }
}
