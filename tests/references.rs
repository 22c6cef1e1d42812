//! secret-ref beyond pods: Ingress TLS (with cert-manager Certificates and ingress-shim),
//! Gateway certificateRefs (with ReferenceGrants and Passthrough), ExternalSecret stores, and
//! workloads whose producer cannot produce. Each case asserts the verdict, the field path and
//! the words of the message.

use std::sync::Arc;

use applyguard::engine::{Decision, Engine, Request};
use applyguard::exemptions::Caller;
use applyguard::inventory::manifests::{ManifestInventory, parse_documents};
use applyguard::policy::Policy;
use kube::core::admission::Operation;
use serde_json::{Value, json};

/// The cluster the cases are judged against.
const CLUSTER: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: shop-tls, namespace: shop}
type: kubernetes.io/tls
data: {tls.crt: Y2VydA==, tls.key: a2V5}
---
apiVersion: v1
kind: Secret
metadata: {name: opaque-tls, namespace: shop}
type: Opaque
data: {tls.crt: Y2VydA==, tls.key: a2V5}
---
apiVersion: v1
kind: Secret
metadata: {name: half-tls, namespace: shop}
type: Opaque
data: {tls.crt: Y2VydA==}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: api, namespace: shop}
spec: {secretName: api-tls, issuerRef: {name: letsencrypt, kind: ClusterIssuer}, dnsNames: [api.shop.example]}
---
apiVersion: v1
kind: Secret
metadata: {name: wildcard-tls, namespace: certs}
type: kubernetes.io/tls
data: {tls.crt: Y2VydA==, tls.key: a2V5}
---
apiVersion: v1
kind: Secret
metadata: {name: private-tls, namespace: certs}
type: kubernetes.io/tls
data: {tls.crt: Y2VydA==, tls.key: a2V5}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: edge-reads-wildcard, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: edge}]
  to: [{group: "", kind: Secret, name: wildcard-tls}]
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {name: vault}
spec: {provider: {fake: {data: []}}}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: team-store, namespace: shop}
spec: {provider: {fake: {data: []}}}
status:
  conditions: [{type: Ready, status: "False", reason: InvalidProviderConfig, message: "unable to validate store"}]
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: orders-db, namespace: shop}
spec:
  secretStoreRef: {kind: ClusterSecretStore, name: vault}
  data: [{secretKey: password, remoteRef: {key: orders/db}}]
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: risk-db, namespace: shop}
spec:
  secretStoreRef: {kind: ClusterSecretStore, name: aether-vault}
  data: [{secretKey: password, remoteRef: {key: risk/db}}]
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: team-db, namespace: shop}
spec:
  secretStoreRef: {name: team-store}
  data: [{secretKey: password, remoteRef: {key: team/db}}]
"#;

fn engine() -> Engine {
    let objects = parse_documents(CLUSTER, std::path::Path::new("cluster.yaml")).unwrap();
    let inventory =
        ManifestInventory::from_objects(&objects, "default", "the test cluster".to_string());
    let policy = Policy::from_yaml(
        "rules:\n  root-container: {mode: off}\n  placeholder-image: {mode: off}\n",
        "test",
    )
    .unwrap();
    Engine::with_inventory(policy, Arc::new(inventory)).unwrap()
}

fn decide(engine: &Engine, object: &Value) -> Decision {
    let api_version = object["apiVersion"].as_str().unwrap();
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let annotations = object["metadata"]
        .get("annotations")
        .map(|a| serde_json::from_value(a.clone()).unwrap());
    engine
        .decide_with(
            &Request {
                group,
                kind: object["kind"].as_str().unwrap(),
                operation: &Operation::Create,
                namespace: object["metadata"]["namespace"].as_str().unwrap(),
                name: object["metadata"]["name"].as_str().unwrap(),
                object: Some(object),
                old_object: None,
                sub_resource: None,
            },
            &Caller {
                annotations: annotations.as_ref(),
                ..Caller::default()
            },
        )
        .unwrap()
}

