//! Exemptions and namespace modes: which rules apply to a request, and how.
//!
//! Namespace labels choose the mode the Pod Security Admission way: `applyguard.io/mode`
//! overrides the configured mode for everything in the namespace, `applyguard.io/<rule-id>` for
//! one rule. An invalid value falls back to the configured mode and is reported, never `off`.
//! Exemptions (namespaces, users, groups, service accounts from the config; per object the
//! `applyguard.io/exempt` annotation with a non-empty `applyguard.io/exempt-reason`) turn a
//! violation into a warning that names the exemption.

use std::collections::{BTreeMap, HashMap};

use globset::{Glob, GlobMatcher};

use crate::policy::{Exemptions, Policy, RuleMode};
use crate::rules::RuleId;

pub const LABEL_PREFIX: &str = "applyguard.io/";
pub const MODE_LABEL: &str = "applyguard.io/mode";
pub const EXEMPT_ANNOTATION: &str = "applyguard.io/exempt";
pub const EXEMPT_REASON_ANNOTATION: &str = "applyguard.io/exempt-reason";

/// Who is asking, and the object's own annotations.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    pub username: &'a str,
    pub groups: &'a [String],
    pub annotations: Option<&'a BTreeMap<String, String>>,
}

fn parse_mode(value: &str) -> Option<RuleMode> {
    match value.trim() {
        "enforce" => Some(RuleMode::Enforce),
        "warn" => Some(RuleMode::Warn),
        "off" => Some(RuleMode::Off),
        _ => None,
    }
}

/// The mode of every rule in one namespace, with notes about labels that were ignored.
pub fn modes(
    policy: &Policy,
    labels: Option<&BTreeMap<String, String>>,
) -> (HashMap<RuleId, RuleMode>, Vec<String>) {
    let mut notes = Vec::new();
    let mut namespace_mode = None;
    if let Some(value) = labels.and_then(|l| l.get(MODE_LABEL)) {
        match parse_mode(value) {
            Some(mode) => namespace_mode = Some(mode),
            None => notes.push(format!(
                "namespace label {MODE_LABEL}={value:?} is not enforce, warn or off; using the configured mode"
            )),
        }
    }
    let mut out = HashMap::new();
    for rule in RuleId::ALL {
        let label = format!("{LABEL_PREFIX}{rule}");
        let own = match labels.and_then(|l| l.get(&label)) {
            Some(value) => match parse_mode(value) {
                Some(mode) => Some(mode),
                None => {
                    notes.push(format!(
                        "namespace label {label}={value:?} is not enforce, warn or off; using the configured mode"
                    ));
                    None
                }
            },
            None => None,
        };
        // The namespace-wide label turns the deletion guard off or to warn, never to enforce
        // (see SecretInUseConfig): its own label does that.
        let namespace_mode =
            namespace_mode.filter(|m| rule != RuleId::SecretInUse || *m != RuleMode::Enforce);
        out.insert(
            rule,
            own.or(namespace_mode)
                .unwrap_or_else(|| policy.rule_mode(rule)),
        );
    }
    (out, notes)
}

/// Compiled exemption patterns.
pub struct Matchers {
    enabled: bool,
    annotations: bool,
    system_namespaces: Vec<(String, GlobMatcher)>,
    namespaces: Vec<(String, GlobMatcher)>,
    usernames: Vec<(String, GlobMatcher)>,
    groups: Vec<(String, GlobMatcher)>,
    service_accounts: Vec<(String, GlobMatcher)>,
}

fn compile(patterns: &[String]) -> Vec<(String, GlobMatcher)> {
    // Patterns were validated when the policy was loaded; one that fails here is skipped.
    patterns
        .iter()
        .filter_map(|p| Glob::new(p).ok().map(|g| (p.clone(), g.compile_matcher())))
        .collect()
}

/// Why rules are exempt for one request: all of them, or some by annotation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exemption {
    /// Every rule is exempt, for this reason.
    pub all: Option<String>,
    /// These rules are exempt, each for its reason.
    pub rules: HashMap<RuleId, String>,
    /// Problems with exemption annotations, reported as warnings.
    pub notes: Vec<String>,
}

impl Exemption {
    pub fn reason(&self, rule: RuleId) -> Option<&str> {
        self.all
            .as_deref()
            .or_else(|| self.rules.get(&rule).map(String::as_str))
    }
}

impl Matchers {
    pub fn new(config: &Exemptions) -> Matchers {
        Matchers {
            enabled: config.enabled,
            annotations: config.annotations,
            system_namespaces: compile(&config.system_namespaces),
            namespaces: compile(&config.namespaces),
            usernames: compile(&config.usernames),
            groups: compile(&config.groups),
            service_accounts: compile(&config.service_accounts),
        }
    }

