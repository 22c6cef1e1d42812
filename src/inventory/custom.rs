//! The custom resources the inventory reads where their API is served: the Secret producers,
//! the external-secrets stores and Gateway API ReferenceGrants. One list, so discovery, the
//! CRD watch, RBAC and the manifest loader cannot disagree about what is known.

use super::producers::ProducerKind;
use super::stores::StoreKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CustomKind {
    Producer(ProducerKind),
    Store(StoreKind),
    ReferenceGrant,
}

impl CustomKind {
    pub const ALL: [CustomKind; 6] = [
        CustomKind::Producer(ProducerKind::ExternalSecret),
        CustomKind::Producer(ProducerKind::SealedSecret),
        CustomKind::Producer(ProducerKind::Certificate),
        CustomKind::Store(StoreKind::SecretStore),
        CustomKind::Store(StoreKind::ClusterSecretStore),
        CustomKind::ReferenceGrant,
    ];

    pub fn group(self) -> &'static str {
        match self {
            CustomKind::Producer(p) => p.group(),
            CustomKind::Store(_) => "external-secrets.io",
            CustomKind::ReferenceGrant => "gateway.networking.k8s.io",
        }
    }

    /// API versions applyguard understands, preferred first.
    pub fn versions(self) -> &'static [&'static str] {
        match self {
            CustomKind::Producer(p) => p.versions(),
            CustomKind::Store(_) | CustomKind::ReferenceGrant => &["v1", "v1beta1"],
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            CustomKind::Producer(p) => p.kind(),
            CustomKind::Store(s) => s.kind(),
            CustomKind::ReferenceGrant => "ReferenceGrant",
        }
    }

    /// The plural resource name, as RBAC and metrics name it.
    pub fn resource(self) -> &'static str {
        match self {
            CustomKind::Producer(p) => p.resource(),
            CustomKind::Store(s) => s.resource(),
            CustomKind::ReferenceGrant => "referencegrants",
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
        let (group, version) = api_version.split_once('/')?;
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
        assert!(!CustomKind::Store(StoreKind::ClusterSecretStore).namespaced());
        assert_eq!(
            CustomKind::ReferenceGrant.crd_name(),
            "referencegrants.gateway.networking.k8s.io"
        );
    }
}
