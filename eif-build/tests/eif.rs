//! `build`, `pcrs` and `describe`, end to end through the real binary, checked against an EIF parser and
//! a PCR computation written here from the format's documentation (no image-format crate code).

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn build(inputs: &Inputs, out: &Path, extra: &[&str]) -> (Vec<u8>, Value) {
    let json = run_ok(inputs.command("build").arg("--out").arg(out).args(extra));
    (std::fs::read(out).unwrap(), json)
}

fn pcr(json: &Value, i: u8) -> String {
    json["Measurements"][format!("PCR{i}")]
        .as_str()
        .unwrap_or_else(|| panic!("no PCR{i} in {json}"))
        .to_owned()
}

#[test]
fn two_independent_builds_are_byte_identical() {
    // Separate directories, separately written inputs, different file mtimes: only the contents count.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ia = Inputs::write(a.path());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let ib = Inputs::write(b.path());
    let (img_a, json_a) = build(&ia, &a.path().join("x.eif"), &[]);
    let (img_b, json_b) = build(&ib, &b.path().join("y.eif"), &[]);
    assert!(img_a == img_b, "images differ");
    assert_eq!(json_a, json_b);
    assert_eq!(json_a["Measurements"]["HashAlgorithm"], "Sha384 { ... }");
}

#[test]
fn pcrs_match_an_independent_computation_of_the_sha384_chain() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = Inputs::write(dir.path());
    let (img, json) = build(&inputs, &dir.path().join("i.eif"), &[]);
    let p = parse_eif(&img);

    // Layout: kernel, cmdline, metadata, bootstrap ramdisk, application ramdisk.
    let types: Vec<u16> = p.sections.iter().map(|(t, _)| *t).collect();
    assert_eq!(types, [KERNEL, CMDLINE_SECTION, METADATA, RAMDISK, RAMDISK]);
    assert_eq!(p.version, 4);
    assert_eq!(usize::from(p.num_sections), p.sections.len());
    assert_eq!(p.of_type(KERNEL)[0], std::fs::read(&inputs.kernel).unwrap());
    assert_eq!(p.of_type(CMDLINE_SECTION)[0], CMDLINE.as_bytes());
    // Header offsets/sizes point at the section headers and data sizes.
    let mut at = HEADER_LEN as u64;
    for (i, (_, data)) in p.sections.iter().enumerate() {
        assert_eq!((p.offsets[i], p.sizes[i]), (at, data.len() as u64));
        at += 12 + data.len() as u64;
    }
    // CRC-32 over everything but the CRC field itself.
    let crc_input = [&img[..HEADER_LEN - 4], &img[HEADER_LEN..]].concat();
    assert_eq!(p.crc, crc32(&crc_input));

    let [p0, p1, p2] = independent_pcrs(&p);
    assert_eq!([pcr(&json, 0), pcr(&json, 1), pcr(&json, 2)], [p0, p1, p2]);
    assert!(json["Measurements"].get("PCR8").is_none());

    // `pcrs` gives the same values without writing anything.
    let listed = run_ok(&mut inputs.command("pcrs"));
    assert_eq!(listed, json);
}

#[test]
fn the_binary_is_in_the_application_ramdisk_so_it_changes_pcr2_not_pcr1() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = Inputs::write(dir.path());
    let (img, before) = build(&inputs, &dir.path().join("a.eif"), &[]);

    let app = parse_eif(&img).of_type(RAMDISK)[1].to_vec();
    let entries = parse_cpio(&app);
    let bin = entries
        .iter()
        .find(|e| e.name == "rootfs/usr/local/bin/vettid-enclave")
        .expect("binary in the application ramdisk");
    assert_eq!(bin.data, std::fs::read(&inputs.binary).unwrap());
    assert_eq!(bin.mode, 0o100_755);

    let mut binary = std::fs::read(&inputs.binary).unwrap();
    binary[1000] ^= 1;
    std::fs::write(&inputs.binary, binary).unwrap();
    let (_, after) = build(&inputs, &dir.path().join("b.eif"), &[]);
    assert_eq!(
        pcr(&before, 1),
        pcr(&after, 1),
        "PCR1 (kernel + bootstrap) must not move"
    );
    assert_ne!(
        pcr(&before, 2),
        pcr(&after, 2),
        "PCR2 (application) must move"
    );
    assert_ne!(
        pcr(&before, 0),
        pcr(&after, 0),
        "PCR0 (whole image) must move"
    );

    // A different init is bootstrap: PCR1 moves, PCR2 does not.
    std::fs::write(&inputs.init, b"another init").unwrap();
    let (_, init_changed) = build(&inputs, &dir.path().join("c.eif"), &[]);
    assert_ne!(pcr(&after, 1), pcr(&init_changed, 1));
    assert_eq!(pcr(&after, 2), pcr(&init_changed, 2));
}

