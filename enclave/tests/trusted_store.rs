//! The enclave's trusted store client end to end, on this machine: the real `aws-sdk-dynamodb`
//! with TLS verified in the "enclave" (this process), through its own in-enclave forwarder and a
//! test tunnel speaking the parent's preamble, to dynalite behind HTTPS for `dynamodb.vettid.test`
//! (`scripts/lib/dynalite-tls.js`), signed with credentials sealed under the local KMS key and
//! opened with an attested Recipient (mock NSM). Nothing here opens a vsock socket.

mod kms_harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kms::primitives::Blob;
use kms_harness::{key_arn, world, LocalKms, Tunnel, ACCOUNT, HOST_AKID, KEY};
use vettid_enclave::kms::Kms;
use vettid_enclave::sealing::BoxFuture;
use vettid_enclave::trusted::credentials::{context, CredentialsLoadError, SealedSource};
use vettid_enclave::trusted::{TrustedConfig, TrustedError, TrustedFlags, TrustedStore};

const HOST: &str = "dynamodb.vettid.test";
const AKID: &str = "AKIAVETTIDTRUSTED01";
const TABLE: &str = "trusted";
/// dynalite's account in table ARNs.
const TABLE_ARN: &str = "arn:aws:dynamodb:us-east-1:000000000000:table/trusted";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn dynalite_modules() -> PathBuf {
    let dir = std::env::var_os("VETTID_DYNALITE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/vettid/dynalite")
        });
    if !dir.join("node_modules/dynalite/package.json").exists() {
        let ok = Command::new("bash")
            .arg("-c")
            .arg(". scripts/lib/common.sh && ensure_dynalite")
            .current_dir(repo_root())
            .env("VETTID_DYNALITE_DIR", &dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "ensure_dynalite failed");
    }
    dir.join("node_modules")
}

/// dynalite (in memory) behind TLS for [`HOST`], accepting only [`AKID`]; killed on drop.
struct Dynalite {
    child: std::process::Child,
    port: u16,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dynalite {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        vettid_local_kms::tls::issue_files(&dir.path().join("ca"), HOST, &tls).unwrap();
        let log = dir.path().join("dynalite.log");
        let started = Instant::now();
        let child = Command::new("node")
            .arg(repo_root().join("scripts/lib/dynalite-tls.js"))
            .arg("127.0.0.1")
            .arg("0")
            .arg(tls.join("cert.pem"))
            .arg(tls.join("key.pem"))
            .env("NODE_PATH", dynalite_modules())
            .env("VETTID_DYNAMO_ACCESS_KEYS", AKID)
            .env("VETTID_EXIT_WITH_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .spawn()
            .expect("node");
        let port = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(p) = text
                .lines()
                .find_map(|l| l.strip_prefix("listening on https://127.0.0.1:"))
            {
                break p.trim().parse().unwrap();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "dynalite did not start: {text}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        eprintln!("dynalite (TLS) listening after {:?}", started.elapsed());
        let d = Self {
            child,
            port,
            ca: dir.path().join("ca/ca.pem"),
            _dir: dir,
        };
        d
    }

    fn client(&self) -> aws_sdk_dynamodb::Client {
        use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
        use aws_smithy_http_client::tls::{
            self, rustls_provider::CryptoMode, TlsContext, TrustStore,
        };
        let trust = TrustStore::empty()
            .with_native_roots(false)
            .with_pem_certificate(std::fs::read(&self.ca).unwrap());
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(
                TlsContext::builder()
                    .with_trust_store(trust)
                    .build()
                    .unwrap(),
            )
            .build_with_resolver(vettid_enclave::kms::http::LoopbackResolver::new(HOST));
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new(AKID, "s", None, None, "test"))
                .endpoint_url(format!("https://{HOST}:{}", self.port))
                .http_client(http)
                .build(),
        )
    }

    async fn create_table(&self) {
        use aws_sdk_dynamodb::types::*;
        self.client()
            .create_table()
            .table_name(TABLE)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap();
    }
}

impl Drop for Dynalite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sealed object as the parent would hand it over (or not); replaceable (an operator's
/// rotation), counting reads.
struct Fixed {
    blob: std::sync::Mutex<Option<Vec<u8>>>,
    reads: std::sync::atomic::AtomicUsize,
}

impl Fixed {
    fn new(blob: Option<Vec<u8>>) -> Arc<Self> {
        Arc::new(Self {
            blob: std::sync::Mutex::new(blob),
            reads: std::sync::atomic::AtomicUsize::new(0),
        })
    }
}

impl SealedSource for Fixed {
    fn fetch(&self) -> BoxFuture<'_, Result<Option<Vec<u8>>, CredentialsLoadError>> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move { Ok(self.blob.lock().unwrap().clone()) })
    }
}

