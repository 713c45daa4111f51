//! The real `S3Store` (aws-sdk-s3) against moto 5.x's S3 (`moto_server`, installed by
//! `scripts/test`): conditional writes, not-found, pagination, key prefix, and a server that dies
//! or hangs mid-test (Timeout within the timeout, never a hang).
//!
//! moto 5.x evaluates `If-None-Match: *` and `If-Match` on PutObject and `If-Match` on
//! DeleteObject (412 on mismatch; If-Match on a missing key is 404 NoSuchKey), so the S3 mapping
//! of every condition is exercised here. What moto does *not* give is atomicity: it checks the
//! condition and then writes without a lock, so concurrent conditional writers can both win on
//! moto. Real S3 evaluates conditions atomically; the atomic semantics are proven on the
//! filesystem store (`parent/src/storage/tests.rs`, in-process and cross-process races).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use vettid_parent::metrics::Metrics;
use vettid_parent::storage::s3::{sdk, S3Store};
use vettid_parent::storage::{
    DeleteResult, ListPrefix, ObjectKey, ObjectStore, PutCondition, PutResult, StorageError,
    StorageRelay, Store,
};
use vettid_protocol::{ErrorCode, StorageRequest, StorageResponse};
use vettid_tests::proc::{free_port, Child};

const BUCKET: &str = "vettid-test";
const TIMEOUT: Duration = Duration::from_secs(3);
const MAX_OBJECT: u64 = 1024 * 1024;

