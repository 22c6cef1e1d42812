//! Rule `secret-ref`: a pod that references a Secret, or a key of a Secret, that does not exist in
//! its namespace and that nothing (ExternalSecret, SealedSecret, Certificate) will produce.
//! Without it, pods sit in `CreateContainerConfigError` after an apply that "succeeded".
//!
//! References read: `env[].valueFrom.secretKeyRef`, `envFrom[].secretRef`, `volumes[].secret`
//! (with `items[].key`), `volumes[].projected.sources[].secret` (with `items[].key`) and
//! `imagePullSecrets[]`, in every container list. `optional: true` is never a violation, as the
//! kubelet then starts the container without the value.

use std::collections::BTreeSet;

use super::{Findings, Notice, Rule, RuleId, Subject, Violation};
use crate::inventory::{Inventory, ProducedKeys, Producer, Readiness};
use crate::policy::FailureMode;

/// Secret types the kubelet accepts as image pull secrets.
const PULL_SECRET_TYPES: &[&str] = &["kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefKind {
    Env,
    EnvFrom,
    Volume,
    Projected,
    PullSecret,
}

/// One reference to a Secret in a pod spec.
#[derive(Debug, Clone)]
struct SecretRef<'a> {
    path: String,
    name: &'a str,
    key: Option<&'a str>,
    optional: bool,
    kind: RefKind,
}

fn collect<'a>(subject: &'a Subject<'_>) -> Vec<SecretRef<'a>> {
    let pod = subject.pod;
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
                    path: format!("{}.env[{i}].valueFrom.secretKeyRef", container.path),
                    name: &r.name,
                    key: Some(&r.key),
                    optional: r.optional.unwrap_or(false),
                    kind: RefKind::Env,
                });
            }
        }
        for (i, from) in container.env_from.iter().enumerate() {
            if let Some(r) = &from.secret_ref {
                refs.push(SecretRef {
                    path: format!("{}.envFrom[{i}].secretRef", container.path),
                    name: &r.name,
                    key: None,
                    optional: r.optional.unwrap_or(false),
                    kind: RefKind::EnvFrom,
                });
            }
        }
    }
    for (v, volume) in spec.volumes.iter().flatten().enumerate() {
        let base = format!("{}.volumes[{v}]", pod.prefix);
        if let Some(secret) = &volume.secret {
            let name = secret.secret_name.as_deref().unwrap_or("");
            let optional = secret.optional.unwrap_or(false);
            push_with_items(
                &mut refs,
                format!("{base}.secret"),
                name,
                optional,
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
        refs.push(SecretRef {
            path: format!("{}.imagePullSecrets[{i}]", pod.prefix),
            name: &pull.name,
            key: None,
            optional: false,
            kind: RefKind::PullSecret,
        });
    }
    refs
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
            path: path.clone(),
            name,
            key: None,
            optional,
            kind,
        });
    }
    for (i, item) in items.iter().enumerate() {
        refs.push(SecretRef {
            path: format!("{path}.items[{i}]"),
            name,
            key: Some(&item.key),
            optional,
            kind,
        });
    }
}

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

fn quoted_list<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
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
}

impl Rule for SecretReferences {
    fn id(&self) -> RuleId {
        RuleId::SecretRef
    }

    fn check(&self, subject: &Subject<'_>, out: &mut Findings) {
        let refs: Vec<SecretRef<'_>> = collect(subject)
            .into_iter()
            .filter(|r| !r.optional)
            .collect();
        if refs.is_empty() {
            return;
        }
        let inventory = subject.inventory;
        let namespace = subject.namespace;
        let unusable = match inventory.readiness() {
            Readiness::NotReady(reason) => Some(format!(
                "applyguard's cluster inventory is not ready ({reason})"
            )),
            Readiness::Ready => inventory
                .stale()
                .map(|reason| format!("applyguard's cluster inventory is stale ({reason})")),
        };
        if let Some(reason) = unusable {
            for r in refs {
                let message = format!(
                    "cannot check secret {:?}: {reason}; failureMode is {}",
                    r.name,
                    self.failure_mode.as_str()
                );
                match self.failure_mode {
                    FailureMode::Deny => out.violations.push(Violation {
                        rule: RuleId::SecretRef,
                        path: r.path,
                        value: r.name.to_string(),
                        message,
                        fix: "retry once applyguard reports ready (GET /readyz), or set failureMode: warn.".to_string(),
                    }),
                    FailureMode::Warn => out.notices.push(Notice {
                        rule: RuleId::SecretRef,
                        path: r.path,
                        message,
                    }),
                }
            }
            return;
        }
        let mut budget = MAX_SUGGESTIONS_PER_REQUEST;
        for r in refs {
            check_one(inventory, namespace, &r, &mut budget, out);
        }
    }
}

