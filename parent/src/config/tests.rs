//! `Config::load` from strings: every rule of the file, reported in one problem list.

use super::*;

const PCRS: &str = "[[attestation.pcr_sets]]\nid = \"v1\"\npcr0 = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\npcr1 = \"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"\npcr2 = \"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\"\n";

#[test]
fn without_an_attestation_policy_the_parent_refuses_to_start() {
    let err = Config::load(None, &Overrides::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("attestation: configure exactly one"),
        "{err}"
    );
}

#[test]
fn dev_attestation_settings_need_dev_mode() {
    let err = Config::load(
        Some("[attestation]\ndev_accept_any_pcrs = true\n"),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("needs attestation.dev_mode"),
        "{err}"
    );
    let ok = Config::load(
        Some("[attestation]\ndev_mode = true\ndev_accept_any_pcrs = true\n"),
        &Overrides::default(),
    )
    .unwrap();
    assert!(matches!(ok.attestation.pcrs, PcrSource::DevAny));
    let err = Config::load(
        Some("[attestation]\nmanifest = \"/nonexistent.json\"\n"),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("go together") && err.to_string().contains("no such file"),
        "{err}"
    );
    let bad = PCRS.replace("aaaa", "zz");
    let err = Config::load(Some(&bad), &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("96 hex digits"), "{err}");
}

#[test]
fn defaults_are_valid_and_production_shaped() {
    let c = Config::load(Some(PCRS), &Overrides::default()).unwrap();
    assert_eq!(
        c.enclave.address,
        Address::Vsock {
            cid: 16,
            port: 5000
        }
    );
    assert_eq!(c.nats.queue_group, "vettid-enclave");
    assert!(c.enclave_id.starts_with("dev-"));
}

#[test]
fn overrides_win_over_the_file() {
    let file =
        "[nats]\nurl = \"nats://10.0.0.1:4222\"\n[enclave]\naddress = \"tcp://127.0.0.1:1\"\n";
    let o = Overrides {
        nats_url: Some("nats://127.0.0.1:9".into()),
        ..Default::default()
    };
    let c = Config::load(Some(&format!("{file}{PCRS}")), &o).unwrap();
    assert_eq!(c.nats.url, "nats://127.0.0.1:9");
    assert_eq!(c.enclave.address.to_string(), "tcp://127.0.0.1:1");
}

