//! A Kubernetes client and the namespace its Leases live in.

use crate::Error;

/// The variable naming the pod's namespace (etcd-druid sets it from `metadata.namespace`).
pub const POD_NAMESPACE: &str = "POD_NAMESPACE";
/// The variable naming the pod (the member Lease's name, after the member name prefix).
pub const POD_NAME: &str = "POD_NAME";

/// A client and the namespace of the Leases.
#[derive(Clone)]
pub struct Kube {
    /// The client (rustls with aws-lc).
    pub client: kube::Client,
    /// Where the Leases are: `POD_NAMESPACE`, else the configuration's default namespace.
    pub namespace: String,
}

impl std::fmt::Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kube")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Kube {
    /// A client from `KUBECONFIG` (or `~/.kube/config`) when there is one, else from the pod's
    /// service account (`KUBERNETES_SERVICE_HOST`/`PORT`, its token and CA), as client-go does;
    /// the namespace from `POD_NAMESPACE`.
    ///
    /// # Errors
    /// No configuration, or one the client cannot be built from.
    pub async fn connect() -> Result<Kube, Error> {
        let config = kube::Config::infer().await.map_err(Error::Config)?;
        let namespace = std::env::var(POD_NAMESPACE)
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| config.default_namespace.clone());
        tracing::info!(
            "Kubernetes API server {} (namespace {namespace})",
            config.cluster_url
        );
        let client = kube::Client::try_from(config).map_err(|e| Error::Client(Box::new(e)))?;
        Ok(Kube { client, namespace })
    }

    /// A client from the kubeconfig file at `path` (its current context), for `namespace`.
    ///
    /// # Errors
    /// The file cannot be read or used.
    pub async fn from_kubeconfig(path: &std::path::Path, namespace: &str) -> Result<Kube, Error> {
        let file = kube::config::Kubeconfig::read_from(path).map_err(Error::Kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(Error::Kubeconfig)?;
        let client = kube::Client::try_from(config).map_err(|e| Error::Client(Box::new(e)))?;
        Ok(Kube {
            client,
            namespace: namespace.to_owned(),
        })
    }
}
