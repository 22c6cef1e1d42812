//! `secret-in-use`, the deletion guard: deleting a Secret, removing keys from it, or deleting the
//! ExternalSecret, SealedSecret or Certificate that produces it, while live workloads read it.
//! Pods already running keep what they mounted, but the workload's next pods (a restart, a
//! rollout, a node drain) fail with CreateContainerConfigError or hang in ContainerCreating.
//! It walks the inventory's references index backwards, and warns by default: a delete must
//! stay possible (see `Policy::rule_mode`).

use serde_json::Value;

use super::{Findings, Notice, RuleId, Violation};
use crate::inventory::{Inventory, ProducerKind, Reader, producer_from_object};

/// Readers named one by one; the rest are counted in one notice, so that deleting a Secret
/// read by a thousand CronJobs gives a readable answer.
pub const MAX_NAMED_READERS: usize = 20;

/// DELETE of a Secret.
pub fn check_secret_delete(namespace: &str, name: &str, inventory: &dyn Inventory) -> Findings {
    let mut out = Findings::default();
    let producers = inventory.producers(namespace, name);
    if let Some(producer) = producers.first() {
        // Its operator writes it again: readers are without it for a moment, not for good.
        out.notices.push(Notice {
            rule: RuleId::SecretInUse,
            path: "metadata.name".to_string(),
            message: format!(
                "{} in namespace {namespace:?} produces secret {name:?}: it will be created again",
                producer.describe()
            ),
        });
        return out;
    }
    readers_of(
        namespace,
        name,
        None,
        &Gone {
            path: "metadata.name",
            cause: None,
        },
        inventory,
        &mut out,
    );
    out
}

/// UPDATE of a Secret: readers of the keys it no longer has (`data` and `stringData`; only key
/// names are read, never values). Readers of the whole Secret are not affected by a key less.
pub fn check_secret_update(
    namespace: &str,
    name: &str,
    old: &Value,
    new: &Value,
    inventory: &dyn Inventory,
) -> Findings {
    let mut out = Findings::default();
    let keys = |object: &Value| -> Vec<String> {
        ["data", "stringData"]
            .iter()
            .filter_map(|field| object.get(field).and_then(Value::as_object))
            .flat_map(|map| map.keys().cloned())
            .collect()
    };
    let now = keys(new);
    let mut removed: Vec<String> = keys(old).into_iter().filter(|k| !now.contains(k)).collect();
    removed.sort();
    removed.dedup();
    if removed.is_empty() {
        return out;
    }
    let path = format!("data.{}", removed[0]);
    readers_of(
        namespace,
        name,
        Some(&removed),
        &Gone {
            path: &path,
            cause: None,
        },
        inventory,
        &mut out,
    );
    out
}

/// DELETE of a producer: an ExternalSecret (creationPolicy Owner, the default) and a SealedSecret
/// own their Secret, which the garbage collector then deletes; cert-manager keeps a
/// Certificate's Secret (unless run with `--enable-certificate-owner-ref`) but no longer renews
/// it, so its readers break when it expires.
pub fn check_producer_delete(
    kind: ProducerKind,
    namespace: &str,
    name: &str,
    old: Option<&Value>,
    inventory: &dyn Inventory,
) -> Findings {
    let mut out = Findings::default();
    let Some(old) = old else {
        return out;
    };
    let object = serde_json::json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": old.get("spec"),
    });
    let Some(producer) = producer_from_object(kind, &object, namespace) else {
        return out;
    };
    let orphaned = kind == ProducerKind::ExternalSecret
        && old
            .get("spec")
            .and_then(|s| s.get("target"))
            .and_then(|t| t.get("creationPolicy"))
            .and_then(Value::as_str)
            == Some("Orphan");
    if orphaned {
        return out;
    }
    // Another producer of the same Secret keeps it.
    if inventory
        .producers(namespace, &producer.target)
        .iter()
        .any(|p| !(p.kind == kind && p.name == name))
    {
        return out;
    }
    let cause = match kind {
        ProducerKind::Certificate => format!(
            "deleting Certificate {name:?} stops the renewal of secret {:?}: it expires",
            producer.target
        ),
        _ => format!(
            "deleting {kind} {name:?} deletes secret {:?} too (it owns it)",
            producer.target
        ),
    };
    readers_of(
        namespace,
        &producer.target,
        None,
        &Gone {
            path: "metadata.name",
            cause: Some(cause),
        },
        inventory,
        &mut out,
    );
    out
}

