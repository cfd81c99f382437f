//! Feeds arbitrary bytes to the webhook payload parser and, when they
//! parse, splits the notification into inbox events (with the typed
//! message, status and contact models each event is later read with). It
//! must answer with events or an error, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whatsify::config::Key32;
use whatsify::crypto::pseudonym::Pseudonymizer;
use whatsify::webhook::events::{Event, split};
use whatsify::domain::payload::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(notification) = parse(data) else {
        return;
    };
    let pseudo = Pseudonymizer::new(&Key32::new([7; 32]), None);
    for routed in split(notification, &pseudo, &whatsify::config::businesses::Directory::default_only(), 1_800_000_000) {
        if let Event::Message(m) = &routed.event {
            let _ = m.message.parse();
            let _ = m.contact.parse();
        }
        let _ = serde_json::to_vec(&routed.event);
    }
});
