//! A container's environment as the kubelet builds it: `envFrom` sources first, then `env` in
//! order, later names overriding earlier ones, ConfigMap values read through the Inventory, and
//! `$(VAR)` references expanded against variables defined earlier (`$$` escapes).
//!
//! Expansion follows Kubernetes' `third_party/forked/golang/expansion`: `$(NAME)` of a defined
//! variable is replaced, of an undefined one is kept as written, `$$` is a literal `$`, and a `$`
//! that starts nothing is kept.

use std::collections::HashMap;

use crate::inventory::Inventory;
use crate::workload::ContainerView;

/// A variable's value, when applyguard can know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    Known(String),
    /// Set, but from somewhere applyguard cannot read (a Secret, the downward API, a missing
    /// ConfigMap): the text says where.
    Unknown(String),
}

impl EnvValue {
    pub fn known(&self) -> Option<&str> {
        match self {
            EnvValue::Known(v) => Some(v),
            EnvValue::Unknown(_) => None,
        }
    }
}

/// One variable of a container, with the field it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: EnvValue,
    /// Field path: `spec.containers[0].env[3].value`, `...envFrom[0].configMapRef`.
    pub path: String,
    /// Where the value was read, for messages: `value`, `ConfigMap "kafka-env" key "X"`.
    pub origin: String,
    /// The ConfigMap key the value was read from, when it was: where it must be fixed.
    pub config_map: Option<crate::rules::ConfigMapKey>,
}

/// How a variable read from a ConfigMap key says where it came from.
pub fn config_map_origin(name: &str, key: &str) -> String {
    format!("ConfigMap {name:?} key {key:?}")
}

/// The longest value an expansion may produce. `A=$(B)$(B)`, `B=$(C)$(C)`... doubles at each
/// step: without a bound a 2 KB pod spec could make the webhook allocate gigabytes.
pub const MAX_EXPANDED: usize = 32 * 1024;
/// The most expanded text one container's environment may hold in total.
pub const MAX_EXPANDED_TOTAL: usize = 1024 * 1024;

/// Expands `$(VAR)` references in `input` with `lookup`, as the kubelet does. `None` when the
/// result would exceed `MAX_EXPANDED` bytes.
pub fn expand_bounded(input: &str, lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    let mut literal_start = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            out.push_str(&input[literal_start..i]);
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                }
                b'(' => match input[i + 2..].find(')') {
                    Some(end) => {
                        let name = &input[i + 2..i + 2 + end];
                        match lookup(name) {
                            Some(value) => {
                                if out.len() + value.len() > MAX_EXPANDED {
                                    return None;
                                }
                                out.push_str(&value)
                            }
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        i += 2 + end + 1;
                    }
                    None => {
                        out.push_str("$(");
                        i += 2;
                    }
                },
                _ => {
                    // `$` followed by anything else is kept, with that character.
                    out.push('$');
                    i += 1;
                }
            }
            literal_start = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&input[literal_start..]);
    (out.len() <= MAX_EXPANDED).then_some(out)
}

/// `expand_bounded` for callers that keep the input when the result would be too large.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    expand_bounded(input, lookup).unwrap_or_else(|| input.to_string())
}

