//! Image reference classification: the distribution reference grammar plus the placeholder,
//! reserved-host, deny-glob and allow-prefix checks, on any string; and our reference parse
//! against oci-spec's, which it copies except for ASCII-only tags.
#![no_main]

use std::sync::LazyLock;

use applyguard::rules::{ImageVerdict, classify_image, parse_reference};
use globset::{Glob, GlobSet, GlobSetBuilder};
use libfuzzer_sys::fuzz_target;

static DENY: LazyLock<GlobSet> = LazyLock::new(|| {
    let mut builder = GlobSetBuilder::new();
    for pattern in ["docker.io/library/*", "**/*:latest", "registry.internal/**"] {
        builder.add(Glob::new(pattern).expect("valid glob"));
    }
    builder.build().expect("valid glob set")
});

fuzz_target!(|data: &[u8]| {
    let Ok(image) = std::str::from_utf8(data) else {
        return;
    };
    // Differential: on ASCII input our parse must be oci-spec's, field for field.
    if image.is_ascii() {
        let ours = parse_reference(image);
        let theirs = image.parse::<oci_spec::distribution::Reference>();
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(
                (a.registry(), a.repository(), a.tag(), a.digest(), a.whole()),
                (b.registry(), b.repository(), b.tag(), b.digest(), b.whole()),
                "{image:?}"
            ),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{image:?}"),
            _ => panic!("{image:?}: ours {ours:?}, oci-spec {theirs:?}"),
        }
    }
    let plain = classify_image(image, &GlobSet::empty(), &[]);
    assert_ne!(plain, ImageVerdict::OutsideAllowed);
    if image.trim().is_empty() {
        assert_eq!(plain, ImageVerdict::Empty);
    }
    let allow = ["ghcr.io/acme".to_string(), "docker.io/library".to_string()];
    let configured = classify_image(image, &DENY, &allow);
    // The deny and allow lists only add reasons: an image the built-in checks reject stays
    // rejected for the same reason.
    if plain != ImageVerdict::Fine {
        assert_eq!(plain, configured, "{image:?}");
    }
});