/// The field of the reviewed object the findings are placed at, and, when the Secret goes
/// because something else is deleted, why.
struct Gone<'a> {
    path: &'a str,
    cause: Option<String>,
}

/// A reference's field as people point at it: the env or envFrom entry, not its inner struct.
fn field(path: &str) -> &str {
    path.strip_suffix(".valueFrom.secretKeyRef")
        .or_else(|| path.strip_suffix(".secretRef"))
        .unwrap_or(path)
}

/// One violation per reading of `secret` (of `keys` only, when given), the first
/// `MAX_NAMED_READERS` of them named and the rest counted.
fn readers_of(
    namespace: &str,
    secret: &str,
    keys: Option<&[String]>,
    gone: &Gone<'_>,
    inventory: &dyn Inventory,
    out: &mut Findings,
) {
    let found = inventory.readers(namespace, secret);
    let affected: Vec<&Reader> = found
        .readers
        .iter()
        .filter(|r| match keys {
            None => true,
            Some(keys) => r
                .key
                .as_deref()
                .is_some_and(|k| keys.iter().any(|g| g == k)),
        })
        .collect();
    if !affected.is_empty()
        && let Some(cause) = &gone.cause
    {
        out.notices.push(Notice {
            rule: RuleId::SecretInUse,
            path: gone.path.to_string(),
            message: cause.clone(),
        });
    }
    for reader in affected.iter().take(MAX_NAMED_READERS) {
        let what = match &reader.key {
            Some(key) => format!("reads key {key:?} of secret {secret:?}"),
            None => format!("reads secret {secret:?}"),
        };
        let consequence = if reader.path.contains("imagePullSecrets") {
            "new pods cannot pull their images"
        } else {
            // CreateContainerConfigError for env, ContainerCreating for volumes.
            "new pods will not start"
        };
        // Written to fit one 256-rune kubectl warning with the fix. The field is not in
        // parentheses (asides are the first thing a long warning drops) and comes before the
        // consequence, which a shortened line loses first.
        out.violations.push(Violation {
            rule: RuleId::SecretInUse,
            path: gone.path.to_string(),
            value: reader.key.as_deref().unwrap_or(secret).to_string(),
            message: format!(
                "{} {namespace}/{} {what} in {}; {consequence}",
                reader.kind.kind(),
                reader.name,
                field(&reader.path)
            ),
            fix: "stop reading it there, or mark it optional: true, and roll that out first"
                .to_string(),
            source: None,
        });
    }
    if affected.len() > MAX_NAMED_READERS {
        let rest = &affected[MAX_NAMED_READERS..];
        let mut workloads: Vec<(&str, &str)> =
            rest.iter().map(|r| (r.kind.kind(), &*r.name)).collect();
        workloads.sort();
        workloads.dedup();
        out.notices.push(Notice {
            rule: RuleId::SecretInUse,
            path: gone.path.to_string(),
            message: format!(
                "{} more references to secret {secret:?} (in {} more workloads) are not listed",
                rest.len(),
                workloads.len()
            ),
        });
    }
    if !found.unknown.is_empty() {
        out.notices.push(Notice {
            rule: RuleId::SecretInUse,
            path: gone.path.to_string(),
            message: format!(
                "applyguard has not listed the {} of the cluster (yet): their readers of secret {secret:?} are not named",
                found.unknown.join(", ")
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::manifests::ManifestInventory;
    use serde_json::json;

    fn inventory(objects: &[Value]) -> ManifestInventory {
        ManifestInventory::from_objects(objects.iter(), "shop", "the test manifests".to_string())
    }

    fn deployment(name: &str, env_key: &str, optional: bool) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:1",
                "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": env_key, "optional": optional}}}]}]}}}})
    }

    #[test]
    fn deleting_a_read_secret_names_each_reader_and_field() {
        let inv = inventory(&[
            deployment("checkout", "password", false),
            deployment("optional-reader", "password", true),
        ]);
        let found = check_secret_delete("shop", "db", &inv);
        assert_eq!(found.violations.len(), 1, "{found:?}");
        let v = &found.violations[0];
        assert_eq!(v.rule, RuleId::SecretInUse);
        assert!(
            v.message.contains("Deployment shop/checkout reads key \"password\" of secret \"db\" in spec.template.spec.containers[0].env[0]; new pods will not start"),
            "{}",
            v.message
        );
        assert!(found.notices.is_empty(), "{:?}", found.notices);
        assert!(
            check_secret_delete("shop", "other", &inv)
                .violations
                .is_empty()
        );
        assert!(
            check_secret_delete("elsewhere", "db", &inv)
                .violations
                .is_empty()
        );
    }

    #[test]
    fn a_produced_secret_is_created_again() {
        let inv = inventory(&[
            deployment("checkout", "password", false),
            json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                "metadata": {"name": "db", "namespace": "shop"},
                "spec": {"secretStoreRef": {"name": "vault", "kind": "ClusterSecretStore"},
                    "data": [{"secretKey": "password", "remoteRef": {"key": "db"}}]}}),
        ]);
        let found = check_secret_delete("shop", "db", &inv);
        assert!(found.violations.is_empty());
        assert!(found.notices[0].message.contains("created again"));
    }

    #[test]
    fn removing_a_key_warns_only_its_readers() {
        let mut whole = deployment("whole", "x", false);
        whole["spec"]["template"]["spec"]["containers"][0]["env"] = json!([]);
        whole["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
            json!([{"secretRef": {"name": "db"}}]);
        let inv = inventory(&[
            deployment("checkout", "password", false),
            deployment("reporting", "username", false),
            whole,
        ]);
        let old = json!({"data": {"password": "", "username": ""}});
        let new = json!({"data": {"username": ""}});
        let found = check_secret_update("shop", "db", &old, &new, &inv);
        let names: Vec<_> = found.violations.iter().map(|v| v.message.clone()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].contains("Deployment shop/checkout"), "{names:?}");
        assert_eq!(found.violations[0].path, "data.password");
        assert!(
            check_secret_update("shop", "db", &old, &old, &inv)
                .violations
                .is_empty()
        );
    }

    #[test]
    fn deleting_an_owning_producer_warns_and_an_orphaning_one_does_not() {
        let inv = inventory(&[deployment("checkout", "password", false)]);
        let spec = json!({"spec": {"secretStoreRef": {"name": "vault"}, "target": {"name": "db"},
            "data": [{"secretKey": "password", "remoteRef": {"key": "db"}}]}});
        let found = check_producer_delete(
            ProducerKind::ExternalSecret,
            "shop",
            "db-es",
            Some(&spec),
            &inv,
        );
        assert_eq!(found.violations.len(), 1);
        assert_eq!(
            found.notices[0].message,
            "deleting ExternalSecret \"db-es\" deletes secret \"db\" too (it owns it)"
        );
        let mut orphan = spec.clone();
        orphan["spec"]["target"]["creationPolicy"] = json!("Orphan");
        assert!(
            check_producer_delete(
                ProducerKind::ExternalSecret,
                "shop",
                "db-es",
                Some(&orphan),
                &inv
            )
            .violations
            .is_empty()
        );
        let cert = json!({"spec": {"secretName": "db", "issuerRef": {"name": "ca"}}});
        let found = check_producer_delete(
            ProducerKind::Certificate,
            "shop",
            "db-cert",
            Some(&cert),
            &inv,
        );
        assert_eq!(found.violations.len(), 1);
        assert!(found.notices[0].message.contains("stops the renewal"));
    }

    #[test]
    fn many_readers_are_counted_not_listed() {
        let objects: Vec<Value> = (0..MAX_NAMED_READERS + 5)
            .map(|i| deployment(&format!("reader-{i:02}"), "password", false))
            .collect();
        let found = check_secret_delete("shop", "db", &inventory(&objects));
        assert_eq!(found.violations.len(), MAX_NAMED_READERS);
        assert_eq!(found.notices.len(), 1);
        let warnings = crate::warnings::warnings(&crate::engine::Decision {
            warnings: found.violations.clone(),
            ..Default::default()
        });
        let (last, named) = warnings.split_last().unwrap();
        assert!(
            named.iter().all(|w| w
                .contains(" in spec.template.spec.containers[0].env[0]; new pods will not start")
                && w.contains(
                    "Fix: stop reading it there, or mark it optional: true, and roll that out first"
                )),
            "each warning keeps the field and the fix: {warnings:?}"
        );
        assert!(last.contains("more warning(s) not shown"), "{last}");
        assert!(
            found.notices[0]
                .message
                .starts_with("5 more references to secret \"db\" (in 5 more workloads)"),
            "{:?}",
            found.notices
        );
    }
}
