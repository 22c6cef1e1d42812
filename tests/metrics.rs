//! Operations: Prometheus metrics incremented by real requests, alert rules that only use
//! emitted metrics, certificate rotation under load, and policy reload good and bad.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use applyguard::certs::{CertRequest, generate};
use applyguard::server::Limits;
use common::{Http, client, client_tls, fixture, start};

fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_real_requests_with_bounded_labels() {
    let server = start(
        Some("rules:\n  root-container: {mode: warn}\n"),
        Limits::default(),
    )
    .await;
    let c = client(&server.certs.ca_cert, Http::Two);
    for name in [
        "deployment-create-denied",
        "pod-create-allowed",
        "pod-create-allowed",
    ] {
        c.post(server.url("/validate"))
            .body(fixture(&format!("admission/{name}.json")))
            .send()
            .await
            .unwrap();
    }
    let m = common::scrape_metrics(&server).await;
    assert_eq!(
        value(
            &m,
            "applyguard_admission_requests_total{kind=\"Deployment\",operation=\"CREATE\",decision=\"deny\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        value(
            &m,
            "applyguard_admission_requests_total{kind=\"Pod\",operation=\"CREATE\",decision=\"allow\"}"
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        value(
            &m,
            "applyguard_violations_total{rule=\"placeholder-image\",mode=\"enforce\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        value(
            &m,
            "applyguard_violations_total{rule=\"root-container\",mode=\"warn\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        value(&m, "applyguard_admission_duration_seconds_count"),
        3.0,
        "{m}"
    );
    assert_eq!(value(&m, "applyguard_inventory_ready"), 1.0, "{m}");
    assert!(
        value(&m, "applyguard_tls_certificate_expiry_timestamp_seconds") > 1.7e9,
        "{m}"
    );
    // No object name or namespace ever becomes a label value.
    for forbidden in ["checkout", "shop", "web-0"] {
        assert!(
            !m.contains(&format!("\"{forbidden}\"")),
            "{forbidden} in {m}"
        );
    }
    // Health and readiness are on the operations port too.
    let health = common::plain_client()
        .get(format!("http://{}/readyz", server.metrics_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    server.stop().await;
}

#[tokio::test]
async fn alert_rules_use_only_emitted_metrics() {
    let server = start(None, Limits::default()).await;
    // Real traffic first: series appear once something happened (a denial, an invalid object).
    let c = client(&server.certs.ca_cert, Http::One);
    let mut invalid: serde_json::Value =
        serde_json::from_slice(&fixture("admission/pod-create-allowed.json")).unwrap();
    invalid["request"]["object"]["spec"]["containers"][0]["name"] = serde_json::json!(7);
    for body in [
        fixture("admission/deployment-create-denied.json"),
        serde_json::to_vec(&invalid).unwrap(),
    ] {
        c.post(server.url("/validate"))
            .body(body)
            .send()
            .await
            .unwrap();
    }
    let m = common::scrape_metrics(&server).await;
    let emitted: BTreeSet<String> = m
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    let rules = std::fs::read_to_string(format!(
        "{}/deploy/monitoring/prometheusrule.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut used = BTreeSet::new();
    for (i, _) in rules.match_indices("applyguard_") {
        let name: String = rules[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        used.insert(name);
    }
    assert!(used.len() >= 5, "{used:?}");
    for name in &used {
        assert!(
            emitted.contains(name),
            "alert rules use {name}, which /metrics does not emit; emitted: {emitted:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn certificate_rotation_under_load_fails_no_request() {
    let server = start(None, Limits::default()).await;
    let ca = server.certs.ca_cert.clone();
    let url = server.url("/validate");
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for i in 0..4 {
        let (ca, url, stop, failures, done) = (
            ca.clone(),
            url.clone(),
            stop.clone(),
            failures.clone(),
            done.clone(),
        );
        clients.push(tokio::spawn(async move {
            // Fresh connections too, so the new certificate is negotiated mid-run.
            while !stop.load(Ordering::SeqCst) {
                let c = client(&ca, if i % 2 == 0 { Http::One } else { Http::Two });
                match c
                    .post(&url)
                    .body(fixture("admission/pod-create-allowed.json"))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let serial_before = served_serial(&server).await;
    // A half-written pair (new certificate, old key) is rejected; the old pair stays.
    let fresh = tempfile::tempdir().unwrap();
    std::fs::copy(&server.certs.ca_cert, fresh.path().join("ca.crt")).unwrap();
    std::fs::copy(&server.certs.ca_key, fresh.path().join("ca.key")).unwrap();
    let next = generate(&CertRequest::with_defaults(
        fresh.path().to_path_buf(),
        vec![],
        vec![],
        false,
    ))
    .unwrap();
    std::fs::copy(&next.tls_cert, &server.certs.tls_cert).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        served_serial(&server).await,
        serial_before,
        "a mismatched pair was served"
    );
    let m = common::scrape_metrics(&server).await;
    assert!(
        value(
            &m,
            "applyguard_tls_certificate_reload_total{result=\"error\"}"
        ) >= 1.0,
        "{m}"
    );
    // The key arrives: the new pair is served.
    std::fs::copy(&next.tls_key, &server.certs.tls_key).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_serial(&server).await == serial_before {
        assert!(Instant::now() < deadline, "new certificate never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "requests failed during rotation"
    );
    assert!(done.load(Ordering::SeqCst) > 10);
    let m = common::scrape_metrics(&server).await;
    assert!(
        value(
            &m,
            "applyguard_tls_certificate_reload_total{result=\"success\"}"
        ) >= 1.0,
        "{m}"
    );
    server.stop().await;
}

/// The serial number of the certificate a new TLS connection is served.
async fn served_serial(server: &common::TestServer) -> Vec<u8> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls(
        &server.certs.ca_cert,
        &[b"http/1.1"],
    )));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
    cert.raw_serial().to_vec()
}

#[tokio::test]
async fn policy_reload_good_and_bad() {
    let server = start(Some("mode: enforce\n"), Limits::default()).await;
    let config = server.dir.path().join("config.yaml");
    let c = client(&server.certs.ca_cert, Http::One);
    let allowed = || async {
        let body = common::post_text(
            &c,
            server.url("/validate"),
            fixture("admission/deployment-create-denied.json"),
        )
        .await;
        body.contains("\"allowed\":true")
    };
    assert!(!allowed().await);
    std::fs::write(&config, "mode: warn\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !allowed().await {
        assert!(Instant::now() < deadline, "policy change not picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An invalid policy is rejected and the running one (warn) kept.
    std::fs::write(&config, "mode: warn\nrules:\n  no-such-rule: {}\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = common::scrape_metrics(&server).await;
        if value(&m, "applyguard_config_reload_total{result=\"error\"}") >= 1.0 {
            assert!(value(&m, "applyguard_config_reload_total{result=\"success\"}") >= 1.0);
            break;
        }
        assert!(Instant::now() < deadline, "invalid policy not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(allowed().await, "the running policy was lost");
    server.stop().await;
}
