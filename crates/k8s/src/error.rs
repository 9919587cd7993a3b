//! Why talking to the Kubernetes API failed.

/// Why a Lease could not be read or written, or the client not built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Neither a kubeconfig nor the pod's service account gives a client configuration.
    #[error(
        "no Kubernetes client configuration (KUBECONFIG, ~/.kube/config, or the in-cluster service account)"
    )]
    Config(#[source] kube::config::InferConfigError),
    /// A kubeconfig file cannot be read or used.
    #[error("unusable kubeconfig")]
    Kubeconfig(#[source] kube::config::KubeconfigError),
    /// The client cannot be built from the configuration (its TLS settings, say).
    #[error("cannot build the Kubernetes client")]
    Client(#[source] Box<kube::Error>),
    /// A variable the Leases need is not set.
    #[error(
        "{0} is not set; the Kubernetes Leases need it (etcd-druid sets it from the pod's metadata)"
    )]
    MissingVariable(&'static str),
    /// The API server answered a request about a Lease with an error, or could not be reached.
    #[error("cannot {op} the Lease {namespace}/{name}")]
    Lease {
        /// get, update, patch.
        op: &'static str,
        /// The Lease's namespace.
        namespace: String,
        /// The Lease.
        name: String,
        /// The API server's answer, or why it could not be reached.
        #[source]
        source: Box<kube::Error>,
    },
    /// A Lease holds a holderIdentity that is not a revision.
    #[error("the Lease {namespace}/{name} holds {value:?} in spec.holderIdentity, not a revision")]
    NotARevision {
        /// The Lease's namespace.
        namespace: String,
        /// The Lease.
        name: String,
        /// What it holds.
        value: String,
    },
    /// Another writer kept winning: the update conflicted every time it was retried.
    #[error("the Lease {namespace}/{name} kept changing under the update ({attempts} conflicts)")]
    Conflicts {
        /// The Lease's namespace.
        namespace: String,
        /// The Lease.
        name: String,
        /// Attempts made.
        attempts: u32,
    },
    /// etcd's status carried no response header (no member or cluster ID).
    #[error("etcd's status response has no header: the member and cluster IDs are unknown")]
    NoStatusHeader,
    /// etcd did not say who this member is.
    #[error("cannot read this member's status from etcd")]
    Etcd(#[source] etcdbr::Error),
}

impl Error {
    /// The HTTP status the API server answered with, if it answered.
    #[must_use]
    pub fn api_code(&self) -> Option<u16> {
        match self {
            Error::Lease { source, .. } => match source.as_ref() {
                kube::Error::Api(s) => Some(s.code),
                _ => None,
            },
            _ => None,
        }
    }
}
