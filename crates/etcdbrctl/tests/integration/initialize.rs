//! `etcdbrctl initialize`: each kind of damaged data dir ends in the original's decision, a
//! data dir whose WAL holds writes the backup has is never restored over, and a member of a
//! multi-member cluster (`ETCD_CONF`) is replaced by a learner instead of restored.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::*;
use testkit::{Etcd, EtcdVersion};

const PEER: &str = "http://127.0.0.1:2380";

fn initialize(home: &Path, data_dir: &Path, extra: &[&str], namespace: Option<&str>) -> Output {
    let mut c = bin();
    c.env("HOME", home).env_remove("POD_NAMESPACE");
    if let Some(ns) = namespace {
        c.env("POD_NAMESPACE", ns);
    }
    c.args([
        "initialize",
        "--storage-provider=Local",
        "--store-container=backups",
    ])
    .args([
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--name",
        "r1",
        "--initial-cluster-token",
        "tok",
    ])
    .args([
        "--initial-cluster",
        &format!("r1={PEER}"),
        "--initial-advertise-peer-urls",
        PEER,
    ])
    .args([
        "--restoration-temp-snapshots-dir",
        home.join("restore-tmp").to_str().unwrap(),
    ])
    .args([
        "--snapstore-temp-directory",
        home.join("snap-tmp").to_str().unwrap(),
    ])
    .args(extra)
    .output()
    .unwrap()
}

