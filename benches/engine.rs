//! Engine micro-benchmarks (`cargo bench --bench engine`, run by `make bench`).
//!
//! Decision time with every rule on (the policy in `scripts/bench/policy.yaml`) and an inventory
//! of 10,000 Secrets and 10,000 ConfigMaps in 50 namespaces (the same shape
//! `scripts/bench/generate.sh` writes for the load test), plus the cluster state of
//! `tests/fixtures/inventory/shop.yaml` so the AdmissionReview fixtures resolve as in the tests.
//!
//! - `decide/*`: `Engine::decide` on an already-parsed object (the rules alone);
//! - `respond/*`: `admission::respond` on AdmissionReview bytes (parse, decide, encode: what
//!   `serve` does per request, minus HTTP, TLS and the log line);
//! - `parse/*`: `admission::parse` alone (what the bench baseline webhook does per request).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use kube::core::admission::Operation;
use serde_json::{Value, json};

use applyguard::admission;
use applyguard::engine::{Engine, Request};
use applyguard::inventory::manifests::{ManifestInventory, parse_documents};
use applyguard::policy::Policy;

const NAMESPACES: usize = 50;
const PER_NAMESPACE: usize = 200;

fn namespace(n: usize) -> String {
    format!("team-{n:02}")
}

/// 10,000 Secrets and 10,000 ConfigMaps: in each of 50 namespaces, `svc-000-db` ..
/// `svc-198-db` (Opaque: username, password, host) and `registry-pull`
/// (kubernetes.io/dockerconfigjson), and `svc-000-config` .. `svc-199-config` (Kafka client
/// settings, a log level and an `application.properties`).
fn cluster_objects() -> Vec<Value> {
    let mut objects = Vec::with_capacity(2 * NAMESPACES * PER_NAMESPACE + NAMESPACES);
    for n in 0..NAMESPACES {
        let ns = namespace(n);
        objects.push(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"team": ns}}
        }));
        for i in 0..PER_NAMESPACE {
            objects.push(if i == PER_NAMESPACE - 1 {
                json!({
                    "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                    "metadata": {"name": "registry-pull", "namespace": ns},
                    "data": {".dockerconfigjson": "eyJhdXRocyI6e319"}
                })
            } else {
                json!({
                    "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": format!("svc-{i:03}-db"), "namespace": ns,
                                 "labels": {"app": format!("svc-{i:03}")}},
                    "data": {"username": "c2VydmljZQ==", "password": "czNjcjN0LXZhbHVl",
                             "host": "ZGIuc3Zj"}
                })
            });
            objects.push(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("svc-{i:03}-config"), "namespace": ns,
                             "labels": {"app": format!("svc-{i:03}")}},
                "data": {
                    "LOG_LEVEL": "info",
                    "KAFKA_BOOTSTRAP_SERVERS": format!("kafka-0.kafka.{ns}.svc:9093,kafka-1.kafka.{ns}.svc:9093"),
                    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                    "application.properties": format!(
                        "server.port=8080\nspring.kafka.bootstrap-servers=kafka-0.kafka.{ns}.svc:9093\nspring.kafka.properties.security.protocol=SASL_SSL\nmanagement.endpoints.web.exposure.include=health\n"
                    )
                }
            }));
        }
    }
    objects
}

