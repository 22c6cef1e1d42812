//! Kafka configuration as it appears in manifests: environment-variable naming conventions of the
//! common images, Java properties files, listener lists and the listener security protocol map.
//!
//! Sources for the names and semantics:
//! - Apache Kafka configuration reference: `listeners`, `advertised.listeners`,
//!   `listener.security.protocol.map` (default maps PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL
//!   to themselves), `inter.broker.listener.name`, `security.inter.broker.protocol`, client
//!   `security.protocol` (default `PLAINTEXT`), `bootstrap.servers`, `zookeeper.ssl.client.enable`.
//! - Apache Kafka and Confluent images: `KAFKA_` + property, upper case, `.` -> `_`, `_` -> `__`,
//!   `-` -> `___` (Confluent "Docker configuration parameters"); Kafka Connect `CONNECT_`,
//!   Schema Registry `SCHEMA_REGISTRY_KAFKASTORE_`, ksqlDB `KSQL_` use the same scheme.
//! - Bitnami Kafka and ZooKeeper images: `KAFKA_CFG_` + property (`.` -> `_`),
//!   `ALLOW_PLAINTEXT_LISTENER`, `KAFKA_ZOOKEEPER_PROTOCOL` (PLAINTEXT, SASL, SSL, SASL_SSL),
//!   `KAFKA_CLIENT_LISTENER_NAME`, and ZooKeeper's `ALLOW_ANONYMOUS_LOGIN`.
//! - Spring Boot relaxed binding: `SPRING_KAFKA_SECURITY_PROTOCOL`,
//!   `SPRING_KAFKA_PROPERTIES_SECURITY_PROTOCOL`, per-client `SPRING_KAFKA_{PRODUCER,CONSUMER,
//!   ADMIN,STREAMS}_...`, `SPRING_KAFKA_BOOTSTRAP_SERVERS`.
//! - Java `Properties.load`: `=`, `:` or whitespace separate key and value, `#`/`!` start a
//!   comment line, a trailing `\` continues the line, `\` escapes.

use std::collections::BTreeMap;

/// A Kafka setting applyguard evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Setting {
    Listeners,
    AdvertisedListeners,
    ProtocolMap,
    InterBrokerListenerName,
    InterBrokerProtocol,
    /// Bitnami's `KAFKA_CLIENT_LISTENER_NAME`: the listener clients use.
    ClientListenerName,
    /// A client's `security.protocol` (any `*.security.protocol`).
    ClientProtocol,
    /// A client's `bootstrap.servers` (any `*.bootstrap.servers`).
    BootstrapServers,
    AllowPlaintextListener,
    AllowAnonymousLogin,
    ZookeeperProtocol,
    ZookeeperSslClientEnable,
}

/// The security protocols that send traffic unencrypted.
pub fn is_plaintext_protocol(protocol: &str) -> bool {
    matches!(
        protocol.trim().to_ascii_uppercase().as_str(),
        "PLAINTEXT" | "SASL_PLAINTEXT"
    )
}

const PROTOCOLS: [&str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

/// `yes`, `true` and `1`, case-insensitively, surrounding whitespace ignored.
pub fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "yes" | "true" | "1"
    )
}

/// `no`, `false` and `0`.
pub fn is_false(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "no" | "false" | "0"
    )
}

/// Decodes the Confluent/Apache scheme: `_` -> `.`, `__` -> `_`, `___` -> `-`, lower case.
pub fn decode_env_property(rest: &str) -> String {
    let mut out = String::with_capacity(rest.len());
    let mut underscores = 0;
    let flush = |out: &mut String, n: usize| match n {
        0 => {}
        1 => out.push('.'),
        2 => out.push('_'),
        3 => out.push('-'),
        // Unusual runs: keep their meaning as closely as the scheme allows.
        n => {
            for _ in 0..n / 3 {
                out.push('-');
            }
            match n % 3 {
                1 => out.push('.'),
                2 => out.push('_'),
                _ => {}
            }
        }
    };
    for c in rest.chars() {
        if c == '_' {
            underscores += 1;
        } else {
            flush(&mut out, underscores);
            underscores = 0;
            out.push(c.to_ascii_lowercase());
        }
    }
    flush(&mut out, underscores);
    out
}

