//! Deliveries land in the durable inbox once, whole, sealed, on both stores.

use futures_util::future::join_all;
use whatsify::domain::inbound::InboxEvent;
use whatsify::store::Queue;

use crate::both_backends;
use crate::helpers::{Backend, fixture, fixture_names, spawn_app};

async fn every_fixture_is_accepted_and_stored(backend: &Backend) {
    let app = spawn_app(backend).await;
    let mut total = 0;
    for name in fixture_names() {
        let resp = app.post_signed(&fixture(&name)).await;
        assert_eq!(resp.status(), 200, "{name}");
        assert_eq!(resp.text().await.expect("body"), "EVENT_RECEIVED");
        total += 1;
    }
    assert!(total >= 40, "expected the whole fixture set, got {total}");
    // Spot checks: a contact by number, one by user id, and the system queue.
    let ana = app.events(&app.queue_of("16505550101")).await;
    assert!(ana.iter().any(|e| matches!(e, InboxEvent::Message(_))));
    assert!(ana.iter().any(|e| matches!(e, InboxEvent::Status(_))));
    assert!(ana.iter().any(|e| matches!(e, InboxEvent::Preference(_))));
    let chloe_by_username = app
        .events(&app.queue_of_user("FR.71820394857261039485"))
        .await;
    assert_eq!(chloe_by_username.len(), 1);
    let system = app.events(&Queue::System).await;
    assert_eq!(
        system.len(),
        3,
        "value errors, template update, unknown field"
    );
    assert!(app.entries(&Queue::Quarantine).await.is_empty());
    assert!(
        !app.store()
            .ready_contacts(whatsify::store::Lane::Inbox, 100)
            .await
            .expect("ready")
            .is_empty()
    );
}
both_backends!(every_fixture, every_fixture_is_accepted_and_stored);

async fn a_batch_is_handled_whole(backend: &Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        app.post_signed(&fixture("batch_mixed.json")).await.status(),
        200
    );
    let ana = app.events(&app.queue_of("16505550101")).await;
    let bob = app.events(&app.queue_of("16505550102")).await;
    let chloe = app.events(&app.queue_of("16505550103")).await;
    let labels = |v: &[InboxEvent]| v.iter().map(|e| e.label()).collect::<Vec<_>>();
    assert_eq!(labels(&ana), ["message", "message", "status"]);
    assert_eq!(labels(&bob), ["message"]);
    assert_eq!(labels(&chloe), ["status", "preference"]);
    // Ana's two messages keep Meta's order.
    let ids: Vec<String> = ana
        .iter()
        .filter_map(|e| match e {
            InboxEvent::Message(m) => Some(m.message.parse().expect("typed").id),
            _ => None,
        })
        .collect();
    let raw = String::from_utf8(fixture("batch_mixed.json")).expect("utf-8");
    let first = raw.find(&ids[0]).expect("id in fixture");
    let second = raw.find(&ids[1]).expect("id in fixture");
    assert!(first < second, "inbox order follows the delivery");
    let ready = app
        .store()
        .ready_contacts(whatsify::store::Lane::Inbox, 10)
        .await
        .expect("ready");
    assert_eq!(ready.len(), 3);
}
both_backends!(batch, a_batch_is_handled_whole);

async fn the_same_delivery_five_times_is_one_entry(backend: &Backend) {
    let app = spawn_app(backend).await;
    let body = fixture("messages_text.json");
    for _ in 0..5 {
        assert_eq!(app.post_signed(&body).await.status(), 200);
    }
    assert_eq!(app.entries(&app.queue_of("16505550101")).await.len(), 1);
}
both_backends!(
    duplicates_sequential,
    the_same_delivery_five_times_is_one_entry
);

