//! What operators and buckets hold back, read from the providers' real servers: exclude tags
//! (`x-etcd-snapshot-exclude=true`) and immutability (S3 Object Lock, Azure immutability
//! policies, GCS retention). The servers are set up with the providers' own SDKs (boto3,
//! azure-storage-blob) or documented JSON API, so what etcdbr reads is what they wrote.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use etcdbr_types::Revision;
use snapstore::{Kind, Provider, SnapStore, Snapshot, StoreConfig};
use tokio::io::AsyncReadExt;

type Env = BTreeMap<String, String>;

fn config(provider: Provider, bucket: &str, endpoint: &str) -> StoreConfig {
    let mut c = StoreConfig::default();
    c.provider = Some(provider);
    bucket.clone_into(&mut c.container);
    endpoint.clone_into(&mut c.endpoint_override);
    "p".clone_into(&mut c.prefix);
    c
}

/// full1 (..100), delta (101..200), full2 (..200), delta (201..300), each `<name>` as content.
async fn two_sets(store: &SnapStore) -> Vec<Snapshot> {
    let t = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap();
    let mk = |kind, start, last, at| {
        Snapshot::new(
            kind,
            Revision(start),
            Revision(last),
            t(at),
            ".gz",
            false,
            store.layout_prefix(),
        )
    };
    let snaps = vec![
        mk(Kind::Full, 0, 100, 0),
        mk(Kind::Incr, 101, 200, 10),
        mk(Kind::Full, 0, 200, 20),
        mk(Kind::Incr, 201, 300, 30),
    ];
    for s in &snaps {
        let body = s.snap_name.clone().into_bytes();
        store
            .save(s, Box::new(std::io::Cursor::new(body)), Some(10))
            .await
            .unwrap();
    }
    snaps
}

async fn content(store: &SnapStore, s: &Snapshot) -> String {
    let mut out = String::new();
    store
        .fetch(s)
        .await
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    out
}

fn find<'a>(list: &'a [Snapshot], s: &Snapshot) -> &'a Snapshot {
    list.iter()
        .find(|l| l.snap_name == s.snap_name)
        .unwrap_or_else(|| panic!("{} not listed", s.snap_name))
}

