//! Hostile input against the real HTTPS server: deep nesting, huge objects, control characters,
//! wrong types, duplicate keys, mixed versions, HTTP/2 floods and resets, TLS garbage and slow
//! clients. Each case must get a bounded, clear answer while a concurrent healthy client keeps
//! being served, and the process's memory must stay bounded.
//!
//! The tests take a file-wide lock: they share one process, so memory readings (VmRSS, VmHWM)
//! are only meaningful when one case runs at a time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use applyguard::server::Limits;
use common::{Http, TestServer, client, client_tls, fixture, start};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One hostile case at a time (see the module comment).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// kube-apiserver's default webhook timeout is 10 s; a healthy request must be answered well
/// within it whatever else the server is going through.
const HEALTHY_BOUND: Duration = Duration::from_secs(5);
/// Any single hostile request gets its answer within this.
const HOSTILE_BOUND: Duration = Duration::from_secs(30);
/// Memory a case may add to the process, at its peak.
const PEAK_GROWTH_LIMIT_KIB: u64 = 512 * 1024;
/// Memory a case may leave behind once answered (the allocator keeps freed pages for reuse, so
/// this is a bound on retention, not a leak check).
const RESIDUAL_GROWTH_LIMIT_KIB: u64 = 256 * 1024;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A client that keeps sending a valid AdmissionReview over fresh connections (alternating
/// HTTP/1.1 and HTTP/2) until told to stop, recording how each request went.
struct Healthy {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(Duration, Result<(), String>)>>,
}

fn healthy(server: &TestServer) -> Healthy {
    let ca = server.certs.ca_cert.clone();
    let url = server.url("/validate");
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        let mut results = Vec::new();
        let mut i = 0usize;
        while !stopped.load(Ordering::SeqCst) || results.is_empty() {
            let http = if i % 2 == 0 { Http::One } else { Http::Two };
            i += 1;
            let started = Instant::now();
            let result = tokio::time::timeout(HEALTHY_BOUND, healthy_request(&ca, &url, http))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {HEALTHY_BOUND:?}")));
            results.push((started.elapsed(), result));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        results
    });
    Healthy { stop, task }
}

async fn healthy_request(ca: &std::path::Path, url: &str, http: Http) -> Result<(), String> {
    let response = client(ca, http)
        .post(url)
        .header("content-type", "application/json")
        .body(fixture("admission/pod-create-allowed.json"))
        .send()
        .await
        .map_err(|e| format!("{http:?}: {e:?}"))?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|e| format!("{e:?}"))?;
    let review: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    if status != 200 || review["response"]["allowed"] != true {
        return Err(format!("{http:?}: {status} {text}"));
    }
    Ok(())
}

impl Healthy {
    /// Stops the client and asserts that every one of its requests succeeded within the bound.
    async fn check(self, case: &str) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let results = self.task.await.expect("healthy client panicked");
        let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
        assert!(
            failed.is_empty(),
            "{case}: {} of {} healthy requests failed: {failed:?}",
            failed.len(),
            results.len()
        );
        let slowest = results.iter().map(|(d, _)| *d).max().unwrap_or_default();
        assert!(slowest <= HEALTHY_BOUND, "{case}: slowest {slowest:?}");
        results.len()
    }
}

/// A field of /proc/self/status in KiB (VmRSS, VmHWM).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Memory before a case: resets the peak (VmHWM) to the current RSS where the kernel allows.
struct Memory {
    rss_before: u64,
}

impl Memory {
    fn start() -> Memory {
        // "5" resets the peak resident set size (Linux >= 4.0); without it VmHWM is the
        // process's lifetime peak, which only makes the check below more conservative.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        Memory {
            rss_before: status_kib("VmRSS"),
        }
    }

    /// Asserts the peak and the residual growth stayed within the limits; returns both in KiB.
    fn check(&self, case: &str) -> (u64, u64) {
        let peak = status_kib("VmHWM").saturating_sub(self.rss_before);
        let residual = status_kib("VmRSS").saturating_sub(self.rss_before);
        eprintln!("{case}: peak growth {peak} KiB, residual growth {residual} KiB");
        assert!(
            peak <= PEAK_GROWTH_LIMIT_KIB,
            "{case}: peak memory grew by {peak} KiB (limit {PEAK_GROWTH_LIMIT_KIB} KiB)"
        );
        assert!(
            residual <= RESIDUAL_GROWTH_LIMIT_KIB,
            "{case}: memory grew by {residual} KiB after the answer (limit {RESIDUAL_GROWTH_LIMIT_KIB} KiB)"
        );
        (peak, residual)
    }
}

async fn post(server: &TestServer, http: Http, body: Vec<u8>) -> (u16, String) {
    let request = client(&server.certs.ca_cert, http)
        .post(server.url("/validate"))
        .header("content-type", "application/json")
        .body(body)
        .send();
    let response = tokio::time::timeout(HOSTILE_BOUND, request)
        .await
        .expect("hostile request not answered in time")
        .expect("hostile request failed");
    let status = response.status().as_u16();
    let text = tokio::time::timeout(HOSTILE_BOUND, response.text())
        .await
        .expect("hostile response body not sent in time")
        .expect("hostile response body");
    (status, text)
}

/// The `response` of an AdmissionReview answer, after checking the envelope.
fn response_of(text: &str) -> Value {
    let review: Value = serde_json::from_str(text).expect("answer is not JSON");
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{text:.300}");
    assert_eq!(review["kind"], "AdmissionReview");
    review["response"].clone()
}

fn review(group: &str, kind: &str, uid: &str, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": "things"},
            "name": object["metadata"]["name"].clone(),
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "mallory"},
            "object": object,
        }
    })
}

fn deployment(name: &str, pod_spec: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"template": {"spec": pod_spec}},
    })
}