fn container(name: &str, image: &str, svc: usize) -> Value {
    let db = format!("svc-{svc:03}-db");
    let config = format!("svc-{svc:03}-config");
    json!({
        "name": name,
        "image": image,
        "ports": [{"containerPort": 8080, "name": "http"}],
        "env": [
            {"name": "LOG_FORMAT", "value": "json"},
            {"name": "DB_USER", "valueFrom": {"secretKeyRef": {"name": db, "key": "username"}}},
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": db, "key": "password"}}},
            {"name": "DB_HOST", "valueFrom": {"secretKeyRef": {"name": db, "key": "host"}}},
            {"name": "SPRING_KAFKA_BOOTSTRAP_SERVERS",
             "valueFrom": {"configMapKeyRef": {"name": config, "key": "KAFKA_BOOTSTRAP_SERVERS"}}},
            {"name": "SPRING_KAFKA_PROPERTIES_SECURITY_PROTOCOL", "value": "SASL_SSL"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
        ],
        "envFrom": [{"configMapRef": {"name": config}}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                      "limits": {"memory": "256Mi"}},
        "securityContext": {"allowPrivilegeEscalation": false,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tls", "mountPath": "/etc/tls", "readOnly": true}]
    })
}

fn pod_spec(containers: Vec<Value>, svc: usize) -> Value {
    json!({
        "containers": containers,
        "securityContext": {"runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "imagePullSecrets": [{"name": "registry-pull"}],
        "volumes": [
            {"name": "tls", "secret": {"secretName": format!("svc-{svc:03}-db"),
                                      "items": [{"key": "host", "path": "host"}]}},
            {"name": "bundle", "projected": {"sources": [
                {"secret": {"name": format!("svc-{:03}-db", svc + 1),
                            "items": [{"key": "password", "path": "password"}]}},
                {"configMap": {"name": format!("svc-{svc:03}-config")}}
            ]}}
        ]
    })
}

fn metadata(name: &str, ns: &str) -> Value {
    json!({"name": name, "namespace": ns, "labels": {"app": name},
           "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"}})
}

/// A Pod as a controller would create it: an app container and a sidecar.
fn pod(ns: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": metadata("orders-7d9f8b6c5-x2k4p", ns),
        "spec": pod_spec(vec![
            container("orders", "ghcr.io/acme/orders:3.1.0", 7),
            container("envoy", "docker.io/envoyproxy/envoy:v1.30.1", 8),
        ], 7)
    })
}

/// A Deployment whose pod template has 10 containers.
fn deployment(ns: &str, containers: usize, first_svc: usize) -> Value {
    let list = (0..containers)
        .map(|c| {
            container(
                &format!("worker-{c}"),
                &format!("ghcr.io/acme/worker-{c}:1.{c}.0"),
                first_svc + c,
            )
        })
        .collect();
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata("workers", ns),
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "workers"}},
                 "template": {"metadata": {"labels": {"app": "workers"}},
                              "spec": pod_spec(list, first_svc)}}
    })
}

fn cronjob(ns: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": metadata("nightly-report", ns),
        "spec": {"schedule": "0 3 * * *", "concurrencyPolicy": "Forbid",
                 "jobTemplate": {"spec": {"backoffLimit": 2, "template": {
                     "metadata": {"labels": {"app": "nightly-report"}},
                     "spec": {
                         "restartPolicy": "OnFailure",
                         "containers": [container("report", "registry.k8s.io/acme/report:2.0.1", 40)],
                         "securityContext": {"runAsNonRoot": true, "runAsUser": 10001},
                         "imagePullSecrets": [{"name": "registry-pull"}]
                     }}}}}
    })
}

fn fixture(path: &str) -> Vec<u8> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn engine() -> Engine {
    let policy = Policy::from_yaml(
        include_str!("../scripts/bench/policy.yaml"),
        "scripts/bench/policy.yaml",
    )
    .expect("bench policy");
    let mut objects = cluster_objects();
    let shop = fixture("tests/fixtures/inventory/shop.yaml");
    let shop = String::from_utf8(shop).expect("shop.yaml is UTF-8");
    objects.extend(parse_documents(&shop, Path::new("shop.yaml")).expect("shop.yaml parses"));
    let inventory = ManifestInventory::from_objects(
        objects.iter(),
        "default",
        "the bench inventory".to_string(),
    );
    let counts = inventory.counts();
    assert_eq!(
        counts["secrets"],
        NAMESPACES * PER_NAMESPACE + 4,
        "{counts:?}"
    );
    assert_eq!(
        counts["configmaps"],
        NAMESPACES * PER_NAMESPACE,
        "{counts:?}"
    );
    Engine::with_inventory(policy, Arc::new(inventory)).expect("engine")
}