fn boto(endpoint: &str, body: &str) -> String {
    testkit::stores::python(&format!(
        "import boto3, datetime\ns3 = boto3.client('s3', endpoint_url='{endpoint}', region_name='us-east-1', aws_access_key_id='AKID', aws_secret_access_key='SECRET')\n{body}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_versioned_bucket_with_exclude_tags_and_object_lock_on_moto() {
    let server = testkit::stores::moto();
    boto(
        &server.endpoint,
        "s3.create_bucket(Bucket='locked', ObjectLockEnabledForBucket=True)",
    );
    let creds = server.dir().join("creds.json");
    std::fs::write(
        &creds,
        r#"{"accessKeyID":"AKID","secretAccessKey":"SECRET","region":"us-east-1","s3ForcePathStyle":true}"#,
    )
    .unwrap();
    let env: Env = [(
        "AWS_APPLICATION_CREDENTIALS_JSON".to_owned(),
        creds.display().to_string(),
    )]
    .into();
    let store = SnapStore::open_with_env(
        &config(Provider::S3, "locked", &server.endpoint),
        env.clone(),
    )
    .unwrap();
    let snaps = two_sets(&store).await;
    let all = store.list_all().await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(
        all.iter()
            .all(|s| s.version_id.is_some() && s.excluded.is_none())
    );

    // The operator excludes the newest full snapshot as the original documents it: a delete
    // marker, and the version tagged. A delete marker alone (on the first delta) excludes
    // nothing: that delta is still read, by its version.
    let (full2, delta1) = (snaps[2].key(), snaps[1].key());
    boto(
        &server.endpoint,
        &format!(
            "v = s3.head_object(Bucket='locked', Key='{full2}')['VersionId']\n\
             s3.delete_object(Bucket='locked', Key='{full2}')\n\
             s3.put_object_tagging(Bucket='locked', Key='{full2}', VersionId=v, Tagging={{'TagSet': [{{'Key': 'x-etcd-snapshot-exclude', 'Value': 'true'}}]}})\n\
             s3.delete_object(Bucket='locked', Key='{delta1}')"
        ),
    );
    let all = store.list_all().await.unwrap();
    let excluded = find(&all, &snaps[2]).excluded.clone().expect("excluded");
    assert!(
        excluded.contains("x-etcd-snapshot-exclude=true"),
        "{excluded}"
    );
    assert!(find(&all, &snaps[1]).excluded.is_none());
    let restorable = store.list().await.unwrap();
    assert_eq!(restorable.len(), 3, "{restorable:?}");
    let set = store.latest_set().await.unwrap();
    assert_eq!(set.full.as_ref().unwrap().snap_name, snaps[0].snap_name);
    assert_eq!(
        set.deltas.iter().map(|d| &d.snap_name).collect::<Vec<_>>(),
        [&snaps[1].snap_name, &snaps[3].snap_name]
    );
    assert_eq!(
        content(&store, find(&all, &snaps[1])).await,
        snaps[1].snap_name
    );

    // Retention set on one object is read before deleting it; the bucket refuses the delete.
    let full1 = find(&all, &snaps[0]).clone();
    let v1 = full1.version_id.clone().unwrap();
    boto(
        &server.endpoint,
        &format!(
            "s3.put_object_retention(Bucket='locked', Key='{}', VersionId='{v1}', Retention={{'Mode': 'COMPLIANCE', 'RetainUntilDate': datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=3600)}})",
            full1.key()
        ),
    );
    let until = store.retained_until(&full1).await.unwrap().expect("held");
    assert!(
        until > Utc::now() + chrono::Duration::seconds(3500),
        "{until}"
    );
    assert!(store.delete(&full1).await.is_err(), "the lock refuses it");
    let d2 = find(&all, &snaps[3]).clone();
    assert_eq!(store.retained_until(&d2).await.unwrap(), None);

    // A version is deleted for good (no delete marker left to list again).
    store.delete(&d2).await.unwrap();
    let after = store.list_all().await.unwrap();
    assert!(
        after.iter().all(|s| s.snap_name != d2.snap_name),
        "{after:?}"
    );
    let versions = boto(
        &server.endpoint,
        &format!(
            "r = s3.list_object_versions(Bucket='locked', Prefix='{}')\nprint(len(r.get('Versions', [])), len(r.get('DeleteMarkers', [])))",
            d2.key()
        ),
    );
    assert_eq!(versions.trim(), "0 0");

    // The bucket's default retention gives every version its expiry without a request each
    // (moto takes a default rule only on an empty bucket: a second one).
    boto(
        &server.endpoint,
        "s3.create_bucket(Bucket='retained', ObjectLockEnabledForBucket=True)\n\
         s3.put_object_lock_configuration(Bucket='retained', ObjectLockConfiguration={'ObjectLockEnabled': 'Enabled', 'Rule': {'DefaultRetention': {'Mode': 'GOVERNANCE', 'Days': 2}}})",
    );
    let retained =
        SnapStore::open_with_env(&config(Provider::S3, "retained", &server.endpoint), env).unwrap();
    two_sets(&retained).await;
    for s in &retained.list_all().await.unwrap() {
        let t = s.immutability_expiry.expect("default retention");
        let left = t - Utc::now();
        assert!(
            left > chrono::Duration::hours(47) && left <= chrono::Duration::hours(48),
            "{}: {t}",
            s.snap_name
        );
    }
}

/// Web identity (IRSA, Gardener's workload identity) against moto's STS: the token file is
/// exchanged for temporary keys, S3 requests are signed with them (an `ASIA` key and a session
/// token, seen by a proxy in front of S3), and a rotated token is exchanged again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_web_identity_on_moto_sts() {
    use std::sync::{Arc, Mutex};
    let server = testkit::stores::moto();
    let upstream = server.endpoint.trim_start_matches("http://").to_owned();
    let seen: Arc<Mutex<Vec<(String, String, bool)>>> = Arc::default();
    let log = Arc::clone(&seen);
    let proxy = testkit::proxy::FaultProxy::start(&upstream, move |r| {
        let key = r
            .header("authorization")
            .and_then(|a| a.split("Credential=").nth(1))
            .and_then(|c| c.split('/').next())
            .unwrap_or_default()
            .to_owned();
        log.lock().unwrap().push((
            format!("{} {}", r.method, r.target),
            key,
            r.header("x-amz-security-token").is_some(),
        ));
        false
    })
    .await;
    let dir = server.dir().join("web-identity");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("region"), "us-east-1").unwrap();
    std::fs::write(dir.join("s3ForcePathStyle"), "true").unwrap();
    std::fs::write(
        dir.join("roleARN"),
        "arn:aws:iam::123456789012:role/etcd-backup",
    )
    .unwrap();
    std::fs::write(dir.join("token"), "eyJhbGciOiJSUzI1NiJ9.first.sig").unwrap();
    let env: Env = [
        (
            "AWS_APPLICATION_CREDENTIALS".to_owned(),
            dir.display().to_string(),
        ),
        ("AWS_ENDPOINT_URL_STS".to_owned(), proxy.endpoint.clone()),
    ]
    .into();
    let mut c = config(Provider::S3, &server.bucket, &proxy.endpoint);
    c.prefix = "wi".into();
    let store = SnapStore::open_with_env(&c, env.clone()).unwrap();
    store.set_rotation_check_interval(std::time::Duration::ZERO);
    let snaps = two_sets(&store).await;
    assert_eq!(store.list().await.unwrap().len(), 4);
    let sts = |log: &[(String, String, bool)]| log.iter().filter(|l| l.0 == "POST /").count();
    let first_keys: Vec<String> = {
        let log = seen.lock().unwrap();
        assert_eq!(sts(&log), 1, "one exchange for all requests: {log:?}");
        let s3: Vec<_> = log.iter().filter(|l| l.0 != "POST /").collect();
        assert!(
            s3.iter().all(|l| l.1.starts_with("ASIA") && l.2),
            "S3 signed with STS's temporary keys and session token: {s3:?}"
        );
        s3.iter().map(|l| l.1.clone()).collect()
    };
    // kubelet rotates the token in place: it is read again and exchanged again.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(dir.join("token"), "eyJhbGciOiJSUzI1NiJ9.second.sig").unwrap();
    assert_eq!(content(&store, &snaps[0]).await, snaps[0].snap_name);
    {
        let log = seen.lock().unwrap();
        assert_eq!(sts(&log), 2, "{log:?}");
        let last = log.last().unwrap();
        assert!(
            last.1.starts_with("ASIA") && !first_keys.contains(&last.1),
            "{last:?}"
        );
    }

    // The standard environment of EKS's pod identity webhook, and the JSON form.
    let token = dir.join("token").display().to_string();
    let env: Env = [
        ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
        (
            "AWS_ROLE_ARN".to_owned(),
            "arn:aws:iam::123456789012:role/etcd-backup".to_owned(),
        ),
        ("AWS_WEB_IDENTITY_TOKEN_FILE".to_owned(), token.clone()),
        ("AWS_ENDPOINT_URL_STS".to_owned(), server.endpoint.clone()),
    ]
    .into();
    let e = SnapStore::open_with_env(&config(Provider::S3, &server.bucket, &server.endpoint), env)
        .unwrap()
        .list()
        .await
        .unwrap_err();
    // Virtual-host style by default (no s3ForcePathStyle in this form): moto's IP cannot take
    // a bucket label, and the request is refused at once rather than retried.
    assert!(format!("{e:?}").contains("Builder"), "{e:?}");
    let json = server.dir().join("wi.json");
    std::fs::write(
        &json,
        r#"{"region":"us-east-1","roleARN":"arn:aws:iam::123456789012:role/etcd-backup"}"#,
    )
    .unwrap();
    let env: Env = [(
        "AWS_APPLICATION_CREDENTIALS_JSON".to_owned(),
        json.display().to_string(),
    )]
    .into();
    let e = SnapStore::open_with_env(&config(Provider::S3, &server.bucket, ""), env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("tokenPath"), "{e}");
    std::fs::write(
        &json,
        r#"{"region":"us-east-1","roleARN":"arn:aws:iam::123456789012:role/etcd-backup","tokenPath":"/nonexistent/token"}"#,
    )
    .unwrap();
    let env: Env = [(
        "AWS_APPLICATION_CREDENTIALS_JSON".to_owned(),
        json.display().to_string(),
    )]
    .into();
    let e = SnapStore::open_with_env(&config(Provider::S3, &server.bucket, ""), env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/token"), "{e}");
}
