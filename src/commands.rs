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
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::server::{AppState, Limits, Server};
use crate::tls::{self, CertStore};

/// Where `--dev` keeps its certificates.
pub const DEV_CERT_DIR: &str = "certs-dev";
pub const DEV_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8443,
));
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    8443,
));

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
    /// The plain-HTTP operations port (metrics, health); `None` turns it off.
    pub metrics_listen: Option<SocketAddr>,
    /// How often the certificate and policy files are checked for changes.
    pub reload_interval: std::time::Duration,
    /// How long the watches may keep failing before the cache counts as stale (failureMode).
    pub stale_after: std::time::Duration,
    /// Background audit of existing objects, every this long; `None` is off.
    pub audit_interval: Option<std::time::Duration>,
    /// The background audit also writes PolicyReports.
    pub policy_reports: bool,
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
pub async fn cluster_inventory(stale_after: std::time::Duration) -> Result<Arc<dyn Inventory>> {
    let config = kube::Config::infer().await.map_err(|err| {
        anyhow::anyhow!(
            "no Kubernetes API configuration: not running in a cluster and no usable kubeconfig ({err}); \
             pass --inventory PATH to take cluster state from manifests instead"
        )
    })?;
    tracing::info!(server = %config.cluster_url, "watching the cluster for the inventory");
    let version_client =
        kube::Client::try_from(config.clone()).context("cannot build a Kubernetes client")?;
    tokio::spawn(async move {
        // Not fatal: an API server that is down now is the watches' business, not start-up's.
        match version_client.apiserver_version().await {
            Ok(info) => check_server_version(&info.git_version, &info.minor),
            Err(err) => tracing::info!(error = %err, "could not read the API server's version"),
        }
    });
    let options = ClusterOptions {
        stale_after,
        ..ClusterOptions::default()
    };
    let inventory =
        ClusterInventory::connect(config, options).context("cannot build a Kubernetes client")?;
    Ok(Arc::new(inventory))
}

/// The oldest Kubernetes version the e2e suite runs against (tests/e2e; docs/operations.md, "Supported
/// Kubernetes versions").
pub const OLDEST_TESTED_MINOR: u32 = 20;

