//! The real HTTPS server on an ephemeral port, talked to over real TLS with HTTP/1.1 and HTTP/2.

mod common;

use std::time::Duration;

use applyguard::server::Limits;
use common::{Http, client, client_tls, fixture, start};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn post(
    server: &common::TestServer,
    http: Http,
    body: Vec<u8>,
) -> (u16, reqwest::Version, String) {
    let response = client(&server.certs.ca_cert, http)
        .post(server.url("/validate"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let version = response.version();
    (status, version, response.text().await.unwrap())
}

fn response_of(body: &str) -> Value {
    let review: Value = serde_json::from_str(body).unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    review["response"].clone()
}

#[tokio::test]
async fn allowed_request_over_http1_and_http2() {
    let server = start(None, Limits::default()).await;
    for (http, version) in [
        (Http::One, reqwest::Version::HTTP_11),
        (Http::Two, reqwest::Version::HTTP_2),
    ] {
        let (status, got_version, body) =
            post(&server, http, fixture("admission/pod-create-allowed.json")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(got_version, version);
        let response = response_of(&body);
        assert_eq!(response["uid"], "0df28fbd-5f5f-11e8-bc74-36e6bb280816");
        assert_eq!(response["allowed"], true);
        assert!(response.get("warnings").is_none());
    }
    server.stop().await;
}

#[tokio::test]
async fn denied_deployment_lists_every_violation() {
    let server = start(None, Limits::default()).await;
    for http in [Http::One, Http::Two] {
        let (status, _, body) = post(
            &server,
            http,
            fixture("admission/deployment-create-denied.json"),
        )
        .await;
        assert_eq!(status, 200);
        let response = response_of(&body);
        assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(response["allowed"], false);
        assert_eq!(response["status"]["code"], 403);
        assert_eq!(response["status"]["reason"], "Forbidden");
        let message = response["status"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("applyguard denied Deployment shop/checkout: 2 violations"),
            "{message}"
        );
        for expected in [
            "[root-container] spec.template.spec.containers[1].securityContext.runAsNonRoot",
            "[placeholder-image] spec.template.spec.containers[1].image",
            "\"ghcr.io/your-org/checkout-worker:latest\"",
            "Fix: replace \"your-org\"",
            "Fix: set securityContext.runAsNonRoot: true",
        ] {
            assert!(
                message.contains(expected),
                "missing {expected:?} in {message}"
            );
        }
        // containers[0] is compliant and must not be mentioned.
        assert!(!message.contains("containers[0]"), "{message}");
        let audit = &response["auditAnnotations"];
        assert!(
            audit["deny-root-container"]
                .as_str()
                .unwrap()
                .contains("containers[1]")
        );
        assert!(
            audit["deny-placeholder-image"]
                .as_str()
                .unwrap()
                .contains("containers[1].image")
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn warn_mode_allows_with_warnings_and_audit_annotations() {
    let server = start(Some("mode: warn\n"), Limits::default()).await;
    let (status, _, body) = post(
        &server,
        Http::Two,
        fixture("admission/deployment-create-denied.json"),
    )
    .await;
    assert_eq!(status, 200);
    let response = response_of(&body);
    assert_eq!(response["allowed"], true);
    let warnings: Vec<&str> = response["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("placeholder-image spec.template.spec.containers[1].image: "),
        "{}",
        warnings[0]
    );
    assert!(
        // Longer than 256 runes whole: composed from the pod spec's field on.
        warnings[1].starts_with("root-container containers[1].securityContext.runAsNonRoot: "),
        "{}",
        warnings[1]
    );
    // Whole: the value and the fix survive, as in the denial.
    assert!(
        warnings[0].contains("(value: \"ghcr.io/your-org/checkout-worker:latest\")")
            && warnings[0].contains("Fix: replace"),
        "{}",
        warnings[0]
    );
    for w in &warnings {
        assert!(!w.contains('\n') && w.contains(". Fix: "), "{w}");
    }
    assert!(response["auditAnnotations"]["warn-placeholder-image"].is_string());
    server.stop().await;
}

#[tokio::test]
async fn per_rule_modes_mix_denial_and_warning() {
    let config = "mode: enforce\nrules:\n  root-container: { mode: warn }\n";
    let server = start(Some(config), Limits::default()).await;
    let (_, _, body) = post(
        &server,
        Http::One,
        fixture("admission/deployment-create-denied.json"),
    )
    .await;
    let response = response_of(&body);
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("1 violation\n1. [placeholder-image]"),
        "{message}"
    );
    let warnings = response["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].as_str().unwrap().starts_with("root-container "));
    server.stop().await;
}

#[tokio::test]
async fn scale_only_update_and_delete_are_allowed() {
    let server = start(None, Limits::default()).await;
    for name in [
        "deployment-update-scale-only",
        "pod-delete",
        "configmap-create",
    ] {
        let (status, _, body) = post(
            &server,
            Http::One,
            fixture(&format!("admission/{name}.json")),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(response_of(&body)["allowed"], true, "{name}: {body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn ephemeral_container_update_is_evaluated() {
    let server = start(None, Limits::default()).await;
    let (_, _, body) = post(
        &server,
        Http::Two,
        fixture("admission/pod-ephemeral-update-denied.json"),
    )
    .await;
    let response = response_of(&body);
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("[root-container] spec.ephemeralContainers[0].securityContext.runAsUser"),
        "{message}"
    );
    server.stop().await;
}

#[tokio::test]
async fn dry_run_is_evaluated_like_any_request() {
    let server = start(None, Limits::default()).await;
    let (_, _, body) = post(
        &server,
        Http::One,
        fixture("admission/cronjob-create-dryrun-denied.json"),
    )
    .await;
    let response = response_of(&body);
    assert_eq!(response["allowed"], false);
    assert!(
        response["status"]["message"]
            .as_str()
            .unwrap()
            .contains("spec.jobTemplate.spec.template.spec.containers[0].image")
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_400_with_a_clear_message() {
    let server = start(None, Limits::default()).await;
    let v1beta1 = String::from_utf8(fixture("admission/pod-create-allowed.json"))
        .unwrap()
        .replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not json", b"{\"apiVersion\": ".to_vec(), "request body is not valid JSON"),
        ("empty body", Vec::new(), "request body is not valid JSON"),
        ("json, not a review", b"[1, 2, 3]".to_vec(), "request body is not an AdmissionReview"),
        ("v1beta1", v1beta1.into_bytes(), "applyguard accepts only admission.k8s.io/v1"),
        ("no request", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), "AdmissionReview has no request"),
        (
            "no uid",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE","userInfo":{}}}"#.to_vec(),
            "missing field `uid`",
        ),
        (
            "numbers where strings belong",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":42}}"#.to_vec(),
            "request body is not an AdmissionReview",
        ),
    ];
    for (name, body, expected) in cases {
        for http in [Http::One, Http::Two] {
            let (status, _, text) = post(&server, http, body.clone()).await;
            assert_eq!(status, 400, "{name}: {text}");
            assert!(text.contains(expected), "{name}: {text}");
        }
    }
    // The server still serves good requests afterwards.
    let (status, _, _) = post(
        &server,
        Http::One,
        fixture("admission/pod-create-allowed.json"),
    )
    .await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn oversized_body_gets_400() {
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        ..Limits::default()
    };
    let server = start(None, limits).await;
    let huge = vec![b' '; 64 * 1024 + 1];
    for http in [Http::One, Http::Two] {
        let (status, _, text) = post(&server, http, huge.clone()).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("exceeds the 65536-byte limit"), "{text}");
    }
    // Without a Content-Length (chunked), the limit still holds.
    let stream = futures_stream(vec![vec![b' '; 40 * 1024], vec![b' '; 40 * 1024]]);
    let response = client(&server.certs.ca_cert, Http::One)
        .post(server.url("/validate"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("exceeds the 65536-byte limit")
    );
    server.stop().await;
}

#[tokio::test]
async fn default_limit_is_8_mib() {
    let server = start(None, Limits::default()).await;
    let huge = vec![b' '; 8 * 1024 * 1024 + 1];
    let (status, _, text) = post(&server, Http::Two, huge).await;
    assert_eq!(status, 400);
    assert!(text.contains("exceeds the 8388608-byte limit"), "{text}");
    server.stop().await;
}

fn futures_stream(
    chunks: Vec<Vec<u8>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::iter(chunks.into_iter().map(Ok))
}

#[tokio::test]
async fn silent_clients_are_timed_out_while_others_are_served() {
    let limits = Limits {
        handshake_timeout: Duration::from_millis(500),
        header_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let server = start(None, limits).await;
    // 1: a TCP connection that never starts TLS.
    let mut silent_tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // 2: a TLS connection that never sends a request.
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_tls(
        &server.certs.ca_cert,
        &[b"http/1.1"],
    )));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut silent_tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    // Meanwhile others are answered.
    let (status, _, _) = post(
        &server,
        Http::One,
        fixture("admission/pod-create-allowed.json"),
    )
    .await;
    assert_eq!(status, 200);
    // Both silent connections are closed by the server within a bounded time.
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), silent_tcp.read(&mut buf))
        .await
        .expect("TCP idler not closed");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let n = tokio::time::timeout(Duration::from_secs(5), silent_tls.read(&mut buf))
        .await
        .expect("TLS idler not closed");
    // hyper answers a header timeout with 408 or just closes; either way the connection ends.
    if let Ok(read) = n
        && read > 0
    {
        let text = String::from_utf8_lossy(&buf[..read]).to_string();
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    }
    let (status, _, _) = post(
        &server,
        Http::Two,
        fixture("admission/pod-create-allowed.json"),
    )
    .await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let server = start(None, Limits::default()).await;
    for http in [Http::One, Http::Two] {
        let c = client(&server.certs.ca_cert, http);
        let health = c.get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status().as_u16(), 200);
        let ready = c.get(server.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status().as_u16(), 200);
        let wrong_method = c.get(server.url("/validate")).send().await.unwrap();
        assert_eq!(wrong_method.status().as_u16(), 405);
    }
    server.stop().await;
}

#[tokio::test]
async fn tls_below_1_2_is_refused() {
    let server = start(None, Limits::default()).await;
    // A ClientHello that offers only TLS 1.0 (record version 0x0301, client_version 0x0301).
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x00, 0x2d, 0x01, 0x00, 0x00, 0x29, 0x03, 0x01,
    ];
    hello.extend_from_slice(&[0u8; 32]); // random
    hello.extend_from_slice(&[0x00, 0x00, 0x02, 0x00, 0x2f, 0x01, 0x00]); // no session id, one suite, null compression
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&hello).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    // Either an alert record (0x15) or a closed connection: never a ServerHello (0x16).
    assert!(n == 0 || buf[0] == 0x15, "got {:?}", &buf[..n]);
    server.stop().await;
}

#[tokio::test]
async fn tls_1_2_and_1_3_clients_are_served() {
    let server = start(None, Limits::default()).await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut roots = rustls::RootCertStore::empty();
        for cert in
            <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_file_iter(
                &server.certs.ca_cert,
            )
            .unwrap()
        {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut tls = connector
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
        tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        tls.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
    server.stop().await;
}

#[tokio::test]
async fn plaintext_kafka_statefulset_and_strimzi_are_denied() {
    let server = start(None, Limits::default()).await;
    let (_, _, body) = post(
        &server,
        Http::Two,
        fixture("admission/statefulset-kafka-plaintext-denied.json"),
    )
    .await;
    let response = response_of(&body);
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("applyguard denied StatefulSet stream/kafka: 2 violations"),
        "{message}"
    );
    assert!(message.contains("[plaintext-kafka] spec.template.spec.containers[0].env[5].value: container \"kafka\": ALLOW_PLAINTEXT_LISTENER=yes"), "{message}");
    assert!(
        message.contains("\"CONTROLLER://:9093\" (PLAINTEXT) are unencrypted on the network"),
        "{message}"
    );
    let (_, _, body) = post(
        &server,
        Http::One,
        fixture("admission/kafka-strimzi-plain-listener-denied.json"),
    )
    .await;
    let response = response_of(&body);
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "[plaintext-kafka] spec.kafka.listeners[0].tls: Strimzi listener \"plain\" on port 9092"
        ),
        "{message}"
    );
    server.stop().await;
}

/// Opens an HTTP/2 connection (preface + empty SETTINGS) and then stays silent.
async fn idle_h2_connection(
    server: &common::TestServer,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_tls(
        &server.certs.ca_cert,
        &[b"h2"],
    )));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tls.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    tls.flush().await.unwrap();
    tls
}

/// Reads until the server closes the connection; true if it did within `within`.
async fn closed_within(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    within: Duration,
) -> bool {
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let limits = Limits {
        idle_timeout: Duration::from_millis(400),
        ..Limits::default()
    };
    let server = start(None, limits).await;
    let mut idle = idle_h2_connection(&server).await;
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)).await,
        "idle HTTP/2 connection kept open"
    );
    server.stop().await;
    // With a long idle timeout the same connection stays open.
    let server = start(None, Limits::default()).await;
    let mut idle = idle_h2_connection(&server).await;
    assert!(
        !closed_within(&mut idle, Duration::from_millis(1500)).await,
        "closed before the idle timeout"
    );
    server.stop().await;
}
