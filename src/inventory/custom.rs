//! The API kinds the inventory reads where they are served, beyond Secrets, ConfigMaps and
//! Namespaces: the Secret producers, the external-secrets stores, Gateway API ReferenceGrants,
//! and the workloads whose Secret references it indexes for the deletion guard. One list, so
//! discovery, the CRD watch, RBAC and the manifest loader cannot disagree about what is known.

use super::producers::ProducerKind;
use super::stores::StoreKind;
use crate::workload::WorkloadKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CustomKind {
    Producer(ProducerKind),
    Store(StoreKind),
    ReferenceGrant,
    Reader(ReaderKind),
}

/// The workload kinds whose Secret references the inventory indexes ("who reads this Secret?").
/// Only objects without a controller are indexed: a Deployment's ReplicaSets and Pods, or a
/// CronJob's Jobs, read what their owner's template reads, and the owner is what a person
/// changes. ReplicaSets and ReplicationControllers are left out: on their own they are rare,
/// and a cluster keeps up to ten old ReplicaSets per Deployment, so watching them would cost
/// more than every other watch together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReaderKind {
    Pod,
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    Rollout,
}

impl ReaderKind {
    pub const ALL: [ReaderKind; 7] = [
        ReaderKind::Pod,
        ReaderKind::Deployment,
        ReaderKind::StatefulSet,
        ReaderKind::DaemonSet,
        ReaderKind::Job,
        ReaderKind::CronJob,
        ReaderKind::Rollout,
    ];

    pub fn workload(self) -> WorkloadKind {
        match self {
            ReaderKind::Pod => WorkloadKind::Pod,
            ReaderKind::Deployment => WorkloadKind::Deployment,
            ReaderKind::StatefulSet => WorkloadKind::StatefulSet,
            ReaderKind::DaemonSet => WorkloadKind::DaemonSet,
            ReaderKind::Job => WorkloadKind::Job,
            ReaderKind::CronJob => WorkloadKind::CronJob,
            ReaderKind::Rollout => WorkloadKind::Rollout,
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            ReaderKind::Pod => "",
            ReaderKind::Deployment | ReaderKind::StatefulSet | ReaderKind::DaemonSet => "apps",
            ReaderKind::Job | ReaderKind::CronJob => "batch",
            ReaderKind::Rollout => "argoproj.io",
        }
    }

    fn versions(self) -> &'static [&'static str] {
        match self {
            // batch/v1 CronJob is served from Kubernetes 1.21; 1.20 serves only v1beta1.
            ReaderKind::CronJob => &["v1", "v1beta1"],
            ReaderKind::Rollout => &["v1alpha1"],
            _ => &["v1"],
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            ReaderKind::Pod => "Pod",
            ReaderKind::Deployment => "Deployment",
            ReaderKind::StatefulSet => "StatefulSet",
            ReaderKind::DaemonSet => "DaemonSet",
            ReaderKind::Job => "Job",
            ReaderKind::CronJob => "CronJob",
            ReaderKind::Rollout => "Rollout",
        }
    }

    fn resource(self) -> &'static str {
        match self {
            ReaderKind::Pod => "pods",
            ReaderKind::Deployment => "deployments",
            ReaderKind::StatefulSet => "statefulsets",
            ReaderKind::DaemonSet => "daemonsets",
            ReaderKind::Job => "jobs",
            ReaderKind::CronJob => "cronjobs",
            ReaderKind::Rollout => "rollouts",
        }
    }
}

impl CustomKind {
    pub const ALL: [CustomKind; 13] = [
        CustomKind::Producer(ProducerKind::ExternalSecret),
        CustomKind::Producer(ProducerKind::SealedSecret),
        CustomKind::Producer(ProducerKind::Certificate),
        CustomKind::Store(StoreKind::SecretStore),
        CustomKind::Store(StoreKind::ClusterSecretStore),
        CustomKind::ReferenceGrant,
        CustomKind::Reader(ReaderKind::Pod),
        CustomKind::Reader(ReaderKind::Deployment),
        CustomKind::Reader(ReaderKind::StatefulSet),
        CustomKind::Reader(ReaderKind::DaemonSet),
        CustomKind::Reader(ReaderKind::Job),
        CustomKind::Reader(ReaderKind::CronJob),
        CustomKind::Reader(ReaderKind::Rollout),
    ];

