//! HTTPS: the self-signed dev CA (created once, reused across restarts), PEM files, and refusal of clients that
//! do not trust the certificate or speak plain HTTP.

mod common;

use common::{code, https_client, Server};

const HOST: &str = "kms.vettid.test";

fn self_signed(dir: &std::path::Path) -> Vec<String> {
    vec![
        "--tls-self-signed".into(),
        dir.join("tls").to_str().unwrap().into(),
        "--tls-hostname".into(),
        HOST.into(),
    ]
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn self_signed_https_serves_clients_trusting_the_dev_ca_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let flags = self_signed(dir.path());
    let mut server = Server::start_in(dir, &args(&flags));
    assert!(
        server.log_contains("listening on https://"),
        "{}",
        server.log()
    );
    let ca = std::fs::read(server.dir.path().join("tls/ca.pem")).unwrap();
    let kms = https_client(HOST, server.port, &ca);
    let key_id = common::create_key(&kms).await;

    // A restarted server issues a new server certificate from the same CA: the old trust still holds.
    assert!(server
        .stop("TERM", std::time::Duration::from_secs(10))
        .is_some());
    let restarted = Server::start_in(
        std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap()),
        &args(&flags),
    );
    assert_eq!(
        std::fs::read(restarted.dir.path().join("tls/ca.pem")).unwrap(),
        ca
    );
    let kms = https_client(HOST, restarted.port, &ca);
    kms.describe_key().key_id(&key_id).send().await.unwrap();
}

#[tokio::test]
async fn clients_that_do_not_trust_the_ca_or_use_another_name_or_plain_http_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let flags = self_signed(dir.path());
    let server = Server::start_in(dir, &args(&flags));

    let other = rcgen::generate_simple_self_signed(vec![HOST.into()]).unwrap();
    let untrusting = https_client(HOST, server.port, other.cert.pem().as_bytes());
    let err = untrusting.create_key().send().await.unwrap_err();
    assert_eq!(code(&err), "<no code>", "{err:?}");

    let ca = std::fs::read(server.dir.path().join("tls/ca.pem")).unwrap();
    let wrong_name = https_client("other.vettid.test", server.port, &ca);
    assert!(wrong_name.create_key().send().await.is_err());

    let plain = server.client();
    assert!(plain.create_key().send().await.is_err());
    assert!(
        server.log_contains("TLS handshake failed"),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn pem_files_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec![HOST.into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let flags = vec![
        "--tls-cert".to_string(),
        cert_path.to_str().unwrap().into(),
        "--tls-key".into(),
        key_path.to_str().unwrap().into(),
    ];
    let server = Server::start_in(dir, &args(&flags));
    let kms = https_client(HOST, server.port, cert.cert.pem().as_bytes());
    common::create_key(&kms).await;
}

#[test]
fn half_a_tls_configuration_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    for extra in [
        &["--tls-cert", "/tmp/c.pem"][..],
        &["--tls-hostname", HOST][..],
        &[
            "--tls-self-signed",
            "/tmp/x",
            "--tls-cert",
            "/tmp/c.pem",
            "--tls-key",
            "/tmp/k.pem",
        ][..],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vettid-local-kms"))
            .arg("--key-file")
            .arg(dir.path().join("keys.json"))
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{extra:?}");
    }
}
