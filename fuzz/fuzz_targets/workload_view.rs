//! Any JSON value as each workload kind: the pod spec view and every container view with its
//! field path. The value is tried as given (a whole object) and placed at the kind's pod spec
//! path, so a mutated pod spec reaches every kind.
#![no_main]

use applyguard::workload::{PodView, WorkloadKind};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const KINDS: [WorkloadKind; 8] = [
    WorkloadKind::Pod,
    WorkloadKind::Deployment,
    WorkloadKind::StatefulSet,
    WorkloadKind::DaemonSet,
    WorkloadKind::ReplicaSet,
    WorkloadKind::ReplicationController,
    WorkloadKind::Job,
    WorkloadKind::CronJob,
];

fn exercise(kind: WorkloadKind, object: &Value) {
    let Ok(Some(view)) = PodView::from_object(kind, object) else {
        return;
    };
    assert_eq!(view.prefix, kind.pod_spec_prefix());
    let _ = view.is_windows();
    let _ = view.pod_security_context();
    let expected = view.spec.containers.len()
        + view.spec.init_containers.as_ref().map_or(0, Vec::len)
        + view.spec.ephemeral_containers.as_ref().map_or(0, Vec::len);
    let mut seen = 0;
    for container in view.containers() {
        assert!(
            container.path.starts_with(view.prefix),
            "{}",
            container.path
        );
        assert!(container.path.ends_with(']'), "{}", container.path);
        let _ = container.describe();
        let _ = (container.image, container.security_context);
        let _ = (container.env.len(), container.env_from.len());
        let _ = (container.command.len(), container.args.len());
        seen += 1;
    }
    assert_eq!(seen, expected);
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for kind in KINDS {
        exercise(kind, &value);
        let mut placed = value.clone();
        for segment in kind.pod_spec_path().iter().rev() {
            let mut map = serde_json::Map::new();
            map.insert((*segment).to_string(), placed);
            placed = Value::Object(map);
        }
        exercise(kind, &placed);
    }
});
