//! The binary's command-line contract: review output identical to serve, exit codes, start-up
//! errors, certificates, --dev, and SIGTERM draining in-flight requests.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use applyguard::certs::CertOutput;
use applyguard::server::Limits;
use common::{Http, client, client_tls, fixture, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_applyguard");
const FIXTURES: &[&str] = &[
    "configmap-create",
    "cronjob-create-dryrun-denied",
    "deployment-create-allowed",
    "deployment-create-denied",
    "deployment-update-scale-only",
    "pod-create-allowed",
    "pod-delete",
    "pod-ephemeral-update-denied",
    "deployment-secrets-allowed",
    "deployment-secrets-denied",
    "statefulset-kafka-plaintext-denied",
    "kafka-strimzi-plain-listener-denied",
    "ingress-tls-missing-denied",
    "secret-placeholder-denied",
    "rollout-create-denied",
    "externalsecret-missing-store-denied",
];

/// The kinds beyond pods, reviewed offline: each denied by the rule and at the field it names.
#[test]
fn review_denies_the_kinds_beyond_pods() {
    for (name, rule_and_path) in [
        (
            "ingress-tls-missing-denied",
            "[secret-ref] spec.tls[0].secretName",
        ),
        (
            "secret-placeholder-denied",
            "[placeholder-secret] data.password",
        ),
        (
            "rollout-create-denied",
            "[root-container] spec.template.spec.containers[0].securityContext.runAsNonRoot",
        ),
        (
            "externalsecret-missing-store-denied",
            "[secret-ref] spec.secretStoreRef",
        ),
    ] {
        let output = Command::new(BIN)
            .args(["review", &fixture_path(name)])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{name}");
        let review: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(review["response"]["allowed"], false, "{name}: {review}");
        let message = review["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains(rule_and_path), "{name}: {message}");
        // The placeholder Secret's value never comes back.
        assert!(!String::from_utf8_lossy(&output.stdout).contains("Q0hBTkdFX01F"));
    }
}

fn inventory_dir() -> String {
    format!("{}/tests/fixtures/inventory", env!("CARGO_MANIFEST_DIR"))
}

fn fixture_path(name: &str) -> String {
    format!(
        "{}/tests/fixtures/admission/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[tokio::test]
async fn review_and_serve_give_byte_identical_responses() {
    for config in [None, Some("mode: warn\n")] {
        let server = start(config, Limits::default()).await;
        let config_path = server.dir.path().join("config.yaml");
        for name in FIXTURES {
            let mut cmd = Command::new(BIN);
            cmd.arg("review");
            if config.is_some() {
                cmd.arg("--config").arg(&config_path);
            }
            let output = cmd.arg(fixture_path(name)).output().unwrap();
            assert_eq!(
                output.status.code(),
                Some(0),
                "{name}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let served = client(&server.certs.ca_cert, Http::One)
                .post(server.url("/validate"))
                .body(fixture(&format!("admission/{name}.json")))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(
                output.stdout,
                served.to_vec(),
                "{name} with config {config:?}"
            );
        }
        server.stop().await;
    }
}

#[test]
fn review_reads_stdin() {
    let mut child = Command::new(BIN)
        .args(["review", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&fixture("admission/deployment-create-denied.json"))
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let review: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(review["response"]["allowed"], false);
}

#[test]
fn review_exit_codes_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    let bad_json = dir.path().join("bad.json");
    std::fs::write(&bad_json, "{ nope").unwrap();
    let bad_config = dir.path().join("config.yaml");
    std::fs::write(&bad_config, "rules:\n  root-containers: { mode: warn }\n").unwrap();
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (vec![fixture_path("deployment-create-denied")], 0, ""),
        (
            vec![bad_json.display().to_string()],
            2,
            "request body is not valid JSON",
        ),
        (
            vec![dir.path().join("missing.json").display().to_string()],
            2,
            "cannot read",
        ),
        (
            vec![
                "--config".into(),
                bad_config.display().to_string(),
                fixture_path("pod-create-allowed"),
            ],
            2,
            "root-containers",
        ),
        (
            vec![
                "--config".into(),
                dir.path().join("nope.yaml").display().to_string(),
                fixture_path("pod-create-allowed"),
            ],
            2,
            "cannot read config file",
        ),
    ];
    for (args, code, message) in cases {
        let output = Command::new(BIN)
            .arg("review")
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        if code != 0 {
            assert!(
                output.stdout.is_empty(),
                "nothing on stdout for unusable input"
            );
        }
    }
}

#[test]
fn serve_refuses_to_start_without_usable_certificates_or_config() {
    let dir = tempfile::tempdir().unwrap();
    let certs = common::certs(dir.path());
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a pem").unwrap();
    let bad_config = dir.path().join("config.yaml");
    std::fs::write(
        &bad_config,
        "rules:\n  placeholder-image: { mode: sometimes }\n",
    )
    .unwrap();
    let s = |p: &Path| p.display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--tls-cert".into(),
                s(&dir.path().join("missing.crt")),
                "--tls-key".into(),
                s(&certs.tls_key),
            ],
            "missing.crt",
        ),
        (
            vec![
                "--tls-cert".into(),
                s(&junk),
                "--tls-key".into(),
                s(&certs.tls_key),
            ],
            "no PEM certificate",
        ),
        (
            vec![
                "--tls-cert".into(),
                s(&certs.tls_cert),
                "--tls-key".into(),
                s(&certs.ca_key),
            ],
            "do not belong together",
        ),
        (
            vec![
                "--config".into(),
                s(&bad_config),
                "--tls-cert".into(),
                s(&certs.tls_cert),
                "--tls-key".into(),
                s(&certs.tls_key),
            ],
            "sometimes",
        ),
        (vec![], "pass --tls-cert and --tls-key, or --dev"),
        (
            vec![
                "--inventory".into(),
                s(&dir.path().join("no-such-dir")),
                "--tls-cert".into(),
                s(&certs.tls_cert),
                "--tls-key".into(),
                s(&certs.tls_key),
            ],
            "no-such-dir",
        ),
        // No --inventory, not in a cluster, no kubeconfig: a clear error, never a silent fallback.
        (
            vec![
                "--tls-cert".into(),
                s(&certs.tls_cert),
                "--tls-key".into(),
                s(&certs.tls_key),
            ],
            "no Kubernetes API configuration",
        ),
    ];
    for (args, message) in cases {
        let output = Command::new(BIN)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
            .env("HOME", dir.path())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn certs_command_writes_private_keys_and_prints_the_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pki");
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["certs", "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let first = run(&["--dns", "webhook.example.internal", "--ip", "10.0.0.7"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let stdout = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(stdout.contains("(created)"), "{stdout}");
    assert!(
        stdout.contains("webhook.example.internal, 10.0.0.7"),
        "{stdout}"
    );
    let bundle = stdout
        .lines()
        .find_map(|l| l.strip_prefix("caBundle:"))
        .unwrap()
        .trim()
        .to_string();
    use base64::Engine as _;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(&bundle)
        .unwrap();
    assert_eq!(pem, std::fs::read(out.join("ca.crt")).unwrap());
    let second = run(&[]);
    assert!(String::from_utf8_lossy(&second.stdout).contains("(reused)"));
    let forced = run(&["--force"]);
    assert!(String::from_utf8_lossy(&forced.stdout).contains("(created)"));
}

/// Starts the binary with the test inventory and returns it with the address it logged.
fn spawn_serve(dir: &Path, args: &[&str]) -> (std::process::Child, std::net::SocketAddr) {
    let mut all = args.to_vec();
    let inventory = inventory_dir();
    all.extend(["--inventory", &inventory]);
    common::spawn_serve(dir, &all)
}

/// `spawn_serve` with the test certificates as `--tls-cert`/`--tls-key`, then `extra`.
fn spawn_serve_tls(
    dir: &Path,
    certs: &CertOutput,
    extra: &[&str],
) -> (std::process::Child, std::net::SocketAddr) {
    let cert = certs.tls_cert.display().to_string();
    let key = certs.tls_key.display().to_string();
    let mut args = vec!["--tls-cert", &cert, "--tls-key", &key];
    args.extend_from_slice(extra);
    spawn_serve(dir, &args)
}

#[tokio::test]
async fn dev_mode_creates_then_reuses_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_serve(dir.path(), &["--dev"]);
    let ca = dir.path().join("certs-dev/ca.crt");
    let tls_before = std::fs::read(dir.path().join("certs-dev/tls.crt")).unwrap();
    let response = client(&ca, Http::Two)
        .get(format!("https://localhost:{}/readyz", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut child, _) = spawn_serve(dir.path(), &["--dev"]);
    assert_eq!(
        tls_before,
        std::fs::read(dir.path().join("certs-dev/tls.crt")).unwrap()
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let certs = common::certs(dir.path());
    let (child, addr) = spawn_serve_tls(dir.path(), &certs, &[]);
    // Start a request and send only half its body.
    let body = fixture("admission/deployment-create-denied.json");
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_tls(
        &certs.ca_cert,
        &[b"http/1.1"],
    )));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    tls.write_all(first).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New connections are refused once draining has begun.
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener still open"
    );
    tls.write_all(rest).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response))
        .await
        .unwrap()
        .ok();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"allowed\":false"), "{response}");
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn review_with_inventory_resolves_secrets() {
    let run = |fixture: &str, inventory: bool| {
        let mut cmd = Command::new(BIN);
        cmd.arg("review");
        if inventory {
            cmd.args(["--inventory", &inventory_dir()]);
        }
        let output = cmd.arg(fixture_path(fixture)).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()["response"].clone()
    };
    let allowed = run("deployment-secrets-allowed", true);
    assert_eq!(allowed["allowed"], true, "{allowed}");
    let warnings = allowed["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("Certificate web")),
        "{warnings:?}"
    );
    let denied = run("deployment-secrets-denied", true);
    let message = denied["status"]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "[secret-ref] spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef"
        ),
        "{message}"
    );
    assert!(message.contains("not \"username\""), "{message}");
    assert!(
        message.contains("[secret-ref] spec.template.spec.containers[0].envFrom[0].secretRef"),
        "{message}"
    );
    // Offline without --inventory nothing is known to exist, and the message says so.
    let offline = run("deployment-secrets-allowed", false);
    assert_eq!(offline["allowed"], false);
    assert!(
        offline["status"]["message"]
            .as_str()
            .unwrap()
            .contains("no --inventory given")
    );
}

