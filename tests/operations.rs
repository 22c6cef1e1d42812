//! Operating applyguard: namespace labels choose modes, exemptions (config and per object)
//! turn violations into warnings that name them, and strict clusters can refuse exemptions.

mod common;

use std::sync::Arc;

use applyguard::engine::{Decision, Engine, Request};
use applyguard::exemptions::Caller;
use applyguard::inventory::manifests::ManifestInventory;
use applyguard::policy::Policy;
use applyguard::server::Limits;
use common::{Http, client, fixture, start_with};
use kube::core::admission::Operation;
use serde_json::{Value, json};

fn inventory() -> ManifestInventory {
    let namespaces = [
        ("plain", json!({})),
        ("warned", json!({"applyguard.io/mode": "warn"})),
        ("off", json!({"applyguard.io/mode": "off"})),
        (
            "image-off",
            json!({"applyguard.io/placeholder-image": "off"}),
        ),
        (
            "root-warn",
            json!({"applyguard.io/mode": "enforce", "applyguard.io/root-container": "warn"}),
        ),
        (
            "typo",
            json!({"applyguard.io/mode": "disabled", "applyguard.io/root-container": "Warn"}),
        ),
        ("team-a", json!({})),
    ];
    let objects: Vec<Value> = namespaces
        .iter()
        .map(|(name, labels)| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}))
        .collect();
    ManifestInventory::from_objects(objects.iter(), "default", "test".into())
}

fn engine(config: &str) -> Engine {
    Engine::with_inventory(
        Policy::from_yaml(config, "test").unwrap(),
        Arc::new(inventory()),
    )
    .unwrap()
}

/// A pod that breaks root-container and placeholder-image.
fn bad_pod() -> Value {
    json!({"spec": {"containers": [{"name": "app", "image": "ghcr.io/your-org/app:1"}]}})
}

fn decide(engine: &Engine, namespace: &str, caller: &Caller<'_>) -> Decision {
    let pod = bad_pod();
    engine
        .decide_with(
            &Request {
                group: "",
                kind: "Pod",
                operation: &Operation::Create,
                name: "",
                namespace,
                object: Some(&pod),
                old_object: None,
                sub_resource: None,
            },
            caller,
        )
        .unwrap()
}

fn rules(list: &[applyguard::rules::Violation]) -> Vec<&'static str> {
    list.iter().map(|v| v.rule.as_str()).collect()
}

#[test]
fn namespace_labels_override_modes() {
    let engine = engine("mode: enforce\n");
    let none = Caller::default();
    let d = decide(&engine, "plain", &none);
    assert_eq!(rules(&d.denied_by), ["placeholder-image", "root-container"]);
    let d = decide(&engine, "warned", &none);
    assert!(d.allowed());
    assert_eq!(rules(&d.warnings), ["placeholder-image", "root-container"]);
    let d = decide(&engine, "off", &none);
    assert!(d.allowed() && d.warnings.is_empty());
    let d = decide(&engine, "image-off", &none);
    assert_eq!(rules(&d.denied_by), ["root-container"]);
    assert!(d.warnings.is_empty());
    let d = decide(&engine, "root-warn", &none);
    assert_eq!(rules(&d.denied_by), ["placeholder-image"]);
    assert_eq!(rules(&d.warnings), ["root-container"]);
    // Invalid values: the configured mode (enforce), never off, and a warning about each label.
    let d = decide(&engine, "typo", &none);
    assert_eq!(rules(&d.denied_by), ["placeholder-image", "root-container"]);
    assert_eq!(d.policy_notes.len(), 2, "{:?}", d.policy_notes);
    assert!(
        d.policy_notes
            .iter()
            .any(|n| n.contains("applyguard.io/mode=\"disabled\""))
    );
    // A rule off in the config can be turned on for one namespace.
    let engine = self::engine("rules:\n  root-container: {mode: off}\n");
    assert_eq!(
        rules(&decide(&engine, "plain", &none).denied_by),
        ["placeholder-image"]
    );
    assert_eq!(
        rules(&decide(&engine, "root-warn", &none).warnings),
        ["root-container"]
    );
}

