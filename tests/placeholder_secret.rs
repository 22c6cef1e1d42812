//! Rule placeholder-secret: placeholder values in stringData and (decoded) data are denied with
//! the Secret and key named, real values pass, and no value reaches a response, a log line or a
//! metric, even at debug level.

mod common;

use std::io::{BufReader, Read};
use std::time::Duration;

use applyguard::admission;
use applyguard::engine::{Engine, Request};
use applyguard::policy::Policy;
use base64::Engine as _;
use kube::core::admission::Operation;
use serde_json::{Value, json};

fn b64(value: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(value)
}

fn secret(data: Value, string_data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "feast-offline-store", "namespace": "ml"},
        "data": data, "stringData": string_data})
}

fn violations(object: &Value) -> Vec<(String, String, String)> {
    let engine = Engine::new(Policy::default()).unwrap();
    let d = engine
        .decide(&Request {
            group: "",
            kind: "Secret",
            operation: &Operation::Create,
            namespace: "ml",
            name: "feast-offline-store",
            object: Some(object),
            old_object: None,
            sub_resource: None,
        })
        .unwrap();
    d.denied_by
        .iter()
        .map(|v| {
            assert_eq!(v.rule.as_str(), "placeholder-secret");
            (v.path.clone(), v.value.clone(), v.message.clone())
        })
        .collect()
}

#[test]
fn placeholders_in_string_data_and_data() {
    let got = violations(&secret(
        json!({"password": b64("CHANGE_ME"), "tls.key": b64("<your-private-key>"),
               "username": b64("feast"), "binary": "AAEC/w=="}),
        json!({"api-key": "${API_KEY}", "url": "postgres://feast@db:5432/feast", "token": "xxxxxx"}),
    ));
    let summary: Vec<(&str, &str)> = got
        .iter()
        .map(|(p, v, _)| (p.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("stringData.api-key", "api-key"),
            ("stringData.token", "token"),
            ("data.password", "password"),
            ("data[\"tls.key\"]", "tls.key"),
        ]
    );
    assert!(
        got[0].2.contains(
            "secret \"feast-offline-store\" key \"api-key\" holds an unexpanded variable"
        ),
        "{}",
        got[0].2
    );
    assert!(got[2].2.contains("(base64-decoded)"), "{}", got[2].2);
    for (_, _, message) in &got {
        for value in ["CHANGE_ME", "your-private-key", "API_KEY", "xxxxxx"] {
            assert!(!message.contains(value), "{value} in {message}");
        }
    }
}

#[test]
fn real_values_pass() {
    assert!(violations(&secret(
        json!({"password": b64("s3cr3t-Tr0ub4dor"), "todo-list": b64("todo-app-token-3f9a1c"),
               "note": b64("changeme.example.com")}),
        json!({"config": "retries: 3\nhost: kafka:9093\n", "dsn": "postgres://app:${PGPASSWORD}@db/app"}),
    ))
    .is_empty());
    // Invalid base64 or binary data is not examined, and not an error.
    assert!(
        violations(&secret(
            json!({"blob": "not base64!", "bin": b64("\u{0}\u{1}")}),
            json!({})
        ))
        .is_empty()
    );
}

fn review(object: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "secret-1", "kind": {"group": "", "version": "v1", "kind": "Secret"},
            "resource": {"group": "", "version": "v1", "resource": "secrets"},
            "name": "feast-offline-store", "namespace": "ml", "operation": "CREATE",
            "userInfo": {"username": "dev"}, "object": object}
    }))
    .unwrap()
}

/// Values the tests send: none may come back or be logged.
const SENT: [&str; 3] = ["CHANGE_ME", "Q0hBTkdFX01F", "hunter2-real-value"];

fn placeholder_review() -> Vec<u8> {
    let mut object = secret(
        json!({"password": b64("CHANGE_ME"), "real": b64("hunter2-real-value")}),
        json!({}),
    );
    // kubectl apply keeps a plaintext copy in this annotation.
    object["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration":
            "{\"data\":{\"password\":\"Q0hBTkdFX01F\",\"real\":\"hunter2-real-value\"}}"});
    review(&object)
}

#[test]
fn the_response_names_the_key_never_the_value() {
    let engine = Engine::new(Policy::default()).unwrap();
    let reply = admission::respond(&engine, &placeholder_review()).unwrap();
    let body = String::from_utf8(reply.body.clone()).unwrap();
    assert!(body.contains("\"allowed\":false"), "{body}");
    assert!(body.contains("data.password"), "{body}");
    for value in SENT {
        assert!(!body.contains(value), "{value} in {body}");
    }
    let summary = format!("{:?}", reply.summary);
    for value in SENT {
        assert!(!summary.contains(value), "{value} in {summary}");
    }
}

#[tokio::test]
async fn serve_logs_and_metrics_hold_no_value() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_applyguard"))
        .current_dir(dir.path())
        .args([
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--inventory",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/inventory"),
        ])
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let guard = common::Guard(child);
    let (mut addr, mut metrics_addr) = (None::<String>, None::<String>);
    for _ in 0..300 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                addr = addr.or(v["addr"].as_str().map(str::to_string));
                metrics_addr = metrics_addr.or(v["metrics_addr"].as_str().map(str::to_string));
            }
        }
        if addr.is_some() && metrics_addr.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let port = addr
        .expect("serve logged no address")
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let metrics_addr = metrics_addr.expect("serve logged no metrics address");
    let body = common::post_text(
        &common::client(&dir.path().join("certs-dev/ca.crt"), common::Http::One),
        format!("https://localhost:{port}/validate"),
        placeholder_review(),
    )
    .await;
    let metrics = common::plain_client()
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    drop(guard);
    assert!(body.contains("placeholder-secret"), "{body}");
    let mut logged = String::new();
    BufReader::new(std::fs::File::open(&log).unwrap())
        .read_to_string(&mut logged)
        .unwrap();
    assert!(
        logged.lines().any(|l| l.contains("placeholder-secret")),
        "the decision was not logged: {logged}"
    );
    assert!(
        metrics.contains("placeholder-secret"),
        "no per-rule metric: {metrics}"
    );
    for value in SENT {
        assert!(!logged.contains(value), "{value} logged: {logged}");
        assert!(!metrics.contains(value), "{value} in metrics");
    }
}
