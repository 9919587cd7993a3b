//! An in-test Kubernetes API server on loopback, for what cannot be had here (no real API
//! server installs on these machines). It serves the `coordination.k8s.io/v1` Lease endpoints
//! the way kube-apiserver does, as far as the sidecar and `kubectl` use them:
//!
//! - HTTPS only, bearer-token authentication (401 `Unauthorized` without a known token) and a
//!   per-token set of verbs (403 `Forbidden` with the API server's message otherwise; the
//!   sidecar's token gets druid's Role: get, list, patch, update, watch, no create or delete);
//! - GET and LIST; PATCH with `application/merge-patch+json`, `application/strategic-merge-patch+json`
//!   (a Lease has no merge keys that differ from a JSON merge) and `application/apply-patch+yaml`
//!   (needs `fieldManager`; creating by apply needs `create`); PUT; POST; DELETE;
//! - `metadata.resourceVersion`: bumped on every write; a PUT or PATCH naming an older one gets
//!   409 `Conflict`, as optimistic locking does; 404 `NotFound` for a missing Lease;
//! - discovery (`/api`, `/apis`, `/apis/coordination.k8s.io/v1`, `/version`) enough for
//!   `kubectl get lease`.
//!
//! Errors are `Status` objects as the API server writes them. Faults for tests: [`KubeApi::stop`]
//! and [`KubeApi::start`] (down and back on the same port, open connections cut),
//! [`KubeApi::conflict_next_writes`] (a 409 storm). JSON patch is not served (415).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::TestCerts;

mod discovery;
use discovery::{api_groups, api_versions, core_resources, lease_resources, version};

/// What a token may do with Leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// etcd-druid's Role for the sidecar: get, list, patch, update, watch.
    Sidecar,
    /// Everything (druid itself, or the test creating Leases).
    Admin,
}

impl Access {
    fn allows(self, verb: &str) -> bool {
        match self {
            Access::Admin => true,
            Access::Sidecar => matches!(verb, "get" | "list" | "patch" | "update" | "watch"),
        }
    }
}

/// A request as the server saw it: method, path, content type.
pub type Seen = (String, String, String);

#[derive(Default)]
struct Store {
    leases: BTreeMap<(String, String), Value>,
    version: u64,
    conflicts: usize,
    seen: Vec<Seen>,
}

struct Shared {
    tokens: BTreeMap<String, Access>,
    store: Mutex<Store>,
}

/// The running server; dropped, it stops.
pub struct KubeApi {
    certs: TestCerts,
    addr: SocketAddr,
    shared: Arc<Shared>,
    serving: Option<JoinSet<()>>,
}

/// The sidecar's token in [`KubeApi::start_new`].
pub const SIDECAR_TOKEN: &str = "sidecar-token-3f9a";
/// The admin token in [`KubeApi::start_new`].
pub const ADMIN_TOKEN: &str = "admin-token-77c1";

impl KubeApi {
    /// A server on a free loopback port with [`SIDECAR_TOKEN`] (druid's Role) and
    /// [`ADMIN_TOKEN`].
    pub async fn start_new() -> KubeApi {
        let tokens = BTreeMap::from([
            (SIDECAR_TOKEN.to_owned(), Access::Sidecar),
            (ADMIN_TOKEN.to_owned(), Access::Admin),
        ]);
        let port = crate::free_port();
        let mut api = KubeApi {
            certs: TestCerts::generate(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            shared: Arc::new(Shared {
                tokens,
                store: Mutex::new(Store::default()),
            }),
            serving: None,
        };
        api.start().await;
        api
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA that signed the server's certificate.
    pub fn ca(&self) -> &Path {
        &self.certs.ca
    }

    /// Serves (again, after [`KubeApi::stop`]) on the same port.
    pub async fn start(&mut self) {
        if self.serving.is_some() {
            return;
        }
        let listener = bind(self.addr).await;
        let acceptor = tls_acceptor(&self.certs);
        let app = router(Arc::clone(&self.shared));
        let mut set = JoinSet::new();
        let mut conns = JoinSet::new();
        set.spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                conns.spawn(async move {
                    let Ok(stream) = acceptor.accept(conn).await else {
                        return;
                    };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        self.serving = Some(set);
    }

    /// Stops serving: the port refuses connections and open ones are cut (the accept loop owns
    /// them).
    pub async fn stop(&mut self) {
        if let Some(mut set) = self.serving.take() {
            set.abort_all();
            while set.join_next().await.is_some() {}
        }
    }

    /// The next `n` writes (PUT, PATCH) answer 409 Conflict, as when another writer keeps
    /// winning.
    pub fn conflict_next_writes(&self, n: usize) {
        self.shared.store.lock().unwrap().conflicts = n;
    }

    /// Creates a Lease as etcd-druid does (labels only, no holder), returning its JSON.
    pub fn create_lease(&self, namespace: &str, name: &str) -> Value {
        let mut s = self.shared.store.lock().unwrap();
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "etcd-druid"}},
            "spec": {}
        });
        s.insert(namespace, name, lease)
    }