fn safe_context() -> Value {
    json!({"runAsNonRoot": true, "runAsUser": 10001})
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialisable")
}

/// Control characters other than the newlines that separate a denial's violations.
fn control_chars(text: &str, allow_newline: bool) -> Vec<char> {
    text.chars()
        .filter(|c| c.is_control() && !(allow_newline && *c == '\n'))
        .collect()
}

/// Checks every human-readable string of a response: warnings have no control characters at
/// all, the denial message and audit annotations none but newlines in the message.
fn assert_printable(case: &str, response: &Value) {
    let mut runes = 0;
    for w in response["warnings"].as_array().into_iter().flatten() {
        let w = w.as_str().expect("warning is a string");
        assert!(control_chars(w, false).is_empty(), "{case}: warning {w:?}");
        runes += w.chars().count();
    }
    // Inside kube-apiserver's budget, so it never cuts them itself.
    assert!(
        runes <= applyguard::admission::WARNINGS_TOTAL_BUDGET,
        "{case}: warnings of {runes} runes"
    );
    if let Some(message) = response["status"]["message"].as_str() {
        let found = control_chars(message, true);
        assert!(
            found.is_empty(),
            "{case}: raw control characters {found:?} in the denial message {message:?}"
        );
    }
    for (key, value) in response["auditAnnotations"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let value = value.as_str().expect("annotation is a string");
        assert!(
            control_chars(value, false).is_empty(),
            "{case}: annotation {key}: {value:?}"
        );
    }
}

async fn tls_connect(
    server: &TestServer,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(client_tls(&server.certs.ca_cert, alpn)));
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    connector
        .connect("localhost".try_into().expect("server name"), tcp)
        .await
        .expect("TLS handshake")
}

/// Reads until the peer closes (EOF or error) or `bound` passes; returns what was read and
/// whether the peer closed.
async fn read_until_closed<R: AsyncReadExt + Unpin>(
    reader: &mut R,
    bound: Duration,
) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + bound;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), so a failure can be replayed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/2, for what a well-behaved client library will not send.

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADERS: u8 = 0x1;
const FRAME_RST_STREAM: u8 = 0x3;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FRAME_GOAWAY: u8 = 0x7;
const FRAME_WINDOW_UPDATE: u8 = 0x8;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small frame");
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK for `POST https://localhost/validate`: indexed `:method POST` and `:scheme https`,
/// then literals (without indexing, no Huffman) with indexed names for `:path`, `:authority`.
fn h2_request_headers() -> Vec<u8> {
    let mut block = vec![0x83, 0x87];
    for (index, value) in [(4u8, "/validate"), (1u8, "localhost")] {
        block.push(index);
        block.push(u8::try_from(value.len()).expect("short value"));
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// What the server sent on a raw HTTP/2 connection.
#[derive(Debug, Default)]
struct H2Seen {
    /// Streams the server answered with HEADERS.
    answered: std::collections::BTreeSet<u32>,
    /// Streams the server reset, with the error code.
    reset: std::collections::BTreeMap<u32, u32>,
    /// GOAWAY error codes.
    goaway: Vec<u32>,
    closed: bool,
}

type H2Writer =
    Arc<tokio::sync::Mutex<tokio::io::WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>>>;

/// Opens a raw HTTP/2 connection; a background task answers SETTINGS and PING as a client must
/// and records the server's frames until the connection closes or `bound` passes.
async fn raw_h2(
    server: &TestServer,
    bound: Duration,
) -> (H2Writer, tokio::task::JoinHandle<H2Seen>) {
    let tls = tls_connect(server, &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut reader, mut writer) = tokio::io::split(tls);
    writer.write_all(H2_PREFACE).await.expect("preface");
    writer
        .write_all(&frame(FRAME_SETTINGS, 0, 0, &[]))
        .await
        .expect("settings");
    writer
        .write_all(&frame(
            FRAME_WINDOW_UPDATE,
            0,
            0,
            &(1u32 << 30).to_be_bytes(),
        ))
        .await
        .expect("window update");
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    let replies = writer.clone();
    let task = tokio::spawn(async move {
        let mut seen = H2Seen::default();
        let mut buf = Vec::new();
        let deadline = tokio::time::Instant::now() + bound;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            // Parse every complete frame in the buffer.
            while buf.len() >= 9 {
                let len =
                    usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
                if buf.len() < 9 + len {
                    break;
                }
                let (kind, flags) = (buf[3], buf[4]);
                let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
                let payload = buf[9..9 + len].to_vec();
                buf.drain(..9 + len);
                let code = |p: &[u8], at: usize| {
                    p.get(at..at + 4)
                        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                };
                match kind {
                    FRAME_HEADERS => {
                        seen.answered.insert(stream);
                    }
                    FRAME_RST_STREAM => {
                        seen.reset.insert(stream, code(&payload, 0));
                    }
                    FRAME_GOAWAY => seen.goaway.push(code(&payload, 4)),
                    FRAME_SETTINGS if flags & FLAG_ACK == 0 => {
                        let _ = replies
                            .lock()
                            .await
                            .write_all(&frame(FRAME_SETTINGS, FLAG_ACK, 0, &[]))
                            .await;
                    }
                    FRAME_PING if flags & FLAG_ACK == 0 => {
                        let _ = replies
                            .lock()
                            .await
                            .write_all(&frame(FRAME_PING, FLAG_ACK, 0, &payload))
                            .await;
                    }
                    _ => {}
                }
            }
            match tokio::time::timeout_at(deadline, reader.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    seen.closed = true;
                    return seen;
                }
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => return seen,
            }
        }
    });
    (writer, task)
}