#[test]
fn ramdisks_are_fixed_cpios_stamped_with_source_date_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = Inputs::write(dir.path());
    let ramdisks = |args: &[&str], env: Option<&str>, name: &str| {
        let out = dir.path().join(name);
        let mut cmd = inputs.command("build");
        cmd.arg("--out").arg(&out).args(args);
        if let Some(v) = env {
            cmd.env("SOURCE_DATE_EPOCH", v);
        }
        let json = run_ok(&mut cmd);
        let img = std::fs::read(&out).unwrap();
        let p = parse_eif(&img);
        let r: Vec<Vec<u8>> = p.of_type(RAMDISK).iter().map(|r| r.to_vec()).collect();
        (r, json)
    };
    let (r0, j0) = ramdisks(&[], None, "0.eif");
    let (r0b, _) = ramdisks(&[], Some("0"), "0b.eif");
    assert_eq!(r0, r0b, "unset and SOURCE_DATE_EPOCH=0 are the same");

    for cpio in &r0 {
        let entries = parse_cpio(cpio);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        let mut sorted = names[1..].to_vec();
        sorted.sort_unstable();
        assert_eq!(names[0], ".");
        assert_eq!(names[1..], sorted[..], "sorted by path");
        for (i, e) in entries.iter().enumerate() {
            assert_eq!((e.uid, e.gid, e.mtime), (0, 0, 0), "{}", e.name);
            assert_eq!(e.ino as usize, i + 1, "{}", e.name);
        }
    }
    let boot: Vec<String> = parse_cpio(&r0[0]).into_iter().map(|e| e.name).collect();
    assert_eq!(boot, [".", "dev", "dev/console", "init"]);

    let (r1, j1) = ramdisks(&[], Some("1700000000"), "1.eif");
    let (r1b, j1b) = ramdisks(&["--source-date-epoch", "1700000000"], None, "1b.eif");
    assert_eq!((&r1, &j1), (&r1b, &j1b), "flag and env var agree");
    assert_ne!(r0[0], r1[0]);
    assert_ne!(r0[1], r1[1]);
    assert!(parse_cpio(&r1[1]).iter().all(|e| e.mtime == 1_700_000_000));
    assert_ne!(pcr(&j0, 1), pcr(&j1, 1));
    assert_ne!(pcr(&j0, 2), pcr(&j1, 2));
}

#[test]
fn describe_prints_the_build_pcrs_in_nitro_cli_shape() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = Inputs::write(dir.path());
    let out = dir.path().join("d.eif");
    let (_, built) = build(
        &inputs,
        &out,
        &["--source-date-epoch", "86400", "--image-version", "1.2.3"],
    );
    let d = run_ok(bin().arg("describe").arg(&out));
    assert_eq!(d["EifVersion"], 4);
    assert_eq!(d["Measurements"], built["Measurements"]);
    assert_eq!(d["IsSigned"], false);
    assert_eq!(d["CheckCRC"], true);
    assert!(d.get("SignatureCheck").is_none());
    assert_eq!(d["ImageVersion"], "1.2.3");
    assert_eq!(d["Metadata"]["BuildTime"], "1970-01-02T00:00:00+00:00");
    assert_eq!(d["Metadata"]["BuildTool"], "eif-build");
    let kernel_sha = sha2_hex(&std::fs::read(&inputs.kernel).unwrap());
    assert_eq!(d["Metadata"]["VettidInputsSha384"]["kernel"], kernel_sha);
}

fn sha2_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha384::digest(data))
}

/// A P-384 key and a self-signed certificate for it, as PEM files in `dir`.
fn signing_material(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    use openssl::{
        asn1::Asn1Time, bn::BigNum, ec, hash::MessageDigest, nid::Nid, pkey::PKey, x509,
    };
    let group = ec::EcGroup::from_curve_name(Nid::SECP384R1).unwrap();
    let key = PKey::from_ec_key(ec::EcKey::generate(&group).unwrap()).unwrap();
    let mut name = x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "eif-build test signer")
        .unwrap();
    let name = name.build();
    let mut b = x509::X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha384()).unwrap();
    let cert = b.build();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.to_pem().unwrap()).unwrap();
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    (cert_path, key_path, cert.to_der().unwrap())
}

