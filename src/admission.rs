//! AdmissionReview in, AdmissionReview out: parsing with clear errors, and turning a decision
//! into the response kube-apiserver (and `kubectl`) will show.
//!
//! `serve` and `review` both call [`respond`], so the bytes they produce are identical.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use kube::core::DynamicObject;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, META_API_VERSION_V1, META_KIND, Operation,
};
use kube::core::response::StatusSummary;
use serde_json::Value;

use crate::engine::{Decision, Engine, Request};
use crate::exemptions::Caller;
use crate::rules::Violation;
use crate::warnings::one_line;

pub use crate::warnings::{WARNING_MAX_RUNES, WARNINGS_TOTAL_BUDGET, warnings};

/// Why a request body is not a usable AdmissionReview (answered with HTTP 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadReview {
    #[error("request body is not valid JSON: {0}")]
    NotJson(String),
    #[error("request body is not an AdmissionReview: {0}")]
    NotAdmissionReview(String),
    #[error(
        "unsupported AdmissionReview {api_version:?} of kind {kind:?}: applyguard accepts only {META_API_VERSION_V1} AdmissionReview (set admissionReviewVersions: [v1])"
    )]
    WrongVersion { api_version: String, kind: String },
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("AdmissionReview request has an empty uid")]
    EmptyUid,
}

/// A summary of one decision, for the log line and metrics.
#[derive(Debug, Clone)]
pub struct Summary {
    pub uid: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub operation: &'static str,
    pub decision: &'static str,
    pub rules: Vec<&'static str>,
    /// (rule, what became of it: enforce, warn, exempt) per violation, for metrics.
    pub violations: Vec<(&'static str, &'static str)>,
    pub dry_run: bool,
}

/// The encoded response and what it decided.
pub struct Reply {
    pub body: Vec<u8>,
    pub summary: Summary,
}

/// Parses an AdmissionReview request body.
pub fn parse(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, BadReview> {
    let classify = |e: serde_json::Error| {
        if e.is_syntax() || e.is_eof() {
            BadReview::NotJson(e.to_string())
        } else {
            BadReview::NotAdmissionReview(e.to_string())
        }
    };
    // One parse on the way every kube-apiserver request takes. Only when it fails is the
    // envelope read on its own, so a v1beta1 review is reported as such rather than by
    // whichever v1 field it happens to lack.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Envelope {
        #[serde(default)]
        api_version: String,
        #[serde(default)]
        kind: String,
    }
    let wrong_version = |api_version: String, kind: String| {
        (api_version != META_API_VERSION_V1 || kind != META_KIND)
            .then_some(BadReview::WrongVersion { api_version, kind })
    };
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(body) {
        Ok(review) => review,
        Err(err) => {
            let envelope: Envelope = serde_json::from_slice(body).map_err(classify)?;
            return Err(
                wrong_version(envelope.api_version, envelope.kind).unwrap_or_else(|| classify(err))
            );
        }
    };
    if let Some(err) = wrong_version(review.types.api_version.clone(), review.types.kind.clone()) {
        return Err(err);
    }
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| BadReview::NoRequest)?;
    if request.uid.trim().is_empty() {
        return Err(BadReview::EmptyUid);
    }
    Ok(request)
}

