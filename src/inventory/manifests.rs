//! A static inventory loaded from YAML/JSON manifests (files or directories; multi-document
//! YAML; `List` kinds), for `review`, `scan` and `serve --inventory`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::references::readings;

use super::{
    Catalog, ConfigMapInfo, CustomKind, Inventory, KeySet, ProducedKeys, Producer, Readers,
    Readiness, ReferenceGrant, SecretInfo, StoreLookup, StoreRef, producer_from_object, store_info,
};

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: no *.yaml, *.yml or *.json files found")]
    Empty { path: PathBuf },
}

/// Files under `path`: the file itself, or every `*.yaml`, `*.yml`, `*.json` below a directory
/// (recursively, sorted, hidden entries skipped).
pub fn manifest_files(path: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let meta = std::fs::metadata(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| ManifestError::Read {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| ManifestError::Read {
                path: dir.clone(),
                source,
            })?;
            let p = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                files.push(p);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(ManifestError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(files)
}

/// Parses every document of a YAML (or JSON) text into JSON values, expanding `List` kinds.
/// Empty documents are skipped.
pub fn parse_documents(text: &str, origin: &Path) -> Result<Vec<Value>, ManifestError> {
    let mut out = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| ManifestError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        expand_lists(value, &mut out);
    }
    Ok(out)
}

fn expand_lists(value: Value, out: &mut Vec<Value>) {
    match value {
        Value::Null => {}
        Value::Object(mut map)
            if map
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k == "List" || k.ends_with("List"))
                && map.get("items").is_some_and(Value::is_array) =>
        {
            if let Some(Value::Array(items)) = map.remove("items") {
                for item in items {
                    expand_lists(item, out);
                }
            }
        }
        other => out.push(other),
    }
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, segment| v.get(segment))
        .and_then(Value::as_str)
}

fn keys_of(value: Option<&Value>) -> impl Iterator<Item = String> + '_ {
    value
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.keys().cloned())
}

/// Adds one object to a catalog if it is a kind the inventory keeps. Returns whether it was kept.
pub fn add_object(catalog: &mut Catalog, object: &Value, default_namespace: &str) -> bool {
    let (Some(api_version), Some(kind)) =
        (str_at(object, &["apiVersion"]), str_at(object, &["kind"]))
    else {
        return false;
    };
    let Some(name) = str_at(object, &["metadata", "name"]).filter(|n| !n.is_empty()) else {
        return false;
    };
    let namespace = str_at(object, &["metadata", "namespace"])
        .filter(|n| !n.is_empty())
        .unwrap_or(default_namespace);
    match (api_version, kind) {
        ("v1", "Secret") => {
            // Only key names are kept: values (data, stringData) are never copied.
            let keys: KeySet = keys_of(object.get("data"))
                .chain(keys_of(object.get("stringData")))
                .collect();
            let secret_type = str_at(object, &["type"]).unwrap_or("Opaque").to_string();
            // Defined twice in one set: kubectl apply keeps whichever comes last, so only the
            // keys every definition has are certain to be there.
            let keys = match catalog.secret(namespace, name) {
                Some(earlier) if catalog.defined_again("Secret", namespace, name) => {
                    earlier.keys.iter().filter(|k| keys.contains(k)).collect()
                }
                _ => {
                    catalog.defined_again("Secret", namespace, name);
                    keys
                }
            };
            catalog.put_secret(namespace, name, SecretInfo { secret_type, keys });
            true
        }
        ("v1", "ConfigMap") => {
            let data = object
                .get("data")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            let binary_keys = keys_of(object.get("binaryData")).collect();
            catalog.put_config_map(namespace, name, ConfigMapInfo { data, binary_keys });
            true
        }
        ("v1", "Namespace") => {
            let labels: BTreeMap<String, String> = object
                .get("metadata")
                .and_then(|m| m.get("labels"))
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            catalog.put_namespace(name, labels);
            true
        }
        _ => match CustomKind::from_type(api_version, kind) {
            Some(CustomKind::Producer(kind)) => {
                let Some(mut producer) = producer_from_object(kind, object, default_namespace)
                else {
                    return false;
                };
                let again = catalog.defined_again(kind.kind(), namespace, name);
                if again && let Some(earlier) = catalog.producer(kind, namespace, name) {
                    producer = merge_duplicate(earlier, producer);
                }
                catalog.put_producer(producer);
                true
            }
            Some(CustomKind::Store(kind)) => {
                catalog.put_store(kind, namespace, name, store_info(object));
                true
            }
            Some(CustomKind::ReferenceGrant) => match ReferenceGrant::from_object(object) {
                Some(grant) => {
                    catalog.put_grant(namespace, grant);
                    true
                }
                None => false,
            },
            Some(CustomKind::Reader(kind)) => match readings(kind.workload(), object) {
                Some(readings) => {
                    catalog.put_readings(kind, namespace, name, readings);
                    true
                }
                None => false,
            },
            None => false,
        },
    }
}