#[test]
fn each_exemption_kind() {
    let engine = engine(
        "exemptions:\n  namespaces: [kube-system, \"team-*\"]\n  usernames: [alice@example.com]\n  groups: [\"platform:break-glass\"]\n  serviceAccounts: [\"ci/*\"]\n",
    );
    let groups = vec![
        "system:authenticated".to_string(),
        "platform:break-glass".to_string(),
    ];
    let cases: Vec<(&str, Caller<'_>, &str)> = vec![
        ("team-a", Caller::default(), "namespace team-a is exempt"),
        (
            "plain",
            Caller {
                username: "alice@example.com",
                ..Caller::default()
            },
            "user alice@example.com is exempt",
        ),
        (
            "plain",
            Caller {
                username: "bob",
                groups: &groups,
                annotations: None,
            },
            "group platform:break-glass is exempt",
        ),
        (
            "plain",
            Caller {
                username: "system:serviceaccount:ci:deployer",
                ..Caller::default()
            },
            "service account ci/deployer is exempt",
        ),
    ];
    for (namespace, caller, why) in cases {
        let d = decide(&engine, namespace, &caller);
        assert!(d.allowed(), "{why}");
        assert_eq!(d.exempted.len(), 2, "{why}");
        assert!(
            d.exempted.iter().all(|e| e.exemption.contains(why)),
            "{why}: {:?}",
            d.exempted
        );
    }
    assert!(
        !decide(
            &engine,
            "plain",
            &Caller {
                username: "bob",
                ..Caller::default()
            }
        )
        .allowed()
    );
}

#[test]
fn annotations_exempt_named_rules_only_with_a_reason() {
    let engine = engine("");
    let with_reason = [
        (
            "applyguard.io/exempt".to_string(),
            "root-container".to_string(),
        ),
        (
            "applyguard.io/exempt-reason".to_string(),
            "vendor image runs as root; OPS-1234".to_string(),
        ),
    ]
    .into();
    let d = decide(
        &engine,
        "plain",
        &Caller {
            annotations: Some(&with_reason),
            ..Caller::default()
        },
    );
    assert_eq!(rules(&d.denied_by), ["placeholder-image"]);
    assert_eq!(d.exempted.len(), 1);
    assert!(d.exempted[0].exemption.contains("OPS-1234"));
    let without = [(
        "applyguard.io/exempt".to_string(),
        "root-container,placeholder-image".to_string(),
    )]
    .into();
    let d = decide(
        &engine,
        "plain",
        &Caller {
            annotations: Some(&without),
            ..Caller::default()
        },
    );
    assert_eq!(rules(&d.denied_by), ["placeholder-image", "root-container"]);
    assert!(d.policy_notes[0].contains("needs a non-empty applyguard.io/exempt-reason"));
    // Strict clusters: per-object exemptions refused, or every exemption off.
    for config in [
        "exemptions:\n  annotations: false\n",
        "exemptions:\n  enabled: false\n  namespaces: [\"*\"]\n",
    ] {
        let strict = self::engine(config);
        let d = decide(
            &strict,
            "plain",
            &Caller {
                annotations: Some(&with_reason),
                ..Caller::default()
            },
        );
        assert_eq!(
            rules(&d.denied_by),
            ["placeholder-image", "root-container"],
            "{config}"
        );
        assert!(
            d.policy_notes[0].contains("disabled by policy"),
            "{config}: {:?}",
            d.policy_notes
        );
    }
}

#[tokio::test]
async fn exemptions_and_labels_reach_kubectl_as_warnings_and_audit_annotations() {
    let server = start_with(
        Some("exemptions:\n  groups: [\"team-shop\"]\n"),
        Limits::default(),
        Arc::new(inventory()),
    )
    .await;
    // The fixture's user is in group team-shop: every violation is exempt, and says so.
    let body = common::post_text(
        &client(&server.certs.ca_cert, Http::Two),
        server.url("/validate"),
        fixture("admission/deployment-create-denied.json"),
    )
    .await;
    let response: Value = serde_json::from_str::<Value>(&body).unwrap()["response"].clone();
    assert_eq!(response["allowed"], true, "{body}");
    let warnings = response["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().all(|w| w
            .as_str()
            .unwrap()
            .contains("exempt (group team-shop is exempt")),
        "{warnings:?}"
    );
    assert!(
        response["auditAnnotations"]["exempt-root-container"]
            .as_str()
            .unwrap()
            .contains("team-shop")
    );
    server.stop().await;
}
