//! Rule `plaintext-kafka`: Kafka brokers, clients and ZooKeeper configured for plaintext or
//! anonymous access, in container env (direct, from ConfigMaps, `$(VAR)`-expanded), in
//! command/args flags, in ConfigMaps themselves (`*.properties` entries and env-style keys),
//! and in Strimzi `Kafka` resources. Names and semantics: see `crate::kafka`.
//!
//! `PLAINTEXT` has no encryption and no authentication; `SASL_PLAINTEXT` authenticates but sends
//! traffic (and SASL/PLAIN passwords) unencrypted. `SSL` and `SASL_SSL` are never violations.
//! A listener bound only to loopback is not reachable from the network and is allowed.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{ConfigMapKey, Findings, Notice, ObjectSubject, Rule, RuleId, Subject, Violation};
use crate::env;
use crate::kafka::{
    self, Setting, bootstrap_scheme, is_false, is_plaintext_protocol, is_true, listener_protocol,
    parse_listeners, parse_properties, parse_protocol_map,
};
use crate::policy::ImplicitDefault;

/// One setting found somewhere, with what is needed to report it.
#[derive(Debug, Clone)]
struct Found {
    setting: Setting,
    /// The variable, property or flag as written (`KAFKA_CFG_LISTENERS`, `listeners`).
    label: String,
    value: Option<String>,
    path: String,
    /// `from ConfigMap "x" key "y"`, `line 12`, or empty.
    origin: String,
    /// The ConfigMap key a container's variable was read from.
    config_map: Option<ConfigMapKey>,
}

/// A finding before it becomes a violation or a notice.
struct Problem {
    path: String,
    value: String,
    message: String,
    fix: &'static str,
    source: Option<ConfigMapKey>,
}

const FIX_LISTENER: &str = "use an SSL or SASL_SSL listener (map it in listener.security.protocol.map), or bind the listener to 127.0.0.1 only.";
const FIX_CLIENT: &str =
    "set the client's security.protocol to SSL or SASL_SSL and give it the broker's CA.";

fn label_with_origin(f: &Found) -> String {
    if f.origin.is_empty() {
        f.label.clone()
    } else {
        format!("{} ({})", f.label, f.origin)
    }
}