    pub fn group(self) -> &'static str {
        match self {
            CustomKind::Producer(p) => p.group(),
            CustomKind::Store(_) => "external-secrets.io",
            CustomKind::ReferenceGrant => "gateway.networking.k8s.io",
            CustomKind::Reader(r) => r.group(),
        }
    }

    /// API versions applyguard understands, preferred first.
    pub fn versions(self) -> &'static [&'static str] {
        match self {
            CustomKind::Producer(p) => p.versions(),
            CustomKind::Store(_) | CustomKind::ReferenceGrant => &["v1", "v1beta1"],
            CustomKind::Reader(r) => r.versions(),
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            CustomKind::Producer(p) => p.kind(),
            CustomKind::Store(s) => s.kind(),
            CustomKind::ReferenceGrant => "ReferenceGrant",
            CustomKind::Reader(r) => r.kind(),
        }
    }

    /// The plural resource name, as RBAC and metrics name it.
    pub fn resource(self) -> &'static str {
        match self {
            CustomKind::Producer(p) => p.resource(),
            CustomKind::Store(s) => s.resource(),
            CustomKind::ReferenceGrant => "referencegrants",
            CustomKind::Reader(r) => r.resource(),
        }
    }

    /// Whether the inventory must have listed it before serving is ready. Workloads are not
    /// required: listing every Pod of a large cluster takes a while, and only the deletion
    /// guard reads them; until they are listed it says its list of readers is incomplete.
    pub fn required_for_readiness(self) -> bool {
        !matches!(self, CustomKind::Reader(_))
    }

    /// The apiVersion of one of its versions (`v1` for the core group, `apps/v1` otherwise).
    pub fn api_version(self, version: &str) -> String {
        match self.group() {
            "" => version.to_string(),
            group => format!("{group}/{version}"),
        }
    }

    /// Whether its objects live in namespaces (a ClusterSecretStore does not).
    pub fn namespaced(self) -> bool {
        !matches!(self, CustomKind::Store(StoreKind::ClusterSecretStore))
    }

    /// `externalsecrets.external-secrets.io`, the name of its CustomResourceDefinition.
    pub fn crd_name(self) -> String {
        format!("{}.{}", self.resource(), self.group())
    }

    /// The custom kind of an apiVersion/kind pair, if it is one applyguard reads.
    pub fn from_type(api_version: &str, kind: &str) -> Option<CustomKind> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        CustomKind::ALL
            .into_iter()
            .find(|c| c.group() == group && c.kind() == kind && c.versions().contains(&version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_by_api_version() {
        assert_eq!(
            CustomKind::from_type("external-secrets.io/v1beta1", "ClusterSecretStore"),
            Some(CustomKind::Store(StoreKind::ClusterSecretStore))
        );
        assert_eq!(
            CustomKind::from_type("gateway.networking.k8s.io/v1beta1", "ReferenceGrant"),
            Some(CustomKind::ReferenceGrant)
        );
        assert_eq!(
            CustomKind::from_type("cert-manager.io/v1", "Certificate"),
            Some(CustomKind::Producer(ProducerKind::Certificate))
        );
        assert_eq!(CustomKind::from_type("v1", "Secret"), None);
        assert_eq!(
            CustomKind::from_type("v1", "Pod"),
            Some(CustomKind::Reader(ReaderKind::Pod))
        );
        assert_eq!(
            CustomKind::from_type("batch/v1beta1", "CronJob"),
            Some(CustomKind::Reader(ReaderKind::CronJob))
        );
        assert_eq!(CustomKind::from_type("apps/v1", "ReplicaSet"), None);
        assert_eq!(CustomKind::Reader(ReaderKind::Pod).api_version("v1"), "v1");
        assert!(!CustomKind::Store(StoreKind::ClusterSecretStore).namespaced());
        assert_eq!(
            CustomKind::ReferenceGrant.crd_name(),
            "referencegrants.gateway.networking.k8s.io"
        );
    }
}
