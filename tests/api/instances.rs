//! Two server instances sharing one Redis de-duplicate together.

use futures_util::future::join_all;

use crate::helpers::{fixture, redis, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_payload_to_two_instances_is_stored_once() {
    let b = redis();
    let one = spawn_app(&b.backend).await;
    let two = spawn_app(&b.backend).await;
    let body = fixture("batch_mixed.json");
    let answers = join_all((0..10).map(|i| {
        let app = if i % 2 == 0 { &one } else { &two };
        app.post_signed(&body)
    }))
    .await;
    assert!(answers.iter().all(|r| r.status() == 200));
    for app in [&one, &two] {
        assert_eq!(app.entries(&app.queue_of("16505550101")).await.len(), 3);
        assert_eq!(app.entries(&app.queue_of("16505550102")).await.len(), 1);
        assert_eq!(app.entries(&app.queue_of("16505550103")).await.len(), 2);
    }
}
