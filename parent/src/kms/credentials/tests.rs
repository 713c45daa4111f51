//! The credential source with injected providers: static, counting, failing and hanging.

use std::sync::atomic::{AtomicUsize, Ordering};

use aws_credential_types::provider::{error::CredentialsError, future};

use super::*;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLETOKEN";

fn source(provider: impl ProvideCredentials + 'static) -> (CredentialSource, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let s = CredentialSource::new(SharedCredentialsProvider::new(provider), metrics.clone());
    (s, metrics)
}

fn role_credentials(expires_in: Duration) -> Credentials {
    Credentials::new(
        "ASIAEXAMPLE",
        SECRET,
        Some(TOKEN.into()),
        Some(SystemTime::now() + expires_in),
        "test",
    )
}

/// Hands out `creds` and counts the calls.
#[derive(Debug)]
struct Counting {
    creds: Credentials,
    calls: Arc<AtomicUsize>,
}

impl ProvideCredentials for Counting {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        self.calls.fetch_add(1, Ordering::SeqCst);
        future::ProvideCredentials::ready(Ok(self.creds.clone()))
    }
}

fn counting(creds: Credentials) -> (CredentialSource, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let (s, _) = source(Counting {
        creds,
        calls: calls.clone(),
    });
    (s, calls)
}

#[derive(Debug)]
struct Failing;

impl ProvideCredentials for Failing {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
            "no instance role attached",
        )))
    }
}

#[derive(Debug)]
struct Hanging;

impl ProvideCredentials for Hanging {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(std::future::pending())
    }
}

#[tokio::test]
async fn response_carries_the_providers_credentials() {
    let creds = role_credentials(Duration::from_secs(3600));
    let expiry = unix_ms(creds.expiry().unwrap());
    let (s, metrics) = source(creds);
    let resp = answer(Some(&s), None).await.unwrap();
    let Response::AwsCredentials(got) = &resp else {
        panic!("{resp:?}")
    };
    assert_eq!(got.access_key_id, "ASIAEXAMPLE");
    assert_eq!(got.secret_access_key, SECRET);
    assert_eq!(got.session_token.as_deref(), Some(TOKEN));
    assert_eq!(got.expires_at_ms, Some(expiry));

    let text = metrics.render();
    assert!(
        text.contains(r#"vettid_aws_credentials_served_total{outcome="ok"} 1"#),
        "{text}"
    );
    let gauge = text
        .lines()
        .find_map(|l| l.strip_prefix("vettid_aws_credentials_expiry_seconds "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!((3500.0..=3600.0).contains(&gauge), "{gauge}");
}

#[tokio::test]
async fn debug_output_never_shows_the_secret_or_token() {
    let (s, _) = source(role_credentials(Duration::from_secs(3600)));
    let resp = answer(Some(&s), None).await.unwrap();
    for shown in [format!("{resp:?}"), format!("{resp:#?}"), format!("{s:?}")] {
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(!shown.contains(TOKEN), "{shown}");
    }
    assert!(format!("{resp:?}").contains("<redacted>"));
}

#[tokio::test]
async fn static_credentials_have_no_expiry() {
    let (s, metrics) = source(Credentials::new("AKIAEXAMPLE", SECRET, None, None, "env"));
    let got = s.fetch(None).await.unwrap();
    assert_eq!(got.session_token, None);
    assert_eq!(got.expires_at_ms, None);
    assert!(metrics
        .render()
        .contains("vettid_aws_credentials_expiry_seconds 0.0"));
}

#[tokio::test]
async fn without_kms_config_the_enclave_is_told_plainly() {
    let err = answer(None, None).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert_eq!(err.message, NOT_CONFIGURED);
}

#[tokio::test]
async fn provider_failure_is_a_bland_unavailable_and_counted() {
    let (s, metrics) = source(Failing);
    let err = s.fetch(None).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(!err.message.contains("instance role"), "{err}");
    assert!(metrics
        .render()
        .contains(r#"vettid_aws_credentials_served_total{outcome="error"} 1"#));
}

#[tokio::test(start_paused = true)]
async fn a_hanging_provider_is_cut_off_at_the_enclaves_deadline() {
    let (s, _) = source(Hanging);
    let deadline = Instant::now() + Duration::from_millis(200);
    let err = s.fetch(Some(deadline)).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(err.message.contains("timed out"), "{err}");
}

#[tokio::test]
async fn fresh_credentials_are_reused_and_expiring_ones_refetched() {
    let (s, calls) = counting(role_credentials(Duration::from_secs(3600)));
    s.fetch(None).await.unwrap();
    s.fetch(None).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "an hour left: cached");

    let (s, calls) = counting(role_credentials(REFRESH_BEFORE_EXPIRY / 2));
    s.fetch(None).await.unwrap();
    s.fetch(None).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2, "inside the refresh window");

    let (s, calls) = counting(Credentials::new("AKIA", SECRET, None, None, "env"));
    s.fetch(None).await.unwrap();
    s.fetch(None).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "long-lived: cached");
}
