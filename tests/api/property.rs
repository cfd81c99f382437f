//! Property: whatever bytes arrive with whatever signature header, the
//! answer is 200 (stored or quarantined), 401 (bad signature) or 413 (too
//! large), and the server stays up.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use whatsify::webhook::signature::sign;

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
