//! A rolling restart with zero failed admissions: two `serve` processes behind a client that,
//! like Service endpoints, only sends to replicas whose /readyz answers 200. Each replica in turn
//! is sent SIGTERM (readiness goes false first, it keeps serving through --shutdown-delay,
//! in-flight requests finish, it exits 0) and is started again, under continuous load.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Http, client, fixture};

fn spawn(dir: &std::path::Path, certs: &applyguard::certs::CertOutput) -> (Child, SocketAddr) {
    let inventory = format!("{}/tests/fixtures/inventory", env!("CARGO_MANIFEST_DIR"));
    let (cert, key) = (
        certs.tls_cert.display().to_string(),
        certs.tls_key.display().to_string(),
    );
    common::spawn_serve(
        dir,
        &[
            "--metrics-listen",
            "off",
            "--shutdown-delay",
            "1",
            "--inventory",
            &inventory,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    )
}

#[tokio::test]
async fn rolling_restart_fails_no_admission() {
    let dir = tempfile::tempdir().unwrap();
    let certs = common::certs(dir.path());
    let (a, addr_a) = spawn(dir.path(), &certs);
    let (b, addr_b) = spawn(dir.path(), &certs);
    let backends: Arc<Mutex<Vec<SocketAddr>>> = Arc::new(Mutex::new(vec![addr_a, addr_b]));
    let ready: Arc<Mutex<Vec<SocketAddr>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    // Endpoints: poll /readyz every 100 ms, as the kubelet's probe and the endpoints controller do.
    let probe = {
        let (backends, ready, stop, ca) = (
            backends.clone(),
            ready.clone(),
            stop.clone(),
            certs.ca_cert.clone(),
        );
        tokio::spawn(async move {
            let c = client(&ca, Http::One);
            while !stop.load(Ordering::SeqCst) {
                let all = backends.lock().unwrap().clone();
                let mut up = Vec::new();
                for addr in all {
                    let ok = c
                        .get(format!("https://localhost:{}/readyz", addr.port()))
                        .timeout(Duration::from_millis(500))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().as_u16() == 200);
                    if ok {
                        up.push(addr);
                    }
                }
                *ready.lock().unwrap() = up;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // Continuous load, round-robin over ready endpoints, HTTP/1.1 and HTTP/2 keep-alive clients.
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for i in 0..4 {
        let (ready, stop, failures, done, ca) = (
            ready.clone(),
            stop.clone(),
            failures.clone(),
            done.clone(),
            certs.ca_cert.clone(),
        );
        load.push(tokio::spawn(async move {
            let c = client(&ca, if i % 2 == 0 { Http::One } else { Http::Two });
            let mut n = i;
            while !stop.load(Ordering::SeqCst) {
                let target = {
                    let up = ready.lock().unwrap();
                    if up.is_empty() {
                        None
                    } else {
                        n += 1;
                        Some(up[n % up.len()])
                    }
                };
                let Some(addr) = target else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                match c
                    .post(format!("https://localhost:{}/validate", addr.port()))
                    .body(fixture("admission/deployment-secrets-allowed.json"))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    other => {
                        eprintln!("request to {addr} failed: {other:?}");
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    let wait_ready = |addr: SocketAddr| {
        let ready = ready.clone();
        async move {
            for _ in 0..300 {
                if ready.lock().unwrap().contains(&addr) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("{addr} never became ready");
        }
    };
    wait_ready(addr_a).await;
    wait_ready(addr_b).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Restart each replica in turn.
    let mut replicas = vec![(a, addr_a), (b, addr_b)];
    for slot in 0..2 {
        let (child, addr) = replicas.remove(0);
        assert!(
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
        let output = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "replica {slot} did not exit cleanly"
        );
        let (new, new_addr) = spawn(dir.path(), &certs);
        {
            let mut all = backends.lock().unwrap();
            all.retain(|a| *a != addr);
            all.push(new_addr);
        }
        wait_ready(new_addr).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        replicas.push((new, new_addr));
    }
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.await.unwrap();
    }
    probe.await.unwrap();
    for (mut child, _) in replicas {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "admissions failed during the rolling restart"
    );
    assert!(
        done.load(Ordering::SeqCst) > 50,
        "too little load: {}",
        done.load(Ordering::SeqCst)
    );
}
