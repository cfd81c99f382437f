//! Conversations end to end: signed webhooks in, the flows run by the
//! workers, replies out through the sender to the fake Graph API.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;
use whatsify::domain::profile::ContactView;
use whatsify::flow::transcript::{Conversation, describe as describe_effect};

use crate::both_backends;
use crate::graph::{FakeGraph, NOTICE, describe};
use crate::helpers::{Backend, TestApp, fresh_fixture, spawn_app_running};

async fn running(backend: &Backend, graph: &FakeGraph, workers: usize) -> TestApp {
    spawn_app_running(
        backend,
        &[("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone())],
        workers,
    )
    .await
}

/// A delivery with one message from `wa_id`.
pub fn delivery(wa_id: &str, name: &str, id: &str, message: serde_json::Value) -> Vec<u8> {
    let mut m = message;
    m["from"] = json!(wa_id);
    m["id"] = json!(id);
    m["timestamp"] = json!(whatsify::clock::now_secs().to_string());
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "240017555501234", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550001111", "phone_number_id": "106540352242922" },
            "contacts": [{ "profile": { "name": name }, "wa_id": wa_id }],
            "messages": [m]
        }}]}]
    }))
    .expect("json")
}

fn text(body: &str) -> serde_json::Value {
    json!({ "type": "text", "text": { "body": body } })
}

fn button_reply(id: &str, title: &str) -> serde_json::Value {
    json!({ "type": "interactive", "interactive": { "type": "button_reply", "button_reply": { "id": id, "title": title } } })
}

async fn a_conversation_runs_from_webhook_to_graph_api(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = running(backend, &graph, 2).await;
    assert_eq!(
        app.post_signed(&fresh_fixture("messages_text.json"))
            .await
            .status(),
        200
    );
    // A new contact: the privacy notice, then the flows' answer.
    let sent = graph.wait_for(3).await;
    let lines: Vec<String> = sent.iter().map(|s| describe(&s.body)).collect();
    assert_eq!(
        lines,
        [
            NOTICE,
            "text: Hi Ana Pérez 👋",
            "buttons: What can we do for you today? [See offers | Get help | My privacy]"
        ]
    );
    for s in &sent {
        assert_eq!(
            s.phone_number_id, "106540352242922",
            "replies leave from the number written to"
        );
        assert_eq!(s.body["to"], "+16505550101");
        assert!(
            s.body["biz_opaque_callback_data"]
                .as_str()
                .is_some_and(|v| !v.is_empty())
        );
    }
    // A tap on "Get help" continues the same conversation.
    let tap = delivery(
        "16505550101",
        "Ana Pérez",
        "wamid.TAP1",
        button_reply("menu_help", "Get help"),
    );
    assert_eq!(app.post_signed(&tap).await.status(), 200);
    // No second notice: the contact is known now.
    let sent = graph.wait_for(4).await;
    assert_eq!(
        describe(&sent[3].body),
        "text: Sorry to hear something's wrong. What's your order number? It's in your confirmation email, e.g. 10482."
    );
    // Meta retries the tap: answered once only.
    assert_eq!(app.post_signed(&tap).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        graph.sent().len(),
        4,
        "a duplicate delivery is not answered twice"
    );
    graph.stop().await;
}
both_backends!(conversation, a_conversation_runs_from_webhook_to_graph_api);

async fn a_contact_known_only_by_user_id_is_answered_by_recipient(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = running(backend, &graph, 1).await;
    assert_eq!(
        app.post_signed(&fresh_fixture("messages_bsuid_only.json"))
            .await
            .status(),
        200
    );
    // The notice and the two answers, all by recipient.
    let sent = graph.wait_for(3).await;
    assert_eq!(sent.len(), 3);
    assert_eq!(describe(&sent[0].body), NOTICE);
    for s in &sent {
        assert_eq!(s.body["recipient"], "FR.71820394857261039485");
        assert!(s.body.get("to").is_none());
    }
    graph.stop().await;
}
both_backends!(
    bsuid_reply,
    a_contact_known_only_by_user_id_is_answered_by_recipient
);