fn ingress(tls: Value, annotations: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
        "spec": {"ingressClassName": "nginx", "tls": tls, "rules": [{"host": "shop.example",
            "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
}

fn gateway(namespace: &str, listeners: Value) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "edge", "namespace": namespace},
        "spec": {"gatewayClassName": "envoy", "listeners": listeners}})
}

fn https(refs: Value) -> Value {
    json!({"name": "https", "protocol": "HTTPS", "port": 443, "tls": {"mode": "Terminate", "certificateRefs": refs}})
}

fn external_secret(store: Value) -> Value {
    json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": "app", "namespace": "shop"},
        "spec": {"secretStoreRef": store, "target": {"name": "app"},
            "data": [{"secretKey": "token", "remoteRef": {"key": "app"}}]}})
}

fn deployment_reading(secret: &str, key: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "risk", "namespace": "shop"},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "ghcr.io/acme/risk:1",
            "env": [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}]}]}}}})
}

struct Case {
    name: &'static str,
    object: Value,
    /// (field path, words the message must contain) per violation, in order.
    violations: Vec<(&'static str, Vec<&'static str>)>,
    /// Words each notice must contain, in order.
    notices: Vec<Vec<&'static str>>,
}

fn cases() -> Vec<Case> {
    let none = json!({});
    vec![
        Case {
            name: "Ingress with an existing kubernetes.io/tls Secret",
            object: ingress(
                json!([{"hosts": ["shop.example"], "secretName": "shop-tls"}]),
                none.clone(),
            ),
            violations: vec![],
            notices: vec![],
        },
        Case {
            name: "Ingress with an Opaque Secret holding tls.crt and tls.key",
            object: ingress(
                json!([{"hosts": ["shop.example"], "secretName": "opaque-tls"}]),
                none.clone(),
            ),
            violations: vec![],
            notices: vec![],
        },
        Case {
            name: "Ingress tls entry without secretName uses the default certificate",
            object: ingress(json!([{"hosts": ["shop.example"]}]), none.clone()),
            violations: vec![],
            notices: vec![],
        },
        Case {
            name: "Ingress TLS Secret a Certificate produces",
            object: ingress(
                json!([{"hosts": ["api.shop.example"], "secretName": "api-tls"}]),
                none.clone(),
            ),
            violations: vec![],
            notices: vec![vec!["produced by Certificate api", "api-tls"]],
        },
        Case {
            name: "Ingress with cert-manager's ingress-shim annotation",
            object: ingress(
                json!([{"hosts": ["risk.shop.example"], "secretName": "risk-service-tls"}]),
                json!({"cert-manager.io/cluster-issuer": "letsencrypt"}),
            ),
            violations: vec![],
            notices: vec![vec![
                "ingress-shim",
                "cert-manager.io/cluster-issuer: letsencrypt",
            ]],
        },
        Case {
            name: "Ingress TLS Secret nothing defines",
            object: ingress(
                json!([{"hosts": ["shop.example"], "secretName": "shop-tls"},
                       {"hosts": ["risk.shop.example"], "secretName": "risk-service-tls"}]),
                json!({"kubernetes.io/tls-acme": "false"}),
            ),
            violations: vec![(
                "spec.tls[1].secretName",
                vec![
                    "secret \"risk-service-tls\" not found in namespace \"shop\"",
                    "no Certificate",
                    "cert-manager.io/cluster-issuer",
                ],
            )],
            notices: vec![],
        },
        Case {
            name: "Ingress TLS Secret without tls.key",
            object: ingress(
                json!([{"hosts": ["shop.example"], "secretName": "half-tls"}]),
                none.clone(),
            ),
            violations: vec![(
                "spec.tls[0].secretName",
                vec![
                    "has no key \"tls.key\"",
                    "a TLS Secret needs \"tls.crt\" and \"tls.key\"",
                ],
            )],
            notices: vec![],
        },
        Case {
            name: "Ingress naming a Secret in another namespace (Contour, HAProxy): unchecked, said",
            object: ingress(json!([{"secretName": "certs/wildcard-tls"}]), none.clone()),
            violations: vec![],
            notices: vec![vec![
                "names a Secret in another namespace",
                "TLSCertificateDelegation",
            ]],
        },
        Case {
            name: "Gateway with its own certificate",
            object: gateway("shop", json!([https(json!([{"name": "shop-tls"}]))])),
            violations: vec![],
            notices: vec![],
        },
        Case {
            name: "Gateway reading another namespace's Secret under a ReferenceGrant",
            object: gateway(
                "edge",
                json!([https(
                    json!([{"kind": "Secret", "group": "", "name": "wildcard-tls", "namespace": "certs"}])
                )]),
            ),
            violations: vec![],
            notices: vec![],
        },
        Case {
            name: "Gateway reading another namespace's Secret without a ReferenceGrant",
            object: gateway(
                "edge",
                json!([https(
                    json!([{"name": "private-tls", "namespace": "certs"}])
                )]),
            ),
            violations: vec![(
                "spec.listeners[0].tls.certificateRefs[0]",
                vec![
                    "no ReferenceGrant in namespace \"certs\"",
                    "Gateways in namespace \"edge\"",
                    "\"edge-reads-wildcard\"",
                ],
            )],
            notices: vec![],
        },
        Case {
            name: "Gateway Passthrough listener needs no certificate",
            object: gateway(
                "shop",
                json!([{"name": "tls", "protocol": "TLS", "port": 443,
                "tls": {"mode": "Passthrough"}}]),
            ),
            violations: vec![],
            notices: vec![],
        },
        Case {
            name: "Gateway certificate that does not exist",
            object: gateway(
                "shop",
                json!([
                    https(json!([{"name": "shop-tls"}])),
                    https(json!([{"name": "gone-tls"}]))
                ]),
            ),
            violations: vec![(
                "spec.listeners[1].tls.certificateRefs[0]",
                vec!["secret \"gone-tls\" not found in namespace \"shop\""],
            )],
            notices: vec![],
        },
        Case {
            name: "ExternalSecret with an existing ClusterSecretStore",
            object: external_secret(json!({"kind": "ClusterSecretStore", "name": "vault"})),
            violations: vec![],
            notices: vec![],
        },
        Case {
            name: "ExternalSecret whose ClusterSecretStore does not exist",
            object: external_secret(json!({"kind": "ClusterSecretStore", "name": "aether-vault"})),
            violations: vec![(
                "spec.secretStoreRef",
                vec![
                    "ClusterSecretStore aether-vault not found",
                    "will never produce its Secret",
                ],
            )],
            notices: vec![],
        },
        Case {
            name: "ExternalSecret whose SecretStore (the default kind) is in another namespace only",
            object: {
                let mut es = external_secret(json!({"name": "team-store"}));
                es["metadata"]["namespace"] = json!("risk");
                es
            },
            violations: vec![(
                "spec.secretStoreRef",
                vec!["SecretStore team-store not found in namespace \"risk\""],
            )],
            notices: vec![],
        },
        Case {
            name: "ExternalSecret whose SecretStore is not Ready",
            object: external_secret(json!({"name": "team-store"})),
            violations: vec![],
            notices: vec![vec![
                "SecretStore team-store is not Ready",
                "InvalidProviderConfig",
            ]],
        },
        Case {
            name: "workload reading what a working ExternalSecret produces",
            object: deployment_reading("orders-db", "password"),
            violations: vec![],
            notices: vec![vec!["produced by ExternalSecret orders-db"]],
        },
        Case {
            name: "workload reading what an ExternalSecret without a store would produce",
            object: deployment_reading("risk-db", "password"),
            violations: vec![(
                "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef",
                vec![
                    "ExternalSecret risk-db would produce secret \"risk-db\"",
                    "ClusterSecretStore aether-vault does not exist",
                ],
            )],
            notices: vec![],
        },
        Case {
            name: "workload reading what an ExternalSecret with a store that is not Ready produces",
            object: deployment_reading("team-db", "password"),
            violations: vec![],
            notices: vec![vec![
                "comes from ExternalSecret team-db",
                "SecretStore team-store is not Ready",
            ]],
        },
    ]
}