fn operation_str(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// Decides one AdmissionReview body and encodes the response.
pub fn respond(engine: &Engine, body: &[u8]) -> Result<Reply, BadReview> {
    let request = parse(body)?;
    Ok(respond_to(engine, &request))
}

/// Decides a parsed request and encodes the response.
pub fn respond_to(engine: &Engine, request: &AdmissionRequest<DynamicObject>) -> Reply {
    let namespace = request
        .object
        .as_ref()
        .and_then(|o| o.metadata.namespace.as_deref())
        .or(request.namespace.as_deref())
        .unwrap_or("")
        .to_string();
    let name = if request.name.is_empty() {
        // On CREATE with generateName the request carries no name yet.
        request
            .object
            .as_ref()
            .and_then(|o| o.metadata.generate_name.clone())
            .map(|g| format!("{g}*"))
            .unwrap_or_default()
    } else {
        request.name.clone()
    };
    let groups = request.user_info.groups.clone().unwrap_or_default();
    let caller = Caller {
        username: request.user_info.username.as_deref().unwrap_or(""),
        groups: &groups,
        annotations: request
            .object
            .as_ref()
            .and_then(|o| o.metadata.annotations.as_ref()),
    };
    let outcome = engine.decide_with(
        &Request {
            group: &request.kind.group,
            kind: &request.kind.kind,
            operation: &request.operation,
            name: &name,
            namespace: &namespace,
            object: request.object.as_ref().map(|o| &o.data),
            old_object: request.old_object.as_ref().map(|o| &o.data),
            sub_resource: request.sub_resource.as_deref(),
        },
        &caller,
    );
    let mut response = AdmissionResponse::from(request);
    let (decision_label, rules, violations) = match outcome {
        Ok(decision) => {
            let subject = format!("{} {}", request.kind.kind, qualified(&namespace, &name));
            let rules = decision_rules(&decision);
            let violations = decision
                .denied_by
                .iter()
                .map(|v| (v.rule.as_str(), "enforce"))
                .chain(decision.warnings.iter().map(|v| (v.rule.as_str(), "warn")))
                .chain(
                    decision
                        .exempted
                        .iter()
                        .map(|e| (e.violation.rule.as_str(), "exempt")),
                )
                .collect();
            let label = if decision.allowed() {
                if decision.warnings.is_empty() && decision.exempted.is_empty() {
                    "allow"
                } else {
                    "warn"
                }
            } else {
                "deny"
            };
            response = apply_decision(response, &decision, &subject);
            (label, rules, violations)
        }
        Err(err) => {
            // kube-apiserver validates objects before webhooks see them, so this only happens
            // for hand-made input; deny with 400 rather than guess.
            response = response.deny(format!(
                "applyguard cannot read this {}: {err}",
                request.kind.kind
            ));
            response.result.code = 400;
            response.result.reason = "BadRequest".to_string();
            response.result.status = Some(StatusSummary::Failure);
            ("invalid", Vec::new(), Vec::new())
        }
    };
    let body = encode(response);
    Reply {
        body,
        summary: Summary {
            uid: request.uid.clone(),
            kind: request.kind.kind.clone(),
            namespace,
            name,
            operation: operation_str(&request.operation),
            decision: decision_label,
            rules,
            violations,
            dry_run: request.dry_run,
        },
    }
}

/// Encodes a response as an AdmissionReview.
pub fn encode(response: AdmissionResponse) -> Vec<u8> {
    // kube's response keeps audit annotations in a HashMap, whose order changes from process to
    // process; sort them so that `review` and `serve` (and two replicas) give identical bytes.
    // Serialising these plain structs cannot fail; an empty body would be rejected by the
    // API server, which then applies failurePolicy, so fail closed without panicking.
    let Ok(mut value) = serde_json::to_value(response.into_review()) else {
        return Vec::new();
    };
    if let Some(Value::Object(annotations)) = value
        .get_mut("response")
        .and_then(|r| r.get_mut("auditAnnotations"))
    {
        let mut entries: Vec<(String, Value)> = std::mem::take(annotations).into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        annotations.extend(entries);
    }
    serde_json::to_vec(&value).unwrap_or_default()
}

fn qualified(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

fn decision_rules(decision: &Decision) -> Vec<&'static str> {
    let mut rules: Vec<&'static str> = decision
        .denied_by
        .iter()
        .chain(&decision.warnings)
        .map(|v| v.rule.as_str())
        .collect();
    rules.sort_unstable();
    rules.dedup();
    rules
}

fn apply_decision(
    mut response: AdmissionResponse,
    decision: &Decision,
    subject: &str,
) -> AdmissionResponse {
    if !decision.allowed() {
        response = response.deny(denial_message(subject, &decision.denied_by));
        response.result.code = 403;
        response.result.reason = "Forbidden".to_string();
        response.result.status = Some(StatusSummary::Failure);
    }
    let lines = warnings(decision);
    if !lines.is_empty() {
        response.warnings = Some(lines);
    }
    response.audit_annotations = audit_annotations(decision);
    response
}

/// The denial message: every violation with its field, value and fix.
pub fn denial_message(subject: &str, violations: &[Violation]) -> String {
    let count = violations.len();
    let plural = if count == 1 { "" } else { "s" };
    let mut message = format!(
        "applyguard denied {}: {count} violation{plural}",
        one_line(subject)
    );
    for (i, v) in violations.iter().enumerate() {
        // kubectl prints the whole message and the audit log keeps it: list enough to fix the
        // object, not an amplified copy of a huge one.
        if i == MAX_LISTED_VIOLATIONS || message.len() > MAX_DENIAL_MESSAGE {
            message.push_str(&format!(
                "\n...and {} more; run applyguard review or scan for the full list",
                count - i
            ));
            break;
        }
        message.push_str(&format!("\n{}. {v}", i + 1));
    }
    message
}

/// At most this many violations are listed in a denial message...
pub const MAX_LISTED_VIOLATIONS: usize = 50;
/// ...and no more once the message reaches this many bytes.
pub const MAX_DENIAL_MESSAGE: usize = 32 * 1024;

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
fn truncate(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let ellipsis = "...";
    let mut end = max - ellipsis.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &text[..end])
}

/// Audit annotations: one key per mode and rule, listing each field and message.
fn audit_annotations(decision: &Decision) -> HashMap<String, String> {
    let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (mode, list) in [("deny", &decision.denied_by), ("warn", &decision.warnings)] {
        for v in list {
            grouped
                .entry(format!("{mode}-{}", v.rule))
                .or_default()
                .push(one_line(&format!("{}: {}", v.path, v.message)));
        }
    }
    for e in &decision.exempted {
        let v = &e.violation;
        grouped
            .entry(format!("exempt-{}", v.rule))
            .or_default()
            .push(one_line(&format!(
                "{}: {} (exempt: {})",
                v.path, v.message, e.exemption
            )));
    }
    for n in &decision.notices {
        grouped
            .entry(format!("info-{}", n.rule))
            .or_default()
            .push(one_line(&format!("{}: {}", n.path, n.message)));
    }
    grouped
        .into_iter()
        .map(|(key, lines)| (key, truncate(lines.join("; "), 8 * 1024)))
        .collect()
}

/// Time since `start` in milliseconds, for log lines.
pub fn elapsed_ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_char_boundaries() {
        let text = "é".repeat(100);
        let cut = truncate(text, 120);
        assert!(cut.len() <= 120 && cut.ends_with("..."));
    }

    #[test]
    fn parse_errors_are_specific() {
        assert!(matches!(parse(b"{not json"), Err(BadReview::NotJson(_))));
        assert!(matches!(
            parse(b"[1,2]"),
            Err(BadReview::NotAdmissionReview(_))
        ));
        assert!(matches!(
            parse(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"1"}}"#),
            Err(BadReview::WrongVersion { .. })
        ));
        assert_eq!(
            parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#).unwrap_err(),
            BadReview::NoRequest
        );
        let err = parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"group":"","version":"v1","kind":"Pod"}}}"#).unwrap_err();
        assert!(err.to_string().contains("uid"), "{err}");
    }
}
