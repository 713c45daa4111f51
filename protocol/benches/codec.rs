//! Frame codec throughput, with VettID v1's framing (length prefix + JSON with base64 bytes) as the
//! baseline measured in the same run. `cargo bench -p vettid-protocol --bench codec`.

#![allow(missing_docs, clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use vettid_protocol::codec::decode_body;
use vettid_protocol::{Decoded, Frame, FrameCodec, NatsMessage, ToEnclave};

fn frame(payload: usize) -> Frame<ToEnclave> {
    Frame::Request {
        id: 42,
        deadline_ms: 10_000,
        body: ToEnclave::Nats(NatsMessage {
            subject: "OwnerSpace.0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.forVault.pin".into(),
            reply: Some("_INBOX.Xk3nQ2a9.7".into()),
            headers: vec![],
            payload: Bytes::from(vec![b'x'; payload]),
        }),
    }
}

/// The v1 shape: a JSON object whose byte fields travel as base64 strings.
#[derive(serde::Serialize, serde::Deserialize)]
struct V1Message {
    #[serde(rename = "type")]
    kind: String,
    request_id: u64,
    subject: String,
    reply_to: Option<String>,
    payload: String,
}

fn v1(payload: usize) -> V1Message {
    use base64::Engine;
    V1Message {
        kind: "vault_op".into(),
        request_id: 42,
        subject: "OwnerSpace.0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.forVault.pin".into(),
        reply_to: Some("_INBOX.Xk3nQ2a9.7".into()),
        payload: base64::engine::general_purpose::STANDARD.encode(vec![b'x'; payload]),
    }
}

/// Runs `f` repeatedly for about `budget`, returning (iterations per second).
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    for _ in 0..100 {
        f();
    }
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < budget {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let codec = FrameCodec::default();
    let budget = Duration::from_millis(700);
    println!("| payload | CBOR encode /s | CBOR decode /s | v1 JSON encode /s | v1 JSON decode /s | decode speed-up | CBOR MB/s decode |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for size in [256usize, 4 * 1024, 64 * 1024, 1024 * 1024] {
        let f = frame(size);
        let bytes = codec.encode_to_bytes(&f).unwrap();
        let enc = rate(budget, || {
            let mut b = BytesMut::with_capacity(bytes.len());
            codec.encode(black_box(&f), &mut b).unwrap();
            black_box(b);
        });
        let dec = rate(budget, || {
            let d = decode_body::<ToEnclave>(black_box(&bytes[4..]));
            assert!(matches!(d, Decoded::Frame(_)));
        });
        let m = v1(size);
        let json = serde_json::to_vec(&m).unwrap();
        let jenc = rate(budget, || {
            black_box(serde_json::to_vec(black_box(&m)).unwrap());
        });
        let jdec = rate(budget, || {
            let v: V1Message = serde_json::from_slice(black_box(&json)).unwrap();
            use base64::Engine;
            black_box(
                base64::engine::general_purpose::STANDARD
                    .decode(v.payload)
                    .unwrap(),
            );
        });
        println!(
            "| {size} B | {enc:.0} | {dec:.0} | {jenc:.0} | {jdec:.0} | {:.1}x | {:.0} |",
            dec / jdec,
            dec * bytes.len() as f64 / 1e6
        );
    }
}
