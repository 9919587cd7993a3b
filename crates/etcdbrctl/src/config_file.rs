//! `server --config-file`: the original's YAML configuration, turned into the flags it stands
//! for. The original lets the file replace every flag; here the file comes first and flags given
//! on the command line win, so one can override a single value without editing the file.

use std::ffi::OsString;

use serde_json::Value;

/// (YAML path, flag) for every key of the original's `BackupRestoreComponentConfig`.
const KEYS: &[(&str, &str)] = &[
    ("etcdConnectionConfig.endpoints", "endpoints"),
    ("etcdConnectionConfig.serviceEndpoints", "service-endpoints"),
    ("etcdConnectionConfig.username", "etcd-username"),
    ("etcdConnectionConfig.password", "etcd-password"),
    (
        "etcdConnectionConfig.connectionTimeout",
        "etcd-connection-timeout",
    ),
    (
        "etcdConnectionConfig.snapshotTimeout",
        "etcd-snapshot-timeout",
    ),
    ("etcdConnectionConfig.defragTimeout", "etcd-defrag-timeout"),
    (
        "etcdConnectionConfig.insecureTransport",
        "insecure-transport",
    ),
    (
        "etcdConnectionConfig.insecureSkipVerify",
        "insecure-skip-tls-verify",
    ),
    ("etcdConnectionConfig.certFile", "cert"),
    ("etcdConnectionConfig.keyFile", "key"),
    ("etcdConnectionConfig.caFile", "cacert"),
    ("serverConfig.port", "server-port"),
    ("serverConfig.enableProfiling", "enable-profiling"),
    ("serverConfig.server-cert", "server-cert"),
    ("serverConfig.server-key", "server-key"),
    // etcdbr's API access settings.
    ("serverConfig.authTokenFile", "server-auth-token-file"),
    ("serverConfig.authSkipMetrics", "server-auth-skip-metrics"),
    ("serverConfig.clientCA", "server-client-ca"),
    ("snapshotterConfig.schedule", "schedule"),
    (
        "snapshotterConfig.deltaSnapshotPeriod",
        "delta-snapshot-period",
    ),
    (
        "snapshotterConfig.deltaSnapshotMemoryLimit",
        "delta-snapshot-memory-limit",
    ),
    (
        "snapshotterConfig.garbageCollectionPeriod",
        "garbage-collection-period",
    ),
    (
        "snapshotterConfig.garbageCollectionPolicy",
        "garbage-collection-policy",
    ),
    ("snapshotterConfig.maxBackups", "max-backups"),
    (
        "snapshotterConfig.deltaSnapshotRetentionPeriod",
        "delta-snapshot-retention-period",
    ),
    ("snapstoreConfig.provider", "storage-provider"),
    ("snapstoreConfig.container", "store-container"),
    ("snapstoreConfig.prefix", "store-prefix"),
    (
        "snapstoreConfig.endpointOverride",
        "store-endpoint-override",
    ),
    (
        "snapstoreConfig.maxParallelChunkUploads",
        "max-parallel-chunk-uploads",
    ),
    ("snapstoreConfig.minChunkSize", "min-chunk-size"),
    ("snapstoreConfig.tempDir", "snapstore-temp-directory"),
    // etcdbr's client-side encryption (not in the original's config).
    (
        "snapstoreConfig.encryptionRecipientsFile",
        "encryption-recipients-file",
    ),
    (
        "snapstoreConfig.encryptionIdentityFile",
        "encryption-identity-file",
    ),
    ("snapstoreConfig.signingKeyFile", "signing-key-file"),
    (
        "secondarySnapstoreConfig.StoreConfig.provider",
        "secondary-storage-provider",
    ),
    (
        "secondarySnapstoreConfig.StoreConfig.container",
        "secondary-store-container",
    ),
    (
        "secondarySnapstoreConfig.StoreConfig.prefix",
        "secondary-store-prefix",
    ),
    (
        "secondarySnapstoreConfig.StoreConfig.endpointOverride",
        "secondary-store-endpoint-override",
    ),
    (
        "secondarySnapstoreConfig.StoreConfig.maxParallelChunkUploads",
        "secondary-max-parallel-chunk-uploads",
    ),
    (
        "secondarySnapstoreConfig.StoreConfig.minChunkSize",
        "secondary-min-chunk-size",
    ),
    (
        "secondarySnapstoreConfig.StoreConfig.tempDir",
        "secondary-snapstore-temp-directory",
    ),
    (
        "secondarySnapstoreConfig.StoreConfig.encryptionRecipientsFile",
        "secondary-encryption-recipients-file",
    ),
    (
        "secondarySnapstoreConfig.StoreConfig.encryptionIdentityFile",
        "secondary-encryption-identity-file",
    ),
    (
        "secondarySnapstoreConfig.StoreConfig.signingKeyFile",
        "secondary-signing-key-file",
    ),
    (
        "secondarySnapstoreConfig.backupSyncEnabled",
        "secondary-backup-sync-enabled",
    ),
    (
        "secondarySnapstoreConfig.syncPeriod",
        "secondary-backup-sync-period",
    ),
    ("restorationConfig.initialCluster", "initial-cluster"),
    (
        "restorationConfig.initialClusterToken",
        "initial-cluster-token",
    ),
    ("restorationConfig.dataDir", "data-dir"),
    (
        "restorationConfig.tempDir",
        "restoration-temp-snapshots-dir",
    ),
    (
        "restorationConfig.initialAdvertisePeerURLs",
        "initial-advertise-peer-urls",
    ),
    ("restorationConfig.name", "name"),
    ("restorationConfig.skipHashCheck", "skip-hash-check"),
    ("restorationConfig.maxFetchers", "max-fetchers"),
    (
        "restorationConfig.maxCallSendMsgSize",
        "max-call-send-message-size",
    ),
    ("restorationConfig.MaxRequestBytes", "max-request-bytes"),
    ("restorationConfig.MaxTxnOps", "max-txn-ops"),
    (
        "restorationConfig.embeddedEtcdQuotaBytes",
        "embedded-etcd-quota-bytes",
    ),
    (
        "restorationConfig.autoCompactionMode",
        "auto-compaction-mode",
    ),
    (
        "restorationConfig.autoCompactionRetention",
        "auto-compaction-retention",
    ),
    // etcdbr's point-in-time restore (not in the original's config).
    ("restorationConfig.restoreToRevision", "restore-to-revision"),
    ("restorationConfig.restoreToTime", "restore-to-time"),
    ("restorationConfig.snapshot", "snapshot"),
    ("restorationConfig.noDeltas", "no-deltas"),
    ("restorationConfig.bumpRevision", "bump-revision"),
    ("restorationConfig.markCompacted", "mark-compacted"),
    ("defragmentationSchedule", "defragmentation-schedule"),
    ("verifySchedule", "verify-schedule"),
    ("useEtcdWrapper", "use-etcd-wrapper"),
    ("compressionConfig.enabled", "compress-snapshots"),
    ("compressionConfig.policy", "compression-policy"),
    ("leaderElectionConfig.reelectionPeriod", "reelection-period"),
    (
        "leaderElectionConfig.etcdConnectionTimeout",
        "etcd-connection-timeout-leader-election",
    ),
    (
        "healthConfig.snapshotLeaseRenewalEnabled",
        "enable-snapshot-lease-renewal",
    ),
    (
        "healthConfig.memberLeaseRenewalEnabled",
        "enable-member-lease-renewal",
    ),
    ("healthConfig.heartbeatDuration", "k8s-heartbeat-duration"),
    (
        "healthConfig.fullSnapshotLeaseName",
        "full-snapshot-lease-name",
    ),
    (
        "healthConfig.deltaSnapshotLeaseName",
        "delta-snapshot-lease-name",
    ),
    ("exponentialBackoffConfig.multiplier", "backoff-multiplier"),
    (
        "exponentialBackoffConfig.attemptLimit",
        "backoff-attempt-limit",
    ),
    (
        "exponentialBackoffConfig.thresholdTime",
        "backoff-threshold-time",
    ),
];