/// Lets the account's administrator (the operator) `Encrypt` under the key besides the attested
/// enclave's Decrypt: how the operator seals the credentials.
async fn allow_operator_encrypt(local: &LocalKms, pcr0: &str) {
    let mut policy = kms_harness::safe_policy(&[pcr0.to_owned()]);
    policy["Statement"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
        "Sid": "OperatorSealsTrustedStoreCredentials", "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
        "Action": "kms:Encrypt", "Resource": "*"}));
    local.put_policy(KEY, &policy).await;
}

/// `Encrypt` of the credentials JSON under the table's context, as the operator does it.
async fn seal(local: &LocalKms, json: &str, table_arn: &str) -> Vec<u8> {
    let mut req = local
        .admin
        .encrypt()
        .key_id(key_arn(KEY))
        .plaintext(Blob::new(json.as_bytes().to_vec()));
    for (k, v) in context(table_arn) {
        req = req.encryption_context(k, v);
    }
    req.send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap()
        .into_inner()
}

fn creds(akid: &str) -> String {
    serde_json::json!({"access_key_id": akid, "secret_access_key": "dev-secret"}).to_string()
}

async fn store(
    dynamo_port: u16,
    ca: &Path,
    tunnel: &Tunnel,
    source: Arc<Fixed>,
    kms: Arc<Kms>,
) -> TrustedStore {
    let flags = TrustedFlags {
        trusted_store_endpoint: Some(format!("https://{HOST}:{dynamo_port}")),
        trusted_store_region: Some("us-east-1".into()),
        trusted_store_table: Some(TABLE_ARN.into()),
        trusted_store_ca_file: Some(ca.to_owned()),
        trusted_store_forward_port: Some(0),
    };
    let config = TrustedConfig::from_flags(&flags, true).unwrap().unwrap();
    TrustedStore::start(config, tunnel.address.parse().unwrap(), source, kms)
        .await
        .unwrap()
}

struct World {
    local: LocalKms,
    tunnel: Tunnel,
    kms: Arc<Kms>,
    dynamo: Dynalite,
    _roots: tempfile::TempDir,
}

async fn setup() -> World {
    let (local, tunnel, kms, roots) = world().await;
    let nsm = kms_harness::mock_nsm(roots.path(), b"enclave-release-1");
    allow_operator_encrypt(&local, &kms_harness::pcr0_hex(&nsm)).await;
    let dynamo = Dynalite::start();
    dynamo.create_table().await;
    World {
        local,
        tunnel,
        kms: Arc::new(kms),
        dynamo,
        _roots: roots,
    }
}

impl World {
    async fn store_with(&self, blob: Option<Vec<u8>>) -> TrustedStore {
        self.store_from(Fixed::new(blob)).await
    }

    async fn store_from(&self, source: Arc<Fixed>) -> TrustedStore {
        store(
            self.dynamo.port,
            &self.dynamo.ca,
            &self.tunnel,
            source,
            self.kms.clone(),
        )
        .await
    }

    async fn store(&self) -> TrustedStore {
        let blob = seal(&self.local, &creds(AKID), TABLE_ARN).await;
        self.store_with(Some(blob)).await
    }
}

#[tokio::test]
async fn the_sealed_credentials_open_in_the_attested_enclave_and_nowhere_else() {
    let w = setup().await;
    let json = creds(AKID);
    let blob = seal(&w.local, &json, TABLE_ARN).await;
    // The enclave: Decrypt with a Recipient, the plaintext opened here.
    let opened = w
        .kms
        .decrypt_bytes(&blob, &context(TABLE_ARN), 4096)
        .await
        .unwrap();
    assert_eq!(opened.as_slice(), json.as_bytes());
    // The host, with the operator's own account or its own, without a Recipient: refused.
    for client in [w.local.admin.clone(), w.local.client_as(HOST_AKID)] {
        let mut req = client
            .decrypt()
            .key_id(key_arn(KEY))
            .ciphertext_blob(Blob::new(blob.clone()));
        for (k, v) in context(TABLE_ARN) {
            req = req.encryption_context(k, v);
        }
        let err = req.send().await.unwrap_err();
        use aws_sdk_kms::error::ProvideErrorMetadata as _;
        let code = err.code().unwrap_or_default();
        assert!(
            code == "AccessDeniedException" || code == "NotFoundException",
            "{err:?}"
        );
    }
    // Under another table's context it does not open, even in the enclave.
    let other = "arn:aws:dynamodb:us-east-1:000000000000:table/other";
    assert!(w
        .kms
        .decrypt_bytes(&blob, &context(other), 4096)
        .await
        .is_err());
}

