//! The HTTP API with the original's paths, status codes and bodies (reference §7.1):
//!
//! | path | answer |
//! |---|---|
//! | `/initialization/start[?mode=full\|sanity]` | 200, empty; starts initialization when the status is `New` |
//! | `/initialization/status` | 200, `New`/`Progress`/`Successful`/`Failed`; a final state reads once |
//! | `/snapshot/full[?final=true]` | 200 + snapshot JSON; 400 bad `final`; 500 failure; 405 no snapshotter |
//! | `/snapshot/delta` | 200 + snapshot JSON or `null`; 500; 405 |
//! | `/snapshot/latest` | 200 + `{"fullSnapshot":…,"deltaSnapshots":…}`; 500; 405 |
//! | `/healthz` | 200/503 + `{"health":bool}` |
//! | `/metrics` | Prometheus text |
//! | `/config` | the etcd config for this member, YAML; 500 |
//!
//! On a follower, the `/snapshot/*` requests are forwarded to the leader's sidecar. Unknown
//! paths are 404. Every error answer carries `{"error": "<what is wrong>"}` (the original sends an
//! empty body). Methods other than GET and POST (and HEAD on `/healthz`) are 405, where the
//! original accepts any verb. Request headers must arrive within 5 s (a connection idle between
//! requests is closed after as long), at most 64 KiB of them; a query over [`MAX_QUERY`] bytes is
//! 414, a body over [`MAX_BODY`] 413; at most [`MAX_CONNECTIONS`] connections are served at once
//! (others wait to be accepted); and one `/snapshot/full` and one `/snapshot/delta` request run
//! at a time: another arriving meanwhile is 429 with `Retry-After`, so that twenty callers never
//! start twenty snapshots. Who may call is [`crate::auth`]'s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, get, on};
use etcdbr::initialize::InitializeOptions;
use etcdbr::snapshotter::TriggerError;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::snapshot_json::{LatestJson, SnapshotJson};
use crate::state::Shared;
use crate::{ServerError, ServerOptions, TlsError, delegate, etcd_conf};

/// How long a client may take to send its request headers.
pub const READ_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest query string accepted.
pub const MAX_QUERY: usize = 2048;
/// The largest request body accepted (no endpoint reads one; a forwarded request carries it).
pub const MAX_BODY: u64 = 64 << 10;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 128;
/// Request headers' buffer (hyper's minimum is 8 KiB).
const MAX_HEADERS: usize = 64 << 10;

type S = State<Arc<Shared>>;

fn get_or_post<H, T>(h: H) -> MethodRouter<Arc<Shared>>
where
    H: axum::handler::Handler<T, Arc<Shared>>,
    T: 'static,
{
    on(MethodFilter::GET.or(MethodFilter::POST), h)
}

/// The routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/initialization/start", get_or_post(init_start))
        .route("/initialization/status", get_or_post(init_status))
        .route("/snapshot/full", get_or_post(snapshot_full))
        .route("/snapshot/delta", get_or_post(snapshot_delta))
        .route("/snapshot/latest", get_or_post(snapshot_latest))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/config", get(config))
        .fallback(|req: Request| async move {
            error_response(
                StatusCode::NOT_FOUND,
                format!("no such endpoint: {}", req.uri().path()),
            )
        })
        .with_state(shared)
}

async fn init_start(State(s): S, req: Request) -> StatusCode {
    tracing::info!("Received start initialization request.");
    if s.start_initialization() {
        let mode = crate::query::validation_mode(req.uri().query());
        tracing::info!("Updating status from New to Progress; validation mode: {mode:?}");
        s.set_health(503);
        tokio::spawn(async move {
            let mut opts: InitializeOptions = s.initialize.clone();
            opts.mode = mode;
            let r = etcdbr::initialize::initialize(s.store.as_ref(), &opts).await;
            match &r {
                Ok(r) => tracing::info!(
                    "Successfully initialized data directory for etcd: {}",
                    r.outcome.describe()
                ),
                Err(e) => tracing::error!("Failed initialization: {}", etcdbr::error_chain(e)),
            }
            s.finish_initialization(r.is_ok());
        });
    }
    StatusCode::OK
}