#[test]
fn a_signed_image_adds_pcr8_and_describe_checks_the_signature() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = Inputs::write(dir.path());
    let (cert, key, cert_der) = signing_material(dir.path());
    let (_, unsigned) = build(&inputs, &dir.path().join("u.eif"), &[]);
    let out = dir.path().join("s.eif");
    let sign_args = [
        "--signing-certificate",
        cert.to_str().unwrap(),
        "--private-key",
        key.to_str().unwrap(),
    ];
    let (img, signed) = build(&inputs, &out, &sign_args);

    assert_eq!(pcr(&signed, 8), extend_from_zero(&cert_der));
    for i in 0..3 {
        assert_eq!(
            pcr(&signed, i),
            pcr(&unsigned, i),
            "signing moves no PCR0-2"
        );
    }
    let p = parse_eif(&img);
    assert_eq!(p.of_type(SIGNATURE).len(), 1);
    assert_eq!(independent_pcrs(&p)[0], pcr(&signed, 0));

    let d = run_ok(bin().arg("describe").arg(&out));
    assert_eq!(d["Measurements"], signed["Measurements"]);
    assert_eq!(d["IsSigned"], true);
    assert_eq!(d["SignatureCheck"], true);
    assert_eq!(d["CheckCRC"], true);
    assert!(d["SigningCertificate"].is_object());

    let listed = run_ok(inputs.command("pcrs").args(sign_args));
    assert_eq!(listed, signed);
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_inputs_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = Inputs::write(dir.path());
    let out = dir.path().join("never.eif");

    let mut missing = Inputs::write(dir.path());
    missing.kernel = dir.path().join("no-such-bzImage");
    let e = run_err(missing.command("build").arg("--out").arg(&out));
    assert!(
        stderr(&e).contains("cannot open kernel file"),
        "{}",
        stderr(&e)
    );
    assert!(stderr(&e).contains("no-such-bzImage"), "{}", stderr(&e));
    assert!(!out.exists(), "no image left behind");

    std::fs::write(dir.path().join("bad.pem"), "not a key").unwrap();
    let (cert, _, _) = signing_material(dir.path());
    let e = run_err(
        inputs
            .command("build")
            .arg("--out")
            .arg(&out)
            .arg("--signing-certificate")
            .arg(&cert)
            .arg("--private-key")
            .arg(dir.path().join("bad.pem")),
    );
    assert!(
        stderr(&e).contains("is not a PEM private key"),
        "{}",
        stderr(&e)
    );

    // A valid key that is not the certificate's.
    let other = tempfile::tempdir().unwrap();
    let (_, other_key, _) = signing_material(other.path());
    let e = run_err(
        inputs
            .command("build")
            .arg("--out")
            .arg(&out)
            .arg("--signing-certificate")
            .arg(&cert)
            .arg("--private-key")
            .arg(&other_key),
    );
    assert!(
        stderr(&e).contains("does not match the certificate"),
        "{}",
        stderr(&e)
    );

    let e = run_err(
        inputs
            .command("build")
            .arg("--out")
            .arg(&out)
            .args(["--env", "NOVALUE"]),
    );
    assert!(stderr(&e).contains("is not KEY=VALUE"), "{}", stderr(&e));

    let e = run_err(
        inputs
            .command("build")
            .arg("--out")
            .arg(&out)
            .args(["--source-date-epoch", "yesterday"]),
    );
    assert!(stderr(&e).contains("source-date-epoch"), "{}", stderr(&e));

    // A binary built with the mock NSM is refused unless the image is explicitly a dev image.
    let mut mock_bin = std::fs::read(&inputs.binary).unwrap();
    mock_bin.extend_from_slice(vettid_nsm::mock::MOCK_CN_MARKER.as_bytes());
    let mock_inputs = Inputs::write(&dir.path().join("mock").tap_mkdir());
    std::fs::write(&mock_inputs.binary, mock_bin).unwrap();
    let e = run_err(mock_inputs.command("build").arg("--out").arg(&out));
    assert!(
        stderr(&e).contains("contains the mock NSM"),
        "{}",
        stderr(&e)
    );
    run_ok(mock_inputs.command("pcrs").arg("--allow-mock"));

    let not_eif = dir.path().join("not.eif");
    std::fs::write(&not_eif, vec![0u8; 600]).unwrap();
    let e = run_err(bin().arg("describe").arg(&not_eif));
    assert!(stderr(&e).contains("not an EIF"), "{}", stderr(&e));

    let good = dir.path().join("good.eif");
    let (img, _) = build(&inputs, &good, &[]);
    std::fs::write(&not_eif, &img[..img.len() - 10]).unwrap();
    let e = run_err(bin().arg("describe").arg(&not_eif));
    assert!(
        stderr(&e).contains("past the end of the file"),
        "{}",
        stderr(&e)
    );
}
