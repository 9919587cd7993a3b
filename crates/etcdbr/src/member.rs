//! Membership control in a multi-member cluster, as the original's `member` package: a member
//! whose data cannot be trusted is not restored from the store (that would fork it from the
//! others) but removed, wiped and added back as a learner, which copies the data from the leader;
//! a member new to the cluster (scale-up) is added as a learner; and a learner is promoted by its
//! sidecar once it has caught up. All calls go to the cluster's service endpoints (its other
//! members), since this member's etcd is not running while it is initialized.

use std::path::Path;
use std::time::{Duration, Instant};

use etcd_client::{Client, MemberAddOptions};

use crate::backoff::{ExponentialBackoff, retry};
use crate::error::{Error, Result};
use crate::etcd::EtcdOptions;
use crate::events::{Event, Events};

/// Timeout of one membership call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts to reach the cluster before deciding it is not running.
const PROBE_ATTEMPTS: u32 = 4;
/// Attempts to add this member as a learner (the original's `addLearnerAttempts`).
const ADD_LEARNER_ATTEMPTS: u32 = 6;
/// Attempts to remove this member.
const REMOVE_ATTEMPTS: u32 = 5;
/// Attempts to update this member's peer URLs.
const UPDATE_ATTEMPTS: u32 = 5;

/// This member, and how to reach the rest of its cluster.
#[derive(Debug, Clone)]
pub struct MemberControl {
    /// Members in the etcd configuration's `initial-cluster`.
    pub cluster_size: usize,
    /// Connection to the cluster: `--service-endpoints`, or every member's client URLs.
    pub cluster: EtcdOptions,
    /// This member's name (`[<member-name-prefix>-]$POD_NAME`).
    pub name: String,
    /// This member's peer URLs.
    pub peer_urls: Vec<String>,
    /// Who hears about membership changes.
    pub events: Events,
}

/// Why a membership call cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemberError {
    /// The endpoint's member is a learner, which refuses membership calls.
    #[error("{0} is a learner, which cannot answer membership calls")]
    Learner(String),
    /// No endpoint reaches the cluster.
    #[error("no etcd endpoint to reach the cluster")]
    NoEndpoint,
    /// The cluster does not list this member.
    #[error("member {0} is not in the cluster's member list")]
    NotListed(String),
}

/// This member as the cluster lists it.
struct Listed {
    id: u64,
    learner: bool,
    /// Started at least once: only then does the list carry its name.
    started: bool,
}

async fn within<T>(
    op: &'static str,
    f: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r.map_err(|source| Error::Etcd { op, source }),
        Err(_) => Err(Error::Timeout {
            op,
            after: CALL_TIMEOUT,
        }),
    }
}

/// Whether an etcd error's message carries `text` (etcd's membership errors are told apart
/// only by their messages, e.g. "etcdserver: Peer URLs already exists").
fn says(e: &Error, text: &str) -> bool {
    crate::error_chain(e).contains(text)
}

impl MemberControl {
    /// A client of the first cluster endpoint that answers as a voting member (a learner
    /// refuses membership calls). One client balanced over every endpoint failed now and then
    /// while this member's own endpoint was down (calls routed to it), and this member's etcd is
    /// down whenever it is initialized.
    async fn client(&self) -> Result<Client> {
        let mut last = None;
        for endpoint in &self.cluster.endpoints {
            let mut one = self.cluster.clone();
            one.endpoints = vec![endpoint.clone()];
            let r = async {
                let mut c = one.connect().await?;
                if within("ask for the status", c.status()).await?.is_learner() {
                    return Err(MemberError::Learner(endpoint.clone()).into());
                }
                Ok::<Client, Error>(c)
            }
            .await;
            match r {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| MemberError::NoEndpoint.into()))
    }