#[tokio::test]
async fn every_call_has_the_documented_semantics() {
    let w = setup().await;
    let s = w.store().await;
    assert_eq!(s.get("vault/a").await, Ok(None));
    assert_eq!(s.swap("vault/a", None, b"one").await, Ok(1));
    assert_eq!(
        s.swap("vault/a", None, b"again").await,
        Err(TrustedError::Conflict)
    );
    assert_eq!(s.swap("vault/a", Some(1), b"two").await, Ok(2));
    assert_eq!(
        s.swap("vault/a", Some(1), b"stale").await,
        Err(TrustedError::Conflict)
    );
    assert_eq!(
        s.swap("vault/b", Some(1), b"none").await,
        Err(TrustedError::Conflict)
    );
    let item = s.get("vault/a").await.unwrap().unwrap();
    assert_eq!((item.rev, item.body.as_slice()), (2, &b"two"[..]));
    assert_eq!(s.get("vault/b").await, Ok(None));

    // create: once, with the TTL attribute.
    assert_eq!(
        s.create("att/k1", b"key", Some(1_900_000_000)).await,
        Ok(())
    );
    assert_eq!(
        s.create("att/k1", b"other", None).await,
        Err(TrustedError::Conflict)
    );
    let raw = w
        .dynamo
        .client()
        .get_item()
        .table_name(TABLE)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("att/k1".into()),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(raw["ttl"].as_n().unwrap(), "1900000000");
    assert_eq!(raw["rev"].as_n().unwrap(), "1");

    // take: the body once; of two racing takes exactly one gets it.
    assert_eq!(s.take("att/k1").await, Ok(Some(b"key".to_vec())));
    assert_eq!(s.take("att/k1").await, Ok(None));
    s.create("att/k2", b"once", None).await.unwrap();
    let (x, y) = tokio::join!(s.take("att/k2"), s.take("att/k2"));
    let mut got = vec![x.unwrap(), y.unwrap()];
    got.sort();
    assert_eq!(got, vec![None, Some(b"once".to_vec())]);

    // Racing swaps from one rev: one wins, the other is a Conflict.
    let (x, y) = tokio::join!(
        s.swap("vault/a", Some(2), b"x"),
        s.swap("vault/a", Some(2), b"y")
    );
    let mut results = vec![x, y];
    results.sort_by_key(|r| r.is_err());
    assert_eq!(results, vec![Ok(3), Err(TrustedError::Conflict)]);

    // Bad input is typed.
    assert_eq!(s.get("").await, Err(TrustedError::Malformed));
    assert_eq!(
        s.swap("vault/a", Some(u64::MAX), b"").await,
        Err(TrustedError::Malformed)
    );
    assert_eq!(
        s.create("big", &vec![0u8; 400 * 1024], None).await,
        Err(TrustedError::Malformed)
    );
    // An item somebody else wrote without our schema.
    w.dynamo
        .client()
        .put_item()
        .table_name(TABLE)
        .item(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("alien".into()),
        )
        .item(
            "rev",
            aws_sdk_dynamodb::types::AttributeValue::S("one".into()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(s.get("alien").await, Err(TrustedError::Malformed));

    let report = s.report();
    assert_eq!(report.mode, "trusted-store");
    assert_eq!(report.table.as_deref(), Some(TABLE_ARN));
    assert!(report.credentials_loaded);
    assert!(report.outcomes["ok"] >= 10, "{report:?}");
    assert!(report.outcomes["TrustedStoreConflict"] >= 4, "{report:?}");
    assert_eq!(report.last_error, Some("TrustedStoreMalformed"));

    // Latency through the tunnel, warm (pooled TLS connection).
    let rounds = 20u32;
    let started = Instant::now();
    for _ in 0..rounds {
        s.get("vault/a").await.unwrap();
    }
    let get = started.elapsed() / rounds;
    let mut rev = s.get("vault/a").await.unwrap().unwrap().rev;
    let started = Instant::now();
    for _ in 0..rounds {
        rev = s.swap("vault/a", Some(rev), b"bench").await.unwrap();
    }
    let update = started.elapsed() / rounds;
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    eprintln!("trusted store ({profile} build, dynalite, TLS via tunnel): GetItem {get:?}, UpdateItem {update:?}");
    // Every connection went through the tunnel to the table's real host and port.
    let port = w.dynamo.port;
    assert!(w
        .tunnel
        .targets()
        .iter()
        .any(|t| *t == format!("{HOST}:{port}")));
}

#[tokio::test]
async fn a_table_that_is_down_is_unavailable_and_nothing_is_uncertain() {
    let mut w = setup().await;
    let s = w.store().await;
    s.swap("vault/a", None, b"one").await.unwrap();
    let _ = w.dynamo.child.kill();
    let _ = w.dynamo.child.wait();
    let started = Instant::now();
    assert_eq!(s.get("vault/a").await, Err(TrustedError::Unavailable));
    // The connection never came up: a write is certainly not applied.
    assert_eq!(
        s.swap("vault/a", Some(1), b"two").await,
        Err(TrustedError::Unavailable)
    );
    assert_eq!(s.take("vault/a").await, Err(TrustedError::Unavailable));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.report().last_error, Some("TrustedStoreUnavailable"));
}

#[tokio::test]
async fn unknown_credentials_are_denied_and_unopenable_ones_are_credentials_errors() {
    let w = setup().await;
    // Credentials the table does not know.
    let blob = seal(&w.local, &creds("AKIANOTTHEPRINCIPAL"), TABLE_ARN).await;
    let s = w.store_with(Some(blob)).await;
    assert_eq!(s.get("vault/a").await, Err(TrustedError::Denied));
    assert_eq!(
        s.swap("vault/a", None, b"x").await,
        Err(TrustedError::Denied)
    );
    assert_eq!(s.report().last_error, Some("TrustedStoreDenied"));

    // No object, another table's blob, junk, not-JSON: Credentials, and nothing is sent.
    let other_table = seal(
        &w.local,
        &creds(AKID),
        "arn:aws:dynamodb:us-east-1:000000000000:table/other",
    )
    .await;
    let not_json = seal(&w.local, "not json", TABLE_ARN).await;
    for blob in [
        None,
        Some(other_table),
        Some(b"junk".to_vec()),
        Some(not_json),
    ] {
        let s = w.store_with(blob).await;
        assert_eq!(s.get("vault/a").await, Err(TrustedError::Credentials));
        assert_eq!(
            s.create("vault/a", b"x", None).await,
            Err(TrustedError::Credentials)
        );
        assert!(!s.report().credentials_loaded);
    }
}

#[tokio::test]
async fn no_time_left_means_not_started() {
    let w = setup().await;
    let s = w.store().await;
    let past = Instant::now();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let r = vettid_enclave::deadline::scope(Some(past), async {
        (s.get("vault/a").await, s.swap("vault/a", None, b"x").await)
    })
    .await;
    assert_eq!(r, (Err(TrustedError::NoTime), Err(TrustedError::NoTime)));
    // Nothing was written.
    assert_eq!(s.get("vault/a").await, Ok(None));
}

#[tokio::test]
async fn credentials_are_read_once_and_again_after_a_denial() {
    let w = setup().await;
    // An operator sealed a key the table no longer knows, then rotates to the current one.
    let source = Fixed::new(Some(
        seal(&w.local, &creds("AKIAOLDROTATEDKEY"), TABLE_ARN).await,
    ));
    let s = w.store_from(source.clone()).await;
    assert_eq!(s.get("vault/a").await, Err(TrustedError::Denied));
    assert_eq!(source.reads.load(std::sync::atomic::Ordering::SeqCst), 1);
    *source.blob.lock().unwrap() = Some(seal(&w.local, &creds(AKID), TABLE_ARN).await);
    // The denial dropped the cached key: the next call opens the object again and succeeds.
    assert_eq!(s.get("vault/a").await, Ok(None));
    assert_eq!(source.reads.load(std::sync::atomic::Ordering::SeqCst), 2);
    // Working credentials are cached: more calls, no more reads.
    for _ in 0..5 {
        s.swap("vault/a", None, b"x").await.ok();
        s.get("vault/a").await.unwrap();
    }
    assert_eq!(source.reads.load(std::sync::atomic::Ordering::SeqCst), 2);
}
