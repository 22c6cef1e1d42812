//! The rules: pure functions from (object, policy) to violations, plus the types they share.

mod placeholder_image;
mod placeholder_secret;
mod plaintext_kafka;
mod root_container;
pub mod secret_in_use;
mod secret_ref;

pub use placeholder_image::{ImageVerdict, PlaceholderImage, classify_image, parse_reference};
pub use placeholder_secret::{PlaceholderSecret, placeholder_kind};
pub use plaintext_kafka::PlaintextKafka;
pub use root_container::RootContainer;
pub use secret_ref::SecretReferences;

use std::fmt;

use crate::inventory::Inventory;
use crate::policy::{Policy, PolicyError};
use crate::workload::PodView;

/// The stable identifiers of the rules; they appear in config keys, messages, metrics and labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    SecretRef,
    PlaceholderImage,
    RootContainer,
    PlaintextKafka,
    PlaceholderSecret,
    /// The deletion guard (src/rules/secret_in_use.rs): decided by the engine on DELETE and on
    /// key removal, not by a `Rule` on an object's fields.
    SecretInUse,
}

impl RuleId {
    pub const ALL: [RuleId; 6] = [
        RuleId::SecretRef,
        RuleId::PlaceholderImage,
        RuleId::RootContainer,
        RuleId::PlaintextKafka,
        RuleId::PlaceholderSecret,
        RuleId::SecretInUse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::SecretRef => "secret-ref",
            RuleId::PlaceholderImage => "placeholder-image",
            RuleId::RootContainer => "root-container",
            RuleId::PlaintextKafka => "plaintext-kafka",
            RuleId::PlaceholderSecret => "placeholder-secret",
            RuleId::SecretInUse => "secret-in-use",
        }
    }

    pub fn parse(id: &str) -> Option<RuleId> {
        RuleId::ALL.into_iter().find(|rule| rule.as_str() == id)
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One broken rule at one field. Denials, warnings and audit annotations are all built from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: RuleId,
    /// Field path, e.g. `spec.template.spec.containers[1].image`.
    pub path: String,
    /// The offending value as written in the object (never a Secret value).
    pub value: String,
    /// What is wrong, in one sentence.
    pub message: String,
    /// How to fix it, in one sentence.
    pub fix: String,
    /// When the offending setting is written in a ConfigMap key the object reads (a
    /// container's env from a ConfigMap): where it must be fixed, so that a scan that holds the
    /// ConfigMap reports it once, there.
    pub source: Option<ConfigMapKey>,
}

/// A key of a ConfigMap in the object's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConfigMapKey {
    pub name: String,
    pub key: String,
}

impl Violation {
    /// What is wrong, the value and the fix: the part after the field path, the same in a
    /// denial, a warning and a scan report.
    pub fn detail(&self) -> String {
        format!(
            "{} (value: {:?}). Fix: {}",
            self.message, self.value, self.fix
        )
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.rule, self.path, self.detail())
    }
}

/// Something worth telling the user that is not a violation (a Secret that an ExternalSecret
/// will produce, a key that cannot be verified). Always returned as a warning, in every mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub rule: RuleId,
    pub path: String,
    pub message: String,
}

/// What the rules found in one object.
#[derive(Debug, Default)]
pub struct Findings {
    pub violations: Vec<Violation>,
    pub notices: Vec<Notice>,
}

/// What a rule looks at: the object under review, seen as a pod spec, and the cluster state.
pub struct Subject<'a> {
    /// The namespace references resolve in: the object's, or the request's when it has none.
    pub namespace: &'a str,
    pub pod: &'a PodView,
    pub inventory: &'a dyn Inventory,
}

/// An object without a pod spec that a rule handles (a ConfigMap, a Strimzi Kafka).
pub struct ObjectSubject<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    /// The object's name (empty on a CREATE with generateName).
    pub name: &'a str,
    pub annotations: Option<&'a std::collections::BTreeMap<String, String>>,
    /// The object's fields other than apiVersion, kind and metadata.
    pub object: &'a serde_json::Value,
    pub inventory: &'a dyn Inventory,
}

/// A rule checks one subject and appends what it finds. Rules never do I/O.
pub trait Rule: Send + Sync {
    fn id(&self) -> RuleId;
    fn check(&self, subject: &Subject<'_>, out: &mut Findings);

    /// Kinds without a pod spec this rule evaluates.
    fn handles_kind(&self, _group: &str, _kind: &str) -> bool {
        false
    }

    fn check_object(&self, _subject: &ObjectSubject<'_>, _out: &mut Findings) {}
}

/// The rules a policy turns on, built once per policy (patterns compiled up front).
pub struct RuleSet {
    rules: Vec<Box<dyn Rule>>,
}

impl RuleSet {
    /// Builds every rule whose mode is not `off`.
    /// Builds every rule: a rule turned off in the config may still be turned on for one
    /// namespace by its labels, so which rules run is decided per request.
    pub fn from_policy(policy: &Policy) -> Result<RuleSet, PolicyError> {
        let mut rules: Vec<Box<dyn Rule>> = Vec::new();
        for id in RuleId::ALL {
            rules.push(match id {
                RuleId::SecretRef => Box::new(SecretReferences::new(policy.failure_mode)),
                RuleId::RootContainer => Box::new(RootContainer),
                RuleId::PlaintextKafka => Box::new(PlaintextKafka::new(
                    policy.rules.plaintext_kafka.implicit_client_default,
                )),
                RuleId::PlaceholderImage => {
                    Box::new(PlaceholderImage::new(&policy.rules.placeholder_image)?)
                }
                RuleId::PlaceholderSecret => Box::new(PlaceholderSecret),
                RuleId::SecretInUse => continue,
            });
        }
        Ok(RuleSet { rules })
    }

    /// Whether any enabled rule evaluates this kind without a pod spec.
    pub fn handles_kind(&self, group: &str, kind: &str, enabled: &dyn Fn(RuleId) -> bool) -> bool {
        self.rules
            .iter()
            .any(|r| enabled(r.id()) && r.handles_kind(group, kind))
    }

    pub fn check_object(
        &self,
        subject: &ObjectSubject<'_>,
        enabled: &dyn Fn(RuleId) -> bool,
    ) -> Findings {
        let mut out = Findings::default();
        for rule in &self.rules {
            if enabled(rule.id()) && rule.handles_kind(subject.group, subject.kind) {
                rule.check_object(subject, &mut out);
            }
        }
        out
    }

    pub fn check(&self, subject: &Subject<'_>, enabled: &dyn Fn(RuleId) -> bool) -> Findings {
        let mut out = Findings::default();
        for rule in &self.rules {
            if enabled(rule.id()) {
                rule.check(subject, &mut out);
            }
        }
        out
    }
}
