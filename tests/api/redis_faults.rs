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