/// Says at start what an older API server means for this webhook, and what applyguard does
/// about it. `minor` is the API server's (`"20"`, or `"20+"` on some distributions).
pub fn check_server_version(git_version: &str, minor: &str) {
    let Ok(minor) = minor.trim_end_matches('+').parse::<u32>() else {
        tracing::info!(
            version = git_version,
            "API server version not understood; not checked"
        );
        return;
    };
    if minor < OLDEST_TESTED_MINOR {
        tracing::warn!(
            version = git_version,
            "API server older than 1.{OLDEST_TESTED_MINOR}, the oldest applyguard is tested against: \
             untested and unsupported"
        );
    }
    if minor < 21 {
        tracing::warn!(
            version = git_version,
            "API server older than 1.21: its namespaces carry no kubernetes.io/metadata.name label, \
             so the webhook's namespaceSelector (kubernetes.io/metadata.name NotIn kube-system, \
             kube-node-lease, applyguard) selects every namespace. While applyguard answers it \
             exempts exemptions.systemNamespaces itself; so that kube-system is not blocked when it \
             cannot answer (failurePolicy Fail), label each of those namespaces with its name: \
             kubectl label namespace kube-system kubernetes.io/metadata.name=kube-system \
             (and the same for kube-node-lease and applyguard)"
        );
    } else {
        tracing::info!(version = git_version, "API server version");
    }
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

/// A server checked and ready to bind, with what the reloader needs.
pub struct Prepared {
    pub tls: rustls::ServerConfig,
    pub state: AppState,
    pub certs: Arc<CertStore>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// When the serving certificate in use expires.
    pub not_after: time::OffsetDateTime,
}

/// How long before expiry the serving certificate is warned about in the logs (the metric
/// `applyguard_tls_certificate_expiry_timestamp_seconds` and its alert say it too).
pub const EXPIRY_WARNING: time::Duration = time::Duration::days(14);

fn warn_if_expiring(not_after: time::OffsetDateTime) -> bool {
    let left = not_after - time::OffsetDateTime::now_utc();
    if left < EXPIRY_WARNING {
        tracing::warn!(
            %not_after,
            days_left = left.whole_days(),
            "serving certificate expires soon; renew it (cert-manager, or make deploy-certs)"
        );
        return true;
    }
    false
}

/// Everything `serve` checks before binding: config, certificates.
pub fn prepare_server(options: &ServeOptions, inventory: Arc<dyn Inventory>) -> Result<Prepared> {
    let policy = load_policy(options.config.as_deref())?;
    let engine = Engine::with_inventory(policy, inventory)?;
    let (cert, key) = match &options.tls {
        TlsSource::Files { cert, key } => (cert.clone(), key.clone()),
        TlsSource::Dev { dir } => dev_certificates(dir)?,
    };
    let loaded = tls::load_pair(&cert, &key)?;
    tracing::info!(cert = %cert.display(), not_after = %loaded.not_after, "serving certificate loaded");
    let metrics = Arc::new(Metrics::new());
    metrics.set_certificate_expiry(loaded.not_after);
    let certs = CertStore::new(loaded.key);
    let tls_config = tls::server_config(certs.clone())?;
    let state = AppState {
        engine: Arc::new(ArcSwap::from_pointee(engine)),
        ready: Arc::new(AtomicBool::new(false)),
        limits: options.limits.clone(),
        metrics,
    };
    Ok(Prepared {
        tls: tls_config,
        state,
        certs,
        cert_path: cert,
        key_path: key,
        not_after: loaded.not_after,
    })
}

/// What a file held when last read, to notice changes (Secret volumes swap files atomically).
fn fingerprint(paths: &[&Path]) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    for path in paths {
        all.extend(std::fs::read(path).ok()?);
        all.push(0);
    }
    Some(all)
}

/// Watches the serving certificate and the policy file, and SIGHUP: a changed certificate pair
/// that loads is swapped in for new connections; a broken or half-written pair is rejected
/// (logged, counted) and the old one kept. A changed policy that loads replaces the engine; an
/// invalid one is rejected and the running one kept.
pub fn spawn_reloader(
    prepared: &Prepared,
    config: Option<PathBuf>,
    interval: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    let state = prepared.state.clone();
    let certs = prepared.certs.clone();
    let (cert_path, key_path) = (prepared.cert_path.clone(), prepared.key_path.clone());
    let initial_not_after = prepared.not_after;
    tokio::spawn(async move {
        let mut cert_seen = fingerprint(&[&cert_path, &key_path]);
        let mut config_seen = config.as_deref().and_then(|c| fingerprint(&[c]));
        let mut not_after = initial_not_after;
        let mut last_expiry_warning = warn_if_expiring(not_after).then(std::time::Instant::now);
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let forced = match hangup.as_mut() {
                Some(signal) => tokio::select! {
                    _ = signal.recv() => true,
                    () = tokio::time::sleep(interval) => false,
                },
                None => {
                    tokio::time::sleep(interval).await;
                    false
                }
            };
            #[cfg(not(unix))]
            let forced = {
                tokio::time::sleep(interval).await;
                false
            };
            let now = fingerprint(&[&cert_path, &key_path]);
            if now.is_some() && now != cert_seen {
                match tls::load_pair(&cert_path, &key_path) {
                    Ok(loaded) => {
                        certs.replace(loaded.key);
                        not_after = loaded.not_after;
                        state.metrics.set_certificate_expiry(loaded.not_after);
                        state.metrics.certificate_reload(true);
                        tracing::info!(not_after = %loaded.not_after, "serving certificate reloaded");
                        cert_seen = now;
                    }
                    Err(err) => {
                        // Leave cert_seen alone: the pair is retried until it becomes whole.
                        state.metrics.certificate_reload(false);
                        tracing::warn!(error = %err, "new serving certificate rejected; keeping the current one");
                    }
                }
            }
            // Warn about an expiring certificate at most once an hour.
            if last_expiry_warning
                .is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(3600))
                && warn_if_expiring(not_after)
            {
                last_expiry_warning = Some(std::time::Instant::now());
            }
            let Some(config) = config.as_deref() else {
                continue;
            };
            let now = fingerprint(&[config]);
            if forced || (now.is_some() && now != config_seen) {
                config_seen = now;
                let inventory = state.engine.load().inventory().clone();
                match Policy::load(config)
                    .map_err(anyhow::Error::from)
                    .and_then(|policy| Ok(Engine::with_inventory(policy, inventory)?))
                {
                    Ok(engine) => {
                        state.engine.store(Arc::new(engine));
                        state.metrics.config_reload(true);
                        tracing::info!(config = %config.display(), "policy reloaded");
                    }
                    Err(err) => {
                        state.metrics.config_reload(false);
                        tracing::warn!(error = %format!("{err:#}"), "policy rejected; keeping the running one");
                    }
                }
            }
        }
    })
}

