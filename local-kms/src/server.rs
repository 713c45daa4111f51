//! The HTTP side: one POST endpoint speaking the KMS JSON 1.1 protocol, bounded, with graceful shutdown.
//!
//! With TLS (`serve_tls`), each connection first completes a handshake within [`READ_TIMEOUT`]; a client that
//! fails it (untrusted certificate, plain HTTP to the TLS port) is logged and dropped.
//!
//! Shutdown order: stop accepting (the listener is dropped), ask every connection to finish its request in
//! flight and close (hyper's `graceful_shutdown`, which closes idle keep-alive connections at once), wait up
//! to [`SHUTDOWN_GRACE`], then abort whatever is left and say so in the log.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::error::KmsError;
use crate::kms::Kms;
use crate::ops;

/// Largest request body: KMS's largest request (a 6 KiB blob plus an attestation document of at most
/// 32 KiB, base64) is far below; 1 MiB bounds what one request can make us buffer.
pub const MAX_BODY: usize = 1 << 20;
/// Most connections served at once; more are closed on accept (tests open a handful).
pub const MAX_CONNECTIONS: usize = 256;
/// Time allowed for a client to send the request headers, and separately the body.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may run after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The protocol's content type.
pub const CONTENT_TYPE_JSON: &str = "application/x-amz-json-1.1";

/// Serves plain HTTP on `listener` until `shutdown` resolves, then drains (see the module docs).
pub async fn serve(listener: TcpListener, kms: Arc<Kms>, shutdown: impl Future<Output = ()>) {
    serve_tls(listener, kms, None, shutdown).await;
}

/// Serves `listener` (HTTPS when `tls` is given, plain HTTP otherwise) until `shutdown` resolves, then
/// drains (see the module docs).
pub async fn serve_tls(
    listener: TcpListener,
    kms: Arc<Kms>,
    tls: Option<Arc<ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(max = MAX_CONNECTIONS, "connection limit reached; closing new connection");
                    continue;
                };
                let kms = kms.clone();
                let stop = stop_rx.clone();
                let acceptor = acceptor.clone();
                conns.spawn(async move {
                    let _slot = slot;
                    match acceptor {
                        None => serve_connection(stream, kms, stop).await,
                        Some(acceptor) => {
                            match tokio::time::timeout(READ_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => serve_connection(tls, kms, stop).await,
                                Ok(Err(e)) => tracing::info!(error = %e, "TLS handshake failed"),
                                Err(_) => tracing::info!("TLS handshake timed out"),
                            }
                        }
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let in_flight = conns.len();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(remaining = conns.len(), grace = ?SHUTDOWN_GRACE, "shutdown grace over; aborting connections");
        conns.shutdown().await;
    }
    tracing::info!(in_flight, "local KMS stopped");
}

/// Serves HTTP/1.1 on one connection until it closes, or finishes the request in flight once `stop` changes.
async fn serve_connection<I>(io: I, kms: Arc<Kms>, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let kms = kms.clone();
        async move { Ok::<_, Infallible>(respond(kms, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// One request → one response; never fails (errors become KMS error bodies).
async fn respond(kms: Arc<Kms>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let result = handle(kms, req, &target).await;
    let (status, body) = match &result {
        Ok(value) => (StatusCode::OK, value.clone()),
        Err(e) => {
            tracing::info!(target = %target, error = e.type_name(), message = %e, "request refused");
            (e.status(), e.body())
        }
    };
    if result.is_ok() {
        tracing::debug!(target = %target, "request served");
    }
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_JSON));
    response
}

/// The access key id in `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/kms/aws4_request, …`.
fn access_key_id(authorization: &str) -> Option<String> {
    let credential = authorization.split_once("Credential=")?.1;
    let akid = credential.split('/').next()?;
    (!akid.is_empty() && akid.len() <= 128).then(|| akid.to_owned())
}

async fn handle(
    kms: Arc<Kms>,
    req: Request<Incoming>,
    target: &str,
) -> Result<serde_json::Value, KmsError> {
    if req.method() != Method::POST {
        return Err(KmsError::UnknownOperation("Only POST is supported".into()));
    }
    if target.is_empty() {
        return Err(KmsError::UnknownOperation(
            "Missing X-Amz-Target header".into(),
        ));
    }
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/x-amz-json-1.") {
        return Err(KmsError::Serialization(format!(
            "Content-Type must be {CONTENT_TYPE_JSON}"
        )));
    }
    // SigV4 signatures are not verified (loopback, tests): the access key id only says which account the
    // request is attributed to (`--credential-account`).
    let access_key_id = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(access_key_id);
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || KmsError::TooLarge(format!("Request body is larger than {MAX_BODY} bytes"));
    if declared.is_some_and(|len| len > MAX_BODY as u64) {
        return Err(too_large());
    }
    let body = tokio::time::timeout(
        READ_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await
    .map_err(|_| KmsError::Serialization("Timed out reading the request body".into()))?
    .map_err(|e| {
        if e.downcast_ref::<LengthLimitError>().is_some() {
            too_large()
        } else {
            KmsError::Serialization("Could not read the request body".into())
        }
    })?
    .to_bytes();
    let target = target.to_owned();
    let caller = kms.caller(access_key_id.as_deref());
    tokio::task::spawn_blocking(move || ops::handle(&kms, &caller, &target, &body))
        .await
        .map_err(|_| KmsError::Internal("operation panicked".into()))?
}
