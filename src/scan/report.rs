//! Scan reports: `text` for people, `json` (a stable, documented schema) for scripts, and SARIF
//! 2.1.0 for GitHub code scanning.

use std::collections::BTreeMap;

use clap::ValueEnum;
use serde_json::{Value, json};

use super::{Level, Report};
use crate::rules::RuleId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
    Sarif,
}

/// The version of the JSON report schema; bumped on any incompatible change.
pub const JSON_SCHEMA_VERSION: u32 = 1;

const INFORMATION_URI: &str = "https://github.com/applyguard/applyguard";

pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Text => text(report),
        Format::Json => json(report),
        Format::Sarif => sarif(report),
    }
}

fn object_ref(namespace: &str, kind: &str, name: &str) -> String {
    if kind.is_empty() {
        // A finding about a file rather than an object.
        "-".to_string()
    } else if namespace.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}/{namespace}/{name}")
    }
}

/// One line per finding, `file:line:column kind/namespace/name rule-id path: message (value). Fix:`,
/// then a summary.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    for e in &report.errors {
        match e.line {
            _ if e.file.is_empty() => out.push_str(&format!("error: {}\n", e.message)),
            Some(line) => out.push_str(&format!("{}:{line}: error: {}\n", e.file, e.message)),
            None => out.push_str(&format!("{}: error: {}\n", e.file, e.message)),
        }
    }
    for f in &report.findings {
        let tag = match f.level {
            Level::Enforce => "",
            Level::Warn => " (warn)",
            Level::Notice => " (note)",
            Level::Exempt => " (exempt)",
        };
        // The same detail as the webhook's denial: the message, the offending value, the fix.
        let value = if f.value.is_empty() {
            String::new()
        } else {
            format!(" (value: {:?})", f.value)
        };
        let stop = if value.is_empty() && f.message.ends_with(['.', '?', '!']) {
            ""
        } else {
            "."
        };
        let fix = if f.fix.is_empty() {
            String::new()
        } else {
            format!("{stop} Fix: {}", f.fix)
        };
        let subject = if f.kind.is_empty() {
            // About the file, not an object in it.
            format!("{}{tag}", f.rule)
        } else {
            format!(
                "{} {}{tag} {}",
                object_ref(&f.namespace, &f.kind, &f.name),
                f.rule,
                f.path
            )
        };
        // Audited objects have no file: the object named in the subject is the place.
        let place = if f.file.is_empty() {
            String::new()
        } else {
            format!("{}:{}:{} ", f.file, f.line, f.column)
        };
        out.push_str(&format!(
            "{place}{subject}: {}{value}{fix}\n",
            f.message.replace('\n', " ")
        ));
    }
    if let Some(cluster) = &report.cluster {
        out.push_str(&format!(
            "audited {} object(s) in {cluster} ({} owned by an audited controller, checked through it): {} violation(s) in enforce mode, {} in warn mode, {} note(s), {} error(s)\n",
            report.objects,
            report.controlled,
            report.count(Level::Enforce),
            report.count(Level::Warn),
            report.count(Level::Notice),
            report.errors.len()
        ));
        return out;
    }
    out.push_str(&format!(
        "scanned {} file(s), {} document(s), {} object(s) ({} empty and {} non-Kubernetes document(s) skipped, {} kustomize patch file(s) not evaluated alone): {} violation(s) in enforce mode, {} in warn mode, {} note(s), {} input error(s)\n",
        report.files,
        report.documents,
        report.objects,
        report.skipped_empty,
        report.skipped_not_kubernetes,
        report.skipped_patches,
        report.count(Level::Enforce),
        report.count(Level::Warn),
        report.count(Level::Notice),
        report.errors.len()
    ));
    out
}

