//! Unit tests of the KMS configuration and the tunnel handshake (no KMS: see tests/kms.rs).

use std::io::Write;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use vettid_link::Address;

use super::config::{Endpoint, KmsConfig, KmsFlags};
use super::forward::{open_tunnel, TunnelError};

const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn full() -> KmsFlags {
    KmsFlags {
        kms_endpoint: Some("https://kms.us-east-1.amazonaws.com".into()),
        kms_region: Some("us-east-1".into()),
        kms_key_id: Some(ARN.into()),
        kms_tunnel: Some("vsock://3:8000".into()),
        kms_ca_file: None,
        kms_forward_port: None,
        kms_policy_pcr0: Vec::new(),
    }
}

#[test]
fn no_kms_flags_means_no_kms() {
    assert!(KmsConfig::from_flags(&KmsFlags::default())
        .unwrap()
        .is_none());
}

#[test]
fn production_flags_forward_on_the_endpoint_port() {
    let config = KmsConfig::from_flags(&full()).unwrap().unwrap();
    assert_eq!(
        config.endpoint,
        Endpoint {
            host: "kms.us-east-1.amazonaws.com".into(),
            port: 443
        }
    );
    assert_eq!(config.forward_port, 443);
    assert_eq!(config.tunnel, Address::Vsock { cid: 3, port: 8000 });
    assert_eq!(
        config.endpoint.authority(),
        "kms.us-east-1.amazonaws.com:443"
    );
}

#[test]
fn a_partial_configuration_names_every_missing_flag() {
    let flags = KmsFlags {
        kms_endpoint: Some("https://kms.vettid.test:4443".into()),
        ..KmsFlags::default()
    };
    let errors = KmsConfig::from_flags(&flags).unwrap_err();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    for flag in ["--kms-region", "--kms-key-id", "--kms-tunnel"] {
        assert!(
            errors.iter().any(|e| e.contains(flag)),
            "{flag}: {errors:#?}"
        );
    }
    // An optional flag alone also asks for the rest.
    let flags = KmsFlags {
        kms_forward_port: Some(0),
        ..KmsFlags::default()
    };
    assert_eq!(KmsConfig::from_flags(&flags).unwrap_err().len(), 4);
}

#[test]
fn every_bad_value_is_reported_at_once() {
    let flags = KmsFlags {
        kms_endpoint: Some("http://kms.us-east-1.amazonaws.com".into()),
        kms_region: Some("US East".into()),
        kms_key_id: Some("key id with spaces".into()),
        kms_tunnel: Some("vsock://three:8000".into()),
        kms_ca_file: Some("/nonexistent/ca.pem".into()),
        kms_forward_port: Some(0),
        kms_policy_pcr0: vec!["00".repeat(48)],
    };
    let errors = KmsConfig::from_flags(&flags).unwrap_err();
    assert_eq!(errors.len(), 6, "{errors:#?}");
}

#[test]
fn the_key_must_be_a_full_arn_in_the_signing_region() {
    let config = KmsConfig::from_flags(&full()).unwrap().unwrap();
    assert_eq!(config.key_id.as_str(), ARN);
    assert_eq!(config.key_id.account(), "111122223333");
    let with_key = |key: &str| KmsFlags {
        kms_key_id: Some(key.into()),
        ..full()
    };
    for (key, says) in [
        ("alias/vettid-vault", "is an alias"),
        (
            "arn:aws:kms:us-east-1:111122223333:alias/vettid-vault",
            "is an alias",
        ),
        ("1234abcd-12ab-34cd-56ef-1234567890ab", "bare key id"),
        ("vettid-test-key", "not a KMS key ARN"),
        (
            "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "region",
        ),
    ] {
        let errors = KmsConfig::from_flags(&with_key(key)).unwrap_err();
        assert_eq!(errors.len(), 1, "{key}: {errors:#?}");
        assert!(errors[0].starts_with("--kms-key-id: "), "{errors:#?}");
        assert!(errors[0].contains(says), "{key}: {errors:#?}");
    }
}

#[test]
fn policy_pcr0_values_are_sha384_hex() {
    let flags = KmsFlags {
        kms_policy_pcr0: vec!["AB".repeat(48)],
        ..full()
    };
    let config = KmsConfig::from_flags(&flags).unwrap().unwrap();
    assert_eq!(config.policy_pcr0, vec!["ab".repeat(48)]);
    for bad in ["ab".repeat(32), "zz".repeat(48), "00".repeat(48)] {
        let flags = KmsFlags {
            kms_policy_pcr0: vec![bad.clone()],
            ..full()
        };
        assert!(KmsConfig::from_flags(&flags).is_err(), "{bad}");
    }
}