#[test]
fn unknown_keys_are_refused() {
    let err = Config::load(Some("[nats]\nurll = \"x\"\n"), &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    let err = Config::load(Some("handlers = 1\n"), &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let file = r#"
        enclave_id = "a.b"
        [nats]
        url = "http://x"
        credentials_file = "/nonexistent/nats.creds"
        queue_group = ""
        [enclave]
        address = "vsock://x"
        request_timeout_ms = 0
        reconnect_initial_ms = 5000
        reconnect_max_ms = 10
        [http]
        listen = "localhost"
        [limits]
        max_in_flight = 0
    "#;
    let err = Config::load(Some(file), &Overrides::default()).unwrap_err();
    assert!(err.problems.len() >= 9, "{err}");
    for needle in [
        "nats.url",
        "credentials_file",
        "queue_group",
        "enclave.address",
        "request_timeout_ms",
        "reconnect_initial_ms",
        "http.listen",
        "max_in_flight",
        "enclave_id",
    ] {
        assert!(
            err.to_string().contains(needle),
            "missing {needle} in {err}"
        );
    }
}

#[test]
fn without_a_kms_section_nothing_listens() {
    let c = Config::load(Some(PCRS), &Overrides::default()).unwrap();
    assert!(c.kms.is_none());
}

#[test]
fn kms_section_is_read_with_defaults() {
    let c = Config::load(Some(&format!("{PCRS}[kms]\n")), &Overrides::default()).unwrap();
    let kms = c.kms.unwrap();
    assert_eq!(kms.tunnel_listen.to_string(), "vsock://any:8000");
    assert!(kms.allow.is_empty(), "empty allow-list refuses everything");
    assert_eq!(kms.max_tunnels, crate::kms::config::DEFAULT_MAX_TUNNELS);

    let file = format!(
        "{PCRS}[kms]\ntunnel_listen = \"tcp://127.0.0.1:0\"\n\
         allow = [\"KMS.us-east-1.amazonaws.com:443\", \"127.0.0.1:4566\"]\n\
         connect_timeout_ms = 250\nmax_tunnels = 3\n"
    );
    let kms = Config::load(Some(&file), &Overrides::default())
        .unwrap()
        .kms
        .unwrap();
    let allow: Vec<String> = kms.allow.iter().map(ToString::to_string).collect();
    assert_eq!(allow, ["127.0.0.1:4566", "kms.us-east-1.amazonaws.com:443"]);
    assert_eq!(kms.connect_timeout, Duration::from_millis(250));
    assert_eq!(kms.max_tunnels, 3);
}

#[test]
fn bad_kms_settings_are_all_reported() {
    let file = format!(
        "{PCRS}[kms]\ntunnel_listen = \"vsock://16\"\n\
         allow = [\"*.amazonaws.com:443\", \"kms.amazonaws.com\", \"kms.amazonaws.com:0\", \
         \"kms.amazonaws.com:70000\", \"kms amazonaws.com:443\", \"\", \"[::1]:443\", \
         \"a.com:443\", \"A.com:443\"]\n\
         connect_timeout_ms = 0\nmax_tunnels = 0\n"
    );
    let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
    let text = err.to_string();
    for needle in [
        "kms.tunnel_listen",
        "\"*.amazonaws.com:443\": wildcards are not allowed",
        "\"kms.amazonaws.com\": expected HOST:PORT",
        "\"kms.amazonaws.com:0\": port must be",
        "\"kms.amazonaws.com:70000\": port must be",
        "\"kms amazonaws.com:443\": host must be",
        "\"\": expected HOST:PORT",
        "\"[::1]:443\": host must be",
        "\"A.com:443\": listed twice",
        "kms.connect_timeout_ms = 0",
        "kms.max_tunnels = 0",
    ] {
        assert!(text.contains(needle), "missing {needle} in {err}");
    }
    assert_eq!(err.problems.len(), 11, "{err}");
}

#[test]
fn kms_resolve_pins_allowed_hosts_only() {
    let file = format!(
        "{PCRS}[kms]\nallow = [\"kms.vettid.test:4443\"]\n\
         resolve = {{ \"KMS.vettid.test\" = \"127.0.0.1\" }}\n"
    );
    let kms = Config::load(Some(&file), &Overrides::default())
        .unwrap()
        .kms
        .unwrap();
    assert_eq!(
        kms.resolve.get("kms.vettid.test").map(ToString::to_string),
        Some("127.0.0.1".into())
    );
    let file = format!(
        "{PCRS}[kms]\nallow = [\"kms.vettid.test:4443\"]\n\
         resolve = {{ \"other.test\" = \"127.0.0.1\", \"kms.vettid.test\" = \"nope\" }}\n"
    );
    let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
    assert!(err
        .to_string()
        .contains("not the host of any kms.allow entry"));
    assert!(err.to_string().contains("not an IP address"));
}

#[test]
fn unknown_kms_keys_are_refused() {
    let file = format!("{PCRS}[kms]\nallowed = [\"kms.amazonaws.com:443\"]\n");
    let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    let file = format!("{PCRS}[kms]\nallow = \"kms.amazonaws.com:443\"\n");
    let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("invalid type"), "{err}");
}

#[test]
fn malformed_toml_is_a_clear_error() {
    let err = Config::load(Some("[nats\nurl="), &Overrides::default()).unwrap_err();
    assert!(
        err.to_string().starts_with("invalid configuration"),
        "{err}"
    );
    let err = Config::load(
        Some("[limits]\nmax_in_flight = \"many\""),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("max_in_flight") || err.to_string().contains("invalid type"),
        "{err}"
    );
}