    /// The Lease as stored, if any.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        let s = self.shared.store.lock().unwrap();
        s.leases
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// `spec.holderIdentity` of the Lease, if set.
    pub fn holder(&self, namespace: &str, name: &str) -> Option<String> {
        self.lease(namespace, name)
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    }

    /// Deletes the Lease (as an operator might mid-run).
    pub fn delete_lease(&self, namespace: &str, name: &str) {
        let mut s = self.shared.store.lock().unwrap();
        s.leases.remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.store.lock().unwrap().seen.clone()
    }

    /// Writes a kubeconfig for `token` (CA, server, namespace) to `path` and returns it.
    pub fn kubeconfig(&self, path: &Path, token: &str, namespace: &str) -> PathBuf {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: test\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: {namespace}\ncurrent-context: test\n",
            self.url(),
            self.certs.ca.display()
        );
        std::fs::write(path, text).expect("write the kubeconfig");
        path.to_path_buf()
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        if let Some(mut set) = self.serving.take() {
            set.abort_all();
        }
    }
}

async fn bind(addr: SocketAddr) -> TcpListener {
    // The port may linger for a moment after a stop.
    for _ in 0..50 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("cannot bind the test API server to {addr}");
}

fn tls_acceptor(certs: &TestCerts) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.server_cert)
        .and_then(Iterator::collect)
        .expect("server certificate");
    let key = PrivateKeyDer::from_pem_file(&certs.server_key).expect("server key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate and key");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

impl Store {
    fn next_version(&mut self) -> String {
        self.version += 1;
        self.version.to_string()
    }

    /// Stores `lease` under a new resourceVersion (and a uid and creation time when new).
    fn insert(&mut self, namespace: &str, name: &str, mut lease: Value) -> Value {
        let key = (namespace.to_owned(), name.to_owned());
        let old = self.leases.get(&key).cloned();
        let version = self.next_version();
        let meta = &mut lease["metadata"];
        meta["name"] = json!(name);
        meta["namespace"] = json!(namespace);
        meta["resourceVersion"] = json!(version);
        match &old {
            Some(o) => {
                meta["uid"] = o["metadata"]["uid"].clone();
                meta["creationTimestamp"] = o["metadata"]["creationTimestamp"].clone();
            }
            None => {
                meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", self.version));
                meta["creationTimestamp"] = json!("2026-12-01T00:00:00Z");
            }
        }
        lease["apiVersion"] = json!("coordination.k8s.io/v1");
        lease["kind"] = json!("Lease");
        self.leases.insert(key, lease.clone());
        lease
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/api", get(api_versions))
        .route("/api/v1", get(core_resources))
        .route("/apis", get(api_groups))
        .route("/apis/coordination.k8s.io/v1", get(lease_resources))
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
            get(list).post(create),
        )
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}",
            get(read).put(replace).patch(patch).delete(delete),
        )
        .fallback(|| async {
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
                None,
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            record,
        ))
        .with_state(shared)
}

async fn record(
    State(shared): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    shared.store.lock().unwrap().seen.push((
        req.method().to_string(),
        req.uri().path().to_owned(),
        ct,
    ));
    next.run(req).await
}

fn ok(code: StatusCode, body: Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A `Status` object as kube-apiserver writes it.
fn status(code: StatusCode, reason: &str, message: &str, name: Option<&str>) -> Response {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(name) = name {
        body["details"] = json!({"name": name, "group": "coordination.k8s.io", "kind": "leases"});
    }
    ok(code, body)
}

fn not_found(name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("leases.coordination.k8s.io \"{name}\" not found"),
        Some(name),
    )
}

fn conflict(name: &str) -> Response {
    status(
        StatusCode::CONFLICT,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        ),
        Some(name),
    )
}

/// Checks the bearer token and whether it may `verb` Leases in `ns`.
#[allow(clippy::result_large_err)] // the refusal is the response, returned as it is
fn authorize(
    shared: &Shared,
    headers: &HeaderMap,
    verb: &str,
    ns: &str,
    name: Option<&str>,
) -> Result<(), Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(access) = token.and_then(|t| shared.tokens.get(t)) else {
        return Err(status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            None,
        ));
    };
    if access.allows(verb) {
        return Ok(());
    }
    let what = name.map_or_else(
        || "leases.coordination.k8s.io".to_owned(),
        |n| format!("leases.coordination.k8s.io \"{n}\""),
    );
    Err(status(
        StatusCode::FORBIDDEN,
        "Forbidden",
        &format!(
            "{what} is forbidden: User \"system:serviceaccount:{ns}:etcd\" cannot {verb} resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"{ns}\""
        ),
        name,
    ))
}

