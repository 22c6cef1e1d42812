//! Rule secret-ref over a manifest inventory: every reference kind, optional, missing keys,
//! other namespaces, each producer kind and API version, and typo suggestions.

use std::path::PathBuf;
use std::sync::Arc;

use applyguard::engine::{Decision, Engine, Request};
use applyguard::inventory::manifests::ManifestInventory;
use applyguard::policy::Policy;
use kube::core::admission::Operation;
use serde_json::{Value, json};

fn engine(config: &str) -> Engine {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory/shop.yaml");
    let inventory = ManifestInventory::load(&[path], "default").unwrap();
    // Only secret-ref: the other rules have their own tests.
    let policy = Policy::from_yaml(
        &format!("{config}\nrules:\n  root-container: {{mode: off}}\n  placeholder-image: {{mode: off}}\n"),
        "test",
    )
    .unwrap();
    Engine::with_inventory(policy, Arc::new(inventory)).unwrap()
}

fn decide(engine: &Engine, group: &str, kind: &str, namespace: &str, object: &Value) -> Decision {
    engine
        .decide(&Request {
            group,
            kind,
            operation: &Operation::Create,
            name: "",
            namespace,
            object: Some(object),
            old_object: None,
            sub_resource: None,
        })
        .unwrap()
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
}

fn container(extra: Value) -> Value {
    let mut c = json!({"name": "app", "image": "ghcr.io/acme/app:1"});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    c
}