async fn init_status(State(s): S) -> Response {
    let status = s.read_initialization();
    tracing::info!("Responding to status request with: {}", status.as_str());
    (StatusCode::OK, status.as_str()).into_response()
}

fn json(v: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            b,
        )
            .into_response(),
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the answer: {e}"),
        ),
    }
}

/// An error answer: the status and `{"error": "<what is wrong>"}`, so that a caller sees why
/// (the original answers most errors with an empty body).
fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": message.into() }).to_string(),
    )
        .into_response()
}

/// The snapshotter, or the answer for a sidecar without one: forwarded to the leader when a
/// store is configured, else 405.
async fn leader_or_forward(
    s: &Arc<Shared>,
    req: Request,
) -> Result<etcdbr::snapshotter::SnapshotterHandle, Response> {
    if let Some(h) = s.snapshotter() {
        return Ok(h);
    }
    if s.store.is_some() {
        tracing::info!("Forwarding {} to the backup leader", req.uri());
        return Err(delegate::forward(s, req).await);
    }
    tracing::warn!("Ignoring {}: the snapshotter is not configured", req.uri());
    Err(error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "no store is configured, so this sidecar takes no snapshots (--storage-provider)",
    ))
}

fn trigger_failed(what: &str, e: &TriggerError) -> Response {
    tracing::warn!("Skipped triggering out-of-schedule {what} snapshot: {e}");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the {what} snapshot was not taken: {e}"),
    )
}

/// The answer to a snapshot request while another of its kind runs: 429, retry in a while.
fn busy(what: &str) -> Response {
    tracing::warn!("Refused a {what} snapshot request: one is already being taken");
    let mut r = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        format!("a {what} snapshot requested over HTTP is being taken; retry once it is done"),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

async fn snapshot_full(State(s): S, req: Request) -> Response {
    let is_final = match crate::query::final_flag(req.uri().query()) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(
                "Could not parse request parameter 'final' to bool: {:?}",
                e.value
            );
            return error_response(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    // One at a time: twenty callers never start twenty snapshots.
    let Ok(_running) = Arc::clone(&s.full_requests).try_acquire_owned() else {
        return busy("full");
    };
    let h = match leader_or_forward(&s, req).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    match h.full(is_final).await {
        Ok(snap) => json(&SnapshotJson::from(&snap)),
        Err(e) => trigger_failed("full", &e),
    }
}

async fn snapshot_delta(State(s): S, req: Request) -> Response {
    let Ok(_running) = Arc::clone(&s.delta_requests).try_acquire_owned() else {
        return busy("delta");
    };
    let h = match leader_or_forward(&s, req).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    match h.delta().await {
        Ok(snap) => json(&snap.as_ref().map(SnapshotJson::from)),
        Err(e) => trigger_failed("delta", &e),
    }
}

async fn snapshot_latest(State(s): S, req: Request) -> Response {
    if let Err(r) = leader_or_forward(&s, req).await {
        return r;
    }
    let Some(store) = &s.store else {
        return error_response(StatusCode::METHOD_NOT_ALLOWED, "no store is configured");
    };
    match store.latest_set().await {
        Ok(set) => json(&LatestJson {
            full_snapshot: set.full.as_ref().map(SnapshotJson::from),
            delta_snapshots: (!set.deltas.is_empty())
                .then(|| set.deltas.iter().map(SnapshotJson::from).collect()),
        }),
        Err(e) => {
            let why = etcdbr::error_chain(&e);
            tracing::warn!("Unable to fetch latest snapshots from snapstore: {why}");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot list the store: {why}"),
            )
        }
    }
}

async fn healthz(State(s): S) -> Response {
    let code = s.health();
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"health\":{}}}", code == 200),
    )
        .into_response()
}

async fn metrics() -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::encode(),
    )
        .into_response()
}

