//! Every way a signature can be wrong is refused with 401 before anything
//! is parsed or stored; size and unreadable bodies are handled without loss.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use whatsify::crypto::signature::sign;
use whatsify::domain::inbound::InboxEvent;
use whatsify::domain::payload::MessageKind;
use whatsify::store::Queue;

use crate::helpers::{
    APP_SECRET, PREVIOUS_APP_SECRET, TestApp, embedded, fixture, spawn_app, spawn_app_with,
};

async fn nothing_stored(app: &TestApp) {
    assert!(app.entries(&app.queue_of("16505550101")).await.is_empty());
    assert!(app.entries(&Queue::Quarantine).await.is_empty());
    assert!(app.entries(&Queue::System).await.is_empty());
}

#[tokio::test]
async fn bad_signatures_are_refused_with_401_and_nothing_is_stored() {
    let b = embedded();
    let app = spawn_app(&b.backend).await;
    let body = fixture("messages_text.json");
    let good = sign(APP_SECRET, &body);
    let hex = good.trim_start_matches("sha256=").to_owned();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("empty", Some(String::new())),
        ("no prefix", Some(hex.clone())),
        ("sha1", Some(format!("sha1={hex}"))),
        ("truncated", Some(good[..good.len() - 2].to_owned())),
        ("too long", Some(format!("{good}00"))),
        ("not hex", Some(format!("sha256={}", "g".repeat(64)))),
        ("other secret", Some(sign("another-app-secret-123", &body))),
        ("signed other body", Some(sign(APP_SECRET, b"{}"))),
        ("prefix twice", Some(format!("sha256=sha256={hex}"))),
    ];
    for (name, header) in cases {
        let resp = app.post_raw(body.clone(), header).await;
        assert_eq!(resp.status(), 401, "{name}");
    }
    nothing_stored(&app).await;
}

#[tokio::test]
async fn the_previous_app_secret_is_accepted_while_rotating() {
    let b = embedded();
    let app = spawn_app(&b.backend).await;
    let body = fixture("messages_text.json");
    let resp = app
        .post_raw(body.clone(), Some(sign(PREVIOUS_APP_SECRET, &body)))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(app.entries(&app.queue_of("16505550101")).await.len(), 1);
}

#[tokio::test]
async fn non_ascii_text_is_verified_over_the_raw_bytes_and_reserialised_json_fails() {
    let b = embedded();
    let app = spawn_app(&b.backend).await;
    let raw = fixture("messages_text_non_ascii.json");
    assert!(
        raw.is_ascii(),
        "the fixture carries \\u escapes, as Meta sends"
    );
    let signature = sign(APP_SECRET, &raw);
    // The same JSON, re-serialised: UTF-8 instead of escapes, other spacing.
    let value: serde_json::Value = serde_json::from_slice(&raw).expect("json");
    let reserialised = serde_json::to_vec(&value).expect("json");
    assert_ne!(reserialised, raw);
    let resp = app.post_raw(reserialised, Some(signature.clone())).await;
    assert_eq!(resp.status(), 401);
    nothing_stored(&app).await;

    let resp = app.post_raw(raw, Some(signature)).await;
    assert_eq!(resp.status(), 200);
    let events = app.events(&app.queue_of("16505550101")).await;
    let InboxEvent::Message(m) = &events[0] else {
        panic!("not a message")
    };
    let MessageKind::Text(text) = m.message.parse().expect("typed").kind else {
        panic!("not text")
    };
    assert!(text.body.contains("café crème brûlée"));
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413_and_a_body_at_the_limit_is_read() {
    let b = embedded();
    let app = spawn_app_with(
        &b.backend,
        &[("WHATSIFY__SERVER__MAX_BODY_BYTES", "65536".into())],
    )
    .await;
    let mut big = fixture("messages_text.json");
    // Pad with JSON whitespace: still valid, still signed, just too large.
    big.resize(65_537, b' ');
    let resp = app.post_signed(&big).await;
    assert_eq!(resp.status(), 413);
    big.truncate(65_536);
    let resp = app.post_signed(&big).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(app.entries(&app.queue_of("16505550101")).await.len(), 1);
}

#[tokio::test]
async fn a_chunked_body_without_content_length_is_capped_while_streaming() {
    let b = embedded();
    let app = spawn_app_with(
        &b.backend,
        &[("WHATSIFY__SERVER__MAX_BODY_BYTES", "65536".into())],
    )
    .await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let body = vec![b' '; 200 * 1024];
    let sig = sign(APP_SECRET, &body);
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-Hub-Signature-256: {sig}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    for chunk in body.chunks(16 * 1024) {
        let framed = format!("{:x}\r\n", chunk.len());
        if stream.write_all(framed.as_bytes()).await.is_err()
            || stream.write_all(chunk).await.is_err()
            || stream.write_all(b"\r\n").await.is_err()
        {
            break; // the server may close early, as it should
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn signed_bodies_we_cannot_read_are_quarantined_sealed_and_acknowledged() {
    let b = embedded();
    let app = spawn_app(&b.backend).await;
    let bodies: Vec<Vec<u8>> = vec![
        b"this is not json".to_vec(),
        b"[1, 2, 3]".to_vec(),
        br#"{"object":"page","entry":[]}"#.to_vec(),
        br#"{"object":"whatsapp_business_account","entry":"nope"}"#.to_vec(),
        vec![0xff, 0xfe, 0x00, 0x7b],
        Vec::new(),
    ];
    for body in &bodies {
        let resp = app.post_signed(body).await;
        assert_eq!(resp.status(), 200, "{:?}", String::from_utf8_lossy(body));
    }
    // The same unreadable body again is not quarantined twice.
    assert_eq!(app.post_signed(&bodies[0]).await.status(), 200);
    let kept = app.entries(&Queue::Quarantine).await;
    assert_eq!(kept.len(), bodies.len());
    for (entry, body) in kept.iter().zip(&bodies) {
        if !body.is_empty() {
            assert!(
                !entry
                    .sealed
                    .windows(body.len())
                    .any(|w| w == body.as_slice()),
                "stored in clear"
            );
        }
        let opened = app.open_entry(&Queue::Quarantine, &entry.sealed).await;
        assert_eq!(&opened, body);
    }
    assert_eq!(app.get("/healthz").await.status(), 200);
}

/// Sends `head` (and `body`) on a raw connection; returns what came back.
async fn raw_exchange(app: &TestApp, head: String, body: &[u8]) -> String {
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(20), stream.read(&mut answer))
        .await
        .expect("an answer before the body is complete")
        .expect("read");
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_any_body_is_sent() {
    let b = embedded();
    let app = spawn_app(&b.backend).await;
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Hub-Signature-256: sha256={}\r\nContent-Length: 104857600\r\n\r\n",
        "0".repeat(64)
    );
    // Not one byte of the 100 MB body is sent: the answer comes from the header.
    let answer = raw_exchange(&app, head, b"").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_and_the_server_carries_on() {
    let b = embedded();
    let app = spawn_app_with(
        &b.backend,
        &[("WHATSIFY__SERVER__BODY_TIMEOUT", "1s".into())],
    )
    .await;
    let head = "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n".to_owned();
    let answer = raw_exchange(&app, head, b"{\"object\":").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(
        app.post_signed(&fixture("messages_text.json"))
            .await
            .status(),
        200
    );
}
