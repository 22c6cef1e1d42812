//! Test harness: certificates from rcgen, the real server on an ephemeral port, and TLS clients
//! that trust only the generated CA.
#![allow(dead_code)]

pub mod apiserver;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use applyguard::certs::{CertOutput, CertRequest, generate};
use applyguard::commands::{ServeOptions, TlsSource, prepare_server, spawn_reloader};
use applyguard::inventory::{EmptyInventory, Inventory};
use applyguard::server::{Limits, Server};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::oneshot;

/// What the vendored SARIF 2.1.0 schema (tests/fixtures/sarif) finds wrong with a log: empty
/// when it is valid.
pub fn sarif_errors(sarif: &serde_json::Value) -> Vec<String> {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/tests/fixtures/sarif/sarif-2.1.0.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    validator
        .iter_errors(sarif)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn certs(dir: &Path) -> CertOutput {
    generate(&CertRequest::with_defaults(
        dir.to_path_buf(),
        vec![],
        vec![],
        false,
    ))
    .unwrap()
}

/// A running server; dropping it shuts the server down.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The plain-HTTP operations port (metrics, health).
    pub metrics_addr: SocketAddr,
    reloader: tokio::task::JoinHandle<()>,
    pub certs: CertOutput,
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    pub handle: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// Starts the shutdown and waits until the server has drained.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.handle).await.unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.reloader.abort();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn start(config: Option<&str>, limits: Limits) -> TestServer {
    start_with(config, limits, Arc::new(EmptyInventory)).await
}

pub async fn start_with(
    config: Option<&str>,
    limits: Limits,
    inventory: Arc<dyn Inventory>,
) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path());
    let config_path = config.map(|text| {
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, text).unwrap();
        path
    });
    let options = ServeOptions {
        config: config_path,
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: TlsSource::Files {
            cert: certs.tls_cert.clone(),
            key: certs.tls_key.clone(),
        },
        limits,
        inventory: Vec::new(),
        metrics_listen: None,
        reload_interval: Duration::from_millis(100),
        stale_after: Duration::from_secs(300),
        audit_interval: None,
        policy_reports: false,
    };
    let prepared = prepare_server(&options, inventory).unwrap();
    let reloader = spawn_reloader(&prepared, options.config.clone(), options.reload_interval);
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = metrics.local_addr().unwrap();
    tokio::spawn(applyguard::server::serve_metrics(
        metrics,
        prepared.state.clone(),
        std::future::pending(),
    ));
    let server = Server::bind(options.listen, prepared.tls.clone(), prepared.state.clone())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let handle = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    TestServer {
        addr,
        metrics_addr,
        certs,
        dir,
        shutdown: Some(tx),
        handle,
        reloader,
    }
}

pub fn client_tls(ca: &Path, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Http {
    One,
    Two,
}

/// A reqwest client that trusts only the test CA and speaks the chosen HTTP version.
pub fn client(ca: &Path, http: Http) -> reqwest::Client {
    let builder = reqwest::Client::builder().timeout(Duration::from_secs(20));
    let builder = match http {
        Http::One => builder
            .tls_backend_preconfigured(client_tls(ca, &[b"http/1.1"]))
            .http1_only(),
        Http::Two => builder.tls_backend_preconfigured(client_tls(ca, &[b"h2"])),
    };
    builder.build().unwrap()
}

pub fn ca_path(server: &TestServer) -> PathBuf {
    server.certs.ca_cert.clone()
}

/// A plain-HTTP client (the operations port).
pub fn plain_client() -> reqwest::Client {
    // reqwest is built without a default crypto provider; plain HTTP still wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// POSTs `body` to `url` and returns the response text (a transport error fails the test).
pub async fn post_text(
    client: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    body: impl Into<reqwest::Body>,
) -> String {
    client
        .post(url)
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The server's Prometheus text from its plain-HTTP operations port.
pub async fn scrape_metrics(server: &TestServer) -> String {
    plain_client()
        .get(format!("http://{}/metrics", server.metrics_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Starts `applyguard serve` (the binary) on an ephemeral port with JSON logs and returns it with
/// the address it logged. Unless `args` name one, the metrics port is ephemeral too: tests run
/// in parallel.
pub fn spawn_serve(dir: &Path, args: &[&str]) -> (std::process::Child, SocketAddr) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_applyguard"))
        .current_dir(dir)
        .arg("serve")
        .args(args)
        .args(if args.contains(&"--metrics-listen") {
            &[][..]
        } else {
            &["--metrics-listen", "127.0.0.1:0"][..]
        })
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && let Some(addr) = v["addr"].as_str()
                && let Ok(addr) = addr.parse()
            {
                let _ = tx.send(addr);
                sent = true;
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server did not log its address");
    (child, addr)
}

/// A child process (a spawned `applyguard serve`) killed when the test ends, pass or fail.
pub struct Guard(pub std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
