//! `applyguard audit` and serve's background audit against the test API server: what is already
//! in the cluster is evaluated with the cluster as inventory, replicas through their controller.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use applyguard::audit::{AuditOptions, audit_with, run_in_background};
use applyguard::engine::Engine;
use applyguard::inventory::cluster::{ClusterInventory, ClusterOptions};
use applyguard::metrics::Metrics;
use applyguard::policy::Policy;
use applyguard::scan::{Level, report};
use common::apiserver::FakeApiServer;
use serde_json::{Value, json};

fn deployment(name: &str, secret: &str, non_root: bool) -> Value {
    json!({"metadata": {"name": name, "namespace": "shop"},
        "spec": {"template": {"spec": {
            "securityContext": {"runAsNonRoot": non_root},
            "containers": [{"name": "app", "image": "ghcr.io/acme/app:1",
                "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}]}]}}}})
}

async fn api() -> FakeApiServer {
    let api = FakeApiServer::start().await;
    api.add_resource("", "v1", "Pod", "pods", true);
    api.add_resource("apps", "v1", "Deployment", "deployments", true);
    api.add_resource("apps", "v1", "ReplicaSet", "replicasets", true);
    api.apply(
        "",
        "v1",
        "secrets",
        json!({"metadata": {"name": "db", "namespace": "shop"}, "data": {"password": "eA=="}}),
    );
    api.apply(
        "apps",
        "v1",
        "deployments",
        deployment("checkout", "db", true),
    );
    // Created before applyguard: a missing Secret, and root.
    api.apply(
        "apps",
        "v1",
        "deployments",
        deployment("broken", "gone", false),
    );
    // A replica of checkout: evaluated through its controller, not again.
    api.apply(
        "apps",
        "v1",
        "replicasets",
        json!({"metadata": {"name": "checkout-5d8", "namespace": "shop", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout", "uid": "1", "controller": true}]},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "ghcr.io/acme/app:1"}]}}}}),
    );
    // A bare Pod in another namespace.
    api.apply(
        "",
        "v1",
        "pods",
        json!({"metadata": {"name": "debug", "namespace": "ops"},
            "spec": {"containers": [{"name": "sh", "image": "busybox:1.36"}]}}),
    );
    api
}

fn options(namespace: Option<&str>) -> AuditOptions {
    AuditOptions {
        namespace: namespace.map(str::to_string),
        ready_timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn audit_evaluates_existing_objects_with_the_cluster_as_inventory() {
    let api = api().await;
    let report = audit_with(api.config(), &options(None), Policy::default())
        .await
        .unwrap();
    let found: Vec<(&str, &str, &str, &str)> = report
        .findings
        .iter()
        .filter(|f| f.level == Level::Enforce)
        .map(|f| (f.kind.as_str(), f.name.as_str(), f.rule, f.path.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "Pod",
                "debug",
                "root-container",
                "spec.containers[0].securityContext.runAsNonRoot"
            ),
            (
                "Deployment",
                "broken",
                "secret-ref",
                "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef"
            ),
            (
                "Deployment",
                "broken",
                "root-container",
                "spec.template.spec.containers[0].securityContext.runAsNonRoot"
            ),
        ],
        "{:#?}",
        report.findings
    );
    // checkout reads a Secret that exists and is not root; its ReplicaSet is not evaluated.
    assert_eq!(report.objects, 3);
    assert_eq!(report.controlled, 1);
    assert_eq!(report.exit_code(), 1);
    let text = report::text(&report);
    assert!(
        text.lines().any(|l| l.starts_with(
            "Deployment/shop/broken secret-ref spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef: secret \"gone\" not found"
        ) && l.contains("Fix: ")),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(
            "audited 3 object(s) in {} (1 owned by an audited controller, checked through it): 3 violation(s) in enforce mode, 0 in warn mode, 0 note(s), 0 error(s)\n",
            api.config().cluster_url
        )),
        "{text}"
    );
    let json: Value = serde_json::from_str(&report::json(&report)).unwrap();
    assert_eq!(json["summary"]["controlled"], 1);
    assert_eq!(json["findings"][0]["file"], "");

    // SARIF: the vendored 2.1.0 schema accepts it; results have a logical location, no file.
    let sarif: Value = serde_json::from_str(&report::sarif(&report)).unwrap();
    let errors = common::sarif_errors(&sarif);
    assert!(errors.is_empty(), "SARIF invalid: {errors:#?}");
    let location = &sarif["runs"][0]["results"][1]["locations"][0];
    assert!(location.get("physicalLocation").is_none(), "{location}");
    assert_eq!(
        location["logicalLocations"][0]["fullyQualifiedName"],
        "Deployment/shop/broken.spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef"
    );

    // --namespace: only that namespace's objects (the inventory still knows the whole cluster).
    let report = audit_with(api.config(), &options(Some("ops")), Policy::default())
        .await
        .unwrap();
    assert_eq!(report.objects, 1);
    assert!(report.findings.iter().all(|f| f.namespace == "ops"));
}

#[tokio::test]
async fn without_an_inventory_the_audit_gives_up_and_says_why() {
    let api = api().await;
    // Every request answered 503: the inventory never lists, and a half-known cluster would
    // report Secrets as missing that exist.
    api.set_unavailable(true);
    let failed = tokio::time::timeout(
        Duration::from_secs(20),
        audit_with(
            api.config(),
            &AuditOptions {
                namespace: None,
                ready_timeout: Duration::from_secs(1),
            },
            Policy::default(),
        ),
    )
    .await
    .expect("the audit gives up instead of hanging");
    let err = failed.expect_err("no inventory, no audit").to_string();
    assert!(
        err.contains("the cluster inventory is not ready after 1 s") && err.contains("secrets"),
        "{err}"
    );
}

#[tokio::test]
async fn the_background_audit_sets_gauges_and_sees_a_fix() {
    let api = api().await;
    let inventory =
        Arc::new(ClusterInventory::connect(api.config(), ClusterOptions::default()).unwrap());
    let engine = Arc::new(arc_swap::ArcSwap::from_pointee(
        Engine::with_inventory(Policy::default(), inventory.clone()).unwrap(),
    ));
    let metrics = Arc::new(Metrics::new());
    let task = tokio::spawn(run_in_background(
        api.client(),
        engine,
        metrics.clone(),
        Duration::from_millis(200),
        false,
    ));
    let gauge = |rule: &str, mode: &str| -> Option<i64> {
        let text = metrics.render(inventory.as_ref());
        let series = format!("applyguard_existing_violations{{rule=\"{rule}\",mode=\"{mode}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.parse().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while gauge("root-container", "enforce") != Some(2) {
        assert!(
            Instant::now() < deadline,
            "{}",
            metrics.render(inventory.as_ref())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gauge("secret-ref", "enforce"), Some(1));
    assert_eq!(gauge("plaintext-kafka", "warn"), Some(0));
    // The Secret is created: the next run finds the Deployment fixed.
    api.apply(
        "",
        "v1",
        "secrets",
        json!({"metadata": {"name": "gone", "namespace": "shop"}, "data": {"password": "eA=="}}),
    );
    while gauge("secret-ref", "enforce") != Some(0) {
        assert!(
            Instant::now() < deadline,
            "{}",
            metrics.render(inventory.as_ref())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = metrics.render(inventory.as_ref());
    assert!(
        text.contains("applyguard_audit_runs_total{result=\"success\"}"),
        "{text}"
    );
    task.abort();
}