fn env_ref(name: &str, key: &str) -> Value {
    container(json!({"env": [
        {"name": "PLAIN", "value": "x"},
        {"name": "REF", "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}
    ]}))
}

struct Case {
    name: &'static str,
    spec: Value,
    /// (path, words the message must contain)
    violations: Vec<(&'static str, Vec<&'static str>)>,
    notices: Vec<(&'static str, Vec<&'static str>)>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "env key that exists",
            spec: json!({"containers": [env_ref("db-credentials", "password")]}),
            violations: vec![],
            notices: vec![],
        },
        Case {
            name: "env key missing from an existing secret, with suggestion",
            spec: json!({"containers": [env_ref("db-credentials", "usernme")]}),
            violations: vec![(
                "spec.containers[0].env[1].valueFrom.secretKeyRef",
                vec![
                    "has no key \"usernme\"",
                    "\"host\", \"password\", \"username\"",
                    "did you mean \"username\"",
                ],
            )],
            notices: vec![],
        },
        Case {
            name: "secret not found, typo suggested",
            spec: json!({"containers": [env_ref("db-credential", "password")]}),
            violations: vec![(
                "spec.containers[0].env[1].valueFrom.secretKeyRef",
                vec![
                    "secret \"db-credential\" not found in namespace \"shop\"",
                    "did you mean \"db-credentials\"",
                ],
            )],
            notices: vec![],
        },
        Case {
            name: "secret in another namespace",
            spec: json!({"containers": [env_ref("stripe-key", "key")]}),
            violations: vec![(
                "spec.containers[0].env[1].valueFrom.secretKeyRef",
                vec![
                    "not found in namespace \"shop\"",
                    "exists in namespace \"billing\"",
                ],
            )],
            notices: vec![],
        },
        Case {
            name: "optional references never violate",
            spec: json!({"containers": [container(json!({
                "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}}],
                "envFrom": [{"secretRef": {"name": "nope", "optional": true}}]}))],
                "volumes": [{"name": "v", "secret": {"secretName": "nope", "optional": true}}]}),
            violations: vec![],
            notices: vec![],
        },
        Case {
            name: "envFrom of existing and missing secrets",
            spec: json!({"containers": [container(json!({"envFrom": [
                {"secretRef": {"name": "db-credentials"}}, {"prefix": "X_", "secretRef": {"name": "missing-env"}}]}))]}),
            violations: vec![(
                "spec.containers[0].envFrom[1].secretRef",
                vec!["\"missing-env\" not found"],
            )],
            notices: vec![],
        },
        Case {
            name: "secret volume with items, one key missing",
            spec: json!({"containers": [container(json!({}))], "volumes": [
                {"name": "cfg", "configMap": {"name": "whatever"}},
                {"name": "db", "secret": {"secretName": "db-credentials", "items": [
                    {"key": "password", "path": "pw"}, {"key": "port", "path": "port"}]}}]}),
            violations: vec![(
                "spec.volumes[1].secret.items[1]",
                vec!["has no key \"port\""],
            )],
            notices: vec![],
        },
        Case {
            name: "secret volume without items, missing secret",
            spec: json!({"containers": [container(json!({}))], "volumes": [{"name": "tls", "secret": {"secretName": "ingress-tls"}}]}),
            violations: vec![("spec.volumes[0].secret", vec!["\"ingress-tls\" not found"])],
            notices: vec![],
        },
        Case {
            name: "projected secret sources",
            spec: json!({"containers": [container(json!({}))], "volumes": [{"name": "all", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token"}},
                {"secret": {"name": "db-credentials", "items": [{"key": "host", "path": "h"}]}},
                {"secret": {"name": "client-tls"}}]}}]}),
            violations: vec![(
                "spec.volumes[0].projected.sources[2].secret",
                vec!["\"client-tls\" not found"],
            )],
            notices: vec![],
        },
        Case {
            name: "image pull secrets: missing, wrong type, right type",
            spec: json!({"containers": [container(json!({}))], "imagePullSecrets": [
                {"name": "registry-pull"}, {"name": "app-config"}, {"name": "regcred"}]}),
            violations: vec![
                (
                    "spec.imagePullSecrets[1]",
                    vec!["has type \"Opaque\"", "dockerconfigjson"],
                ),
                ("spec.imagePullSecrets[2]", vec!["\"regcred\" not found"]),
            ],
            notices: vec![],
        },
        Case {
            name: "ExternalSecret v1 declares the key",
            spec: json!({"containers": [env_ref("payments-credentials", "api-key")]}),
            violations: vec![],
            notices: vec![(
                "spec.containers[0].env[1].valueFrom.secretKeyRef",
                vec!["produced by ExternalSecret payments"],
            )],
        },
        Case {
            name: "ExternalSecret v1beta1 that drops the username key",
            spec: json!({"containers": [env_ref("legacy-db", "username")]}),
            violations: vec![(
                "spec.containers[0].env[1].valueFrom.secretKeyRef",
                vec![
                    "ExternalSecret legacy-db will produce secret \"legacy-db\" with keys \"password\", not \"username\"",
                ],
            )],
            notices: vec![],
        },
        Case {
            name: "ExternalSecret with dataFrom: keys unknown, allowed with a notice",
            spec: json!({"containers": [env_ref("bulk-config", "anything")]}),
            violations: vec![],
            notices: vec![(
                "spec.containers[0].env[1].valueFrom.secretKeyRef",
                vec!["cannot be verified", "spec.dataFrom"],
            )],
        },
        Case {
            name: "SealedSecret key present and missing",
            spec: json!({"containers": [container(json!({"env": [
                {"name": "U", "valueFrom": {"secretKeyRef": {"name": "smtp", "key": "user"}}},
                {"name": "H", "valueFrom": {"secretKeyRef": {"name": "smtp", "key": "host"}}}]}))]}),
            violations: vec![(
                "spec.containers[0].env[1].valueFrom.secretKeyRef",
                vec!["SealedSecret smtp will produce", "not \"host\""],
            )],
            notices: vec![(
                "spec.containers[0].env[0].valueFrom.secretKeyRef",
                vec!["SealedSecret smtp"],
            )],
        },
        Case {
            name: "Certificate secret mounted, and a key it never has",
            spec: json!({"containers": [container(json!({}))], "volumes": [
                {"name": "tls", "secret": {"secretName": "web-tls"}},
                {"name": "pem", "secret": {"secretName": "web-tls", "items": [{"key": "tls.pem", "path": "x"}]}}]}),
            violations: vec![(
                "spec.volumes[1].secret.items[0]",
                vec!["Certificate web will produce", "not \"tls.pem\""],
            )],
            notices: vec![("spec.volumes[0].secret", vec!["Certificate web"])],
        },
        Case {
            name: "init and ephemeral containers are read too",
            spec: json!({"initContainers": [env_ref("nope-init", "k")], "containers": [container(json!({}))],
                "ephemeralContainers": [{"name": "dbg", "image": "busybox", "envFrom": [{"secretRef": {"name": "nope-debug"}}]}]}),
            violations: vec![
                (
                    "spec.initContainers[0].env[1].valueFrom.secretKeyRef",
                    vec!["\"nope-init\" not found"],
                ),
                (
                    "spec.ephemeralContainers[0].envFrom[0].secretRef",
                    vec!["\"nope-debug\" not found"],
                ),
            ],
            notices: vec![],
        },
    ]
}

