//! Feeds arbitrary bytes to the flow loader and validator: one or two
//! "files" (split at the first NUL byte), as UTF-8 (lossy). It must answer
//! with flows or with errors, never panic or hang.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(2, '\0');
    let mut sources = Vec::new();
    for (i, part) in parts.by_ref().enumerate() {
        sources.push((PathBuf::from(format!("fuzz{i}.yaml")), part.to_owned()));
    }
    let _ = whatsify::flow::validate::compile(&sources);
});
