//! The Kafka configuration parsers (Java properties, listeners, protocol maps, environment
//! variable names) and `$(VAR)` expansion, on any text.
#![no_main]

use applyguard::env::expand;
use applyguard::kafka::{
    bootstrap_scheme, classify_env, classify_property, decode_env_property, listener_protocol,
    parse_listeners, parse_properties, parse_protocol_map,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let properties = parse_properties(text);
    let lines = text.lines().count().max(1);
    for property in &properties {
        assert!(property.line >= 1 && property.line <= lines, "{property:?}");
        let _ = classify_property(&property.key);
    }
    let map = parse_protocol_map(text);
    for (name, protocol) in &map {
        assert!(!name.is_empty() && !protocol.is_empty());
    }
    for listener in parse_listeners(text) {
        let _ = listener.is_loopback();
        let _ = listener_protocol(&listener.name, &map);
    }
    let _ = bootstrap_scheme(text);
    for line in text.lines() {
        let _ = classify_env(line);
        if let Some(rest) = line.strip_prefix("KAFKA_") {
            let _ = decode_env_property(rest);
        }
    }
    let decoded = decode_env_property(text);
    assert!(decoded.len() <= text.len() + text.len() / 2 + 1);
    // Expansion: one known name, whose value itself holds a reference (not expanded again).
    let expanded = expand(text, |name| (name == "HOST").then(|| "$(HOST)".to_string()));
    let unknown = expand(text, |_| None);
    // With nothing defined, only `$$` shrinks: never longer than the input.
    assert!(unknown.len() <= text.len(), "{unknown:?}");
    assert!(expanded.len() <= text.len() * 7 + 1);
});
