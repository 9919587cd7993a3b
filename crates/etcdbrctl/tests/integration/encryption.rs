//! Client-side encryption and signed manifests through the binary, against real etcd 3.4 and
//! 3.5: encrypted chains (gzip and uncompressed) restore and boot with equal `hashkv`; the
//! reference `age` CLI decrypts what etcdbr wrote and etcdbr reads what the CLI encrypted; a
//! chain switched to encryption mid-way restores; rotated keys (old objects under the old key,
//! then `copy --reencrypt`) restore; and a bucket writer without the keys who removes,
//! replaces, renames, adds or truncates one object is caught by `verify` and by `restore`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};

use crate::common::sidecar::Sidecar;
use crate::common::{
    assert_restores_with, bin, kv_rows, names, restore, start_snapshot_with, stop_snapshot, v2,
    wait_for_backup, workload,
};
use testkit::{Etcd, EtcdVersion};

/// An age identity made by `age-keygen`, with its public key.
struct Key {
    identity: PathBuf,
    public: String,
}

fn keygen(dir: &Path, name: &str) -> Key {
    let identity = dir.join(format!("{name}.txt"));
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&identity)
        .output()
        .expect("age-keygen (Debian package age; scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("age-keygen")
        .arg("-y")
        .arg(&identity)
        .output()
        .unwrap();
    Key {
        identity,
        public: String::from_utf8(out.stdout).unwrap().trim().to_owned(),
    }
}

fn recipients(dir: &Path, name: &str, keys: &[&Key]) -> PathBuf {
    let p = dir.join(name);
    let lines: Vec<&str> = keys.iter().map(|k| k.public.as_str()).collect();
    std::fs::write(&p, format!("# etcdbr recipients\n{}\n", lines.join("\n"))).unwrap();
    p
}

fn flag(name: &str, path: &Path) -> String {
    format!("--{name}={}", path.display())
}

/// `age -d -i identity file`, which must succeed.
fn age_decrypt(identity: &Path, file: &Path) -> Vec<u8> {
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "age -d {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
}

