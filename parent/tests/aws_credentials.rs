//! `ToParent::AwsCredentials` over a real link (a Unix socket pair, the enclave side played by a
//! bare link connection): the parent's handler answers from an injected static provider when
//! `[kms]` is configured, advertises the capabilities, and refuses plainly when it is not.

use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use tokio::net::UnixStream;
use vettid_link::{Connection, ConnectionTask, Handler, RequestCtx};
use vettid_parent::config::{EnclaveConfig, KmsConfig};
use vettid_parent::enclave_link::{link_config, ParentHandler};
use vettid_parent::kms::{AllowList, CredentialSource};
use vettid_parent::metrics::Metrics;
use vettid_parent::storage::{StorageRelay, Store};
use vettid_protocol::{EnclaveSide, ErrorCode, Response, Role, ToEnclave, ToParent, WireError};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// The enclave side serves nothing in these tests.
struct Nothing;

impl Handler for Nothing {
    type Side = EnclaveSide;

    async fn handle(
        &self,
        _request: ToEnclave,
        _ctx: RequestCtx<EnclaveSide>,
    ) -> Result<Response, WireError> {
        Err(WireError::new(ErrorCode::UnknownRequest, "not served here"))
    }
}

fn enclave_config() -> EnclaveConfig {
    EnclaveConfig {
        address: "tcp://127.0.0.1:1".parse().unwrap(),
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(1),
        reconnect_initial: Duration::from_millis(50),
        reconnect_max: Duration::from_secs(1),
        max_frame_len: vettid_protocol::DEFAULT_MAX_FRAME_LEN,
    }
}

fn kms_config() -> KmsConfig {
    KmsConfig {
        tunnel_listen: "tcp://127.0.0.1:0".parse().unwrap(),
        allow: AllowList::default(),
        connect_timeout: Duration::from_secs(1),
        max_tunnels: 1,
        resolve: Default::default(),
    }
}

/// Links an enclave-side connection to a parent handler; returns the enclave's connection.
async fn link(
    handler: ParentHandler,
    kms: Option<&KmsConfig>,
) -> (Connection<EnclaveSide>, ConnectionTask, ConnectionTask) {
    let (p, e) = UnixStream::pair().unwrap();
    let (rp, re) = tokio::join!(
        Connection::establish(p, link_config(&enclave_config(), kms), Arc::new(handler)),
        Connection::establish(
            e,
            vettid_link::LinkConfig::new(Role::Enclave),
            Arc::new(Nothing)
        )
    );
    let ((_parent, parent_task), (enclave, enclave_task)) = (rp.unwrap(), re.unwrap());
    (enclave, enclave_task, parent_task)
}

fn handler(dir: &tempfile::TempDir, metrics: Arc<Metrics>) -> ParentHandler {
    let store = vettid_parent::storage::fs::FsStore::open(dir.path(), 1024).unwrap();
    let relay = StorageRelay::new(Store::Fs(store), Duration::from_secs(1), metrics.clone());
    let (publish, _) = tokio::sync::mpsc::channel(1);
    ParentHandler::new(publish, metrics, relay)
}

#[tokio::test]
async fn configured_parent_lends_its_credentials_and_says_so_in_hello() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let provider =
        SharedCredentialsProvider::new(Credentials::new("AKIAEXAMPLE", SECRET, None, None, "test"));
    let source = CredentialSource::new(provider, metrics.clone());
    let kms = kms_config();
    let (enclave, _e, _p) = link(
        handler(&dir, metrics.clone()).with_credentials(source),
        Some(&kms),
    )
    .await;
    let caps = &enclave.peer_hello().capabilities;
    assert!(caps.iter().any(|c| c == "aws_credentials"), "{caps:?}");
    assert!(caps.iter().any(|c| c == "kms_tunnel"), "{caps:?}");

    let resp = enclave
        .request(ToParent::AwsCredentials, Duration::from_secs(5))
        .await
        .unwrap();
    let Response::AwsCredentials(creds) = &resp else {
        panic!("{resp:?}")
    };
    assert_eq!(creds.access_key_id, "AKIAEXAMPLE");
    assert_eq!(creds.secret_access_key, SECRET);
    assert_eq!(creds.session_token, None);
    assert_eq!(creds.expires_at_ms, None);
    assert!(!format!("{resp:?}").contains(SECRET));
    assert!(metrics
        .render()
        .contains(r#"vettid_aws_credentials_served_total{outcome="ok"} 1"#));
}

#[tokio::test]
async fn unconfigured_parent_refuses_credentials_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let (enclave, _e, _p) = link(handler(&dir, metrics), None).await;
    let caps = &enclave.peer_hello().capabilities;
    assert!(caps.iter().any(|c| c == "aws_credentials"), "{caps:?}");
    assert!(!caps.iter().any(|c| c == "kms_tunnel"), "{caps:?}");

    let err = enclave
        .request(ToParent::AwsCredentials, Duration::from_secs(5))
        .await
        .unwrap_err();
    match err {
        vettid_link::RpcError::Remote(e) => {
            assert_eq!(e.code, ErrorCode::Unavailable);
            assert_eq!(e.message, "kms not configured on the parent");
        }
        other => panic!("{other}"),
    }
}
