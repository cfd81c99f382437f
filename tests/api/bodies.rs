//! Request bodies are read only after the caller is authorised, within a
//! size limit and `server.body_timeout`: the real binary, attacked the way
//! the outside review did it (many connections announcing a 15 MiB body and
//! sending all but its last byte), answers each with 401 before the body is
//! complete and holds none of it in memory; a body that trickles in after
//! valid credentials gets 408 on every route that takes one.

#![cfg(unix)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{ADMIN_TOKEN, Backend, test_env};
use crate::process::Server;

/// What each connection announces (the review's size).
const ANNOUNCED: usize = 15 * 1024 * 1024;
/// Connections held at once.
const CONNECTIONS: usize = 50;
/// How much the server's resident memory may grow while they are held:
/// buffering them would take `CONNECTIONS × ANNOUNCED` = 750 MiB.
const RSS_GROWTH_BOUND_KIB: u64 = 64 * 1024;

/// Sends `head` and then up to `body_len - 1` bytes of body (never the
/// last one) in 64 KiB chunks, while reading the answer; returns the
/// status code and how many body bytes had been sent when it came.
async fn withhold_last_byte(port: u16, head: String, body_len: usize) -> (u16, usize) {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_err() {
            return wr;
        }
        let chunk = vec![b'x'; 64 * 1024];
        let mut left = body_len - 1;
        while left > 0 {
            let n = left.min(chunk.len());
            if wr.write_all(&chunk[..n]).await.is_err() {
                break;
            }
            counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            left -= n;
        }
        // Hold the connection open, the last byte never sent.
        wr
    });
    let status = read_status(&mut rd).await;
    let at = sent.load(std::sync::atomic::Ordering::Relaxed);
    writer.abort();
    (status, at)
}

/// The status code of the answer on `rd` (0 when the connection closed
/// without one).
async fn read_status(rd: &mut tokio::net::tcp::OwnedReadHalf) -> u16 {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(2).any(|w| w == b"\r\n") {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => return 0,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn head(path: &str, length: usize, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n"
    )
}

/// The routes that take a body from an operator.
const ROUTES: [&str; 4] = [
    "/admin/campaigns",
    "/admin/contacts/16505550101/consent",
    "/admin/contacts/16505550101/messages",
    "/console/api/simulator",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unauthorised_bodies_are_refused_before_they_are_read_and_cost_no_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = test_env(
        &Backend::Embedded(dir.path().join("data")),
        &[("WHATSIFY__SERVER__BODY_TIMEOUT", "60s".to_owned())],
    );
    let server = Server::start(env, None).await;
    // Warm up: one answered request of each kind.
    for route in ROUTES {
        let (status, _) = withhold_last_byte(server.port, head(route, 2, ""), 2).await;
        assert_eq!(status, 401, "{route}");
    }
    let before = server.rss_kib();

    let mut held = Vec::new();
    for i in 0..CONNECTIONS {
        let route = ROUTES[i % ROUTES.len()];
        let port = server.port;
        held.push(tokio::spawn(async move {
            let extra = if i % 2 == 0 {
                "Authorization: Bearer a-guess-that-is-not-the-token\r\n"
            } else {
                ""
            };
            (
                route,
                !extra.is_empty(),
                withhold_last_byte(port, head(route, ANNOUNCED, extra), ANNOUNCED).await,
            )
        }));
    }
    // A bound on correctness, not a speed check: the last byte is never
    // sent, so a server that read the body first would never answer.
    let answers = tokio::time::timeout(
        Duration::from_secs(120),
        futures_util::future::join_all(held),
    )
    .await
    .expect("every connection was answered although no body was complete");
    for answer in answers {
        let (route, guessed, (status, _)) = answer.expect("task");
        if guessed {
            // A wrong token: refused, and after a few, told to wait.
            assert!(
                matches!(status, 401 | 429),
                "{route}: a wrong token got {status}"
            );
        } else {
            assert_eq!(status, 401, "{route}: a caller without credentials");
        }
    }
    let after = server.rss_kib();
    assert!(
        after.saturating_sub(before) < RSS_GROWTH_BOUND_KIB,
        "resident memory grew from {before} KiB to {after} KiB"
    );
    // Still serving.
    let (status, _) = withhold_last_byte(server.port, head(ROUTES[0], 2, ""), 2).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_in_gets_408_on_every_route_that_takes_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = test_env(
        &Backend::Embedded(dir.path().join("data")),
        &[("WHATSIFY__SERVER__BODY_TIMEOUT", "2s".to_owned())],
    );
    let server = Server::start(env, None).await;
    let base = format!("http://127.0.0.1:{}", server.port);
    let (cookie, csrf) = crate::console::sign_in_at(&base).await;
    let bearer = format!("Authorization: Bearer {ADMIN_TOKEN}\r\n");
    let session = format!("Cookie: {cookie}\r\nX-CSRF-Token: {csrf}\r\n");
    let cases = [
        ("/admin/campaigns", bearer.clone()),
        ("/admin/contacts/16505550101/consent", bearer.clone()),
        ("/admin/contacts/16505550101/messages", bearer.clone()),
        ("/admin/campaigns", session.clone()),
        ("/console/api/simulator", session),
        ("/console/sign-in", String::new()),
        ("/webhook", "X-Hub-Signature-256: sha256=00\r\n".to_owned()),
    ];
    for (route, extra) in cases {
        let stream = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .expect("connect");
        let (mut rd, mut wr) = stream.into_split();
        wr.write_all(head(route, 1000, &extra).as_bytes())
            .await
            .expect("head");
        wr.write_all(b"{\"te").await.expect("a few bytes");
        let status = tokio::time::timeout(Duration::from_secs(60), read_status(&mut rd))
            .await
            .unwrap_or_else(|_| panic!("{route}: no answer to a stalled body"));
        assert_eq!(status, 408, "{route}: a body that stalls");
    }
    // An announced body over the limit is refused before it is read.
    let (status, _) = withhold_last_byte(
        server.port,
        head("/console/sign-in", ANNOUNCED, ""),
        ANNOUNCED,
    )
    .await;
    assert_eq!(status, 413, "a sign-in form of 15 MiB");
}