async fn list(
    State(shared): State<Arc<Shared>>,
    UrlPath(ns): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&shared, &headers, "list", &ns, None) {
        return r;
    }
    let s = shared.store.lock().unwrap();
    let items: Vec<Value> = s
        .leases
        .iter()
        .filter(|((n, _), _)| *n == ns)
        .map(|(_, v)| v.clone())
        .collect();
    ok(
        StatusCode::OK,
        json!({
            "kind": "LeaseList",
            "apiVersion": "coordination.k8s.io/v1",
            "metadata": {"resourceVersion": s.version.to_string()},
            "items": items
        }),
    )
}

async fn read(
    State(shared): State<Arc<Shared>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&shared, &headers, "get", &ns, Some(&name)) {
        return r;
    }
    match shared.store.lock().unwrap().leases.get(&(ns, name.clone())) {
        Some(l) => ok(StatusCode::OK, l.clone()),
        None => not_found(&name),
    }
}

async fn create(
    State(shared): State<Arc<Shared>>,
    UrlPath(ns): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(lease) = serde_json::from_slice::<Value>(&body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not a JSON object",
            None,
        );
    };
    let Some(name) = lease["metadata"]["name"].as_str().map(str::to_owned) else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name: Required value",
            None,
        );
    };
    if let Err(r) = authorize(&shared, &headers, "create", &ns, Some(&name)) {
        return r;
    }
    let mut s = shared.store.lock().unwrap();
    if s.leases.contains_key(&(ns.clone(), name.clone())) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("leases.coordination.k8s.io \"{name}\" already exists"),
            Some(&name),
        );
    }
    ok(StatusCode::CREATED, s.insert(&ns, &name, lease))
}

async fn delete(
    State(shared): State<Arc<Shared>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&shared, &headers, "delete", &ns, Some(&name)) {
        return r;
    }
    match shared
        .store
        .lock()
        .unwrap()
        .leases
        .remove(&(ns, name.clone()))
    {
        Some(_) => ok(
            StatusCode::OK,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        ),
        None => not_found(&name),
    }
}

/// Whether `incoming` names a resourceVersion other than `current`'s, or a conflict was
/// injected.
fn stale(s: &mut Store, incoming: &Value, current: &Value) -> bool {
    if s.conflicts > 0 {
        s.conflicts -= 1;
        return true;
    }
    match incoming["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() => Some(rv) != current["metadata"]["resourceVersion"].as_str(),
        _ => false,
    }
}

async fn replace(
    State(shared): State<Arc<Shared>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize(&shared, &headers, "update", &ns, Some(&name)) {
        return r;
    }
    let Ok(lease) = serde_json::from_slice::<Value>(&body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not a JSON object",
            None,
        );
    };
    if lease["metadata"]["name"].as_str() != Some(name.as_str()) {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the name of the object does not match the name on the URL",
            Some(&name),
        );
    }
    let mut s = shared.store.lock().unwrap();
    let Some(current) = s.leases.get(&(ns.clone(), name.clone())).cloned() else {
        return not_found(&name);
    };
    if stale(&mut s, &lease, &current) {
        return conflict(&name);
    }
    ok(StatusCode::OK, s.insert(&ns, &name, lease))
}

#[derive(serde::Deserialize)]
struct PatchQuery {
    #[serde(rename = "fieldManager")]
    field_manager: Option<String>,
}

async fn patch(
    State(shared): State<Arc<Shared>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    Query(q): Query<PatchQuery>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    debug_assert_eq!(method, Method::PATCH);
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let apply = match ct.split(';').next().unwrap_or("").trim() {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => false,
        "application/apply-patch+yaml" => true,
        other => {
            return status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                &format!(
                    "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {other:?})"
                ),
                None,
            );
        }
    };
    if let Err(r) = authorize(&shared, &headers, "patch", &ns, Some(&name)) {
        return r;
    }
    if apply && q.field_manager.as_deref().is_none_or(str::is_empty) {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            None,
        );
    }
    let Ok(delta) = serde_json::from_slice::<Value>(&body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the patch is not JSON",
            None,
        );
    };
    let mut s = shared.store.lock().unwrap();
    let current = match s.leases.get(&(ns.clone(), name.clone())).cloned() {
        Some(c) => c,
        None if apply => {
            if let Err(r) = authorize(&shared, &headers, "create", &ns, Some(&name)) {
                return r;
            }
            json!({"metadata": {}})
        }
        None => return not_found(&name),
    };
    if stale(&mut s, &delta, &current) {
        return conflict(&name);
    }
    let mut merged = current;
    merge(&mut merged, &delta);
    ok(StatusCode::OK, s.insert(&ns, &name, merged))
}

/// JSON merge patch (RFC 7386): objects merge key by key, `null` removes, anything else
/// replaces.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("an object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}
