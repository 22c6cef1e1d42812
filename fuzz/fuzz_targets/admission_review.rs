//! AdmissionReview bytes -> parse -> decide -> encoded response, with the default policy and no
//! cluster state: exactly what `POST /validate` runs on a request body.
#![no_main]

use std::sync::LazyLock;

use applyguard::admission::respond;
use applyguard::engine::Engine;
use applyguard::policy::Policy;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

static ENGINE: LazyLock<Engine> =
    LazyLock::new(|| Engine::new(Policy::default()).expect("the default policy builds"));

fuzz_target!(|data: &[u8]| {
    if let Ok(reply) = respond(&ENGINE, data) {
        common::check_reply(data, &reply);
    }
    for review in common::wrapped_reviews(data) {
        if let Ok(reply) = respond(&ENGINE, &review) {
            common::check_reply(&review, &reply);
        }
    }
});
