//! GC over objects the store holds (S3 Object Lock on moto): no delete request is sent for an
//! object before its retention ends (the proxy in front of moto counts them), the rest of the
//! plan goes ahead, and the held objects are deleted once their retention has passed.

use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use etcdbr::gc::{GcOptions, GcPolicy, cycle};
use etcdbr_types::Revision;
use snapstore::{Kind, Provider, SnapStore, Snapshot, StoreConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_sends_no_delete_for_locked_objects_until_their_retention_ends() {
    let server = testkit::stores::moto();
    let boto = |body: &str| {
        testkit::stores::python(&format!(
            "import boto3, datetime\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='AKID', aws_secret_access_key='SECRET')\n{body}",
            server.endpoint
        ))
    };
    boto("s3.create_bucket(Bucket='locked', ObjectLockEnabledForBucket=True)");
    let upstream = server.endpoint.trim_start_matches("http://").to_owned();
    let deletes: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = Arc::clone(&deletes);
    let proxy = testkit::proxy::FaultProxy::start(&upstream, move |r| {
        if r.method == "DELETE" {
            log.lock().unwrap().push(r.target.clone());
        }
        false
    })
    .await;
    let creds = server.dir().join("creds.json");
    std::fs::write(
        &creds,
        r#"{"accessKeyID":"AKID","secretAccessKey":"SECRET","region":"us-east-1","s3ForcePathStyle":true}"#,
    )
    .unwrap();
    let mut c = StoreConfig::default();
    c.provider = Some(Provider::S3);
    c.container = "locked".into();
    c.endpoint_override.clone_from(&proxy.endpoint);
    c.prefix = "p".into();
    let env: std::collections::BTreeMap<String, String> = [(
        "AWS_APPLICATION_CREDENTIALS_JSON".to_owned(),
        creds.display().to_string(),
    )]
    .into();
    let store = SnapStore::open_with_env(&c, env).unwrap();

    // Three sets: full + delta each.
    let t = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap();
    let mut snaps = Vec::new();
    for i in 0..3 {
        let base = i * 100;
        snaps.push(Snapshot::new(
            Kind::Full,
            Revision(0),
            Revision(base + 100),
            t(base),
            ".gz",
            false,
            store.layout_prefix(),
        ));
        snaps.push(Snapshot::new(
            Kind::Incr,
            Revision(base + 101),
            Revision(base + 200),
            t(base + 50),
            ".gz",
            false,
            store.layout_prefix(),
        ));
    }
    for s in &snaps {
        store
            .save(s, Box::new(std::io::Cursor::new(b"x".to_vec())), Some(1))
            .await
            .unwrap();
    }
    // The oldest set is locked for a few seconds (retention on the objects, no default rule).
    let hold = 8;
    boto(&format!(
        "until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds={hold})\n\
         for k in ['{}', '{}']:\n    v = s3.head_object(Bucket='locked', Key=k)['VersionId']\n    s3.put_object_retention(Bucket='locked', Key=k, VersionId=v, Retention={{'Mode': 'COMPLIANCE', 'RetainUntilDate': until}})",
        snaps[0].key(),
        snaps[1].key()
    ));
    let held_at = std::time::Instant::now();
    let mut opts = GcOptions::new(GcPolicy::LimitBased);
    opts.max_backups = 1;

    let report = cycle(&store, &opts).await.unwrap();
    let sent = deletes.lock().unwrap().clone();
    assert_eq!(
        (report.snapshots_deleted, report.kept),
        (2, 1),
        "{report:?}"
    );
    assert_eq!(sent.len(), 2, "only the unlocked set: {sent:?}");
    for s in &snaps[..2] {
        assert!(
            sent.iter().all(|d| !d.contains(&s.snap_name)),
            "a delete was sent for locked {}: {sent:?}",
            s.snap_name
        );
    }
    assert!(sent.iter().all(|d| d.contains("versionId=")), "{sent:?}");
    // A second cycle inside the retention sends nothing either.
    let report = cycle(&store, &opts).await.unwrap();
    assert_eq!(report.snapshots_deleted, 0);
    assert_eq!(deletes.lock().unwrap().len(), 2);

    // After the retention ends, the set goes.
    let left = std::time::Duration::from_secs(hold + 1).saturating_sub(held_at.elapsed());
    tokio::time::sleep(left).await;
    let report = cycle(&store, &opts).await.unwrap();
    assert_eq!(
        (report.snapshots_deleted, report.failures),
        (2, 0),
        "{report:?}"
    );
    let names: Vec<String> = store
        .list_all()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.snap_name)
        .collect();
    assert_eq!(
        names,
        [snaps[4].snap_name.clone(), snaps[5].snap_name.clone()]
    );
}
