//! Rule plaintext-kafka, table-driven across its sources: container env (direct, from
//! ConfigMaps by key and by envFrom with a prefix, `$(VAR)`-expanded), command and args,
//! ConfigMaps (properties files and env-style keys), and Strimzi Kafka resources.

use std::sync::Arc;

use applyguard::engine::{Decision, Engine, Request};
use applyguard::inventory::manifests::ManifestInventory;
use applyguard::policy::Policy;
use kube::core::admission::Operation;
use serde_json::{Value, json};

fn inventory() -> ManifestInventory {
    let objects = [
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kafka-client", "namespace": "stream"},
            "data": {"SECURITY_PROTOCOL": "PLAINTEXT", "BOOTSTRAP_SERVERS": "kafka:9092", "protocol": "SASL_PLAINTEXT"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kafka-tls", "namespace": "stream"},
            "data": {"protocol": "SASL_SSL"}}),
    ];
    ManifestInventory::from_objects(objects.iter(), "default", "test inventory".into())
}

fn engine(extra: &str) -> Engine {
    let config = format!(
        "rules:\n  root-container: {{mode: off}}\n  placeholder-image: {{mode: off}}\n  secret-ref: {{mode: off}}\n  plaintext-kafka: {{mode: enforce{extra}}}\n"
    );
    Engine::with_inventory(
        Policy::from_yaml(&config, "test").unwrap(),
        Arc::new(inventory()),
    )
    .unwrap()
}

