//! The commands behind the command line, as functions with typed options, so that `main.rs`
//! only parses arguments and the tests can drive the same code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use arc_swap::ArcSwap;

use crate::certs::{self, CertRequest};
use crate::engine::Engine;
use crate::inventory::Inventory;
use crate::inventory::cluster::{ClusterInventory, ClusterOptions};
use crate::inventory::manifests::ManifestInventory;
use crate::policy::Policy;
use crate::server::{AppState, Limits, Server};
use crate::tls::{self, CertStore};

/// Where `--dev` keeps its certificates.
pub const DEV_CERT_DIR: &str = "certs-dev";
pub const DEV_LISTEN: &str = "127.0.0.1:8443";
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8443";

/// The serving certificate: files given on the command line, or the dev pair.
#[derive(Debug, Clone)]
pub enum TlsSource {
    Files { cert: PathBuf, key: PathBuf },
    Dev { dir: PathBuf },
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub config: Option<PathBuf>,
    pub listen: SocketAddr,
    pub tls: TlsSource,
    pub limits: Limits,
    /// Manifests to serve cluster state from; empty means watch the cluster.
    pub inventory: Vec<PathBuf>,
}

/// Namespace for manifest objects that name none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Loads `--inventory` manifests.
pub fn manifest_inventory(paths: &[PathBuf]) -> Result<Arc<dyn Inventory>> {
    let inventory = ManifestInventory::load(paths, DEFAULT_NAMESPACE)?;
    tracing::debug!(counts = ?inventory.counts(), "manifest inventory loaded");
    Ok(Arc::new(inventory))
}

/// Connects to the cluster from in-cluster config or KUBECONFIG and starts the watches. Fails
/// when there is neither: serve never silently falls back to an empty inventory.
pub async fn cluster_inventory() -> Result<Arc<dyn Inventory>> {
    let config = kube::Config::infer().await.map_err(|err| {
        anyhow::anyhow!(
            "no Kubernetes API configuration: not running in a cluster and no usable kubeconfig ({err}); \
             pass --inventory PATH to take cluster state from manifests instead"
        )
    })?;
    tracing::info!(server = %config.cluster_url, "watching the cluster for the inventory");
    let client = kube::Client::try_from(config).context("cannot build a Kubernetes client")?;
    Ok(Arc::new(ClusterInventory::start(
        client,
        ClusterOptions::default(),
    )))
}

/// Loads the policy file, or the default policy when none is given.
pub fn load_policy(path: Option<&Path>) -> Result<Policy> {
    Ok(match path {
        Some(path) => Policy::load(path)?,
        None => Policy::default(),
    })
}

/// Creates or reuses the dev CA and serving certificate in `dir`; returns (cert, key) paths.
pub fn dev_certificates(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    if cert.exists() && key.exists() {
        match tls::load_pair(&cert, &key) {
            Ok(_) => return Ok((cert, key)),
            Err(err) => {
                tracing::info!(error = %err, "dev certificate unusable; generating a new one")
            }
        }
    }
    let out = certs::generate(&CertRequest::with_defaults(
        dir.to_path_buf(),
        vec![],
        vec![],
        false,
    ))
    .with_context(|| format!("creating dev certificates in {}", dir.display()))?;
    tracing::info!(
        ca = %out.ca_cert.display(),
        cert = %out.tls_cert.display(),
        ca_reused = out.ca_reused,
        "dev certificates ready"
    );
    Ok((out.tls_cert, out.tls_key))
}

/// Everything `serve` checks before binding: config, certificates.
pub fn prepare_server(
    options: &ServeOptions,
    inventory: Arc<dyn Inventory>,
) -> Result<(rustls::ServerConfig, AppState)> {
    let policy = load_policy(options.config.as_deref())?;
    let engine = Engine::with_inventory(policy, inventory)?;
    let (cert, key) = match &options.tls {
        TlsSource::Files { cert, key } => (cert.clone(), key.clone()),
        TlsSource::Dev { dir } => dev_certificates(dir)?,
    };
    let loaded = tls::load_pair(&cert, &key)?;
    tracing::info!(cert = %cert.display(), not_after = %loaded.not_after, "serving certificate loaded");
    let tls_config = tls::server_config(CertStore::new(loaded.key))?;
    let state = AppState {
        engine: Arc::new(ArcSwap::from_pointee(engine)),
        ready: Arc::new(AtomicBool::new(false)),
        limits: options.limits.clone(),
    };
    Ok((tls_config, state))
}

/// `applyguard serve`: runs until SIGTERM or Ctrl-C, then drains.
pub async fn serve(options: ServeOptions) -> Result<()> {
    // Check what can be checked without the cluster first: config and certificates.
    prepare_server(&options, Arc::new(crate::inventory::EmptyInventory))?;
    let inventory = if options.inventory.is_empty() {
        cluster_inventory().await?
    } else {
        manifest_inventory(&options.inventory)?
    };
    let (tls_config, state) = prepare_server(&options, inventory)?;
    let server = Server::bind(options.listen, tls_config, state)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let addr = server.local_addr()?;
    tracing::info!(%addr, "applyguard serving HTTPS (POST /validate, GET /healthz, GET /readyz)");
    server.run(crate::server::shutdown_signal()).await;
    Ok(())
}

/// `applyguard certs`: prints where the files went and the caBundle.
pub fn certs(request: &CertRequest) -> Result<String> {
    if request.out.as_os_str().is_empty() {
        bail!("--out must name a directory");
    }
    let out = certs::generate(request)?;
    Ok(format!(
        "CA:          {} ({})\nserving:     {} (expires {})\nnames:       {}\ncaBundle:    {}\n",
        out.ca_cert.display(),
        if out.ca_reused { "reused" } else { "created" },
        out.tls_cert.display(),
        out.not_after.date(),
        request
            .dns
            .iter()
            .cloned()
            .chain(request.ips.iter().map(|ip| ip.to_string()))
            .collect::<Vec<_>>()
            .join(", "),
        out.ca_bundle
    ))
}
