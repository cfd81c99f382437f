//! The agents' inbox through HTTP (issue 21, point 5): a flow's handoff
//! appears in the business's inbox for its agents (not another
//! business's, not an auditor), one agent takes it (the second is told
//! who has it), the live stream shows the take, the agent replies and
//! closes, and the flows answer the customer again.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use whatsify::domain::operator::Role;

use crate::both_backends;
use crate::graph::FakeGraph;
use crate::helpers::{Backend, TestApp};
use crate::operators_helpers::operator;
use crate::outbox::{app_with, now, say_hi, sent_to, text_from, until};

const INBOX: &str = "/admin/businesses/default/inbox";

async fn send(app: &TestApp, wa: &str, wamid: &str, text: &str) {
    let resp = app.post_signed(&text_from(wa, wamid, text, now())).await;
    assert_eq!(resp.status(), 200, "{text}");
}

/// `method path` with `token`: the status and the JSON answer.
pub(crate) async fn call(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn texts(graph: &FakeGraph, wa: &str) -> Vec<String> {
    sent_to(graph, wa)
        .iter()
        .filter_map(|m| m["text"]["body"].as_str().map(str::to_owned))
        .collect()
}

/// The customer `wa` walks the support flow to a handoff.
pub(crate) async fn hand_off(app: &TestApp, graph: &FakeGraph, wa: &str) {
    say_hi(app, wa, &format!("wamid.{wa}.1")).await;
    send(app, wa, &format!("wamid.{wa}.2"), "support").await;
    send(app, wa, &format!("wamid.{wa}.3"), "#10482").await;
    let torn = "The jacket arrived with a torn sleeve";
    send(app, wa, &format!("wamid.{wa}.4"), torn).await;
    until("the handoff", 30, async || {
        texts(graph, wa)
            .iter()
            .any(|t| t.contains("A teammate will reply"))
    })
    .await;
}

/// Reads server-sent events from `resp` until one `inbox` event's data
/// satisfies `want` (within 20 s).
async fn until_event(
    resp: &mut reqwest::Response,
    buf: &mut String,
    want: impl Fn(&Value) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let inbox = block.lines().any(|l| l == "event: inbox");
            let data: String = block
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            if inbox && serde_json::from_str(&data).is_ok_and(|d: Value| want(&d)) {
                return;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out waiting for the inbox event");
        match tokio::time::timeout(left, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => buf.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(other) => panic!("the stream ended: {other:?}"),
            Err(_) => panic!("timed out waiting for the inbox event"),
        }
    }
}

async fn agents_work_the_inbox_of_their_business(backend: &Backend) {
    use reqwest::Method;
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let a = operator(&app, "ana@shop.example", Role::Agent, &["default"]).await;
    let b = operator(&app, "ben@shop.example", Role::Agent, &["default"]).await;
    let elsewhere = operator(&app, "eve@cafe.example", Role::Agent, &["cafe"]).await;
    let auditor = operator(&app, "aud@shop.example", Role::Auditor, &["default"]).await;
    let wa = "16505557301";

    let (status, body) = call(&app, &a.token, Method::GET, INBOX, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversations"], json!([]));
    hand_off(&app, &graph, wa).await;

    // Listed for the business's agent, with the recent conversation.
    let mut listed = Value::Null;
    until("the inbox lists it", 30, async || {
        listed = call(&app, &a.token, Method::GET, INBOX, None).await.1;
        listed["conversations"]
            .as_array()
            .is_some_and(|c| c.len() == 1)
    })
    .await;
    let c = &listed["conversations"][0];
    assert_eq!(c["wa_id"], wa, "{listed}");
    assert_eq!(c["name"], "Ana");
    assert!(c["taken_by"].is_null());
    assert_eq!(c["window"]["open"], true);
    assert!(c["waiting_since"].is_u64());
    let key = c["contact"].as_str().expect("contact key").to_owned();
    let recent = c["recent"].to_string();
    assert!(recent.contains("torn sleeve"), "{recent}");
    assert!(recent.contains("A teammate will reply"), "{recent}");
    // Unprefixed too, with one business served.
    let (status, _) = call(&app, &b.token, Method::GET, "/admin/inbox", None).await;
    assert_eq!(status, 200);
    // Not for another business's agent, nor for an auditor.
    for (who, token) in [("elsewhere", &elsewhere.token), ("auditor", &auditor.token)] {
        let (status, _) = call(&app, token, Method::GET, INBOX, None).await;
        assert_eq!(status, 403, "{who}");
        let events = format!("{INBOX}/events");
        let (status, _) = call(&app, token, Method::GET, &events, None).await;
        assert_eq!(status, 403, "{who} events");
    }

    // B watches the live stream.
    let mut stream = app
        .client
        .get(format!("{}{INBOX}/events", app.address))
        .bearer_auth(&b.token)
        .send()
        .await
        .expect("events");
    assert_eq!(stream.status(), 200);
    let content_type = stream.headers()["content-type"].to_str().expect("type");
    assert!(content_type.starts_with("text/event-stream"));
    let mut buf = String::new();
    until_event(&mut stream, &mut buf, |d| {
        d["conversations"][0]["contact"] == key.as_str()
            && d["conversations"][0]["taken_by"].is_null()
    })
    .await;

    // A takes it; B cannot; A again can.
    let take = format!("{INBOX}/{key}/take");
    let (status, body) = call(&app, &a.token, Method::POST, &take, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["taken_by"]["email"], "ana@shop.example");
    let (status, body) = call(&app, &b.token, Method::POST, &take, None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("ana@shop.example"),
        "{body}"
    );
    let (status, _) = call(&app, &a.token, Method::POST, &take, None).await;
    assert_eq!(status, 200);
    let (status, _) = call(&app, &elsewhere.token, Method::POST, &take, None).await;
    assert_eq!(status, 403);
    until_event(&mut stream, &mut buf, |d| {
        d["conversations"][0]["taken_by"]["email"] == "ana@shop.example"
    })
    .await;

    // A replies; the customer gets it.
    let reply = format!("/admin/businesses/default/contacts/{wa}/messages");
    let text = json!({"text": "Hi, this is Ana. A new jacket is on its way."});
    let (status, body) = call(&app, &a.token, Method::POST, &reply, Some(text)).await;
    assert_eq!(status, 202, "{body}");
    until("the agent's reply", 30, async || {
        texts(&graph, wa).iter().any(|t| t.contains("this is Ana"))
    })
    .await;

    // A closes: gone from the list (and the stream), the flows answer.
    let close = format!("/admin/businesses/default/contacts/{wa}/handoff/close");
    let (status, _) = call(&app, &a.token, Method::POST, &close, Some(json!({}))).await;
    assert_eq!(status, 202);
    until_event(&mut stream, &mut buf, |d| d["conversations"] == json!([])).await;
    until("closed", 30, async || {
        let (_, shown) = app.admin_get(&format!("/admin/contacts/{wa}")).await;
        shown["profile"]["handed_off_since"].is_null()
    })
    .await;
    let (_, listed) = call(&app, &a.token, Method::GET, INBOX, None).await;
    assert_eq!(listed["conversations"], json!([]), "{listed}");
    let before = sent_to(&graph, wa).len();
    say_hi(&app, wa, "wamid.again").await;
    until("the welcome again", 30, async || {
        sent_to(&graph, wa)[before..]
            .iter()
            .any(|m| m["interactive"]["body"]["text"] == "What can we do for you today?")
    })
    .await;
    let (_, listed) = call(&app, &a.token, Method::GET, INBOX, None).await;
    assert_eq!(listed["conversations"], json!([]), "{listed}");

    // Ben is disabled: his stream ends.
    crate::operators_helpers::accounts(&app)
        .disable(&b.email, "root")
        .await
        .expect("disabled");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.chunk()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(_) => break,
            Err(_) => panic!("the disabled operator's stream did not end"),
        }
    }

    // Each look and the take are in the audit log, naming the agent's
    // token (never root).
    let (_, audit) = app
        .admin_get("/admin/audit?kind=admin_access&limit=200")
        .await;
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    for what in ["inbox: conversation shown", "inbox: taken"] {
        assert!(
            entries.iter().any(|e| e["detail"] == what
                && e["by"].as_str().is_some_and(|b| b.starts_with("token:"))),
            "{what}: {audit}"
        );
    }
}
both_backends!(inbox, agents_work_the_inbox_of_their_business);

/// An erased customer leaves the inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_contact_leaves_the_inbox() {
    let b = crate::helpers::embedded();
    let graph = FakeGraph::start().await;
    let app = app_with(&b.backend, &graph, &[]).await;
    let wa = "16505557302";
    hand_off(&app, &graph, wa).await;
    until("listed", 30, async || {
        let (_, l) = app.admin_get(INBOX).await;
        l["conversations"].as_array().is_some_and(|c| c.len() == 1)
    })
    .await;
    assert_eq!(
        app.admin_delete(&format!("/admin/contacts/{wa}")).await,
        200
    );
    let docs = app.store().docs("inbox:default").await.expect("docs");
    assert!(docs.is_empty(), "the index entry is gone");
    let (_, l) = app.admin_get(INBOX).await;
    assert_eq!(l["conversations"], json!([]));
}
