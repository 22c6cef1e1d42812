//! AdmissionReview in, AdmissionReview out: parsing with clear errors, and turning a decision
//! into the response kube-apiserver (and `kubectl`) will show.
//!
//! `serve` and `review` both call [`respond`], so the bytes they produce are identical.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use kube::core::DynamicObject;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, META_API_VERSION_V1, META_KIND, Operation,
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
///
/// The body is read in one pass straight into the request's fields. kube's `AdmissionReview`
/// and `DynamicObject` both flatten (`#[serde(flatten)]`), which makes serde buffer the whole
/// body, and then the object again, as generic content before building them: that buffering was
/// half of applyguard's cost per request. The result is the same `AdmissionRequest`.
pub fn parse(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, BadReview> {
    let classify = |e: serde_json::Error| {
        if e.is_syntax() || e.is_eof() {
            BadReview::NotJson(e.to_string())
        } else {
            BadReview::NotAdmissionReview(e.to_string())
        }
    };
    // The envelope on its own, for a body the full parse rejects: a v1beta1 review is reported
    // as such rather than by whichever v1 field it happens to lack.
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
    let review: Review = match serde_json::from_slice(body) {
        Ok(review) => review,
        Err(err) => {
            let envelope: Envelope = serde_json::from_slice(body).map_err(classify)?;
            return Err(
                wrong_version(envelope.api_version, envelope.kind).unwrap_or_else(|| classify(err))
            );
        }
    };
    // kube's AdmissionReview requires both; a missing one is reported with the other as sent.
    let (api_version, kind) = (
        review.api_version.unwrap_or_default(),
        review.kind.unwrap_or_default(),
    );
    if let Some(err) = wrong_version(api_version.clone(), kind.clone()) {
        return Err(err);
    }
    let request = review.request.ok_or(BadReview::NoRequest)?;
    if request.uid.trim().is_empty() {
        return Err(BadReview::EmptyUid);
    }
    Ok(AdmissionRequest {
        types: kube::core::TypeMeta { api_version, kind },
        uid: request.uid,
        kind: request.kind,
        resource: request.resource,
        sub_resource: request.sub_resource,
        request_kind: request.request_kind,
        request_resource: request.request_resource,
        request_sub_resource: request.request_sub_resource,
        name: request.name,
        namespace: request.namespace,
        operation: request.operation,
        user_info: request.user_info,
        object: request.object.map(|o| o.0),
        old_object: request.old_object.map(|o| o.0),
        dry_run: request.dry_run,
        options: request.options,
    })
}

/// An AdmissionReview as kube-apiserver sends it, without flattening (see [`parse`]).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<ReviewRequest>,
}

/// kube's `AdmissionRequest` fields, with the same names, defaults and required fields.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewRequest {
    uid: String,
    kind: kube::core::GroupVersionKind,
    resource: kube::core::GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    request_kind: Option<kube::core::GroupVersionKind>,
    #[serde(default)]
    request_resource: Option<kube::core::GroupVersionResource>,
    #[serde(default)]
    request_sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    user_info: k8s_openapi::api::authentication::v1::UserInfo,
    object: Option<Object>,
    old_object: Option<Object>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    options: Option<k8s_openapi::apimachinery::pkg::runtime::RawExtension>,
}

/// A `DynamicObject` read as a JSON map in one pass, then split as kube splits it: `apiVersion`
/// and `kind` (the type fields when both are strings), `metadata` (default when absent), and
/// every other key. `one_pass_parse_reads_what_kube_reads` holds the two to the same result.
struct Object(DynamicObject);

