//! The discovery endpoints `kubectl` reads before it asks for Leases: the server's version,
//! the API groups and versions, and the Lease resource of `coordination.k8s.io/v1`.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use super::ok;

pub(super) async fn version() -> Response {
    ok(
        StatusCode::OK,
        json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}),
    )
}

pub(super) async fn api_versions(headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    ok(
        StatusCode::OK,
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]
        }),
    )
}

pub(super) async fn core_resources() -> Response {
    ok(
        StatusCode::OK,
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": []}),
    )
}

pub(super) async fn api_groups() -> Response {
    ok(
        StatusCode::OK,
        json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [{
                "name": "coordination.k8s.io",
                "versions": [{"groupVersion": "coordination.k8s.io/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "coordination.k8s.io/v1", "version": "v1"}
            }]
        }),
    )
}

pub(super) async fn lease_resources() -> Response {
    ok(
        StatusCode::OK,
        json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "coordination.k8s.io/v1",
            "resources": [{
                "name": "leases",
                "singularName": "lease",
                "namespaced": true,
                "kind": "Lease",
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
            }]
        }),
    )
}