/// Which Kafka setting a property key is, if any.
pub fn classify_property(key: &str) -> Option<Setting> {
    let key = key.trim().to_ascii_lowercase();
    Some(match key.as_str() {
        "listeners" => Setting::Listeners,
        "advertised.listeners" => Setting::AdvertisedListeners,
        "listener.security.protocol.map" => Setting::ProtocolMap,
        "inter.broker.listener.name" => Setting::InterBrokerListenerName,
        "security.inter.broker.protocol" => Setting::InterBrokerProtocol,
        "zookeeper.ssl.client.enable" => Setting::ZookeeperSslClientEnable,
        "security.protocol" => Setting::ClientProtocol,
        "bootstrap.servers" => Setting::BootstrapServers,
        k if k.ends_with(".security.protocol") => Setting::ClientProtocol,
        k if k.ends_with(".bootstrap.servers") => Setting::BootstrapServers,
        _ => return None,
    })
}

/// Which Kafka setting an environment variable is, under the naming conventions of the images
/// people run. A name that merely contains a Kafka word is not a setting.
pub fn classify_env(name: &str) -> Option<Setting> {
    match name {
        "ALLOW_PLAINTEXT_LISTENER" => return Some(Setting::AllowPlaintextListener),
        "ALLOW_ANONYMOUS_LOGIN" => return Some(Setting::AllowAnonymousLogin),
        "KAFKA_ZOOKEEPER_PROTOCOL" => return Some(Setting::ZookeeperProtocol),
        "KAFKA_CLIENT_LISTENER_NAME" => return Some(Setting::ClientListenerName),
        _ => {}
    }
    let strip_clients = |key: String| -> String {
        for prefix in ["producer.", "consumer.", "admin.", "streams."] {
            if let Some(rest) = key.strip_prefix(prefix) {
                return rest.to_string();
            }
        }
        key
    };
    if let Some(rest) = name.strip_prefix("KAFKA_CFG_") {
        return classify_property(&decode_env_property(rest));
    }
    if let Some(rest) = name.strip_prefix("SPRING_KAFKA_") {
        // Relaxed binding: SPRING_KAFKA_PROPERTIES_SECURITY_PROTOCOL is
        // spring.kafka.properties.security.protocol.
        let key = rest.to_ascii_lowercase().replace('_', ".");
        let key = strip_clients(key);
        let key = key
            .strip_prefix("properties.")
            .map(str::to_string)
            .unwrap_or(key);
        return match key.as_str() {
            "security.protocol" => Some(Setting::ClientProtocol),
            "bootstrap.servers" => Some(Setting::BootstrapServers),
            _ => None,
        };
    }
    if let Some(rest) = name.strip_prefix("SCHEMA_REGISTRY_KAFKASTORE_") {
        return match decode_env_property(rest).as_str() {
            "security.protocol" => Some(Setting::ClientProtocol),
            "bootstrap.servers" => Some(Setting::BootstrapServers),
            _ => None,
        };
    }
    if let Some(rest) = name.strip_prefix("CONNECT_") {
        return classify_property(&strip_clients(decode_env_property(rest)));
    }
    if let Some(rest) = name.strip_prefix("KSQL_") {
        return classify_property(&decode_env_property(rest));
    }
    if let Some(rest) = name.strip_prefix("KAFKA_") {
        return classify_property(&decode_env_property(rest));
    }
    None
}

/// One `key=value` of a properties file, with the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// Parses Java properties text.
pub fn parse_properties(text: &str) -> Vec<Property> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((index, line)) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
            continue;
        }
        // Join continuation lines: an odd number of trailing backslashes continues.
        let mut logical = trimmed.to_string();
        while ends_with_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_key_value(&logical);
        out.push(Property {
            key: unescape(&key),
            value: unescape(&value),
            line: index + 1,
        });
    }
    out
}

fn ends_with_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

