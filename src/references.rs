//! Every place an object names a Secret, as one list of references: the pod spec of every
//! workload kind, Ingress `spec.tls[].secretName` and Gateway listener `certificateRefs`.
//! `secret-ref` walks the list forwards (does each Secret exist, or will something produce it?);
//! the inventory's references index keeps the same references as `Reading`s, so the deletion
//! guard walks it backwards (who reads this Secret?). A new kind with a Secret reference is
//! taught once, here.

use serde_json::Value;

use crate::workload::{PodView, WorkloadKind};

/// Where a reference sits, which decides what the Secret must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    Env,
    EnvFrom,
    Volume,
    Projected,
    PullSecret,
    /// Ingress `spec.tls[].secretName`: needs `tls.crt` and `tls.key`.
    IngressTls,
    /// Gateway listener `tls.certificateRefs[]`: needs `tls.crt` and `tls.key`.
    GatewayCertificate,
}

/// The keys a TLS Secret must hold (the `kubernetes.io/tls` type's required keys).
pub const TLS_KEYS: [&str; 2] = ["tls.crt", "tls.key"];

impl RefKind {
    /// Keys the Secret must hold whatever the reference names.
    pub fn required_keys(self) -> &'static [&'static str] {
        match self {
            RefKind::IngressTls | RefKind::GatewayCertificate => &TLS_KEYS,
            _ => &[],
        }
    }
}

/// One reference to a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef<'a> {
    /// Field path in the object (`spec.tls[0].secretName`).
    pub path: String,
    /// The Secret's namespace when the reference names one other than the object's own.
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub key: Option<&'a str>,
    pub optional: bool,
    pub kind: RefKind,
}

impl SecretRef<'_> {
    fn new(path: String, name: &str, kind: RefKind) -> SecretRef<'_> {
        SecretRef {
            path,
            namespace: None,
            name,
            key: None,
            optional: false,
            kind,
        }
    }
}

/// References in a pod spec: `env[].valueFrom.secretKeyRef`, `envFrom[].secretRef`,
/// `volumes[].secret` and `volumes[].projected.sources[].secret` (each with `items[].key`), and
/// `imagePullSecrets[]`, in every container list.
pub fn pod_references(pod: &PodView) -> Vec<SecretRef<'_>> {
    let spec = &pod.spec;
    let mut refs = Vec::new();
    for container in pod.containers() {
        for (i, env) in container.env.iter().enumerate() {
            if let Some(r) = env
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
            {
                refs.push(SecretRef {
                    key: Some(&r.key),
                    optional: r.optional.unwrap_or(false),
                    ..SecretRef::new(
                        format!("{}.env[{i}].valueFrom.secretKeyRef", container.path),
                        &r.name,
                        RefKind::Env,
                    )
                });
            }
        }
        for (i, from) in container.env_from.iter().enumerate() {
            if let Some(r) = &from.secret_ref {
                refs.push(SecretRef {
                    optional: r.optional.unwrap_or(false),
                    ..SecretRef::new(
                        format!("{}.envFrom[{i}].secretRef", container.path),
                        &r.name,
                        RefKind::EnvFrom,
                    )
                });
            }
        }
    }
    for (v, volume) in spec.volumes.iter().flatten().enumerate() {
        let base = format!("{}.volumes[{v}]", pod.prefix);
        if let Some(secret) = &volume.secret {
            push_with_items(
                &mut refs,
                format!("{base}.secret"),
                secret.secret_name.as_deref().unwrap_or(""),
                secret.optional.unwrap_or(false),
                secret.items.as_deref().unwrap_or_default(),
                RefKind::Volume,
            );
        }
        if let Some(projected) = &volume.projected {
            for (s, source) in projected.sources.iter().flatten().enumerate() {
                if let Some(secret) = &source.secret {
                    push_with_items(
                        &mut refs,
                        format!("{base}.projected.sources[{s}].secret"),
                        &secret.name,
                        secret.optional.unwrap_or(false),
                        secret.items.as_deref().unwrap_or_default(),
                        RefKind::Projected,
                    );
                }
            }
        }
    }
    for (i, pull) in spec.image_pull_secrets.iter().flatten().enumerate() {
        refs.push(SecretRef::new(
            format!("{}.imagePullSecrets[{i}]", pod.prefix),
            &pull.name,
            RefKind::PullSecret,
        ));
    }
    refs
}