/// The container's variables in definition order (a name defined twice appears twice; the
/// kubelet keeps the last).
pub fn resolve(
    container: &ContainerView<'_>,
    namespace: &str,
    inventory: &dyn Inventory,
) -> Vec<EnvVar> {
    let mut vars: Vec<EnvVar> = Vec::new();
    let mut known: HashMap<String, String> = HashMap::new();
    // Bytes of expanded values held, bounded per container.
    let mut total = 0usize;
    for (i, from) in container.env_from.iter().enumerate() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        if let Some(cm) = &from.config_map_ref {
            let path = format!("{}.envFrom[{i}].configMapRef", container.path);
            match inventory.config_map(namespace, &cm.name) {
                Some(info) => {
                    for (key, value) in info.data.iter() {
                        let name = format!("{prefix}{key}");
                        known.insert(name.clone(), value.to_string());
                        vars.push(EnvVar {
                            name,
                            value: EnvValue::Known(value.to_string()),
                            path: path.clone(),
                            origin: config_map_origin(&cm.name, key),
                            config_map: Some(crate::rules::ConfigMapKey {
                                name: cm.name.clone(),
                                key: key.to_string(),
                            }),
                        });
                    }
                }
                None => {
                    // Unknown contents: no variable can be attributed to it.
                }
            }
        }
        // Secret-sourced variables: names unknown without values; nothing to attribute.
    }
    for (i, env) in container.env.iter().enumerate() {
        let base = format!("{}.env[{i}]", container.path);
        let mut config_map = None;
        let (value, path, origin) = match (&env.value, &env.value_from) {
            (_, Some(from)) => {
                if let Some(r) = &from.config_map_key_ref {
                    let value = inventory
                        .config_map(namespace, &r.name)
                        .and_then(|cm| cm.data.get(&r.key).map(str::to_string));
                    let origin = config_map_origin(&r.name, &r.key);
                    let value = match value {
                        Some(v) => {
                            config_map = Some(crate::rules::ConfigMapKey {
                                name: r.name.clone(),
                                key: r.key.clone(),
                            });
                            EnvValue::Known(v)
                        }
                        None => EnvValue::Unknown(format!("{origin}, not in the inventory")),
                    };
                    (value, format!("{base}.valueFrom.configMapKeyRef"), origin)
                } else if let Some(r) = &from.secret_key_ref {
                    let origin = format!("Secret {:?} key {:?}", r.name, r.key);
                    (
                        EnvValue::Unknown(origin.clone()),
                        format!("{base}.valueFrom.secretKeyRef"),
                        origin,
                    )
                } else {
                    (
                        EnvValue::Unknown("the downward API".to_string()),
                        format!("{base}.valueFrom"),
                        "the downward API".to_string(),
                    )
                }
            }
            (value, None) => {
                let raw = value.as_deref().unwrap_or("");
                let value = match expand_bounded(raw, |name| known.get(name).cloned()) {
                    Some(expanded) if total + expanded.len() <= MAX_EXPANDED_TOTAL => {
                        total += expanded.len();
                        EnvValue::Known(expanded)
                    }
                    _ => EnvValue::Unknown("a $(VAR) expansion too large to evaluate".to_string()),
                };
                (value, format!("{base}.value"), "value".to_string())
            }
        };
        match &value {
            EnvValue::Known(v) => {
                known.insert(env.name.clone(), v.clone());
            }
            EnvValue::Unknown(_) => {
                known.remove(&env.name);
            }
        }
        vars.push(EnvVar {
            name: env.name.clone(),
            value,
            path,
            origin,
            config_map,
        });
    }
    vars
}

/// The final value of every known variable, for expanding command and args.
pub fn final_values(vars: &[EnvVar]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for var in vars {
        match &var.value {
            EnvValue::Known(v) => {
                map.insert(var.name.clone(), v.clone());
            }
            EnvValue::Unknown(_) => {
                map.remove(&var.name);
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("kafka".to_string()),
            "PORT" => Some("9093".to_string()),
            _ => None,
        }
    }

    #[test]
    fn expansion_matches_the_kubelet() {
        let cases = [
            ("SSL://$(HOST):$(PORT)", "SSL://kafka:9093"),
            ("$(MISSING)", "$(MISSING)"),
            ("$$(HOST)", "$(HOST)"),
            ("$$$(HOST)", "$kafka"),
            ("cost: $5", "cost: $5"),
            ("trailing $", "trailing $"),
            ("$(HOST", "$(HOST"),
            ("$()", "$()"),
            ("plain", "plain"),
            ("é$(HOST)é", "ékafkaé"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, lookup), want, "{input}");
        }
        // A doubling chain stops at the bound instead of growing without limit.
        let big = "x".repeat(MAX_EXPANDED / 2 + 1);
        assert_eq!(expand_bounded("$(B)$(B)", |_| Some(big.clone())), None);
    }
}