/// Evaluates the settings of one configuration unit (a container, a properties file, an
/// env-style ConfigMap). `implicit_scope`: whether a missing security.protocol means the
/// PLAINTEXT default (a complete client configuration).
fn analyse(
    found: &[Found],
    who: &str,
    implicit_scope: bool,
    problems: &mut Vec<Problem>,
    implicit: &mut Vec<Problem>,
) {
    let mut map = BTreeMap::new();
    for f in found.iter().filter(|f| f.setting == Setting::ProtocolMap) {
        if let Some(v) = &f.value {
            map.extend(parse_protocol_map(v));
        }
    }
    let listeners: Vec<kafka::Listener> = found
        .iter()
        .filter(|f| f.setting == Setting::Listeners)
        .filter_map(|f| f.value.as_deref())
        .flat_map(parse_listeners)
        .collect();
    let mut protocol_set = false;
    let mut bootstrap: Option<&Found> = None;
    for f in found {
        let Some(value) = f.value.as_deref() else {
            // Set from somewhere we cannot read: counts as set, cannot be judged.
            if f.setting == Setting::ClientProtocol {
                protocol_set = true;
            }
            continue;
        };
        let what = label_with_origin(f);
        let mut report = |message: String, fix: &'static str| {
            problems.push(Problem {
                path: f.path.clone(),
                value: value.to_string(),
                message,
                fix,
                source: f.config_map.clone(),
            })
        };
        match f.setting {
            Setting::Listeners | Setting::AdvertisedListeners => {
                // One setting, one finding: every plaintext listener it declares is named in it.
                let plaintext: Vec<(String, String)> = parse_listeners(value)
                    .into_iter()
                    .filter(|listener| !listener.is_loopback())
                    .filter_map(|listener| {
                        let protocol = listener_protocol(&listener.name, &map)?;
                        is_plaintext_protocol(&protocol).then_some((listener.raw, protocol))
                    })
                    .collect();
                match plaintext.as_slice() {
                    [] => {}
                    [(raw, protocol)] => report(
                        format!(
                            "{who}: {what} listener {raw:?} uses {protocol}, unencrypted on the network"
                        ),
                        FIX_LISTENER,
                    ),
                    several => {
                        let listed: Vec<String> = several
                            .iter()
                            .map(|(raw, protocol)| format!("{raw:?} ({protocol})"))
                            .collect();
                        report(
                            format!(
                                "{who}: {what} listeners {} are unencrypted on the network",
                                listed.join(", ")
                            ),
                            FIX_LISTENER,
                        )
                    }
                }
            }
            Setting::InterBrokerListenerName | Setting::ClientListenerName => {
                let name = value.trim().to_ascii_uppercase();
                let loopback_only = listeners
                    .iter()
                    .filter(|l| l.name == name)
                    .all(|l| l.is_loopback())
                    && listeners.iter().any(|l| l.name == name);
                if let Some(protocol) = listener_protocol(&name, &map)
                    && is_plaintext_protocol(&protocol)
                    && !loopback_only
                {
                    report(
                        format!("{who}: {what} {value:?} resolves to {protocol}"),
                        "point it at an SSL or SASL_SSL listener.",
                    );
                }
            }
            Setting::InterBrokerProtocol => {
                if is_plaintext_protocol(value) {
                    report(
                        format!(
                            "{who}: {what} is {}, so brokers replicate unencrypted",
                            value.trim()
                        ),
                        "set security.inter.broker.protocol (or inter.broker.listener.name) to an SSL or SASL_SSL listener.",
                    );
                }
            }
            Setting::ClientProtocol => {
                protocol_set = true;
                if is_plaintext_protocol(value) {
                    report(format!("{who}: {what} is {}", value.trim()), FIX_CLIENT);
                }
            }
            Setting::BootstrapServers => {
                bootstrap.get_or_insert(f);
                // One setting, one finding: every plaintext entry is named in it.
                let mut plaintext: Vec<(&str, String)> = Vec::new();
                for entry in value.split(',') {
                    if let Some(scheme) = bootstrap_scheme(entry) {
                        protocol_set = true;
                        if is_plaintext_protocol(&scheme) {
                            plaintext.push((entry.trim(), scheme));
                        }
                    }
                }
                match plaintext.as_slice() {
                    [] => {}
                    [(entry, scheme)] => report(
                        format!("{who}: {what} entry {entry:?} uses the {scheme} scheme"),
                        FIX_CLIENT,
                    ),
                    several => {
                        let listed: Vec<String> = several
                            .iter()
                            .map(|(entry, scheme)| format!("{entry:?} ({scheme})"))
                            .collect();
                        report(
                            format!(
                                "{who}: {what} entries {} use plaintext schemes",
                                listed.join(", ")
                            ),
                            FIX_CLIENT,
                        )
                    }
                }
            }
            Setting::AllowPlaintextListener => {
                if is_true(value) {
                    report(
                        format!(
                            "{who}: {what}={} lets the Bitnami image start plaintext listeners",
                            value.trim()
                        ),
                        "remove ALLOW_PLAINTEXT_LISTENER and configure SSL or SASL_SSL listeners.",
                    );
                }
            }
            Setting::AllowAnonymousLogin => {
                if is_true(value) {
                    report(
                        format!(
                            "{who}: {what}={} lets anyone connect to ZooKeeper without authentication",
                            value.trim()
                        ),
                        "remove ALLOW_ANONYMOUS_LOGIN and configure ZOO_ENABLE_AUTH with client users (and TLS).",
                    );
                }
            }
            Setting::ZookeeperProtocol => {
                let p = value.trim().to_ascii_uppercase();
                if p == "PLAINTEXT" || p == "SASL" {
                    report(
                        format!("{who}: {what} is {p}, so the ZooKeeper connection is unencrypted"),
                        "set KAFKA_ZOOKEEPER_PROTOCOL to SSL or SASL_SSL.",
                    );
                }
            }
            Setting::ZookeeperSslClientEnable => {
                if is_false(value) {
                    report(
                        format!(
                            "{who}: {what} is {}, so the ZooKeeper connection is unencrypted",
                            value.trim()
                        ),
                        "set zookeeper.ssl.client.enable=true with a truststore for ZooKeeper.",
                    );
                }
            }
            Setting::ProtocolMap => {}
        }
    }
    if implicit_scope
        && !protocol_set
        && let Some(f) = bootstrap
    {
        implicit.push(Problem {
            path: f.path.clone(),
            value: f.value.clone().unwrap_or_default(),
            message: format!(
                "{who}: {} is set but security.protocol is set nowhere applyguard can see, so the client uses the PLAINTEXT default",
                label_with_origin(f)
            ),
            fix: "set security.protocol (e.g. KAFKA_SECURITY_PROTOCOL or the client's properties) to SSL or SASL_SSL.",
            source: f.config_map.clone(),
        });
    }
}