fn split_key_value(line: &str) -> (String, String) {
    let mut key_end = line.len();
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' | ' ' | '\t' | '\u{c}' => {
                key_end = i;
                break;
            }
            _ => {}
        }
    }
    let key = &line[..key_end];
    let mut rest = line[key_end..].trim_start_matches([' ', '\t', '\u{c}']);
    if let Some(r) = rest.strip_prefix(['=', ':']) {
        rest = r.trim_start_matches([' ', '\t', '\u{c}']);
    }
    (key.to_string(), rest.to_string())
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(decoded) => out.push(decoded),
                    None => {
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// `listener.security.protocol.map`: `NAME:PROTOCOL` pairs, names and protocols upper-cased.
pub fn parse_protocol_map(value: &str) -> BTreeMap<String, String> {
    value
        .split(',')
        .filter_map(|pair| {
            let (name, protocol) = pair.split_once(':')?;
            let (name, protocol) = (name.trim(), protocol.trim());
            (!name.is_empty() && !protocol.is_empty())
                .then(|| (name.to_ascii_uppercase(), protocol.to_ascii_uppercase()))
        })
        .collect()
}

/// One entry of `listeners` or `advertised.listeners`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Upper-cased listener name.
    pub name: String,
    pub host: String,
    pub raw: String,
}

impl Listener {
    /// Bound (or advertised) only on the loopback interface.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.host)
    }
}

pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare == "localhost"
        || bare == "::1"
        || bare
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Parses `NAME://host:port,...`; entries without `://` are skipped.
pub fn parse_listeners(value: &str) -> Vec<Listener> {
    value
        .split(',')
        .filter_map(|entry| {
            let entry = entry.trim();
            let (name, address) = entry.split_once("://")?;
            let host = match address.rsplit_once(':') {
                Some((host, _port)) => host,
                None => address,
            };
            Some(Listener {
                name: name.trim().to_ascii_uppercase(),
                host: host.to_string(),
                raw: entry.to_string(),
            })
        })
        .collect()
}

/// The protocol a listener name resolves to: the map's, or the name itself when it is a
/// protocol. `None` when neither (Kafka would refuse to start).
pub fn listener_protocol(name: &str, map: &BTreeMap<String, String>) -> Option<String> {
    let name = name.trim().to_ascii_uppercase();
    map.get(&name)
        .cloned()
        .or_else(|| PROTOCOLS.contains(&name.as_str()).then_some(name))
}

