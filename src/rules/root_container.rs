//! Rule `root-container`: a container that runs, or may run, as root.
//!
//! Effective settings are the container's `securityContext` over the pod's, as the kubelet
//! applies them. A violation when the effective `runAsUser` is 0, or when it is unset and the
//! effective `runAsNonRoot` is not `true` (then the image's own USER decides, and it may be root).
//! An explicit non-zero `runAsUser` passes: the process cannot start as root.
//! For Windows pods (`spec.os.name: windows`) the user is `windowsOptions.runAsUserName`, and
//! `ContainerAdministrator` is the root equivalent.

use super::{Findings, Rule, RuleId, Subject, Violation};
use crate::workload::ContainerView;

pub struct RootContainer;

/// The effective user settings of one container.
struct Effective<'a> {
    run_as_user: Option<(i64, &'static str)>,
    run_as_non_root: Option<(bool, &'static str)>,
    windows_user: Option<(&'a str, &'static str)>,
}

fn effective<'a>(subject: &'a Subject<'_>, container: &ContainerView<'a>) -> Effective<'a> {
    let pod = subject.pod.pod_security_context();
    let own = container.security_context;
    Effective {
        run_as_user: own
            .and_then(|sc| sc.run_as_user)
            .map(|uid| (uid, "container"))
            .or_else(|| pod.and_then(|sc| sc.run_as_user).map(|uid| (uid, "pod"))),
        run_as_non_root: own
            .and_then(|sc| sc.run_as_non_root)
            .map(|v| (v, "container"))
            .or_else(|| pod.and_then(|sc| sc.run_as_non_root).map(|v| (v, "pod"))),
        windows_user: own
            .and_then(|sc| sc.windows_options.as_ref())
            .and_then(|w| w.run_as_user_name.as_deref())
            .map(|u| (u, "container"))
            .or_else(|| {
                pod.and_then(|sc| sc.windows_options.as_ref())
                    .and_then(|w| w.run_as_user_name.as_deref())
                    .map(|u| (u, "pod"))
            }),
    }
}

impl Rule for RootContainer {
    fn id(&self) -> RuleId {
        RuleId::RootContainer
    }

    fn check(&self, subject: &Subject<'_>, findings: &mut Findings) {
        let out = &mut findings.violations;
        let windows = subject.pod.is_windows();
        for container in subject.pod.containers() {
            let eff = effective(subject, &container);
            let who = container.describe();
            let violation = |field: &str, value: String, message: String, fix: &str| Violation {
                rule: RuleId::RootContainer,
                path: format!("{}.{}", container.path, field),
                value,
                message,
                fix: fix.to_string(),
                source: None,
            };
            if windows {
                match eff.windows_user {
                    Some((user, level)) if user.eq_ignore_ascii_case("ContainerAdministrator") => {
                        out.push(violation(
                            "securityContext.windowsOptions.runAsUserName",
                            user.to_string(),
                            format!("{who} runs as ContainerAdministrator (set at {level} level)"),
                            "run as ContainerUser or another non-administrator account.",
                        ));
                    }
                    Some(_) => {}
                    None if eff.run_as_non_root.is_some_and(|(v, _)| v) => {}
                    None => out.push(violation(
                        "securityContext",
                        describe_non_root(eff.run_as_non_root),
                        format!("{who} may run as ContainerAdministrator: no runAsUserName and runAsNonRoot is not true"),
                        "set securityContext.runAsNonRoot: true or windowsOptions.runAsUserName: ContainerUser.",
                    )),
                }
                continue;
            }
            match (eff.run_as_user, eff.run_as_non_root) {
                (Some((0, level)), non_root) => {
                    let also = if non_root.is_some_and(|(v, _)| v) {
                        "; runAsNonRoot: true makes the kubelet refuse to start it"
                    } else {
                        ""
                    };
                    out.push(violation(
                        "securityContext.runAsUser",
                        "0".to_string(),
                        format!("{who} runs as root: runAsUser is 0 (set at {level} level){also}"),
                        "set runAsUser to a non-zero UID the image supports, e.g. 10001, and runAsNonRoot: true.",
                    ));
                }
                (Some(_), _) => {}
                (None, Some((true, _))) => {}
                (None, non_root) => out.push(violation(
                    "securityContext.runAsNonRoot",
                    describe_non_root(non_root),
                    format!("{who} may run as root: no runAsUser and runAsNonRoot is not true, so the image's USER decides"),
                    "set securityContext.runAsNonRoot: true and a non-zero runAsUser, in the pod or this container.",
                )),
            }
        }
    }
}

