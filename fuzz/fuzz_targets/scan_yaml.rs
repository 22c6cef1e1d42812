//! The scan loader: a YAML or JSON text split into documents, each parsed strictly (duplicate
//! keys rejected) with line numbers relative to the file.
#![no_main]

use applyguard::scan::documents;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.split_inclusive('\n').count().max(1);
    for document in documents(text) {
        assert!(
            document.line >= 1 && document.line <= lines + 1,
            "{document:?}"
        );
        if let Err(error) = &document.content {
            assert!(error.line >= 1, "{error:?}");
        }
    }
});