#[test]
fn references_beyond_pods() {
    let engine = engine();
    for case in cases() {
        let decision = decide(&engine, &case.object);
        let got: Vec<(&str, &str)> = decision
            .denied_by
            .iter()
            .map(|v| (v.path.as_str(), v.message.as_str()))
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
        assert!(
            decision
                .denied_by
                .iter()
                .all(|v| v.rule.as_str() == "secret-ref")
        );
        let notices: Vec<&str> = decision
            .notices
            .iter()
            .map(|n| n.message.as_str())
            .collect();
        assert_eq!(
            notices.len(),
            case.notices.len(),
            "{}: {notices:#?}",
            case.name
        );
        for (message, words) in notices.iter().zip(&case.notices) {
            for word in words {
                assert!(
                    message.contains(word),
                    "{}: {word:?} not in {message:?}",
                    case.name
                );
            }
        }
    }
}

#[test]
fn every_violation_carries_the_value_and_a_fix() {
    let engine = engine();
    let d = decide(
        &engine,
        &gateway(
            "edge",
            json!([https(
                json!([{"name": "private-tls", "namespace": "certs"}])
            )]),
        ),
    );
    assert_eq!(d.denied_by[0].value, "certs/private-tls");
    assert!(
        d.denied_by[0]
            .fix
            .contains("create a ReferenceGrant in namespace \"certs\""),
        "{}",
        d.denied_by[0].fix
    );
    let d = decide(
        &engine,
        &external_secret(json!({"kind": "ClusterSecretStore", "name": "aether-vault"})),
    );
    assert_eq!(d.denied_by[0].value, "ClusterSecretStore/aether-vault");
    assert!(
        d.denied_by[0]
            .fix
            .contains("kubectl get clustersecretstores"),
        "{}",
        d.denied_by[0].fix
    );
    let d = decide(
        &engine,
        &ingress(json!([{"secretName": "risk-service-tls"}]), json!({})),
    );
    assert_eq!(d.denied_by[0].value, "risk-service-tls");
    assert!(
        d.denied_by[0].fix.contains("kubectl create secret tls"),
        "{}",
        d.denied_by[0].fix
    );
}