/// `--security-protocol`, `--kafka-security-protocol`, any `--*security-protocol`, and
/// `--bootstrap-server(s)`, as `--flag value` or `--flag=value`.
fn flags(args: &[(String, String)]) -> Vec<Found> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let (arg, path) = (&args[i].0, &args[i].1);
        i += 1;
        let Some(flag) = arg.strip_prefix("--") else {
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let setting = if name.ends_with("security-protocol") {
            Setting::ClientProtocol
        } else if name == "bootstrap-server" || name == "bootstrap-servers" {
            Setting::BootstrapServers
        } else {
            continue;
        };
        let (value, value_path) = match inline {
            Some(v) => (Some(v), path.clone()),
            None if i < args.len() => {
                i += 1;
                (Some(args[i - 1].0.clone()), args[i - 1].1.clone())
            }
            None => (None, path.clone()),
        };
        out.push(Found {
            setting,
            label: format!("--{name}"),
            value,
            path: value_path,
            origin: String::new(),
            config_map: None,
        });
    }
    out
}

pub struct PlaintextKafka {
    implicit: ImplicitDefault,
}

impl PlaintextKafka {
    pub fn new(implicit: ImplicitDefault) -> Self {
        PlaintextKafka { implicit }
    }

    fn emit(&self, problems: Vec<Problem>, implicit: Vec<Problem>, out: &mut Findings) {
        for p in problems {
            out.violations.push(Violation {
                rule: RuleId::PlaintextKafka,
                path: p.path,
                value: p.value,
                message: p.message,
                fix: p.fix.to_string(),
                source: p.source,
            });
        }
        for p in implicit {
            match self.implicit {
                ImplicitDefault::Enforce => out.violations.push(Violation {
                    rule: RuleId::PlaintextKafka,
                    path: p.path,
                    value: p.value,
                    message: p.message,
                    fix: p.fix.to_string(),
                    source: p.source,
                }),
                ImplicitDefault::Warn => out.notices.push(Notice {
                    rule: RuleId::PlaintextKafka,
                    path: p.path,
                    message: p.message,
                }),
                ImplicitDefault::Off => {}
            }
        }
    }

    fn check_config_map(&self, object: &Value, out: &mut Findings) {
        let Some(data) = object.get("data").and_then(Value::as_object) else {
            return;
        };
        let (mut problems, mut implicit) = (Vec::new(), Vec::new());
        let mut env_style = Vec::new();
        for (key, value) in data {
            let Some(text) = value.as_str() else { continue };
            if key.ends_with(".properties") {
                let found: Vec<Found> = parse_properties(text)
                    .into_iter()
                    .filter_map(|p| {
                        kafka::classify_property(&p.key).map(|setting| Found {
                            setting,
                            label: p.key.clone(),
                            value: Some(p.value),
                            path: format!("data[{key}]"),
                            origin: format!("line {}", p.line),
                            config_map: None,
                        })
                    })
                    .collect();
                analyse(
                    &found,
                    &format!("data[{key}]"),
                    true,
                    &mut problems,
                    &mut implicit,
                );
            } else if let Some(setting) = kafka::classify_env(key) {
                env_style.push(Found {
                    setting,
                    label: key.clone(),
                    value: Some(text.to_string()),
                    path: format!("data.{key}"),
                    origin: String::new(),
                    config_map: None,
                });
            }
        }
        // An env-style ConfigMap is only part of a container's environment: judge its explicit
        // settings here, the implicit default where it is used.
        analyse(&env_style, "ConfigMap", false, &mut problems, &mut implicit);
        self.emit(problems, implicit, out);
    }

