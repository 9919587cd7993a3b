//! `etcdbrctl copy`: filters, skipping, `.final` stripping and waiting between two Local stores,
//! and an interrupted copy into S3 (moto) rerun to a store that restores to the same `hashkv`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bin, names};
use snapstore::{Provider, SnapStore, StoreConfig};
use testkit::{Etcd, EtcdVersion};

fn copy_cmd(home: &Path) -> Command {
    let mut c = bin();
    c.env_clear().env("HOME", home).args([
        "copy",
        "--storage-provider=Local",
        "--store-container=dst",
        "--source-store-container=src",
        "--store-prefix=etcd",
    ]);
    c
}

fn run_ok(mut c: Command) -> String {
    let out = c.output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    log
}

#[test]
fn copies_sets_newest_first_with_filters_skips_and_final_stripped() {
    let home = tempfile::tempdir().unwrap();
    let src = home.path().join("src/etcd/v2");
    let dst = home.path().join("dst/etcd/v2");
    std::fs::create_dir_all(&src).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let day = 86_400;
    let (a, b, c) = (now - 5 * day, now - 2 * day, now - 3600);
    let objects = [
        format!("Incr-00000001-00000005-{}.gz", a - 10), // before any full snapshot: not copied
        format!("Full-00000000-00000010-{a}.gz"),
        format!("Incr-00000011-00000020-{}.gz", a + 10),
        format!("Full-00000000-00000030-{b}.gz.final"),
        format!("Incr-00000031-00000040-{}.gz", b + 10),
        format!("Full-00000000-00000050-{c}.gz"),
        format!("Incr-00000051-00000060-{}.gz", c + 10),
    ];
    for (i, n) in objects.iter().enumerate() {
        std::fs::write(src.join(n), vec![i as u8; 1000 + i]).unwrap();
    }

    // The newest set only.
    run_ok({
        let mut c = copy_cmd(home.path());
        c.arg("--max-backups-to-copy=1");
        c
    });
    assert_eq!(names(&dst), [objects[5].clone(), objects[6].clone()]);

    // Younger than 3 days: adds the second set, without .final; the newest is skipped.
    let log = run_ok({
        let mut c = copy_cmd(home.path());
        c.arg("--max-backup-age=3");
        c
    });
    assert!(log.contains("already exists"), "{log}");
    let mut want = vec![
        format!("Full-00000000-00000030-{b}.gz"),
        objects[4].clone(),
        objects[5].clone(),
        objects[6].clone(),
    ];
    want.sort();
    assert_eq!(names(&dst), want);

    // Everything: the oldest set too, never the orphan delta; contents byte-identical.
    run_ok(copy_cmd(home.path()));
    assert_eq!(names(&dst).len(), 6);
    assert!(!dst.join(&objects[0]).exists());
    for n in &objects[1..] {
        let target = n.trim_end_matches(".final");
        assert_eq!(
            std::fs::read(src.join(n)).unwrap(),
            std::fs::read(dst.join(target)).unwrap(),
            "{n}"
        );
    }

    // Waiting for a final snapshot: found at once here; with none, the timeout lets it go on.
    let log = run_ok({
        let mut c = copy_cmd(home.path());
        c.arg("--wait-for-final-snapshot");
        c
    });
    assert!(log.contains("Final full snapshot detected"), "{log}");
    std::fs::rename(
        src.join(&objects[3]),
        src.join(objects[3].trim_end_matches(".final")),
    )
    .unwrap();
    let log = run_ok({
        let mut c = copy_cmd(home.path());
        c.args([
            "--wait-for-final-snapshot=true",
            "--wait-for-final-snapshot-timeout=1s",
        ]);
        c
    });
    assert!(log.contains("Timed out waiting"), "{log}");

    // Bad values are refused before anything is touched.
    let out = copy_cmd(home.path())
        .arg("--max-parallel-copy-operations=0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-parallel-copy-operations"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_copy_leaves_no_partial_object_and_a_rerun_completes_it() {
    let etcd = Etcd::start(EtcdVersion::V35).await;
    let mut c = etcd.client().await.unwrap();
    // 40 MiB of xorshift output: gzip cannot shrink it, so the upload takes a while.
    let mut x = 0x9E37_79B9_7F4A_7C15_u64;
    for i in 0..40u64 {
        let v: Vec<u8> = (0..131_072)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .collect();
        c.put(format!("/big/{i}"), v, None).await.unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    let child = crate::common::start_snapshot(&etcd, home.path()).await;
    for i in 0..200 {
        c.put(format!("/small/{i}"), "v", None).await.unwrap();
    }
    let rev = etcd.revision().await;
    crate::common::wait_for_backup(home.path(), rev).await;
    crate::common::stop_snapshot(child);
    let hash = c.hash_kv(rev).await.unwrap().hash();

    let moto = testkit::stores::moto();
    let creds = moto.dir().join("aws.json");
    std::fs::write(
        &creds,
        r#"{"accessKeyID":"a","secretAccessKey":"b","region":"us-east-1","s3ForcePathStyle":true}"#,
    )
    .unwrap();
    let to_s3 = || {
        let mut c = bin();
        c.env_clear()
            .env("HOME", home.path())
            .env("AWS_APPLICATION_CREDENTIALS_JSON", &creds)
            .args(["copy", "--storage-provider=S3"])
            .arg(format!("--store-container={}", moto.bucket))
            .arg(format!("--store-endpoint-override={}", moto.endpoint))
            .args([
                "--source-storage-provider=Local",
                "--source-store-container=backups",
            ]);
        c
    };
    let mut config = StoreConfig::default();
    config.provider = Some(Provider::S3);
    config.container.clone_from(&moto.bucket);
    config.endpoint_override.clone_from(&moto.endpoint);
    let env: BTreeMap<String, String> = [(
        "AWS_APPLICATION_CREDENTIALS_JSON".to_owned(),
        creds.display().to_string(),
    )]
    .into();
    let s3 = SnapStore::open_with_env(&config, env).unwrap();
    let full_size = std::fs::metadata(
        crate::common::v2(home.path()).join(
            names(&crate::common::v2(home.path()))
                .iter()
                .find(|n| n.starts_with("Full-"))
                .unwrap(),
        ),
    )
    .unwrap()
    .len();

    // Kill the copy while it uploads the full snapshot's parts.
    let log_path = home.path().join("copy.log");
    let mut child = to_s3()
        .arg("--max-parallel-copy-operations=1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains("Uploading ")
    {
        assert!(Instant::now() < deadline, "copy did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        !log.contains("Finished uploading"),
        "the copy finished before it could be interrupted:\n{log}"
    );
    for s in s3.list().await.unwrap() {
        let size = s3.objects().stat(&s.key()).await.unwrap().size;
        if s.kind == snapstore::Kind::Full {
            assert_eq!(size, full_size, "a partial full snapshot is visible");
        }
    }

    run_ok(to_s3());
    let names_s3: Vec<String> = s3
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.snap_name)
        .collect();
    let mut names_local = names(&crate::common::v2(home.path()));
    names_local.sort();
    let mut sorted = names_s3.clone();
    sorted.sort();
    assert_eq!(sorted, names_local);

    // The copy restores to the same state.
    let data = home.path().join("restored");
    let peer = format!("http://127.0.0.1:{}", testkit::free_port());
    let out = to_s3_restore(home.path(), &creds, &moto, &data, &peer);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut restored = Etcd::on_data_dir(
        EtcdVersion::V35,
        &data,
        &["--initial-cluster-token=etcd-cluster"],
    );
    restored.set_member("r1", &peer);
    restored.restart().await;
    let mut r = restored.client().await.unwrap();
    assert_eq!(restored.revision().await, rev);
    assert_eq!(r.hash_kv(rev).await.unwrap().hash(), hash);
}

fn to_s3_restore(
    home: &Path,
    creds: &Path,
    moto: &testkit::stores::StoreServer,
    data: &Path,
    peer: &str,
) -> std::process::Output {
    bin()
        .env_clear()
        .env("HOME", home)
        .env("AWS_APPLICATION_CREDENTIALS_JSON", creds)
        .args(["restore", "--storage-provider=S3"])
        .arg(format!("--store-container={}", moto.bucket))
        .arg(format!("--store-endpoint-override={}", moto.endpoint))
        .args(["--data-dir", data.to_str().unwrap(), "--name", "r1"])
        .args([
            "--initial-cluster",
            &format!("r1={peer}"),
            "--initial-advertise-peer-urls",
            peer,
        ])
        .args([
            "--restoration-temp-snapshots-dir",
            home.join("rt").to_str().unwrap(),
        ])
        .output()
        .unwrap()
}

/// etcd-druid's copy task (`etcdcopybackupstask` reconciler): its exact flags, the source
/// container from `SOURCE_STORAGE_CONTAINER`, Go duration syntax for the timeout.
#[test]
fn druids_copy_task_command_line_runs_unchanged() {
    let home = tempfile::tempdir().unwrap();
    let src = home.path().join("source-bucket/etcd-main/v2");
    std::fs::create_dir_all(&src).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let objects = [
        format!("Full-00000000-00000010-{}.gz.final", now - 60),
        format!("Incr-00000011-00000020-{}.gz", now - 30),
    ];
    for n in &objects {
        std::fs::write(src.join(n), b"object").unwrap();
    }
    let tmp = home.path().join("data/tmp");
    run_ok({
        let mut c = bin();
        c.env_clear()
            .env("HOME", home.path())
            .env("SOURCE_STORAGE_CONTAINER", "source-bucket")
            .args([
                "copy",
                &format!("--snapstore-temp-directory={}", tmp.display()),
                "--storage-provider=Local",
                "--store-prefix=etcd-main",
                "--store-container=target-bucket",
                "--store-endpoint-override=",
                "--source-storage-provider=Local",
                "--source-store-prefix=etcd-main",
                "--source-store-endpoint-override=",
                "--max-backup-age=7",
                "--max-backups-to-copy=3",
                "--wait-for-final-snapshot=true",
                "--wait-for-final-snapshot-timeout=1m0s",
            ]);
        c
    });
    let copied = names(&home.path().join("target-bucket/etcd-main/v2"));
    assert_eq!(
        copied,
        [
            objects[0].trim_end_matches(".final").to_owned(),
            objects[1].clone()
        ]
    );
}
