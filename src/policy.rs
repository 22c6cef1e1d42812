//! Configuration: the global mode, per-rule modes and rule settings, loaded from YAML.

use std::path::Path;

use serde::Deserialize;

use crate::rules::RuleId;

/// The default mode of the whole policy: every rule inherits it unless it sets its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Violations deny the request (403).
    #[default]
    Enforce,
    /// Violations are returned as warnings and audit annotations; the request is allowed.
    Warn,
}

/// What `serve` does with a check it cannot make because the cluster inventory is not ready
/// (not yet synced, or its cache was lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Deny the request, saying why (the safe default with `failurePolicy: Fail`).
    #[default]
    Deny,
    /// Allow it with a warning that the check was not made.
    Warn,
}

impl FailureMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureMode::Deny => "deny",
            FailureMode::Warn => "warn",
        }
    }
}

/// How `plaintext-kafka` reports a client that relies on the PLAINTEXT default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ImplicitDefault {
    /// A warning: the setting may live where the webhook cannot see (a file in the image).
    #[default]
    Warn,
    /// A violation, subject to the rule's mode.
    Enforce,
    Off,
}

/// The mode of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleMode {
    Enforce,
    Warn,
    Off,
}

impl From<Mode> for RuleMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Enforce => RuleMode::Enforce,
            Mode::Warn => RuleMode::Warn,
        }
    }
}

impl RuleMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleMode::Enforce => "enforce",
            RuleMode::Warn => "warn",
            RuleMode::Off => "off",
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub failure_mode: FailureMode,
    #[serde(default)]
    pub rules: Rules,
    #[serde(default)]
    pub exemptions: Exemptions,
    /// Further pod-template kinds to evaluate like Deployments (`{group, kind, podTemplate}`).
    #[serde(default)]
    pub workloads: Vec<WorkloadEntry>,
}

/// A custom resource that carries a pod template, as Kyverno's autogen and Gatekeeper's
/// ExpansionTemplate name them. kube-apiserver only sends it once the webhook has a rule for it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEntry {
    pub group: String,
    pub kind: String,
    /// Dotted path to the PodTemplateSpec (`spec.template`); its `spec` is the pod spec.
    pub pod_template: String,
}

/// Who and what is exempt. An exemption turns a violation into a warning that names it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Exemptions {
    /// `false` turns every exemption off (strict clusters), except `systemNamespaces`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The control plane's namespaces and applyguard's own: the webhook's namespaceSelector
    /// keeps them out, but on API servers before 1.21 that selector cannot (namespaces have no
    /// `kubernetes.io/metadata.name` label there), so applyguard exempts them itself. `[]`
    /// evaluates them like any other namespace.
    #[serde(default = "system_namespaces")]
    pub system_namespaces: Vec<String>,
    /// Namespace names or globs (`team-*`).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Request usernames (userInfo.username), exact or glob.
    #[serde(default)]
    pub usernames: Vec<String>,
    /// Request groups (userInfo.groups), exact or glob.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Service accounts as `namespace/name`, exact or glob (`kube-system/*`).
    #[serde(default)]
    pub service_accounts: Vec<String>,
    /// Whether objects may exempt themselves with `applyguard.io/exempt` (and a reason).
    #[serde(default = "yes")]
    pub annotations: bool,
}

fn yes() -> bool {
    true
}

/// The namespaces deploy/base's namespaceSelector excludes.
pub fn system_namespaces() -> Vec<String> {
    ["kube-system", "kube-node-lease", "applyguard"]
        .map(String::from)
        .to_vec()
}

impl Default for Exemptions {
    fn default() -> Self {
        Exemptions {
            enabled: true,
            system_namespaces: system_namespaces(),
            namespaces: Vec::new(),
            usernames: Vec::new(),
            groups: Vec::new(),
            service_accounts: Vec::new(),
            annotations: true,
        }
    }
}

/// Per-rule settings. Unknown rule ids are rejected so that a typo never silently disables a rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(rename = "secret-ref", default)]
    pub secret_ref: SecretRefConfig,
    #[serde(rename = "root-container", default)]
    pub root_container: RootContainerConfig,
    #[serde(rename = "placeholder-image", default)]
    pub placeholder_image: PlaceholderImageConfig,
    #[serde(rename = "plaintext-kafka", default)]
    pub plaintext_kafka: PlaintextKafkaConfig,
    #[serde(rename = "placeholder-secret", default)]
    pub placeholder_secret: PlaceholderSecretConfig,
    #[serde(rename = "secret-in-use", default)]
    pub secret_in_use: SecretInUseConfig,
}

