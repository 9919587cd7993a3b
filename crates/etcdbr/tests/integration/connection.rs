//! Connecting to etcd with TLS client certificates and with username/password auth.

use std::time::Duration;

use crate::common::*;
use etcdbr::compress::Compression;
use etcdbr::events::Events;
use etcdbr::snapshotter::{FullSnapshotOptions, take_full_snapshot};
use snapstore::Kind;
use testkit::{Etcd, EtcdVersion, TestCerts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_over_tls_with_client_certificates() {
    let certs = TestCerts::generate();
    let etcd = Etcd::start_tls(EtcdVersion::V35, &certs).await;
    let mut c = etcd.client().await.unwrap();
    workload(&mut c, 0).await;
    let f = fixture();
    let mut opts = etcd_options(&etcd);
    opts.insecure_transport = false;
    opts.ca_file = Some(certs.ca.clone());
    opts.cert_file = Some(certs.client_cert.clone());
    opts.key_file = Some(certs.client_key.clone());
    let run = start_with(
        opts,
        &f,
        options(&f, Compression::Gzip, Duration::from_secs(1), 1 << 20),
    );
    wait_for("the full snapshot", async || {
        count(&f.store, Kind::Full).await == 1
    })
    .await;
    workload(&mut c, 1).await;
    run.stop().await;
    verify_chain(&f.store, &etcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_server_certificate_is_refused_unless_verification_is_skipped() {
    let certs = TestCerts::generate();
    let etcd = Etcd::start_tls(EtcdVersion::V34, &certs).await;
    let f = fixture();
    let mut opts = etcd_options(&etcd);
    opts.ca_file = Some(certs.other_ca.clone());
    opts.cert_file = Some(certs.client_cert.clone());
    opts.key_file = Some(certs.client_key.clone());
    let full = FullSnapshotOptions {
        temp_dir: f.temp.clone(),
        compression: Compression::Gzip,
        snapshot_timeout: Duration::from_secs(10),
    };
    let result = async {
        let mut client = opts.connect().await?;
        take_full_snapshot(&mut client, &f.store, &full, false, &Events::none()).await
    }
    .await;
    let e = etcdbr::error_chain(&result.unwrap_err());
    assert!(
        e.to_lowercase().contains("certificate") || e.contains("UnknownIssuer"),
        "{e}"
    );
    assert_eq!(count(&f.store, Kind::Full).await, 0);

    opts.insecure_skip_verify = true;
    let mut client = opts.connect().await.unwrap();
    let s = take_full_snapshot(&mut client, &f.store, &full, false, &Events::none())
        .await
        .unwrap();
    assert_eq!(s.last_revision.get(), etcd.revision().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_with_username_and_password() {
    let etcd = Etcd::start(EtcdVersion::V34).await;
    etcd.etcdctl_ok(&["user", "add", "root:s3cret"]);
    etcd.etcdctl_ok(&["user", "grant-role", "root", "root"]);
    etcd.etcdctl_ok(&["auth", "enable"]);
    let f = fixture();
    let full = FullSnapshotOptions {
        temp_dir: f.temp.clone(),
        compression: Compression::Gzip,
        snapshot_timeout: Duration::from_secs(10),
    };

    let anonymous = etcd_options(&etcd);
    let result = async {
        let mut client = anonymous.connect().await?;
        take_full_snapshot(&mut client, &f.store, &full, false, &Events::none()).await
    }
    .await;
    assert!(result.is_err(), "auth is enforced");

    let mut opts = etcd_options(&etcd);
    opts.username = "root".into();
    opts.password = "s3cret".into();
    assert!(
        !format!("{opts:?}").contains("s3cret"),
        "the password never shows in Debug output"
    );
    let run = start_with(
        opts,
        &f,
        options(&f, Compression::Gzip, Duration::from_secs(1), 1 << 20),
    );
    wait_for("the full snapshot", async || {
        count(&f.store, Kind::Full).await == 1
    })
    .await;
    etcd.etcdctl_ok(&["--user", "root:s3cret", "put", "k", "v"]);
    let target = etcd.revision_as("root", "s3cret").await;
    let store = f.store.clone();
    wait_for("the delta", async || {
        store
            .latest_set()
            .await
            .unwrap()
            .last_revision()
            .is_some_and(|r| r.get() == target)
    })
    .await;
    run.stop().await;
}