/// One field of a workload that must find a Secret (or one of its keys) when its pods start:
/// what the references index keeps per workload. Optional references are not kept: a pod
/// starts without them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub secret: Box<str>,
    /// The key it reads, or `None` for the whole Secret (envFrom, a volume without items,
    /// imagePullSecrets).
    pub key: Option<Box<str>>,
    /// Field path in the workload (`spec.template.spec.containers[0].env[1].valueFrom.secretKeyRef`).
    pub path: Box<str>,
}

/// The Secrets a workload's pod spec reads, as index entries. `None` when the object has no
/// readable pod spec or is controlled by another object (a Deployment's ReplicaSet, a
/// ReplicaSet's Pod, a CronJob's Job), whose owner is indexed instead.
pub fn readings(kind: WorkloadKind, object: &Value) -> Option<Vec<Reading>> {
    if is_controlled(object) {
        return None;
    }
    let pod = PodView::from_object(kind, object).ok().flatten()?;
    Some(
        pod_references(&pod)
            .into_iter()
            .filter(|r| !r.optional && !r.name.is_empty())
            .map(|r| Reading {
                secret: r.name.into(),
                key: r.key.map(Into::into),
                path: r.path.into_boxed_str(),
            })
            .collect(),
    )
}

/// Whether `metadata.ownerReferences` names a controller.
pub fn is_controlled(object: &Value) -> bool {
    object
        .get("metadata")
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .is_some_and(|owners| {
            owners
                .iter()
                .any(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        })
}

fn push_with_items<'a>(
    refs: &mut Vec<SecretRef<'a>>,
    path: String,
    name: &'a str,
    optional: bool,
    items: &'a [k8s_openapi::api::core::v1::KeyToPath],
    kind: RefKind,
) {
    if items.is_empty() {
        refs.push(SecretRef {
            optional,
            ..SecretRef::new(path.clone(), name, kind)
        });
    }
    for (i, item) in items.iter().enumerate() {
        refs.push(SecretRef {
            key: Some(&item.key),
            optional,
            ..SecretRef::new(format!("{path}.items[{i}]"), name, kind)
        });
    }
}

fn array<'a>(value: &'a Value, field: &str) -> impl Iterator<Item = (usize, &'a Value)> {
    value
        .get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
}

fn text<'a>(value: &'a Value, field: &str) -> Option<&'a str> {
    value.get(field).and_then(Value::as_str)
}

/// Ingress `spec.tls[i].secretName`. An entry without one asks for the controller's default
/// certificate and references nothing.
pub fn ingress_references(object: &Value) -> Vec<SecretRef<'_>> {
    let spec = object.get("spec").unwrap_or(&Value::Null);
    array(spec, "tls")
        .filter_map(|(i, tls)| {
            let name = text(tls, "secretName").filter(|n| !n.is_empty())?;
            Some(SecretRef::new(
                format!("spec.tls[{i}].secretName"),
                name,
                RefKind::IngressTls,
            ))
        })
        .collect()
}

