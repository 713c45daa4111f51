//! `[storage]` through the whole config loader, so the section composes with the rest.

use crate::config::{Config, Overrides, StorageBackend};

const DEV: &str = "[attestation]\ndev_mode = true\ndev_accept_any_pcrs = true\n";

fn load(storage: &str) -> Result<Config, crate::config::ConfigError> {
    Config::load(Some(&format!("{DEV}{storage}")), &Overrides::default())
}

#[test]
fn default_is_the_filesystem_store() {
    let c = load("").unwrap();
    assert!(
        matches!(&c.storage.backend, StorageBackend::Fs { root } if root.to_str() == Some(super::DEFAULT_FS_ROOT))
    );
    assert_eq!(c.storage.timeout, super::DEFAULT_TIMEOUT);
    let c = load("[storage]\nfs.root = \"/tmp/x\"\n").unwrap();
    assert!(
        matches!(&c.storage.backend, StorageBackend::Fs { root } if root.to_str() == Some("/tmp/x"))
    );
}

#[test]
fn s3_settings_are_read() {
    let c = load(
        "[storage]\nbackend = \"s3\"\ntimeout_ms = 2500\n[storage.s3]\nbucket = \"vettid-vaults\"\nregion = \"eu-west-1\"\n\
         endpoint_url = \"http://127.0.0.1:5000\"\nforce_path_style = true\nkey_prefix = \"prod/a/\"\n",
    )
    .unwrap();
    let StorageBackend::S3(s3) = &c.storage.backend else {
        panic!("{:?}", c.storage)
    };
    assert_eq!(s3.bucket, "vettid-vaults");
    assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
    assert_eq!(s3.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
    assert!(s3.force_path_style);
    assert_eq!(s3.key_prefix, "prod/a/");
    assert_eq!(c.storage.timeout.as_millis(), 2500);
}

#[test]
fn every_storage_problem_is_reported_at_once() {
    let err = load(
        "[storage]\nbackend = \"s3\"\ntimeout_ms = 0\nmax_object_bytes = 999999999\n\
         [storage.s3]\nbucket = \"Bad_Bucket\"\nregion = \"EU WEST\"\nendpoint_url = \"ftp://x\"\nkey_prefix = \"/abs/../\"\n",
    )
    .unwrap_err();
    for needle in [
        "timeout_ms",
        "max_object_bytes",
        "s3.bucket",
        "s3.region",
        "endpoint_url",
        "key_prefix",
    ] {
        assert!(
            err.to_string().contains(needle),
            "missing {needle} in {err}"
        );
    }
    let err = load("[storage]\nbackend = \"s3\"\n").unwrap_err();
    assert!(err.to_string().contains("bucket is required"), "{err}");
    let err = load("[storage]\nbackend = \"disk\"\nfs.root = \"relative\"\n").unwrap_err();
    assert!(
        err.to_string().contains("expected \"fs\" or \"s3\""),
        "{err}"
    );
    // An S3 bucket with the fs backend is almost certainly a forgotten `backend = "s3"`.
    let err = load("[storage]\ns3.bucket = \"vettid-vaults\"\nfs.root = \"rel\"\n").unwrap_err();
    assert!(
        err.to_string().contains("backend is \"fs\"") && err.to_string().contains("absolute"),
        "{err}"
    );
    // Storage problems are listed with the others, not instead of them.
    let err = Config::load(
        Some("[nats]\nurl = \"http://x\"\n[storage]\ntimeout_ms = 0\n"),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("nats.url") && err.to_string().contains("storage.timeout_ms"),
        "{err}"
    );
}

#[test]
fn unknown_storage_keys_are_refused() {
    for bad in [
        "[storage]\nbackend_ = \"fs\"\n",
        "[storage.s3]\nbuckett = \"x\"\n",
        "[storage.fs]\npath = \"/x\"\n",
    ] {
        let err = load(bad).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{bad}: {err}");
    }
}

#[test]
fn key_prefixes_are_validated() {
    for ok in ["", "prod/", "a/b-c/d.e_f/"] {
        assert!(super::valid_key_prefix(ok), "{ok:?}");
    }
    for bad in [
        "prod",
        "/prod/",
        "prod//",
        "../",
        "a/./",
        "a b/",
        "a\\b/",
        "vaults\u{e9}/",
        &format!("{}/", "x".repeat(300)),
    ] {
        assert!(!super::valid_key_prefix(bad), "{bad:?}");
    }
}

#[test]
fn objects_must_fit_in_a_frame() {
    let err = load("[enclave]\nmax_frame_len = 1048576\n[storage]\nmax_object_bytes = 1048576\n")
        .unwrap_err();
    assert!(
        err.to_string().contains("storage.max_object_bytes"),
        "{err}"
    );
    let c =
        load("[enclave]\nmax_frame_len = 1048576\n[storage]\nmax_object_bytes = 983040\n").unwrap();
    assert_eq!(c.storage.max_object_bytes, 983_040);
}