    /// This member, when the cluster lists it by name or by peer URL (a learner that has not
    /// started yet has no name).
    async fn find(&self, c: &mut Client) -> Result<Option<Listed>> {
        let list = within("list members", c.member_list()).await?;
        Ok(list.members().iter().find_map(|m| {
            let by_name = !m.name().is_empty() && m.name() == self.name;
            let by_url = m.peer_urls().iter().any(|u| self.peer_urls.contains(u));
            (by_name || by_url).then(|| Listed {
                id: m.id(),
                learner: m.is_learner(),
                started: !m.name().is_empty(),
            })
        }))
    }

    /// Whether the running cluster lists this member by name (a started member), retrying
    /// while the cluster cannot be reached.
    ///
    /// # Errors
    /// The cluster could not be reached in `PROBE_ATTEMPTS` attempts (a cluster being
    /// bootstrapped, for instance).
    pub async fn is_member_in_cluster(&self) -> Result<bool> {
        tracing::info!(
            "Checking if member {} is part of a running cluster",
            self.name
        );
        let backoff = ExponentialBackoff::new(2, PROBE_ATTEMPTS, Duration::from_secs(8));
        let found = retry(
            PROBE_ATTEMPTS,
            backoff,
            "Listing the cluster's members",
            || async {
                let mut c = self.client().await?;
                self.find(&mut c).await
            },
        )
        .await?;
        let present = found.is_some_and(|m| m.started);
        tracing::info!(
            "Member {} {} part of the running cluster",
            self.name,
            if present { "is" } else { "is not" }
        );
        Ok(present)
    }

    /// Adds this member to the cluster as a learner; a member already listed with these peer
    /// URLs counts as added.
    ///
    /// # Errors
    /// The cluster refuses (a "too many learners" refusal included) or cannot be reached.
    pub async fn add_as_learner(&self) -> Result<()> {
        let mut c = self.client().await?;
        let started = Instant::now();
        let r = within(
            "add the member as a learner",
            c.member_add(
                self.peer_urls.clone(),
                Some(MemberAddOptions::new().with_is_learner()),
            ),
        )
        .await;
        match r {
            Ok(resp) => {
                let id = resp.member().map_or(0, etcd_client::Member::id);
                self.events.emit(&Event::LearnerAdded {
                    took: started.elapsed(),
                    ok: true,
                });
                tracing::info!(
                    "Added member {} ({id:x}) to the cluster as a learner",
                    self.name
                );
                Ok(())
            }
            Err(e) if says(&e, "already exists") => {
                tracing::info!(
                    "Member {} with peer URLs {:?} is already part of the cluster",
                    self.name,
                    self.peer_urls
                );
                Ok(())
            }
            Err(e) => {
                if !says(&e, "too many learner") {
                    self.events.emit(&Event::LearnerAdded {
                        took: started.elapsed(),
                        ok: false,
                    });
                }
                Err(e)
            }
        }
    }

    /// Wipes `data_dir` and adds this member as a learner, retrying with backoff (a cluster
    /// that already has a learner is waited for).
    ///
    /// # Errors
    /// The last attempt's error, or the data dir cannot be removed.
    pub async fn add_learner_with_retry(&self, data_dir: &Path) -> Result<()> {
        let backoff = ExponentialBackoff::new(2, ADD_LEARNER_ATTEMPTS, Duration::from_secs(120));
        let what = format!("Adding member {} as a learner", self.name);
        retry(ADD_LEARNER_ATTEMPTS, backoff, &what, || async {
            remove_dir(data_dir)?;
            let r = self.add_as_learner().await;
            if let Err(e) = &r
                && says(e, "too many learner")
            {
                tracing::info!("The cluster already has a learner; waiting for it");
                tokio::time::sleep(CALL_TIMEOUT).await;
            }
            r
        })
        .await
    }

