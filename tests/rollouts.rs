//! Argo Rollouts as an evaluated workload kind, and further pod-template kinds named in the
//! policy's `workloads:`: field paths, unchanged-template UPDATEs, `spec.workloadRef`, and
//! configuration errors.

use applyguard::admission;
use applyguard::engine::{Engine, Request, Skip};
use applyguard::policy::Policy;
use kube::core::admission::Operation;
use serde_json::{Value, json};

fn rollout(image: &str, replicas: u32) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "risk", "namespace": "trading"},
        "spec": {"replicas": replicas, "strategy": {"canary": {"steps": [{"setWeight": 20}]}},
            "template": {"spec": {"containers": [{"name": "risk", "image": image}]}}}})
}

fn clean(image: &str) -> Value {
    let mut r = rollout(image, 2);
    r["spec"]["template"]["spec"]["securityContext"] =
        json!({"runAsNonRoot": true, "runAsUser": 10001});
    r
}

fn decide(
    engine: &Engine,
    group: &str,
    kind: &str,
    op: Operation,
    object: &Value,
    old: Option<&Value>,
) -> applyguard::engine::Decision {
    engine
        .decide(&Request {
            group,
            kind,
            operation: &op,
            namespace: "trading",
            name: "risk",
            object: Some(object),
            old_object: old,
            sub_resource: None,
        })
        .unwrap()
}

#[test]
fn rollouts_are_evaluated_with_their_own_paths() {
    let engine = Engine::new(Policy::default()).unwrap();
    let d = decide(
        &engine,
        "argoproj.io",
        "Rollout",
        Operation::Create,
        &rollout("ghcr.io/your-org/risk:1", 2),
        None,
    );
    let got: Vec<(&str, &str)> = d
        .denied_by
        .iter()
        .map(|v| (v.rule.as_str(), v.path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "placeholder-image",
                "spec.template.spec.containers[0].image"
            ),
            (
                "root-container",
                "spec.template.spec.containers[0].securityContext.runAsNonRoot"
            ),
        ]
    );
    let d = decide(
        &engine,
        "argoproj.io",
        "Rollout",
        Operation::Create,
        &clean("ghcr.io/acme/risk:1.4.2"),
        None,
    );
    assert!(
        d.allowed() && d.warnings.is_empty() && d.skipped.is_none(),
        "{:?}",
        d.denied_by
    );
}

#[test]
fn an_update_that_leaves_the_template_alone_is_allowed() {
    let engine = Engine::new(Policy::default()).unwrap();
    let old = rollout("ghcr.io/your-org/risk:1", 2);
    let scaled = rollout("ghcr.io/your-org/risk:1", 6);
    let d = decide(
        &engine,
        "argoproj.io",
        "Rollout",
        Operation::Update,
        &scaled,
        Some(&old),
    );
    assert_eq!(d.skipped, Some(Skip::Unchanged));
    let changed = rollout("ghcr.io/your-org/risk:2", 6);
    assert!(
        !decide(
            &engine,
            "argoproj.io",
            "Rollout",
            Operation::Update,
            &changed,
            Some(&old)
        )
        .allowed()
    );
}

#[test]
fn workload_ref_is_allowed_with_a_notice() {
    let engine = Engine::new(Policy::default()).unwrap();
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "r-1", "kind": {"group": "argoproj.io", "version": "v1alpha1", "kind": "Rollout"},
        "resource": {"group": "argoproj.io", "version": "v1alpha1", "resource": "rollouts"},
        "name": "risk", "namespace": "trading", "operation": "CREATE", "userInfo": {},
        "object": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "risk", "namespace": "trading"},
            "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "risk-base"},
                "strategy": {"canary": {}}}}}});
    let reply = admission::respond(&engine, &serde_json::to_vec(&review).unwrap()).unwrap();
    let response: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(response["response"]["allowed"], true);
    let warnings = response["response"]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = warnings[0].as_str().unwrap();
    assert!(
        w.contains("Deployment \"risk-base\"") && w.contains("spec.workloadRef"),
        "{w}"
    );
}

#[test]
fn the_policy_names_further_pod_template_kinds() {
    let policy = Policy::from_yaml(
        "workloads:\n  - {group: apps.kruise.io, kind: CloneSet, podTemplate: spec.template}\n  - {group: example.com, kind: Runner, podTemplate: spec.runner.podTemplate}\n",
        "t",
    )
    .unwrap();
    let engine = Engine::new(policy).unwrap();
    let mut cloneset = rollout("ghcr.io/your-org/risk:1", 2);
    cloneset["apiVersion"] = json!("apps.kruise.io/v1alpha1");
    cloneset["kind"] = json!("CloneSet");
    let d = decide(
        &engine,
        "apps.kruise.io",
        "CloneSet",
        Operation::Create,
        &cloneset,
        None,
    );
    assert_eq!(
        d.denied_by[0].path,
        "spec.template.spec.containers[0].image"
    );
    let runner = json!({"spec": {"runner": {"podTemplate": {"spec": {"containers": [{"name": "r", "image": "<image>"}]}}}}});
    let d = decide(
        &engine,
        "example.com",
        "Runner",
        Operation::Create,
        &runner,
        None,
    );
    assert_eq!(
        d.denied_by[0].path,
        "spec.runner.podTemplate.spec.containers[0].image"
    );
    // Without the entry the same kind is not evaluated.
    let plain = Engine::new(Policy::default()).unwrap();
    let d = decide(
        &plain,
        "apps.kruise.io",
        "CloneSet",
        Operation::Create,
        &cloneset,
        None,
    );
    assert_eq!(d.skipped, Some(Skip::Kind));
}

#[test]
fn bad_workload_entries_are_refused() {
    for (config, words) in [
        (
            "workloads:\n  - {group: '', kind: CloneSet, podTemplate: spec.template}\n",
            "group and kind must both be set",
        ),
        (
            "workloads:\n  - {group: apps, kind: Deployment, podTemplate: spec.template}\n",
            "already evaluated",
        ),
        (
            "workloads:\n  - {group: a.io, kind: A, podTemplate: 'spec..template'}\n",
            "must be a dotted field path",
        ),
        (
            "workloads:\n  - {group: a.io, kind: A, podTemplate: spec.template}\n  - {group: a.io, kind: A, podTemplate: spec.t}\n",
            "listed twice",
        ),
        ("workloads:\n  - {group: a.io, kind: A}\n", "podTemplate"),
    ] {
        let err = Policy::from_yaml(config, "t").unwrap_err().to_string();
        assert!(err.contains(words), "{config}: {err}");
    }
}