fn request<'a>(group: &'a str, kind: &'a str, ns: &'a str, object: &'a Value) -> Request<'a> {
    Request {
        group,
        kind,
        operation: &Operation::Create,
        name: "",
        namespace: ns,
        object: Some(object),
        old_object: None,
        sub_resource: None,
    }
}

fn benches(c: &mut Criterion) {
    let engine = engine();
    let ns = namespace(7);
    let pod = pod(&ns);
    let deployment10 = deployment(&ns, 10, 20);
    let cronjob = cronjob(&ns);
    // The same Deployment with one Secret name mistyped: secret-ref then looks for close names
    // and other namespaces holding that name (the path where inventory size matters most).
    let mut missing = deployment10.clone();
    missing["spec"]["template"]["spec"]["containers"][3]["env"][1]["valueFrom"]["secretKeyRef"]["name"] =
        json!("svc-023-bd");

    // The same Deployment for an app that is not a Kafka client (most workloads): no Kafka
    // variables and no envFrom ConfigMap, so plaintext-kafka need not resolve the environment.
    let mut no_kafka = deployment10.clone();
    for c in no_kafka["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        if let Some(env) = c["env"].as_array_mut() {
            env.retain(|v| !v["name"].as_str().is_some_and(|n| n.contains("KAFKA")));
        }
        if let Some(c) = c.as_object_mut() {
            c.remove("envFrom");
        }
    }

    let cases: [(&str, &str, &str, &Value, bool); 5] = [
        ("pod", "", "Pod", &pod, true),
        (
            "deployment-10-containers",
            "apps",
            "Deployment",
            &deployment10,
            true,
        ),
        (
            "deployment-10-containers-no-kafka",
            "apps",
            "Deployment",
            &no_kafka,
            true,
        ),
        ("cronjob", "batch", "CronJob", &cronjob, true),
        (
            "deployment-10-containers-missing-secret",
            "apps",
            "Deployment",
            &missing,
            false,
        ),
    ];
    // Check once that each case takes the path it is meant to measure.
    for (name, group, kind, object, allowed) in &cases {
        let decision = engine
            .decide(&request(group, kind, &ns, object))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            decision.allowed(),
            *allowed,
            "{name}: {:?}",
            decision.denied_by
        );
        assert!(decision.skipped.is_none(), "{name} was not evaluated");
        assert!(
            decision.warnings.is_empty(),
            "{name}: {:?}",
            decision.warnings
        );
    }

    let mut group = c.benchmark_group("decide");
    for (name, g, kind, object, _) in &cases {
        let req = request(g, kind, &ns, object);
        group.bench_function(*name, |b| b.iter(|| engine.decide(black_box(&req))));
    }
    group.finish();

    let reviews = [
        "pod-create-allowed",
        "deployment-secrets-allowed",
        "deployment-secrets-denied",
        "deployment-create-denied",
        "cronjob-create-dryrun-denied",
        "statefulset-kafka-plaintext-denied",
    ];
    let mut group = c.benchmark_group("respond");
    for name in reviews {
        let body = fixture(&format!("tests/fixtures/admission/{name}.json"));
        admission::respond(&engine, &body).unwrap_or_else(|e| panic!("{name}: {e}"));
        group.bench_function(name, |b| {
            b.iter(|| admission::respond(&engine, black_box(&body)))
        });
    }
    group.finish();

    let body = fixture("tests/fixtures/admission/deployment-secrets-allowed.json");
    let mut group = c.benchmark_group("parse");
    group.bench_function("deployment-secrets-allowed", |b| {
        b.iter(|| admission::parse(black_box(&body)))
    });
    group.finish();
}

fn config() -> Criterion {
    // Short enough for a 2-core machine shared with compiles; `make bench` passes no filter.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = engine_benches;
    config = config();
    targets = benches
}
criterion_main!(engine_benches);