/// `applyguard serve`: runs until SIGTERM or Ctrl-C, then drains.
pub async fn serve(options: ServeOptions) -> Result<()> {
    // Config and certificates are read and checked before connecting to the cluster, so a bad
    // file fails start-up at once; the engine is then rebuilt on the real inventory from the
    // policy already loaded (each file is read once).
    let prepared = prepare_server(&options, Arc::new(crate::inventory::EmptyInventory))?;
    if options.audit_interval.is_some() && !options.inventory.is_empty() {
        anyhow::bail!(
            "--audit-interval audits the cluster's objects and needs the cluster inventory: it cannot be used with --inventory"
        );
    }
    let inventory = if options.inventory.is_empty() {
        cluster_inventory(options.stale_after).await?
    } else {
        manifest_inventory(&options.inventory)?
    };
    let policy = prepared.state.engine.load().policy().clone();
    prepared
        .state
        .engine
        .store(Arc::new(Engine::with_inventory(policy, inventory)?));
    let metrics_listener = match options.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for metrics"))?,
        ),
        None => None,
    };
    let server = Server::bind(options.listen, prepared.tls.clone(), prepared.state.clone())
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let addr = server.local_addr()?;
    let reloader = spawn_reloader(&prepared, options.config.clone(), options.reload_interval);
    let auditor = match options.audit_interval {
        Some(interval) => {
            let config = kube::Config::infer()
                .await
                .context("no Kubernetes API configuration for the background audit")?;
            let client =
                kube::Client::try_from(config).context("cannot build a Kubernetes client")?;
            tracing::info!(
                interval_seconds = interval.as_secs(),
                "background audit of existing objects on"
            );
            Some(tokio::spawn(crate::audit::run_in_background(
                client,
                prepared.state.engine.clone(),
                prepared.state.metrics.clone(),
                interval,
                options.policy_reports,
            )))
        }
        None => None,
    };
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(listener) = metrics_listener {
        let metrics_addr = listener.local_addr()?;
        tracing::info!(%metrics_addr, "metrics on plain HTTP (GET /metrics, /healthz, /readyz)");
        tokio::spawn(crate::server::serve_metrics(
            listener,
            prepared.state.clone(),
            async {
                let _ = metrics_stopped.await;
            },
        ));
    }
    tracing::info!(%addr, "applyguard serving HTTPS (POST /validate, GET /healthz, GET /readyz)");
    server.run(crate::server::shutdown_signal()).await;
    reloader.abort();
    if let Some(auditor) = auditor {
        auditor.abort();
    }
    let _ = stop_metrics.send(());
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
