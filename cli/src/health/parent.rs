//! The parent's part of `vettid health`: `GET /health` and `GET /ready` on its HTTP endpoint
//! (`[http] listen`, loopback in production), and the parent and storage sections built from
//! them. The KMS tunnel fields are read in [`super::sections`].

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::report::{Section, Status};
use crate::error::CliError;

/// Largest `/health` body read: today's is under 2 KiB; anything near this is not our parent.
const MAX_BODY: usize = 64 * 1024;

/// A validated `--parent-url`: `http://HOST[:PORT]`, nothing else.
#[derive(Debug, Clone)]
pub struct ParentUrl {
    host: String,
    port: u16,
    authority: String,
}

impl ParentUrl {
    /// Parses `--parent-url`.
    ///
    /// # Errors
    /// [`CliError::Usage`] naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, CliError> {
        let bad = |why: &str| {
            CliError::Usage(format!(
                "--parent-url {text:?}: {why} (expected http://HOST:PORT, the parent's [http] listen)"
            ))
        };
        let uri: Uri = text.parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => return Err(bad("the parent serves plain http:// only")),
            None => return Err(bad("no http:// scheme")),
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user information is not supported"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("give the base URL only; /health and /ready are added"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        // `port_u16` is None both without a port and with one that is not a u16.
        let has_port = authority
            .as_str()
            .rsplit_once(']')
            .map_or(authority.as_str(), |(_, p)| p);
        let port = match authority.port_u16() {
            Some(0) => return Err(bad("port 0")),
            Some(p) => p,
            None if has_port.contains(':') => return Err(bad("bad port")),
            None => 80,
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            authority: authority.as_str().to_owned(),
        })
    }
}

impl std::fmt::Display for ParentUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}", self.authority)
    }
}

/// What the parent answered.
#[derive(Debug, Clone)]
pub struct ParentReply {
    /// `/health`'s status code (200, or 503 when unhealthy; the body explains either way).
    pub health_status: u16,
    /// `/health`'s JSON.
    pub health: Value,
    /// `/ready` answered 200.
    pub ready: bool,
}

/// Fetches `/health` and `/ready` concurrently, both within `limit`.
///
/// # Errors
/// A text saying what failed (connect, timeout, a body that is not JSON).
pub async fn fetch(url: &ParentUrl, limit: Duration) -> Result<ParentReply, String> {
    let both = async { tokio::try_join!(get(url, "/health"), get(url, "/ready")) };
    let ((health_status, body), (ready_status, _)) = tokio::time::timeout(limit, both)
        .await
        .map_err(|_| format!("no answer within {} ms", limit.as_millis()))??;
    let health = serde_json::from_slice(&body).map_err(|e| {
        format!("/health answered {health_status} with a body that is not JSON: {e}")
    })?;
    Ok(ParentReply {
        health_status,
        health,
        ready: ready_status == 200,
    })
}

/// One `GET` on its own connection.
async fn get(url: &ParentUrl, path: &str) -> Result<(u16, Bytes), String> {
    let stream = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, url.authority.as_str())
        .header(hyper::header::USER_AGENT, "vettid-cli")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building the request: {e}"))?;
    // The sender lives in this future only: once it is done the connection winds down, so
    // joining both (rather than spawning the connection) leaves no task behind.
    let exchange = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("GET {path}: reading the body: {e}"))?
            .to_bytes();
        Ok((status, body))
    };
    let (result, _) = tokio::join!(exchange, conn);
    result
}

fn flag(v: &Value, key: &str) -> Option<bool> {
    v.get(key).and_then(Value::as_bool)
}