// ---------------------------------------------------------------------------------------------
// Payloads

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deeply_nested_json_is_refused_without_recursing() {
    let _serial = SERIAL.lock().await;
    let server = start(None, Limits::default()).await;
    let memory = Memory::start();
    let healthy = healthy(&server);
    let depth = 100_000;
    let object_prefix = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"deep","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE","userInfo":{},"object":{"metadata":{"name":"deep"},"spec":{"containers":"#;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("100k [", "[".repeat(depth).into_bytes()),
        ("100k [ closed", format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
        ("100k {\"a\":", "{\"a\":".repeat(depth).into_bytes()),
        (
            "100k [ inside a pod spec",
            format!("{object_prefix}{}{}}}}}}}}}", "[".repeat(depth), "]".repeat(depth)).into_bytes(),
        ),
        (
            "100k { inside a ConfigMap's data",
            format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"deep","kind":{{"group":"","version":"v1","kind":"ConfigMap"}},"resource":{{"group":"","version":"v1","resource":"configmaps"}},"operation":"CREATE","userInfo":{{}},"object":{{"metadata":{{"name":"deep"}},"data":{}{}}}}}}}"#,
                "{\"a\":".repeat(depth),
                "1".to_string() + &"}".repeat(depth)
            )
            .into_bytes(),
        ),
    ];
    for (name, body) in cases {
        for http in [Http::One, Http::Two] {
            let started = Instant::now();
            let (status, text) = post(&server, http, body.clone()).await;
            assert_eq!(status, 400, "{name} ({http:?}): {text:.300}");
            eprintln!("{name} ({http:?}): {}", text.trim_end());
            assert!(
                text.starts_with("request body is not valid JSON: ")
                    || text.starts_with("request body is not an AdmissionReview: "),
                "{name} ({http:?}): {text:.300}"
            );
            assert!(
                text.len() < 1024 && !text.trim_end().contains('\n'),
                "{name}: {text}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{name}: {:?}",
                started.elapsed()
            );
        }
    }
    healthy.check("deep nesting").await;
    memory.check("deep nesting");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_thousand_containers_get_one_bounded_answer() {
    let _serial = SERIAL.lock().await;
    let server = start(None, Limits::default()).await;
    let memory = Memory::start();
    let healthy = healthy(&server);
    let n = 5_000;
    // All compliant: allowed.
    let good: Vec<Value> = (0..n)
        .map(|i| json!({"name": format!("c{i}"), "image": format!("ghcr.io/acme/app-{i}:1.0"), "securityContext": safe_context()}))
        .collect();
    let body = bytes(&review(
        "apps",
        "Deployment",
        "many-good",
        deployment("many", json!({"containers": good})),
    ));
    let started = Instant::now();
    let (status, text) = post(&server, Http::Two, body).await;
    eprintln!(
        "5,000 compliant containers: {} bytes in, answered in {:?}",
        text.len(),
        started.elapsed()
    );
    assert_eq!(status, 200, "{text:.300}");
    assert_eq!(response_of(&text)["allowed"], true, "{text:.300}");

    // All broken (placeholder image, may run as root): denied, every violation listed once.
    let bad: Vec<Value> = (0..n)
        .map(|i| json!({"name": format!("c{i}"), "image": "ghcr.io/your-org/app:latest"}))
        .collect();
    let body = bytes(&review(
        "apps",
        "Deployment",
        "many-bad",
        deployment(
            "many",
            json!({"containers": bad, "initContainers": [{"name": "init", "image": "<image>", "securityContext": safe_context()}]}),
        ),
    ));
    let sent = body.len();
    let started = Instant::now();
    let (status, text) = post(&server, Http::One, body).await;
    eprintln!(
        "5,000 broken containers: {sent} bytes in, {} bytes out, answered in {:?}",
        text.len(),
        started.elapsed()
    );
    assert_eq!(status, 200, "{text:.300}");
    let response = response_of(&text);
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 403);
    let message = response["status"]["message"].as_str().expect("message");
    assert!(
        message.starts_with("applyguard denied Deployment shop/many: 10001 violations\n1. "),
        "{message:.300}"
    );
    // The first violations are listed, the rest counted: no amplified copy of the object.
    assert!(message.contains("spec.template.spec.initContainers[0].image"));
    assert!(!message.contains("spec.template.spec.containers[4999].image"));
    assert!(
        message.contains("more; run applyguard review or scan for the full list"),
        "{message:.300}"
    );
    assert!(message.len() <= 40 * 1024, "{}", message.len());
    for (key, value) in response["auditAnnotations"]
        .as_object()
        .expect("annotations")
    {
        assert!(value.as_str().expect("string").len() <= 8 * 1024, "{key}");
    }
    assert_printable("5,000 containers", &response);
    healthy.check("5,000 containers").await;
    memory.check("5,000 containers");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_env_vars_get_one_bounded_answer() {
    let _serial = SERIAL.lock().await;
    let server = start(Some("mode: warn\n"), Limits::default()).await;
    let memory = Memory::start();
    let healthy = healthy(&server);
    let n = 10_000;
    // Plain variables, one plaintext-Kafka setting at the end.
    let mut env: Vec<Value> = (0..n - 1)
        .map(|i| json!({"name": format!("VAR_{i}"), "value": format!("value-{i}")}))
        .collect();
    env.push(json!({"name": "ALLOW_PLAINTEXT_LISTENER", "value": "yes"}));
    let pod = json!({"containers": [{"name": "kafka", "image": "bitnami/kafka:3.7", "env": env, "securityContext": safe_context()}]});
    let started = Instant::now();
    let (status, text) = post(
        &server,
        Http::Two,
        bytes(&review(
            "apps",
            "Deployment",
            "env-plain",
            deployment("env", pod),
        )),
    )
    .await;
    eprintln!("10,000 env vars: answered in {:?}", started.elapsed());
    assert_eq!(status, 200, "{text:.300}");
    let response = response_of(&text);
    assert_eq!(response["allowed"], true, "warn mode");
    let warnings = response["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].as_str().expect("string").starts_with(&format!(
            "plaintext-kafka spec.template.spec.containers[0].env[{}].value: ",
            n - 1
        )),
        "{warnings:?}"
    );

    // Each variable references the previous one: `$(VAR)` expansion as the kubelet does it,
    // values growing by one character each (quadratic in total, ~50 MB of text: bounded).
    let env: Vec<Value> = (0..n)
        .map(|i| {
            let value = if i == 0 {
                "x".to_string()
            } else {
                format!("$(CHAIN_{})y", i - 1)
            };
            json!({"name": format!("CHAIN_{i}"), "value": value})
        })
        .collect();
    let pod = json!({"containers": [{"name": "app", "image": "ghcr.io/acme/app:1", "env": env, "args": ["$(CHAIN_9999)"], "securityContext": safe_context()}]});
    let started = Instant::now();
    let (status, text) = post(
        &server,
        Http::One,
        bytes(&review(
            "apps",
            "Deployment",
            "env-chain",
            deployment("chain", pod),
        )),
    )
    .await;
    eprintln!(
        "10,000 chained env vars: answered in {:?}",
        started.elapsed()
    );
    assert_eq!(status, 200, "{text:.300}");
    let response = response_of(&text);
    assert_eq!(response["allowed"], true, "{text:.300}");
    assert!(response.get("warnings").is_none(), "{text:.300}");
    healthy.check("10,000 env vars").await;
    memory.check("10,000 env vars");
    server.stop().await;
}

