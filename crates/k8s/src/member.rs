//! The member Lease heartbeat: every period, this member's identity and role as etcd reports
//! them, written into the Lease etcd-druid created for the member. etcd-druid takes a member
//! whose Lease was not renewed for a minute as Unknown, and after six as NotReady.

use std::collections::BTreeMap;
use std::time::Duration;

use etcdbr::etcd::EtcdOptions;
use tokio_util::sync::CancellationToken;

use crate::lease::LeaseApi;
use crate::{Error, Kube};

/// The annotation saying whether the member's peer URLs use TLS (etcd-druid waits for all
/// members to agree before it reconciles a TLS change).
pub const TLS_ENABLED_ANNOTATION: &str = "member.etcd.gardener.cloud/tls-enabled";

/// `<memberID hex>:<clusterID hex>:<Leader|Member>`, the holderIdentity etcd-druid parses
/// (the original's format since v0.40).
#[must_use]
pub fn member_identity(member_id: u64, cluster_id: u64, leader: bool) -> String {
    let role = if leader { "Leader" } else { "Member" };
    format!("{member_id:x}:{cluster_id:x}:{role}")
}

/// Renews one member Lease every period.
#[derive(Debug)]
pub struct MemberHeartbeat {
    api: LeaseApi,
    lease: String,
    etcd: EtcdOptions,
    period: Duration,
    annotations: BTreeMap<String, String>,
}

impl MemberHeartbeat {
    /// A heartbeat of the Lease `lease` (`[<member-name-prefix>-]$POD_NAME`) every `period`
    /// (`--k8s-heartbeat-duration`), asking etcd at `etcd`'s first endpoint; `peer_tls` says
    /// whether the member's peer URLs use https.
    #[must_use]
    pub fn new(
        kube: &Kube,
        lease: String,
        etcd: EtcdOptions,
        period: Duration,
        peer_tls: bool,
    ) -> MemberHeartbeat {
        MemberHeartbeat {
            api: LeaseApi::new(kube),
            lease,
            etcd,
            period,
            annotations: BTreeMap::from([(
                TLS_ENABLED_ANNOTATION.to_owned(),
                peer_tls.to_string(),
            )]),
        }
    }

    /// Renews the Lease at once and then every period until `stop`. A failure (etcd down, the
    /// API server unreachable, the Lease missing) is logged and the Lease left as it is: its
    /// age tells etcd-druid that the member is not known to be healthy.
    pub async fn run(self, stop: CancellationToken) {
        tracing::info!(
            "Renewing the member Lease {} every {:?}",
            self.lease,
            self.period
        );
        let mut client = None;
        loop {
            match self.beat(&mut client).await {
                Ok(holder) => tracing::debug!("Renewed member Lease {}: {holder}", self.lease),
                Err(e) => {
                    client = None;
                    tracing::warn!(
                        "Member Lease {} not renewed: {}",
                        self.lease,
                        etcdbr::error_chain(&e)
                    );
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.period) => {}
            }
        }
    }

    /// One renewal: etcd's status first (without it no role is claimed), then the patch.
    async fn beat(&self, client: &mut Option<etcd_client::Client>) -> Result<String, Error> {
        let holder = self.identity(client).await?;
        self.api
            .heartbeat(&self.lease, &holder, &self.annotations)
            .await?;
        Ok(holder)
    }

    async fn identity(&self, client: &mut Option<etcd_client::Client>) -> Result<String, Error> {
        let c = match client {
            Some(c) => c,
            None => client.insert(self.etcd.connect().await.map_err(Error::Etcd)?),
        };
        let after = self.etcd.connection_timeout;
        let status = tokio::time::timeout(after, c.status())
            .await
            .map_err(|_| {
                Error::Etcd(etcdbr::Error::Timeout {
                    op: "read etcd's status",
                    after,
                })
            })?
            .map_err(|source| {
                Error::Etcd(etcdbr::Error::Etcd {
                    op: "status",
                    source,
                })
            })?;
        let header = status.header().ok_or(Error::NoStatusHeader)?;
        Ok(member_identity(
            header.member_id(),
            header.cluster_id(),
            header.member_id() == status.leader(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_hex_ids_and_the_role() {
        assert_eq!(
            member_identity(0x8e9e_05c5_2164_694d, 0x0cdf_8181_94e3_a8c3, true),
            "8e9e05c52164694d:cdf818194e3a8c3:Leader"
        );
        assert_eq!(member_identity(1, 2, false), "1:2:Member");
    }
}