async fn config(State(s): S) -> Response {
    match etcd_conf::render(&s).await {
        Ok(yaml) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/yaml")],
            yaml,
        )
            .into_response(),
        Err(e) => {
            tracing::warn!("Unable to serve the etcd config: {e}");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot render the etcd config: {e}"),
            )
        }
    }
}

/// 414 for a long query, 413 for a large body (by its `Content-Length`, or chunked).
async fn within_limits(req: Request, next: axum::middleware::Next) -> Response {
    if req.uri().query().is_some_and(|q| q.len() > MAX_QUERY) {
        return error_response(
            StatusCode::URI_TOO_LONG,
            format!("the query string is over {MAX_QUERY} bytes"),
        );
    }
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    if length.is_some_and(|n| n > MAX_BODY) || chunked {
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request bodies are limited to {MAX_BODY} bytes (and to a Content-Length); no endpoint reads one"
            ),
        );
    }
    next.run(req).await
}

/// Binds the server's port.
///
/// # Errors
/// [`ServerError::Bind`].
pub async fn bind(opts: &ServerOptions) -> Result<TcpListener, ServerError> {
    let addr = SocketAddr::new(opts.bind, opts.port);
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// The TLS acceptor for `--server-cert`/`--server-key`, if given.
///
/// # Errors
/// [`ServerError::Tls`] naming the unusable file.
pub fn tls_acceptor(opts: &ServerOptions) -> Result<Option<TlsAcceptor>, ServerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let Some((cert, key)) = &opts.tls else {
        return Ok(None);
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect)
        .map_err(|source| TlsError::Pem {
            flag: "--server-cert",
            path: cert.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            flag: "--server-cert",
            path: cert.clone(),
        }
        .into());
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Pem {
        flag: "--server-key",
        path: key.clone(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?;
    let builder = match &opts.auth.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(|source| TlsError::Pem {
                flag: "--server-client-ca",
                path: ca.clone(),
                source,
            })? {
                let c = c.map_err(|source| TlsError::Pem {
                    flag: "--server-client-ca",
                    path: ca.clone(),
                    source,
                })?;
                roots.add(c).map_err(TlsError::Config)?;
            }
            if roots.is_empty() {
                return Err(TlsError::NoCertificate {
                    flag: "--server-client-ca",
                    path: ca.clone(),
                }
                .into());
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| TlsError::ClientCa {
                path: ca.clone(),
                message: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(TlsError::Config)?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// Serves until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    gate: Option<Arc<crate::auth::Gate>>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let with_tls = tls.is_some();
    let mut app = router(shared);
    if let Some(gate) = gate {
        app = app.layer(axum::middleware::from_fn_with_state(
            gate,
            crate::auth::require_token,
        ));
    }
    let app = app
        .layer(axum::middleware::from_fn(within_limits))
        .layer(axum::middleware::from_fn(
            move |req, next: axum::middleware::Next| async move {
                let mut resp = next.run(req).await;
                if with_tls {
                    let h = resp.headers_mut();
                    h.insert(
                        header::STRICT_TRANSPORT_SECURITY,
                        HeaderValue::from_static("max-age=31536000; includeSubDomains"),
                    );
                    h.insert(
                        header::CONTENT_SECURITY_POLICY,
                        HeaderValue::from_static("default-src 'self'"),
                    );
                }
                resp
            },
        ));
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            () = stop.cancelled() => return,
            s = Arc::clone(&connections).acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => return,
            },
        };
        let (conn, _) = tokio::select! {
            () = stop.cancelled() => return,
            c = listener.accept() => match c {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (app, tls) = (app.clone(), tls.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let service = TowerToHyperService::new(app);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(READ_HEADER_TIMEOUT)
                .max_buf_size(MAX_HEADERS);
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(READ_HEADER_TIMEOUT, acceptor.accept(conn)).await {
                        Ok(Ok(stream)) => {
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                        }
                        _ => return,
                    }
                }
                None => builder.serve_connection(TokioIo::new(conn), service).await,
            };
            if let Err(e) = result {
                tracing::debug!("HTTP connection ended: {e}");
            }
        });
    }
}
