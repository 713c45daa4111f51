//! `manifest sign --kms-key-id` against a local KMS stand-in (moto), when `moto_server` is installed.
//!
//! moto implements `Sign` with raw messages only (not `MessageType::Digest`), so this covers manifests up to
//! the 4096-byte raw limit; the digest path is used above that and needs real KMS.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use common::*;

/// How long moto may take to start listening.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Kills moto when the test ends, however it ends.
struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Option<Moto> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let moto = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            start.elapsed() < STARTUP_TIMEOUT,
            "moto_server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(moto)
}

fn aws_env(cmd: &mut Command, url: &str) {
    cmd.env("AWS_ENDPOINT_URL", url)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE");
}

/// Create a KMS key of `spec`; returns its id and public key (DER SPKI).
fn create_key(url: &str, spec: KeySpec) -> (String, Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conf = aws_sdk_kms::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url(url)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_kms::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .build();
        let client = aws_sdk_kms::Client::from_conf(conf);
        let key = client
            .create_key()
            .key_spec(spec)
            .key_usage(KeyUsageType::SignVerify)
            .send()
            .await
            .unwrap();
        let id = key.key_metadata().unwrap().key_id().to_owned();
        let public = client.get_public_key().key_id(&id).send().await.unwrap();
        (id, public.public_key().unwrap().as_ref().to_vec())
    })
}

#[test]
fn kms_signed_manifest_verifies_with_the_kms_public_key() {
    let Some(moto) = start_moto() else {
        eprintln!("skipped: moto_server is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("pcrs.json");
    let pcr = |b: &str| b.repeat(48);
    let mut add = bin();
    add.args(["manifest", "add", "--manifest"]).arg(&m).args([
        "--id",
        "v1",
        "--pcr0",
        &pcr("a1"),
        "--pcr1",
        &pcr("b2"),
        "--pcr2",
        &pcr("c3"),
        "--valid-from",
        "2026-01-01T00:00:00Z",
        "--current",
    ]);
    assert!(add.status().unwrap().success());

    let (key_id, spki) = create_key(&moto.url, KeySpec::EccNistP256);
    let public = dir.path().join("kms.pub.der");
    std::fs::write(&public, spki).unwrap();
    let mut sign = bin();
    sign.args(["manifest", "sign", "--manifest"])
        .arg(&m)
        .args(["--kms-key-id", &key_id]);
    aws_env(&mut sign, &moto.url);
    let out = sign.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let v = run_ok(
        bin()
            .args(["manifest", "verify", "--manifest"])
            .arg(&m)
            .arg("--pubkey")
            .arg(&public)
            .args(["--at", "2026-01-02T00:00:00Z"]),
    );
    assert_eq!(v["valid_sets"][0]["id"], "v1");

    // A key that is not P-256 is refused, and nothing is written.
    let before = std::fs::read(&m).unwrap();
    let (p384_id, _) = create_key(&moto.url, KeySpec::EccNistP384);
    let mut sign = bin();
    sign.args(["manifest", "sign", "--manifest"])
        .arg(&m)
        .args(["--kms-key-id", &p384_id]);
    aws_env(&mut sign, &moto.url);
    let out = run_err(&mut sign);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not an ECC_NIST_P256 key"), "{err}");
    assert_eq!(std::fs::read(&m).unwrap(), before);

    // An unknown key id is an AWS error with context, not a panic.
    let mut sign = bin();
    sign.args(["manifest", "sign", "--manifest"])
        .arg(&m)
        .args(["--kms-key-id", "no-such-key"]);
    aws_env(&mut sign, &moto.url);
    let out = run_err(&mut sign);
    assert!(String::from_utf8_lossy(&out.stderr).contains("KMS GetPublicKey no-such-key"));
}
