//! The admission path with cluster state (Secrets, ExternalSecrets, SealedSecrets, Certificates
//! and a Kafka ConfigMap from manifests) and warn mode for one rule, so that the secret-ref
//! lookups, typo suggestions, ConfigMap-sourced env expansion and warnings are reached too.
#![no_main]

use std::path::Path;
use std::sync::{Arc, LazyLock};

use applyguard::admission::respond;
use applyguard::engine::Engine;
use applyguard::inventory::manifests::{ManifestInventory, parse_documents};
use applyguard::policy::Policy;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const SHOP: &str = include_str!("../../tests/fixtures/inventory/shop.yaml");
const KAFKA_CONFIG: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: kafka-env, namespace: shop}
data:
  KAFKA_CFG_LISTENERS: "PLAINTEXT://:9092,CONTROLLER://:9093"
  KAFKA_CFG_LISTENER_SECURITY_PROTOCOL_MAP: "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  KAFKA_BOOTSTRAP_SERVERS: "$(HOST):9092"
  HOST: kafka-0.kafka
  server.properties: |
    listeners=SASL_SSL://:9093
    security.protocol=SASL_PLAINTEXT
"#;

static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    let mut objects = parse_documents(SHOP, Path::new("shop.yaml")).expect("shop.yaml parses");
    objects.extend(parse_documents(KAFKA_CONFIG, Path::new("kafka.yaml")).expect("parses"));
    let inventory =
        ManifestInventory::from_objects(objects.iter(), "shop", "the fuzz inventory".to_string());
    let policy = Policy::from_yaml("rules:\n  root-container: {mode: warn}\n", "fuzz")
        .expect("the fuzz policy parses");
    Engine::with_inventory(policy, Arc::new(inventory)).expect("the fuzz policy builds")
});

fuzz_target!(|data: &[u8]| {
    if let Ok(reply) = respond(&ENGINE, data) {
        common::check_reply(data, &reply);
    }
    for review in common::wrapped_reviews(data) {
        if let Ok(reply) = respond(&ENGINE, &review) {
            common::check_reply(&review, &reply);
        }
    }
});