/// The deletion guard. Its mode is its own: the policy's `mode` and the namespace label
/// `applyguard.io/mode` do not reach it, so `mode: enforce` (the default) never makes deletes
/// impossible; `mode: enforce` here, or the label `applyguard.io/secret-in-use`, does.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretInUseConfig {
    pub mode: Option<RuleMode>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceholderSecretConfig {
    pub mode: Option<RuleMode>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaintextKafkaConfig {
    pub mode: Option<RuleMode>,
    #[serde(default)]
    pub implicit_client_default: ImplicitDefault,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRefConfig {
    pub mode: Option<RuleMode>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RootContainerConfig {
    pub mode: Option<RuleMode>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceholderImageConfig {
    pub mode: Option<RuleMode>,
    /// Extra glob patterns; an image whose normalised reference matches one is a placeholder.
    #[serde(default)]
    pub deny: Vec<String>,
    /// When non-empty, every image must come from one of these registries or registry/path
    /// prefixes (matched on whole path segments).
    #[serde(default)]
    pub allow_registries: Vec<String>,
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Invalid { path: String, message: String },
}

impl Policy {
    /// Parses a policy from YAML (JSON is YAML too). `origin` names the source in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let invalid = |message: String| PolicyError::Invalid {
            path: origin.to_string(),
            message,
        };
        // An empty file is the default policy, not an error.
        if text.trim().is_empty() {
            return Ok(Policy::default());
        }
        let policy: Policy = serde_yaml_ng::from_str(text).map_err(|e| invalid(e.to_string()))?;
        policy.validate().map_err(invalid)?;
        Ok(policy)
    }

    /// Loads a policy file; a missing or invalid file is an error (never a silent default).
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Policy::from_yaml(&text, &path.display().to_string())
    }

    /// Checks what serde cannot: patterns compile and prefixes are well formed.
    fn validate(&self) -> Result<(), String> {
        for (i, w) in self.workloads.iter().enumerate() {
            let at = format!("workloads[{i}]");
            if w.group.trim().is_empty() || w.kind.trim().is_empty() {
                return Err(format!("{at}: group and kind must both be set"));
            }
            if crate::workload::WorkloadKind::from_group_kind(&w.group, &w.kind).is_some() {
                return Err(format!(
                    "{at}: {}/{} is already evaluated; list only kinds applyguard does not know",
                    w.group, w.kind
                ));
            }
            let segment_ok =
                |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !w.pod_template.split('.').all(segment_ok) {
                return Err(format!(
                    "{at}: podTemplate {:?} must be a dotted field path such as spec.template",
                    w.pod_template
                ));
            }
            if self.workloads[..i]
                .iter()
                .any(|o| o.group == w.group && o.kind == w.kind)
            {
                return Err(format!("{at}: {}/{} is listed twice", w.group, w.kind));
            }
        }
        let e = &self.exemptions;
        for (key, list) in [
            ("systemNamespaces", &e.system_namespaces),
            ("namespaces", &e.namespaces),
            ("usernames", &e.usernames),
            ("groups", &e.groups),
            ("serviceAccounts", &e.service_accounts),
        ] {
            for pattern in list {
                globset::Glob::new(pattern).map_err(|err| {
                    format!("exemptions.{key}: {pattern:?} is not a valid glob: {err}")
                })?;
            }
        }
        for account in &e.service_accounts {
            if !account.contains('/') {
                return Err(format!(
                    "exemptions.serviceAccounts: {account:?} must be namespace/name (globs allowed)"
                ));
            }
        }
        let image = &self.rules.placeholder_image;
        for pattern in &image.deny {
            globset::Glob::new(pattern).map_err(|e| {
                format!(
                    "rules.placeholder-image.deny: pattern {pattern:?} is not a valid glob: {e}"
                )
            })?;
        }
        for prefix in &image.allow_registries {
            let trimmed = prefix.trim().trim_end_matches('/');
            if trimmed.is_empty() || trimmed.contains(char::is_whitespace) {
                return Err(format!(
                    "rules.placeholder-image.allowRegistries: {prefix:?} is not a registry or registry/path prefix"
                ));
            }
        }
        Ok(())
    }

    /// The effective mode of a rule: its own, or the policy's default.
    pub fn rule_mode(&self, rule: RuleId) -> RuleMode {
        let own = match rule {
            RuleId::SecretRef => self.rules.secret_ref.mode,
            RuleId::PlaintextKafka => self.rules.plaintext_kafka.mode,
            RuleId::RootContainer => self.rules.root_container.mode,
            RuleId::PlaceholderImage => self.rules.placeholder_image.mode,
            RuleId::PlaceholderSecret => self.rules.placeholder_secret.mode,
            RuleId::SecretInUse => {
                return self.rules.secret_in_use.mode.unwrap_or(RuleMode::Warn);
            }
        };
        own.unwrap_or_else(|| self.mode.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_enforce_everywhere() {
        let policy = Policy::from_yaml("", "test").unwrap();
        assert_eq!(policy.rule_mode(RuleId::RootContainer), RuleMode::Enforce);
        assert_eq!(
            policy.rule_mode(RuleId::PlaceholderImage),
            RuleMode::Enforce
        );
    }

    #[test]
    fn rule_mode_overrides_default() {
        let policy = Policy::from_yaml(
            "mode: warn\nrules:\n  root-container: { mode: enforce }\n  placeholder-image: { mode: off }\n",
            "test",
        )
        .unwrap();
        assert_eq!(policy.rule_mode(RuleId::RootContainer), RuleMode::Enforce);
        assert_eq!(policy.rule_mode(RuleId::PlaceholderImage), RuleMode::Off);
    }

    #[test]
    fn unknown_rule_id_names_the_key() {
        let err = Policy::from_yaml("rules:\n  root-containers: { mode: warn }\n", "cfg.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("root-containers"), "{err}");
        assert!(err.contains("cfg.yaml"), "{err}");
    }

    #[test]
    fn unknown_mode_names_the_value() {
        let err = Policy::from_yaml("rules:\n  root-container: { mode: block }\n", "cfg.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("block"), "{err}");
        let err = Policy::from_yaml("mode: off\n", "cfg.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("off"), "{err}");
    }

    #[test]
    fn unknown_top_level_key_is_rejected() {
        let err = Policy::from_yaml("mdoe: warn\n", "cfg.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mdoe"), "{err}");
    }

    #[test]
    fn bad_glob_is_rejected() {
        let err = Policy::from_yaml("rules:\n  placeholder-image: { deny: ['[abc'] }\n", "c")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[abc"), "{err}");
    }
}