/// A pod whose only container has this env (name, value) list plus `extra` fields.
fn pod_env(env: &[(&str, &str)], extra: Value) -> (&'static str, &'static str, Value) {
    let env: Vec<Value> = env
        .iter()
        .map(|(n, v)| json!({"name": n, "value": v}))
        .collect();
    let mut container = json!({"name": "kafka", "image": "bitnami/kafka:3.7", "env": env});
    if let (Some(c), Some(extra)) = (container.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    ("", "Pod", json!({"spec": {"containers": [container]}}))
}

fn config_map(data: Value) -> (&'static str, &'static str, Value) {
    ("", "ConfigMap", json!({"data": data}))
}

fn strimzi(listeners: Value) -> (&'static str, &'static str, Value) {
    (
        "kafka.strimzi.io",
        "Kafka",
        json!({"spec": {"kafka": {"replicas": 3, "listeners": listeners}}}),
    )
}

struct Case {
    name: &'static str,
    input: (&'static str, &'static str, Value),
    /// (path, words in the message)
    violations: Vec<(&'static str, &'static [&'static str])>,
    notices: usize,
}

fn case(
    name: &'static str,
    input: (&'static str, &'static str, Value),
    violations: Vec<(&'static str, &'static [&'static str])>,
) -> Case {
    Case {
        name,
        input,
        violations,
        notices: 0,
    }
}

const E0: &str = "spec.containers[0].env[0].value";
const E1: &str = "spec.containers[0].env[1].value";
const E2: &str = "spec.containers[0].env[2].value";

fn cases() -> Vec<Case> {
    vec![
        case(
            "SASL_SSL client",
            pod_env(
                &[
                    ("KAFKA_BOOTSTRAP_SERVERS", "kafka:9093"),
                    ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
                ],
                json!({}),
            ),
            vec![],
        ),
        case(
            "SSL client",
            pod_env(
                &[
                    ("KAFKA_BOOTSTRAP_SERVERS", "kafka:9093"),
                    ("KAFKA_SECURITY_PROTOCOL", "SSL"),
                ],
                json!({}),
            ),
            vec![],
        ),
        case(
            "PLAINTEXT client",
            pod_env(
                &[
                    ("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"),
                    ("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
                ],
                json!({}),
            ),
            vec![(
                E1,
                &[
                    "container \"kafka\"",
                    "KAFKA_SECURITY_PROTOCOL is PLAINTEXT",
                ],
            )],
        ),
        case(
            "SASL_PLAINTEXT client, odd case and spaces",
            pod_env(
                &[
                    ("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"),
                    ("KAFKA_SECURITY_PROTOCOL", "  sasl_Plaintext "),
                ],
                json!({}),
            ),
            vec![(E1, &["is sasl_Plaintext"])],
        ),
        case(
            "Bitnami plaintext listener",
            pod_env(&[("KAFKA_CFG_LISTENERS", "PLAINTEXT://:9092")], json!({})),
            vec![(
                E0,
                &["KAFKA_CFG_LISTENERS listener \"PLAINTEXT://:9092\" uses PLAINTEXT"],
            )],
        ),
        case(
            "SSL and SASL_SSL listeners",
            pod_env(
                &[("KAFKA_LISTENERS", "SASL_SSL://:9093,SSL://:9094")],
                json!({}),
            ),
            vec![],
        ),
        case(
            "custom listener mapped to PLAINTEXT",
            pod_env(
                &[
                    (
                        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                        "INTERNAL:PLAINTEXT,EXTERNAL:SSL",
                    ),
                    ("KAFKA_LISTENERS", "INTERNAL://:9092,EXTERNAL://:9094"),
                ],
                json!({}),
            ),
            vec![(E1, &["listener \"INTERNAL://:9092\" uses PLAINTEXT"])],
        ),
        case(
            "custom listener mapped to SSL",
            pod_env(
                &[
                    ("KAFKA_CFG_LISTENER_SECURITY_PROTOCOL_MAP", "BROKER:SSL"),
                    ("KAFKA_CFG_LISTENERS", "BROKER://:9093"),
                ],
                json!({}),
            ),
            vec![],
        ),
        case(
            "map with spaces and mixed case",
            pod_env(
                &[
                    (
                        "KAFKA_CFG_LISTENER_SECURITY_PROTOCOL_MAP",
                        " internal : plaintext , External:SASL_SSL ",
                    ),
                    ("KAFKA_CFG_LISTENERS", "internal://:9092, EXTERNAL://:9094"),
                ],
                json!({}),
            ),
            vec![(E1, &["\"internal://:9092\" uses PLAINTEXT"])],
        ),
        case(
            "loopback-only plaintext listeners",
            pod_env(
                &[(
                    "KAFKA_LISTENERS",
                    "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://localhost:9095,PLAINTEXT://[::1]:9096,SSL://:9093",
                )],
                json!({}),
            ),
            vec![],
        ),
        case(
            "0.0.0.0 is not loopback",
            pod_env(
                &[("KAFKA_LISTENERS", "PLAINTEXT://0.0.0.0:9092")],
                json!({}),
            ),
            vec![(E0, &["uses PLAINTEXT"])],
        ),
        case(
            "advertised plaintext listener",
            pod_env(
                &[(
                    "KAFKA_ADVERTISED_LISTENERS",
                    "PLAINTEXT://kafka-0.kafka:9092",
                )],
                json!({}),
            ),
            vec![(E0, &["KAFKA_ADVERTISED_LISTENERS"])],
        ),
        case(
            "inter-broker listener name resolving to PLAINTEXT",
            pod_env(
                &[
                    (
                        "KAFKA_CFG_LISTENER_SECURITY_PROTOCOL_MAP",
                        "REPLICATION:PLAINTEXT,CLIENT:SASL_SSL",
                    ),
                    ("KAFKA_CFG_LISTENERS", "REPLICATION://:9091,CLIENT://:9093"),
                    ("KAFKA_CFG_INTER_BROKER_LISTENER_NAME", "REPLICATION"),
                ],
                json!({}),
            ),
            vec![
                (E1, &["REPLICATION://:9091"]),
                (
                    E2,
                    &["KAFKA_CFG_INTER_BROKER_LISTENER_NAME \"REPLICATION\" resolves to PLAINTEXT"],
                ),
            ],
        ),
        case(
            "security.inter.broker.protocol PLAINTEXT",
            pod_env(
                &[("KAFKA_SECURITY_INTER_BROKER_PROTOCOL", "PLAINTEXT")],
                json!({}),
            ),
            vec![(E0, &["brokers replicate unencrypted"])],
        ),
        case(
            "KRaft controller listener on PLAINTEXT",
            pod_env(
                &[
                    (
                        "KAFKA_CFG_LISTENER_SECURITY_PROTOCOL_MAP",
                        "CONTROLLER:PLAINTEXT,BROKER:SSL",
                    ),
                    ("KAFKA_CFG_LISTENERS", "BROKER://:9093,CONTROLLER://:9094"),
                ],
                json!({}),
            ),
            vec![(E1, &["CONTROLLER://:9094"])],
        ),
        case(
            "two plaintext listeners in one setting: one finding naming both",
            pod_env(
                &[
                    (
                        "KAFKA_CFG_LISTENER_SECURITY_PROTOCOL_MAP",
                        "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,INTERNAL:SASL_PLAINTEXT",
                    ),
                    (
                        "KAFKA_CFG_LISTENERS",
                        "PLAINTEXT://:9092,CONTROLLER://:9093,INTERNAL://:9094,LOCAL://127.0.0.1:9095",
                    ),
                ],
                json!({}),
            ),
            vec![(
                E1,
                &[
                    "listeners \"PLAINTEXT://:9092\" (PLAINTEXT), \"CONTROLLER://:9093\" (PLAINTEXT), \"INTERNAL://:9094\" (SASL_PLAINTEXT) are unencrypted on the network",
                ],
            )],
        ),
        case(
            "plaintext scheme in bootstrap servers",
            pod_env(
                &[(
                    "KAFKA_BOOTSTRAP_SERVERS",
                    "SASL_SSL://a:9093,PLAINTEXT://b:9092",
                )],
                json!({}),
            ),
            vec![(
                E0,
                &["entry \"PLAINTEXT://b:9092\" uses the PLAINTEXT scheme"],
            )],
        ),
        case(
            "two plaintext bootstrap entries: one finding naming both",
            pod_env(
                &[(
                    "KAFKA_BOOTSTRAP_SERVERS",
                    "PLAINTEXT://a:9092,SASL_SSL://b:9093,SASL_PLAINTEXT://c:9094",
                )],
                json!({}),
            ),
            vec![(
                E0,
                &[
                    "entries \"PLAINTEXT://a:9092\" (PLAINTEXT), \"SASL_PLAINTEXT://c:9094\" (SASL_PLAINTEXT) use plaintext schemes",
                ],
            )],
        ),
        case(
            "TLS scheme in bootstrap servers sets the protocol",
            pod_env(
                &[(
                    "SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS",
                    "SASL_SSL://kafka:9093",
                )],
                json!({}),
            ),
            vec![],
        ),
        case(
            "ALLOW_PLAINTEXT_LISTENER yes",
            pod_env(&[("ALLOW_PLAINTEXT_LISTENER", "yes")], json!({})),
            vec![(E0, &["ALLOW_PLAINTEXT_LISTENER=yes"])],
        ),
        case(
            "ALLOW_PLAINTEXT_LISTENER TRUE and 1",
            pod_env(
                &[
                    ("ALLOW_PLAINTEXT_LISTENER", " TRUE "),
                    ("ALLOW_ANONYMOUS_LOGIN", "1"),
                ],
                json!({}),
            ),
            vec![
                (E0, &["ALLOW_PLAINTEXT_LISTENER=TRUE"]),
                (E1, &["without authentication"]),
            ],
        ),
        case(
            "ALLOW_PLAINTEXT_LISTENER no",
            pod_env(
                &[
                    ("ALLOW_PLAINTEXT_LISTENER", "no"),
                    ("ALLOW_ANONYMOUS_LOGIN", "false"),
                ],
                json!({}),
            ),
            vec![],
        ),
        case(
            "ZooKeeper anonymous login",
            pod_env(&[("ALLOW_ANONYMOUS_LOGIN", "yes")], json!({})),
            vec![(E0, &["ZooKeeper without authentication"])],
        ),
        case(
            "Kafka's ZooKeeper connection PLAINTEXT",
            pod_env(
                &[
                    ("KAFKA_ZOOKEEPER_PROTOCOL", "PLAINTEXT"),
                    ("KAFKA_ZOOKEEPER_SSL_CLIENT_ENABLE", "false"),
                ],
                json!({}),
            ),
            vec![
                (E0, &["KAFKA_ZOOKEEPER_PROTOCOL is PLAINTEXT"]),
                (E1, &["ZooKeeper connection is unencrypted"]),
            ],
        ),
        case(
            "Kafka's ZooKeeper connection SASL_SSL",
            pod_env(&[("KAFKA_ZOOKEEPER_PROTOCOL", "SASL_SSL")], json!({})),
            vec![],
        ),
        case(
            "Kafka Connect producer PLAINTEXT",
            pod_env(
                &[
                    ("CONNECT_BOOTSTRAP_SERVERS", "kafka:9093"),
                    ("CONNECT_SECURITY_PROTOCOL", "SSL"),
                    ("CONNECT_PRODUCER_SECURITY_PROTOCOL", "PLAINTEXT"),
                ],
                json!({}),
            ),
            vec![(E2, &["CONNECT_PRODUCER_SECURITY_PROTOCOL is PLAINTEXT"])],
        ),
        case(
            "Schema Registry SASL_PLAINTEXT",
            pod_env(
                &[(
                    "SCHEMA_REGISTRY_KAFKASTORE_SECURITY_PROTOCOL",
                    "SASL_PLAINTEXT",
                )],
                json!({}),
            ),
            vec![(E0, &["SCHEMA_REGISTRY_KAFKASTORE_SECURITY_PROTOCOL"])],
        ),
        case(
            "ksqlDB PLAINTEXT",
            pod_env(
                &[
                    ("KSQL_BOOTSTRAP_SERVERS", "kafka:9092"),
                    ("KSQL_SECURITY_PROTOCOL", "PLAINTEXT"),
                ],
                json!({}),
            ),
            vec![(E1, &["KSQL_SECURITY_PROTOCOL"])],
        ),
        case(
            "Spring properties PLAINTEXT",
            pod_env(
                &[
                    ("SPRING_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"),
                    ("SPRING_KAFKA_PROPERTIES_SECURITY_PROTOCOL", "PLAINTEXT"),
                ],
                json!({}),
            ),
            vec![(
                E1,
                &["SPRING_KAFKA_PROPERTIES_SECURITY_PROTOCOL is PLAINTEXT"],
            )],
        ),
        case(
            "Spring SSL",
            pod_env(
                &[
                    ("SPRING_KAFKA_BOOTSTRAP_SERVERS", "kafka:9093"),
                    ("SPRING_KAFKA_SECURITY_PROTOCOL", "SSL"),
                ],
                json!({}),
            ),
            vec![],
        ),
        Case {
            name: "implicit PLAINTEXT default is a warning",
            input: pod_env(
                &[("SPRING_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")],
                json!({}),
            ),
            violations: vec![],
            notices: 1,
        },
        case(
            "security.protocol from a Secret counts as set",
            (
                "",
                "Pod",
                json!({"spec": {"containers": [{"name": "app", "image": "x", "env": [
                {"name": "KAFKA_BOOTSTRAP_SERVERS", "value": "kafka:9093"},
                {"name": "KAFKA_SECURITY_PROTOCOL", "valueFrom": {"secretKeyRef": {"name": "kafka", "key": "protocol"}}}]}]}}),
            ),
            vec![],
        ),
        case(
            "value through configMapKeyRef",
            (
                "",
                "Pod",
                json!({"spec": {"containers": [{"name": "app", "image": "x", "env": [
                {"name": "KAFKA_BOOTSTRAP_SERVERS", "value": "kafka:9093"},
                {"name": "KAFKA_SECURITY_PROTOCOL", "valueFrom": {"configMapKeyRef": {"name": "kafka-client", "key": "protocol"}}}]}]}}),
            ),
            vec![(
                "spec.containers[0].env[1].valueFrom.configMapKeyRef",
                &[
                    "from ConfigMap \"kafka-client\" key \"protocol\"",
                    "SASL_PLAINTEXT",
                ],
            )],
        ),
        case(
            "configMapKeyRef to a TLS value",
            (
                "",
                "Pod",
                json!({"spec": {"containers": [{"name": "app", "image": "x", "env": [
                {"name": "KAFKA_BOOTSTRAP_SERVERS", "value": "kafka:9093"},
                {"name": "KAFKA_SECURITY_PROTOCOL", "valueFrom": {"configMapKeyRef": {"name": "kafka-tls", "key": "protocol"}}}]}]}}),
            ),
            vec![],
        ),
        case(
            "envFrom with a prefix",
            (
                "",
                "Pod",
                json!({"spec": {"containers": [{"name": "app", "image": "x",
                "envFrom": [{"prefix": "KAFKA_", "configMapRef": {"name": "kafka-client"}}]}]}}),
            ),
            vec![(
                "spec.containers[0].envFrom[0].configMapRef",
                &[
                    "KAFKA_SECURITY_PROTOCOL (from ConfigMap \"kafka-client\" key \"SECURITY_PROTOCOL\") is PLAINTEXT",
                ],
            )],
        ),
        Case {
            name: "envFrom without a prefix is not Kafka config",
            input: (
                "",
                "Pod",
                json!({"spec": {"containers": [{"name": "app", "image": "x",
                "envFrom": [{"configMapRef": {"name": "kafka-client"}}]}]}}),
            ),
            violations: vec![],
            notices: 0,
        },
        case(
            "$(VAR) expansion",
            pod_env(
                &[
                    ("PROTO", "PLAINTEXT"),
                    ("KAFKA_SECURITY_PROTOCOL", "$(PROTO)"),
                ],
                json!({}),
            ),
            vec![(E1, &["KAFKA_SECURITY_PROTOCOL is PLAINTEXT"])],
        ),
        case(
            "$$ escapes and later variables do not expand",
            pod_env(
                &[
                    ("KAFKA_SECURITY_PROTOCOL", "$(LATER)"),
                    ("LATER", "PLAINTEXT"),
                    ("KAFKA_SECURITY_INTER_BROKER_PROTOCOL", "$$(LATER)"),
                ],
                json!({}),
            ),
            vec![],
        ),
        case(
            "--security-protocol flags, split and with =",
            pod_env(
                &[("P", "SASL_PLAINTEXT")],
                json!({
                "command": ["kafka-console-consumer"],
                "args": ["--bootstrap-server", "kafka:9092", "--security-protocol", "PLAINTEXT", "--kafka-security-protocol=$(P)", "--producer-security-protocol=SSL"]}),
            ),
            vec![
                (
                    "spec.containers[0].args[3]",
                    &["--security-protocol is PLAINTEXT"],
                ),
                (
                    "spec.containers[0].args[4]",
                    &["--kafka-security-protocol is SASL_PLAINTEXT"],
                ),
            ],
        ),
        case(
            "a flag in args of a container with no environment at all",
            pod_env(
                &[],
                json!({
                "command": ["kafka-console-producer"],
                "args": ["--bootstrap-server", "kafka:9092", "--security-protocol", "PLAINTEXT"]}),
            ),
            vec![(
                "spec.containers[0].args[3]",
                &["--security-protocol is PLAINTEXT"],
            )],
        ),
        case(
            "look-alike variables are not Kafka settings",
            pod_env(
                &[
                    ("MY_PLAINTEXT_MODE", "yes"),
                    ("APP_ALLOW_PLAINTEXT", "true"),
                    ("KAFKA_HEAP_OPTS", "-Dsecurity.protocol=PLAINTEXT"),
                    ("SECURITY_PROTOCOL", "PLAINTEXT"),
                    ("LISTENERS", "PLAINTEXT://:9092"),
                ],
                json!({}),
            ),
            vec![],
        ),
        case(
            "Strimzi listener with tls false next to tls true",
            strimzi(json!([
                {"name": "plain", "port": 9092, "type": "internal", "tls": false},
                {"name": "tls", "port": 9093, "type": "internal", "tls": true}])),
            vec![(
                "spec.kafka.listeners[0].tls",
                &["Strimzi listener \"plain\" on port 9092 has tls: false"],
            )],
        ),
        case(
            "Strimzi all TLS",
            strimzi(
                json!([{"name": "tls", "port": 9093, "type": "internal", "tls": true, "authentication": {"type": "tls"}}]),
            ),
            vec![],
        ),
        case(
            "properties file with continuations and comments",
            config_map(json!({"server.properties":
                "# listeners=PLAINTEXT://:9092\n! security.inter.broker.protocol=PLAINTEXT\nlistener.security.protocol.map=INTERNAL:PLAINTEXT,\\\n   EXTERNAL:SASL_SSL\nlisteners = EXTERNAL://:9094,\\\n    INTERNAL://:9092\n"})),
            vec![(
                "data[server.properties]",
                &["listeners (line 5) listener \"INTERNAL://:9092\" uses PLAINTEXT"],
            )],
        ),
        Case {
            name: "client properties relying on the default",
            input: config_map(
                json!({"client.properties": "bootstrap.servers=kafka:9092\nacks=all\n"}),
            ),
            violations: vec![],
            notices: 1,
        },
        case(
            "client properties with SASL_SSL",
            config_map(
                json!({"client.properties": "bootstrap.servers=kafka:9093\nsecurity.protocol=SASL_SSL\n"}),
            ),
            vec![],
        ),
        case(
            "env-style ConfigMap for envFrom",
            config_map(
                json!({"KAFKA_CFG_LISTENERS": "PLAINTEXT://:9092", "ALLOW_PLAINTEXT_LISTENER": "yes", "LOG_LEVEL": "info"}),
            ),
            vec![
                (
                    "data.ALLOW_PLAINTEXT_LISTENER",
                    &["ALLOW_PLAINTEXT_LISTENER=yes"],
                ),
                ("data.KAFKA_CFG_LISTENERS", &["uses PLAINTEXT"]),
            ],
        ),
        case(
            "unrelated ConfigMap",
            config_map(
                json!({"app.yaml": "kafka: {protocol: PLAINTEXT}", "notes.properties": "plaintext=yes\n"}),
            ),
            vec![],
        ),
    ]
}

fn decide(engine: &Engine, (group, kind, object): &(&str, &str, Value)) -> Decision {
    engine
        .decide(&Request {
            group,
            kind,
            operation: &Operation::Create,
            name: "",
            namespace: "stream",
            object: Some(object),
            old_object: None,
            sub_resource: None,
        })
        .unwrap()
}

#[test]
fn plaintext_kafka_table() {
    let engine = engine("");
    let all = cases();
    assert!(all.len() >= 30, "{} cases", all.len());
    for case in all {
        let decision = decide(&engine, &case.input);
        let got: Vec<(&str, &str)> = decision
            .denied_by
            .iter()
            .map(|v| {
                assert_eq!(v.rule.as_str(), "plaintext-kafka");
                assert!(!v.fix.is_empty());
                (v.path.as_str(), v.message.as_str())
            })
            .collect();
        assert_eq!(got.len(), case.violations.len(), "{}: {got:#?}", case.name);
        for ((path, message), (want_path, words)) in got.iter().zip(&case.violations) {
            assert_eq!(path, want_path, "{}: {message}", case.name);
            for word in *words {
                assert!(
                    message.contains(word),
                    "{}: {word:?} not in {message:?}",
                    case.name
                );
            }
        }
        assert_eq!(
            decision.notices.len(),
            case.notices,
            "{}: {:#?}",
            case.name,
            decision.notices
        );
    }
}

#[test]
fn implicit_client_default_can_be_enforced_or_turned_off() {
    let input = pod_env(&[("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")], json!({}));
    let warn = decide(&engine(""), &input);
    assert!(warn.allowed());
    assert!(
        warn.notices[0]
            .message
            .contains("uses the PLAINTEXT default"),
        "{}",
        warn.notices[0].message
    );
    let enforce = decide(&engine(", implicitClientDefault: enforce"), &input);
    assert!(!enforce.allowed());
    assert_eq!(enforce.denied_by[0].path, E0);
    assert!(
        enforce.denied_by[0]
            .message
            .contains("KAFKA_BOOTSTRAP_SERVERS is set but security.protocol is set nowhere")
    );
    let off = decide(&engine(", implicitClientDefault: off"), &input);
    assert!(off.allowed() && off.notices.is_empty());
}

#[test]
fn strimzi_v1_and_workload_templates() {
    let engine = engine("");
    let d = decide(
        &engine,
        &strimzi(json!([{"name": "external", "port": 9094, "type": "loadbalancer", "tls": false}])),
    );
    assert_eq!(d.denied_by.len(), 1);
    // A StatefulSet carries the same checks under its template path.
    let sts = json!({"spec": {"template": {"spec": {"containers": [{"name": "kafka", "image": "bitnami/kafka:3.7",
        "env": [{"name": "ALLOW_PLAINTEXT_LISTENER", "value": "yes"}]}]}}}});
    let d = decide(&engine, &("apps", "StatefulSet", sts));
    assert_eq!(
        d.denied_by[0].path,
        "spec.template.spec.containers[0].env[0].value"
    );
}

#[test]
fn configmap_update_without_data_change_is_allowed() {
    let engine = engine("");
    let old =
        json!({"data": {"ALLOW_PLAINTEXT_LISTENER": "yes"}, "metadata": {"labels": {"a": "1"}}});
    let new =
        json!({"data": {"ALLOW_PLAINTEXT_LISTENER": "yes"}, "metadata": {"labels": {"a": "2"}}});
    let d = engine
        .decide(&Request {
            group: "",
            kind: "ConfigMap",
            operation: &Operation::Update,
            name: "",
            namespace: "stream",
            object: Some(&new),
            old_object: Some(&old),
            sub_resource: None,
        })
        .unwrap();
    assert!(d.allowed());
}