fn check(decision: &Decision, case: &Case) {
    let got: Vec<(&str, &str)> = decision
        .denied_by
        .iter()
        .map(|v| {
            assert_eq!(v.rule.as_str(), "secret-ref", "{}", case.name);
            (v.path.as_str(), v.message.as_str())
        })
        .collect();
    assert_eq!(got.len(), case.violations.len(), "{}: {got:#?}", case.name);
    for ((path, message), (want_path, words)) in got.iter().zip(&case.violations) {
        assert_eq!(path, want_path, "{}", case.name);
        for word in words {
            assert!(
                message.contains(word),
                "{}: {word:?} not in {message:?}",
                case.name
            );
        }
    }
    assert_eq!(
        decision.notices.len(),
        case.notices.len(),
        "{}: {:#?}",
        case.name,
        decision.notices
    );
    for (notice, (want_path, words)) in decision.notices.iter().zip(&case.notices) {
        assert_eq!(&notice.path, want_path, "{}", case.name);
        for word in words {
            assert!(
                notice.message.contains(word),
                "{}: {word:?} not in {:?}",
                case.name,
                notice.message
            );
        }
    }
}

#[test]
fn pod_references_table() {
    let engine = engine("");
    for case in cases() {
        let decision = decide(&engine, "", "Pod", "shop", &pod(case.spec.clone()));
        check(&decision, &case);
    }
}

#[test]
fn the_same_references_in_a_deployment_carry_template_paths() {
    let engine = engine("");
    for case in cases() {
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "shop"},
            "spec": {"template": {"spec": case.spec.clone()}}});
        let decision = decide(&engine, "apps", "Deployment", "shop", &deployment);
        // Every path moves under spec.template.
        let got: Vec<String> = decision.denied_by.iter().map(|v| v.path.clone()).collect();
        let want: Vec<String> = case
            .violations
            .iter()
            .map(|(p, _)| p.replacen("spec.", "spec.template.spec.", 1))
            .collect();
        assert_eq!(got, want, "{}", case.name);
    }
}

#[test]
fn wrong_namespace_resolves_nothing() {
    // The same pod in "billing" cannot see shop's Secrets, and can see stripe-key.
    let engine = engine("");
    let decision = decide(
        &engine,
        "",
        "Pod",
        "billing",
        &pod(json!({"containers": [env_ref("db-credentials", "password")]})),
    );
    assert_eq!(decision.denied_by.len(), 1);
    assert!(
        decision.denied_by[0]
            .message
            .contains("exists in namespace \"shop\"")
    );
    let decision = decide(
        &engine,
        "",
        "Pod",
        "billing",
        &pod(json!({"containers": [env_ref("stripe-key", "key")]})),
    );
    assert!(decision.allowed());
}

#[test]
fn warn_mode_keeps_the_request_allowed() {
    let engine = engine("mode: warn");
    let decision = decide(
        &engine,
        "",
        "Pod",
        "shop",
        &pod(json!({"containers": [env_ref("nope", "k")]})),
    );
    assert!(decision.allowed());
    assert_eq!(decision.warnings.len(), 1);
    assert_eq!(decision.warnings[0].rule.as_str(), "secret-ref");
}

#[test]
fn without_inventory_the_message_says_so() {
    let engine = Engine::new(Policy::default()).unwrap();
    let decision = decide(
        &engine,
        "",
        "Pod",
        "shop",
        &pod(json!({"containers": [env_ref("db", "k")]})),
    );
    let message = &decision
        .denied_by
        .iter()
        .find(|v| v.rule.as_str() == "secret-ref")
        .unwrap()
        .message;
    assert!(message.contains("no --inventory given"), "{message}");
}

#[test]
fn suggestions_are_bounded_per_request() {
    // Thousands of missing references: every one is reported, only the first few get the
    // (costly) "did you mean" search.
    let engine = engine("");
    let env: Vec<Value> = (0..2000)
        .map(|i| json!({"name": format!("V{i}"), "valueFrom": {"secretKeyRef": {"name": format!("db-credential{}", i % 10), "key": "k"}}}))
        .collect();
    let decision = decide(
        &engine,
        "",
        "Pod",
        "shop",
        &pod(json!({"containers": [container(json!({"env": env}))]})),
    );
    assert_eq!(decision.denied_by.len(), 2000);
    let suggested = decision
        .denied_by
        .iter()
        .filter(|v| v.message.contains("did you mean"))
        .count();
    assert_eq!(suggested, 20);
}
