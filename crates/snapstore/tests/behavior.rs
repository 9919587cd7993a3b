//! One behavior suite run against every provider's real server on loopback: small objects,
//! chunked uploads, listing, snapshot names, deletes, and bad credentials.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use etcdbr_types::Revision;
use snapstore::{Kind, Provider, SnapStore, Snapshot, StoreConfig};
use tokio::io::AsyncReadExt;

type Env = BTreeMap<String, String>;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

async fn read(store: &SnapStore, s: &Snapshot) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .fetch(s)
        .await
        .unwrap()
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

/// The suite: what the engine needs from any store.
async fn behaves(store: &SnapStore) {
    assert!(store.list().await.unwrap().is_empty(), "fresh bucket");
    let t = |s| Utc.timestamp_opt(s, 0).unwrap();
    let full = Snapshot::new(
        Kind::Full,
        Revision(0),
        Revision(100),
        t(1_700_000_000),
        ".gz",
        false,
        store.layout_prefix(),
    );
    let big = pattern(21 * 1024 * 1024 + 123, 7); // more than four 5 MiB chunks: a multipart upload
    let n = store
        .save(
            &full,
            Box::new(std::io::Cursor::new(big.clone())),
            Some(big.len() as u64),
        )
        .await
        .unwrap();
    assert_eq!(n, big.len() as u64);
    let d1 = Snapshot::new(
        Kind::Incr,
        Revision(101),
        Revision(150),
        t(1_700_000_100),
        ".gz",
        false,
        store.layout_prefix(),
    );
    let d2 = Snapshot::new(
        Kind::Incr,
        Revision(151),
        Revision(200),
        t(1_700_000_200),
        ".gz",
        false,
        store.layout_prefix(),
    );
    for (i, d) in [&d1, &d2].into_iter().enumerate() {
        let small = pattern(1000 + i, i as u8);
        store
            .save(d, Box::new(std::io::Cursor::new(small)), Some(1000))
            .await
            .unwrap();
    }
    let empty = Snapshot::new(
        Kind::Incr,
        Revision(1),
        Revision(1),
        t(1_600_000_000),
        "",
        false,
        store.layout_prefix(),
    );
    store
        .save(&empty, Box::new(std::io::Cursor::new(Vec::new())), Some(0))
        .await
        .unwrap();

    let list = store.list().await.unwrap();
    let names: Vec<&str> = list
        .iter()
        .filter(|s| !s.is_chunk)
        .map(|s| s.snap_name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            empty.snap_name.as_str(),
            full.snap_name.as_str(),
            d1.snap_name.as_str(),
            d2.snap_name.as_str()
        ]
    );
    let set = store.latest_set().await.unwrap();
    assert_eq!(set.full.as_ref().unwrap().snap_name, full.snap_name);
    assert_eq!(set.deltas.len(), 2);
    assert!(
        read(store, &full).await == big,
        "the multipart object reads back byte for byte"
    );
    assert_eq!(read(store, &d2).await, pattern(1001, 1));
    assert!(read(store, &empty).await.is_empty());

    store.delete(&d1).await.unwrap();
    store.delete(&empty).await.unwrap();
    let left: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter(|s| !s.is_chunk)
        .map(|s| s.snap_name)
        .collect();
    assert_eq!(left, [full.snap_name.clone(), d2.snap_name.clone()]);
    let missing = store.fetch(&d1).await;
    assert!(missing.is_err(), "a deleted object is gone");
    for s in [&full, &d2] {
        store.delete(s).await.unwrap();
    }
    assert!(
        store.list().await.unwrap().iter().all(|s| s.is_chunk),
        "only chunk objects (if any) remain"
    );
}

fn config(provider: Provider, bucket: &str, endpoint: &str, prefix: &str) -> StoreConfig {
    let mut c = StoreConfig::default();
    c.provider = Some(provider);
    bucket.clone_into(&mut c.container);
    endpoint.clone_into(&mut c.endpoint_override);
    prefix.clone_into(&mut c.prefix);
    c
}

