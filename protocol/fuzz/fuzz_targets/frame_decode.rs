//! One frame body: decoding never panics, and anything that decodes re-encodes to a frame that
//! decodes to the same value (the codec is its own inverse on valid input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vettid_protocol::codec::decode_body;
use vettid_protocol::{Decoded, FrameCodec, RequestBody, ToEnclave, ToParent};

/// The same body as each side decodes it (each serves its own direction's requests).
fn round_trip<R: RequestBody>(data: &[u8]) {
    if let Decoded::Frame(frame) = decode_body::<R>(data) {
        let codec = FrameCodec::default();
        let bytes = codec.encode_to_bytes(&frame).expect("a decoded frame re-encodes");
        match decode_body::<R>(&bytes[4..]) {
            Decoded::Frame(again) => assert_eq!(again, frame),
            other => panic!("re-encoded frame does not decode: {other:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<ToEnclave>(data);
    round_trip::<ToParent>(data);
});
