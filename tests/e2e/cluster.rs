//! A control plane on loopback, envtest style: the real etcd and kube-apiserver, certificates
//! from rcgen, RBAC on, no nodes and no controller-manager.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::procs::{self, Proc};

/// A free loopback port (bound, then released; the window for a clash is tiny).
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn rc<T>(r: Result<T, rcgen::Error>) -> Result<T, String> {
    r.map_err(|e| format!("rcgen: {e}"))
}

/// The cluster's CA: it signs the API server's serving certificate and every client certificate
/// (so it is also the client CA).
pub struct Pki {
    pub dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    pub ca_pem: String,
}

impl Pki {
    pub fn new(dir: &Path) -> Result<Pki, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "applyguard-e2e cluster CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = rc(KeyPair::generate())?;
        let cert = rc(params.self_signed(&key))?;
        let ca_pem = cert.pem();
        write(&dir.join("ca.crt"), &ca_pem)?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            issuer: Issuer::new(params, key),
            ca_pem,
        })
    }

    /// Writes NAME.crt and NAME.key (X.509 v3, as rustls requires) and returns their paths.
    fn issue(&self, name: &str, params: CertificateParams) -> Result<(PathBuf, PathBuf), String> {
        let key = rc(KeyPair::generate())?;
        let cert = rc(params.signed_by(&key, &self.issuer))?;
        let (crt, k) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        write(&crt, &cert.pem())?;
        write(&k, &key.serialize_pem())?;
        Ok((crt, k))
    }

    pub fn serving(&self, name: &str) -> Result<(PathBuf, PathBuf), String> {
        let mut params = rc(CertificateParams::new(vec!["localhost".to_string()]))?;
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(name, params)
    }

    /// A client certificate: the API server takes CN as the user and O as the groups.
    pub fn client(
        &self,
        name: &str,
        user: &str,
        groups: &[&str],
    ) -> Result<(PathBuf, PathBuf), String> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, user);
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(name, params)
    }
}

/// Where the binaries are: KUBEBUILDER_ASSETS, the cache, or freshly built
/// (scripts/envtest-assets.sh decides and prints the folder).
pub enum Assets {
    Found(PathBuf),
    /// Cannot be had on this machine; the text says what to set.
    Unavailable(String),
    Broken(String),
}