/// moto on a free port; killed on drop.
struct Moto {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Moto {
    fn start() -> Self {
        let bin = which("moto_server").unwrap_or_else(|| {
            panic!(
                "moto_server not found on PATH. Run scripts/test, which installs it \
                 (pip install 'moto[server]>=5,<6'), or install it yourself."
            )
        });
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let started = Instant::now();
        let child = Child::spawn("moto_server", cmd, &dir.path().join("moto.log"));
        // Ready when the control API answers 200 (the S3 backend itself loads on first use).
        let deadline = started + Duration::from_secs(30);
        while !matches!(vettid_tests::http::get(port, "/moto-api/"), Ok((200, _))) {
            assert!(
                Instant::now() < deadline,
                "moto did not start within 30 s:\n{}",
                child.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "moto_server start-up: {} ms (to first 200 on /moto-api/)",
            started.elapsed().as_millis()
        );
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The store as production builds it, but with static credentials and path-style addressing.
fn store_at(url: &str, key_prefix: &str) -> S3Store {
    let builder = sdk::config::Builder::new()
        .behavior_version(sdk::config::BehaviorVersion::latest())
        .region(sdk::config::Region::new("us-east-1"))
        .credentials_provider(sdk::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .endpoint_url(url)
        .force_path_style(true);
    S3Store::new(builder, BUCKET, key_prefix, TIMEOUT, MAX_OBJECT)
}

fn key(k: &str) -> ObjectKey {
    ObjectKey::parse(k).unwrap()
}

async fn put(s: &S3Store, k: &str, body: &str, c: PutCondition) -> PutResult {
    s.put(&key(k), Bytes::from(body.to_owned()), &c)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_against_moto() {
    let mut moto = Moto::start();
    let s = store_at(&moto.url(), "");
    let t = Instant::now();
    s.client()
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("create bucket");
    eprintln!(
        "first S3 call (create bucket): {} ms",
        t.elapsed().as_millis()
    );

    // Create, then Create again: the second is a conflict (If-None-Match: * → 412).
    let PutResult::Written(v1) = put(&s, "vaults/g/state", "one", PutCondition::Create).await
    else {
        panic!()
    };
    assert_eq!(
        put(&s, "vaults/g/state", "two", PutCondition::Create).await,
        PutResult::Conflict
    );

    // If-Match with the right ETag writes; with a stale one conflicts; on a missing key conflicts.
    let PutResult::Written(v2) = put(
        &s,
        "vaults/g/state",
        "two",
        PutCondition::IfMatch(v1.clone()),
    )
    .await
    else {
        panic!("If-Match with the current ETag must write")
    };
    assert_ne!(v1, v2);
    assert_eq!(
        put(
            &s,
            "vaults/g/state",
            "three",
            PutCondition::IfMatch(v1.clone())
        )
        .await,
        PutResult::Conflict
    );
    assert_eq!(
        put(&s, "vaults/g/none", "x", PutCondition::IfMatch(v1.clone())).await,
        PutResult::Conflict
    );
    assert_eq!(
        s.get(&key("vaults/g/none")).await.unwrap(),
        None,
        "If-Match must not create"
    );

    // Get / Head return the current ETag; NotFound is a result.
    let got = s.get(&key("vaults/g/state")).await.unwrap().unwrap();
    assert_eq!((got.body.as_ref(), &got.etag), (&b"two"[..], &v2));
    let meta = s.head(&key("vaults/g/state")).await.unwrap().unwrap();
    assert_eq!((meta.etag.as_str(), meta.size), (v2.as_str(), 3));
    assert_eq!(s.head(&key("vaults/g/missing")).await.unwrap(), None);

    // Delete: conditional on the ETag, NotFound when absent.
    assert_eq!(
        s.delete(&key("vaults/g/state"), Some(&v1)).await.unwrap(),
        DeleteResult::Conflict
    );
    assert_eq!(
        s.delete(&key("vaults/g/state"), Some(&v2)).await.unwrap(),
        DeleteResult::Deleted
    );
    assert_eq!(s.get(&key("vaults/g/state")).await.unwrap(), None);
    assert_eq!(
        s.delete(&key("vaults/g/state"), None).await.unwrap(),
        DeleteResult::NotFound
    );

    // List: 5 objects, 2 per page → 3 pages, in key order, only under the prefix.
    for k in [
        "vaults/p/e",
        "vaults/p/a",
        "vaults/p/c/x",
        "vaults/p/b",
        "vaults/p/c-d",
        "vaults/q/other",
    ] {
        put(&s, k, k, PutCondition::Create).await;
    }
    let prefix = ListPrefix::parse("vaults/p/").unwrap();
    let (mut keys, mut token, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = s.list(&prefix, token.as_deref(), 2).await.unwrap();
        pages += 1;
        assert!(page.objects.len() <= 2);
        keys.extend(page.objects.into_iter().map(|o| o.key));
        token = page.continuation;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(
        keys,
        [
            "vaults/p/a",
            "vaults/p/b",
            "vaults/p/c-d",
            "vaults/p/c/x",
            "vaults/p/e"
        ]
    );
    assert_eq!(pages, 3);

    // A key prefix is added on the way in and removed on the way out.
    let prefixed = store_at(&moto.url(), "prod/");
    put(&prefixed, "vaults/p/a", "prefixed", PutCondition::Create).await;
    let page = prefixed.list(&prefix, None, 10).await.unwrap();
    assert_eq!(page.objects.len(), 1);
    assert_eq!(page.objects[0].key, "vaults/p/a");
    assert_eq!(
        s.get(&key("vaults/p/a"))
            .await
            .unwrap()
            .unwrap()
            .body
            .as_ref(),
        b"vaults/p/a"
    );

    // Through the relay, as the enclave sees it: protocol answers and counted outcomes.
    let metrics = Arc::new(Metrics::new());
    let relay = StorageRelay::new(
        Store::S3(store_at(&moto.url(), "")),
        TIMEOUT,
        metrics.clone(),
    );
    let create = StorageRequest::Put {
        key: "vaults/r/x".into(),
        body: Bytes::from_static(b"r"),
        condition: PutCondition::Create,
    };
    assert!(matches!(
        relay.serve(create.clone(), None).await,
        Ok(StorageResponse::Written { .. })
    ));
    assert_eq!(
        relay.serve(create, None).await,
        Ok(StorageResponse::Conflict)
    );
    let get = StorageRequest::Get {
        key: "vaults/r/none".into(),
    };
    assert_eq!(relay.serve(get, None).await, Ok(StorageResponse::NotFound));
    let hostile = StorageRequest::Get {
        key: "vaults/../../etc/passwd".into(),
    };
    assert_eq!(
        relay.serve(hostile, None).await.unwrap_err().code,
        ErrorCode::Rejected
    );

    // Concurrent conditional writers on moto (informational: moto is not atomic, see the docs).
    let PutResult::Written(base) = put(&s, "vaults/race/state", "base", PutCondition::Create).await
    else {
        panic!()
    };
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (s, c) = (s.clone(), PutCondition::IfMatch(base.clone()));
        tasks.spawn(async move {
            s.put(&key("vaults/race/state"), Bytes::from(format!("w{i}")), &c)
                .await
        });
    }
    let mut won = 0;
    while let Some(r) = tasks.join_next().await {
        won += usize::from(matches!(r.unwrap(), Ok(PutResult::Written(_))));
    }
    eprintln!(
        "moto: {won} of 20 concurrent If-Match writers from one ETag won (real S3: exactly 1)"
    );
    assert!(won >= 1);

    // The server dies: every call fails promptly with Unavailable, never hangs.
    moto.child.kill();
    let t = Instant::now();
    let err = relay
        .serve(
            StorageRequest::Get {
                key: "vaults/r/x".into(),
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
    assert!(
        t.elapsed() <= TIMEOUT + Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    eprintln!(
        "dead server → {:?} after {} ms",
        err.message,
        t.elapsed().as_millis()
    );
    assert!(
        metrics
            .render()
            .contains(r#"op="Get",outcome="Unavailable""#),
        "{}",
        metrics.render()
    );
}

/// A server that accepts connections and never answers: the storage timeout bounds the call.
#[tokio::test]
async fn a_hanging_endpoint_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let s = store_at(&url, "");
    let t = Instant::now();
    let err = s
        .put(
            &key("vaults/g/x"),
            Bytes::from_static(b"x"),
            &PutCondition::Create,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::Unavailable(_) | StorageError::Timeout),
        "{err:?}"
    );
    assert!(
        t.elapsed() <= TIMEOUT + Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    // Through the relay, whose own timeout is the outer bound.
    let relay = StorageRelay::new(
        Store::S3(s),
        Duration::from_millis(500),
        Arc::new(Metrics::new()),
    );
    let t = Instant::now();
    let err = relay
        .serve(
            StorageRequest::Head {
                key: "vaults/g/x".into(),
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        (err.code, err.message.as_str()),
        (ErrorCode::Timeout, "object store timed out")
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    hold.abort();
}
