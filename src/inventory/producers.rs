//! What will produce a Secret: external-secrets.io ExternalSecret, bitnami.com SealedSecret and
//! cert-manager.io Certificate, read from their specs (the same code for cluster and manifests).
//! A SealedSecret always produces a Secret of its own name and namespace (sealed-secrets'
//! `Unseal`); ExternalSecret `creationPolicy: None` and `Merge` create none.
//!
//! References: external-secrets.io API spec (ExternalSecret `spec.target.name` defaults to the
//! object's name; `spec.target.creationPolicy: None` creates no Secret; `spec.dataFrom` and
//! `spec.target.template` decide keys at run time); sealed-secrets README (`spec.template`
//! carries the Secret's metadata and type, `spec.encryptedData` its keys); cert-manager
//! Certificate docs (`spec.secretName` receives `tls.crt`, `tls.key` and `ca.crt`;
//! `additionalOutputFormats` adds `key.der` and `tls-combined.pem`).

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use super::stores::{StoreRef, store_ref};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProducerKind {
    ExternalSecret,
    SealedSecret,
    Certificate,
}

impl ProducerKind {
    pub const ALL: [ProducerKind; 3] = [
        ProducerKind::ExternalSecret,
        ProducerKind::SealedSecret,
        ProducerKind::Certificate,
    ];

    pub fn group(self) -> &'static str {
        match self {
            ProducerKind::ExternalSecret => "external-secrets.io",
            ProducerKind::SealedSecret => "bitnami.com",
            ProducerKind::Certificate => "cert-manager.io",
        }
    }

    /// API versions applyguard understands, preferred first.
    pub fn versions(self) -> &'static [&'static str] {
        match self {
            ProducerKind::ExternalSecret => &["v1", "v1beta1"],
            ProducerKind::SealedSecret => &["v1alpha1"],
            ProducerKind::Certificate => &["v1"],
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            ProducerKind::ExternalSecret => "ExternalSecret",
            ProducerKind::SealedSecret => "SealedSecret",
            ProducerKind::Certificate => "Certificate",
        }
    }

    /// The plural resource name, as RBAC and metrics name it.
    pub fn resource(self) -> &'static str {
        match self {
            ProducerKind::ExternalSecret => "externalsecrets",
            ProducerKind::SealedSecret => "sealedsecrets",
            ProducerKind::Certificate => "certificates",
        }
    }

    /// The producer kind of an apiVersion/kind pair, if it is one applyguard reads.
    pub fn from_type(api_version: &str, kind: &str) -> Option<ProducerKind> {
        let (group, version) = api_version.split_once('/')?;
        ProducerKind::ALL
            .into_iter()
            .find(|p| p.group() == group && p.kind() == kind && p.versions().contains(&version))
    }
}

impl fmt::Display for ProducerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// The keys a producer will write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProducedKeys {
    Known(BTreeSet<String>),
    /// Decided at run time; the text says why (`dataFrom`, a template).
    Unknown(String),
}

/// One object that will produce a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Producer {
    pub kind: ProducerKind,
    pub namespace: String,
    /// The producer object's own name.
    pub name: String,
    /// The Secret it produces.
    pub target: String,
    pub keys: ProducedKeys,
    /// The store an ExternalSecret reads from (`spec.secretStoreRef`); without it the
    /// ExternalSecret produces nothing.
    pub store: Option<StoreRef>,
}

impl Producer {
    /// `ExternalSecret db-credentials`
    pub fn describe(&self) -> String {
        format!("{} {}", self.kind, self.name)
    }
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, segment| v.get(segment))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn object_keys(value: Option<&Value>) -> BTreeSet<String> {
    value
        .and_then(Value::as_object)
        .map(|map| map.keys().cloned().collect())
        .unwrap_or_default()
}