async fn concurrent_duplicates_are_one_entry(backend: &Backend) {
    let app = spawn_app(backend).await;
    let body = fixture("batch_mixed.json");
    let answers = join_all((0..20).map(|_| app.post_signed(&body))).await;
    assert!(answers.iter().all(|r| r.status() == 200));
    assert_eq!(app.entries(&app.queue_of("16505550101")).await.len(), 3);
    assert_eq!(app.entries(&app.queue_of("16505550102")).await.len(), 1);
    assert_eq!(app.entries(&app.queue_of("16505550103")).await.len(), 2);
}
both_backends!(duplicates_concurrent, concurrent_duplicates_are_one_entry);

async fn statuses_deduplicate_on_id_and_status(backend: &Backend) {
    let app = spawn_app(backend).await;
    let sent = fixture("statuses_sent.json");
    let delivered = String::from_utf8(sent.clone())
        .expect("utf-8")
        .replace("\"status\": \"sent\"", "\"status\": \"delivered\"");
    assert!(
        delivered.contains("\"delivered\""),
        "fixture layout changed"
    );
    for body in [&sent, delivered.as_bytes(), &sent, delivered.as_bytes()] {
        assert_eq!(app.post_signed(body).await.status(), 200);
    }
    let events = app.events(&app.queue_of("16505550101")).await;
    let states: Vec<String> = events
        .iter()
        .map(|e| match e {
            InboxEvent::Status(s) => s.status.parse().expect("typed").status.as_str().to_owned(),
            _ => "other".to_owned(),
        })
        .collect();
    assert_eq!(states, ["sent", "delivered"]);
}
both_backends!(status_dedup, statuses_deduplicate_on_id_and_status);

async fn nothing_personal_is_stored_in_clear(backend: &Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        app.post_signed(&fixture("messages_text_reply_context.json"))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post_signed(&fixture("messages_bsuid_only.json"))
            .await
            .status(),
        200
    );
    let secrets: [&[u8]; 4] = [
        b"Yes, 3pm works for me",
        b"16505550102",
        b"Okafor",
        b"FR.71820394857261039485",
    ];
    let raw: Vec<u8> = match backend {
        Backend::Embedded(path) => {
            app.stop().await;
            std::fs::read(path.join("whatsify.redb")).expect("redb file")
        }
        Backend::Cluster { .. } => unimplemented!("the dump reads one Redis node"),
        Backend::Redis { url, prefix } => {
            let client = redis::Client::open(url.as_str()).expect("url");
            let mut c = client.get_connection().expect("connect");
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query(&mut c)
                .expect("keys");
            assert!(!keys.is_empty());
            let mut all = keys.join("\n").into_bytes();
            for k in keys.iter().filter(|k| k.ends_with(":inbox")) {
                let dump: Vec<u8> = redis::cmd("DUMP").arg(k).query(&mut c).expect("dump");
                all.extend(dump);
            }
            all
        }
    };
    assert!(raw.len() > 100);
    for s in secrets {
        assert!(
            !raw.windows(s.len()).any(|w| w == s),
            "{:?} found in clear in the store",
            String::from_utf8_lossy(s)
        );
    }
}
both_backends!(encrypted_at_rest, nothing_personal_is_stored_in_clear);

#[tokio::test]
async fn the_embedded_inbox_survives_a_restart() {
    let b = crate::helpers::embedded();
    let app = spawn_app(&b.backend).await;
    assert_eq!(
        app.post_signed(&fixture("messages_text.json"))
            .await
            .status(),
        200
    );
    let queue = app.queue_of("16505550101");
    app.stop().await;
    drop(app);
    // The redb file is released once the old app is gone; open it again.
    let mut reopened = None;
    for _ in 0..200 {
        match crate::helpers::try_spawn_app(&b.backend, &[]).await {
            Ok(app) => {
                reopened = Some(app);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(25)).await,
        }
    }
    let app = reopened.expect("the store reopens");
    assert_eq!(app.entries(&queue).await.len(), 1);
    // And de-duplication still remembers the message.
    assert_eq!(
        app.post_signed(&fixture("messages_text.json"))
            .await
            .status(),
        200
    );
    assert_eq!(app.entries(&queue).await.len(), 1);
}
