//! The binary against every provider's real server: `snapshot` (a full snapshot over 20 MB, so
//! uploads are multipart; deltas; GC of an older backup set) and `restore` from it, booting etcd.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use crate::common::bin;
use chrono::{Duration as Age, Utc};
use etcdbr_types::Revision;
use snapstore::{Kind, SnapStore, Snapshot, StoreConfig};
use testkit::stores::{self, StoreServer};
use testkit::{Etcd, EtcdVersion};

struct Target {
    server: StoreServer,
    config: StoreConfig,
    env: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Target {
    /// The same store the binary opens, through the library.
    fn store(&self, home: &Path) -> SnapStore {
        let mut env: BTreeMap<String, String> = self.env.iter().cloned().collect();
        env.insert("HOME".into(), home.display().to_string());
        SnapStore::open_with_env(&self.config, env).unwrap()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn target(provider: &'static str) -> Target {
    let (server, env, override_endpoint) = match provider {
        "S3" => {
            let s = stores::moto();
            let f = write(
                s.dir(),
                "aws.json",
                r#"{"accessKeyID":"a","secretAccessKey":"b","region":"us-east-1","s3ForcePathStyle":true}"#,
            );
            (
                s,
                vec![("AWS_APPLICATION_CREDENTIALS_JSON".to_owned(), f)],
                true,
            )
        }
        "OSS" => {
            let s = stores::moto();
            let f = write(
                s.dir(),
                "oss.json",
                &format!(
                    r#"{{"storageEndpoint":"{}","accessKeyID":"a","accessKeySecret":"b"}}"#,
                    s.endpoint
                ),
            );
            (
                s,
                vec![("ALICLOUD_APPLICATION_CREDENTIALS_JSON".to_owned(), f)],
                false,
            )
        }
        "ABS" => {
            let s = stores::azurite();
            let dir = s.dir().join("azure");
            std::fs::create_dir_all(&dir).unwrap();
            write(&dir, "storageAccount", stores::AZURITE_ACCOUNT);
            write(&dir, "storageKey", stores::AZURITE_KEY);
            (
                s,
                vec![(
                    "AZURE_APPLICATION_CREDENTIALS".to_owned(),
                    dir.display().to_string(),
                )],
                true,
            )
        }
        "GCS" => (stores::fake_gcs(), vec![], true),
        "Swift" => {
            let s = stores::swift();
            let f = write(
                s.dir(),
                "os.json",
                &format!(
                    r#"{{"authURL":"{}/auth/v1.0","tenantName":"test","username":"tester","password":"testing"}}"#,
                    s.endpoint
                ),
            );
            (
                s,
                vec![("OPENSTACK_APPLICATION_CREDENTIALS_JSON".to_owned(), f)],
                false,
            )
        }
        _ => unreachable!(),
    };
    let mut flags = vec![
        format!("--storage-provider={provider}"),
        format!("--store-container={}", server.bucket),
        "--store-prefix=shoot/etcd".into(),
    ];
    if override_endpoint {
        flags.push(format!("--store-endpoint-override={}", server.endpoint));
    }
    let mut config = StoreConfig::default();
    config.provider = Some(provider.parse().unwrap());
    config.container.clone_from(&server.bucket);
    "shoot/etcd".clone_into(&mut config.prefix);
    if override_endpoint {
        config.endpoint_override.clone_from(&server.endpoint);
    }
    Target {
        server,
        config,
        env,
        flags,
    }
}

fn run(t: &Target, home: &Path, args: &[&str]) -> Command {
    let mut c = bin();
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home);
    for (k, v) in &t.env {
        c.env(k, v);
    }
    c.args(args).args(&t.flags);
    c
}

/// Keys for an encrypted, signed store: age identity and recipients, Ed25519 key pair.
struct Sealing {
    _dir: tempfile::TempDir,
    recipients: String,
    identity: String,
    private: String,
    public: String,
}

fn sealing() -> Sealing {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).display().to_string();
    let ok = |c: &mut Command| assert!(c.status().unwrap().success());
    ok(Command::new("age-keygen")
        .args(["-o", &path("id.txt")])
        .stderr(Stdio::null()));
    let public = Command::new("age-keygen")
        .args(["-y", &path("id.txt")])
        .output()
        .unwrap()
        .stdout;
    std::fs::write(path("recipients.txt"), public).unwrap();
    ok(Command::new("openssl").args([
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        &path("sign.pem"),
    ]));
    ok(Command::new("openssl").args([
        "pkey",
        "-in",
        &path("sign.pem"),
        "-pubout",
        "-out",
        &path("sign.pub"),
    ]));
    Sealing {
        recipients: format!("--encryption-recipients-file={}", path("recipients.txt")),
        identity: format!("--encryption-identity-file={}", path("id.txt")),
        private: format!("--signing-key-file={}", path("sign.pem")),
        public: format!("--signing-key-file={}", path("sign.pub")),
        _dir: dir,
    }
}

async fn round_trip(provider: &'static str) {
    round_trip_with(provider, None).await;
}

/// The round trip, with every object encrypted and every set signed when `sealed`.
async fn round_trip_with(provider: &'static str, sealed: Option<Sealing>) {
    let t = target(provider);
    let (write_keys, read_keys): (Vec<&str>, Vec<&str>) = match &sealed {
        Some(k) => (
            vec![k.recipients.as_str(), k.private.as_str()],
            vec![k.identity.as_str(), k.public.as_str()],
        ),
        None => (vec![], vec![]),
    };
    let etcd = Etcd::start(EtcdVersion::V35).await;
    let mut c = etcd.client().await.unwrap();
    // 22 incompressible 1 MiB values: the full snapshot is a multipart upload.
    for i in 0..22u64 {
        let v: Vec<u8> = (0..1_048_576u64)
            .map(|j| ((j * 2_654_435_761 + i * 97) >> 13) as u8)
            .collect();
        c.put(format!("/big/{i}"), v, None).await.unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    // An older backup set, which GC (LimitBased, one set kept) must delete.
    let store = t.store(home.path());
    let old = Snapshot::new(
        Kind::Full,
        Revision(0),
        Revision(1),
        Utc::now() - Age::days(2),
        "",
        false,
        store.layout_prefix(),
    );
    store
        .save(&old, Box::new(&b"old"[..]), Some(3))
        .await
        .unwrap();
    let mut child = run(
        &t,
        home.path(),
        &[
            "snapshot",
            "--endpoints",
            &etcd.client_url,
            "--compress-snapshots=false",
        ],
    )
    .args([
        // Full snapshots once a year: an hourly one at the turn of the hour took the test's
        // writes, so the delta it waits for never came.
        "--schedule=0 0 1 1 *",
        "--delta-snapshot-period=1s",
        "--garbage-collection-period=2s",
        "--garbage-collection-policy=LimitBased",
        "--max-backups=1",
    ])
    .args(&write_keys)
    .args([
        "--snapstore-temp-directory",
        home.path().join("tmp").to_str().unwrap(),
    ])
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(home.path().join("snapshot.log")).unwrap())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let log = || std::fs::read_to_string(home.path().join("snapshot.log")).unwrap_or_default();
    let wait_for = |child: &mut std::process::Child, what: &dyn Fn(&str) -> bool| {
        while !what(&log()) {
            assert!(
                Instant::now() < deadline,
                "{provider}: timed out:\n{}",
                log()
            );
            if let Ok(Some(st)) = child.try_wait() {
                panic!("{provider}: snapshot exited with {st}:\n{}", log());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // Writes after the full snapshot, so that they land in deltas.
    wait_for(&mut child, &|l| {
        l.contains("Successfully saved full snapshot")
    });
    for i in 0..50 {
        c.put(format!("/small/{i}"), "v", None).await.unwrap();
    }
    let target_rev = etcd.revision().await;
    wait_for(&mut child, &|l| {
        l.contains("Incr-") && l.contains(&format!("-{target_rev:08}-"))
    });
    let gc_deadline = Instant::now() + Duration::from_secs(30);
    while store
        .list()
        .await
        .unwrap()
        .iter()
        .any(|s| s.created_on == old.created_on)
    {
        assert!(
            Instant::now() < gc_deadline,
            "{provider}: GC left {}:\n{}",
            old.key(),
            log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success(), "{provider}:\n{}", log());
    assert!(
        log().contains("Successfully saved full snapshot"),
        "{provider}:\n{}",
        log()
    );

    let expected = c.hash_kv(target_rev).await.unwrap().hash();
    if sealed.is_some() {
        // Every object is encrypted, and the set has its manifest in the bucket.
        let listed = store.list().await.unwrap();
        assert!(
            !listed.is_empty() && listed.iter().all(|s| s.encrypted),
            "{provider}: {listed:?}"
        );
        let keys = store.objects().list("shoot/etcd").await.unwrap();
        assert!(
            keys.iter()
                .any(|o| o.key.starts_with("shoot/etcd/manifests/Full-")),
            "{provider}: {keys:?}"
        );
    }
    let mut restore = run(&t, home.path(), &["restore"]);
    restore.args(&read_keys);
    restore_and_check(restore, home.path(), target_rev, expected, provider).await;

    // `copy` to another provider (Local) and restore from the copy.
    let mut copy = bin();
    copy.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path());
    for (k, v) in &t.env {
        copy.env(format!("SOURCE_{k}"), v);
    }
    copy.arg("copy")
        .args(t.flags.iter().map(|f| f.replacen("--", "--source-", 1)))
        .args([
            "--storage-provider=Local",
            "--store-container=copied",
            "--store-prefix=shoot/etcd",
        ]);
    if let Some(k) = &sealed {
        // Copied as stored (still encrypted), the copies signed at the destination.
        copy.args([&k.identity, &k.private]);
    }
    let out = copy.output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{provider} copy: {log}");
    assert!(
        log.contains("Successfully copied Full snapshot"),
        "{provider} copy: {log}"
    );
    let mut restore = bin();
    restore.env_clear().env("HOME", home.path()).args([
        "restore",
        "--storage-provider=Local",
        "--store-container=copied",
        "--store-prefix=shoot/etcd",
    ]);
    restore.args(&read_keys);
    restore_and_check(restore, home.path(), target_rev, expected, provider).await;

    if let Some(k) = &sealed {
        // The keys rotated in place: `copy --reencrypt` from the bucket into itself rewrites
        // every object for a new recipient while reading it; the new key alone then restores.
        let fresh = sealing();
        let mut rekey = run(&t, home.path(), &["copy", "--reencrypt"]);
        for (name, v) in &t.env {
            rekey.env(format!("SOURCE_{name}"), v);
        }
        rekey
            .args(t.flags.iter().map(|f| f.replacen("--", "--source-", 1)))
            .args([&fresh.recipients, &k.identity, &k.private]);
        let out = rekey.output().unwrap();
        assert!(
            out.status.success(),
            "{provider} rekey: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut restore = run(&t, home.path(), &["restore"]);
        restore.args([&fresh.identity, &k.public]);
        restore_and_check(restore, home.path(), target_rev, expected, provider).await;
        let mut old_key = run(&t, home.path(), &["restore"]);
        old_key.args(["--data-dir", home.path().join("old-key").to_str().unwrap()]);
        old_key.args(&read_keys);
        assert!(
            !old_key.output().unwrap().status.success(),
            "{provider}: the old key still reads"
        );
    }
    drop(t.server);
}

/// Runs `restore` (flags for the store already given) into a new data dir, boots etcd on it,
/// and compares its revision and `hashkv` with the source's.
async fn restore_and_check(mut restore: Command, home: &Path, rev: i64, hash: u32, what: &str) {
    let out_dir = tempfile::tempdir().unwrap();
    let data = out_dir.path().join("data");
    let peer = format!("http://127.0.0.1:{}", testkit::free_port());
    let out = restore
        .args(["--data-dir", data.to_str().unwrap(), "--name", "r1"])
        .args([
            "--initial-cluster",
            &format!("r1={peer}"),
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args([
            "--restoration-temp-snapshots-dir",
            home.join("rt").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what} restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut restored = Etcd::on_data_dir(
        EtcdVersion::V35,
        &data,
        &["--initial-cluster-token=etcd-cluster"],
    );
    restored.set_member("r1", &peer);
    restored.restart().await;
    assert_eq!(restored.revision().await, rev, "{what}");
    let mut r = restored.client().await.unwrap();
    assert_eq!(r.hash_kv(rev).await.unwrap().hash(), hash, "{what}: hashkv");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_snapshot_and_restore() {
    round_trip("S3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abs_snapshot_and_restore() {
    round_trip("ABS").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_snapshot_and_restore() {
    round_trip("GCS").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swift_snapshot_and_restore() {
    round_trip("Swift").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oss_snapshot_and_restore() {
    round_trip("OSS").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_encrypted_and_signed_snapshot_and_restore() {
    round_trip_with("S3", Some(sealing())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abs_encrypted_and_signed_snapshot_and_restore() {
    round_trip_with("ABS", Some(sealing())).await;
}