/// One producer defined twice in a set (two files): whichever `kubectl apply` reads last wins,
/// so a key counts only if both definitions declare it, and a target both agree on.
fn merge_duplicate(earlier: &Producer, later: Producer) -> Producer {
    // If either definition's keys are decided at run time, so are the merged ones: claiming
    // the known ones only would report keys the other definition may produce as missing.
    let keys = match (&earlier.keys, later.keys) {
        (ProducedKeys::Known(a), ProducedKeys::Known(b)) => {
            ProducedKeys::Known(a.intersection(&b).cloned().collect())
        }
        (ProducedKeys::Unknown(why), _) => ProducedKeys::Unknown(why.clone()),
        (_, unknown) => unknown,
    };
    Producer {
        keys,
        store: later.store.or_else(|| earlier.store.clone()),
        ..later
    }
}

/// Cluster state loaded once from manifests.
#[derive(Debug, Default)]
pub struct ManifestInventory {
    catalog: Catalog,
    source: String,
}

impl ManifestInventory {
    /// Loads every path (files or directories). Objects without a namespace go to
    /// `default_namespace`. Any unreadable or unparsable file is an error: an inventory that
    /// silently lost a file would report Secrets as missing.
    pub fn load(paths: &[PathBuf], default_namespace: &str) -> Result<Self, ManifestError> {
        let mut inventory = ManifestInventory {
            catalog: Catalog::default(),
            source: format!(
                "the manifests given with --inventory: {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut files = Vec::new();
        for path in paths {
            files.extend(manifest_files(path)?);
        }
        // Parsing is most of the start-up (100k Secrets + 100k ConfigMaps: ~3 s on one core),
        // so files are read and parsed on every core, a few at a time so that only those few
        // are held parsed at once, and added in order (which definition comes last matters).
        use rayon::prelude::*;
        let batch = rayon::current_num_threads().max(1) * 2;
        for chunk in files.chunks(batch) {
            let parsed: Vec<Result<Vec<Value>, ManifestError>> = chunk
                .par_iter()
                .map(|file| {
                    let text =
                        std::fs::read_to_string(file).map_err(|source| ManifestError::Read {
                            path: file.clone(),
                            source,
                        })?;
                    parse_documents(&text, file)
                })
                .collect();
            for objects in parsed {
                for object in objects? {
                    add_object(&mut inventory.catalog, &object, default_namespace);
                }
            }
        }
        Ok(inventory)
    }

    /// An inventory built from objects already in memory (scan's own set).
    pub fn from_objects<'a>(
        objects: impl IntoIterator<Item = &'a Value>,
        default_namespace: &str,
        source: String,
    ) -> Self {
        let mut catalog = Catalog::default();
        for object in objects {
            add_object(&mut catalog, object, default_namespace);
        }
        ManifestInventory { catalog, source }
    }

    /// Changes how "not found" messages name this inventory.
    pub fn set_source(&mut self, source: String) {
        self.source = source;
    }

    pub fn catalog_mut(&mut self) -> &mut Catalog {
        &mut self.catalog
    }

    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        self.catalog.counts()
    }
}