fn json_file(dir: &std::path::Path, json: &str) -> String {
    let p = dir.join("credentials.json");
    std::fs::write(&p, json).unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_on_moto() {
    let server = testkit::stores::moto();
    let f = json_file(
        server.dir(),
        r#"{"accessKeyID":"AKID","secretAccessKey":"SECRET","region":"us-east-1","s3ForcePathStyle":true}"#,
    );
    let env: Env = [("AWS_APPLICATION_CREDENTIALS_JSON".to_owned(), f)].into();
    let store = SnapStore::open_with_env(
        &config(Provider::S3, &server.bucket, &server.endpoint, "shoot/etcd"),
        env.clone(),
    )
    .unwrap();
    behaves(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_and_ocs_on_moto() {
    let server = testkit::stores::moto();
    let host = server.endpoint.trim_start_matches("http://").to_owned();
    let env: Env = [
        ("ECS_ENDPOINT".to_owned(), host.clone()),
        ("ECS_ACCESS_KEY_ID".to_owned(), "a".to_owned()),
        ("ECS_SECRET_ACCESS_KEY".to_owned(), "b".to_owned()),
        ("ECS_DISABLE_SSL".to_owned(), "true".to_owned()),
    ]
    .into();
    let mut c = config(Provider::Ecs, &server.bucket, "", "ecs");
    c.endpoint_override.clear();
    behaves(&SnapStore::open_with_env(&c, env.clone()).unwrap()).await;

    let dir = server.dir().join("ocs");
    std::fs::create_dir_all(&dir).unwrap();
    for (k, v) in [
        ("endpoint", host.as_str()),
        ("region", "r"),
        ("accessKeyID", "a"),
        ("secretAccessKey", "b"),
        ("disableSSL", "true"),
    ] {
        std::fs::write(dir.join(k), v).unwrap();
    }
    let env: Env = [(
        "OPENSHIFT_APPLICATION_CREDENTIALS".to_owned(),
        dir.display().to_string(),
    )]
    .into();
    behaves(
        &SnapStore::open_with_env(
            &config(Provider::Ocs, &server.bucket, "", "ocs"),
            env.clone(),
        )
        .unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abs_on_azurite() {
    let server = testkit::stores::azurite();
    let f = json_file(
        server.dir(),
        &format!(
            r#"{{"storageAccount":"{}","storageKey":"{}"}}"#,
            testkit::stores::AZURITE_ACCOUNT,
            testkit::stores::AZURITE_KEY
        ),
    );
    let env: Env = [("AZURE_APPLICATION_CREDENTIALS_JSON".to_owned(), f)].into();
    let store = SnapStore::open_with_env(
        &config(Provider::Abs, &server.bucket, &server.endpoint, "abs"),
        env.clone(),
    )
    .unwrap();
    behaves(&store).await;
    // A wrong key is refused by Azurite: reported at start-up, naming the provider and container,
    // without the key.
    let f = json_file(
        server.dir(),
        &format!(
            r#"{{"storageAccount":"{}","storageKey":"d3Jvbmc="}}"#,
            testkit::stores::AZURITE_ACCOUNT
        ),
    );
    let env: Env = [("AZURE_APPLICATION_CREDENTIALS_JSON".to_owned(), f.clone())].into();
    let rotating = SnapStore::open_with_env(
        &config(Provider::Abs, &server.bucket, &server.endpoint, "abs"),
        env,
    )
    .unwrap();
    let e = rotating.check_access().await.unwrap_err();
    let chain = format!("{e}: {:?}", std::error::Error::source(&e));
    assert!(
        chain.contains("ABS") && chain.contains("etcd-backups") && !chain.contains("d3Jvbmc="),
        "{chain}"
    );
    // Rotating the secret file in place is picked up without reopening the store.
    rotating.set_rotation_check_interval(std::time::Duration::from_millis(200));
    std::fs::write(
        &f,
        format!(
            r#"{{"storageAccount":"{}","storageKey":"{}"}}"#,
            testkit::stores::AZURITE_ACCOUNT,
            testkit::stores::AZURITE_KEY
        ),
    )
    .unwrap();
    // Picked up at the first check after the interval, without reopening the store.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Err(e) = rotating.check_access().await {
        assert!(std::time::Instant::now() < deadline, "never rotated: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_on_fake_gcs_server() {
    let server = testkit::stores::fake_gcs();
    let env: Env = [("HOME".to_owned(), server.dir().display().to_string())].into();
    let store = SnapStore::open_with_env(
        &config(Provider::Gcs, &server.bucket, &server.endpoint, "gcs"),
        env.clone(),
    )
    .unwrap();
    behaves(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oss_wire_protocol_on_moto() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let server = testkit::stores::moto();
    let f = json_file(
        server.dir(),
        &format!(
            r#"{{"storageEndpoint":"{}","accessKeyID":"a","accessKeySecret":"b"}}"#,
            server.endpoint
        ),
    );
    let env: Env = [("ALICLOUD_APPLICATION_CREDENTIALS_JSON".to_owned(), f)].into();
    let mut c = config(Provider::Oss, &server.bucket, "", "oss");
    c.endpoint_override.clear();
    behaves(&SnapStore::open_with_env(&c, env.clone()).unwrap()).await;

    // moto does not check OSS signatures, so a proxy checks each request against the V1
    // algorithm as Alibaba documents it ("Include a V1 signature in the Authorization header").
    let upstream = server.endpoint.trim_start_matches("http://").to_owned();
    let bad = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let (b2, s2) = (std::sync::Arc::clone(&bad), std::sync::Arc::clone(&seen));
    let proxy = testkit::proxy::FaultProxy::start(&upstream, move |r| {
        if r.target.contains("uploadId=") {
            s2.fetch_add(1, Ordering::SeqCst); // multipart requests carry sub-resources
        }
        let problem = oss_v1_problem(r, "a", "b");
        if let Some(p) = &problem {
            b2.lock()
                .unwrap()
                .push(format!("{} {}: {p}", r.method, r.target));
        }
        problem.is_some()
    })
    .await;
    let f = json_file(
        server.dir(),
        &format!(
            r#"{{"storageEndpoint":"{}","accessKeyID":"a","accessKeySecret":"b"}}"#,
            proxy.endpoint
        ),
    );
    let env: Env = [("ALICLOUD_APPLICATION_CREDENTIALS_JSON".to_owned(), f)].into();
    let mut c = config(Provider::Oss, &server.bucket, "", "oss-signed");
    c.endpoint_override.clear();
    behaves(&SnapStore::open_with_env(&c, env).unwrap()).await;
    assert!(
        seen.load(Ordering::SeqCst) >= 5,
        "multipart requests were checked"
    );
    assert!(bad.lock().unwrap().is_empty(), "{:#?}", bad.lock().unwrap());
}

/// Sub-resources that belong in the V1 CanonicalizedResource, from Alibaba's documentation.
const OSS_SUBRESOURCES: &[&str] = &[
    "acl",
    "append",
    "bucketInfo",
    "callback",
    "callback-var",
    "cname",
    "comp",
    "cors",
    "delete",
    "encryption",
    "endTime",
    "img",
    "lifecycle",
    "live",
    "location",
    "logging",
    "objectMeta",
    "partNumber",
    "policy",
    "position",
    "qos",
    "qosInfo",
    "referer",
    "regionList",
    "replication",
    "replicationLocation",
    "replicationProgress",
    "restore",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "security-token",
    "startTime",
    "stat",
    "status",
    "style",
    "styleName",
    "symlink",
    "tagging",
    "udf",
    "udfApplication",
    "udfApplicationLog",
    "udfId",
    "udfImage",
    "udfImageDesc",
    "udfName",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "vod",
    "website",
    "x-oss-process",
];

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(Ok(v)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// Why `r` does not carry a valid OSS V1 signature for `id`/`secret`, if it does not.
/// Path-style requests only: the path starts with the bucket.
fn oss_v1_problem(r: &testkit::proxy::RequestHead, id: &str, secret: &str) -> Option<String> {
    use base64::Engine as _;
    use hmac::{KeyInit as _, Mac as _};
    let Some(auth) = r.header("authorization") else {
        return Some("no Authorization header".into());
    };
    let Some(sig) = auth.strip_prefix(&format!("OSS {id}:")) else {
        return Some(format!(
            "authorization {auth:?} is not \"OSS <id>:<signature>\""
        ));
    };
    let Some(date) = r.header("date") else {
        return Some("no Date header".into());
    };
    let (path, query) = r.target.split_once('?').unwrap_or((&r.target, ""));
    // Alibaba documents virtual-hosted requests only (`/<bucket>/<object>`, or `/<bucket>/` for
    // the bucket itself); with path-style addressing, as here, the path already names the bucket
    // and the signer signs it as is (`/<bucket>` for the bucket itself).
    let mut resource = percent_decode(path);
    let mut subs: Vec<(String, Option<String>)> = query
        .split('&')
        .filter(|q| !q.is_empty())
        .map(|q| match q.split_once('=') {
            Some((k, v)) => (percent_decode(k), Some(percent_decode(v))),
            None => (percent_decode(q), None),
        })
        .filter(|(k, _)| OSS_SUBRESOURCES.contains(&k.as_str()))
        .collect();
    subs.sort();
    if !subs.is_empty() {
        let parts: Vec<String> = subs
            .iter()
            .map(|(k, v)| v.as_ref().map_or_else(|| k.clone(), |v| format!("{k}={v}")))
            .collect();
        resource = format!("{resource}?{}", parts.join("&"));
    }
    let mut oss_headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| k.starts_with("x-oss-"))
        .collect();
    oss_headers.sort();
    let canonical_headers: String = oss_headers
        .iter()
        .map(|(k, v)| format!("{k}:{v}\n"))
        .collect();
    let to_sign = format!(
        "{}\n{}\n{}\n{date}\n{canonical_headers}{resource}",
        r.method,
        r.header("content-md5").unwrap_or_default(),
        r.header("content-type").unwrap_or_default(),
    );
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(to_sign.as_bytes());
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (want != sig).then(|| format!("signature {sig} != {want} for {to_sign:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swift_all_in_one_with_tempauth() {
    let server = testkit::stores::swift();
    let env: Env = [
        (
            "OS_AUTH_URL".to_owned(),
            format!("{}/auth/v1.0", server.endpoint),
        ),
        ("OS_USERNAME".to_owned(), "tester".to_owned()),
        ("OS_PASSWORD".to_owned(), "testing".to_owned()),
        ("OS_TENANT_NAME".to_owned(), "test".to_owned()),
    ]
    .into();
    let store = SnapStore::open_with_env(
        &config(Provider::Swift, &server.bucket, "", "swift"),
        env.clone(),
    )
    .unwrap();
    behaves(&store).await;
    // Deleting the large object deleted its segments too.
    let (storage, token) = server.swift.clone().unwrap();
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-H",
            &format!("X-Auth-Token: {token}"),
            &format!("{storage}/{}?prefix=.segments", server.bucket),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "segments left behind"
    );

    let bad: Env = [
        (
            "OS_AUTH_URL".to_owned(),
            format!("{}/auth/v1.0", server.endpoint),
        ),
        ("OS_USERNAME".to_owned(), "tester".to_owned()),
        ("OS_PASSWORD".to_owned(), "wrong".to_owned()),
        ("OS_TENANT_NAME".to_owned(), "test".to_owned()),
    ]
    .into();
    let store = SnapStore::open_with_env(
        &config(Provider::Swift, &server.bucket, "", "swift"),
        bad.clone(),
    )
    .unwrap();
    let e = store.list().await.unwrap_err().to_string();
    assert!(
        e.contains("Swift") && e.contains("refused") && !e.contains("wrong"),
        "{e}"
    );
}

/// Part uploads that fail are retried and the object completes; when they keep failing, the
/// upload is aborted and no object appears under the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_part_uploads_are_retried_or_aborted_cleanly() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let server = testkit::stores::moto();
    let upstream = server.endpoint.trim_start_matches("http://").to_owned();
    let f = json_file(
        server.dir(),
        r#"{"accessKeyID":"AKID","secretAccessKey":"SECRET","region":"us-east-1","s3ForcePathStyle":true}"#,
    );
    let env: Env = [("AWS_APPLICATION_CREDENTIALS_JSON".to_owned(), f)].into();
    let t = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let data = pattern(12 * 1024 * 1024, 3);

    // The first two attempts at part 2 fail with 500: retried, completes.
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let s2 = std::sync::Arc::clone(&seen);
    let proxy = testkit::proxy::FaultProxy::start(&upstream, move |r| {
        r.method == "PUT"
            && r.target.contains("partNumber=2&")
            && s2.fetch_add(1, Ordering::SeqCst) < 2
    })
    .await;
    let store = SnapStore::open_with_env(
        &config(Provider::S3, &server.bucket, &proxy.endpoint, "faults"),
        env.clone(),
    )
    .unwrap();
    let snap = Snapshot::new(
        Kind::Full,
        Revision(0),
        Revision(9),
        t,
        "",
        false,
        store.layout_prefix(),
    );
    store
        .save(
            &snap,
            Box::new(std::io::Cursor::new(data.clone())),
            Some(data.len() as u64),
        )
        .await
        .unwrap();
    assert_eq!(proxy.failed(), 2);
    assert!(read(&store, &snap).await == data);

    // Every part upload fails: the upload gives up after its retries, aborts, leaves nothing.
    let proxy = testkit::proxy::FaultProxy::start(&upstream, |r| {
        r.method == "PUT" && r.target.contains("partNumber=")
    })
    .await;
    let store = SnapStore::open_with_env(
        &config(Provider::S3, &server.bucket, &proxy.endpoint, "faults2"),
        env,
    )
    .unwrap();
    let snap = Snapshot::new(
        Kind::Full,
        Revision(0),
        Revision(10),
        t,
        "",
        false,
        store.layout_prefix(),
    );
    let started = std::time::Instant::now();
    let e = store
        .save(&snap, Box::new(std::io::Cursor::new(data)), None)
        .await
        .unwrap_err();
    assert!(proxy.failed() >= 6, "each try failed: {}", proxy.failed());
    // The failure names the object, as a provider error (not a generic one).
    assert!(
        matches!(&e, snapstore::Error::Provider { op: "put", key, .. } if *key == snap.key()),
        "{e:?}"
    );
    assert!(
        store.list().await.unwrap().is_empty(),
        "no object under the name"
    );
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            &format!("{}/{}?uploads", server.endpoint, server.bucket),
        ])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("<Upload>"),
        "the multipart upload was aborted"
    );
    eprintln!("gave up after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_over_tls_with_trusted_ca_and_sse_c() {
    let certs = testkit::TestCerts::generate();
    let server = testkit::stores::moto_tls(&certs);
    let ca_pem = std::fs::read_to_string(&certs.ca).unwrap();
    let open = |extra: &str| {
        let json = format!(
            r#"{{"accessKeyID":"AKID","secretAccessKey":"SECRET","region":"us-east-1","s3ForcePathStyle":true{extra}}}"#
        );
        let dir = tempfile::tempdir().unwrap();
        let f = json_file(dir.path(), &json);
        let env: Env = [("AWS_APPLICATION_CREDENTIALS_JSON".to_owned(), f)].into();
        let store = SnapStore::open_with_env(
            &config(Provider::S3, &server.bucket, &server.endpoint, "tls"),
            env,
        )
        .unwrap();
        (store, dir)
    };

    // The test CA is not a public root: without trusting it, start-up fails on TLS.
    // No retry can fix a certificate: it fails at once (retried, it took about 40 s).
    let (untrusted, _d) = open("");
    let started = std::time::Instant::now();
    let err = untrusted.check_access().await.unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "a certificate failure was retried for {:?}",
        started.elapsed()
    );
    let err = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    assert!(
        err.contains("certificate") || err.contains("tls") || err.contains("TLS"),
        "{err}"
    );
    // insecureSkipVerify accepts any certificate.
    let (insecure, _d) = open(r#","insecureSkipVerify":true"#);
    insecure.check_access().await.unwrap();

    // trustedCaCert (PEM text) plus SSE-C: the whole suite over HTTPS with customer keys.
    let ca_json = serde_json::to_string(&ca_pem).unwrap();
    let sse =
        r#","sseCustomerAlgorithm":"AES256","sseCustomerKey":"0123456789abcdef0123456789abcdef""#;
    let (store, _d) = open(&format!(r#","trustedCaCert":{ca_json}{sse}"#));
    store.check_access().await.unwrap();
    behaves(&store).await;
}
