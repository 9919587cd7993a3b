//! Defragmentation of every member on `--defragmentation-schedule`: followers one by one, the
//! leader last, each within `--etcd-defrag-timeout`, database sizes logged before and after.

use std::time::Duration;

use chrono::Local;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::etcd::EtcdOptions;
use crate::events::{Event, Events};
use crate::schedule::Schedule;

/// How long to wait before retrying when a member is unhealthy (as the original's ticker).
pub const DEFRAG_RETRY_PERIOD: Duration = Duration::from_secs(60);

/// One member's defragmentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDefrag {
    /// The client URL used.
    pub endpoint: String,
    /// Whether it led the cluster.
    pub leader: bool,
    /// Database size before, bytes.
    pub size_before: i64,
    /// Database size after, bytes.
    pub size_after: i64,
}

/// Defragments every member of the cluster `etcd` points at, followers first.
///
/// # Errors
/// A member is unreachable or unhealthy (nothing is defragmented then), or a defragmentation
/// fails or times out.
pub async fn defragment_cluster(etcd: &EtcdOptions, events: &Events) -> Result<Vec<MemberDefrag>> {
    let mut client = etcd.connect().await?;
    let members = tokio::time::timeout(etcd.connection_timeout, client.member_list())
        .await
        .map_err(|_| Error::Timeout {
            op: "list etcd members",
            after: etcd.connection_timeout,
        })?
        .map_err(|e| Error::Etcd {
            op: "member list",
            source: e,
        })?;
    let mut targets = Vec::new();
    for m in members.members() {
        let Some(url) = m.client_urls().first() else {
            continue;
        };
        let mut opts = etcd.clone();
        opts.endpoints = vec![url.clone()];
        let mut c = opts.connect().await?;
        let st = tokio::time::timeout(etcd.connection_timeout, c.status())
            .await
            .map_err(|_| Error::Timeout {
                op: "get member status",
                after: etcd.connection_timeout,
            })?
            .map_err(|e| Error::Etcd {
                op: "status",
                source: e,
            })?;
        targets.push((st.leader() == m.id(), url.clone(), c, st.db_size()));
    }
    targets.sort_by_key(|t| t.0);
    let mut out = Vec::new();
    for (leader, endpoint, mut c, size_before) in targets {
        tracing::info!(
            "Defragmenting etcd member[{endpoint}] (leader: {leader}), db size before: {size_before} bytes"
        );
        let started = std::time::Instant::now();
        let done = tokio::time::timeout(etcd.defrag_timeout, c.defragment())
            .await
            .map_err(|_| Error::Timeout {
                op: "defragment etcd",
                after: etcd.defrag_timeout,
            })
            .and_then(|r| {
                r.map_err(|e| Error::Etcd {
                    op: "defragment",
                    source: e,
                })
            });
        events.emit(&Event::Defragmented {
            endpoint: &endpoint,
            took: started.elapsed(),
            ok: done.is_ok(),
        });
        done?;
        let size_after = c
            .status()
            .await
            .map_err(|e| Error::Etcd {
                op: "status",
                source: e,
            })?
            .db_size();
        tracing::info!(
            "Finished defragmenting etcd member[{endpoint}], db size after: {size_after} bytes"
        );
        out.push(MemberDefrag {
            endpoint,
            leader,
            size_before,
            size_after,
        });
    }
    Ok(out)
}

/// Defragments the cluster at each firing of `schedule` until `stop`; a failed attempt is
/// retried every [`DEFRAG_RETRY_PERIOD`] until it succeeds or the next firing comes.
pub async fn run_periodically(
    etcd: EtcdOptions,
    schedule: Schedule,
    events: Events,
    stop: CancellationToken,
) {
    loop {
        let now = Local::now();
        let Some(next) = schedule.next_after(now) else {
            tracing::warn!(
                "Defragmentation schedule {schedule} never fires again; defragmentation stops"
            );
            return;
        };
        tracing::info!("Next defragmentation at {next}");
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        loop {
            match defragment_cluster(&etcd, &events).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(
                        "Defragmentation failed: {}; retrying in {DEFRAG_RETRY_PERIOD:?}",
                        crate::error_chain(&e)
                    );
                    let retry_at = Local::now()
                        + chrono::Duration::from_std(DEFRAG_RETRY_PERIOD).unwrap_or_default();
                    if schedule
                        .next_after(next)
                        .is_some_and(|following| retry_at >= following)
                    {
                        break;
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(DEFRAG_RETRY_PERIOD) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}