/// The JSON report (schema version 1):
///
/// ```text
/// { "version": 1,
///   "summary": { "files", "documents", "objects", "skippedEmpty", "skippedNotKubernetes", "skippedPatches",
///                "enforce", "warn", "notice", "exempt", "errors", "exitCode",
///                and, from `audit` only, "cluster" (the API server's URL), "controlled" },
///   "findings": [ { "file", "line", "apiVersion", "kind", "namespace", "name", "rule",
///                   "level": "enforce" | "warn" | "notice" | "exempt", "path", "value",
///                   "message", "fix" } ],
///   "errors":   [ { "file", "line" (null when the whole file), "message" } ] }
/// ```
pub fn json(report: &Report) -> String {
    let mut value = json!({
        "version": JSON_SCHEMA_VERSION,
        "summary": {
            "files": report.files,
            "documents": report.documents,
            "objects": report.objects,
            "skippedEmpty": report.skipped_empty,
            "skippedNotKubernetes": report.skipped_not_kubernetes,
            "skippedPatches": report.skipped_patches,
            "enforce": report.count(Level::Enforce),
            "warn": report.count(Level::Warn),
            "notice": report.count(Level::Notice),
            "exempt": report.count(Level::Exempt),
            "errors": report.errors.len(),
            "exitCode": report.exit_code(),
        },
        "findings": report.findings,
        "errors": report.errors,
    });
    // Only an audit has these; a scan's summary stays as it was.
    if let Some(cluster) = &report.cluster {
        value["summary"]["cluster"] = json!(cluster);
        value["summary"]["controlled"] = json!(report.controlled);
    }
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

fn rule_description(rule: &str) -> (&'static str, &'static str) {
    match RuleId::parse(rule) {
        Some(RuleId::SecretRef) => (
            "Referenced Secret, key or secret store does not exist",
            "A pod, Ingress or Gateway references a Secret, or a key of a Secret, that does not exist in its namespace and that no ExternalSecret, SealedSecret or Certificate will produce (pods sit in CreateContainerConfigError, ingress controllers serve their default certificate); or an ExternalSecret names a SecretStore or ClusterSecretStore that does not exist, so it produces nothing.",
        ),
        Some(RuleId::PlaceholderImage) => (
            "Placeholder or invalid image",
            "An image comes from a placeholder registry or organisation, carries template leftovers, or is not a valid image reference; it would never pull.",
        ),
        Some(RuleId::RootContainer) => (
            "Container runs, or may run, as root",
            "The effective runAsUser is 0, or it is unset and runAsNonRoot is not true, so the image's user decides.",
        ),
        Some(RuleId::PlaceholderSecret) => (
            "Secret holds a placeholder value",
            "A Secret's stringData or data value is a placeholder (CHANGE_ME, <your-api-key>, ${VAR}, {{ ... }}, xxxx); applied, it replaces the real credential.",
        ),
        Some(RuleId::SecretInUse) => (
            "Secret still read by live workloads",
            "A Secret, or a key of it, is deleted (or the ExternalSecret, SealedSecret or Certificate that produces it is) while workloads still read it without optional: true; their next pods fail with CreateContainerConfigError or stay in ContainerCreating.",
        ),
        Some(RuleId::PlaintextKafka) => (
            "Kafka or ZooKeeper configured for plaintext or anonymous access",
            "A Kafka listener, client or ZooKeeper connection uses PLAINTEXT or SASL_PLAINTEXT (or anonymous access) on the network.",
        ),
        None if rule == super::NOT_IN_KUSTOMIZATION => (
            "Manifest no kustomization includes",
            "The file sits in a directory read as kustomize reads it, but no kustomization lists it, so kustomize does not deploy it; it is not evaluated.",
        ),
        None if rule == super::DUPLICATE_OBJECT => (
            "Object defined more than once",
            "The same group, kind, namespace and name is defined in more than one place in the scanned set; kustomize refuses it and kubectl apply keeps whichever it reads last.",
        ),
        None => (
            "Manifest cannot be used",
            "A document does not parse, has duplicate keys, or holds an object applyguard cannot read; kubectl would reject it.",
        ),
    }
}

/// Rule id for input errors in SARIF, so they show up in code scanning too.
const INVALID_MANIFEST: &str = "invalid-manifest";

/// SARIF 2.1.0: one rule per rule id, results located by file and line.
pub fn sarif(report: &Report) -> String {
    let mut rule_ids: Vec<&str> = RuleId::ALL.iter().map(|r| r.as_str()).collect();
    rule_ids.push(super::DUPLICATE_OBJECT);
    rule_ids.push(super::NOT_IN_KUSTOMIZATION);
    rule_ids.push(INVALID_MANIFEST);
    let index: BTreeMap<&str, usize> = rule_ids.iter().enumerate().map(|(i, r)| (*r, i)).collect();
    let rules: Vec<Value> = rule_ids
        .iter()
        .map(|id| {
            let (short, full) = rule_description(id);
            json!({
                "id": id,
                "name": id,
                "shortDescription": {"text": short},
                "fullDescription": {"text": full},
                "helpUri": format!("{INFORMATION_URI}#rule-{id}"),
                "defaultConfiguration": {"level": "error"},
            })
        })
        .collect();
    let mut results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let level = match f.level {
                Level::Enforce => "error",
                Level::Warn => "warning",
                Level::Notice | Level::Exempt => "note",
            };
            let fix = if f.fix.is_empty() { String::new() } else { format!(" Fix: {}", f.fix) };
            // An audited object is in the cluster, not in a file: its logical location is all.
            let mut location = if f.file.is_empty() {
                json!({})
            } else {
                json!({
                    "physicalLocation": {
                        "artifactLocation": artifact(&f.file),
                        "region": {"startLine": f.line.max(1), "startColumn": f.column.max(1)},
                    },
                })
            };
            let text = if f.kind.is_empty() {
                format!("{}{fix}", f.message)
            } else {
                location["logicalLocations"] = json!([{
                    "fullyQualifiedName": format!("{}.{}", object_ref(&f.namespace, &f.kind, &f.name), f.path),
                    "kind": "member",
                }]);
                format!("{} {}: {}{fix}", object_ref(&f.namespace, &f.kind, &f.name), f.path, f.message)
            };
            json!({
                "ruleId": f.rule,
                "ruleIndex": index.get(f.rule).copied().unwrap_or(0),
                "level": level,
                "message": {"text": text},
                "locations": [location],
                // What the finding is about, not where: code scanning keeps tracking it when
                // lines move, and sees it fixed when it goes.
                "partialFingerprints": {
                    "applyguardFinding/v1": fingerprint(&[f.rule, &f.kind, &f.namespace, &f.name, &f.path]),
                },
            })
        })
        .collect();
    results.extend(report.errors.iter().map(|e| {
        let mut location = if e.file.is_empty() {
            json!({})
        } else {
            json!({"physicalLocation": {"artifactLocation": artifact(&e.file)}})
        };
        if let Some(line) = e.line.filter(|_| !e.file.is_empty()) {
            location["physicalLocation"]["region"] = json!({"startLine": line.max(1)});
        }
        json!({
            "ruleId": INVALID_MANIFEST,
            "ruleIndex": index[INVALID_MANIFEST],
            "level": "error",
            "message": {"text": e.message},
            "locations": [location],
        })
    }));
    let value = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "applyguard",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": INFORMATION_URI,
                "rules": rules,
            }},
            "results": results,
            "columnKind": "unicodeCodePoints",
            "originalUriBaseIds": {
                SRCROOT: {"uri": format!("{}/", file_uri(&working_dir()))},
            },
        }],
    });
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// The base id artifact URIs are relative to: the directory scan ran in.
const SRCROOT: &str = "SRCROOT";