#[test]
fn warn_mode_and_updates_that_leave_the_spec_alone() {
    let objects = parse_documents(CLUSTER, std::path::Path::new("cluster.yaml")).unwrap();
    let inventory = ManifestInventory::from_objects(&objects, "default", "t".to_string());
    let engine = Engine::with_inventory(
        Policy::from_yaml("rules:\n  secret-ref: {mode: warn}\n", "t").unwrap(),
        Arc::new(inventory),
    )
    .unwrap();
    let bad = ingress(json!([{"secretName": "risk-service-tls"}]), json!({}));
    let d = decide(&engine, &bad);
    assert!(d.allowed());
    assert_eq!(d.warnings.len(), 1);
    // Relabelling an Ingress that was admitted before its Secret went is never blocked.
    let enforcing = self::engine();
    let mut relabelled = bad.clone();
    relabelled["metadata"]["labels"] = json!({"team": "risk"});
    let d = enforcing
        .decide(&Request {
            group: "networking.k8s.io",
            kind: "Ingress",
            operation: &Operation::Update,
            namespace: "shop",
            name: "web",
            object: Some(&relabelled),
            old_object: Some(&bad),
            sub_resource: None,
        })
        .unwrap();
    assert!(d.allowed(), "{:?}", d.denied_by);
}