/// `$(VAR)` references that double at every step: a ~2 KB request whose environment expands
/// to 256 MiB. The kubelet would expand it the same way, but the webhook must not: one request
/// must not be able to make it allocate without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn env_expansion_bomb_is_bounded() {
    let _serial = SERIAL.lock().await;
    let server = start(None, Limits::default()).await;
    let memory = Memory::start();
    let healthy = healthy(&server);
    // B0 = 1 KiB; Bi = "$(B{i-1})$(B{i-1})": B18 expands to 256 MiB.
    let mut env = vec![json!({"name": "B0", "value": "x".repeat(1024)})];
    for i in 1..=18 {
        env.push(json!({"name": format!("B{i}"), "value": format!("$(B{p})$(B{p})", p = i - 1)}));
    }
    let pod = json!({"containers": [{"name": "bomb", "image": "ghcr.io/acme/app:1", "env": env, "securityContext": safe_context()}]});
    let body = bytes(&review(
        "apps",
        "Deployment",
        "bomb",
        deployment("bomb", pod),
    ));
    eprintln!("expansion bomb: {} bytes in", body.len());
    let started = Instant::now();
    let (status, text) = post(&server, Http::Two, body).await;
    let took = started.elapsed();
    eprintln!("expansion bomb: answered {status} in {took:?}");
    assert_eq!(status, 200, "{text:.300}");
    response_of(&text);
    healthy.check("expansion bomb").await;
    memory.check("expansion bomb");
    assert!(
        took < Duration::from_secs(2),
        "expansion bomb took {took:?}"
    );
    server.stop().await;
}

/// Unicode and control characters in every field a message can quote: the answer stays valid
/// JSON, warnings carry no control characters, and the denial message none but its newlines.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unicode_and_control_characters_stay_out_of_messages() {
    let _serial = SERIAL.lock().await;
    let hostile = [
        "\u{0}nul",
        "esc\u{1b}[2J\u{1b}[31mred",
        "bell\u{7}",
        "new\nline\r\nreturn",
        "tab\there",
        "del\u{7f}",
        "c1\u{85}\u{9b}31m",
        "rtl\u{202e}gpj.exe",
        "zero\u{200b}width",
        "emoji 🦀🔥",
        "é\u{301}",
        "\u{feff}bom",
        "\u{10ffff}",
    ];
    let containers: Vec<Value> = hostile
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "name": format!("c{i}{s}"),
                "image": format!("ghcr.io/your-org/{s}:latest"),
                "env": [
                    {"name": format!("KAFKA_CFG_LISTENERS{s}"), "value": s},
                    {"name": "KAFKA_CFG_LISTENERS", "value": format!("PLAINTEXT://{s}:9092")},
                    {"name": "KAFKA_CFG_SECURITY_PROTOCOL", "value": format!("{s}PLAINTEXT")},
                    {"name": format!("S{i}"), "valueFrom": {"secretKeyRef": {"name": format!("sec{s}"), "key": format!("key{s}")}}},
                ],
                "envFrom": [{"secretRef": {"name": format!("from{s}")}}],
                "args": [format!("--bootstrap-server=PLAINTEXT://{s}:9092")],
            })
        })
        .collect();
    let pod = json!({
        "containers": containers,
        "volumes": [{"name": "v", "secret": {"secretName": format!("vol{}", hostile[1]), "items": [{"key": hostile[0], "path": "p"}]}}],
        "imagePullSecrets": [{"name": format!("pull{}", hostile[6])}],
    });
    // metadata.name and namespace stay clean here: kube-apiserver only sends DNS-1123 names (see
    // denial_subject_has_no_control_characters for what happens when a client sends others).
    let object = deployment("unicode", pod);
    let configmap = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kafka", "namespace": "shop"},
        "data": {
            "server.properties": format!("listeners=PLAINTEXT://{}:9092\nsecurity.protocol=PLAINTEXT\u{7}\n", hostile[1]),
            format!("KAFKA_CFG_LISTENERS{}", hostile[2]): "PLAINTEXT://:9092",
        },
    });
    for config in ["mode: enforce\n", "mode: warn\n"] {
        let server = start(Some(config), Limits::default()).await;
        let healthy = healthy(&server);
        for (case, body) in [
            (
                "deployment",
                bytes(&review(
                    "apps",
                    "Deployment",
                    "uni\u{1b}code",
                    object.clone(),
                )),
            ),
            (
                "configmap",
                bytes(&review("", "ConfigMap", "uni\u{0}code", configmap.clone())),
            ),
        ] {
            for http in [Http::One, Http::Two] {
                let (status, text) = post(&server, http, body.clone()).await;
                assert_eq!(status, 200, "{case} {config}: {text:.300}");
                let response = response_of(&text);
                let case = format!("{case} ({config:?}, {http:?})");
                assert!(response["allowed"].is_boolean(), "{case}");
                if config.contains("enforce") {
                    assert_eq!(response["allowed"], false, "{case}: {text:.500}");
                } else {
                    assert_eq!(response["allowed"], true, "{case}: {text:.500}");
                    assert!(
                        !response["warnings"]
                            .as_array()
                            .expect("warnings")
                            .is_empty()
                    );
                }
                assert_printable(&case, &response);
            }
        }
        // Lone surrogates are not valid JSON strings: refused as such.
        let (status, text) = post(
            &server,
            Http::One,
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"\ud800"}}"#.to_vec(),
        )
        .await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("not valid JSON"), "{text}");
        // Invalid UTF-8 likewise.
        let mut body = fixture("admission/pod-create-allowed.json");
        let at = body
            .windows(9)
            .position(|w| w == b"\"image\": ")
            .expect("an image in the fixture");
        body[at + 10] = 0xff;
        let (status, text) = post(&server, Http::Two, body).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("not valid JSON"), "{text}");
        assert!(control_chars(&text, true).is_empty(), "{text:?}");
        healthy.check("unicode").await;
        server.stop().await;
    }
}