    fn check_strimzi(&self, object: &Value, out: &mut Findings) {
        let Some(listeners) = object
            .get("spec")
            .and_then(|s| s.get("kafka"))
            .and_then(|k| k.get("listeners"))
        else {
            return;
        };
        let mut problems = Vec::new();
        match listeners {
            Value::Array(list) => {
                for (i, listener) in list.iter().enumerate() {
                    if listener.get("tls").and_then(Value::as_bool) == Some(false) {
                        let name = listener.get("name").and_then(Value::as_str).unwrap_or("?");
                        let port = listener.get("port").map(|p| p.to_string()).unwrap_or_else(|| "?".into());
                        problems.push(Problem {
                            path: format!("spec.kafka.listeners[{i}].tls"),
                            value: "false".to_string(),
                            message: format!("Strimzi listener {name:?} on port {port} has tls: false, so clients connect in plaintext"),
                            fix: "set tls: true on the listener (and configure authentication), or remove it.",
                            source: None,
                        });
                    }
                }
            }
            // The old v1beta1 object form: `plain` is the plaintext listener.
            Value::Object(map) if map.contains_key("plain") => problems.push(Problem {
                path: "spec.kafka.listeners.plain".to_string(),
                value: "plain".to_string(),
                message: "Strimzi listener \"plain\" is a plaintext listener".to_string(),
                fix: "remove the plain listener and use tls (or move to the listeners array with tls: true).",
                source: None,
            }),
            _ => {}
        }
        self.emit(problems, Vec::new(), out);
    }
}

impl Rule for PlaintextKafka {
    fn id(&self) -> RuleId {
        RuleId::PlaintextKafka
    }

    fn check(&self, subject: &Subject<'_>, out: &mut Findings) {
        let (mut problems, mut implicit) = (Vec::new(), Vec::new());
        for container in subject.pod.containers() {
            // Most containers have no Kafka setting at all: resolving their environment (every
            // variable formatted with its path and origin) was most of this rule's cost. It is
            // needed only when a variable's name is a Kafka setting, a ConfigMap brings names we
            // cannot see here, or a command/args word refers to a variable; otherwise the
            // words are their own expansion and `found` would stay empty.
            let needs_env = container
                .env
                .iter()
                .any(|var| kafka::classify_env(&var.name).is_some())
                || container
                    .env_from
                    .iter()
                    .any(|f| f.config_map_ref.is_some())
                || container
                    .command
                    .iter()
                    .chain(container.args)
                    .any(|word| word.contains('$'));
            let vars = if needs_env {
                env::resolve(&container, subject.namespace, subject.inventory)
            } else {
                Vec::new()
            };
            let mut found: Vec<Found> = vars
                .iter()
                .filter_map(|var| {
                    kafka::classify_env(&var.name).map(|setting| Found {
                        setting,
                        label: var.name.clone(),
                        value: var.value.known().map(str::to_string),
                        path: var.path.clone(),
                        origin: if var.origin == "value" {
                            String::new()
                        } else {
                            format!("from {}", var.origin)
                        },
                        config_map: var.config_map.clone(),
                    })
                })
                .collect();
            // Command and args, expanded with the container's environment as the kubelet does.
            let values = env::final_values(&vars);
            // Expanded text is bounded per container, as for env (an expansion bomb in args).
            let mut budget = env::MAX_EXPANDED_TOTAL;
            let mut words: Vec<(String, String)> = Vec::new();
            for (field, list) in [("command", container.command), ("args", container.args)] {
                for (i, word) in list.iter().enumerate() {
                    let expanded = env::expand_bounded(word, |n| values.get(n).cloned())
                        .filter(|w| w.len() <= budget)
                        .unwrap_or_else(|| word.clone());
                    budget = budget.saturating_sub(expanded.len());
                    words.push((expanded, format!("{}.{field}[{i}]", container.path)));
                }
            }
            found.extend(flags(&words));
            analyse(
                &found,
                &container.describe(),
                true,
                &mut problems,
                &mut implicit,
            );
        }
        self.emit(problems, implicit, out);
    }

    fn handles_kind(&self, group: &str, kind: &str) -> bool {
        matches!(
            (group, kind),
            ("", "ConfigMap") | ("kafka.strimzi.io", "Kafka")
        )
    }

    fn check_object(&self, subject: &ObjectSubject<'_>, out: &mut Findings) {
        match (subject.group, subject.kind) {
            ("", "ConfigMap") => self.check_config_map(subject.object, out),
            ("kafka.strimzi.io", "Kafka") => self.check_strimzi(subject.object, out),
            _ => {}
        }
    }
}
