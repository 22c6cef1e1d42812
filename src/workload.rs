//! Any workload kind -> one pod spec, with the field path that leads to it.
//!
//! Kubernetes validates an object before a validating webhook sees it, so a pod spec that does
//! not deserialise means the input did not come from kube-apiserver (a hand-written review file,
//! a fuzzer); that is reported as an error rather than guessed around.

use k8s_openapi::api::core::v1::{
    Container, EnvFromSource, EnvVar, EphemeralContainer, PodSecurityContext, PodSpec,
    SecurityContext,
};
use serde::Deserialize;
use serde_json::Value;

/// The workload kinds applyguard understands, with where each keeps its pod spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    Pod,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    ReplicationController,
    Job,
    CronJob,
    /// Argo Rollouts (`argoproj.io` Rollout): `spec.template`, like a Deployment.
    Rollout,
    /// A pod-template kind named in the policy's `workloads:`.
    Custom(&'static CustomWorkload),
}

/// A pod-template kind from the policy (`{group, kind, podTemplate: spec.template}`).
#[derive(Debug, PartialEq, Eq)]
pub struct CustomWorkload {
    pub group: &'static str,
    pub kind: &'static str,
    /// Segments from the object's root to the pod spec (the template's `spec`).
    pub path: &'static [&'static str],
    /// The same, dotted, as field paths in messages start.
    pub prefix: &'static str,
}

impl CustomWorkload {
    /// The workload for a policy entry. Entries are few and a policy reload repeats them, so
    /// each distinct entry is made `'static` once and reused (a reload never grows memory).
    pub fn interned(group: &str, kind: &str, pod_template: &str) -> &'static CustomWorkload {
        static INTERNED: std::sync::Mutex<Vec<&'static CustomWorkload>> =
            std::sync::Mutex::new(Vec::new());
        let prefix = format!("{pod_template}.spec");
        let mut interned = INTERNED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = interned
            .iter()
            .find(|c| c.group == group && c.kind == kind && c.prefix == prefix)
        {
            return found;
        }
        let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
        let prefix = leak(&prefix);
        let path: Vec<&'static str> = prefix.split('.').collect();
        let workload: &'static CustomWorkload = Box::leak(Box::new(CustomWorkload {
            group: leak(group),
            kind: leak(kind),
            path: Box::leak(path.into_boxed_slice()),
            prefix,
        }));
        interned.push(workload);
        workload
    }
}

impl WorkloadKind {
    /// Maps an API group and kind to a built-in workload kind; `None` for kinds with no pod
    /// spec (the engine then looks at the policy's `workloads:`).
    pub fn from_group_kind(group: &str, kind: &str) -> Option<WorkloadKind> {
        Some(match (group, kind) {
            ("", "Pod") => WorkloadKind::Pod,
            ("apps", "Deployment") => WorkloadKind::Deployment,
            ("apps", "StatefulSet") => WorkloadKind::StatefulSet,
            ("apps", "DaemonSet") => WorkloadKind::DaemonSet,
            ("apps", "ReplicaSet") => WorkloadKind::ReplicaSet,
            ("", "ReplicationController") => WorkloadKind::ReplicationController,
            ("batch", "Job") => WorkloadKind::Job,
            ("batch", "CronJob") => WorkloadKind::CronJob,
            ("argoproj.io", "Rollout") => WorkloadKind::Rollout,
            _ => return None,
        })
    }

    /// The path segments from the object's root to its pod spec.
    pub fn pod_spec_path(self) -> &'static [&'static str] {
        match self {
            WorkloadKind::Pod => &["spec"],
            WorkloadKind::CronJob => &["spec", "jobTemplate", "spec", "template", "spec"],
            WorkloadKind::Custom(custom) => custom.path,
            _ => &["spec", "template", "spec"],
        }
    }

    /// The same path written as it appears in messages (`spec.template.spec`).
    pub fn pod_spec_prefix(self) -> &'static str {
        match self {
            WorkloadKind::Pod => "spec",
            WorkloadKind::CronJob => "spec.jobTemplate.spec.template.spec",
            WorkloadKind::Custom(custom) => custom.prefix,
            _ => "spec.template.spec",
        }
    }
}

/// Why an object's pod spec could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path} is not a valid pod spec: {source}")]
pub struct WorkloadError {
    pub path: &'static str,
    #[source]
    pub source: serde_json::Error,
}