pub fn assets(root: &Path) -> Assets {
    let script = root.join("scripts/envtest-assets.sh");
    let out = Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output();
    match out {
        Ok(out) if out.status.success() => {
            Assets::Found(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        }
        Ok(out) if out.status.code() == Some(3) => Assets::Unavailable(
            "scripts/envtest-assets.sh could not obtain etcd and kube-apiserver here (see above); \
             set KUBEBUILDER_ASSETS to a folder holding them (setup-envtest use -p path)"
                .to_string(),
        ),
        Ok(out) => Assets::Broken(format!("scripts/envtest-assets.sh failed ({})", out.status)),
        Err(e) => Assets::Broken(format!("cannot run {}: {e}", script.display())),
    }
}

pub struct ControlPlane {
    pub dir: PathBuf,
    pub assets: PathBuf,
    pub pki: Pki,
    pub etcd_url: String,
    pub port: u16,
    pub admin_kubeconfig: PathBuf,
    pub version: String,
    etcd: Option<Proc>,
    apiserver: Option<Proc>,
    apiserver_args: Vec<String>,
    /// Another kube-apiserver on the same etcd, for changes serve must not see as they happen.
    second: Option<Proc>,
    admin_key_args: String,
}

impl ControlPlane {
    pub fn start(dir: &Path, assets: &Path) -> Result<ControlPlane, String> {
        let pki = Pki::new(&dir.join("pki"))?;
        let (serving_crt, serving_key) = pki.serving("kube-apiserver")?;
        let (admin_crt, admin_key) = pki.client("admin", "e2e-admin", &["system:masters"])?;
        // The service-account signing pair: TokenRequest issues the webhook's own token with it.
        let sa_key = rc(KeyPair::generate())?;
        write(&pki.dir.join("sa.key"), &sa_key.serialize_pem())?;
        write(&pki.dir.join("sa.pub"), &sa_key.public_key_pem())?;

        let etcd_port = free_port()?;
        let peer_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let mut etcd = Command::new(assets.join("etcd"));
        etcd.args([
            "--name=e2e",
            &format!("--data-dir={}", dir.join("etcd").display()),
            &format!("--listen-client-urls={etcd_url}"),
            &format!("--advertise-client-urls={etcd_url}"),
            &format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            &format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
            &format!("--initial-cluster=e2e=http://127.0.0.1:{peer_port}"),
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]);
        let etcd = procs::spawn("etcd", etcd, &dir.join("etcd.log"))?;

        let port = free_port()?;
        let p = |name: &str| pki.dir.join(name).display().to_string();
        let apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".to_string(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", dir.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", serving_crt.display()),
            format!("--tls-private-key-file={}", serving_key.display()),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
            "--api-audiences=https://kubernetes.default.svc.cluster.local".to_string(),
            "--authorization-mode=Node,RBAC".to_string(),
            "--service-cluster-ip-range=10.0.0.0/24".to_string(),
            "--allow-privileged=true".to_string(),
            // No controller-manager creates each namespace's "default" ServiceAccount, which this
            // plugin would demand of every Pod.
            "--disable-admission-plugins=ServiceAccount".to_string(),
            // 1.20's insecure port defaults to localhost:8080; nothing here should listen there.
            "--insecure-port=0".to_string(),
            "--v=1".to_string(),
        ];
        let admin_kubeconfig = dir.join("admin.kubeconfig");
        let admin_key_args = format!(
            "client-certificate: {}\n    client-key: {}",
            admin_crt.display(),
            admin_key.display()
        );
        write(
            &admin_kubeconfig,
            &kubeconfig(port, &pki.ca_pem, &admin_key_args),
        )?;
        let mut plane = ControlPlane {
            dir: dir.to_path_buf(),
            assets: assets.to_path_buf(),
            pki,
            etcd_url,
            port,
            admin_kubeconfig,
            version: String::new(),
            etcd: Some(etcd),
            apiserver: None,
            apiserver_args,
            second: None,
            admin_key_args,
        };
        plane.start_apiserver()?;
        Ok(plane)
    }

    pub fn start_apiserver(&mut self) -> Result<(), String> {
        let mut command = Command::new(self.assets.join("kube-apiserver"));
        command.args(&self.apiserver_args);
        let proc = procs::spawn(
            "kube-apiserver",
            command,
            &self.dir.join("kube-apiserver.log"),
        )?;
        self.apiserver = Some(proc);
        self.wait_ready(Duration::from_secs(60))?;
        if self.version.is_empty() {
            let out = crate::kubectl::run(&self.admin_kubeconfig, &["get", "--raw", "/version"]);
            let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
            self.version = v["gitVersion"].as_str().unwrap_or("unknown").to_string();
        }
        Ok(())
    }

    /// Starts a second kube-apiserver on the same etcd and another port; returns an admin
    /// kubeconfig for it.
    pub fn start_second_apiserver(&mut self) -> Result<PathBuf, String> {
        let port = free_port()?;
        let args: Vec<String> = self
            .apiserver_args
            .iter()
            .map(|a| {
                if a.starts_with("--secure-port=") {
                    format!("--secure-port={port}")
                } else if a.starts_with("--cert-dir=") {
                    format!("--cert-dir={}", self.dir.join("apiserver2-certs").display())
                } else {
                    a.clone()
                }
            })
            .collect();
        let mut command = Command::new(self.assets.join("kube-apiserver"));
        command.args(&args);
        self.second = Some(procs::spawn(
            "second kube-apiserver",
            command,
            &self.dir.join("kube-apiserver-2.log"),
        )?);
        let config = self.dir.join("admin-2.kubeconfig");
        write(
            &config,
            &kubeconfig(port, &self.pki.ca_pem, &self.admin_key_args),
        )?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = crate::kubectl::run(&config, &["get", "--raw", "/readyz"]);
            if out.ok() {
                return Ok(config);
            }
            if Instant::now() > deadline {
                return Err(format!("second kube-apiserver not ready: {}", out.all()));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn stop_second_apiserver(&mut self) {
        if let Some(proc) = self.second.take() {
            proc.stop(Duration::from_secs(10));
        }
    }

    pub fn stop_apiserver(&mut self) {
        if let Some(proc) = self.apiserver.take() {
            proc.stop(Duration::from_secs(10));
        }
    }

    /// Until GET /readyz answers ok (all post-start hooks done: RBAC bootstrap roles included).
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = crate::kubectl::run(&self.admin_kubeconfig, &["get", "--raw", "/readyz"]);
            if out.ok() && out.stdout.trim() == "ok" {
                return Ok(());
            }
            for proc in [&self.etcd, &self.apiserver].into_iter().flatten() {
                if let Some(status) = proc.exited() {
                    return Err(format!(
                        "{} exited ({status}):\n{}",
                        proc.name,
                        proc.tail(30)
                    ));
                }
            }
            if Instant::now() > deadline {
                let log = self
                    .apiserver
                    .as_ref()
                    .map(|p| p.tail(30))
                    .unwrap_or_default();
                return Err(format!(
                    "kube-apiserver not ready after {timeout:?}: {}\n{log}",
                    out.all()
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Compacts etcd at its current revision, so every older resourceVersion is gone: watches
    /// that resume from one get 410 Gone and must relist. Through etcd's JSON gateway (v3 API
    /// over HTTP on the client URL), so no etcdctl is needed.
    pub fn compact_etcd(&self) -> Result<String, String> {
        let status = etcd_post(&self.etcd_url, "/v3/maintenance/status", "{}")?;
        let v: serde_json::Value =
            serde_json::from_str(&status).map_err(|e| format!("etcd status: {e}: {status}"))?;
        let revision = v["header"]["revision"]
            .as_str()
            .map(str::to_string)
            .or_else(|| v["header"]["revision"].as_i64().map(|r| r.to_string()))
            .ok_or_else(|| format!("etcd status has no revision: {status}"))?;
        let body = format!("{{\"revision\": \"{revision}\", \"physical\": true}}");
        etcd_post(&self.etcd_url, "/v3/kv/compaction", &body)?;
        Ok(revision)
    }

    /// A kubeconfig for a bearer token (a ServiceAccount's, from TokenRequest).
    pub fn token_kubeconfig(&self, path: &Path, token: &str) -> Result<(), String> {
        write(
            path,
            &kubeconfig(self.port, &self.pki.ca_pem, &format!("token: {token}")),
        )
    }

    pub fn tail_logs(&self) -> String {
        let mut out = String::new();
        for proc in [&self.etcd, &self.apiserver].into_iter().flatten() {
            out.push_str(&format!(
                "--- {} (last lines of {})\n{}\n",
                proc.name,
                proc.log.display(),
                proc.tail(15)
            ));
        }
        out
    }
}

/// POST to etcd's gRPC gateway; the body of a 200 answer.
fn etcd_post(url: &str, path: &str, body: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).map_err(|e| format!("etcd {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or("etcd: no HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("etcd {path}: {head}\n{rest}"));
    }
    // The gateway may answer chunked; the JSON object is between the first { and the last }.
    let json = match (rest.find('{'), rest.rfind('}')) {
        (Some(a), Some(b)) if a < b => &rest[a..=b],
        _ => rest,
    };
    Ok(json.to_string())
}

fn kubeconfig(port: u16, ca_pem: &str, user: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {ca}\nusers:\n- name: e2e\n  user:\n    {user}\ncontexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: e2e\ncurrent-context: e2e\n"
    )
}
