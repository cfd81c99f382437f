//! Feeds arbitrary text to the opt-out classifier (STOP, START, HELP, MY
//! DATA… in any language the keyword list knows, typed or tapped). It must
//! answer, never panic or hang, and its answer must not depend on case or
//! on the spaces around the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whatsify::privacy::keywords::{Extra, classify, classify_choice};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let extra = Extra::default();
    let plain = classify(&text, &extra);
    let _ = classify_choice(&text, &text, &extra);
    if text.is_ascii() {
        let padded = format!("  {}\t", text.to_ascii_uppercase());
        assert_eq!(classify(&padded, &extra), plain, "case or spaces changed the answer");
    }
});