/// The scheme of a bootstrap server entry (`SASL_SSL://kafka:9093` -> `SASL_SSL`).
pub fn bootstrap_scheme(entry: &str) -> Option<String> {
    entry
        .trim()
        .split_once("://")
        .map(|(scheme, _)| scheme.trim().to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_naming_conventions() {
        let cases = [
            ("KAFKA_LISTENERS", Some(Setting::Listeners)),
            (
                "KAFKA_ADVERTISED_LISTENERS",
                Some(Setting::AdvertisedListeners),
            ),
            (
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                Some(Setting::ProtocolMap),
            ),
            (
                "KAFKA_INTER_BROKER_LISTENER_NAME",
                Some(Setting::InterBrokerListenerName),
            ),
            (
                "KAFKA_SECURITY_INTER_BROKER_PROTOCOL",
                Some(Setting::InterBrokerProtocol),
            ),
            ("KAFKA_CFG_LISTENERS", Some(Setting::Listeners)),
            (
                "KAFKA_CFG_LISTENER_SECURITY_PROTOCOL_MAP",
                Some(Setting::ProtocolMap),
            ),
            ("KAFKA_SECURITY_PROTOCOL", Some(Setting::ClientProtocol)),
            ("KAFKA_BOOTSTRAP_SERVERS", Some(Setting::BootstrapServers)),
            (
                "KAFKA_ZOOKEEPER_SSL_CLIENT_ENABLE",
                Some(Setting::ZookeeperSslClientEnable),
            ),
            ("CONNECT_SECURITY_PROTOCOL", Some(Setting::ClientProtocol)),
            (
                "CONNECT_PRODUCER_SECURITY_PROTOCOL",
                Some(Setting::ClientProtocol),
            ),
            ("CONNECT_BOOTSTRAP_SERVERS", Some(Setting::BootstrapServers)),
            (
                "SCHEMA_REGISTRY_KAFKASTORE_SECURITY_PROTOCOL",
                Some(Setting::ClientProtocol),
            ),
            (
                "SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS",
                Some(Setting::BootstrapServers),
            ),
            ("KSQL_SECURITY_PROTOCOL", Some(Setting::ClientProtocol)),
            ("KSQL_BOOTSTRAP_SERVERS", Some(Setting::BootstrapServers)),
            (
                "SPRING_KAFKA_SECURITY_PROTOCOL",
                Some(Setting::ClientProtocol),
            ),
            (
                "SPRING_KAFKA_PROPERTIES_SECURITY_PROTOCOL",
                Some(Setting::ClientProtocol),
            ),
            (
                "SPRING_KAFKA_CONSUMER_PROPERTIES_SECURITY_PROTOCOL",
                Some(Setting::ClientProtocol),
            ),
            (
                "SPRING_KAFKA_BOOTSTRAP_SERVERS",
                Some(Setting::BootstrapServers),
            ),
            (
                "ALLOW_PLAINTEXT_LISTENER",
                Some(Setting::AllowPlaintextListener),
            ),
            ("ALLOW_ANONYMOUS_LOGIN", Some(Setting::AllowAnonymousLogin)),
            ("KAFKA_ZOOKEEPER_PROTOCOL", Some(Setting::ZookeeperProtocol)),
            // Look-alikes that are not Kafka settings.
            ("KAFKA_HEAP_OPTS", None),
            ("PLAINTEXT_LISTENER", None),
            ("APP_ALLOW_PLAINTEXT", None),
            ("MY_KAFKA_SECURITY_PROTOCOL", None),
            ("SECURITY_PROTOCOL", None),
            ("KAFKA_LISTENERS_PLAINTEXT", None),
            ("SPRING_KAFKA_TEMPLATE_DEFAULT_TOPIC", None),
        ];
        for (name, want) in cases {
            assert_eq!(classify_env(name), want, "{name}");
        }
        assert_eq!(decode_env_property("LOG_DIRS"), "log.dirs");
        assert_eq!(
            decode_env_property("CONFLUENT__SUPPORT___X"),
            "confluent_support-x"
        );
    }

    #[test]
    fn properties_files() {
        let text = "# comment\n! also a comment\nlisteners = SSL://:9093,\\\n    PLAINTEXT://:9092\nsecurity.protocol:SASL_SSL\nkey\\ with\\ space value\nempty\n\nsasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\\n  username=\"u\";\nunicode=caf\\u00e9\n";
        let props = parse_properties(text);
        let got: Vec<(&str, &str, usize)> = props
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str(), p.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("listeners", "SSL://:9093,PLAINTEXT://:9092", 3),
                ("security.protocol", "SASL_SSL", 5),
                ("key with space", "value", 6),
                ("empty", "", 7),
                (
                    "sasl.jaas.config",
                    "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\";",
                    9
                ),
                ("unicode", "café", 11),
            ]
        );
    }

    #[test]
    fn listeners_and_maps() {
        let map =
            parse_protocol_map(" internal : plaintext , External:SASL_SSL,CONTROLLER:PLAINTEXT");
        assert_eq!(map["INTERNAL"], "PLAINTEXT");
        assert_eq!(map["EXTERNAL"], "SASL_SSL");
        let listeners = parse_listeners(
            "INTERNAL://:9092, external://0.0.0.0:9094,LOCAL://127.0.0.1:9095,V6://[::1]:9096,bogus",
        );
        let names: Vec<_> = listeners
            .iter()
            .map(|l| (l.name.as_str(), l.is_loopback()))
            .collect();
        assert_eq!(
            names,
            [
                ("INTERNAL", false),
                ("EXTERNAL", false),
                ("LOCAL", true),
                ("V6", true)
            ]
        );
        assert_eq!(
            listener_protocol("internal", &map).as_deref(),
            Some("PLAINTEXT")
        );
        assert_eq!(
            listener_protocol("SSL", &BTreeMap::new()).as_deref(),
            Some("SSL")
        );
        assert_eq!(listener_protocol("CUSTOM", &BTreeMap::new()), None);
        assert_eq!(
            bootstrap_scheme("PLAINTEXT://kafka:9092").as_deref(),
            Some("PLAINTEXT")
        );
        assert_eq!(bootstrap_scheme("kafka:9092"), None);
        assert!(is_true(" Yes ") && is_true("TRUE") && is_true("1") && !is_true("no"));
    }
}
