//! The deletion guard's modes and exemptions, through the engine with manifests as inventory:
//! warn by default whatever the policy-wide mode or namespace label says; enforce only by its
//! own rule mode or label; exemptions apply as for every other rule.

use std::collections::BTreeMap;
use std::sync::Arc;

use applyguard::engine::{Decision, Engine, Request};
use applyguard::exemptions::Caller;
use applyguard::inventory::manifests::ManifestInventory;
use applyguard::policy::Policy;
use kube::core::admission::Operation;
use serde_json::{Value, json};

fn engine(policy: &str, namespace_labels: Value) -> Engine {
    let objects = [
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop", "labels": namespace_labels}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"},
            "data": {"password": "eA=="}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "checkout", "namespace": "shop"},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:1",
                "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]}]}}}}),
    ];
    let inventory = ManifestInventory::from_objects(objects.iter(), "shop", "test".to_string());
    Engine::with_inventory(
        Policy::from_yaml(policy, "test").unwrap(),
        Arc::new(inventory),
    )
    .unwrap()
}

fn delete(
    engine: &Engine,
    username: &str,
    annotations: Option<&BTreeMap<String, String>>,
) -> Decision {
    let old = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "namespace": "shop"}, "data": {"password": "eA=="}});
    engine
        .decide_with(
            &Request {
                group: "",
                kind: "Secret",
                operation: &Operation::Delete,
                namespace: "shop",
                name: "db",
                object: None,
                old_object: Some(&old),
                sub_resource: None,
            },
            &Caller {
                username,
                groups: &[],
                annotations,
            },
        )
        .unwrap()
}

#[test]
fn warn_by_default_even_where_everything_else_is_enforced() {
    for (policy, labels) in [
        ("mode: enforce\n", json!({})),
        ("mode: warn\n", json!({"applyguard.io/mode": "enforce"})),
    ] {
        let decision = delete(&engine(policy, labels.clone()), "alice", None);
        assert!(decision.allowed(), "{policy} {labels}: {decision:?}");
        assert_eq!(
            decision.warnings.len(),
            1,
            "{policy} {labels}: {decision:?}"
        );
        assert_eq!(decision.warnings[0].rule.as_str(), "secret-in-use");
    }
}

#[test]
fn enforced_by_its_own_mode_or_label_and_off_by_either() {
    let by_mode = delete(
        &engine("rules:\n  secret-in-use: { mode: enforce }\n", json!({})),
        "alice",
        None,
    );
    assert!(!by_mode.allowed(), "{by_mode:?}");
    let by_label = delete(
        &engine("", json!({"applyguard.io/secret-in-use": "enforce"})),
        "alice",
        None,
    );
    assert!(!by_label.allowed(), "{by_label:?}");
    assert_eq!(by_label.denied_by[0].path, "metadata.name");
    let off_by_label = delete(
        &engine(
            "rules:\n  secret-in-use: { mode: enforce }\n",
            json!({"applyguard.io/secret-in-use": "off"}),
        ),
        "alice",
        None,
    );
    assert!(
        off_by_label.allowed() && off_by_label.warnings.is_empty(),
        "{off_by_label:?}"
    );
    let off_by_mode = delete(
        &engine("rules:\n  secret-in-use: { mode: off }\n", json!({})),
        "alice",
        None,
    );
    assert!(
        off_by_mode.allowed() && off_by_mode.warnings.is_empty(),
        "{off_by_mode:?}"
    );
}

#[test]
fn exemptions_apply_to_deletes() {
    let enforced =
        "rules:\n  secret-in-use: { mode: enforce }\nexemptions:\n  usernames: [\"ops-bot\"]\n";
    let exempt_user = delete(&engine(enforced, json!({})), "ops-bot", None);
    assert!(exempt_user.allowed(), "{exempt_user:?}");
    assert_eq!(exempt_user.exempted.len(), 1, "{exempt_user:?}");
    assert!(!delete(&engine(enforced, json!({})), "alice", None).allowed());
    // On the Secret itself, with a reason (admission reads a DELETE's annotations from oldObject).
    let annotations = BTreeMap::from([
        (
            "applyguard.io/exempt".to_string(),
            "secret-in-use".to_string(),
        ),
        (
            "applyguard.io/exempt-reason".to_string(),
            "rotated by hand, INC-4411".to_string(),
        ),
    ]);
    let exempt_object = delete(&engine(enforced, json!({})), "alice", Some(&annotations));
    assert!(exempt_object.allowed(), "{exempt_object:?}");
    assert_eq!(exempt_object.exempted.len(), 1);
    let exempt_namespace = delete(
        &engine(
            "rules:\n  secret-in-use: { mode: enforce }\nexemptions:\n  namespaces: [shop]\n",
            json!({}),
        ),
        "alice",
        None,
    );
    assert!(exempt_namespace.allowed(), "{exempt_namespace:?}");
}
