//! Rule `secret-ref`: an object that references a Secret, or a key of a Secret, that does not
//! exist in its namespace and that nothing (ExternalSecret, SealedSecret, Certificate, cert-manager's
//! ingress-shim) will produce. Without it, pods sit in `CreateContainerConfigError` and ingress
//! controllers serve their default certificate after an apply that "succeeded".
//!
//! References come from [`crate::references`]: pod specs of every workload kind, Ingress TLS and
//! Gateway certificateRefs. `optional: true` is never a violation, as the kubelet then starts
//! the container without the value. An ExternalSecret whose SecretStore or ClusterSecretStore
//! does not exist produces nothing, so it is no producer here; on admission of the
//! ExternalSecret itself its store references are checked.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{Findings, Notice, ObjectSubject, Rule, RuleId, Subject, Violation};
use crate::inventory::{
    Inventory, ProducedKeys, Producer, ProducerKind, Readiness, StoreLookup, StoreRef, store_ref,
};
use crate::policy::FailureMode;
use crate::references::{
    RefKind, SecretRef, TLS_KEYS, gateway_references, ingress_references, pod_references,
};

/// Secret types the kubelet accepts as image pull secrets.
const PULL_SECRET_TYPES: &[&str] = &["kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg"];

/// Annotations that make cert-manager's ingress-shim create a Certificate for every
/// `spec.tls[]` entry of the Ingress (`kubernetes.io/tls-acme` only where cert-manager runs
/// with a default issuer, which the inventory cannot see: it is trusted, with a notice).
const INGRESS_SHIM_ANNOTATIONS: [&str; 3] = [
    "cert-manager.io/cluster-issuer",
    "cert-manager.io/issuer",
    "kubernetes.io/tls-acme",
];

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// Names longer than this get no "did you mean": comparing them costs more than it helps.
const MAX_SUGGESTED_LEN: usize = 100;
/// At most this many references per request get suggestions, so a pod with thousands of
/// missing references cannot make one admission request expensive.
const MAX_SUGGESTIONS_PER_REQUEST: usize = 20;

/// Names within a small edit distance of `wanted`, closest first (at most three).
fn close_names(wanted: &str, candidates: impl IntoIterator<Item = String>) -> Vec<String> {
    let wanted_len = wanted.chars().count();
    if wanted_len > MAX_SUGGESTED_LEN {
        return Vec::new();
    }
    let limit = (wanted_len / 4).clamp(1, 3);
    let mut scored: Vec<(usize, String)> = candidates
        .into_iter()
        .filter(|c| c != wanted)
        // Edit distance is at least the length difference: skip what cannot be close.
        .filter(|c| c.chars().count().abs_diff(wanted_len) <= limit)
        .filter_map(|c| {
            let d = strsim::damerau_levenshtein(&wanted.to_lowercase(), &c.to_lowercase());
            (d <= limit).then_some((d, c))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, c)| c).collect()
}

fn quoted_list<T: std::fmt::Debug>(items: impl IntoIterator<Item = T>) -> String {
    let list: Vec<String> = items.into_iter().map(|s| format!("{s:?}")).collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}

fn did_you_mean(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", quoted_list(names))
    }
}

/// The rule, with the failure mode it applies while the inventory cannot answer.
pub struct SecretReferences {
    failure_mode: FailureMode,
}

impl SecretReferences {
    pub fn new(failure_mode: FailureMode) -> Self {
        SecretReferences { failure_mode }
    }

    /// Why the inventory cannot answer now (not ready, or stale), if so.
    fn unusable(inventory: &dyn Inventory) -> Option<String> {
        match inventory.readiness() {
            Readiness::NotReady(reason) => Some(format!(
                "applyguard's cluster inventory is not ready ({reason})"
            )),
            Readiness::Ready => inventory
                .stale()
                .map(|reason| format!("applyguard's cluster inventory is stale ({reason})")),
        }
    }

    /// What an unanswerable inventory does to one reference: failureMode decides.
    fn cannot_check(&self, path: String, what: &str, reason: &str, out: &mut Findings) {
        let message = format!(
            "cannot check {what}: {reason}; failureMode is {}",
            self.failure_mode.as_str()
        );
        match self.failure_mode {
            FailureMode::Deny => out.violations.push(Violation {
                rule: RuleId::SecretRef,
                path,
                value: what.to_string(),
                message,
                fix: "retry once applyguard reports ready (GET /readyz), or set failureMode: warn."
                    .to_string(),
                source: None,
            }),
            FailureMode::Warn => out.notices.push(Notice {
                rule: RuleId::SecretRef,
                path,
                message,
            }),
        }
    }

