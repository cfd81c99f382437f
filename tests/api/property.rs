//! Property: whatever bytes arrive with whatever signature header, the
//! answer is 200 (stored or quarantined), 401 (bad signature) or 413 (too
//! large), and the server stays up.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use whatsify::crypto::signature::sign;

use crate::helpers::{APP_SECRET, embedded, fixture, fixture_names, spawn_app_with};

const MAX: usize = 4096;

#[derive(Debug, Clone)]
enum Header {
    None,
    Garbage(String),
    Valid,
    ValidForOtherBody,
}

fn bodies() -> impl Strategy<Value = Vec<u8>> {
    let names = fixture_names();
    let fixtures: Vec<Vec<u8>> = names.iter().map(|n| fixture(n)).collect();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..(MAX + 600)),
        // A real fixture with one byte changed: mostly valid JSON of odd shape.
        (0..fixtures.len(), any::<prop::sample::Index>(), any::<u8>()).prop_map(
            move |(i, at, b)| {
                let mut body = fixtures[i].clone();
                let at = at.index(body.len());
                body[at] = b;
                body
            }
        ),
        prop::string::string_regex(r#"[{}\[\]",:0-9a-z ]{0,300}"#)
            .expect("regex")
            .prop_map(String::into_bytes),
    ]
}

fn headers() -> impl Strategy<Value = Header> {
    prop_oneof![
        Just(Header::None),
        prop::string::string_regex("[!-~]{0,90}")
            .expect("regex")
            .prop_map(Header::Garbage),
        prop::string::string_regex("sha256=[0-9a-f]{0,70}")
            .expect("regex")
            .prop_map(Header::Garbage),
        Just(Header::Valid),
        Just(Header::ValidForOtherBody),
    ]
}

#[test]
fn any_body_with_any_header_gets_200_401_or_413_and_never_crashes_the_server() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let b = embedded();
    let app = rt.block_on(spawn_app_with(
        &b.backend,
        &[("WHATSIFY__SERVER__MAX_BODY_BYTES", MAX.to_string())],
    ));
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(bodies(), headers()), |(body, header)| {
            let signed = matches!(header, Header::Valid);
            let value = match &header {
                Header::None => None,
                Header::Garbage(s) => Some(s.clone()),
                Header::Valid => Some(sign(APP_SECRET, &body)),
                Header::ValidForOtherBody => Some(sign(APP_SECRET, b"{\"object\":\"other\"}")),
            };
            let too_large = body.len() > MAX;
            let status = rt.block_on(app.post_raw(body, value)).status().as_u16();
            let expected = if too_large {
                413
            } else if signed {
                200
            } else {
                401
            };
            prop_assert_eq!(status, expected);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let health = rt.block_on(app.get("/healthz")).status();
    assert_eq!(health, 200);
}

/// Property: any multiset of deliveries (each message repeated, batched
/// with others, in any order, as Meta's retries and batching produce) is
/// stored as exactly one inbox entry per message id, per contact.
#[test]
fn any_delivery_multiset_gives_one_entry_per_message_id() {
    use crate::helpers::spawn_app;
    use whatsify::domain::inbound::InboxEvent;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut runner = TestRunner::new(Config {
        cases: 12,
        failure_persistence: None,
        ..Config::default()
    });
    let contacts = ["16505559101", "16505559102", "16505559103"];
    // (message index 0..9, copies 1..3), and how the copies are grouped
    // into deliveries (1..3 messages each), shuffled.
    let strategy = (
        prop::collection::vec((0usize..9, 1usize..4), 1..10),
        1usize..4,
        any::<u64>(),
    );
    runner
        .run(&strategy, |(picks, per_delivery, seed)| {
            let b = embedded();
            let app = rt.block_on(spawn_app(&b.backend));
            let message = |i: usize| {
                let wa = contacts[i % contacts.len()];
                serde_json::json!({
                    "from": wa, "id": format!("wamid.MS{seed:016x}{i}"),
                    "timestamp": whatsify::clock::now_secs().to_string(),
                    "type": "text", "text": { "body": format!("hello {i}") },
                })
            };
            let mut copies: Vec<usize> = picks
                .iter()
                .flat_map(|(i, n)| std::iter::repeat_n(*i, *n))
                .collect();
            // A deterministic shuffle from the seed.
            let mut s = seed | 1;
            for k in (1..copies.len()).rev() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                copies.swap(k, (s % (k as u64 + 1)) as usize);
            }
            for group in copies.chunks(per_delivery) {
                let body = serde_json::to_vec(&serde_json::json!({
                    "object": "whatsapp_business_account",
                    "entry": [{ "id": "240017555501234", "changes": [{ "field": "messages", "value": {
                        "messaging_product": "whatsapp",
                        "metadata": { "display_phone_number": "15550001111", "phone_number_id": "106540352242922" },
                        "contacts": contacts.iter().map(|w| serde_json::json!({"profile": {"name": "P"}, "wa_id": w})).collect::<Vec<_>>(),
                        "messages": group.iter().map(|i| message(*i)).collect::<Vec<_>>(),
                    }}]}]
                }))
                .expect("json");
                let status = rt.block_on(app.post_signed(&body)).status().as_u16();
                prop_assert_eq!(status, 200);
            }
            for (c, wa) in contacts.iter().enumerate() {
                let mut want: Vec<String> = picks
                    .iter()
                    .map(|(i, _)| *i)
                    .filter(|i| i % contacts.len() == c)
                    .map(|i| format!("wamid.MS{seed:016x}{i}"))
                    .collect();
                want.sort();
                want.dedup();
                let mut got: Vec<String> = rt
                    .block_on(app.events(&app.queue_of(wa)))
                    .iter()
                    .filter_map(|e| match e {
                        InboxEvent::Message(m) => m.message.parse().ok().map(|t| t.id),
                        _ => None,
                    })
                    .collect();
                got.sort();
                prop_assert_eq!(got, want, "contact {}", wa);
            }
            rt.block_on(app.stop());
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
