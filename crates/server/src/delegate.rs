//! Forwarding snapshot requests that reach a follower to the leader's sidecar, as the original
//! does: the etcd leader's client URL gives the host, this server's port the port; the leader's
//! `/healthz` must answer 200; then the request is replayed there and its answer returned.
//! Any failure on the way is a 405, as in the original.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::SiblingError;
use crate::state::Shared;

/// The leader's sidecar base URL (`<scheme>://<leader host>:<our port>`).
///
/// # Errors
/// etcd cannot be asked, or has no leader.
pub async fn leader_sidecar(s: &Shared) -> Result<String, SiblingError> {
    let mut etcd = s.etcd.clone();
    etcd.endpoints.truncate(1);
    let mut client = etcd.connect().await?;
    let timeout = s.etcd.connection_timeout;
    let status = tokio::time::timeout(timeout, client.status())
        .await
        .map_err(|_| SiblingError::Timeout("status"))?
        .map_err(|source| SiblingError::EtcdCall {
            op: "status",
            source,
        })?;
    let leader = status.leader();
    if leader == 0 {
        return Err(SiblingError::NoLeader);
    }
    let members = tokio::time::timeout(timeout, client.member_list())
        .await
        .map_err(|_| SiblingError::Timeout("member list"))?
        .map_err(|source| SiblingError::EtcdCall {
            op: "member list",
            source,
        })?;
    let url = members
        .members()
        .iter()
        .find(|m| m.id() == leader)
        .and_then(|m| m.client_urls().first())
        .ok_or(SiblingError::LeaderUnknown(leader))?;
    let (scheme, host) = scheme_and_host(url)?;
    let scheme = if s.tls { "https" } else { scheme };
    Ok(format!("{scheme}://{host}:{}", s.port))
}

/// The scheme and host of a URL such as `https://10.0.0.1:2379/`: a sibling service of etcd
/// (a sidecar, etcd-wrapper) is on the same host at its own port.
pub(crate) fn scheme_and_host(url: &str) -> Result<(&str, &str), SiblingError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| SiblingError::NoScheme(url.to_owned()))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    Ok((scheme, host))
}

/// An HTTP client for sibling services: HTTPS checked against etcd's CA when the server
/// serves HTTPS.
pub(crate) fn http_client(s: &Shared) -> Result<reqwest::Client, SiblingError> {
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(600));
    if s.tls
        && let Some(ca) = &s.etcd.ca_file
    {
        let bad = |message: String| SiblingError::Ca {
            path: ca.clone(),
            message,
        };
        let pem = std::fs::read(ca).map_err(|e| bad(e.to_string()))?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| bad(e.to_string()))?;
        b = b.add_root_certificate(cert);
    }
    if let Some((cert, key)) = &s.client_identity {
        // The leader verifies client certificates: present this sidecar's own.
        let bad = |message: String| SiblingError::Ca {
            path: cert.clone(),
            message,
        };
        let mut pem = std::fs::read(cert).map_err(|e| bad(e.to_string()))?;
        pem.extend(std::fs::read(key).map_err(|e| bad(e.to_string()))?);
        b = b.identity(reqwest::Identity::from_pem(&pem).map_err(|e| bad(e.to_string()))?);
    }
    b.build().map_err(|source| SiblingError::Http {
        url: "(building the client)".into(),
        source,
    })
}

/// Replays `req` on the leader's sidecar.
pub async fn forward(s: &Shared, req: Request) -> Response {
    match try_forward(s, req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(
                "Cannot forward the request to the backup leader: {}",
                etcdbr::error_chain(&e)
            );
            StatusCode::METHOD_NOT_ALLOWED.into_response()
        }
    }
}

async fn try_forward(s: &Shared, req: Request) -> Result<Response, SiblingError> {
    let base = leader_sidecar(s).await?;
    let client = http_client(s)?;
    let url = format!("{base}/healthz");
    // The caller's token, when the API needs one, is the leader's too.
    let authorization = req.headers().get(header::AUTHORIZATION).cloned();
    let health = client
        .get(&url)
        .send()
        .await
        .map_err(|source| SiblingError::Http { url, source })?;
    if health.status() != reqwest::StatusCode::OK {
        return Err(SiblingError::Unhealthy {
            base,
            status: health.status().as_u16(),
        });
    }
    tracing::info!("backup-restore leader with url [{base}] is healthy");
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let forward = |e: &dyn std::fmt::Display| SiblingError::Forward(e.to_string());
    let method =
        reqwest::Method::from_bytes(req.method().as_str().as_bytes()).map_err(|e| forward(&e))?;
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .map_err(|e| forward(&e))?;
    let url = format!("{base}{path}");
    let mut request = client.request(method, &url).body(body.to_vec());
    if let Some(a) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, a.as_bytes());
    }
    let resp = request.send().await.map_err(|source| SiblingError::Http {
        url: url.clone(),
        source,
    })?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let ctype = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = resp
        .bytes()
        .await
        .map_err(|source| SiblingError::Http { url, source })?;
    let mut out = Response::builder().status(status);
    if let Some(c) = ctype {
        out = out.header(header::CONTENT_TYPE, c);
    }
    out.body(Body::from(bytes)).map_err(|e| forward(&e))
}