    fn check_refs(
        &self,
        refs: Vec<SecretRef<'_>>,
        context: &Context<'_>,
        inventory: &dyn Inventory,
        out: &mut Findings,
    ) {
        let refs: Vec<SecretRef<'_>> = refs.into_iter().filter(|r| !r.optional).collect();
        if refs.is_empty() {
            return;
        }
        if let Some(reason) = Self::unusable(inventory) {
            for r in refs {
                self.cannot_check(r.path, &format!("secret {:?}", r.name), &reason, out);
            }
            return;
        }
        let mut budget = MAX_SUGGESTIONS_PER_REQUEST;
        for r in refs {
            check_one(inventory, context, &r, &mut budget, out);
        }
    }

    /// An ExternalSecret's own store references: `spec.secretStoreRef`, and the per-entry
    /// `sourceRef.storeRef` of `spec.data[]` and `spec.dataFrom[]`.
    fn check_external_secret(&self, subject: &ObjectSubject<'_>, out: &mut Findings) {
        let spec = subject.object.get("spec").unwrap_or(&Value::Null);
        let mut stores: Vec<(String, StoreRef)> = Vec::new();
        if let Some(Ok(Some(store))) = spec.get("secretStoreRef").map(store_ref) {
            stores.push(("spec.secretStoreRef".to_string(), store));
        }
        for list in ["data", "dataFrom"] {
            for (i, entry) in spec
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                if let Some(Ok(Some(store))) = entry
                    .get("sourceRef")
                    .and_then(|s| s.get("storeRef"))
                    .map(store_ref)
                {
                    stores.push((format!("spec.{list}[{i}].sourceRef.storeRef"), store));
                }
            }
        }
        if stores.is_empty() {
            return;
        }
        let inventory = subject.inventory;
        if let Some(reason) = Self::unusable(inventory) {
            for (path, store) in stores {
                self.cannot_check(path, &store.describe(), &reason, out);
            }
            return;
        }
        for (path, store) in stores {
            match inventory.secret_store(subject.namespace, &store) {
                StoreLookup::Found(info) => {
                    if let Some(why) = info.not_ready {
                        out.notices.push(Notice {
                            rule: RuleId::SecretRef,
                            path,
                            message: format!(
                                "{} is not Ready ({why}): nothing is synced from it until it is",
                                store.describe()
                            ),
                        });
                    }
                }
                StoreLookup::Unknown => {}
                StoreLookup::Missing => out.violations.push(Violation {
                    rule: RuleId::SecretRef,
                    path,
                    value: format!("{}/{}", store.kind, store.name),
                    message: format!(
                        "{} not found{} (checked: {}), so this ExternalSecret will never produce its Secret",
                        store.describe(),
                        if store.kind.namespaced() {
                            format!(" in namespace {:?}", subject.namespace)
                        } else {
                            String::new()
                        },
                        inventory.source()
                    ),
                    fix: format!(
                        "create {} first, or name an existing one (kubectl get {}{}).",
                        store.describe(),
                        store.kind.resource(),
                        if store.kind.namespaced() {
                            format!(" -n {}", subject.namespace)
                        } else {
                            String::new()
                        }
                    ),
                    source: None,
                }),
            }
        }
    }
}

/// What a reference is checked in the light of: the object's kind and namespace, and for an
/// Ingress its annotations (ingress-shim).
struct Context<'a> {
    kind: &'a str,
    namespace: &'a str,
    shim: Option<String>,
}

impl Rule for SecretReferences {
    fn id(&self) -> RuleId {
        RuleId::SecretRef
    }

    fn check(&self, subject: &Subject<'_>, out: &mut Findings) {
        let context = Context {
            kind: "workload",
            namespace: subject.namespace,
            shim: None,
        };
        self.check_refs(
            pod_references(subject.pod),
            &context,
            subject.inventory,
            out,
        );
    }

    fn handles_kind(&self, group: &str, kind: &str) -> bool {
        matches!(
            (group, kind),
            ("networking.k8s.io", "Ingress")
                | (GATEWAY_GROUP, "Gateway")
                | ("external-secrets.io", "ExternalSecret")
        )
    }

    fn check_object(&self, subject: &ObjectSubject<'_>, out: &mut Findings) {
        match subject.kind {
            "Ingress" => {
                let shim = subject.annotations.and_then(ingress_shim);
                let context = Context {
                    kind: "Ingress",
                    namespace: subject.namespace,
                    shim,
                };
                self.check_refs(
                    ingress_references(subject.object),
                    &context,
                    subject.inventory,
                    out,
                );
            }
            "Gateway" => {
                let context = Context {
                    kind: "Gateway",
                    namespace: subject.namespace,
                    shim: None,
                };
                self.check_refs(
                    gateway_references(subject.object, subject.namespace),
                    &context,
                    subject.inventory,
                    out,
                );
            }
            "ExternalSecret" => self.check_external_secret(subject, out),
            _ => {}
        }
    }
}