async fn a_transient_graph_error_is_retried_and_order_is_kept(backend: &Backend) {
    let graph = FakeGraph::start().await;
    graph.fail_next(&[(500, 2), (400, 130429)]);
    let app = running(backend, &graph, 1).await;
    assert_eq!(
        app.post_signed(&fresh_fixture("messages_text.json"))
            .await
            .status(),
        200
    );
    let sent = graph.wait_for(3).await;
    let lines: Vec<String> = sent.iter().map(|s| describe(&s.body)).collect();
    assert_eq!(lines[0], NOTICE);
    assert_eq!(lines[1], "text: Hi Ana Pérez 👋");
    assert!(lines[2].starts_with("buttons: What can we do"));
    graph.stop().await;
}
both_backends!(
    transient_retry,
    a_transient_graph_error_is_retried_and_order_is_kept
);

/// The customer's side of one contact's 20 messages: 5 rounds of
/// hi → See offers → No, thanks → a text of its own (which starts the
/// welcome again). (Support would hand the conversation to a person after
/// the first round, and the flows would stay quiet.)
fn script(n: usize) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for round in 0..5 {
        out.push(text("hi"));
        out.push(button_reply("menu_offers", "See offers"));
        out.push(button_reply("promo_no", "No, thanks"));
        out.push(text(&format!("order #{}", 10_000 + n * 10 + round)));
    }
    out
}

/// Answers per contact: the privacy notice, then 2 (welcome) + 2 (offer,
/// question) + 1 + 2, five times.
const ANSWERS: usize = 1 + 35;

