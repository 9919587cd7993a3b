//! The Lease writers against the in-test Kubernetes API server (`testkit::kube_api`), read back
//! by the server and by `kubectl`, and the member heartbeat against real etcd.

mod leases;
mod member;