/// The parent section: DOWN when unreachable or not healthy (NATS or the enclave link down),
/// DEGRADED when healthy but not ready (not subscribed, or draining).
pub fn section(url: &ParentUrl, reply: &Result<ParentReply, String>) -> Section {
    let reply = match reply {
        Err(e) => {
            return Section::new(Status::Down, format!("{url}: {e}"))
                .with("url", url.to_string())
                .with("error", e.clone())
        }
        Ok(r) => r,
    };
    let h = &reply.health;
    let healthy = flag(h, "healthy") == Some(true) && reply.health_status == 200;
    let subscribed = flag(h, "subscribed").unwrap_or(false);
    let draining = flag(h, "draining").unwrap_or(false);
    let link_up = flag(h, "enclave_connected").unwrap_or(false);
    let verified = flag(h, "enclave_attestation_verified").unwrap_or(link_up);
    let against = h["attestation_policy"]["against"].as_str().unwrap_or("?");
    let dev_root = flag(&h["attestation_policy"], "dev_trust_root") == Some(true);
    let last_error = h.get("enclave_last_error").cloned().unwrap_or(Value::Null);

    let mut parts = Vec::new();
    let status = if !healthy {
        let reasons: Vec<&str> = h["reasons"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        parts.push(if reasons.is_empty() {
            format!("unhealthy (HTTP {})", reply.health_status)
        } else {
            format!("unhealthy: {}", reasons.join("; "))
        });
        Status::Down
    } else if !reply.ready {
        parts.push(match (subscribed, draining) {
            (_, true) => "not ready: draining".to_string(),
            (false, _) => "not ready: not subscribed to NATS".to_string(),
            _ => "not ready".to_string(),
        });
        Status::Degraded
    } else {
        Status::Ok
    };
    if healthy {
        parts.push("nats connected".into());
        parts.push(format!(
            "enclave link up, attestation {} against {against}{}",
            if verified { "verified" } else { "NOT verified" },
            if dev_root { " (dev root)" } else { "" }
        ));
        if reply.ready {
            parts.push("subscribed, ready".into());
        }
    }
    let summary = format!("{url}: {}", parts.join(", "));
    Section::new(status, summary)
        .with("url", url.to_string())
        .with("healthy", healthy)
        .with("ready", reply.ready)
        .with("nats_connected", h["nats_connected"].clone())
        .with("enclave_connected", link_up)
        .with("attestation_verified", verified)
        .with("attestation_policy", h["attestation_policy"].clone())
        .with("attested", h["enclave_attested"].clone())
        .with("subscribed", subscribed)
        .with("draining", draining)
        .with("last_error", last_error)
        .with("reasons", h["reasons"].clone())
        .with("enclave_id", h["enclave_id"].clone())
        .with("version", h["version"].clone())
        .with("uptime_seconds", h["uptime_seconds"].clone())
}

/// The storage section, from the parent's probe: DEGRADED when unreachable. Not checked without
/// the parent (only it can reach the store).
pub fn storage(reply: Option<&Result<ParentReply, String>>) -> Section {
    let reply = match reply {
        None => return Section::new(Status::NotChecked, "not checked (--no-parent)"),
        Some(Err(_)) => {
            return Section::new(Status::NotChecked, "unknown: the parent did not answer")
        }
        Some(Ok(r)) => r,
    };
    let s = &reply.health["storage"];
    let Some(reachable) = flag(s, "reachable") else {
        return Section::new(
            Status::NotChecked,
            "unknown: this vettid-parent does not report storage",
        );
    };
    let backend = s["backend"].as_str().unwrap_or("?");
    let fields = |sec: Section| {
        sec.with("backend", backend)
            .with("reachable", reachable)
            .with("error", s["error"].clone())
            .with("checked_ms_ago", s["checked_ms_ago"].clone())
    };
    if reachable {
        let ago = s["checked_ms_ago"].as_u64().unwrap_or(0);
        fields(Section::new(
            Status::Ok,
            format!("{backend} reachable (probed {ago} ms ago)"),
        ))
    } else {
        let e = s["error"].as_str().unwrap_or("no reason given");
        fields(Section::new(
            Status::Degraded,
            format!("{backend} unreachable: {e}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parent_url_accepts_http_base_urls_only() {
        let u = ParentUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 8080));
        assert_eq!(u.to_string(), "http://127.0.0.1:8080");
        assert_eq!(ParentUrl::parse("http://localhost/").unwrap().port, 80);
        assert_eq!(ParentUrl::parse("http://[::1]:9000").unwrap().host, "::1");
        for bad in [
            "127.0.0.1:8080",
            "https://127.0.0.1:8080",
            "http://127.0.0.1:8080/health",
            "http://127.0.0.1:8080/?x=1",
            "http://user@127.0.0.1:8080",
            "http://",
            "not a url",
            "http://127.0.0.1:99999",
            "http://127.0.0.1:0",
            "http://[::1]:x",
        ] {
            let e = ParentUrl::parse(bad).expect_err(bad);
            assert!(matches!(e, CliError::Usage(_)), "{bad}: {e}");
            assert!(e.to_string().contains("--parent-url"), "{e}");
        }
    }

    fn reply(health: Value, status: u16, ready: bool) -> Result<ParentReply, String> {
        Ok(ParentReply {
            health_status: status,
            health,
            ready,
        })
    }

    #[test]
    fn parent_section_grades_liveness_and_readiness() {
        let url = ParentUrl::parse("http://127.0.0.1:8080").unwrap();
        let up = json!({"healthy": true, "nats_connected": true, "enclave_connected": true,
            "enclave_attestation_verified": true, "subscribed": true, "draining": false,
            "attestation_policy": {"against": "manifest", "dev_trust_root": false}});
        let s = section(&url, &reply(up.clone(), 200, true));
        assert_eq!(s.status, Status::Ok);
        assert!(
            s.summary.contains("attestation verified against manifest"),
            "{}",
            s.summary
        );

        let mut draining = up.clone();
        draining["draining"] = true.into();
        let s = section(&url, &reply(draining, 200, false));
        assert_eq!(s.status, Status::Degraded);
        assert!(s.summary.contains("draining"));

        let down = json!({"healthy": false, "reasons": ["enclave not connected: refused"]});
        let s = section(&url, &reply(down, 503, false));
        assert_eq!(s.status, Status::Down);
        assert!(s.summary.contains("enclave not connected: refused"));

        let s = section(&url, &Err("cannot connect: refused".into()));
        assert_eq!(s.status, Status::Down);
    }

    #[test]
    fn storage_section_follows_the_probe() {
        assert_eq!(storage(None).status, Status::NotChecked);
        let ok = json!({"storage": {"backend": "fs", "reachable": true, "checked_ms_ago": 5}});
        assert_eq!(storage(Some(&reply(ok, 200, true))).status, Status::Ok);
        let bad = json!({"storage": {"backend": "s3", "reachable": false,
            "error": "HeadBucket b: 404 NotFound"}});
        let s = storage(Some(&reply(bad, 200, true)));
        assert_eq!(s.status, Status::Degraded);
        assert_eq!(s.summary, "s3 unreachable: HeadBucket b: 404 NotFound");
        let old = json!({"healthy": true});
        assert_eq!(
            storage(Some(&reply(old, 200, true))).status,
            Status::NotChecked
        );
    }
}
