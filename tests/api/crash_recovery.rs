//! Recovery after `kill -9`: the replies a killed process held are sent
//! within a few seconds of the restarted process being ready, not after a
//! long lease (issue 18, point 6).

#![cfg(unix)]

use std::time::{Duration, Instant};

use crate::conversation::delivery;
use crate::crash::{Binary, Logs, distinct_jobs, hi, kinds_by_recipient, post_until_taken};
use crate::graph::FakeGraph;
use crate::helpers::{TestBackend, embedded, free_port, redis, test_env};

/// Customers whose replies are queued while the Graph API hangs: each
/// new customer's "hi" gets the privacy notice and two replies (a text and
/// the menu), 30 in all.
const CUSTOMERS: usize = 10;
const REPLIES: usize = 3 * CUSTOMERS;
/// How long after the new process is ready every reply must have arrived.
const AFTER_READY: Duration = Duration::from_secs(5);

/// Waits (bounded) until `/readyz` answers 200.
async fn ready(client: &reqwest::Client, bin: &Binary, logs: &Logs) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(bin.url("/readyz")).send().await
            && r.status() == 200
        {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "not ready within 30 s{}",
            logs.tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Graph API takes requests and never answers, so every customer's
/// first reply is in flight, its outbox held by a sender; the process is
/// killed there, and restarted at once with the Graph API answering. Once
/// the new process has been ready for 5 s, all 30 replies have arrived,
/// each once (the requests in flight at the kill were never answered).
async fn held_replies_go_out_soon_after_a_restart(b: TestBackend) {
    let graph = FakeGraph::start().await;
    graph.set_delay(Some(Duration::from_secs(3600)));
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let env = test_env(
        &b.backend,
        &[
            ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
            ("WHATSIFY__OUTBOX__MESSAGES_PER_SECOND", "1000".into()),
            ("WHATSIFY__OUTBOX__MARK_READ", "false".into()),
        ],
    );
    let mut logs = Logs::default();
    let mut bin = Binary::start(dir.path(), port, &env, &mut logs).await;
    let client = reqwest::Client::new();
    for i in 0..CUSTOMERS {
        let body = delivery(
            &format!("15550170{i:03}"),
            "Held",
            &format!("wamid.HELD{i:03}"),
            hi(),
        );
        post_until_taken(&client, &bin.url("/webhook"), &body).await;
    }
    // Every customer's first reply is in flight: their outboxes are held.
    let deadline = Instant::now() + Duration::from_secs(30);
    while graph.in_flight() < CUSTOMERS {
        assert!(
            Instant::now() < deadline,
            "{} requests in flight, not {CUSTOMERS}{}",
            graph.in_flight(),
            logs.tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Held a while, so the leases have been renewed at least once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    bin.kill_9();
    graph.set_delay(None);
    let bin = Binary::start(dir.path(), port, &env, &mut logs).await;
    let ready_at = ready(&client, &bin, &logs).await;
    // A bound on correctness: what has arrived 5 s after readiness.
    while distinct_jobs(&graph.sent()) < REPLIES && ready_at.elapsed() < AFTER_READY {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arrived = distinct_jobs(&graph.sent());
    let took = ready_at.elapsed();
    // Anything sent twice shows up here.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = graph.sent();
    eprintln!(
        "kill -9 with {CUSTOMERS} outboxes held: {arrived} of {REPLIES} replies {:.1} s after \
         the new process was ready, {} accepted in all",
        took.as_secs_f64(),
        sent.len()
    );
    assert_eq!(
        arrived,
        REPLIES,
        "replies missing 5 s after the restarted process was ready{}",
        logs.tail()
    );
    assert_eq!(sent.len(), REPLIES, "a reply accepted twice{}", logs.tail());
    let by = kinds_by_recipient(&sent);
    assert_eq!(by.len(), CUSTOMERS);
    for (to, kinds) in &by {
        assert_eq!(
            kinds,
            &["notice", "text", "interactive"],
            "order of the replies to {to}"
        );
    }
    graph.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_outboxes_held_recovers_within_seconds_on_redis() {
    held_replies_go_out_soon_after_a_restart(redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_outboxes_held_recovers_within_seconds_embedded() {
    held_replies_go_out_soon_after_a_restart(embedded()).await;
}