fn violation(r: &SecretRef<'_>, message: String, fix: String) -> Violation {
    Violation {
        rule: RuleId::SecretRef,
        path: r.path.clone(),
        value: match r.key {
            Some(key) => format!("{}/{key}", r.name),
            None => r.name.to_string(),
        },
        message,
        fix,
    }
}

fn check_one(
    inventory: &dyn Inventory,
    namespace: &str,
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
        match r.key {
            None => return,
            Some(key) if secret.keys.contains(key) => return,
            Some(_) => {}
        }
    }
    let producers = inventory.producers(namespace, r.name);
    // A producer that declares the key (or any producer when no key is named) will make it.
    let declaring = producers.iter().find(|p| match (&p.keys, r.key) {
        (_, None) => true,
        (ProducedKeys::Known(keys), Some(key)) => keys.contains(key),
        (ProducedKeys::Unknown(_), _) => false,
    });
    if let Some(p) = declaring {
        if secret.is_none() {
            out.notices.push(Notice {
                rule: RuleId::SecretRef,
                path: r.path.clone(),
                message: format!("produced by {} (secret {:?})", p.describe(), r.name),
            });
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
        out.notices.push(Notice {
            rule: RuleId::SecretRef,
            path: r.path.clone(),
            message: format!(
                "secret {:?} comes from {} and key {:?} cannot be verified: {why}",
                r.name,
                p.describe(),
                r.key.unwrap_or_default()
            ),
        });
        return;
    }
    let key = r.key.unwrap_or_default();
    if let Some(secret) = secret {
        let suggestion = suggest(key, &mut || secret.keys.iter().cloned().collect());
        out.violations.push(violation(
            r,
            format!(
                "secret {:?} in namespace {namespace:?} has no key {key:?} (it has: {}){suggestion}",
                r.name,
                quoted_list(&secret.keys)
            ),
            format!("add key {key:?} to the Secret, or reference one of the keys it has."),
        ));
        return;
    }
    if let Some(p) = producers.first() {
        let keys: BTreeSet<String> = match &p.keys {
            ProducedKeys::Known(keys) => keys.clone(),
            ProducedKeys::Unknown(_) => BTreeSet::new(),
        };
        let suggestion = suggest(key, &mut || keys.iter().cloned().collect());
        out.violations.push(violation(
            r,
            format!(
                "{} will produce secret {:?} with keys {}, not {key:?}{suggestion}",
                p.describe(),
                r.name,
                quoted_list(&keys)
            ),
            producer_fix(p, key),
        ));
        return;
    }
    let suggestion = suggest(r.name, &mut || inventory.secret_names(namespace));
    let elsewhere = inventory.namespaces_with_secret(r.name, namespace);
    let elsewhere = if elsewhere.is_empty() {
        String::new()
    } else {
        format!(
            "; a Secret of that name exists in namespace {} (Secrets are only visible in their own namespace)",
            quoted_list(&elsewhere)
        )
    };
    out.violations.push(violation(
        r,
        format!(
            "secret {:?} not found in namespace {namespace:?}, and no ExternalSecret, SealedSecret or Certificate produces it (checked: {}){suggestion}{elsewhere}",
            r.name,
            inventory.source()
        ),
        format!(
            "create Secret {:?} in namespace {namespace:?} (or what produces it) before this workload, or fix the name.",
            r.name
        ),
    ));
}

fn producer_fix(p: &Producer, key: &str) -> String {
    match p.kind {
        crate::inventory::ProducerKind::ExternalSecret => format!(
            "add a spec.data entry with secretKey: {key} to ExternalSecret {}, or reference a key it produces.",
            p.name
        ),
        crate::inventory::ProducerKind::SealedSecret => format!(
            "seal key {key} into SealedSecret {} (kubeseal --merge-into), or reference a key it produces.",
            p.name
        ),
        crate::inventory::ProducerKind::Certificate => format!(
            "reference tls.crt, tls.key or ca.crt of Certificate {}'s Secret instead of {key}.",
            p.name
        ),
    }
}