async fn fifty_contacts_in_parallel_end_as_a_serial_replay(backend: &Backend) {
    let graph = FakeGraph::start().await;
    // About 2,000 requests: at the default 80 per second the rate limit
    // alone would take longer than the wait below. (The limit has its own
    // test in the outbox tests.)
    let app = spawn_app_running(
        backend,
        &[
            ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
            ("WHATSIFY__OUTBOX__MESSAGES_PER_SECOND", "5000".into()),
        ],
        4,
    )
    .await;
    let contacts: Vec<String> = (0..50).map(|i| format!("1650555{:04}", 2000 + i)).collect();
    // Each contact sends its messages one after the other (as Meta
    // delivers them); the 50 contacts all at once.
    join_all(contacts.iter().enumerate().map(|(n, wa_id)| {
        let app = &app;
        async move {
            for (i, m) in script(n).into_iter().enumerate() {
                let body = delivery(
                    wa_id,
                    &format!("Customer {n}"),
                    &format!("wamid.ORDER{n:02}x{i:02}"),
                    m,
                );
                assert_eq!(app.post_signed(&body).await.status(), 200);
            }
        }
    }))
    .await;
    let sent = graph.wait_for(50 * ANSWERS).await;
    assert_eq!(sent.len(), 50 * ANSWERS);
    let flows = whatsify::flow::load_dir(std::path::Path::new("flows")).expect("flows");
    for (n, wa_id) in contacts.iter().enumerate() {
        let got: Vec<String> = sent
            .iter()
            .filter(|s| s.body["to"] == format!("+{wa_id}"))
            .map(|s| describe(&s.body))
            .collect();
        let mut conv = Conversation::new(
            &flows,
            ContactView {
                name: Some(format!("Customer {n}")),
                tags: Default::default(),
            },
            Duration::from_secs(86_400),
        );
        // The flows say what the serial replay says, after the notice.
        let mut want = vec![NOTICE.to_owned()];
        for m in script(n) {
            let input = match m["type"].as_str() {
                Some("text") => whatsify::domain::inbound::Input::Text(
                    m["text"]["body"].as_str().unwrap_or("").to_owned(),
                ),
                _ => whatsify::domain::inbound::Input::Choice {
                    id: m["interactive"]["button_reply"]["id"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                    title: m["interactive"]["button_reply"]["title"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                },
            };
            want.extend(
                conv.input(&input)
                    .iter()
                    .filter(|e| matches!(e, whatsify::flow::engine::Effect::Send { .. }))
                    .map(describe_effect),
            );
        }
        assert_eq!(got, want, "contact {n}");
    }
    graph.stop().await;
}
both_backends!(ordering, fifty_contacts_in_parallel_end_as_a_serial_replay);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_share_the_work_and_answer_each_message_once() {
    let b = crate::helpers::redis();
    two_instances_share_the_work_and_answer_each_message_once(&b.backend).await;
}

async fn two_instances_share_the_work_and_answer_each_message_once(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let one = running(backend, &graph, 2).await;
    let two = running(backend, &graph, 2).await;
    let contacts: Vec<String> = (0..10).map(|i| format!("1650555{:04}", 3000 + i)).collect();
    join_all(contacts.iter().enumerate().map(|(n, wa_id)| {
        let (one, two) = (&one, &two);
        async move {
            for (i, m) in script(n).into_iter().take(4).enumerate() {
                let body = delivery(wa_id, "Two", &format!("wamid.TWO{n:02}x{i:02}"), m);
                // Meta may deliver (and retry) to either instance.
                assert_eq!(one.post_signed(&body).await.status(), 200);
                assert_eq!(two.post_signed(&body).await.status(), 200);
            }
        }
    }))
    .await;
    // One round of the script: the notice and 7 answers per contact.
    let sent = graph.wait_for(10 * 8).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        graph.sent().len(),
        10 * 8,
        "each message answered exactly once"
    );
    for wa_id in &contacts {
        let got: Vec<String> = sent
            .iter()
            .filter(|s| s.body["to"] == format!("+{wa_id}"))
            .map(|s| describe(&s.body))
            .collect();
        assert_eq!(got.len(), 8, "{wa_id}: {got:#?}");
        assert_eq!(got[0], NOTICE, "once, first");
        assert_eq!(got[1], "text: Hi Two 👋");
        assert!(got[3].starts_with("text: This week: 20% off"), "{got:#?}");
        assert!(
            got[5].starts_with("text: No problem, we won't send you offers."),
            "{got:#?}"
        );
        assert_eq!(
            got[6], "text: Hi Two 👋",
            "the text starts the welcome again"
        );
    }
    graph.stop().await;
}

async fn a_timeout_fires_in_serve_without_any_message(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = spawn_app_running(
        backend,
        &[
            ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
            ("WHATSIFY__FLOWS__DIR", "tests/flows/timeout".into()),
        ],
        1,
    )
    .await;
    assert_eq!(
        app.post_signed(&fresh_fixture("messages_text.json"))
            .await
            .status(),
        200
    );
    let sent = graph.wait_for(3).await;
    let lines: Vec<String> = sent.iter().map(|s| describe(&s.body)).collect();
    assert_eq!(
        lines,
        [
            NOTICE,
            "buttons: Pick one [A]",
            "text: Still there? Say hi to start again."
        ]
    );
    assert_eq!(sent[2].body["to"], "+16505550101");
    graph.stop().await;
}
both_backends!(timeout_fires, a_timeout_fires_in_serve_without_any_message);

/// The conversation scenarios on a real 3-master Redis Cluster (issue 7,
/// point 4), one of them through two instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_on_a_redis_cluster() {
    let cluster = crate::helpers::RedisCluster::start();
    crate::on_cluster!(
        cluster,
        two_instances_share_the_work_and_answer_each_message_once,
        a_conversation_runs_from_webhook_to_graph_api,
        a_contact_known_only_by_user_id_is_answered_by_recipient,
        a_transient_graph_error_is_retried_and_order_is_kept,
        fifty_contacts_in_parallel_end_as_a_serial_replay,
        a_timeout_fires_in_serve_without_any_message,
    );
}
