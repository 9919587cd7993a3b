//! Snapshots as the original's HTTP API renders them (its `brtypes.Snapshot` JSON, including
//! the `immutabilityExpriyTime` typo).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use snapstore::Snapshot;

/// One snapshot's metadata.
#[derive(Debug, Serialize)]
pub struct SnapshotJson {
    #[serde(rename = "createdOn")]
    created_on: String,
    #[serde(rename = "immutabilityExpriyTime")]
    immutability_expiry_time: String,
    #[serde(rename = "versionID")]
    version_id: Option<String>,
    kind: String,
    #[serde(rename = "snapDir")]
    snap_dir: String,
    #[serde(rename = "snapName")]
    snap_name: String,
    prefix: String,
    #[serde(rename = "compressionSuffix")]
    compression_suffix: String,
    #[serde(rename = "startRevision")]
    start_revision: i64,
    #[serde(rename = "lastRevision")]
    last_revision: i64,
    #[serde(rename = "isChunk")]
    is_chunk: bool,
    #[serde(rename = "isFinal")]
    is_final: bool,
}

fn go_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "0001-01-01T00:00:00Z".into(),
        |t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    )
}

impl From<&Snapshot> for SnapshotJson {
    fn from(s: &Snapshot) -> Self {
        SnapshotJson {
            created_on: go_time(Some(s.created_on)),
            immutability_expiry_time: go_time(s.immutability_expiry),
            version_id: None,
            kind: s.kind.as_str().to_owned(),
            snap_dir: s.snap_dir.clone(),
            snap_name: s.snap_name.clone(),
            prefix: s.prefix.clone(),
            compression_suffix: s.compression_suffix.clone(),
            start_revision: s.start_revision.get(),
            last_revision: s.last_revision.get(),
            is_chunk: s.is_chunk,
            is_final: s.is_final,
        }
    }
}

/// The body of `/snapshot/latest`.
#[derive(Debug, Serialize)]
pub struct LatestJson {
    /// The latest full snapshot (`null` when there is none).
    #[serde(rename = "fullSnapshot")]
    pub full_snapshot: Option<SnapshotJson>,
    /// The deltas after it (`null` when there are none, as Go renders an empty slice).
    #[serde(rename = "deltaSnapshots")]
    pub delta_snapshots: Option<Vec<SnapshotJson>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use etcdbr_types::Revision;

    #[test]
    fn renders_like_go() {
        let s = Snapshot::new(
            snapstore::Kind::Full,
            Revision(0),
            Revision(42),
            Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            ".gz",
            false,
            "etcd/v2",
        );
        let j = serde_json::to_string(&SnapshotJson::from(&s)).unwrap();
        assert_eq!(
            j,
            r#"{"createdOn":"2023-11-14T22:13:20Z","immutabilityExpriyTime":"0001-01-01T00:00:00Z","versionID":null,"kind":"Full","snapDir":"","snapName":"Full-00000000-00000042-1700000000.gz","prefix":"etcd/v2","compressionSuffix":".gz","startRevision":0,"lastRevision":42,"isChunk":false,"isFinal":false}"#
        );
    }
}
