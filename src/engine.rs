//! The decision: which objects are evaluated, which rules run, and what each violation does
//! under the policy's modes. Pure: no I/O, so `serve`, `review` and tests decide identically.

use std::sync::Arc;

use k8s_openapi::api::core::v1::EphemeralContainer;
use kube::core::admission::Operation;
use serde::Deserialize;
use serde_json::Value;

use std::collections::HashMap;

use crate::exemptions::{self, Caller, Exemption, Matchers};
use crate::inventory::{EmptyInventory, Inventory, ProducerKind};
use crate::policy::{Policy, PolicyError, RuleMode};
use crate::rules::{
    Findings, Notice, ObjectSubject, RuleId, RuleSet, Subject, Violation, secret_in_use,
};
use crate::workload::{CustomWorkload, PodView, WorkloadError, WorkloadKind, raw_pod_spec};

/// What the engine needs to know about one admission request.
pub struct Request<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub operation: &'a Operation,
    pub namespace: &'a str,
    /// The object's name, for messages about objects that are not workloads ("" when unknown).
    pub name: &'a str,
    pub object: Option<&'a Value>,
    pub old_object: Option<&'a Value>,
    /// `ephemeralcontainers`, `status`, `scale`...; `None` for the object itself.
    pub sub_resource: Option<&'a str>,
}

/// Why a request was allowed without running the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// DELETE and CONNECT never carry a new spec to check.
    Operation,
    /// The kind carries no pod spec and no rule handles it.
    Kind,
    /// An UPDATE that leaves the evaluated fields as they were: the pod spec (scale, labels,
    /// annotations, status), or a ConfigMap's data and a custom resource's spec.
    Unchanged,
    /// A workload without a pod template.
    NoPodSpec,
    /// A subresource that cannot change what the rules check (status, scale, binding...).
    Subresource,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Operation => "operation not evaluated",
            Skip::Kind => "kind not evaluated",
            Skip::Unchanged => "evaluated fields unchanged",
            Skip::NoPodSpec => "no pod spec",
            Skip::Subresource => "subresource not evaluated",
        }
    }
}

/// A violation that an exemption turned into a warning.
#[derive(Debug, Clone)]
pub struct Exempted {
    pub violation: Violation,
    /// Which exemption, and why: `namespace kube-system is exempt (exemptions.namespaces: ...)`.
    pub exemption: String,
}

/// The verdict on one request.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// Violations of rules in enforce mode: any one denies the request.
    pub denied_by: Vec<Violation>,
    /// Violations of rules in warn mode: returned as warnings, the request is allowed.
    pub warnings: Vec<Violation>,
    /// Information returned as warnings whatever the mode.
    pub notices: Vec<Notice>,
    /// Violations an exemption turned into warnings.
    pub exempted: Vec<Exempted>,
    /// Problems with namespace labels or exemption annotations, returned as warnings.
    pub policy_notes: Vec<String>,
    pub skipped: Option<Skip>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.denied_by.is_empty()
    }

    fn skip(reason: Skip) -> Decision {
        Decision {
            skipped: Some(reason),
            ..Decision::default()
        }
    }
}

/// Field paths of ephemeral containers that are new or changed compared with `old`.
fn added_ephemeral_paths(pod: &PodView, old: Option<&Value>) -> Vec<String> {
    let before: Vec<EphemeralContainer> = old
        .and_then(|o| raw_pod_spec(WorkloadKind::Pod, o))
        .and_then(|spec| spec.get("ephemeralContainers"))
        .and_then(|list| Vec::<EphemeralContainer>::deserialize(list).ok())
        .unwrap_or_default();
    pod.spec
        .ephemeral_containers
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, c)| !before.contains(c))
        .map(|(i, _)| format!("{}.ephemeralContainers[{i}]", pod.prefix))
        .collect()
}

/// The policy with its rules built and the inventory they read, ready to decide.
pub struct Engine {
    policy: Policy,
    rules: RuleSet,
    exemptions: Matchers,
    inventory: Arc<dyn Inventory>,
    /// The policy's `workloads:`, resolved once.
    custom_workloads: Vec<&'static CustomWorkload>,
}

/// How rules apply to one request: modes from the namespace, and exemptions.
struct Applicability {
    modes: HashMap<RuleId, RuleMode>,
    exemption: Exemption,
    notes: Vec<String>,
}

impl Engine {
    /// An engine with no cluster state (every referenced Secret is unknown).
    pub fn new(policy: Policy) -> Result<Engine, PolicyError> {
        Engine::with_inventory(policy, Arc::new(EmptyInventory))
    }