/// The first line of a denial names the object (`Deployment namespace/name`) from the request
/// as sent. kube-apiserver only sends DNS-1123 names, but a client that reaches the Service
/// directly gets its control characters back verbatim in `status.message`, and the log line
/// carries them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn denial_subject_has_no_control_characters() {
    let _serial = SERIAL.lock().await;
    let server = start(None, Limits::default()).await;
    let mut object = deployment(
        "x",
        json!({"containers": [{"name": "a", "image": "<image>", "securityContext": safe_context()}]}),
    );
    object["metadata"]["name"] = json!("name\u{1b}[2J\u{1b}[31mred");
    object["metadata"]["namespace"] = json!("ns\r\nforged line");
    let (status, text) = post(
        &server,
        Http::One,
        bytes(&review("apps", "Deployment", "subject", object)),
    )
    .await;
    assert_eq!(status, 200, "{text:.300}");
    let response = response_of(&text);
    assert_eq!(response["allowed"], false);
    assert_printable("denial subject", &response);
    server.stop().await;
}

/// 5,000 broken containers (270 KB in) give a 2.8 MB denial message: every violation is listed,
/// with no cap. kube-apiserver passes the message to the client and the audit log as is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn denial_message_is_capped() {
    let _serial = SERIAL.lock().await;
    let server = start(None, Limits::default()).await;
    let bad: Vec<Value> = (0..5_000)
        .map(|i| json!({"name": format!("c{i}"), "image": "ghcr.io/your-org/app:latest"}))
        .collect();
    let body = bytes(&review(
        "apps",
        "Deployment",
        "cap",
        deployment("many", json!({"containers": bad})),
    ));
    let (status, text) = post(&server, Http::Two, body).await;
    assert_eq!(status, 200, "{text:.300}");
    let response = response_of(&text);
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().expect("message");
    assert!(
        message.len() <= 64 * 1024,
        "denial message of {} bytes for 10,000 violations",
        message.len()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn numbers_where_strings_belong_get_a_clear_refusal() {
    let _serial = SERIAL.lock().await;
    let server = start(None, Limits::default()).await;
    let healthy = healthy(&server);
    let base =
        json!({"name": "app", "image": "ghcr.io/acme/app:1", "securityContext": safe_context()});
    let mutations: Vec<(&str, &[&str], Value)> = vec![
        ("image: 42", &["image"], json!(42)),
        ("name: 1.5", &["name"], json!(1.5)),
        ("image: [..]", &["image"], json!(["a", "b"])),
        ("image: {..}", &["image"], json!({"registry": "x"})),
        (
            "env value: true",
            &["env"],
            json!([{"name": "A", "value": true}]),
        ),
        ("env: {..}", &["env"], json!({"A": "b"})),
        (
            "runAsUser: \"0\"",
            &["securityContext", "runAsUser"],
            json!("0"),
        ),
        (
            "runAsUser: 2^64",
            &["securityContext", "runAsUser"],
            json!(18_446_744_073_709_551_615u64),
        ),
        (
            "runAsUser: -1.5",
            &["securityContext", "runAsUser"],
            json!(-1.5),
        ),
        (
            "runAsNonRoot: \"true\"",
            &["securityContext", "runAsNonRoot"],
            json!("true"),
        ),
    ];
    for (case, path, value) in &mutations {
        let mut container = base.clone();
        let mut field = &mut container;
        for segment in *path {
            field = &mut field[*segment];
        }
        *field = value.clone();
        let body = bytes(&review(
            "apps",
            "Deployment",
            "types",
            deployment("types", json!({"containers": [container]})),
        ));
        let (status, text) = post(&server, Http::Two, body).await;
        assert_eq!(status, 200, "{case}: {text:.300}");
        let response = response_of(&text);
        assert_eq!(response["allowed"], false, "{case}: {text:.300}");
        assert_eq!(response["status"]["code"], 400, "{case}: {text:.300}");
        let message = response["status"]["message"].as_str().expect("message");
        assert!(
            message.starts_with("applyguard cannot read this Deployment: spec.template.spec is not a valid pod spec: "),
            "{case}: {message}"
        );
        assert!(message.len() < 1024, "{case}: {message}");
    }
    // In the envelope: HTTP 400 with the serde reason.
    for (case, body) in [
        (
            "uid: 42",
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":42}}"#,
        ),
        (
            "apiVersion: 1",
            r#"{"apiVersion":1,"kind":"AdmissionReview"}"#,
        ),
        (
            "operation: 3",
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":3,"userInfo":{}}}"#,
        ),
        (
            "dryRun: \"yes\"",
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE","userInfo":{},"dryRun":"yes"}}"#,
        ),
        (
            "request: []",
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":[]}"#,
        ),
        (
            "number 1e400",
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":1e400}}"#,
        ),
    ] {
        let (status, text) = post(&server, Http::One, body.as_bytes().to_vec()).await;
        assert_eq!(status, 400, "{case}: {text}");
        assert!(
            text.starts_with("request body is not an AdmissionReview: ")
                || text.starts_with("request body is not valid JSON: ")
                || text.starts_with("unsupported AdmissionReview"),
            "{case}: {text}"
        );
        assert_eq!(text.trim_end().lines().count(), 1, "{case}: {text}");
    }
    healthy.check("wrong types").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_keys_and_mixed_versions_are_never_ambiguous() {
    let _serial = SERIAL.lock().await;
    let server = start(None, Limits::default()).await;
    let healthy = healthy(&server);
    let head = |first: &str, second: &str| {
        format!(
            r#"{{"apiVersion":"{first}","kind":"AdmissionReview","apiVersion":"{second}","request":{{"uid":"dup","kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},"operation":"CREATE","userInfo":{{}},"object":{{"metadata":{{"name":"p"}},"spec":{{"containers":[{{"name":"a","image":"<image>"}}]}}}}}}}}"#
        )
    };
    // Both v1 and v1beta1 markers, in either order: refused, never decided by whichever wins.
    for (first, second) in [
        ("admission.k8s.io/v1beta1", "admission.k8s.io/v1"),
        ("admission.k8s.io/v1", "admission.k8s.io/v1beta1"),
        ("admission.k8s.io/v1", "admission.k8s.io/v1"),
    ] {
        let (status, text) = post(&server, Http::Two, head(first, second).into_bytes()).await;
        assert_eq!(status, 400, "{first} then {second}: {text}");
        assert!(text.contains("duplicate field `apiVersion`"), "{text}");
    }
    // Duplicate uid, kind, operation and request: refused.
    let dup_uid = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","uid":"b","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE","userInfo":{}}}"#;
    let dup_op = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"DELETE","operation":"CREATE","userInfo":{}}}"#;
    let dup_request = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"DELETE","userInfo":{}},"request":{"uid":"b"}}"#;
    for (case, body) in [
        ("uid", dup_uid),
        ("operation", dup_op),
        ("request", dup_request),
    ] {
        let (status, text) = post(&server, Http::One, body.as_bytes().to_vec()).await;
        assert_eq!(status, 400, "duplicate {case}: {text}");
        assert!(
            text.contains(&format!("duplicate field `{case}`")),
            "{text}"
        );
    }
    // A v1 review that also carries a v1beta1-style pre-filled response: the answer is decided
    // from the request, never echoed from the input.
    let mut prefilled: Value =
        serde_json::from_slice(&fixture("admission/deployment-create-denied.json"))
            .expect("fixture");
    prefilled["response"] = json!({"uid": "attacker", "allowed": true, "status": {"code": 200}});
    let (status, text) = post(&server, Http::Two, bytes(&prefilled)).await;
    assert_eq!(status, 200, "{text:.300}");
    let response = response_of(&text);
    assert_eq!(response["allowed"], false, "{text:.300}");
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    // Duplicate keys inside the object: the last one wins, as in kube-apiserver's decoder, in
    // either order, so what applyguard checks is what the cluster stores.
    let container = |first: &str, second: &str| {
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"dup-image","kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},"namespace":"shop","operation":"CREATE","userInfo":{{}},"object":{{"metadata":{{"name":"p"}},"spec":{{"containers":[{{"name":"a","image":"{first}","securityContext":{{"runAsNonRoot":true,"runAsUser":1000}},"image":"{second}"}}]}}}}}}}}"#
        )
    };
    for (first, second, allowed) in [
        ("ghcr.io/your-org/app:1", "ghcr.io/acme/app:1", true),
        ("ghcr.io/acme/app:1", "ghcr.io/your-org/app:1", false),
    ] {
        let (status, text) = post(&server, Http::One, container(first, second).into_bytes()).await;
        assert_eq!(status, 200, "{text:.300}");
        assert_eq!(
            response_of(&text)["allowed"],
            allowed,
            "image {first:?} then {second:?}: {text:.300}"
        );
    }
    healthy.check("duplicate keys").await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Connections

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http2_stream_flood_is_served_or_refused_while_others_are_served() {
    let _serial = SERIAL.lock().await;
    let server = start(None, Limits::default()).await;
    // For the raw flood: streams that never send a body are answered after this.
    let limits = Limits {
        body_read_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let raw_server = start(None, limits).await;
    let memory = Memory::start();
    let healthy = healthy(&server);
    let raw_healthy = self::healthy(&raw_server);

    // 1,000 concurrent requests multiplexed on one HTTP/2 connection (the server allows 256
    // streams at once; the client queues the rest): every one answered.
    let flood = client(&server.certs.ca_cert, Http::Two);
    let body = fixture("admission/pod-create-allowed.json");
    let started = Instant::now();
    let requests = (0..1_000).map(|_| {
        flood
            .post(server.url("/validate"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    });
    let results = tokio::time::timeout(HOSTILE_BOUND, futures_util::future::join_all(requests))
        .await
        .expect("flood not answered in time");
    let ok = results
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status() == 200))
        .count();
    eprintln!(
        "1,000 multiplexed requests: {ok} answered 200 in {:?}",
        started.elapsed()
    );
    let errors: std::collections::BTreeSet<String> = results
        .iter()
        .filter_map(|r| match r {
            Ok(r) if r.status() == 200 => None,
            Ok(r) => Some(format!("status {}", r.status())),
            Err(e) => Some(format!("{e:?}")),
        })
        .collect();
    assert_eq!(ok, 1_000, "{errors:?}");

    // Raw frames: 1,000 streams opened at once with HEADERS and no body. The server refuses
    // what exceeds its concurrent stream limit, and answers the rest once the body timeout
    // passes; the connection is never left hanging.
    let (writer, reader) = raw_h2(&raw_server, Duration::from_secs(15)).await;
    let headers = h2_request_headers();
    let mut burst = Vec::new();
    for i in 0..1_000u32 {
        burst.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 2 * i + 1, &headers));
    }
    let _ = writer.lock().await.write_all(&burst).await;
    // After the streams are answered, close the connection from our side.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let _ = writer
        .lock()
        .await
        .write_all(&frame(FRAME_GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0]))
        .await;
    let _ = writer.lock().await.shutdown().await;
    let seen = reader.await.expect("reader");
    eprintln!(
        "raw stream flood: {} answered, {} reset (codes {:?}), goaway {:?}, closed {}",
        seen.answered.len(),
        seen.reset.len(),
        seen.reset
            .values()
            .collect::<std::collections::BTreeSet<_>>(),
        seen.goaway,
        seen.closed
    );
    let handled = (0..1_000u32)
        .map(|i| 2 * i + 1)
        .filter(|id| seen.answered.contains(id) || seen.reset.contains_key(id))
        .count();
    assert!(
        handled == 1_000 || !seen.goaway.is_empty(),
        "{handled} of 1,000 flooded streams answered or reset, and no GOAWAY: {seen:?}"
    );
    healthy.check("HTTP/2 stream flood").await;
    raw_healthy.check("raw HTTP/2 stream flood").await;
    memory.check("HTTP/2 stream flood");
    server.stop().await;
    raw_server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http2_resets_do_not_hurt_the_server() {
    let _serial = SERIAL.lock().await;
    let server = start(None, Limits::default()).await;
    let memory = Memory::start();
    let healthy = healthy(&server);
    let body = fixture("admission/pod-create-allowed.json");

    // Rapid reset (CVE-2023-44487): HEADERS immediately followed by RST_STREAM, 20,000 times
    // on one connection. The server may serve them or send GOAWAY; either way it stays up.
    let (writer, reader) = raw_h2(&server, Duration::from_secs(10)).await;
    let headers = h2_request_headers();
    let started = Instant::now();
    let mut sent = 0u32;
    'send: for batch in 0..100u32 {
        let mut frames = Vec::new();
        for i in 0..200u32 {
            let stream = 2 * (batch * 200 + i) + 1;
            frames.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, stream, &headers));
            frames.extend(frame(FRAME_RST_STREAM, 0, stream, &8u32.to_be_bytes()));
        }
        if writer.lock().await.write_all(&frames).await.is_err() {
            break 'send;
        }
        sent += 200;
    }
    let _ = writer.lock().await.shutdown().await;
    let seen = reader.await.expect("reader");
    eprintln!(
        "rapid reset: {sent} HEADERS+RST_STREAM sent in {:?}; goaway {:?}; closed {}",
        started.elapsed(),
        seen.goaway,
        seen.closed
    );
    assert!(
        seen.closed,
        "the server neither finished nor closed the connection: {seen:?}"
    );

    // The same with a client library: 5 rounds of 300 requests on one connection, dropped
    // (reset) a few milliseconds after they start. The connection then still works.
    let resetter = client(&server.certs.ca_cert, Http::Two);
    for _ in 0..5 {
        let pending: Vec<_> = (0..300)
            .map(|_| {
                let request = resetter
                    .post(server.url("/validate"))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send();
                tokio::spawn(request)
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(5)).await;
        for task in &pending {
            task.abort();
        }
        for task in pending {
            let _ = task.await;
        }
    }
    // A fresh connection: the server may have sent the resetting one GOAWAY (ENHANCE_YOUR_CALM),
    // which is the point; the server itself must still answer.
    let fresh = client(&server.certs.ca_cert, Http::Two);
    let response = tokio::time::timeout(
        HEALTHY_BOUND,
        fresh
            .post(server.url("/validate"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send(),
    )
    .await
    .expect("answer after resets")
    .expect("request after resets");
    assert_eq!(response.status().as_u16(), 200);
    healthy.check("HTTP/2 resets").await;
    memory.check("HTTP/2 resets");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_and_protocol_garbage_is_cut_off() {
    let _serial = SERIAL.lock().await;
    let limits = Limits {
        handshake_timeout: Duration::from_secs(2),
        header_read_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let server = start(None, limits).await;
    let healthy = healthy(&server);
    let bound = Duration::from_secs(5);
    let mut tasks = Vec::new();
    // Random bytes straight after TCP connect, and a TLS record header announcing a huge record.
    for seed in 0..40u64 {
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.expect("connect");
            let garbage = if seed == 0 {
                let mut g = vec![0x16, 0x03, 0x01, 0xff, 0xff];
                g.extend(noise(seed, 1024));
                g
            } else {
                noise(seed, 64 * 1024)
            };
            let _ = tcp.write_all(&garbage).await;
            let (answer, closed) = read_until_closed(&mut tcp, bound).await;
            assert!(
                closed,
                "seed {seed}: connection not closed within {bound:?}"
            );
            // Nothing but (at most) a TLS alert record: never a ServerHello or HTTP.
            assert!(
                answer.is_empty() || answer[0] == 0x15,
                "seed {seed}: {:?}",
                &answer[..answer.len().min(16)]
            );
        }));
    }
    // Garbage after a good handshake, as HTTP/1.1 and as HTTP/2.
    for (seed, alpn) in [(100u64, &b"http/1.1"[..]), (101, &b"h2"[..])] {
        let mut tls = tls_connect(&server, &[alpn]).await;
        tasks.push(tokio::spawn(async move {
            let _ = tls.write_all(&noise(seed, 16 * 1024)).await;
            let (answer, closed) = read_until_closed(&mut tls, bound).await;
            assert!(
                closed,
                "{alpn:?} garbage: connection not closed within {bound:?}"
            );
            if alpn == b"http/1.1" && !answer.is_empty() {
                let text = String::from_utf8_lossy(&answer);
                assert!(text.starts_with("HTTP/1.1 400"), "{text:.200}");
            }
        }));
    }
    for task in tasks {
        task.await.expect("garbage case");
    }
    healthy.check("TLS garbage").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_byte_per_second_clients_are_cut_off() {
    let _serial = SERIAL.lock().await;
    let timeout = Duration::from_secs(1);
    let limits = Limits {
        handshake_timeout: timeout,
        header_read_timeout: timeout,
        body_read_timeout: timeout,
        ..Limits::default()
    };
    let server = start(None, limits).await;
    let healthy = healthy(&server);
    // Every slow client must be cut off within the timeout plus this slack.
    let bound = Duration::from_secs(4);
    let body = fixture("admission/pod-create-allowed.json");

    // TLS handshake, one byte per second.
    let handshake = {
        let addr = server.addr;
        let ca = server.certs.ca_cert.clone();
        async move {
            let mut conn = rustls::ClientConnection::new(
                Arc::new(client_tls(&ca, &[b"h2"])),
                "localhost".try_into().expect("name"),
            )
            .expect("client");
            let mut hello = Vec::new();
            conn.write_tls(&mut hello).expect("client hello");
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let (cut, took, answer) = trickle(tcp, hello, bound).await;
            // At most a TLS alert: never a ServerHello for a hello that never completed.
            assert!(
                answer.is_empty() || answer[0] == 0x15,
                "{:?}",
                &answer[..answer.len().min(8)]
            );
            ("TLS handshake", cut, took)
        }
    };
    // HTTP/1.1 request headers, one byte per second.
    let headers = {
        let server = &server;
        async move {
            let tls = tls_connect(server, &[b"http/1.1"]).await;
            let request = b"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
            let (cut, took, answer) = trickle(tls, request.to_vec(), bound).await;
            let answer = String::from_utf8_lossy(&answer).to_string();
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
                "slow headers: {answer:.200}"
            );
            ("HTTP/1.1 headers", cut, took)
        }
    };
    // HTTP/1.1 body, one byte per second after complete headers: 408 from the body timeout.
    let h1_body = {
        let server = &server;
        let body = body.clone();
        async move {
            let mut tls = tls_connect(server, &[b"http/1.1"]).await;
            let head = format!(
                "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            tls.write_all(head.as_bytes()).await.expect("headers");
            let (cut, took, answer) = trickle(tls, body, bound).await;
            let answer = String::from_utf8_lossy(&answer).to_string();
            assert!(
                answer.starts_with("HTTP/1.1 408"),
                "slow HTTP/1.1 body: {answer:.200}"
            );
            assert!(
                answer.contains("request body not received within 1s"),
                "{answer}"
            );
            ("HTTP/1.1 body", cut, took)
        }
    };
    // HTTP/2 body, one byte per second: the stream gets 408.
    let h2_body = {
        let client = client(&server.certs.ca_cert, Http::Two);
        let url = server.url("/validate");
        let body = body.clone();
        async move {
            let started = Instant::now();
            let stream = futures_util::stream::unfold(0usize, move |i| {
                let body = body.clone();
                async move {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    (i < body.len()).then(|| (Ok::<_, std::io::Error>(vec![body[i]]), i + 1))
                }
            });
            let response = tokio::time::timeout(
                bound,
                client
                    .post(url)
                    .body(reqwest::Body::wrap_stream(stream))
                    .send(),
            )
            .await;
            let cut = match response {
                Ok(Ok(response)) => {
                    assert_eq!(response.status().as_u16(), 408, "slow HTTP/2 body");
                    true
                }
                Ok(Err(_)) => true, // stream reset by the server
                Err(_) => false,
            };
            ("HTTP/2 body", cut, started.elapsed())
        }
    };
    let results = tokio::join!(handshake, headers, h1_body, h2_body);
    for (case, cut, took) in [results.0, results.1, results.2, results.3] {
        eprintln!("1 byte/s {case}: cut off {cut} after {took:?}");
        assert!(cut, "1 byte/s {case}: still connected after {took:?}");
        assert!(took <= bound, "1 byte/s {case}: took {took:?}");
    }
    healthy.check("1 byte per second").await;
    server.stop().await;
}

/// Writes `data` one byte per second (repeating it if needed) while reading whatever the server
/// answers. Returns whether the server closed the connection within `bound`, how long that took,
/// and what it sent.
async fn trickle<S>(stream: S, data: Vec<u8>, bound: Duration) -> (bool, Duration, Vec<u8>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    let (mut rx, mut tx) = tokio::io::split(stream);
    let mut reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match rx.read(&mut buf).await {
                Ok(0) | Err(_) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    });
    let deadline = tokio::time::Instant::now() + bound;
    for byte in data.iter().cycle() {
        if tx.write_all(&[*byte]).await.is_err() || tx.flush().await.is_err() {
            // Broken pipe: the server is gone; collect what it said.
            let out = tokio::time::timeout(Duration::from_secs(1), &mut reader).await;
            return (
                true,
                started.elapsed(),
                out.ok().and_then(Result::ok).unwrap_or_default(),
            );
        }
        tokio::select! {
            out = &mut reader => return (true, started.elapsed(), out.unwrap_or_default()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = tokio::time::sleep_until(deadline) => {
                reader.abort();
                return (false, started.elapsed(), Vec::new());
            }
        }
    }
    (false, started.elapsed(), Vec::new())
}
