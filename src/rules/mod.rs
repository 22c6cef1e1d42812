//! The rules: pure functions from (object, policy) to violations, plus the types they share.

mod placeholder_image;
mod root_container;

pub use placeholder_image::{ImageVerdict, PlaceholderImage, classify_image};
pub use root_container::RootContainer;

use std::fmt;

use crate::policy::{Policy, PolicyError};
use crate::workload::PodView;

/// The stable identifiers of the rules; they appear in config keys, messages, metrics and labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    RootContainer,
    PlaceholderImage,
}

impl RuleId {
    pub const ALL: [RuleId; 2] = [RuleId::RootContainer, RuleId::PlaceholderImage];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::RootContainer => "root-container",
            RuleId::PlaceholderImage => "placeholder-image",
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
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] {}: {} (value: {:?}). Fix: {}",
            self.rule, self.path, self.message, self.value, self.fix
        )
    }
}

/// What a rule looks at: the object under review, seen as a pod spec.
pub struct Subject<'a> {
    pub namespace: &'a str,
    pub pod: &'a PodView,
}

/// A rule checks one subject and appends what it finds.
pub trait Rule: Send + Sync {
    fn id(&self) -> RuleId;
    fn check(&self, subject: &Subject<'_>, out: &mut Vec<Violation>);
}

/// The rules a policy turns on, built once per policy (patterns compiled up front).
pub struct RuleSet {
    rules: Vec<Box<dyn Rule>>,
}

impl RuleSet {
    /// Builds every rule whose mode is not `off`.
    pub fn from_policy(policy: &Policy) -> Result<RuleSet, PolicyError> {
        let mut rules: Vec<Box<dyn Rule>> = Vec::new();
        for id in RuleId::ALL {
            if policy.rule_mode(id) == crate::policy::RuleMode::Off {
                continue;
            }
            rules.push(match id {
                RuleId::RootContainer => Box::new(RootContainer),
                RuleId::PlaceholderImage => {
                    Box::new(PlaceholderImage::new(&policy.rules.placeholder_image)?)
                }
            });
        }
        Ok(RuleSet { rules })
    }

    pub fn check(&self, subject: &Subject<'_>) -> Vec<Violation> {
        let mut out = Vec::new();
        for rule in &self.rules {
            rule.check(subject, &mut out);
        }
        out
    }
}
