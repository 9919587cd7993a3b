//! Peer URL changes at start-up, as the original's `updatePeerURLIfChanged`: once etcd answers,
//! the peer URLs the etcd configuration gives this member are compared with the ones the cluster
//! lists for it; when the configuration has one the cluster lacks, the member is updated
//! (`MemberUpdate`), and with `--use-etcd-wrapper` etcd-wrapper (port 9095 on etcd's host) is
//! asked to stop etcd so that it restarts with them; otherwise a warning says etcd must be
//! restarted.

use etcdbr::error_chain;

use crate::delegate::{http_client, scheme_and_host};
use crate::error::SiblingError;
use crate::state::Shared;

/// etcd-wrapper's port.
const ETCD_WRAPPER_PORT: u16 = 9095;

/// Updates this member's peer URLs when the configuration changed them; errors are logged, as
/// the original does, and the server goes on.
pub async fn update_if_changed(s: &Shared, use_etcd_wrapper: bool) {
    tracing::info!("Checking if peerURL has changed or not.");
    match update(s).await {
        Ok(false) => {
            tracing::info!("No change in peerURLs found. Skipping update of member peer URLs.");
        }
        Ok(true) if use_etcd_wrapper => {
            if let Err(e) = restart_etcd_wrapper(s).await {
                tracing::error!("Failed to restart the etcd-wrapper: {}", error_chain(&e));
            }
        }
        Ok(true) => tracing::warn!(
            "To correctly reflect peerURLs in the etcd cluster, restart the etcd member. More info: https://etcd.io/docs/v3.5/op-guide/runtime-configuration/#update-advertise-peer-urls"
        ),
        Err(e) => tracing::error!("Failed to update the member peer URL: {}", error_chain(&e)),
    }
}

/// Whether the peer URLs were updated.
async fn update(s: &Shared) -> Result<bool, SiblingError> {
    Ok(crate::etcd_conf::this_member(&s.etcd_conf, &s.etcd)?
        .update_peer_urls()
        .await?)
}

async fn restart_etcd_wrapper(s: &Shared) -> Result<(), SiblingError> {
    let endpoint = s
        .etcd
        .endpoint_urls()
        .into_iter()
        .next()
        .unwrap_or_default();
    let (scheme, host) = scheme_and_host(&endpoint)?;
    let url = format!("{scheme}://{host}:{ETCD_WRAPPER_PORT}/stop");
    tracing::info!("Asking etcd-wrapper to restart etcd: POST {url}");
    http_client(s)?
        .post(&url)
        .send()
        .await
        .map_err(|source| SiblingError::Http {
            url: format!("POST {url}"),
            source,
        })?;
    Ok(())
}
