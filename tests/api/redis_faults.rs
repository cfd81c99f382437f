//! When Redis is down, the webhook answers 503 (Meta retries), readiness
//! fails, the process stays up, and service resumes when Redis is back.

use std::time::Duration;

use crate::helpers::{Backend, RedisServer, fixture, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_while_redis_is_down_gets_503_and_is_stored_when_it_is_back() {
    let mut server = RedisServer::start();
    let backend = Backend::Redis {
        url: server.url(),
        prefix: "faults:".into(),
    };
    let app = spawn_app(&backend).await;
    assert_eq!(
        app.post_signed(&fixture("messages_text.json"))
            .await
            .status(),
        200
    );

    server.stop();
    let body = fixture("messages_image.json");
    let resp = app.post_signed(&body).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(app.get("/readyz").await.status(), 503);
    assert_eq!(app.get("/healthz").await.status(), 200);

    server.restart();
    // Meta retries the same delivery; once Redis is back it is stored.
    let mut status = 0;
    for _ in 0..100 {
        status = app.post_signed(&body).await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(app.entries(&app.queue_of("16505550102")).await.len(), 1);
}

/// Redis killed (SIGKILL) and restarted while 100 conversations are under
/// way: the webhook answers 503 while it is down (Meta retries), nothing
/// acknowledged is lost (Redis runs with `appendfsync always`), and every
/// message is answered once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_loses_nothing_acknowledged() {
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use futures_util::StreamExt as _;

    use crate::conversation::delivery;
    use crate::graph::FakeGraph;

    let mut server = RedisServer::start_durable();
    let backend = Backend::Redis {
        url: server.url(),
        prefix: "faults:".into(),
    };
    let graph = FakeGraph::start().await;
    let app = crate::helpers::spawn_app_running(
        &backend,
        &[
            ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
            ("WHATSIFY__OUTBOX__MARK_READ", "false".into()),
            ("WHATSIFY__OUTBOX__RETRY_BASE", "50ms".into()),
            ("WHATSIFY__OUTBOX__RETRY_CAP", "500ms".into()),
        ],
        4,
    )
    .await;
    let contacts: Vec<String> = (0..100).map(|i| format!("1555040{i:04}")).collect();
    let bodies: Vec<Vec<u8>> = (0..2)
        .flat_map(|n| {
            contacts.iter().map(move |w| {
                delivery(
                    w,
                    "Load",
                    &format!("wamid.RK{w}x{n}"),
                    serde_json::json!({"type": "text", "text": {"body": "hi"}}),
                )
            })
        })
        .collect();
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let post_all = {
        let (app_url, client) = (format!("{}/webhook", app.address), app.client.clone());
        let (acknowledged, refused) = (acknowledged.clone(), refused.clone());
        async move {
            futures_util::stream::iter(bodies.iter())
                .for_each_concurrent(8, |body| {
                    let (client, url) = (client.clone(), app_url.clone());
                    let (acknowledged, refused) = (acknowledged.clone(), refused.clone());
                    async move {
                        let deadline = Instant::now() + Duration::from_secs(60);
                        loop {
                            let status = client
                                .post(&url)
                                .header("Content-Type", "application/json")
                                .header(
                                    "X-Hub-Signature-256",
                                    whatsify::crypto::signature::sign(
                                        crate::helpers::APP_SECRET,
                                        body,
                                    ),
                                )
                                .body(body.clone())
                                .send()
                                .await
                                .map(|r| r.status().as_u16())
                                .unwrap_or(0);
                            if status == 200 {
                                acknowledged.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                            assert!(matches!(status, 503 | 0), "webhook answered {status}");
                            refused.fetch_add(1, Ordering::SeqCst);
                            assert!(Instant::now() < deadline, "not taken within 60 s");
                            // Meta retries later; here, soon.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                })
                .await;
        }
    };
    let posting = tokio::spawn(post_all);
    // Kill Redis once part of the load is in, keep it down a moment.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.load(Ordering::SeqCst) < 60 {
        assert!(Instant::now() < deadline, "the load did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.stop();
    let at_kill = acknowledged.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "the process stays up"
    );
    server.restart();
    posting.await.expect("posting");
    assert_eq!(acknowledged.load(Ordering::SeqCst), 200);
    assert!(
        refused.load(Ordering::SeqCst) > 0,
        "nothing was refused while Redis was down"
    );
    // Every message answered: a text and the menu for each "hi", after
    // the privacy notice to each of the 100 new contacts, once.
    let deadline = Instant::now() + Duration::from_secs(90);
    let jobs = |sent: &[crate::graph::Sent]| -> HashSet<String> {
        sent.iter()
            .filter_map(|s| {
                s.body["biz_opaque_callback_data"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    };
    while jobs(&graph.sent()).len() < 500 {
        assert!(
            Instant::now() < deadline,
            "{} distinct replies of 500 after Redis came back",
            jobs(&graph.sent()).len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = graph.sent();
    let mut per: HashMap<String, usize> = HashMap::new();
    for s in &sent {
        *per.entry(s.body["to"].as_str().unwrap_or("").to_owned())
            .or_default() += 1;
    }
    let duplicates = sent.len() - jobs(&sent).len();
    eprintln!(
        "Redis killed after {at_kill} of 200 webhooks: {} refused while down, {} replies, {duplicates} duplicates",
        refused.load(Ordering::SeqCst),
        sent.len()
    );
    assert_eq!(jobs(&sent).len(), 500, "exactly the expected replies");
    assert_eq!(per.len(), 100);
    let notices: HashSet<String> = sent
        .iter()
        .filter(|s| crate::graph::is_notice(&s.body))
        .filter_map(|s| s.body["to"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(notices.len(), 100, "a notice to each contact");
    // A send whose result could not be written while Redis was down is
    // sent again: at most one per sender in flight at the kill.
    assert!(duplicates <= 4, "{duplicates} duplicates");
}