fn working_dir() -> String {
    std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|_| ".".to_string())
}

fn file_uri(absolute: &str) -> String {
    format!("file://{}", uri(absolute))
}

/// A file as a SARIF artifactLocation: relative to SRCROOT when it is under the working
/// directory (what code scanning expects: paths from the repository root), absolute otherwise.
fn artifact(file: &str) -> Value {
    let path = std::path::Path::new(file);
    let cwd = working_dir();
    let relative = if path.is_absolute() {
        path.strip_prefix(&cwd)
            .ok()
            .map(|p| p.display().to_string())
    } else {
        Some(file.to_string())
    };
    match relative {
        Some(rel) if !rel.starts_with("..") => json!({"uri": uri(&rel), "uriBaseId": SRCROOT}),
        _ if path.is_absolute() => json!({"uri": file_uri(file)}),
        _ => json!({"uri": uri(file)}),
    }
}

/// FNV-1a over the parts (a stable hash: the standard library's is not specified to be).
fn fingerprint(parts: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0u8]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// File paths as SARIF artifact URIs: relative paths with forward slashes, percent-encoding
/// the characters a URI reference cannot hold.
fn uri(file: &str) -> String {
    let file = file.strip_prefix("./").unwrap_or(file);
    let mut out = String::with_capacity(file.len());
    for b in file.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            b'\\' => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