/// Gateway `spec.listeners[i].tls.certificateRefs[j]` of kind Secret (group "", the default),
/// with their namespace when it is not the Gateway's. `Passthrough` listeners terminate no TLS
/// and need no certificate.
pub fn gateway_references<'a>(object: &'a Value, namespace: &str) -> Vec<SecretRef<'a>> {
    let spec = object.get("spec").unwrap_or(&Value::Null);
    let mut refs = Vec::new();
    for (i, listener) in array(spec, "listeners") {
        let Some(tls) = listener.get("tls") else {
            continue;
        };
        if text(tls, "mode") == Some("Passthrough") {
            continue;
        }
        for (j, cert) in array(tls, "certificateRefs") {
            let group = text(cert, "group").unwrap_or("");
            let kind = text(cert, "kind").unwrap_or("Secret");
            if !(group.is_empty() || group == "core") || kind != "Secret" {
                continue;
            }
            let Some(name) = text(cert, "name") else {
                continue;
            };
            refs.push(SecretRef {
                namespace: text(cert, "namespace").filter(|ns| !ns.is_empty() && *ns != namespace),
                ..SecretRef::new(
                    format!("spec.listeners[{i}].tls.certificateRefs[{j}]"),
                    name,
                    RefKind::GatewayCertificate,
                )
            });
        }
    }
    refs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn readings_keep_required_references_of_uncontrolled_workloads() {
        let deployment = json!({
            "metadata": {"name": "checkout"},
            "spec": {"template": {"spec": {
                "containers": [{"name": "app", "image": "app:1",
                    "env": [
                        {"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                        {"name": "O", "valueFrom": {"secretKeyRef": {"name": "extra", "key": "k", "optional": true}}}],
                    "envFrom": [{"secretRef": {"name": "settings"}}]}],
                "volumes": [{"name": "tls", "secret": {"secretName": "tls", "items": [{"key": "tls.crt", "path": "c"}]}}],
                "imagePullSecrets": [{"name": "registry"}]}}}});
        let seen: Vec<_> = readings(WorkloadKind::Deployment, &deployment)
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.secret.to_string(),
                    r.key.as_deref().map(str::to_string),
                    r.path.to_string(),
                )
            })
            .collect();
        let p = "spec.template.spec";
        assert_eq!(
            seen,
            [
                (
                    "db".into(),
                    Some("password".into()),
                    format!("{p}.containers[0].env[0].valueFrom.secretKeyRef")
                ),
                (
                    "settings".into(),
                    None,
                    format!("{p}.containers[0].envFrom[0].secretRef")
                ),
                (
                    "tls".into(),
                    Some("tls.crt".into()),
                    format!("{p}.volumes[0].secret.items[0]")
                ),
                ("registry".into(), None, format!("{p}.imagePullSecrets[0]")),
            ]
        );
        let mut owned = deployment.clone();
        owned["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u", "controller": true}]);
        assert_eq!(readings(WorkloadKind::Deployment, &owned), None);
        owned["metadata"]["ownerReferences"][0]["controller"] = json!(false);
        assert!(readings(WorkloadKind::Deployment, &owned).is_some());
        assert_eq!(
            readings(WorkloadKind::Deployment, &json!({"spec": {}})),
            None
        );
    }

    #[test]
    fn ingress_tls_entries() {
        let ingress = json!({"spec": {"tls": [
            {"hosts": ["a.example"], "secretName": "a-tls"},
            {"hosts": ["b.example"]},
            {"secretName": ""}]}});
        let refs = ingress_references(&ingress);
        assert_eq!(refs.len(), 1);
        assert_eq!(
            (refs[0].path.as_str(), refs[0].name),
            ("spec.tls[0].secretName", "a-tls")
        );
        assert_eq!(refs[0].kind.required_keys(), TLS_KEYS);
    }

    #[test]
    fn gateway_certificate_refs() {
        let gateway = json!({"spec": {"listeners": [
            {"name": "https", "protocol": "HTTPS", "tls": {"certificateRefs": [
                {"name": "own-tls"},
                {"kind": "Secret", "group": "", "name": "shared-tls", "namespace": "certs"},
                {"kind": "Secret", "name": "same-ns", "namespace": "edge"},
                {"kind": "ConfigMap", "name": "not-a-secret"},
                {"group": "example.com", "kind": "Vault", "name": "other"}]}},
            {"name": "tls", "protocol": "TLS", "tls": {"mode": "Passthrough", "certificateRefs": [{"name": "ignored"}]}},
            {"name": "http", "protocol": "HTTP"}]}});
        let refs = gateway_references(&gateway, "edge");
        let seen: Vec<_> = refs
            .iter()
            .map(|r| (r.path.as_str(), r.namespace, r.name))
            .collect();
        assert_eq!(
            seen,
            [
                ("spec.listeners[0].tls.certificateRefs[0]", None, "own-tls"),
                (
                    "spec.listeners[0].tls.certificateRefs[1]",
                    Some("certs"),
                    "shared-tls"
                ),
                ("spec.listeners[0].tls.certificateRefs[2]", None, "same-ns"),
            ]
        );
    }
}
