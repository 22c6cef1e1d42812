// Checks shared by the admission targets: whatever the input, an accepted body gets a response
// kube-apiserver can use (JSON, the v1 envelope, the uid echoed, warnings within its limits).

use serde_json::Value;

pub fn check_reply(request: &[u8], reply: &applyguard::admission::Reply) {
    let review: Value = serde_json::from_slice(&reply.body).expect("response is not JSON");
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    let response = &review["response"];
    assert!(response["allowed"].is_boolean(), "no allowed in {review}");
    // serde_json checks neither UTF-8 nor escapes inside values it skips, so an accepted body
    // may hold invalid bytes in a field applyguard ignores (`userInfo.extra`, unknown keys);
    // compare the uid when the whole body is valid JSON.
    if let Ok(sent) = serde_json::from_slice::<Value>(request) {
        assert_eq!(response["uid"], sent["request"]["uid"], "uid not echoed");
    }
    if let Some(warnings) = response.get("warnings").and_then(Value::as_array) {
        // kube-apiserver keeps warnings whole while they total 4096 runes, and cuts each to 256
        // beyond that: applyguard stays within one of the two, so nothing is cut mid-word.
        let mut total = 0;
        let mut longest = 0;
        for w in warnings {
            let w = w.as_str().expect("warning is a string");
            assert!(!w.chars().any(char::is_control), "control char in {w:?}");
            let runes = w.chars().count();
            total += runes;
            longest = longest.max(runes);
        }
        assert!(
            total <= applyguard::admission::APISERVER_WARNINGS_RUNES
                || longest <= applyguard::admission::APISERVER_WARNING_ITEM_RUNES,
            "warnings total {total} runes, longest {longest}"
        );
    }
    if response["allowed"] == false {
        let code = response["status"]["code"]
            .as_u64()
            .expect("denial has a code");
        assert!(code == 403 || code == 400, "code {code}");
    }
}

/// A JSON object that is not itself an AdmissionReview is tried as the object of a CREATE of
/// each evaluated kind, so mutations reach the rules without first rebuilding the envelope.
pub fn wrapped_reviews(data: &[u8]) -> Vec<Vec<u8>> {
    let Ok(object @ Value::Object(_)) = serde_json::from_slice::<Value>(data) else {
        return Vec::new();
    };
    if object.get("request").is_some() {
        return Vec::new();
    }
    [
        ("", "Pod"),
        ("apps", "Deployment"),
        ("batch", "CronJob"),
        ("", "ConfigMap"),
        ("", "Secret"),
        ("kafka.strimzi.io", "Kafka"),
        ("networking.k8s.io", "Ingress"),
        ("gateway.networking.k8s.io", "Gateway"),
        ("external-secrets.io", "ExternalSecret"),
        ("argoproj.io", "Rollout"),
    ]
    .into_iter()
    .map(|(group, kind)| {
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "fuzz",
                "kind": {"group": group, "version": "v1", "kind": kind},
                "resource": {"group": group, "version": "v1", "resource": "x"},
                "namespace": "shop",
                "operation": "CREATE",
                "userInfo": {},
                "object": object,
            }
        }))
        .expect("serialising a Value cannot fail")
    })
    .collect()
}
