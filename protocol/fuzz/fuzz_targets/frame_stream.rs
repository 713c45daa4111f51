//! A byte stream cut into frames by the length-prefix decoder with a small cap: never panics,
//! never allocates past the cap, and stops at the first fatal prefix.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use vettid_protocol::{FrameCodec, ToEnclave};

fuzz_target!(|data: &[u8]| {
    let codec = FrameCodec::new(4096);
    let mut buf = BytesMut::from(data);
    loop {
        match codec.decode::<ToEnclave>(&mut buf) {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(e) => {
                assert!(e.is_fatal());
                break;
            }
        }
    }
    assert!(buf.capacity() <= data.len().max(4 + 4096) * 2 + 64, "allocation bounded by the cap");
});