fn log(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The db revision of a data dir.
fn revision(data_dir: &Path) -> i64 {
    let db = bbolt::Db::open(data_dir.join("member/snap/db")).unwrap();
    etcd_datadir::current_revision(&db).unwrap().get()
}

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_data_dirs_are_restored_and_valid_ones_kept() {
    let source = Etcd::start_with(EtcdVersion::V34, &["--max-request-bytes=3145728"]).await;
    let mut c = source.client().await.unwrap();
    let lease = c.lease_grant(3600, None).await.unwrap().id();
    let home = back_up(&source, &mut c, lease).await;
    let latest = latest_backup(home.path());
    let work = tempfile::tempdir().unwrap();

    // A missing data dir is restored.
    let good = work.path().join("good");
    let o = initialize(home.path(), &good, &[], None);
    assert!(o.status.success(), "{}", log(&o));
    assert!(log(&o).contains("NotExist"), "{}", log(&o));
    assert_eq!(revision(&good), latest);
    assert!(!home.path().join("restore-tmp").exists());

    // A valid one is kept, in both modes.
    for mode in ["--validation-mode=full", "--validation-mode=sanity"] {
        let o = initialize(home.path(), &good, &[mode], None);
        assert!(o.status.success(), "{}", log(&o));
        assert!(
            log(&o).contains("data directory kept"),
            "{mode}: {}",
            log(&o)
        );
    }

    // Missing member/wal: invalid structure, restored.
    let d = work.path().join("nowal");
    copy_dir(&good, &d);
    std::fs::remove_dir_all(d.join("member/wal")).unwrap();
    let o = initialize(home.path(), &d, &[], None);
    assert!(
        o.status.success() && log(&o).contains("InvalidStructure"),
        "{}",
        log(&o)
    );
    assert!(d.join("member/wal").is_dir());

    // A corrupted db page: full mode finds it and restores; the restored db checks clean.
    let d = work.path().join("corrupt");
    copy_dir(&good, &d);
    let db = d.join("member/snap/db");
    // A page the tree reaches (a restored db keeps the base's free pages, as etcdutl's does).
    let key_root = {
        let d = bbolt::Db::open(&db).unwrap();
        match d.bucket(b"key").unwrap().unwrap() {
            bbolt::Bucket::Paged { root, .. } => root.0 as usize,
            bbolt::Bucket::Inline { .. } => panic!("expected a paged key bucket"),
        }
    };
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[key_root * 4096 + 8] = 0x20; // the key bucket's root page: its type flags
    std::fs::write(&db, &bytes).unwrap();
    let o = initialize(home.path(), &d, &["--validation-mode=full"], None);
    assert!(
        o.status.success() && log(&o).contains("Corrupt"),
        "{}",
        log(&o)
    );
    assert!(
        bbolt::check(&bbolt::Db::open(&db).unwrap())
            .unwrap()
            .is_empty()
    );

    // A stale db (the full snapshot alone, behind the deltas) is restored to the newest backup.
    let full_only = copy_store(home.path());
    for n in names(&v2(full_only.path()))
        .iter()
        .filter(|n| n.starts_with("Incr-"))
    {
        std::fs::remove_file(v2(full_only.path()).join(n)).unwrap();
    }
    let d = work.path().join("stale");
    let o = restore(full_only.path(), &d, PEER, &[]);
    assert!(o.status.success(), "{}", log(&o));
    assert!(revision(&d) < latest);
    let o = initialize(home.path(), &d, &["--validation-mode=sanity"], None);
    assert!(
        o.status.success() && log(&o).contains("RevisionConsistencyError"),
        "{}",
        log(&o)
    );
    assert_eq!(revision(&d), latest);

    // Wrong volume: the safe_guard next to the data dir names another namespace.
    let o = initialize(home.path(), &good, &[], Some("shoot--one"));
    assert!(o.status.success(), "{}", log(&o));
    let o = initialize(home.path(), &good, &[], Some("shoot--two"));
    assert!(!o.status.success());
    assert!(log(&o).contains("wrong volume is mounted"), "{}", log(&o));
    assert_eq!(revision(&good), latest, "untouched");

    // An empty store: nothing to restore from, so an invalid data dir holding data is kept and
    // initialization fails saying why (the original deletes it).
    let empty = tempfile::tempdir().unwrap();
    let d = work.path().join("orphan");
    copy_dir(&good, &d);
    std::fs::remove_dir_all(d.join("member/snap")).unwrap();
    let o = initialize(empty.path(), &d, &[], None);
    assert!(!o.status.success(), "{}", log(&o));
    assert!(
        log(&o).contains("no backup to restore it from, so the data directory is kept"),
        "{}",
        log(&o)
    );
    assert!(d.join("member/wal").is_dir(), "kept");
    // An empty data dir is left for etcd to bootstrap.
    std::fs::remove_dir_all(&d).unwrap();
    std::fs::create_dir(&d).unwrap();
    let o = initialize(empty.path(), &d, &[], None);
    assert!(o.status.success(), "{}", log(&o));
    assert!(
        log(&o).contains("etcd bootstraps a new member"),
        "{}",
        log(&o)
    );

    // Bad flags.
    let o = initialize(home.path(), &good, &["--validation-mode=quick"], None);
    assert!(
        !o.status.success() && log(&o).contains("full or sanity"),
        "{}",
        log(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_db_is_refused() {
    let etcd = Etcd::start(EtcdVersion::V35).await;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(v2(home.path())).unwrap();
    let o = initialize(home.path(), etcd.data_dir(), &[], None);
    assert!(!o.status.success(), "{}", log(&o));
    assert!(log(&o).contains("holds the lock"), "{}", log(&o));
}

/// etcd keeps writes in its WAL until the backend commits (here: only at the snapshot, with a
/// one-hour batch interval). Killed before a commit, its db lags the WAL. The backup holds those
/// writes too; `initialize` must keep the data dir (etcd replays the WAL), not restore over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_pending_in_the_wal_are_not_restored_over() {
    let mut etcd = Etcd::start_with(
        EtcdVersion::V34,
        &[
            "--backend-batch-interval=1h",
            "--backend-batch-limit=1000000",
        ],
    )
    .await;
    let mut c = etcd.client().await.unwrap();
    for i in 0..20 {
        c.put(format!("before-{i}"), "x", None).await.unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    let child = start_snapshot(&etcd, home.path()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..30 {
        c.put(format!("after-{i}"), "y", None).await.unwrap();
    }
    let target = etcd.revision().await;
    wait_for_backup(home.path(), target).await;
    stop_snapshot(child);
    etcd.kill();
    let data = etcd.data_dir().to_path_buf();
    assert!(
        revision(&data) < target,
        "the db lags: {} vs {target}",
        revision(&data)
    );

    // A copy where a (fabricated) newer backup exists beyond what the WAL holds: restore is
    // attempted, fails on the unreadable object, and the data dir is left as it was.
    let ahead = copy_store(home.path());
    std::fs::write(
        v2(ahead.path()).join(format!(
            "Incr-{:08}-{:08}-1900000000.gz",
            target + 1,
            target + 1000
        )),
        b"not gzip",
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let copy = work.path().join("copy");
    copy_dir(&data, &copy);
    let before = std::fs::read(copy.join("member/snap/db")).unwrap();
    let o = initialize(ahead.path(), &copy, &[], None);
    assert!(log(&o).contains("RevisionConsistencyError"), "{}", log(&o));
    assert!(
        !o.status.success(),
        "the corrupt newer delta fails the restore"
    );
    assert_eq!(
        std::fs::read(copy.join("member/snap/db")).unwrap(),
        before,
        "a failed restore leaves the data dir alone"
    );

    // With the real store, the WAL covers the backup: kept.
    let o = initialize(home.path(), &data, &[], None);
    assert!(o.status.success(), "{}", log(&o));
    assert!(log(&o).contains("writes not yet in the db"), "{}", log(&o));
    assert!(log(&o).contains("data directory kept"), "{}", log(&o));
    etcd.restart().await;
    assert_eq!(
        etcd.revision().await,
        target,
        "etcd replays the WAL to the backed-up revision"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_member_with_a_corrupt_db_is_replaced_by_a_learner_not_restored() {
    let mut members = Etcd::start_cluster(EtcdVersion::V35, 3).await;
    let home = tempfile::tempdir().unwrap();
    let conf = home.path().join("etcd.conf.yaml");
    std::fs::write(&conf, cluster_conf(&members)).unwrap();
    members[2].kill();
    let data = members[2].data_dir().to_path_buf();
    std::fs::write(data.join("member/snap/db"), b"not a bbolt file").unwrap();
    let mut c = bin();
    c.env("ETCD_CONF", &conf).env("POD_NAME", "m2");
    let o = c
        .env("HOME", home.path())
        .args(["initialize", "--validation-mode=full", "--data-dir"])
        .arg(&data)
        .args(["--snapstore-temp-directory"])
        .arg(home.path().join("tmp"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", log(&o));
    assert!(
        log(&o).contains("to the cluster as a learner"),
        "{}",
        log(&o)
    );
    assert!(!data.exists(), "the data dir must be wiped:\n{}", log(&o));
    let mut client = members[0].client().await.unwrap();
    let list = client.member_list().await.unwrap();
    let m2 = list
        .members()
        .iter()
        .find(|m| m.peer_urls().contains(&members[2].peer_url))
        .unwrap_or_else(|| panic!("m2 not re-added: {:?}", list.members()));
    assert!(m2.is_learner(), "{m2:?}");
    assert_eq!(list.members().len(), 3);
}

/// Starts a stock etcd on `data_dir` as `member` (its name and peer URL) and reads its
/// revision and key count, or returns its log when it exits instead.
async fn boots(member: &Etcd, data_dir: &Path) -> Result<(i64, usize), String> {
    let client = format!("http://127.0.0.1:{}", testkit::free_port());
    let log_path = data_dir.with_extension("boot.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(member.version.binary("etcd"))
        .args(["--name", &member.name])
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args(["--listen-peer-urls", &member.peer_url])
        .args(["--initial-advertise-peer-urls", &member.peer_url])
        .args([
            "--initial-cluster",
            &format!("{}={}", member.name, member.peer_url),
        ])
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let result = loop {
        if let Ok(Some(_)) = child.try_wait() {
            break Err(std::fs::read_to_string(&log_path).unwrap_or_default());
        }
        if let Ok(mut c) = testkit::etcd_client::Client::connect([client.as_str()], None).await
            && let Ok(r) = c
                .get(
                    "",
                    Some(
                        testkit::etcd_client::GetOptions::new()
                            .with_all_keys()
                            .with_count_only(),
                    ),
                )
                .await
        {
            break Ok((r.header().unwrap().revision(), r.count() as usize));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "etcd neither served nor exited"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// The end of the records of a WAL file (the offset of the first zero length field).
fn wal_records_end(wal: &[u8]) -> usize {
    let mut pos = 0;
    loop {
        let len = u64::from_le_bytes(wal[pos..pos + 8].try_into().unwrap());
        if len == 0 {
            return pos;
        }
        let pad = if len >> 63 == 1 { (len >> 56) & 7 } else { 0 };
        pos += 8 + (len & 0x00FF_FFFF_FFFF_FFFF) as usize + pad as usize;
    }
}

/// A copy of `from` at `to` for etcd to start on (etcd repairs or renames what it starts on).
fn probe_copy(to: &Path, from: &Path) -> PathBuf {
    copy_dir(from, to);
    to.to_path_buf()
}

fn first_wal(data_dir: &Path) -> PathBuf {
    data_dir.join("member/wal/0000000000000000-0000000000000000.wal")
}

/// Defects 3 and 4 and the data-dir rows of the table: the validator judges a WAL and `.snap`
/// files as etcd does (etcd itself is started on each damaged copy to show it), never deletes a
/// data dir it has nothing to restore from, and replaces files squatting on the paths it uses.
async fn data_dir_table(version: EtcdVersion) {
    // A store with backups, and a member with three .snap files and a WAL past 20000 bytes.
    let backed = Etcd::start(version).await;
    let mut bc = backed.client().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let child = start_snapshot(&backed, home.path()).await;
    for i in 0..10 {
        bc.put(format!("/b/{i}"), "v", None).await.unwrap();
    }
    wait_for_backup(home.path(), backed.revision().await).await;
    stop_snapshot(child);
    let latest = latest_backup(home.path());
    let empty = tempfile::tempdir().unwrap();

    let mut member = Etcd::start_with(version, &["--snapshot-count=20"]).await;
    let mut c = member.client().await.unwrap();
    for i in 0..60 {
        c.put(format!("/k/{i:02}"), vec![b'x'; 500], None)
            .await
            .unwrap();
    }
    let member_rev = member.revision().await;
    member.stop();
    let work = tempfile::tempdir().unwrap();
    let pristine = work.path().join("pristine");
    copy_dir(member.data_dir(), &pristine);
    let mut snaps: Vec<PathBuf> = std::fs::read_dir(pristine.join("member/snap"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .collect();
    snaps.sort();
    assert!(snaps.len() >= 3, "{snaps:?}");
    assert!(std::fs::metadata(first_wal(&pristine)).unwrap().len() > 20000);
    assert!(wal_records_end(&std::fs::read(first_wal(&pristine)).unwrap()) > 20000);
    let fresh = |name: &str| {
        let d = work.path().join(name);
        copy_dir(&pristine, &d);
        d
    };

    // A flipped byte in the WAL's records: etcd refuses it; initialize restores it.
    let d = fresh("wal-crc");
    let mut wal = std::fs::read(first_wal(&d)).unwrap();
    wal[20000] ^= 0xff;
    std::fs::write(first_wal(&d), &wal).unwrap();
    let refused = boots(&member, &probe_copy(&work.path().join("wal-crc-probe"), &d)).await;
    assert!(
        refused.as_ref().is_err_and(|l| l.contains("crc mismatch")),
        "etcd starts on a WAL with a bad CRC: {:?}",
        refused.map_err(|l| l.lines().rev().take(3).collect::<Vec<_>>().join("\n"))
    );
    let o = initialize(home.path(), &d, &[], None);
    assert!(o.status.success(), "{}", log(&o));
    assert!(
        log(&o).contains("Corrupt") && log(&o).contains("fails its CRC check"),
        "{}",
        log(&o)
    );
    assert_eq!(revision(&d), latest, "restored from the store");

    // A torn tail (a record whose end never reached the disk): etcd repairs it; kept.
    let d = fresh("wal-torn");
    let mut wal = std::fs::read(first_wal(&d)).unwrap();
    let end = wal_records_end(&wal);
    wal[end..end + 8].copy_from_slice(&2000u64.to_le_bytes());
    wal[end + 8..end + 308].fill(0x42);
    std::fs::write(first_wal(&d), &wal).unwrap();
    let probe = probe_copy(&work.path().join("wal-torn-probe"), &d);
    assert_eq!(
        boots(&member, &probe).await,
        Ok((member_rev, 60)),
        "etcd repairs a torn tail"
    );
    let o = initialize(home.path(), &d, &[], None);
    assert!(
        o.status.success() && log(&o).contains("data directory kept"),
        "{}",
        log(&o)
    );

    // The newest .snap corrupt, with an empty store: etcd skips it and boots with every key;
    // the data dir is kept (before the fix, the validator deleted it).
    let d = fresh("snap-corrupt");
    let newest = d
        .join("member/snap")
        .join(snaps.last().unwrap().file_name().unwrap());
    let mut b = std::fs::read(&newest).unwrap();
    b[3000] ^= 0xff;
    std::fs::write(&newest, &b).unwrap();
    let probe = probe_copy(&work.path().join("snap-probe"), &d);
    assert_eq!(
        boots(&member, &probe).await,
        Ok((member_rev, 60)),
        "etcd skips a broken .snap"
    );
    let o = initialize(empty.path(), &d, &[], None);
    assert!(o.status.success(), "{}", log(&o));
    assert!(
        log(&o).contains("data directory kept")
            && log(&o).contains("etcd skips the broken snapshot files"),
        "{}",
        log(&o)
    );
    assert!(d.join("member/wal").exists());

    // A corrupt db with nothing to restore from: kept, and initialize fails saying why.
    let d = fresh("corrupt-no-backup");
    std::fs::write(d.join("member/snap/db"), b"not a db").unwrap();
    let before = tree(&d);
    let o = initialize(empty.path(), &d, &[], None);
    assert!(!o.status.success(), "{}", log(&o));
    assert!(
        log(&o).contains("no backup to restore it from, so the data directory is kept"),
        "{}",
        log(&o)
    );
    assert!(tree(&d) == before, "kept as it was");

    // Both bbolt metas broken: corrupt, restored.
    let d = fresh("db-metas");
    let db = d.join("member/snap/db");
    let mut b = std::fs::read(&db).unwrap();
    for page in [0usize, 1] {
        b[page * 4096 + 40] ^= 0xff;
    }
    std::fs::write(&db, &b).unwrap();
    let o = initialize(home.path(), &d, &[], None);
    assert!(
        o.status.success() && log(&o).contains("Corrupt"),
        "{}",
        log(&o)
    );
    assert_eq!(revision(&d), latest);

    // A regular file at --data-dir, and one at <data-dir>.part: replaced by the restore, on
    // the first run.
    let d = work.path().join("file-at-data-dir");
    std::fs::write(&d, b"x").unwrap();
    std::fs::write(etcd_datadir_part(&d), b"y").unwrap();
    let o = initialize(home.path(), &d, &[], None);
    assert!(o.status.success(), "{}", log(&o));
    assert_eq!(revision(&d), latest);
    assert!(!etcd_datadir_part(&d).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_wal_and_snap_files_are_judged_as_etcd34_judges_them() {
    data_dir_table(EtcdVersion::V34).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_wal_and_snap_files_are_judged_as_etcd35_judges_them() {
    data_dir_table(EtcdVersion::V35).await;
}