fn non_empty(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

/// Reads a producer from an object. `default_namespace` applies when the object has none.
/// `None` when the object is not a producer, or produces no Secret.
pub fn producer_from_object(
    kind: ProducerKind,
    object: &Value,
    default_namespace: &str,
) -> Option<Producer> {
    let name = str_at(object, &["metadata", "name"])?.to_string();
    let namespace = str_at(object, &["metadata", "namespace"])
        .unwrap_or(default_namespace)
        .to_string();
    let spec = object.get("spec").unwrap_or(&Value::Null);
    let mut store = None;
    let (target, namespace, keys) = match kind {
        ProducerKind::ExternalSecret => {
            // None creates nothing; Merge only merges into a Secret that must already exist.
            if matches!(
                str_at(spec, &["target", "creationPolicy"]),
                Some("None" | "Merge")
            ) {
                return None;
            }
            let target = str_at(spec, &["target", "name"])
                .unwrap_or(&name)
                .to_string();
            store = spec
                .get("secretStoreRef")
                .and_then(|r| store_ref(r).ok().flatten());
            let keys = if non_empty(spec.get("dataFrom")) {
                ProducedKeys::Unknown("its keys come from spec.dataFrom".to_string())
            } else if non_empty(spec.get("target").and_then(|t| t.get("template"))) {
                ProducedKeys::Unknown("its keys come from spec.target.template".to_string())
            } else {
                ProducedKeys::Known(
                    spec.get("data")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|d| str_at(d, &["secretKey"]).map(str::to_string))
                        .collect(),
                )
            };
            (target, namespace, keys)
        }
        ProducerKind::SealedSecret => {
            // The controller always names the Secret after the SealedSecret, in its namespace
            // (Unseal sets name and namespace from the SealedSecret's own metadata), whatever
            // spec.template.metadata says.
            let template = spec.get("template").unwrap_or(&Value::Null);
            let mut keys = object_keys(spec.get("encryptedData"));
            keys.extend(
                template
                    .get("data")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, _)| k.clone()),
            );
            (name.clone(), namespace, ProducedKeys::Known(keys))
        }
        ProducerKind::Certificate => {
            let target = str_at(spec, &["secretName"])?.to_string();
            let mut keys: BTreeSet<String> = ["tls.crt", "tls.key", "ca.crt"]
                .into_iter()
                .map(str::to_string)
                .collect();
            for format in spec
                .get("additionalOutputFormats")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match str_at(format, &["type"]) {
                    Some("DER") => keys.insert("key.der".to_string()),
                    Some("CombinedPEM") => keys.insert("tls-combined.pem".to_string()),
                    _ => false,
                };
            }
            (target, namespace, ProducedKeys::Known(keys))
        }
    };
    Some(Producer {
        kind,
        namespace,
        name,
        target,
        keys,
        store,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(list: &[&str]) -> ProducedKeys {
        ProducedKeys::Known(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn external_secret_targets_and_keys() {
        let es = json!({"metadata": {"name": "db", "namespace": "shop"}, "spec": {
            "target": {"name": "db-credentials"},
            "data": [{"secretKey": "password", "remoteRef": {"key": "db"}}]}});
        let p = producer_from_object(ProducerKind::ExternalSecret, &es, "default").unwrap();
        assert_eq!(
            (p.namespace.as_str(), p.target.as_str()),
            ("shop", "db-credentials")
        );
        assert_eq!(p.keys, keys(&["password"]));
        assert_eq!(p.store, None);
        let stored = json!({"metadata": {"name": "db"}, "spec": {
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": "aether-vault"}}});
        let p = producer_from_object(ProducerKind::ExternalSecret, &stored, "d").unwrap();
        assert_eq!(
            p.store.map(|s| s.describe()).as_deref(),
            Some("ClusterSecretStore aether-vault")
        );
        let defaulted = json!({"metadata": {"name": "db"}, "spec": {"data": []}});
        let p = producer_from_object(ProducerKind::ExternalSecret, &defaulted, "team").unwrap();
        assert_eq!((p.namespace.as_str(), p.target.as_str()), ("team", "db"));
        let from =
            json!({"metadata": {"name": "db"}, "spec": {"dataFrom": [{"extract": {"key": "db"}}]}});
        assert!(matches!(
            producer_from_object(ProducerKind::ExternalSecret, &from, "d")
                .unwrap()
                .keys,
            ProducedKeys::Unknown(_)
        ));
        let templated = json!({"metadata": {"name": "db"}, "spec": {"target": {"template": {"data": {"url": "x"}}}, "data": [{"secretKey": "p"}]}});
        assert!(matches!(
            producer_from_object(ProducerKind::ExternalSecret, &templated, "d")
                .unwrap()
                .keys,
            ProducedKeys::Unknown(_)
        ));
        for policy in ["None", "Merge"] {
            let none =
                json!({"metadata": {"name": "db"}, "spec": {"target": {"creationPolicy": policy}}});
            assert!(
                producer_from_object(ProducerKind::ExternalSecret, &none, "d").is_none(),
                "{policy}"
            );
        }
        let orphan =
            json!({"metadata": {"name": "db"}, "spec": {"target": {"creationPolicy": "Orphan"}}});
        assert!(producer_from_object(ProducerKind::ExternalSecret, &orphan, "d").is_some());
    }

    #[test]
    fn sealed_secret_and_certificate() {
        let ss = json!({"metadata": {"name": "api", "namespace": "shop"}, "spec": {
            "encryptedData": {"token": "AgB..."}, "template": {"metadata": {"name": "api-token"}, "data": {"url": "https://x", "gone": null}}}});
        let p = producer_from_object(ProducerKind::SealedSecret, &ss, "default").unwrap();
        assert_eq!(
            p.target, "api",
            "the Secret is named after the SealedSecret"
        );
        assert_eq!(p.keys, keys(&["token", "url"]));
        let cert = json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {"secretName": "web-tls",
            "additionalOutputFormats": [{"type": "CombinedPEM"}]}});
        let p = producer_from_object(ProducerKind::Certificate, &cert, "default").unwrap();
        assert_eq!(p.target, "web-tls");
        assert_eq!(
            p.keys,
            keys(&["ca.crt", "tls-combined.pem", "tls.crt", "tls.key"])
        );
        assert!(
            producer_from_object(
                ProducerKind::Certificate,
                &json!({"metadata": {"name": "x"}, "spec": {}}),
                "d"
            )
            .is_none()
        );
    }

    #[test]
    fn types_by_api_version() {
        assert_eq!(
            ProducerKind::from_type("external-secrets.io/v1beta1", "ExternalSecret"),
            Some(ProducerKind::ExternalSecret)
        );
        assert_eq!(
            ProducerKind::from_type("external-secrets.io/v1", "ExternalSecret"),
            Some(ProducerKind::ExternalSecret)
        );
        assert_eq!(
            ProducerKind::from_type("external-secrets.io/v1alpha1", "ExternalSecret"),
            None
        );
        assert_eq!(
            ProducerKind::from_type("bitnami.com/v1alpha1", "SealedSecret"),
            Some(ProducerKind::SealedSecret)
        );
        assert_eq!(
            ProducerKind::from_type("cert-manager.io/v1", "Certificate"),
            Some(ProducerKind::Certificate)
        );
        assert_eq!(ProducerKind::from_type("v1", "Secret"), None);
    }
}