#[test]
fn endpoints_must_be_https_host_names() {
    let ok = Endpoint::parse("https://KMS.vettid.test:4443/").unwrap();
    assert_eq!(ok.host, "kms.vettid.test");
    assert_eq!(ok.port, 4443);
    for bad in [
        "kms.us-east-1.amazonaws.com",
        "http://kms.us-east-1.amazonaws.com",
        "https://127.0.0.1:443",
        "https://[::1]:443",
        "https://localhost",
        "https://kms.vettid.test:0",
        "https://kms.vettid.test:99999",
        "https://kms.vettid.test/path",
        "https://user@kms.vettid.test",
        "https://kms.vettid.test?x=1",
        "https://kms vettid.test",
        "https://kms.vettid.test\n",
        "https://-kms.vettid.test",
        "https://",
    ] {
        assert!(Endpoint::parse(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn the_ca_file_must_hold_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        .unwrap();
    let flags = KmsFlags {
        kms_ca_file: Some(path),
        ..full()
    };
    let errors = KmsConfig::from_flags(&flags).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("--kms-ca-file"));
}

/// A tunnel peer that reads the preamble and answers `answer`.
async fn tunnel_answering(answer: &'static str) -> (Address, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = Address::Tcp(listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut stream = BufReader::new(stream);
        let mut line = String::new();
        stream.read_line(&mut line).await.unwrap();
        stream.get_mut().write_all(answer.as_bytes()).await.unwrap();
        line
    });
    (addr, task)
}

#[tokio::test]
async fn the_preamble_names_the_endpoint_and_ok_opens_the_tunnel() {
    let (addr, peer) = tunnel_answering("ok\nserver bytes").await;
    let mut stream = open_tunnel(&addr, "kms.us-east-1.amazonaws.com:443")
        .await
        .unwrap();
    assert_eq!(
        peer.await.unwrap(),
        "vettid-tunnel-v1 kms.us-east-1.amazonaws.com:443\n"
    );
    // Nothing after the answer line was swallowed.
    let mut rest = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut rest)
        .await
        .unwrap();
    assert_eq!(rest, "server bytes");
}

#[tokio::test]
async fn refusals_are_typed() {
    for (answer, want) in [
        ("denied\n", "denied"),
        ("unreachable\n", "unreachable"),
        ("busy\n", "busy"),
        ("what\n", "protocol"),
        ("okay-but-very-long-answer-line-without-end", "protocol"),
        ("ok", "io"),
    ] {
        let (addr, _peer) = tunnel_answering(answer).await;
        let err = open_tunnel(&addr, "kms.vettid.test:1").await.unwrap_err();
        assert_eq!(err.reason(), want, "{answer:?}: {err}");
    }
}

#[tokio::test]
async fn a_missing_tunnel_is_a_connect_error() {
    let dir = tempfile::tempdir().unwrap();
    let addr = Address::Unix(dir.path().join("none.sock"));
    let err = open_tunnel(&addr, "kms.vettid.test:1").await.unwrap_err();
    assert!(matches!(err, TunnelError::Connect(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_silent_tunnel_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = Address::Tcp(listener.local_addr().unwrap());
    let _hold = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        std::future::pending::<()>().await;
        drop(stream);
    });
    let err = open_tunnel(&addr, "kms.vettid.test:1").await.unwrap_err();
    assert!(matches!(err, TunnelError::Timeout), "{err}");
}

/// A tunnel peer that answers `ok` to every preamble and echoes the bytes after it.
async fn echo_tunnel() -> Address {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = Address::Tcp(listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                let mut line = String::new();
                stream.read_line(&mut line).await.unwrap();
                assert_eq!(line, "vettid-tunnel-v1 kms.vettid.test:443\n");
                stream.get_mut().write_all(b"ok\n").await.unwrap();
                let (mut r, mut w) = tokio::io::split(stream);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn the_forwarder_relays_bytes_and_stops_accepting_when_dropped() {
    use tokio::io::AsyncReadExt;
    let tunnel = echo_tunnel().await;
    let forwarder = super::Forwarder::start(0, tunnel, "kms.vettid.test:443".into())
        .await
        .unwrap();
    let addr = forwarder.local_addr();
    assert!(addr.ip().is_loopback());
    for _ in 0..3 {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"client hello").await.unwrap();
        let mut back = [0u8; 12];
        conn.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"client hello");
    }
    assert!(forwarder.is_running());
    drop(forwarder);
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(refused, "the forwarder still accepts after being dropped");
}