#[tokio::test]
async fn serve_with_inventory_allows_and_denies_deployments_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let certs = common::certs(dir.path());
    let (child, addr) = spawn_serve_tls(dir.path(), &certs, &[]);
    let _child = common::Guard(child);
    for (name, allowed) in [
        ("deployment-secrets-allowed", true),
        ("deployment-secrets-denied", false),
    ] {
        for http in [Http::One, Http::Two] {
            let body = common::post_text(
                &client(&certs.ca_cert, http),
                format!("https://localhost:{}/validate", addr.port()),
                fixture(&format!("admission/{name}.json")),
            )
            .await;
            let response: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(response["response"]["allowed"], allowed, "{name}: {body}");
            // Identical to the offline answer.
            let offline = Command::new(BIN)
                .args([
                    "review",
                    "--inventory",
                    &inventory_dir(),
                    &fixture_path(name),
                ])
                .output()
                .unwrap();
            assert_eq!(offline.stdout, body.as_bytes(), "{name}");
        }
    }
}

#[tokio::test]
async fn during_the_shutdown_delay_readyz_fails_and_validate_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let certs = common::certs(dir.path());
    let (child, addr) = spawn_serve_tls(dir.path(), &certs, &["--shutdown-delay", "2"]);
    let c = client(&certs.ca_cert, Http::One);
    let url = |path: &str| format!("https://localhost:{}{path}", addr.port());
    assert_eq!(
        c.get(url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Not ready, but still answering: fresh connections too.
    let fresh = client(&certs.ca_cert, Http::Two);
    assert_eq!(
        fresh
            .get(url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        503
    );
    let response = fresh
        .post(url("/validate"))
        .body(fixture("admission/deployment-create-denied.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.text().await.unwrap().contains("\"allowed\":false"));
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
}

#[tokio::test]
async fn sighup_reloads_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let certs = common::certs(dir.path());
    let config = dir.path().join("policy.yaml");
    std::fs::write(&config, "mode: enforce\n").unwrap();
    let (child, addr) = spawn_serve_tls(
        dir.path(),
        &certs,
        &[
            "--config",
            &config.display().to_string(),
            "--reload-interval",
            "3600",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let _child = common::Guard(child);
    let c = client(&certs.ca_cert, Http::One);
    let allowed = || async {
        common::post_text(
            &c,
            format!("https://localhost:{}/validate", addr.port()),
            fixture("admission/deployment-create-denied.json"),
        )
        .await
        .contains("\"allowed\":true")
    };
    assert!(!allowed().await);
    std::fs::write(&config, "mode: warn\n").unwrap();
    // The file check runs hourly here: only SIGHUP can make this change visible.
    let pid = _child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !allowed().await {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload the policy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_certificate_close_to_expiry_is_warned_about_in_the_logs() {
    use rcgen::{CertificateParams, Issuer, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    leaf.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(2);
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.path().join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), key.serialize_pem()).unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--tls-cert",
            "tls.crt",
            "--tls-key",
            "tls.key",
        ])
        .args(["--inventory", &inventory_dir()])
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("serving certificate expires soon") {
                let _ = tx.send(line);
                return;
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("no expiry warning logged");
    // Plain text (no colour codes when stderr is not a terminal), with the days left.
    assert!(!line.contains('\u{1b}'), "{line:?}");
    assert!(
        line.contains("days_left=1") || line.contains("days_left=2"),
        "{line}"
    );
}

/// `kubectl applyguard scan`: kubectl runs any `kubectl-<name>` on PATH as a plugin, so a link
/// named kubectl-applyguard is all the plugin needs.
#[test]
fn works_as_a_kubectl_plugin() {
    let Ok(version) = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
    else {
        eprintln!("SKIPPED: kubectl is not installed; the plugin form is not exercised");
        return;
    };
    assert!(version.status.success());
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(BIN, bin.path().join("kubectl-applyguard")).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let fixture = format!(
        "{}/tests/fixtures/scan/audit-repo",
        env!("CARGO_MANIFEST_DIR")
    );
    let plugin = Command::new("kubectl")
        .args(["applyguard", "scan", "--format", "json", &fixture])
        .env("PATH", &path)
        .output()
        .unwrap();
    let direct = Command::new(BIN)
        .args(["scan", "--format", "json", &fixture])
        .output()
        .unwrap();
    assert_eq!(
        plugin.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&plugin.stderr)
    );
    assert_eq!(plugin.stdout, direct.stdout);
    let listed = Command::new("kubectl")
        .args(["plugin", "list"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("kubectl-applyguard"),
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );
}

/// The pre-commit hook scans the directories in its args as one set (cross-file references
/// resolve), never the staged files one by one.
#[test]
fn the_pre_commit_hook_scans_whole_directories() {
    let text = std::fs::read_to_string(format!(
        "{}/.pre-commit-hooks.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let hooks: Vec<serde_json::Value> = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(hooks.len(), 1);
    let hook = &hooks[0];
    assert_eq!(hook["id"], "applyguard-scan");
    assert_eq!(hook["entry"], "applyguard scan");
    assert_eq!(hook["language"], "rust");
    assert_eq!(hook["pass_filenames"], false);
    // What pre-commit runs: entry + args, in the repository root.
    let args: Vec<String> = hook["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let output = Command::new(BIN)
        .arg("scan")
        .args(&args)
        .current_dir(format!(
            "{}/tests/fixtures/scan/external-secret",
            env!("CARGO_MANIFEST_DIR")
        ))
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// Log lines are written by a writer thread (a request never waits on a slow log pipe): every
/// decision still reaches the log, and none is lost when SIGTERM ends the process.
#[tokio::test]
async fn every_decision_is_logged_and_none_is_lost_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let certs = common::certs(dir.path());
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
        ])
        .args(["--log-format", "json", "--inventory", &inventory_dir()])
        .arg("--tls-cert")
        .arg(&certs.tls_cert)
        .arg("--tls-key")
        .arg(&certs.tls_key)
        .stderr(log)
        .spawn()
        .unwrap();
    let mut child = common::Guard(child);
    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let mut addr = None;
    for _ in 0..300 {
        addr = lines().iter().find_map(|l| {
            l["addr"]
                .as_str()
                .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        });
        if addr.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let addr = addr.expect("serve logged its address");
    let http = client(&certs.ca_cert, Http::One);
    let body = fixture("admission/deployment-create-denied.json");
    const REQUESTS: usize = 300;
    for _ in 0..REQUESTS {
        let response = http
            .post(format!("https://localhost:{}/validate", addr.port()))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    let decisions = lines()
        .iter()
        .filter(|l| l["message"] == "admission decision" && l["decision"] == "deny")
        .count();
    assert_eq!(
        decisions,
        REQUESTS,
        "{}",
        std::fs::read_to_string(&log_path).unwrap()
    );
}

/// `applyguard audit` without a cluster to reach: exit 2 and a message saying what is missing,
/// never an empty report that passes.
#[test]
fn audit_without_a_cluster_says_so_and_exits_2() {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["audit"])
        .env("KUBECONFIG", home.path().join("no-such-kubeconfig"))
        .env("HOME", home.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("applyguard audit: no Kubernetes API configuration"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

/// The background audit lists the cluster: with manifests for cluster state there is nothing
/// to audit, and start-up says so rather than running without it.
#[test]
fn the_background_audit_needs_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "serve",
            "--dev",
            "--metrics-listen",
            "off",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--inventory")
        .arg(format!("{}/examples/inventory", env!("CARGO_MANIFEST_DIR")))
        .args(["--audit-interval", "60"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "--audit-interval audits the cluster's objects and needs the cluster inventory"
        ),
        "{stderr}"
    );
}

/// The deletion guard offline: `review --inventory` with manifests of the workloads builds the
/// same references index as the cluster's watches. A Secret DELETE and an UPDATE that drops a
/// key are allowed with a warning per reader and field (warn even under `mode: enforce`), and
/// refused only when the rule itself is set to enforce.
#[test]
fn review_warns_when_a_delete_breaks_readers_from_the_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let run = |fixture: &str, policy: &str| {
        let config = dir.path().join("policy.yaml");
        std::fs::write(&config, policy).unwrap();
        let readers = format!(
            "{}/tests/fixtures/inventory-readers",
            env!("CARGO_MANIFEST_DIR")
        );
        let output = Command::new(BIN)
            .arg("review")
            .arg("--config")
            .arg(&config)
            .args(["--inventory", &inventory_dir(), "--inventory", &readers])
            .arg(fixture_path(fixture))
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()["response"].clone()
    };
    let deleted = run("secret-delete-in-use", "mode: enforce\n");
    assert_eq!(deleted["allowed"], true, "{deleted}");
    let warnings: Vec<&str> = deleted["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(
        warnings,
        [
            "secret-in-use metadata.name: Deployment shop/checkout reads key \"password\" of secret \"db-credentials\" in spec.template.spec.containers[0].env[0]; new pods will not start. Fix: stop reading it there, or mark it optional: true, and roll that out first",
            "secret-in-use metadata.name: CronJob shop/nightly-report reads secret \"db-credentials\" in spec.jobTemplate.spec.template.spec.containers[0].envFrom[0]; new pods will not start. Fix: stop reading it there, or mark it optional: true, and roll that out first",
        ]
    );
    // No value of the Secret in the answer (the DELETE carried them in oldObject).
    let text = deleted.to_string();
    for value in ["czNjcjN0LXZhbHVl", "s3cr3t-value", "c2hvcA=="] {
        assert!(!text.contains(value), "{text}");
    }
    // A key less: only the reader of that key; the CronJob reads the whole Secret and is fine.
    let updated = run("secret-update-removes-key", "mode: enforce\n");
    assert_eq!(updated["allowed"], true, "{updated}");
    let warnings = updated["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].as_str().unwrap().starts_with(
            "secret-in-use data.password: Deployment shop/checkout reads key \"password\""
        ),
        "{warnings:?}"
    );
    // Enforced by its own mode: the delete is refused, naming both readers.
    let refused = run(
        "secret-delete-in-use",
        "rules:\n  secret-in-use: { mode: enforce }\n",
    );
    assert_eq!(refused["allowed"], false, "{refused}");
    let message = refused["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("[secret-in-use] metadata.name: Deployment shop/checkout")
            && message.contains("CronJob shop/nightly-report"),
        "{message}"
    );
    // Off: nothing to say.
    let off = run(
        "secret-delete-in-use",
        "rules:\n  secret-in-use: { mode: off }\n",
    );
    assert_eq!(off["allowed"], true);
    assert!(off.get("warnings").is_none(), "{off}");
}