/// The ingress-shim annotation on an Ingress, as `annotation: value`.
fn ingress_shim(annotations: &BTreeMap<String, String>) -> Option<String> {
    INGRESS_SHIM_ANNOTATIONS.iter().find_map(|name| {
        let value = annotations.get(*name)?.trim();
        let on = if *name == "kubernetes.io/tls-acme" {
            value == "true"
        } else {
            !value.is_empty()
        };
        on.then(|| format!("{name}: {value}"))
    })
}

/// Whether a producer can produce at all: an ExternalSecret whose store is missing cannot.
/// `Ok(Some(text))` when it can but its store is not Ready.
fn producer_state(inventory: &dyn Inventory, p: &Producer) -> Result<Option<String>, String> {
    let Some(store) = p
        .store
        .as_ref()
        .filter(|_| p.kind == ProducerKind::ExternalSecret)
    else {
        return Ok(None);
    };
    match inventory.secret_store(&p.namespace, store) {
        StoreLookup::Found(info) => Ok(info.not_ready.map(|why| {
            format!(
                "its {} is not Ready ({why}), so the Secret may not be there yet",
                store.describe()
            )
        })),
        StoreLookup::Unknown => Ok(None),
        StoreLookup::Missing => Err(store.describe()),
    }
}

fn violation(r: &SecretRef<'_>, message: String, fix: String) -> Violation {
    let name = match r.namespace {
        Some(ns) => format!("{ns}/{}", r.name),
        None => r.name.to_string(),
    };
    Violation {
        rule: RuleId::SecretRef,
        path: r.path.clone(),
        value: match r.key {
            Some(key) => format!("{name}/{key}"),
            None => name,
        },
        message,
        fix,
        source: None,
    }
}

fn notice(r: &SecretRef<'_>, message: String) -> Notice {
    Notice {
        rule: RuleId::SecretRef,
        path: r.path.clone(),
        message,
    }
}

/// The keys a reference needs: the one it names, or what its kind requires (TLS).
fn wanted_keys<'a>(r: &SecretRef<'a>) -> Vec<&'a str> {
    match r.key {
        Some(key) => vec![key],
        None => r.kind.required_keys().to_vec(),
    }
}

/// Key names as a Secret (`KeySet`) and a producer (`BTreeSet`) hold them.
trait KeyNames {
    fn has(&self, key: &str) -> bool;
}

impl KeyNames for BTreeSet<String> {
    fn has(&self, key: &str) -> bool {
        self.contains(key)
    }
}

impl KeyNames for crate::inventory::KeySet {
    fn has(&self, key: &str) -> bool {
        self.contains(key)
    }
}

fn has_all(keys: &impl KeyNames, wanted: &[&str]) -> bool {
    wanted.iter().all(|k| keys.has(k))
}

fn missing_of<'a>(keys: &impl KeyNames, wanted: &[&'a str]) -> Vec<&'a str> {
    wanted.iter().copied().filter(|k| !keys.has(k)).collect()
}

fn quoted_keys(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("{k:?}"))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// A Gateway reading a Secret in another namespace needs a ReferenceGrant there. `false` when
/// the reference is refused (a violation was added).
fn cross_namespace_allowed(
    inventory: &dyn Inventory,
    context: &Context<'_>,
    r: &SecretRef<'_>,
    secret_namespace: &str,
    out: &mut Findings,
) -> bool {
    if r.kind != RefKind::GatewayCertificate || secret_namespace == context.namespace {
        return true;
    }
    let Some(grants) = inventory.reference_grants(secret_namespace) else {
        out.notices.push(notice(
            r,
            format!(
                "cannot verify that a ReferenceGrant in namespace {secret_namespace:?} lets this Gateway read secret {:?}: ReferenceGrants are not watched (their API is not served)",
                r.name
            ),
        ));
        return true;
    };
    if grants
        .iter()
        .any(|g| g.allows_secret(GATEWAY_GROUP, "Gateway", context.namespace, r.name))
    {
        return true;
    }
    let names: Vec<String> = grants.iter().map(|g| g.name.clone()).collect();
    out.violations.push(violation(
        r,
        format!(
            "no ReferenceGrant in namespace {secret_namespace:?} allows Gateways in namespace {:?} to read secret {:?} (grants there: {}); the Gateway controller refuses the certificate",
            context.namespace,
            r.name,
            quoted_list(&names)
        ),
        format!(
            "create a ReferenceGrant in namespace {secret_namespace:?} with from: [{{group: gateway.networking.k8s.io, kind: Gateway, namespace: {}}}] and to: [{{group: \"\", kind: Secret, name: {}}}], or copy the Secret into namespace {:?}.",
            context.namespace, r.name, context.namespace
        ),
    ));
    false
}

