//! What a Secret reference depends on besides Secrets and producers: external-secrets.io
//! SecretStore / ClusterSecretStore (an ExternalSecret whose store is missing produces nothing)
//! and Gateway API ReferenceGrant (a Gateway may read a Secret in another namespace only where
//! that namespace grants it). Read from objects the same way for the cluster and for manifests.
//!
//! References: external-secrets.io API spec (`spec.secretStoreRef.kind` defaults to
//! `SecretStore`; a store reports readiness as `status.conditions[type=Ready]`); Gateway API spec
//! (ReferenceGrant `spec.from[]` {group, kind, namespace}, `spec.to[]` {group, kind, name?}; an
//! omitted `to.name` grants every object of that kind).

use std::fmt;

use serde_json::Value;

/// The two store kinds an ExternalSecret can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreKind {
    SecretStore,
    ClusterSecretStore,
}

impl StoreKind {
    pub const ALL: [StoreKind; 2] = [StoreKind::SecretStore, StoreKind::ClusterSecretStore];

    pub fn kind(self) -> &'static str {
        match self {
            StoreKind::SecretStore => "SecretStore",
            StoreKind::ClusterSecretStore => "ClusterSecretStore",
        }
    }

    pub fn resource(self) -> &'static str {
        match self {
            StoreKind::SecretStore => "secretstores",
            StoreKind::ClusterSecretStore => "clustersecretstores",
        }
    }

    pub fn from_kind(kind: &str) -> Option<StoreKind> {
        StoreKind::ALL.into_iter().find(|k| k.kind() == kind)
    }

    pub fn namespaced(self) -> bool {
        self == StoreKind::SecretStore
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// The store an ExternalSecret reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRef {
    pub kind: StoreKind,
    pub name: String,
}

impl StoreRef {
    /// `ClusterSecretStore aether-vault`
    pub fn describe(&self) -> String {
        format!("{} {}", self.kind, self.name)
    }
}

/// Reads a `secretStoreRef`-shaped value (`{name, kind}`). `Err` carries the kind that is not a
/// store kind; `Ok(None)` when there is no usable name.
pub fn store_ref(value: &Value) -> Result<Option<StoreRef>, String> {
    let Some(name) = value
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return Ok(None);
    };
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .unwrap_or("SecretStore");
    match StoreKind::from_kind(kind) {
        Some(kind) => Ok(Some(StoreRef {
            kind,
            name: name.to_string(),
        })),
        None => Err(kind.to_string()),
    }
}

/// A store as the inventory keeps it: only whether its controller calls it ready.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreInfo {
    /// The message of a `Ready: False` condition, when the controller reports one.
    pub not_ready: Option<String>,
}

/// Reads a store's readiness from its status.
pub fn store_info(object: &Value) -> StoreInfo {
    let ready = object
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"));
    let not_ready = ready
        .filter(|c| c.get("status").and_then(Value::as_str) == Some("False"))
        .map(|c| {
            let text = |field: &str| c.get(field).and_then(Value::as_str).unwrap_or("");
            match (text("reason"), text("message")) {
                ("", "") => "Ready is False".to_string(),
                (reason, "") => reason.to_string(),
                ("", message) => message.to_string(),
                (reason, message) => format!("{reason}: {message}"),
            }
        });
    StoreInfo { not_ready }
}

/// What the inventory can say about a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLookup {
    Found(StoreInfo),
    Missing,
    /// The inventory does not see stores of this kind (their API is not watched).
    Unknown,
}

/// One ReferenceGrant, reduced to its rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReferenceGrant {
    pub name: String,
    /// (group, kind, namespace) that may refer.
    pub from: Vec<(String, String, String)>,
    /// (group, kind, name or none for all) that may be referred to.
    pub to: Vec<(String, String, Option<String>)>,
}

