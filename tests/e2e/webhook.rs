//! applyguard as shipped in deploy/: rendered with kustomize, installed on the real API server
//! with only what loopback needs changed, and `applyguard serve` run against it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::cluster::{ControlPlane, free_port};
use crate::kubectl;
use crate::procs::{self, Proc};

/// `kubectl kustomize DIR`, as objects.
pub fn render(dir: &Path) -> Result<Vec<Value>, String> {
    let out = Command::new(kubectl::binary())
        .args(["kustomize", &dir.display().to_string()])
        .output()
        .map_err(|e| format!("kubectl kustomize: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "kubectl kustomize {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut objects = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let value = Value::deserialize(doc).map_err(|e| format!("rendered YAML: {e}"))?;
        if !value.is_null() {
            objects.push(value);
        }
    }
    Ok(objects)
}

/// deploy/base with deploy/components/warn, the warnings-first rollout, without a certificate
/// overlay (loopback needs none). kustomize takes only relative paths, so the kustomization
/// lives under target/ of the repository.
pub fn warn_kustomization(root: &Path) -> Result<PathBuf, String> {
    let dir = root.join("target/e2e/overlay-warn");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let text = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../../deploy/base\ncomponents:\n  - ../../../deploy/components/warn\n";
    std::fs::write(dir.join("kustomization.yaml"), text).map_err(|e| e.to_string())?;
    Ok(dir)
}

pub fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or("")
}

/// The policy file the rendered ConfigMap would mount (data["config.yaml"]).
pub fn policy(objects: &[Value]) -> Result<String, String> {
    objects
        .iter()
        .find(|o| {
            kind(o) == "ConfigMap"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("applyguard-config"))
        })
        .and_then(|o| o["data"]["config.yaml"].as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            "the rendered deploy/ has no applyguard-config ConfigMap with config.yaml".to_string()
        })
}

/// The rendered ValidatingWebhookConfiguration with each webhook's Service reference replaced
/// by the loopback URL and its caBundle: the only change loopback needs.
pub fn loopback_webhook(objects: &[Value], port: u16, ca_bundle: &str) -> Result<Value, String> {
    let mut vwc = objects
        .iter()
        .find(|o| kind(o) == "ValidatingWebhookConfiguration")
        .cloned()
        .ok_or("the rendered deploy/ has no ValidatingWebhookConfiguration")?;
    let Some(hooks) = vwc["webhooks"].as_array_mut() else {
        return Err("ValidatingWebhookConfiguration without webhooks".to_string());
    };
    for hook in hooks {
        let path = hook["clientConfig"]["service"]["path"]
            .as_str()
            .unwrap_or("/validate")
            .to_string();
        hook["clientConfig"] = json!({
            "url": format!("https://127.0.0.1:{port}{path}"),
            "caBundle": ca_bundle,
        });
    }
    Ok(vwc)
}

/// `kubectl apply -f -` of these objects.
pub fn apply(kubeconfig: &Path, objects: &[&Value], extra: &[&str]) -> kubectl::Out {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let mut args = vec!["apply", "-f", "-"];
    args.extend_from_slice(extra);
    kubectl::run_with_stdin(kubeconfig, &args, Some(&list.to_string()))
}

/// One `applyguard serve`, on fixed ports so a restart is reached at the same URL.
pub struct Serve {
    pub port: u16,
    pub metrics_port: u16,
    pub cert_dir: PathBuf,
    pub ca_bundle: String,
    pub policy: PathBuf,
    pub kubeconfig: PathBuf,
    pub log: PathBuf,
    proc: Option<Proc>,
}

impl Serve {
    /// Certificates (rcgen, `applyguard certs`' own code) and the ServiceAccount token of
    /// deploy/'s `applyguard` account, so serve holds exactly the shipped ClusterRole.
    pub fn prepare(plane: &ControlPlane, work: &Path, policy: &str) -> Result<Serve, String> {
        let cert_dir = work.join("serve-certs");
        let certs = issue_serving(&cert_dir)?;
        let token = kubectl::run(
            &plane.admin_kubeconfig,
            &[
                "create",
                "token",
                "applyguard",
                "-n",
                "applyguard",
                "--duration=4h",
            ],
        );
        if !token.ok() {
            return Err(format!(
                "TokenRequest for applyguard/applyguard failed:\n{}",
                token.show()
            ));
        }
        let kubeconfig = work.join("applyguard.kubeconfig");
        plane.token_kubeconfig(&kubeconfig, token.stdout.trim())?;
        let policy_path = work.join("policy.yaml");
        std::fs::write(&policy_path, policy).map_err(|e| e.to_string())?;
        Ok(Serve {
            port: free_port()?,
            metrics_port: free_port()?,
            cert_dir,
            ca_bundle: certs,
            policy: policy_path,
            kubeconfig,
            log: work.join("serve.log"),
            proc: None,
        })
    }

    pub fn start(&mut self) -> Result<(), String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_applyguard"));
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info")
            // --stale-after 3: the watch-cache scenario sees the cache go stale in seconds;
            // --audit-interval 2 --policy-reports: existing-objects sees the background
            // audit's verdicts, in the gauges, the log and PolicyReports.
            .args([
                "serve",
                "--log-format",
                "json",
                "--reload-interval",
                "1",
                "--stale-after",
                "3",
                "--audit-interval",
                "2",
                "--policy-reports",
            ])
            .arg("--config")
            .arg(&self.policy)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .arg("--tls-cert")
            .arg(self.cert_dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(self.cert_dir.join("tls.key"));
        self.proc = Some(procs::spawn("applyguard serve", command, &self.log)?);
        self.wait_ready(Duration::from_secs(30))
    }

    /// Until /readyz on the metrics port says ready (the watch cache synced).
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((200, _)) = self.get("/readyz") {
                return Ok(());
            }
            if let Some(status) = self.proc.as_ref().and_then(|p| p.exited()) {
                return Err(format!(
                    "applyguard serve exited ({status}):\n{}",
                    procs::tail(&self.log, 30)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "applyguard serve not ready after {timeout:?}:\n{}",
                    procs::tail(&self.log, 30)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM and wait (serve drains, then exits).
    pub fn stop(&mut self) {
        if let Some(proc) = self.proc.take() {
            proc.stop(Duration::from_secs(30));
        }
    }

    /// A plain-HTTP GET on the metrics port: (status, body).
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.metrics_port)).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut text = String::new();
        stream
            .read_to_string(&mut text)
            .map_err(|e| e.to_string())?;
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("no HTTP status line")?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// The value of one metric line (exact name with labels), if present.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").ok()?;
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        procs::tail(&self.log, lines)
    }

    /// A new serving pair under the same CA, written where serve reads it.
    pub fn rotate(&self) -> Result<(), String> {
        issue_serving(&self.cert_dir).map(|_| ())
    }
}

/// Writes tls.crt / tls.key for 127.0.0.1 under the CA in `dir` (made once, then reused);
/// returns the caBundle.
fn issue_serving(dir: &Path) -> Result<String, String> {
    use applyguard::certs::{CertRequest, generate};
    let request = CertRequest::with_defaults(
        dir.to_path_buf(),
        vec!["localhost".to_string()],
        vec![std::net::IpAddr::from([127, 0, 0, 1])],
        false,
    );
    generate(&request)
        .map(|out| out.ca_bundle)
        .map_err(|e| e.to_string())
}
