//! Human handoff end to end: a flow hands the conversation to a person,
//! the flows stay quiet (privacy commands still answer), an agent answers
//! through the admin API (free-form within the 24-hour window, a template
//! outside it), and closing the handoff lets the flows answer again.

use serde_json::{Value, json};

use crate::both_backends;
use crate::graph::FakeGraph;
use crate::helpers::{Backend, TestApp};
use crate::outbox::{app_with, now, say_hi, sent_to, text_from, until};

async fn send(app: &TestApp, wa: &str, wamid: &str, text: &str) {
    let resp = app.post_signed(&text_from(wa, wamid, text, now())).await;
    assert_eq!(resp.status(), 200, "{text}");
}

async fn admin_post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    app.admin_post(path, &body).await
}

fn texts(graph: &FakeGraph, wa: &str) -> Vec<String> {
    sent_to(graph, wa)
        .iter()
        .filter_map(|m| m["text"]["body"].as_str().map(str::to_owned))
        .collect()
}

async fn a_flow_hands_off_and_an_agent_answers_until_the_handoff_closes(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505557101";
    say_hi(&app, wa, "wamid.H1").await;
    send(&app, wa, "wamid.H2", "support").await;
    send(&app, wa, "wamid.H3", "#10482").await;
    send(
        &app,
        wa,
        "wamid.H4",
        "The jacket arrived with a torn sleeve",
    )
    .await;
    until("the handoff", 30, async || {
        texts(&graph, wa)
            .iter()
            .any(|t| t.contains("A teammate will reply"))
    })
    .await;
    let (_, shown) = app.admin_get(&format!("/admin/contacts/{wa}")).await;
    assert!(
        shown["profile"]["handed_off_since"].is_u64(),
        "handed off: {shown}"
    );

    // The flows stay quiet; the privacy commands still answer.
    let before = sent_to(&graph, wa).len();
    send(&app, wa, "wamid.H5", "hi, anyone there?").await;
    send(&app, wa, "wamid.H6", "HELP").await;
    until("the answer to HELP", 30, async || {
        texts(&graph, wa)
            .iter()
            .any(|t| t.contains("To talk to a person"))
    })
    .await;
    assert_eq!(
        sent_to(&graph, wa).len(),
        before + 1,
        "only HELP was answered: {:?}",
        texts(&graph, wa)
    );

    // The agent answers, free-form (the customer wrote just now).
    let path = format!("/admin/contacts/{wa}/messages");
    let (status, body) = admin_post(
        &app,
        &path,
        json!({"text": "Hi, this is Sam. A new jacket is on its way."}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    until("the agent's message", 30, async || {
        texts(&graph, wa).iter().any(|t| t.contains("this is Sam"))
    })
    .await;
    let (status, _) = admin_post(
        &app,
        &path,
        json!({"template": {"name": "order_update", "language": {"code": "en_US"}, "body_parameters": ["10482"]}}),
    )
    .await;
    assert_eq!(status, 202);
    until("the template", 30, async || {
        sent_to(&graph, wa)
            .iter()
            .any(|m| m["template"]["name"] == "order_update")
    })
    .await;
    for (bad, needle) in [
        (json!({}), "exactly one"),
        (
            json!({"text": "a", "template": {"name": "x", "language": {"code": "en"}}}),
            "exactly one",
        ),
        (json!({"text": ""}), "text"),
        (json!({"txt": "hello"}), "txt"),
    ] {
        let (status, body) = admin_post(&app, &path, bad.clone()).await;
        assert_eq!(status, 400, "{bad}");
        assert!(
            body["error"].as_str().unwrap_or_default().contains(needle),
            "{bad}: {body}"
        );
    }
    let (status, _) = admin_post(
        &app,
        "/admin/contacts/16505557199/messages",
        json!({"text": "hi"}),
    )
    .await;
    assert!(status == 404 || status == 409, "unknown contact: {status}");

    // Closed: the flows answer again.
    let (status, _) = admin_post(
        &app,
        &format!("/admin/contacts/{wa}/handoff/close"),
        json!({}),
    )
    .await;
    assert_eq!(status, 202);
    until("closed", 30, async || {
        let (_, shown) = app.admin_get(&format!("/admin/contacts/{wa}")).await;
        shown["profile"]["handed_off_since"].is_null()
    })
    .await;
    let before = sent_to(&graph, wa).len();
    say_hi(&app, wa, "wamid.H7").await;
    until("the welcome again", 30, async || {
        sent_to(&graph, wa)[before..]
            .iter()
            .any(|m| m["interactive"]["body"]["text"] == "What can we do for you today?")
    })
    .await;
}
both_backends!(
    handoff,
    a_flow_hands_off_and_an_agent_answers_until_the_handoff_closes
);

/// Outside the 24-hour window a free-form message is refused; a template
/// goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_window_the_agent_must_use_a_template() {
    let b = crate::helpers::embedded();
    let graph = FakeGraph::start().await;
    let app = app_with(&b.backend, &graph, &[]).await;
    let wa = "16505557102";
    say_hi(&app, wa, "wamid.W1").await;
    until("the welcome", 30, async || !sent_to(&graph, wa).is_empty()).await;
    // A day and an hour later, the window is closed.
    app.clock.advance(25 * 3600);
    let path = format!("/admin/contacts/{wa}/messages");
    let (status, body) = admin_post(&app, &path, json!({"text": "hello"})).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("template")
    );
    let (status, _) = admin_post(
        &app,
        &path,
        json!({"template": {"name": "we_are_back", "language": {"code": "en_US"}}}),
    )
    .await;
    assert_eq!(status, 202);
    until("the template", 30, async || {
        sent_to(&graph, wa)
            .iter()
            .any(|m| m["template"]["name"] == "we_are_back")
    })
    .await;
}

/// A handoff on a real 3-master Redis Cluster (issue 7, point 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_on_a_redis_cluster() {
    let cluster = crate::helpers::RedisCluster::start();
    crate::on_cluster!(
        cluster,
        a_flow_hands_off_and_an_agent_answers_until_the_handoff_closes,
    );
}