impl<'de> serde::Deserialize<'de> for Object {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = serde_json::Map::<String, Value>::deserialize(deserializer)?;
        let metadata = match map.remove("metadata") {
            Some(metadata) => serde_json::from_value(metadata).map_err(D::Error::custom)?,
            None => Default::default(),
        };
        // As serde's flatten does for kube's `Option<TypeMeta>`: the type keys are taken in turn
        // (apiVersion first, as clients write it) until one is not a string; the keys after that
        // one stay with the rest. They are the type fields only when both are strings.
        let api_version = map.remove("apiVersion");
        let kind = match api_version {
            Some(Value::String(_)) | None => map.remove("kind"),
            Some(_) => None,
        };
        let types = match (api_version, kind) {
            (Some(Value::String(api_version)), Some(Value::String(kind))) => {
                Some(kube::core::TypeMeta { api_version, kind })
            }
            _ => None,
        };
        Ok(Object(DynamicObject {
            types,
            metadata,
            data: Value::Object(map),
        }))
    }
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
        // A DELETE carries the object only as oldObject: its annotations exempt it.
        annotations: request
            .object
            .as_ref()
            .or(request.old_object.as_ref())
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
///
/// Written in one pass, with the keys in sorted order (as `serde_json::Value`'s map would put
/// them, which is how the bytes were defined before): audit annotations from a sorted map, since
/// kube keeps them in a `HashMap` whose order changes from process to process, so that `review`
/// and `serve` (and two replicas) give identical bytes. applyguard never sets a patch.
/// Serialising these plain structs cannot fail; an empty body would be rejected by the API
/// server, which then applies failurePolicy, so fail closed without panicking.
pub fn encode(response: AdmissionResponse) -> Vec<u8> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Review<'a> {
        api_version: &'a str,
        kind: &'a str,
        response: Response<'a>,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Response<'a> {
        allowed: bool,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        audit_annotations: BTreeMap<&'a str, &'a str>,
        /// The Status object's keys sorted too: it is small, so through a `Value`.
        status: Value,
        uid: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        warnings: Option<&'a [String]>,
    }
    let Ok(status) = serde_json::to_value(&response.result) else {
        return Vec::new();
    };
    let review = Review {
        api_version: &response.types.api_version,
        kind: &response.types.kind,
        response: Response {
            allowed: response.allowed,
            audit_annotations: response
                .audit_annotations
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            status,
            uid: &response.uid,
            warnings: response.warnings.as_deref(),
        },
    };
    serde_json::to_vec(&review).unwrap_or_default()
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

    /// kube's own types, the way `parse` read bodies before it read them in one pass.
    fn parse_with_kube(body: &[u8]) -> Option<AdmissionRequest<DynamicObject>> {
        let review: kube::core::admission::AdmissionReview<DynamicObject> =
            serde_json::from_slice(body).ok()?;
        review.try_into().ok()
    }

    fn same_request(a: &AdmissionRequest<DynamicObject>, b: &AdmissionRequest<DynamicObject>) {
        assert_eq!(a.types, b.types);
        assert_eq!(
            serde_json::to_value(a).unwrap(),
            serde_json::to_value(b).unwrap()
        );
        for (x, y) in [(&a.object, &b.object), (&a.old_object, &b.old_object)] {
            assert_eq!(x.as_ref().map(|o| &o.types), y.as_ref().map(|o| &o.types));
            assert_eq!(x.as_ref().map(|o| &o.data), y.as_ref().map(|o| &o.data));
        }
    }

    #[test]
    fn one_pass_parse_reads_what_kube_reads() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/admission");
        let mut bodies: Vec<Vec<u8>> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        assert!(bodies.len() >= 10);
        // The edges of the object's split: no metadata, type fields missing or not strings,
        // an old object, options, a dry run.
        let request = |object: Value| {
            serde_json::to_vec(&serde_json::json!({
                "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {
                    "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "operation": "UPDATE", "userInfo": {"username": "a", "groups": ["g"]},
                    "object": object.clone(), "oldObject": object, "dryRun": true,
                    "options": {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"}
                }
            }))
            .unwrap()
        };
        for object in [
            serde_json::json!({"spec": {"containers": []}}),
            serde_json::json!({"apiVersion": "v1", "spec": {}}),
            serde_json::json!({"apiVersion": 5, "kind": "Pod", "metadata": {"name": "p"}}),
            serde_json::json!({"apiVersion": "v1", "kind": 7}),
            serde_json::json!({"kind": "Pod", "spec": {}}),
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": {"a": "b"}}, "status": {}}),
        ] {
            bodies.push(request(object));
        }
        for body in &bodies {
            let ours = parse(body).expect("parses");
            let theirs = parse_with_kube(body).expect("kube parses");
            same_request(&ours, &theirs);
        }
        // What kube refuses, it still refuses: annotations must be strings.
        let bad = request(serde_json::json!({"metadata": {"annotations": {"a": 1}}}));
        assert!(parse_with_kube(&bad).is_none());
        assert!(matches!(parse(&bad), Err(BadReview::NotAdmissionReview(_))));
    }

    /// The way `encode` wrote responses before it wrote them in one pass.
    fn encode_through_value(response: AdmissionResponse) -> Vec<u8> {
        let mut value = serde_json::to_value(response.into_review()).unwrap();
        if let Some(Value::Object(annotations)) = value
            .get_mut("response")
            .and_then(|r| r.get_mut("auditAnnotations"))
        {
            let mut entries: Vec<(String, Value)> =
                std::mem::take(annotations).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            annotations.extend(entries);
        }
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn one_pass_encoding_writes_the_same_bytes() {
        let request = parse_with_kube(
            &std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/admission/deployment-create-denied.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let allowed = AdmissionResponse::from(&request);
        let mut warned = AdmissionResponse::from(&request);
        warned.warnings = Some(vec!["a \"quoted\" warning".into(), "é".into()]);
        warned.audit_annotations = (0..20)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        let mut denied = AdmissionResponse::from(&request).deny("no\nway");
        denied.result.code = 403;
        denied.result.reason = "Forbidden".to_string();
        denied.result.status = Some(StatusSummary::Failure);
        denied.audit_annotations = [("deny-x".to_string(), "y".to_string())].into();
        let invalid = AdmissionResponse::invalid("bad");
        for response in [allowed, warned, denied, invalid] {
            assert_eq!(
                String::from_utf8(encode(response.clone())).unwrap(),
                String::from_utf8(encode_through_value(response)).unwrap()
            );
        }
    }

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