    pub fn evaluate(&self, namespace: &str, caller: &Caller<'_>) -> Exemption {
        let mut out = Exemption::default();
        let requested = caller.annotations.and_then(|a| a.get(EXEMPT_ANNOTATION));
        let first = |list: &[(String, GlobMatcher)], value: &str| {
            list.iter()
                .find(|(_, m)| m.is_match(value))
                .map(|(p, _)| p.clone())
        };
        // Before `enabled`: a strict policy must still never block the control plane.
        if let Some(p) = first(&self.system_namespaces, namespace) {
            out.all = Some(format!(
                "namespace {namespace} is a system namespace (exemptions.systemNamespaces: {p})"
            ));
            return out;
        }
        if !self.enabled {
            if requested.is_some() {
                out.notes.push(format!(
                    "{EXEMPT_ANNOTATION} ignored: exemptions are disabled by policy"
                ));
            }
            return out;
        }
        if let Some(p) = first(&self.namespaces, namespace) {
            out.all = Some(format!(
                "namespace {namespace} is exempt (exemptions.namespaces: {p})"
            ));
        } else if let Some(p) = first(&self.usernames, caller.username) {
            out.all = Some(format!(
                "user {} is exempt (exemptions.usernames: {p})",
                caller.username
            ));
        } else if let Some((group, p)) = caller
            .groups
            .iter()
            .find_map(|g| first(&self.groups, g).map(|p| (g.clone(), p)))
        {
            out.all = Some(format!("group {group} is exempt (exemptions.groups: {p})"));
        } else if let Some(account) = caller
            .username
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
            .map(|(ns, name)| format!("{ns}/{name}"))
            && let Some(p) = first(&self.service_accounts, &account)
        {
            out.all = Some(format!(
                "service account {account} is exempt (exemptions.serviceAccounts: {p})"
            ));
        }
        let Some(requested) = requested else {
            return out;
        };
        if !self.annotations {
            out.notes.push(format!(
                "{EXEMPT_ANNOTATION} ignored: per-object exemptions are disabled by policy"
            ));
            return out;
        }
        let reason = caller
            .annotations
            .and_then(|a| a.get(EXEMPT_REASON_ANNOTATION))
            .map(|r| r.trim())
            .filter(|r| !r.is_empty());
        let Some(reason) = reason else {
            out.notes.push(format!(
                "{EXEMPT_ANNOTATION}={requested:?} ignored: it needs a non-empty {EXEMPT_REASON_ANNOTATION}"
            ));
            return out;
        };
        for id in requested
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match RuleId::parse(id) {
                Some(rule) => {
                    out.rules
                        .insert(rule, format!("exempted by annotation: {reason}"));
                }
                None => out.notes.push(format!(
                    "{EXEMPT_ANNOTATION}: unknown rule id {id:?} ignored"
                )),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn namespace_labels_choose_modes() {
        let policy = Policy::from_yaml(
            "mode: enforce\nrules:\n  root-container: {mode: warn}\n",
            "t",
        )
        .unwrap();
        let (m, notes) = modes(&policy, None);
        assert_eq!(
            (m[&RuleId::SecretRef], m[&RuleId::RootContainer]),
            (RuleMode::Enforce, RuleMode::Warn)
        );
        assert!(notes.is_empty());
        let l = labels(&[
            ("applyguard.io/mode", "warn"),
            ("applyguard.io/placeholder-image", "off"),
        ]);
        let (m, _) = modes(&policy, Some(&l));
        assert_eq!(m[&RuleId::SecretRef], RuleMode::Warn);
        assert_eq!(m[&RuleId::RootContainer], RuleMode::Warn);
        assert_eq!(m[&RuleId::PlaceholderImage], RuleMode::Off);
        let l = labels(&[
            ("applyguard.io/mode", "off"),
            ("applyguard.io/secret-ref", "enforce"),
        ]);
        let (m, _) = modes(&policy, Some(&l));
        assert_eq!(
            (m[&RuleId::SecretRef], m[&RuleId::PlaintextKafka]),
            (RuleMode::Enforce, RuleMode::Off)
        );
        // Invalid values: the configured mode, never off, and a note.
        let l = labels(&[
            ("applyguard.io/mode", "disabled"),
            ("applyguard.io/root-container", "Off"),
        ]);
        let (m, notes) = modes(&policy, Some(&l));
        assert_eq!(
            (m[&RuleId::SecretRef], m[&RuleId::RootContainer]),
            (RuleMode::Enforce, RuleMode::Warn)
        );
        assert_eq!(notes.len(), 2, "{notes:?}");
    }

    #[test]
    fn exemption_kinds() {
        let config = Exemptions {
            namespaces: vec!["kube-system".into(), "team-*".into()],
            usernames: vec!["alice@example.com".into()],
            groups: vec!["platform:break-glass".into()],
            service_accounts: vec!["ci/*".into()],
            ..Exemptions::default()
        };
        let m = Matchers::new(&config);
        let none = Caller::default();
        assert!(
            m.evaluate("team-a", &none)
                .all
                .unwrap()
                .contains("exemptions.namespaces: team-*")
        );
        assert!(m.evaluate("shop", &none).all.is_none());
        let alice = Caller {
            username: "alice@example.com",
            ..Caller::default()
        };
        assert!(
            m.evaluate("shop", &alice)
                .all
                .unwrap()
                .contains("user alice@example.com")
        );
        let groups = vec![
            "system:authenticated".to_string(),
            "platform:break-glass".to_string(),
        ];
        let bob = Caller {
            username: "bob",
            groups: &groups,
            annotations: None,
        };
        assert!(
            m.evaluate("shop", &bob)
                .all
                .unwrap()
                .contains("group platform:break-glass")
        );
        let sa = Caller {
            username: "system:serviceaccount:ci:deployer",
            ..Caller::default()
        };
        assert!(
            m.evaluate("shop", &sa)
                .all
                .unwrap()
                .contains("service account ci/deployer")
        );
        let other_sa = Caller {
            username: "system:serviceaccount:shop:deployer",
            ..Caller::default()
        };
        assert!(m.evaluate("shop", &other_sa).all.is_none());
    }

    #[test]
    fn system_namespaces_are_exempt_by_default_even_when_exemptions_are_off() {
        let none = Caller::default();
        for enabled in [true, false] {
            let m = Matchers::new(&Exemptions {
                enabled,
                ..Exemptions::default()
            });
            for ns in ["kube-system", "kube-node-lease", "applyguard"] {
                assert_eq!(
                    m.evaluate(ns, &none).all.as_deref(),
                    Some(format!("namespace {ns} is a system namespace (exemptions.systemNamespaces: {ns})").as_str()),
                );
            }
            assert!(m.evaluate("kube-public", &none).all.is_none());
        }
        // `[]` evaluates them like any other namespace.
        let m = Matchers::new(&Exemptions {
            system_namespaces: vec![],
            ..Exemptions::default()
        });
        assert!(m.evaluate("kube-system", &none).all.is_none());
    }

    #[test]
    fn annotations_need_a_reason_and_can_be_refused() {
        let m = Matchers::new(&Exemptions::default());
        let with_reason = labels(&[
            (EXEMPT_ANNOTATION, "root-container, placeholder-image,nope"),
            (EXEMPT_REASON_ANNOTATION, "vendor image, ticket OPS-12"),
        ]);
        let e = m.evaluate(
            "shop",
            &Caller {
                annotations: Some(&with_reason),
                ..Caller::default()
            },
        );
        assert!(e.reason(RuleId::RootContainer).unwrap().contains("OPS-12"));
        assert!(e.reason(RuleId::PlaceholderImage).is_some());
        assert!(e.reason(RuleId::SecretRef).is_none());
        assert_eq!(e.notes.len(), 1, "unknown id reported");
        let no_reason = labels(&[
            (EXEMPT_ANNOTATION, "root-container"),
            (EXEMPT_REASON_ANNOTATION, "  "),
        ]);
        let e = m.evaluate(
            "shop",
            &Caller {
                annotations: Some(&no_reason),
                ..Caller::default()
            },
        );
        assert!(e.rules.is_empty());
        assert!(e.notes[0].contains("needs a non-empty"));
        let refused = Matchers::new(&Exemptions {
            annotations: false,
            ..Exemptions::default()
        });
        let e = refused.evaluate(
            "shop",
            &Caller {
                annotations: Some(&with_reason),
                ..Caller::default()
            },
        );
        assert!(e.rules.is_empty() && e.notes[0].contains("disabled"));
        let strict = Matchers::new(&Exemptions {
            enabled: false,
            namespaces: vec!["*".into()],
            ..Exemptions::default()
        });
        let e = strict.evaluate(
            "shop",
            &Caller {
                annotations: Some(&with_reason),
                ..Caller::default()
            },
        );
        assert!(e.all.is_none() && e.rules.is_empty());
    }
}
