//! Inputs the fuzzers (fuzz/, `make fuzz`) found, replayed through the public API.

use applyguard::admission::respond;
use applyguard::engine::Engine;
use applyguard::policy::Policy;
use serde_json::Value;

/// admission_review: invalid UTF-8 (or a lone surrogate escape) inside a key of `userInfo` that
/// applyguard does not know. serde_json validates neither UTF-8 nor escapes in values it skips,
/// so the body is accepted; the answer must still be a valid JSON AdmissionReview with the uid
/// echoed. kube-apiserver never sends such bytes; what matters is that nothing invalid is
/// copied into the answer and nothing panics.
#[test]
fn invalid_text_in_an_ignored_field_gets_a_valid_answer() {
    let template = br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"e007","kind":{"group":"","version":"v1","kind":"ConfigMap"},"resource":{"group":"","version":"v1","resource":"configmaps"},"operation":"CREATE","userInfo":{"unknown":{"k":"2@Z"}},"object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"b"}}}}"#;
    let with = |replacement: &[u8]| {
        let at = template.iter().position(|b| *b == b'@').expect("marker");
        [&template[..at], replacement, &template[at + 1..]].concat()
    };
    let engine = Engine::new(Policy::default()).expect("default policy");
    for input in [with(&[0xce, 0xc5, 0xcb, 0xc4]), with(br"\udc00")] {
        assert!(serde_json::from_slice::<Value>(&input).is_err());
        let reply = respond(&engine, &input).expect("accepted");
        let answer: Value = serde_json::from_slice(&reply.body).expect("answer is JSON");
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["response"]["uid"], "e007");
        assert_eq!(answer["response"]["allowed"], true);
    }
}