impl ReferenceGrant {
    pub fn from_object(object: &Value) -> Option<ReferenceGrant> {
        let name = object
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)?
            .to_string();
        let spec = object.get("spec")?;
        let text = |v: &Value, field: &str| {
            v.get(field)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let list = |field: &str| {
            spec.get(field)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        Some(ReferenceGrant {
            name,
            from: list("from")
                .iter()
                .map(|f| (text(f, "group"), text(f, "kind"), text(f, "namespace")))
                .collect(),
            to: list("to")
                .iter()
                .map(|t| {
                    let name = Some(text(t, "name")).filter(|n| !n.is_empty());
                    (text(t, "group"), text(t, "kind"), name)
                })
                .collect(),
        })
    }

    /// Whether this grant (which lives in the Secret's namespace) lets a `from_kind` of group
    /// `from_group` in `from_namespace` refer to Secret `secret`.
    pub fn allows_secret(
        &self,
        from_group: &str,
        from_kind: &str,
        from_namespace: &str,
        secret: &str,
    ) -> bool {
        self.from
            .iter()
            .any(|(g, k, ns)| g == from_group && k == from_kind && ns == from_namespace)
            && self.to.iter().any(|(g, k, name)| {
                g.is_empty() && k == "Secret" && name.as_deref().is_none_or(|n| n == secret)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn store_refs_default_to_secret_store() {
        let r = store_ref(&json!({"name": "vault"})).unwrap().unwrap();
        assert_eq!((r.kind, r.name.as_str()), (StoreKind::SecretStore, "vault"));
        let r = store_ref(&json!({"name": "aether-vault", "kind": "ClusterSecretStore"}))
            .unwrap()
            .unwrap();
        assert_eq!(r.describe(), "ClusterSecretStore aether-vault");
        assert_eq!(store_ref(&json!({"kind": "SecretStore"})), Ok(None));
        assert_eq!(
            store_ref(&json!({"name": "x", "kind": "Vault"})),
            Err("Vault".to_string())
        );
    }

    #[test]
    fn readiness_from_conditions() {
        assert_eq!(store_info(&json!({})).not_ready, None);
        let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(store_info(&ready).not_ready, None);
        let broken = json!({"status": {"conditions": [{"type": "Ready", "status": "False",
            "reason": "InvalidProviderConfig", "message": "unable to log in"}]}});
        assert_eq!(
            store_info(&broken).not_ready.as_deref(),
            Some("InvalidProviderConfig: unable to log in")
        );
    }

    #[test]
    fn grants_match_from_and_to() {
        let grant = ReferenceGrant::from_object(&json!({"metadata": {"name": "g"}, "spec": {
            "from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "edge"}],
            "to": [{"group": "", "kind": "Secret", "name": "wildcard-tls"}]}}))
        .unwrap();
        let gw = "gateway.networking.k8s.io";
        assert!(grant.allows_secret(gw, "Gateway", "edge", "wildcard-tls"));
        assert!(!grant.allows_secret(gw, "Gateway", "edge", "other-tls"));
        assert!(!grant.allows_secret(gw, "Gateway", "shop", "wildcard-tls"));
        assert!(!grant.allows_secret(gw, "HTTPRoute", "edge", "wildcard-tls"));
        let all = ReferenceGrant::from_object(&json!({"metadata": {"name": "g"}, "spec": {
            "from": [{"group": gw, "kind": "Gateway", "namespace": "edge"}],
            "to": [{"group": "", "kind": "Secret"}]}}))
        .unwrap();
        assert!(all.allows_secret(gw, "Gateway", "edge", "anything"));
        let services = ReferenceGrant::from_object(&json!({"metadata": {"name": "g"}, "spec": {
            "from": [{"group": gw, "kind": "Gateway", "namespace": "edge"}],
            "to": [{"group": "", "kind": "Service"}]}}))
        .unwrap();
        assert!(!services.allows_secret(gw, "Gateway", "edge", "anything"));
    }
}