impl Inventory for ManifestInventory {
    fn secret(&self, namespace: &str, name: &str) -> Option<SecretInfo> {
        self.catalog.secret(namespace, name)
    }
    fn producers(&self, namespace: &str, secret: &str) -> Vec<Producer> {
        self.catalog.producers(namespace, secret)
    }
    fn secret_names(&self, namespace: &str) -> Vec<String> {
        self.catalog.secret_names(namespace)
    }
    fn namespaces_with_secret(&self, name: &str, except: &str) -> Vec<String> {
        self.catalog.namespaces_with_secret(name, except)
    }
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMapInfo> {
        self.catalog.config_map(namespace, name)
    }
    fn namespace_labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.catalog.namespace_labels(name)
    }
    fn secret_store(&self, namespace: &str, store: &StoreRef) -> StoreLookup {
        self.catalog.secret_store(namespace, store)
    }
    fn reference_grants(&self, namespace: &str) -> Option<Vec<ReferenceGrant>> {
        self.catalog.reference_grants(namespace)
    }
    fn readers(&self, namespace: &str, secret: &str) -> Readers {
        self.catalog.readers(namespace, secret)
    }
    fn readiness(&self) -> Readiness {
        Readiness::Ready
    }
    fn counts(&self) -> BTreeMap<&'static str, usize> {
        self.catalog.counts()
    }
    fn source(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::ProducerKind;

    const SET: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: shop}
type: Opaque
data: {username: dXNlcg==, password: cGFzcw==}
---
# an empty document and a non-Kubernetes document are skipped
---
replicaCount: 3
---
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: settings}
    data: {LOG_LEVEL: info}
  - apiVersion: v1
    kind: Secret
    metadata: {name: api}
    stringData: {token: abc}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {applyguard.io/mode: warn}}
---
apiVersion: external-secrets.io/v1beta1
kind: ExternalSecret
metadata: {name: payments, namespace: shop}
spec:
  target: {name: payments-credentials}
  data: [{secretKey: api-key, remoteRef: {key: payments}}]
"#;

    #[test]
    fn loads_every_kind_and_keeps_no_values() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/set.yaml"), SET).unwrap();
        std::fs::write(dir.path().join("README.md"), "ignored").unwrap();
        let inv = ManifestInventory::load(&[dir.path().to_path_buf()], "default").unwrap();
        let db = inv.secret("shop", "db").unwrap();
        assert_eq!(db.secret_type, "Opaque");
        assert_eq!(db.keys.iter().collect::<Vec<_>>(), ["password", "username"]);
        assert_eq!(inv.secret("default", "api").unwrap().keys.len(), 1);
        assert_eq!(
            inv.config_map("default", "settings")
                .unwrap()
                .data
                .get("LOG_LEVEL"),
            Some("info")
        );
        assert_eq!(
            inv.namespace_labels("shop").unwrap()["applyguard.io/mode"],
            "warn"
        );
        let producers = inv.producers("shop", "payments-credentials");
        assert_eq!(producers.len(), 1);
        assert_eq!(producers[0].kind, ProducerKind::ExternalSecret);
        assert_eq!(inv.secret_names("shop"), ["db", "payments-credentials"]);
        assert_eq!(inv.namespaces_with_secret("db", "other"), ["shop"]);
        // No value of any Secret is anywhere in the inventory.
        let dump = format!("{:?}", inv.catalog);
        for value in ["dXNlcg==", "cGFzcw==", "abc"] {
            assert!(!dump.contains(value), "{value} leaked into {dump}");
        }
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "apiVersion: v1\nkind: [unclosed\n").unwrap();
        let err = ManifestInventory::load(std::slice::from_ref(&bad), "default")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.yaml"), "{err}");
        let err = ManifestInventory::load(&[dir.path().join("missing")], "default")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot read") && err.contains("missing"),
            "{err}"
        );
        let empty = tempfile::tempdir().unwrap();
        let err = ManifestInventory::load(&[empty.path().to_path_buf()], "default")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no *.yaml"), "{err}");
    }
}