/// The raw JSON of an object's pod spec, if the object carries one at the kind's path.
pub fn raw_pod_spec(kind: WorkloadKind, object: &Value) -> Option<&Value> {
    kind.pod_spec_path()
        .iter()
        .try_fold(object, |value, segment| value.get(segment))
        .filter(|value| !value.is_null())
}

/// A workload's pod spec, typed, with the prefix that field paths in messages start with.
#[derive(Debug, Clone)]
pub struct PodView {
    pub kind: WorkloadKind,
    pub prefix: &'static str,
    pub spec: PodSpec,
}

impl PodView {
    /// Reads the pod spec of `object`. `Ok(None)` when the object has none (a ReplicationController
    /// without a template, for instance).
    pub fn from_object(
        kind: WorkloadKind,
        object: &Value,
    ) -> Result<Option<PodView>, WorkloadError> {
        let Some(raw) = raw_pod_spec(kind, object) else {
            return Ok(None);
        };
        let spec = PodSpec::deserialize(raw).map_err(|source| WorkloadError {
            path: kind.pod_spec_prefix(),
            source,
        })?;
        Ok(Some(PodView {
            kind,
            prefix: kind.pod_spec_prefix(),
            spec,
        }))
    }

    /// Every container of the pod: regular, init and ephemeral, each with its field path.
    pub fn containers(&self) -> impl Iterator<Item = ContainerView<'_>> {
        let prefix = self.prefix;
        let regular =
            self.spec.containers.iter().enumerate().map(move |(i, c)| {
                ContainerView::from_container(c, ContainerKind::Regular, prefix, i)
            });
        let init = self
            .spec
            .init_containers
            .iter()
            .flatten()
            .enumerate()
            .map(move |(i, c)| ContainerView::from_container(c, ContainerKind::Init, prefix, i));
        let ephemeral = self
            .spec
            .ephemeral_containers
            .iter()
            .flatten()
            .enumerate()
            .map(move |(i, c)| ContainerView::from_ephemeral(c, prefix, i));
        init.chain(regular).chain(ephemeral)
    }

    /// The pod-level security context, if any.
    pub fn pod_security_context(&self) -> Option<&PodSecurityContext> {
        self.spec.security_context.as_ref()
    }

    /// Whether the pod declares Windows as its OS (`spec.os.name`).
    pub fn is_windows(&self) -> bool {
        self.spec
            .os
            .as_ref()
            .is_some_and(|os| os.name.eq_ignore_ascii_case("windows"))
    }
}

/// Which list a container came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    Regular,
    Init,
    Ephemeral,
}

impl ContainerKind {
    pub fn field(self) -> &'static str {
        match self {
            ContainerKind::Regular => "containers",
            ContainerKind::Init => "initContainers",
            ContainerKind::Ephemeral => "ephemeralContainers",
        }
    }

    /// How a message names this kind of container.
    pub fn noun(self) -> &'static str {
        match self {
            ContainerKind::Regular => "container",
            ContainerKind::Init => "init container",
            ContainerKind::Ephemeral => "ephemeral container",
        }
    }
}

/// The fields every rule needs from a container, whatever list it is in. Ephemeral containers
/// have their own type in the API, so this view borrows the common fields from either.
#[derive(Debug, Clone)]
pub struct ContainerView<'a> {
    pub kind: ContainerKind,
    /// `spec.template.spec.containers[1]`
    pub path: String,
    pub name: &'a str,
    pub image: Option<&'a str>,
    pub security_context: Option<&'a SecurityContext>,
    pub env: &'a [EnvVar],
    pub env_from: &'a [EnvFromSource],
    pub command: &'a [String],
    pub args: &'a [String],
}

impl<'a> ContainerView<'a> {
    fn from_container(c: &'a Container, kind: ContainerKind, prefix: &str, index: usize) -> Self {
        ContainerView {
            kind,
            path: format!("{prefix}.{}[{index}]", kind.field()),
            name: &c.name,
            image: c.image.as_deref(),
            security_context: c.security_context.as_ref(),
            env: c.env.as_deref().unwrap_or_default(),
            env_from: c.env_from.as_deref().unwrap_or_default(),
            command: c.command.as_deref().unwrap_or_default(),
            args: c.args.as_deref().unwrap_or_default(),
        }
    }