    /// Removes this member, retrying with backoff, wipes `data_dir` and adds the member back
    /// as a learner: the replacement of a member whose data cannot be trusted.
    ///
    /// # Errors
    /// The member cannot be removed or added back.
    pub async fn replace(&self, data_dir: &Path) -> Result<()> {
        tracing::info!(
            "Replacing member {} in its cluster: remove, wipe {}, add as a learner",
            self.name,
            data_dir.display()
        );
        let backoff = ExponentialBackoff::new(2, REMOVE_ATTEMPTS, Duration::from_secs(16));
        let what = format!("Removing member {}", self.name);
        retry(REMOVE_ATTEMPTS, backoff, &what, || self.remove()).await?;
        self.add_learner_with_retry(data_dir).await
    }

    /// Removes this member from the cluster; a member not listed is fine.
    ///
    /// # Errors
    /// The cluster refuses or cannot be reached.
    pub async fn remove(&self) -> Result<()> {
        let mut c = self.client().await?;
        let Some(Listed { id, .. }) = self.find(&mut c).await? else {
            tracing::info!(
                "Member {} is not in the cluster; nothing to remove",
                self.name
            );
            return Ok(());
        };
        let started = Instant::now();
        let r = within("remove the member", c.member_remove(id)).await;
        self.events.emit(&Event::MemberRemoved {
            took: started.elapsed(),
            ok: r.is_ok(),
        });
        r?;
        tracing::info!("Removed member {} ({id:x}) from the cluster", self.name);
        Ok(())
    }

    /// Updates the peer URLs the cluster lists for this member (found by name) when one of
    /// [`MemberControl::peer_urls`] is missing, as the original does at start-up; returns
    /// whether it updated them.
    ///
    /// # Errors
    /// The cluster cannot be reached, does not list this member, or refuses the update.
    pub async fn update_peer_urls(&self) -> Result<bool> {
        let mut c = self.client().await?;
        let listed = within("list members", c.member_list()).await?;
        let Some(me) = listed.members().iter().find(|m| m.name() == self.name) else {
            return Err(MemberError::NotListed(self.name.clone()).into());
        };
        if self.peer_urls.iter().all(|u| me.peer_urls().contains(u)) {
            return Ok(false);
        }
        tracing::info!(
            "Etcd member peerURLs found to be changed: {:?} -> {:?}",
            me.peer_urls(),
            self.peer_urls
        );
        let id = me.id();
        let backoff = ExponentialBackoff::new(2, UPDATE_ATTEMPTS, Duration::from_secs(8));
        retry(
            UPDATE_ATTEMPTS,
            backoff,
            "Updating the member's peer URLs",
            || {
                let mut c = c.clone();
                async move {
                    within(
                        "update the member's peer URLs",
                        c.member_update(id, self.peer_urls.clone()),
                    )
                    .await
                }
            },
        )
        .await?;
        tracing::info!("Successfully updated the peerURLs for etcd member.");
        Ok(true)
    }

    /// Promotes this member when it is a learner; etcd accepts only once the learner has
    /// caught up with the leader, so a refusal is normal until then. Returns whether the member
    /// is a voting member now.
    ///
    /// # Errors
    /// The cluster cannot be reached, or refuses for another reason than the learner lagging.
    pub async fn promote(&self) -> Result<bool> {
        let mut c = self.client().await?;
        let Some(Listed { id, learner, .. }) = self.find(&mut c).await? else {
            return Ok(false);
        };
        if !learner {
            return Ok(true);
        }
        let started = Instant::now();
        let r = within("promote the learner", c.member_promote(id)).await;
        self.events.emit(&Event::LearnerPromoted {
            took: started.elapsed(),
            ok: r.is_ok(),
        });
        match r {
            Ok(_) => {
                tracing::info!(
                    "Member {} ({id:x}) has been promoted to a voting member",
                    self.name
                );
                Ok(true)
            }
            Err(e) if says(&e, "not in sync") || says(&e, "not ready") => {
                tracing::info!("Learner {} is not in sync with the leader yet", self.name);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {
            tracing::info!("Removed the data directory {}", dir.display());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("cannot remove {}", dir.display()))(e)),
    }
}