fn describe_non_root(value: Option<(bool, &'static str)>) -> String {
    match value {
        Some((v, _)) => v.to_string(),
        None => "unset".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{PodView, WorkloadKind};
    use serde_json::{Value, json};

    fn check(kind: WorkloadKind, object: &Value) -> Vec<(String, String)> {
        let pod = PodView::from_object(kind, object).unwrap().unwrap();
        let mut out = Findings::default();
        RootContainer.check(
            &Subject {
                namespace: "default",
                pod: &pod,
                inventory: &crate::inventory::EmptyInventory,
            },
            &mut out,
        );
        let out = out.violations;
        out.into_iter().map(|v| (v.path, v.value)).collect()
    }

    fn pod(pod_sc: Value, container_sc: Value) -> Value {
        let mut container = json!({"name": "app", "image": "nginx"});
        if !container_sc.is_null() {
            container["securityContext"] = container_sc;
        }
        let mut spec = json!({"containers": [container]});
        if !pod_sc.is_null() {
            spec["securityContext"] = pod_sc;
        }
        json!({ "spec": spec })
    }

    #[test]
    fn pod_and_container_level_settings() {
        let p = "spec.containers[0].securityContext";
        type Case = (&'static str, Value, Value, Vec<(String, String)>);
        let table: Vec<Case> = vec![
            (
                "nothing set",
                Value::Null,
                Value::Null,
                vec![(format!("{p}.runAsNonRoot"), "unset".into())],
            ),
            (
                "pod runAsNonRoot",
                json!({"runAsNonRoot": true}),
                Value::Null,
                vec![],
            ),
            (
                "container runAsNonRoot",
                Value::Null,
                json!({"runAsNonRoot": true}),
                vec![],
            ),
            (
                "pod runAsNonRoot false",
                json!({"runAsNonRoot": false}),
                Value::Null,
                vec![(format!("{p}.runAsNonRoot"), "false".into())],
            ),
            (
                "container false overrides pod true",
                json!({"runAsNonRoot": true}),
                json!({"runAsNonRoot": false}),
                vec![(format!("{p}.runAsNonRoot"), "false".into())],
            ),
            (
                "container true overrides pod false",
                json!({"runAsNonRoot": false}),
                json!({"runAsNonRoot": true}),
                vec![],
            ),
            (
                "explicit non-zero uid at pod",
                json!({"runAsUser": 1000}),
                Value::Null,
                vec![],
            ),
            (
                "explicit non-zero uid at container",
                Value::Null,
                json!({"runAsUser": 65532}),
                vec![],
            ),
            (
                "uid 0 at pod",
                json!({"runAsUser": 0}),
                Value::Null,
                vec![(format!("{p}.runAsUser"), "0".into())],
            ),
            (
                "uid 0 at container",
                Value::Null,
                json!({"runAsUser": 0}),
                vec![(format!("{p}.runAsUser"), "0".into())],
            ),
            (
                "runAsNonRoot true with uid 0",
                json!({"runAsNonRoot": true}),
                json!({"runAsUser": 0}),
                vec![(format!("{p}.runAsUser"), "0".into())],
            ),
            (
                "container uid overrides pod uid 0",
                json!({"runAsUser": 0}),
                json!({"runAsUser": 1000}),
                vec![],
            ),
            (
                "container uid 0 overrides pod uid",
                json!({"runAsUser": 1000}),
                json!({"runAsUser": 0}),
                vec![(format!("{p}.runAsUser"), "0".into())],
            ),
        ];
        for (name, pod_sc, container_sc, expected) in table {
            assert_eq!(
                check(WorkloadKind::Pod, &pod(pod_sc, container_sc)),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn every_container_kind_is_checked() {
        let object = json!({"spec": {
            "securityContext": {"runAsUser": 1000},
            "initContainers": [{"name": "init", "image": "busybox", "securityContext": {"runAsUser": 0}}],
            "containers": [{"name": "ok", "image": "nginx"}, {"name": "bad", "image": "nginx", "securityContext": {"runAsUser": 0}}],
            "ephemeralContainers": [{"name": "debug", "image": "busybox", "securityContext": {"runAsUser": 0}}]
        }});
        let paths: Vec<String> = check(WorkloadKind::Pod, &object)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            paths,
            vec![
                "spec.initContainers[0].securityContext.runAsUser",
                "spec.containers[1].securityContext.runAsUser",
                "spec.ephemeralContainers[0].securityContext.runAsUser",
            ]
        );
    }

    #[test]
    fn every_workload_kind_uses_its_own_path() {
        let spec = json!({"containers": [{"name": "app", "image": "nginx"}]});
        let template = json!({"template": {"spec": spec}});
        let cases = [
            (
                WorkloadKind::Deployment,
                json!({"spec": template}),
                "spec.template.spec",
            ),
            (
                WorkloadKind::StatefulSet,
                json!({"spec": template}),
                "spec.template.spec",
            ),
            (
                WorkloadKind::DaemonSet,
                json!({"spec": template}),
                "spec.template.spec",
            ),
            (
                WorkloadKind::ReplicaSet,
                json!({"spec": template}),
                "spec.template.spec",
            ),
            (
                WorkloadKind::ReplicationController,
                json!({"spec": template}),
                "spec.template.spec",
            ),
            (
                WorkloadKind::Job,
                json!({"spec": template}),
                "spec.template.spec",
            ),
            (
                WorkloadKind::CronJob,
                json!({"spec": {"jobTemplate": {"spec": template}}}),
                "spec.jobTemplate.spec.template.spec",
            ),
        ];
        for (kind, object, prefix) in cases {
            assert_eq!(
                check(kind, &object),
                vec![(
                    format!("{prefix}.containers[0].securityContext.runAsNonRoot"),
                    "unset".to_string()
                )],
                "{kind:?}"
            );
        }
    }

    #[test]
    fn windows_pods_use_run_as_user_name() {
        let windows = |pod_sc: Value| {
            json!({"spec": {"os": {"name": "windows"}, "securityContext": pod_sc,
            "containers": [{"name": "app", "image": "mcr.microsoft.com/windows/nanoserver:ltsc2022"}]}})
        };
        assert_eq!(
            check(
                WorkloadKind::Pod,
                &windows(json!({"windowsOptions": {"runAsUserName": "ContainerAdministrator"}}))
            ),
            vec![(
                "spec.containers[0].securityContext.windowsOptions.runAsUserName".into(),
                "ContainerAdministrator".into()
            )]
        );
        assert!(
            check(
                WorkloadKind::Pod,
                &windows(json!({"windowsOptions": {"runAsUserName": "ContainerUser"}}))
            )
            .is_empty()
        );
        assert!(check(WorkloadKind::Pod, &windows(json!({"runAsNonRoot": true}))).is_empty());
        assert_eq!(check(WorkloadKind::Pod, &windows(json!({}))).len(), 1);
    }
}
