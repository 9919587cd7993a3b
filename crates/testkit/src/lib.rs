//! Test support: start a real etcd (3.4 from Debian's package, or 3.5 from the cache folder
//! `scripts/setup.sh` fills) on free loopback ports with a temporary data directory, and drive
//! workloads against it.
//!
//! [`FaultyStore`] wraps a real object store and fails chosen operations (fault injection).
//!
//! Tests that need etcd call [`Etcd::start`]; when the binary is missing they fail with a message
//! saying to run `scripts/setup.sh`, rather than silently skipping.

mod etcd;
mod faulty;
pub mod kube_api;
mod ports;
pub mod proxy;
pub mod stores;
mod tls;

pub use etcd::{ClientTls, Etcd, EtcdVersion};
pub use etcd_client;
pub use faulty::FaultyStore;
pub use kube_api::KubeApi;
pub use ports::free_port;
pub use tls::TestCerts;