    pub fn with_inventory(
        policy: Policy,
        inventory: Arc<dyn Inventory>,
    ) -> Result<Engine, PolicyError> {
        let rules = RuleSet::from_policy(&policy)?;
        let exemptions = Matchers::new(&policy.exemptions);
        let custom_workloads = policy
            .workloads
            .iter()
            .map(|w| CustomWorkload::interned(&w.group, &w.kind, &w.pod_template))
            .collect();
        Ok(Engine {
            policy,
            rules,
            exemptions,
            inventory,
            custom_workloads,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn inventory(&self) -> &Arc<dyn Inventory> {
        &self.inventory
    }

    /// Decides one request with no caller information (no user, no annotations).
    pub fn decide(&self, request: &Request<'_>) -> Result<Decision, WorkloadError> {
        self.decide_with(request, &Caller::default())
    }

    fn applicability(&self, namespace: &str, caller: &Caller<'_>) -> Applicability {
        let labels = self.inventory.namespace_labels(namespace);
        let (modes, mut notes) = exemptions::modes(&self.policy, labels.as_ref());
        let exemption = self.exemptions.evaluate(namespace, caller);
        notes.extend(exemption.notes.iter().cloned());
        Applicability {
            modes,
            exemption,
            notes,
        }
    }

    /// Decides one request: namespace labels choose the modes, and exemptions apply.
    pub fn decide_with(
        &self,
        request: &Request<'_>,
        caller: &Caller<'_>,
    ) -> Result<Decision, WorkloadError> {
        if matches!(request.operation, Operation::Delete) {
            return Ok(self.decide_delete(request, caller));
        }
        if !matches!(request.operation, Operation::Create | Operation::Update) {
            return Ok(Decision::skip(Skip::Operation));
        }
        // Only the ephemeralcontainers subresource adds something to check (kubectl debug).
        let ephemeral_update = match request.sub_resource {
            None | Some("") => false,
            Some("ephemeralcontainers") => true,
            Some(_) => return Ok(Decision::skip(Skip::Subresource)),
        };
        let applicability = self.applicability(request.namespace, caller);
        let enabled = |rule: RuleId| applicability.modes.get(&rule) != Some(&RuleMode::Off);
        let Some(kind) = self.workload_kind(request.group, request.kind) else {
            return Ok(self.decide_object(request, caller, &applicability, &enabled));
        };
        let Some(object) = request.object else {
            return Ok(Decision::skip(Skip::NoPodSpec));
        };
        if kind == WorkloadKind::Rollout
            && raw_pod_spec(kind, object).is_none()
            && let Some(reference) = object.get("spec").and_then(|s| s.get("workloadRef"))
        {
            return Ok(workload_ref_notice(reference, applicability.notes));
        }
        // As Pod Security Admission does: an update that does not touch the pod spec is never
        // blocked, so existing workloads can always be scaled, relabelled and cleaned up.
        if matches!(request.operation, Operation::Update)
            && let Some(old) = request.old_object
            && raw_pod_spec(kind, old) == raw_pod_spec(kind, object)
        {
            return Ok(Decision::skip(Skip::Unchanged));
        }
        let Some(pod) = PodView::from_object(kind, object)? else {
            return Ok(Decision::skip(Skip::NoPodSpec));
        };
        let subject = Subject {
            namespace: request.namespace,
            pod: &pod,
            inventory: self.inventory.as_ref(),
        };
        let mut findings = self.rules.check(&subject, &enabled);
        if ephemeral_update {
            // `kubectl debug` adds an ephemeral container to a running pod: judge what it
            // adds, not the containers the pod was admitted with (a Secret rotated away since
            // must not make debugging impossible).
            let added = added_ephemeral_paths(&pod, request.old_object);
            let keep = |path: &str| {
                added
                    .iter()
                    .any(|p| path == p || path.starts_with(&format!("{p}.")))
            };
            findings.violations.retain(|v| keep(&v.path));
            findings.notices.retain(|n| keep(&n.path));
        }
        Ok(apply_modes(findings, &applicability))
    }

    /// The workload kind of a group and kind: built in, or from the policy's `workloads:`.
    pub fn workload_kind(&self, group: &str, kind: &str) -> Option<WorkloadKind> {
        WorkloadKind::from_group_kind(group, kind).or_else(|| {
            self.custom_workloads
                .iter()
                .find(|c| c.group == group && c.kind == kind)
                .map(|c| WorkloadKind::Custom(c))
        })
    }

    /// Kinds without a pod spec: evaluated only when a rule handles them.
    fn decide_object(
        &self,
        request: &Request<'_>,
        caller: &Caller<'_>,
        applicability: &Applicability,
        enabled: &dyn Fn(RuleId) -> bool,
    ) -> Decision {
        let Some(object) = request.object else {
            return Decision::skip(Skip::Kind);
        };
        let guarded = matches!(request.operation, Operation::Update)
            && (request.group, request.kind) == ("", "Secret")
            && enabled(RuleId::SecretInUse);
        let handled = self
            .rules
            .handles_kind(request.group, request.kind, enabled);
        if !handled && !guarded {
            return Decision::skip(Skip::Kind);
        }
        // An update that leaves data and spec alone (labels, annotations, status) is allowed.
        if matches!(request.operation, Operation::Update)
            && let Some(old) = request.old_object
            && old.get("data") == object.get("data")
            && old.get("spec") == object.get("spec")
        {
            return Decision::skip(Skip::Unchanged);
        }
        let mut findings = self.rules.check_object(
            &ObjectSubject {
                group: request.group,
                kind: request.kind,
                namespace: request.namespace,
                name: request.name,
                annotations: caller.annotations,
                object,
                inventory: self.inventory.as_ref(),
            },
            enabled,
        );
        if guarded && let Some(old) = request.old_object {
            let removed = secret_in_use::check_secret_update(
                request.namespace,
                request.name,
                old,
                object,
                self.inventory.as_ref(),
            );
            findings.violations.extend(removed.violations);
            findings.notices.extend(removed.notices);
        }
        apply_modes(findings, applicability)
    }

    /// DELETE: only the deletion guard looks, at Secrets and at what produces them.
    fn decide_delete(&self, request: &Request<'_>, caller: &Caller<'_>) -> Decision {
        let producer = ProducerKind::ALL
            .into_iter()
            .find(|p| p.group() == request.group && p.kind() == request.kind);
        let is_secret = (request.group, request.kind) == ("", "Secret");
        if !is_secret && producer.is_none() || request.sub_resource.is_some_and(|s| !s.is_empty()) {
            return Decision::skip(Skip::Operation);
        }
        let applicability = self.applicability(request.namespace, caller);
        if applicability.modes.get(&RuleId::SecretInUse) == Some(&RuleMode::Off) {
            return Decision::skip(Skip::Operation);
        }
        let inventory = self.inventory.as_ref();
        let findings = match producer {
            Some(kind) => secret_in_use::check_producer_delete(
                kind,
                request.namespace,
                request.name,
                request.old_object,
                inventory,
            ),
            None => secret_in_use::check_secret_delete(request.namespace, request.name, inventory),
        };
        apply_modes(findings, &applicability)
    }
}

/// A Rollout that takes its pod template from another workload (`spec.workloadRef`) has
/// nothing of its own to check: that workload is checked when it is applied. Said, not hidden.
fn workload_ref_notice(reference: &Value, mut notes: Vec<String>) -> Decision {
    let text = |field: &str| reference.get(field).and_then(Value::as_str).unwrap_or("");
    notes.push(format!(
        "this Rollout takes its pod template from {} {:?} (spec.workloadRef): applyguard checks that {} when it is applied, not here",
        if text("kind").is_empty() { "a workload" } else { text("kind") },
        text("name"),
        if text("kind").is_empty() { "workload" } else { text("kind") },
    ));
    Decision {
        policy_notes: notes,
        skipped: Some(Skip::NoPodSpec),
        ..Decision::default()
    }
}

/// Sorts violations into denials, warnings and exemptions by the request's modes.
fn apply_modes(findings: Findings, applicability: &Applicability) -> Decision {
    let mut decision = Decision {
        notices: findings.notices,
        policy_notes: applicability.notes.clone(),
        ..Decision::default()
    };
    for violation in findings.violations {
        let mode = applicability
            .modes
            .get(&violation.rule)
            .copied()
            .unwrap_or(RuleMode::Enforce);
        if mode == RuleMode::Off {
            continue;
        }
        match applicability.exemption.reason(violation.rule) {
            Some(reason) => decision.exempted.push(Exempted {
                violation,
                exemption: reason.to_string(),
            }),
            None if mode == RuleMode::Enforce => decision.denied_by.push(violation),
            None => decision.warnings.push(violation),
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(image: &str, replicas: u32) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "web", "image": image}]}}}})
    }

    fn decide(engine: &Engine, op: Operation, object: &Value, old: Option<&Value>) -> Decision {
        engine
            .decide(&Request {
                group: "apps",
                kind: "Deployment",
                operation: &op,
                name: "",
                namespace: "default",
                object: Some(object),
                old_object: old,
                sub_resource: None,
            })
            .unwrap()
    }

    #[test]
    fn enforce_denies_and_warn_allows() {
        let engine = Engine::new(Policy::default()).unwrap();
        let d = decide(
            &engine,
            Operation::Create,
            &deployment("ghcr.io/your-org/web:1", 1),
            None,
        );
        let rules: Vec<_> = d
            .denied_by
            .iter()
            .map(|v| (v.rule.as_str(), v.path.as_str()))
            .collect();
        assert_eq!(
            rules,
            [
                (
                    "placeholder-image",
                    "spec.template.spec.containers[0].image"
                ),
                (
                    "root-container",
                    "spec.template.spec.containers[0].securityContext.runAsNonRoot"
                ),
            ]
        );
        let warn = Engine::new(Policy::from_yaml("mode: warn", "t").unwrap()).unwrap();
        let d = decide(
            &warn,
            Operation::Create,
            &deployment("ghcr.io/your-org/web:1", 1),
            None,
        );
        assert!(d.allowed());
        assert_eq!(d.warnings.len(), 2);
    }

    #[test]
    fn update_that_only_scales_is_allowed() {
        let engine = Engine::new(Policy::default()).unwrap();
        let old = deployment("ghcr.io/your-org/web:1", 1);
        let new = deployment("ghcr.io/your-org/web:1", 5);
        let d = decide(&engine, Operation::Update, &new, Some(&old));
        assert!(d.allowed());
        assert_eq!(d.skipped, Some(Skip::Unchanged));
        // Changing the image is evaluated.
        let changed = deployment("ghcr.io/your-org/web:2", 5);
        assert!(!decide(&engine, Operation::Update, &changed, Some(&old)).allowed());
    }

    #[test]
    fn delete_connect_and_other_kinds_are_allowed() {
        let engine = Engine::new(Policy::default()).unwrap();
        let object = deployment("<image>", 1);
        for op in [Operation::Delete, Operation::Connect] {
            assert_eq!(
                decide(&engine, op, &object, None).skipped,
                Some(Skip::Operation)
            );
        }
        let d = engine
            .decide(&Request {
                group: "",
                kind: "Service",
                operation: &Operation::Create,
                name: "",
                namespace: "default",
                object: Some(&json!({"spec": {"ports": [{"port": 80}]}})),
                old_object: None,
                sub_resource: None,
            })
            .unwrap();
        assert_eq!(d.skipped, Some(Skip::Kind));
    }

    #[test]
    fn rules_turned_off_do_not_report() {
        let engine =
            Engine::new(Policy::from_yaml("rules:\n  root-container: {mode: off}\n", "t").unwrap())
                .unwrap();
        let d = decide(
            &engine,
            Operation::Create,
            &deployment("nginx:1.27", 1),
            None,
        );
        assert!(d.allowed() && d.warnings.is_empty());
    }

    #[test]
    fn ephemeral_update_judges_only_the_added_container() {
        let engine = Engine::new(Policy::default()).unwrap();
        // The pod was admitted long ago; it now breaks rules (root, a Secret since deleted).
        let old = json!({"spec": {"containers": [{"name": "app", "image": "nginx:1.27",
            "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "t"}}}]}]}});
        let with = |ephemeral: Value| {
            let mut new = old.clone();
            new["spec"]["ephemeralContainers"] = ephemeral;
            new
        };
        let decide = |new: &Value, sub: Option<&str>| {
            engine
                .decide(&Request {
                    group: "",
                    kind: "Pod",
                    operation: &Operation::Update,
                    name: "",
                    namespace: "default",
                    object: Some(new),
                    old_object: Some(&old),
                    sub_resource: sub,
                })
                .unwrap()
        };
        let good = with(json!([{"name": "debug", "image": "busybox:1.36",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000}}]));
        assert!(decide(&good, Some("ephemeralcontainers")).allowed());
        let bad = with(
            json!([{"name": "debug", "image": "busybox:1.36", "securityContext": {"runAsUser": 0}}]),
        );
        let d = decide(&bad, Some("ephemeralcontainers"));
        let paths: Vec<_> = d.denied_by.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            ["spec.ephemeralContainers[0].securityContext.runAsUser"]
        );
        // A second debug session: the first ephemeral container is no longer judged.
        let mut old_with_first = bad.clone();
        old_with_first["spec"]["ephemeralContainers"][0]["securityContext"] =
            json!({"runAsUser": 0});
        let mut second = old_with_first.clone();
        second["spec"]["ephemeralContainers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "debug2", "image": "busybox:1.36", "securityContext": {"runAsNonRoot": true, "runAsUser": 1000}}));
        let d = engine
            .decide(&Request {
                group: "",
                kind: "Pod",
                operation: &Operation::Update,
                name: "",
                namespace: "default",
                object: Some(&second),
                old_object: Some(&old_with_first),
                sub_resource: Some("ephemeralcontainers"),
            })
            .unwrap();
        assert!(d.allowed(), "{:?}", d.denied_by);
        // Other subresources are not evaluated.
        assert_eq!(
            decide(&bad, Some("status")).skipped,
            Some(Skip::Subresource)
        );
    }
}