fn check_one(
    inventory: &dyn Inventory,
    context: &Context<'_>,
    r: &SecretRef<'_>,
    budget: &mut usize,
    out: &mut Findings,
) {
    // Suggestions cost a scan of names; spend them on the first few violations only.
    let mut suggest = |wanted: &str, candidates: &mut dyn FnMut() -> Vec<String>| {
        if *budget == 0 {
            return String::new();
        }
        *budget -= 1;
        did_you_mean(&close_names(wanted, candidates()))
    };
    if r.name.is_empty() {
        out.violations.push(violation(
            r,
            "the Secret name is empty".to_string(),
            "name the Secret this field should read.".to_string(),
        ));
        return;
    }
    if r.kind == RefKind::IngressTls && r.name.contains('/') {
        // Not a Secret name for the Ingress API, but Contour (TLSCertificateDelegation) and
        // HAProxy ingress read `namespace/name`: say it is unchecked rather than deny it.
        out.notices.push(notice(
            r,
            format!(
                "{:?} names a Secret in another namespace: only some controllers (Contour with a TLSCertificateDelegation, HAProxy ingress) read that form; others serve their default certificate. applyguard does not check it",
                r.name
            ),
        ));
        return;
    }
    let namespace = r.namespace.unwrap_or(context.namespace);
    if !cross_namespace_allowed(inventory, context, r, namespace, out) {
        return;
    }
    let wanted = wanted_keys(r);
    let secret = inventory.secret(namespace, r.name);
    if let Some(secret) = &secret {
        if r.kind == RefKind::PullSecret
            && !PULL_SECRET_TYPES.contains(&secret.secret_type.as_str())
        {
            out.violations.push(violation(
                r,
                format!(
                    "image pull secret {:?} has type {:?}; the kubelet only uses kubernetes.io/dockerconfigjson (or dockercfg) Secrets for pulls",
                    r.name, secret.secret_type
                ),
                "create it with `kubectl create secret docker-registry`, or reference the pull Secret instead.".to_string(),
            ));
            return;
        }
        if has_all(&secret.keys, &wanted) {
            return;
        }
    }
    // An ExternalSecret whose store does not exist produces nothing: set it aside.
    let (producers, broken): (Vec<Producer>, Vec<Producer>) = inventory
        .producers(namespace, r.name)
        .into_iter()
        .partition(|p| producer_state(inventory, p).is_ok());
    // A producer that declares the keys (or any producer when none is needed) will make them.
    let declaring = producers.iter().find(|p| match &p.keys {
        ProducedKeys::Known(keys) => has_all(keys, &wanted),
        ProducedKeys::Unknown(_) => wanted.is_empty(),
    });
    if let Some(p) = declaring {
        if let Ok(Some(not_ready)) = producer_state(inventory, p) {
            out.notices.push(notice(
                r,
                format!(
                    "secret {:?} comes from {}, but {not_ready}",
                    r.name,
                    p.describe()
                ),
            ));
        } else if secret.is_none() {
            out.notices.push(notice(
                r,
                format!("produced by {} (secret {:?})", p.describe(), r.name),
            ));
        }
        return;
    }
    if let Some(shim) = &context.shim {
        if secret.is_none() {
            out.notices.push(notice(
                r,
                format!(
                    "secret {:?} will be created by cert-manager's ingress-shim (annotation {shim})",
                    r.name
                ),
            ));
        }
        return;
    }
    if let Some(p) = producers
        .iter()
        .find(|p| matches!(p.keys, ProducedKeys::Unknown(_)))
    {
        let why = match &p.keys {
            ProducedKeys::Unknown(why) => why.as_str(),
            ProducedKeys::Known(_) => "",
        };
        out.notices.push(notice(
            r,
            format!(
                "secret {:?} comes from {} and key {} cannot be verified: {why}",
                r.name,
                p.describe(),
                quoted_keys(&wanted)
            ),
        ));
        return;
    }
    if let Some(p) = broken.first() {
        let store = producer_state(inventory, p).err().unwrap_or_default();
        out.violations.push(violation(
            r,
            format!(
                "{} would produce secret {:?}, but its {store} does not exist (checked: {}), so it produces nothing",
                p.describe(),
                r.name,
                inventory.source()
            ),
            format!(
                "create {store}, or point spec.secretStoreRef of {} at a store that exists.",
                p.describe()
            ),
        ));
        return;
    }
    let tls = !r.kind.required_keys().is_empty();
    if let Some(secret) = secret {
        let missing = missing_of(&secret.keys, &wanted);
        let suggestion = match missing.as_slice() {
            [key] if !tls => suggest(key, &mut || {
                secret.keys.iter().map(str::to_string).collect()
            }),
            _ => String::new(),
        };
        let (what, fix) = if tls {
            (
                format!(
                    " (a TLS Secret needs {}; its type is {:?})",
                    quoted_keys(&TLS_KEYS),
                    secret.secret_type
                ),
                format!(
                    "recreate it as a TLS Secret: kubectl create secret tls {} --cert=FILE --key=FILE -n {namespace}, or let a cert-manager Certificate with secretName {} produce it.",
                    r.name, r.name
                ),
            )
        } else {
            (
                String::new(),
                format!(
                    "add key {} to the Secret, or reference one of the keys it has.",
                    quoted_keys(&missing)
                ),
            )
        };
        out.violations.push(violation(
            r,
            format!(
                "secret {:?} in namespace {namespace:?} has no key {} (it has: {}){what}{suggestion}",
                r.name,
                quoted_keys(&missing),
                quoted_list(secret.keys.iter())
            ),
            fix,
        ));
        return;
    }
    if let Some(p) = producers.first() {
        let keys: BTreeSet<String> = match &p.keys {
            ProducedKeys::Known(keys) => keys.clone(),
            ProducedKeys::Unknown(_) => BTreeSet::new(),
        };
        let missing = missing_of(&keys, &wanted);
        let suggestion = match missing.as_slice() {
            [key] => suggest(key, &mut || keys.iter().cloned().collect()),
            _ => String::new(),
        };
        out.violations.push(violation(
            r,
            format!(
                "{} will produce secret {:?} with keys {}, not {}{suggestion}",
                p.describe(),
                r.name,
                quoted_list(&keys),
                quoted_keys(&missing)
            ),
            producer_fix(p, &missing),
        ));
        return;
    }
    let suggestion = suggest(r.name, &mut || inventory.secret_names(namespace));
    let elsewhere = inventory.namespaces_with_secret(r.name, namespace);
    let elsewhere = if elsewhere.is_empty() || r.kind == RefKind::GatewayCertificate {
        String::new()
    } else {
        format!(
            "; a Secret of that name exists in namespace {} (Secrets are only visible in their own namespace)",
            quoted_list(&elsewhere)
        )
    };
    let producers_checked = if r.kind == RefKind::IngressTls {
        "no Certificate, ExternalSecret or SealedSecret produces it, and the Ingress has no cert-manager.io/cluster-issuer or cert-manager.io/issuer annotation"
    } else {
        "no ExternalSecret, SealedSecret or Certificate produces it"
    };
    let fix = match r.kind {
        RefKind::IngressTls => format!(
            "create TLS Secret {:?} in namespace {namespace:?} (kubectl create secret tls), a cert-manager Certificate with secretName {}, or annotate the Ingress with cert-manager.io/cluster-issuer; or remove secretName to serve the controller's default certificate.",
            r.name, r.name
        ),
        RefKind::GatewayCertificate => format!(
            "create TLS Secret {:?} in namespace {namespace:?} (kubectl create secret tls, or a cert-manager Certificate with secretName {}), or fix the name.",
            r.name, r.name
        ),
        _ => format!(
            "create Secret {:?} in namespace {namespace:?} (or what produces it) before this {}, or fix the name.",
            r.name, context.kind
        ),
    };
    out.violations.push(violation(
        r,
        format!(
            "secret {:?} not found in namespace {namespace:?}, and {producers_checked} (checked: {}){suggestion}{elsewhere}",
            r.name,
            inventory.source()
        ),
        fix,
    ));
}

fn producer_fix(p: &Producer, missing: &[&str]) -> String {
    let keys = missing.join(", ");
    match p.kind {
        ProducerKind::ExternalSecret => format!(
            "add a spec.data entry with secretKey: {keys} to ExternalSecret {}, or reference a key it produces.",
            p.name
        ),
        ProducerKind::SealedSecret => format!(
            "seal key {keys} into SealedSecret {} (kubeseal --merge-into), or reference a key it produces.",
            p.name
        ),
        ProducerKind::Certificate => format!(
            "reference tls.crt, tls.key or ca.crt of Certificate {}'s Secret instead of {keys}.",
            p.name
        ),
    }
}
