//! Image reference classification: the distribution reference grammar plus the placeholder,
//! reserved-host, deny-glob and allow-prefix checks, on any string.
#![no_main]

use std::sync::LazyLock;

use applyguard::rules::{ImageVerdict, classify_image};
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