fn assert_trailer(plain: &[u8], what: &str) {
    let (body, trailer) = plain.split_at(plain.len() - 32);
    assert_eq!(Sha256::digest(body).as_slice(), trailer, "{what}");
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn verify(home: &Path, extra: &[&str]) -> Output {
    bin()
        .env("HOME", home)
        .args([
            "verify",
            "--storage-provider=Local",
            "--store-container=backups",
            "--restoration-temp-snapshots-dir",
        ])
        .arg(home.join("verify-tmp"))
        .args(extra)
        .output()
        .unwrap()
}

/// An encrypted chain on `version`, the age CLI both ways, and the errors without a key.
async fn encrypted_chain(version: EtcdVersion, compression: &str) {
    let etcd = Etcd::start_with(version, &["--max-request-bytes=3145728"]).await;
    let mut c = etcd.client().await.unwrap();
    let lease = c.lease_grant(3600, None).await.unwrap().id();
    workload(&mut c, 0, lease).await;
    let home = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (main, recovery) = (keygen(keys.path(), "main"), keygen(keys.path(), "recovery"));
    let rcpt = recipients(keys.path(), "recipients.txt", &[&main, &recovery]);
    let child = start_snapshot_with(
        &etcd,
        home.path(),
        &[compression, &flag("encryption-recipients-file", &rcpt)],
    )
    .await;
    for round in 1..=2 {
        workload(&mut c, round, lease).await;
        wait_for_backup(home.path(), etcd.revision().await).await;
    }
    stop_snapshot(child);
    let rev = etcd.revision().await;
    let gzip = compression.contains("gzip");
    let all = names(&v2(home.path()));
    let suffix = if gzip { ".gz.age" } else { ".age" };
    assert!(all.iter().all(|n| n.ends_with(suffix)), "{all:?}");
    assert!(all.iter().any(|n| n.starts_with("Incr-")), "{all:?}");

    // The age CLI decrypts every object with either key: the full snapshot is etcd's snapshot
    // with its sha256 trailer, each delta the JSON with its trailer.
    for n in &all {
        let file = v2(home.path()).join(n);
        let a = age_decrypt(&main.identity, &file);
        let b = age_decrypt(&recovery.identity, &file);
        assert_eq!(a, b);
        let plain = if gzip { gunzip(&a) } else { a };
        assert_trailer(&plain, n);
        if n.starts_with("Incr-") {
            assert!(plain.starts_with(b"[{"), "{n}");
        } else {
            assert_eq!(
                &plain[16..20],
                &0xED0C_DAEDu32.to_le_bytes(),
                "{n}: bbolt magic"
            );
        }
        // The plaintext is not in the stored bytes.
        let stored = std::fs::read(&file).unwrap();
        assert!(stored.starts_with(b"age-encryption.org/v1\n"), "{n}");
    }

    // Without a key, or with a stranger's, restore says which keys the object was written for.
    let peer = format!("http://127.0.0.1:{}", testkit::free_port());
    let out = restore(home.path(), &home.path().join("nokey"), &peer, &[]);
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(
        msg.contains("--encryption-identity-file") && msg.contains(&main.public),
        "{msg}"
    );
    let stranger = keygen(keys.path(), "stranger");
    // A secret key file others can read is warned about.
    std::fs::set_permissions(
        &stranger.identity,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let out = restore(
        home.path(),
        &home.path().join("wrongkey"),
        &peer,
        &[&flag("encryption-identity-file", &stranger.identity)],
    );
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(
        msg.contains("none of the 1 identities") && msg.contains(&recovery.public),
        "{msg}"
    );
    assert!(!msg.contains("AGE-SECRET-KEY"), "{msg}");
    assert!(msg.contains("chmod 600"), "{msg}");
    assert!(!home.path().join("wrongkey").exists());

    // Either key restores; etcd boots with the source's hashkv.
    for key in [&main, &recovery] {
        let f = flag("encryption-identity-file", &key.identity);
        assert_restores_with(home.path(), &mut c, rev, &[&f]).await;
    }

    // The age CLI writes, etcdbr reads: every object re-encrypted by `age -r` for a third key.
    let third = keygen(keys.path(), "third");
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(v2(other.path())).unwrap();
    for n in &all {
        let plain = age_decrypt(&main.identity, &v2(home.path()).join(n));
        let plain_file = other.path().join("plain");
        std::fs::write(&plain_file, plain).unwrap();
        let st = Command::new("age")
            .args(["-r", &third.public, "-o"])
            .arg(v2(other.path()).join(n))
            .arg(&plain_file)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let f = flag("encryption-identity-file", &third.identity);
    assert_restores_with(other.path(), &mut c, rev, &[&f]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_gzip_chain_on_etcd_35_restores_and_the_age_cli_reads_it() {
    encrypted_chain(EtcdVersion::V35, "--compression-policy=gzip").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_uncompressed_chain_on_etcd_34_restores_and_the_age_cli_reads_it() {
    encrypted_chain(EtcdVersion::V34, "--compress-snapshots=false").await;
}

/// A plain chain switched to encryption, then to a new key; then rotated with `copy --reencrypt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_chain_and_rotated_keys_restore() {
    let etcd = Etcd::start_with(EtcdVersion::V35, &["--max-request-bytes=3145728"]).await;
    let mut c = etcd.client().await.unwrap();
    let lease = c.lease_grant(3600, None).await.unwrap().id();
    workload(&mut c, 0, lease).await;
    let home = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (old, new) = (keygen(keys.path(), "old"), keygen(keys.path(), "new"));
    std::fs::create_dir_all(home.path().join("backups")).unwrap();
    let plain = start_snapshot_with(&etcd, home.path(), &[]).await;
    workload(&mut c, 1, lease).await;
    wait_for_backup(home.path(), etcd.revision().await).await;
    stop_snapshot(plain);
    // The server resumes the store's chain: its deltas are encrypted, for the old key.
    crate::common::sidecar::single_member_conf(home.path(), &etcd);
    let old_rcpt = recipients(keys.path(), "rcpt-old.txt", &[&old]);
    let mut server = Sidecar::start(
        home.path(),
        "m0",
        &etcd,
        testkit::free_port(),
        &[&flag("encryption-recipients-file", &old_rcpt)],
    );
    server.wait_health(200).await;
    workload(&mut c, 2, lease).await;
    wait_for_backup(home.path(), etcd.revision().await).await;
    assert!(server.terminate(), "{}", server.log());
    let rev = etcd.revision().await;
    let all = names(&v2(home.path()));
    let fulls: Vec<_> = all.iter().filter(|n| n.starts_with("Full-")).collect();
    assert!(fulls.len() == 1 && fulls[0].ends_with(".gz"), "{all:?}");
    assert!(all.iter().any(|n| n.ends_with(".gz.age")), "{all:?}");
    let old_flag = flag("encryption-identity-file", &old.identity);
    assert_restores_with(home.path(), &mut c, rev, &[&old_flag]).await;

    // `list` names the encrypted objects.
    let out = bin()
        .env("HOME", home.path())
        .args([
            "list",
            "--storage-provider=Local",
            "--store-container=backups",
        ])
        .output()
        .unwrap();
    assert!(text(&out).contains("gzip+age"), "{}", text(&out));

    // The keys rotate: a copy for the new recipients encrypts the plain objects for the new key
    // and keeps the encrypted ones as they are, so the set holds objects for both keys.
    let copy = |from: &Path, to: &Path, extra: &[&str]| {
        std::fs::create_dir_all(to).unwrap();
        std::os::unix::fs::symlink(from.join("backups"), to.join("src")).unwrap();
        let out = bin()
            .env("HOME", to)
            .args([
                "copy",
                "--source-storage-provider=Local",
                "--source-store-container=src",
                "--storage-provider=Local",
                "--store-container=backups",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        names(&v2(to))
    };
    let new_rcpt = recipients(keys.path(), "rcpt-new.txt", &[&new]);
    let mixed = tempfile::tempdir().unwrap();
    let copied = copy(
        home.path(),
        mixed.path(),
        &[&flag("encryption-recipients-file", &new_rcpt)],
    );
    assert!(copied.iter().all(|n| n.ends_with(".age")), "{copied:?}");
    // The new key alone cannot read the objects written for the old one, and says so.
    let peer = format!("http://127.0.0.1:{}", testkit::free_port());
    let only_new = flag("encryption-identity-file", &new.identity);
    let out = restore(mixed.path(), &mixed.path().join("x"), &peer, &[&only_new]);
    assert!(!out.status.success(), "{copied:?}: {}", text(&out));
    assert!(text(&out).contains(&old.public), "{}", text(&out));
    // An identity file with both keys restores the whole chain.
    let both = keys.path().join("both.txt");
    let text_of = |p: &Path| std::fs::read_to_string(p).unwrap();
    std::fs::write(&both, text_of(&old.identity) + &text_of(&new.identity)).unwrap();
    let both_flag = flag("encryption-identity-file", &both);
    assert_restores_with(mixed.path(), &mut c, rev, &[&both_flag]).await;

    // `copy --reencrypt` rewrites every object for the new key, streaming; the new key alone
    // then restores.
    let rotated = tempfile::tempdir().unwrap();
    let rcpt = new_rcpt;
    let copied = copy(
        mixed.path(),
        rotated.path(),
        &[
            "--reencrypt",
            &flag("encryption-recipients-file", &rcpt),
            &both_flag,
        ],
    );
    assert_eq!(copied.len(), all.len(), "{copied:?}");
    assert!(copied.iter().all(|n| n.ends_with(".gz.age")), "{copied:?}");
    assert_restores_with(rotated.path(), &mut c, rev, &[&only_new]).await;

    // Compacting the encrypted chain stores an encrypted full snapshot.
    let out = bin()
        .env("HOME", rotated.path())
        .args([
            "compact",
            "--storage-provider=Local",
            "--store-container=backups",
        ])
        .args([
            "--data-dir",
            rotated.path().join("scratch").to_str().unwrap(),
        ])
        .args([
            "--restoration-temp-snapshots-dir",
            rotated.path().join("rtmp").to_str().unwrap(),
        ])
        .arg(flag("encryption-recipients-file", &rcpt))
        .arg(&only_new)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let fulls: Vec<String> = names(&v2(rotated.path()))
        .into_iter()
        .filter(|n| n.starts_with("Full-"))
        .collect();
    assert!(
        fulls.len() == 2 && fulls.iter().all(|n| n.ends_with(".gz.age")),
        "{fulls:?}"
    );
    // `hashkv` covers the history the compaction dropped: compare the keys instead.
    let data = rotated.path().join("compacted");
    let peer = format!("http://127.0.0.1:{}", testkit::free_port());
    let out = restore(rotated.path(), &data, &peer, &[&only_new]);
    assert!(out.status.success(), "{}", text(&out));
    let mut r = Etcd::on_data_dir(EtcdVersion::V35, &data, &["--initial-cluster-token=tok"]);
    r.set_member("r1", &peer);
    r.restart().await;
    assert_eq!(r.revision().await, rev);
    let mut rc = r.client().await.unwrap();
    for round in 0..=2 {
        let prefix = || Some(testkit::etcd_client::GetOptions::new().with_prefix());
        let key = format!("/r{round}/");
        let want = kv_rows(&c.get(key.as_str(), prefix()).await.unwrap());
        let got = kv_rows(&rc.get(key.as_str(), prefix()).await.unwrap());
        assert!(!want.is_empty() && got == want, "round {round}");
    }
}

/// One way a bucket writer without the keys changes one object.
#[derive(Debug, Clone, Copy)]
enum Attack {
    RemoveMiddle,
    RemoveLast,
    Replace,
    Rename,
    Foreign,
    Truncate,
    TruncateFull,
}

fn attack(dir: &Path, how: Attack) -> String {
    let mut deltas: Vec<String> = names(dir)
        .into_iter()
        .filter(|n| n.starts_with("Incr-"))
        .collect();
    deltas.sort_by_key(|n| n.split('-').nth(2).unwrap().parse::<i64>().unwrap());
    let (first, last) = (deltas[0].clone(), deltas[deltas.len() - 1].clone());
    let mid = deltas[deltas.len() / 2].clone();
    match how {
        Attack::RemoveMiddle => {
            std::fs::remove_file(dir.join(&mid)).unwrap();
            mid
        }
        Attack::RemoveLast => {
            std::fs::remove_file(dir.join(&last)).unwrap();
            last
        }
        Attack::Replace => {
            // Another valid object of the chain under this one's name: decrypts and decompresses.
            std::fs::copy(dir.join(&first), dir.join(&mid)).unwrap();
            mid
        }
        Attack::Rename => {
            // Two deltas swap names.
            std::fs::rename(dir.join(&first), dir.join("tmp")).unwrap();
            std::fs::rename(dir.join(&mid), dir.join(&first)).unwrap();
            std::fs::rename(dir.join("tmp"), dir.join(&mid)).unwrap();
            first
        }
        Attack::Foreign => {
            let parts: Vec<&str> = last.split('-').collect();
            let top: i64 = parts[2].parse().unwrap();
            let name = format!(
                "Incr-{:08}-{:08}-{}",
                top + 1,
                top + 5,
                parts[3].replace(".gz.age", "9.gz.age")
            );
            std::fs::copy(dir.join(&last), dir.join(&name)).unwrap();
            name
        }
        Attack::Truncate => {
            let data = std::fs::read(dir.join(&mid)).unwrap();
            std::fs::write(dir.join(&mid), &data[..data.len() - 7]).unwrap();
            mid
        }
        Attack::TruncateFull => {
            let full = names(dir)
                .into_iter()
                .find(|n| n.starts_with("Full-"))
                .unwrap();
            let data = std::fs::read(dir.join(&full)).unwrap();
            std::fs::write(dir.join(&full), &data[..data.len() / 2]).unwrap();
            full
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_restore_catch_every_change_to_a_signed_chain() {
    let etcd = Etcd::start_with(EtcdVersion::V35, &["--max-request-bytes=3145728"]).await;
    let mut c = etcd.client().await.unwrap();
    let lease = c.lease_grant(3600, None).await.unwrap().id();
    workload(&mut c, 0, lease).await;
    let home = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = keygen(keys.path(), "k");
    let rcpt = recipients(keys.path(), "r.txt", &[&key]);
    let private = keys.path().join("signing.pem");
    let public = keys.path().join("signing.pub.pem");
    assert!(
        Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&private)
            .status()
            .unwrap()
            .success()
    );
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .output()
        .unwrap();
    std::fs::write(&public, out.stdout).unwrap();
    let child = start_snapshot_with(
        &etcd,
        home.path(),
        &[
            &flag("encryption-recipients-file", &rcpt),
            &flag("signing-key-file", &private),
        ],
    )
    .await;
    for round in 1..=4 {
        workload(&mut c, round, lease).await;
        wait_for_backup(home.path(), etcd.revision().await).await;
    }
    stop_snapshot(child);
    let rev = etcd.revision().await;
    let id = flag("encryption-identity-file", &key.identity);
    let check = flag("signing-key-file", &public);
    let out = verify(home.path(), &[&id, &check]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1 signed sets"), "{}", text(&out));
    assert!(
        names(&v2(home.path()))
            .iter()
            .filter(|n| n.starts_with("Incr-"))
            .count()
            >= 3
    );
    let pristine = tempfile::tempdir().unwrap();
    let backup = pristine.path().join("backups");
    copy_dir(&home.path().join("backups"), &backup);

    for how in [
        Attack::RemoveMiddle,
        Attack::RemoveLast,
        Attack::Replace,
        Attack::Rename,
        Attack::Foreign,
        Attack::Truncate,
        Attack::TruncateFull,
    ] {
        let object = attack(&v2(home.path()), how);
        let out = verify(home.path(), &[&id, &check]);
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(1), "{how:?}: {msg}");
        assert!(msg.contains(&object), "{how:?} names {object}: {msg}");
        assert!(msg.contains("signed manifest"), "{how:?}: {msg}");
        let peer = format!("http://127.0.0.1:{}", testkit::free_port());
        let data = home.path().join(format!("{how:?}"));
        let out = restore(home.path(), &data, &peer, &[&id, &check]);
        let msg = text(&out);
        assert!(!out.status.success(), "{how:?}: {msg}");
        assert!(
            msg.contains(&object),
            "{how:?}: restore names {object}: {msg}"
        );
        assert!(!data.exists(), "{how:?}");
        std::fs::remove_dir_all(home.path().join("backups")).unwrap();
        copy_dir(&backup, &home.path().join("backups"));
    }
    // A removed manifest is caught too; untouched, the chain restores.
    let manifests = home.path().join("backups/manifests");
    std::fs::rename(&manifests, home.path().join("away")).unwrap();
    let out = verify(home.path(), &[&id, &check]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no signed manifest"), "{}", text(&out));
    std::fs::rename(home.path().join("away"), &manifests).unwrap();
    assert_restores_with(home.path(), &mut c, rev, &[&id, &check]).await;

    // A second set; then the newest set removed, its manifest left: restore would roll the
    // cluster back to the first set, and refuses, naming the set.
    let child = start_snapshot_with(
        &etcd,
        home.path(),
        &[
            &flag("encryption-recipients-file", &rcpt),
            &flag("signing-key-file", &private),
        ],
    )
    .await;
    workload(&mut c, 5, lease).await;
    wait_for_backup(home.path(), etcd.revision().await).await;
    stop_snapshot(child);
    let mut fulls: Vec<String> = names(&v2(home.path()))
        .into_iter()
        .filter(|n| n.starts_with("Full-"))
        .collect();
    fulls.sort_by_key(|n| n.split('-').nth(2).unwrap().parse::<i64>().unwrap());
    assert_eq!(fulls.len(), 2, "{fulls:?}");
    let newest = fulls[1].clone();
    let newest_rev: i64 = newest.split('-').nth(2).unwrap().parse().unwrap();
    for n in names(&v2(home.path())) {
        let last: i64 = n.split('-').nth(2).unwrap().parse().unwrap();
        if last >= newest_rev {
            std::fs::remove_file(v2(home.path()).join(n)).unwrap();
        }
    }
    let set = newest.trim_end_matches(".age");
    let peer = format!("http://127.0.0.1:{}", testkit::free_port());
    let out = restore(
        home.path(),
        &home.path().join("rollback"),
        &peer,
        &[&id, &check],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(set), "{}", text(&out));
    let out = verify(home.path(), &[&id, &check]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(set), "{}", text(&out));

    // Without a signing key, age alone still catches a cut-off object.
    attack(&v2(home.path()), Attack::Truncate);
    let peer = format!("http://127.0.0.1:{}", testkit::free_port());
    let out = restore(home.path(), &home.path().join("cut"), &peer, &[&id]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("age"), "{}", text(&out));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}