    fn from_ephemeral(c: &'a EphemeralContainer, prefix: &str, index: usize) -> Self {
        let kind = ContainerKind::Ephemeral;
        ContainerView {
            kind,
            path: format!("{prefix}.{}[{index}]", kind.field()),
            name: &c.name,
            image: c.image.as_deref(),
            security_context: c.security_context.as_ref(),
            env: c.env.as_deref().unwrap_or_default(),
            env_from: c.env_from.as_deref().unwrap_or_default(),
            command: c.command.as_deref().unwrap_or_default(),
            args: c.args.as_deref().unwrap_or_default(),
        }
    }

    /// `container "app"` / `init container "migrate"`, for messages.
    pub fn describe(&self) -> String {
        format!("{} {:?}", self.kind.noun(), self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_spec_paths_follow_the_kind() {
        let cases = [
            ("", "Pod", "spec"),
            ("apps", "Deployment", "spec.template.spec"),
            ("apps", "StatefulSet", "spec.template.spec"),
            ("apps", "DaemonSet", "spec.template.spec"),
            ("apps", "ReplicaSet", "spec.template.spec"),
            ("", "ReplicationController", "spec.template.spec"),
            ("batch", "Job", "spec.template.spec"),
            ("batch", "CronJob", "spec.jobTemplate.spec.template.spec"),
        ];
        for (group, kind, prefix) in cases {
            let k = WorkloadKind::from_group_kind(group, kind).unwrap();
            assert_eq!(k.pod_spec_prefix(), prefix, "{kind}");
            assert_eq!(k.pod_spec_path().join("."), prefix, "{kind}");
        }
        assert_eq!(WorkloadKind::from_group_kind("", "ConfigMap"), None);
        assert_eq!(
            WorkloadKind::from_group_kind("extensions", "Deployment"),
            None
        );
    }

    #[test]
    fn containers_of_every_list_carry_their_paths() {
        let object = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "a", "image": "a"}, {"name": "b", "image": "b"}],
            "ephemeralContainers": [{"name": "debug", "image": "busybox"}]
        }}}}}});
        let view = PodView::from_object(WorkloadKind::CronJob, &object)
            .unwrap()
            .unwrap();
        let paths: Vec<_> = view
            .containers()
            .map(|c| (c.path.clone(), c.name))
            .collect();
        assert_eq!(
            paths,
            vec![
                (
                    "spec.jobTemplate.spec.template.spec.initContainers[0]".to_string(),
                    "init"
                ),
                (
                    "spec.jobTemplate.spec.template.spec.containers[0]".to_string(),
                    "a"
                ),
                (
                    "spec.jobTemplate.spec.template.spec.containers[1]".to_string(),
                    "b"
                ),
                (
                    "spec.jobTemplate.spec.template.spec.ephemeralContainers[0]".to_string(),
                    "debug"
                ),
            ]
        );
    }

    #[test]
    fn rollouts_and_policy_kinds() {
        let rollout =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
        let kind = WorkloadKind::from_group_kind("argoproj.io", "Rollout").unwrap();
        let pod = PodView::from_object(kind, &rollout).unwrap().unwrap();
        assert_eq!(
            pod.containers().next().unwrap().path,
            "spec.template.spec.containers[0]"
        );
        let custom = CustomWorkload::interned("apps.kruise.io", "CloneSet", "spec.template");
        assert!(std::ptr::eq(
            custom,
            CustomWorkload::interned("apps.kruise.io", "CloneSet", "spec.template")
        ));
        let nested = CustomWorkload::interned("example.com", "Runner", "spec.runner.podTemplate");
        let object = json!({"spec": {"runner": {"podTemplate": {"spec": {"containers": [{"name": "r", "image": "x"}]}}}}});
        let pod = PodView::from_object(WorkloadKind::Custom(nested), &object)
            .unwrap()
            .unwrap();
        assert_eq!(
            pod.containers().next().unwrap().path,
            "spec.runner.podTemplate.spec.containers[0]"
        );
    }

    #[test]
    fn missing_template_is_no_pod_spec() {
        let object = json!({"spec": {"replicas": 1}});
        assert!(
            PodView::from_object(WorkloadKind::ReplicationController, &object)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn malformed_pod_spec_is_an_error_naming_the_path() {
        let object = json!({"spec": {"template": {"spec": {"containers": [{"name": 7}]}}}});
        let err = PodView::from_object(WorkloadKind::Deployment, &object).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("spec.template.spec is not a valid pod spec"),
            "{err}"
        );
    }
}