/// Keys the original reads but that carry nothing for etcdbr, or that it ignores itself.
const IGNORED: &[&str] = &[
    "restorationConfig.restoreDataDir",
    "secondarySnapstoreConfig.StoreConfig.envPrefix",
    "snapstoreConfig.envPrefix",
];

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let k = k.clone();
                let path = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                if KEYS.iter().any(|(p, _)| *p == path) || v.as_object().is_none() {
                    out.push((path, v.clone()));
                } else {
                    walk(&path, v, out);
                }
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

/// The flags the YAML text stands for, as `--flag=value` arguments.
///
/// # Errors
/// The text is not YAML, or a value is not a scalar or a list of scalars.
pub fn flags_from_yaml(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let doc: Value = serde_saphyr::from_str(text)?;
    let mut leaves = Vec::new();
    walk("", &doc, &mut leaves);
    let mut out = Vec::new();
    for (path, v) in leaves {
        if v.is_null() || IGNORED.contains(&path.as_str()) {
            if path == "restorationConfig.restoreDataDir" {
                eprintln!(
                    "warning: config file: restorationConfig.restoreDataDir is ignored, as by the original; use restorationConfig.dataDir"
                );
            }
            continue;
        }
        let Some((_, flag)) = KEYS.iter().find(|(p, _)| *p == path) else {
            eprintln!("warning: config file: unknown key {path:?} ignored");
            continue;
        };
        let value = match &v {
            Value::Array(items) => items
                .iter()
                .map(|i| {
                    scalar(i).ok_or_else(|| {
                        anyhow::anyhow!("config file: {path} must be a list of plain values")
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?
                .join(","),
            other => scalar(other)
                .ok_or_else(|| anyhow::anyhow!("config file: {path} must be a plain value"))?,
        };
        out.push(((*flag).to_owned(), value));
    }
    Ok(out)
}

/// When `args` run `server --config-file <f>`, inserts the file's flags before the command-line
/// ones, leaving out those the command line gives itself.
///
/// # Errors
/// The file cannot be read or parsed.
pub fn expand(args: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    if args.get(1).and_then(|a| a.to_str()) != Some("server") {
        return Ok(args);
    }
    let strs: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let file = strs.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config-file=")
            .map(str::to_owned)
            .or_else(|| {
                (a == "--config-file")
                    .then(|| strs.get(i + 1).cloned())
                    .flatten()
            })
    });
    let Some(file) = file.filter(|f| !f.is_empty()) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| anyhow::anyhow!("cannot read --config-file {file}: {e}"))?;
    let given = |flag: &str| {
        strs.iter()
            .any(|a| a == &format!("--{flag}") || a.starts_with(&format!("--{flag}=")))
    };
    let mut out = vec![args[0].clone(), args[1].clone()];
    for (flag, value) in
        flags_from_yaml(&text).map_err(|e| anyhow::anyhow!("--config-file {file}: {e}"))?
    {
        if !given(&flag) {
            out.push(format!("--{flag}={value}").into());
        }
    }
    out.extend(args.into_iter().skip(2));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
etcdConnectionConfig:
  endpoints:
  - "http://localhost:2379"
  connectionTimeout: 10s
serverConfig:
  port: 8080
snapshotterConfig:
  schedule: "0 */1 * * *"
  deltaSnapshotPeriod: 20s
snapstoreConfig:
  provider: "Local"
  maxParallelChunkUploads: 5
  tempDir: "/tmp"
restorationConfig:
  initialAdvertisePeerURLs:
    - "http://localhost:2380"
  restoreDataDir: "default.etcd"
  skipHashCheck: false
compressionConfig:
   enabled: true
   policy: "gzip"
leaderElectionConfig:
  reelectionPeriod: "5s"
"#;

    #[test]
    fn maps_etcdbrs_point_in_time_keys_to_flags() {
        let f = flags_from_yaml(
            "restorationConfig:\n  restoreToRevision: 1409\n  bumpRevision: 1000\n  markCompacted: true\n  snapshot: Full-00000000-00000001-1.gz\nverifySchedule: \"0 */6 * * *\"\n",
        )
        .unwrap();
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("restore-to-revision"), Some("1409"));
        assert_eq!(get("bump-revision"), Some("1000"));
        assert_eq!(get("mark-compacted"), Some("true"));
        assert_eq!(get("snapshot"), Some("Full-00000000-00000001-1.gz"));
        assert_eq!(get("verify-schedule"), Some("0 */6 * * *"));
    }

    #[test]
    fn maps_etcdbrs_encryption_keys_to_flags() {
        let f = flags_from_yaml(
            "snapstoreConfig:\n  encryptionRecipientsFile: /keys/r.txt\n  encryptionIdentityFile: /keys/id.txt\n  signingKeyFile: /keys/s.pem\nsecondarySnapstoreConfig:\n  StoreConfig:\n    encryptionRecipientsFile: /keys/r2.txt\n    encryptionIdentityFile: /keys/id2.txt\n    signingKeyFile: /keys/s2.pem\n",
        )
        .unwrap();
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("encryption-recipients-file"), Some("/keys/r.txt"));
        assert_eq!(get("encryption-identity-file"), Some("/keys/id.txt"));
        assert_eq!(get("signing-key-file"), Some("/keys/s.pem"));
        assert_eq!(
            get("secondary-encryption-recipients-file"),
            Some("/keys/r2.txt")
        );
        assert_eq!(
            get("secondary-encryption-identity-file"),
            Some("/keys/id2.txt")
        );
        assert_eq!(get("secondary-signing-key-file"), Some("/keys/s2.pem"));
    }

    #[test]
    fn maps_the_originals_keys_to_flags() {
        let f = flags_from_yaml(EXAMPLE).unwrap();
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("endpoints"), Some("http://localhost:2379"));
        assert_eq!(get("etcd-connection-timeout"), Some("10s"));
        assert_eq!(get("server-port"), Some("8080"));
        assert_eq!(get("storage-provider"), Some("Local"));
        assert_eq!(get("skip-hash-check"), Some("false"));
        assert_eq!(get("compress-snapshots"), Some("true"));
        assert_eq!(
            get("initial-advertise-peer-urls"),
            Some("http://localhost:2380")
        );
        assert_eq!(
            get("data-dir"),
            None,
            "restoreDataDir is ignored, as by the original"
        );
    }

    #[test]
    fn command_line_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, EXAMPLE).unwrap();
        let args: Vec<OsString> = [
            "etcdbrctl",
            "server",
            "--config-file",
            f.to_str().unwrap(),
            "--server-port=9090",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let out: Vec<String> = expand(args)
            .unwrap()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            out.contains(&"--schedule=0 */1 * * *".to_owned()),
            "{out:?}"
        );
        assert!(!out.iter().any(|a| a == "--server-port=8080"), "{out:?}");
        assert_eq!(out.last().unwrap(), "--server-port=9090");
        assert!(
            expand(vec![
                "etcdbrctl".into(),
                "server".into(),
                "--config-file=/nope".into()
            ])
            .is_err()
        );
        assert!(flags_from_yaml("a: [b: {").is_err());
    }
}
