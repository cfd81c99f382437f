//! The privacy commands end to end: signed webhooks in, the consent
//! ledger in the store, answers at the fake Graph API.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::both_backends;
use crate::graph::FakeGraph;
use crate::helpers::{Backend, TestApp};
use crate::outbox::{
    app_with, contact_key, marketing, now, queue, say_hi, sent_to, text_from, until,
};

const OPTED_OUT: &str = "won't get promotions";
const OPTED_IN: &str = "our offers again";

async fn send(app: &TestApp, wa: &str, wamid: &str, text: &str) {
    send_at(app, wa, wamid, text, now()).await;
}

/// As [`send`], sent at `at` (Unix s): Meta's times are in seconds, and
/// in one second a withdrawal wins over a grant.
async fn send_at(app: &TestApp, wa: &str, wamid: &str, text: &str, at: u64) {
    let resp = app.post_signed(&text_from(wa, wamid, text, at)).await;
    assert_eq!(resp.status(), 200, "{text}");
}

/// The texts sent to `wa` that contain `needle`.
pub(crate) fn told(graph: &FakeGraph, wa: &str, needle: &str) -> usize {
    sent_to(graph, wa)
        .iter()
        .filter(|m| {
            m["text"]["body"]
                .as_str()
                .is_some_and(|b| b.contains(needle))
        })
        .count()
}

fn granted(ledger: &[(bool, String)]) -> Option<bool> {
    ledger.last().map(|(g, _)| *g)
}

/// STOP is on record by the time the webhook is acknowledged, confirmed
/// once (a STOP that changes nothing is not confirmed again), START opts
/// back in with one confirmation, a STOP after it is confirmed again, and
/// the customer's other messages are still answered, including a sentence
/// that merely contains the word.
async fn stop_and_start_are_recorded_at_once_and_confirmed_once(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505556001";
    say_hi(&app, wa, "wamid.P1").await;
    until("the welcome", 30, async || !sent_to(&graph, wa).is_empty()).await;

    let t = now() - 30;
    send_at(&app, wa, "wamid.P2", "STOP", t).await;
    assert_eq!(
        marketing(&app, wa).await,
        [(false, "keyword".to_owned())],
        "withdrawn before the webhook was acknowledged"
    );
    until("the confirmation", 30, async || {
        told(&graph, wa, OPTED_OUT) == 1
    })
    .await;
    let confirmation = sent_to(&graph, wa)
        .into_iter()
        .find(|m| {
            m["text"]["body"]
                .as_str()
                .is_some_and(|b| b.contains(OPTED_OUT))
        })
        .expect("confirmation");
    let body = confirmation["text"]["body"].as_str().unwrap_or_default();
    assert!(
        body.contains("still answer") && body.contains("START"),
        "{body}"
    );

    // Already opted out: neither recorded nor confirmed again.
    send_at(&app, wa, "wamid.P3", "stop.", t + 1).await;
    assert_eq!(marketing(&app, wa).await.len(), 1);
    // The next message is answered, so the second STOP was handled by now.
    let before = sent_to(&graph, wa).len();
    send(&app, wa, "wamid.P4", "where is the bus stop near you?").await;
    until("an answer to the question", 30, async || {
        sent_to(&graph, wa).len() > before
    })
    .await;
    assert_eq!(told(&graph, wa, OPTED_OUT), 1, "no second confirmation");
    assert_eq!(
        marketing(&app, wa).await.len(),
        1,
        "a question is no opt-out"
    );

    send_at(&app, wa, "wamid.P5", "START", t + 2).await;
    assert_eq!(granted(&marketing(&app, wa).await), Some(true));
    until("the opt-in confirmation", 30, async || {
        told(&graph, wa, OPTED_IN) == 1
    })
    .await;

    send_at(
        &app,
        wa,
        "wamid.P6",
        "please stop sending me promotions",
        t + 3,
    )
    .await;
    assert_eq!(granted(&marketing(&app, wa).await), Some(false));
    until("a confirmation after START", 30, async || {
        told(&graph, wa, OPTED_OUT) == 2
    })
    .await;

    // Service goes on: "hi" still gets the welcome menu.
    let before = sent_to(&graph, wa).len();
    say_hi(&app, wa, "wamid.P7").await;
    until("the welcome again", 30, async || {
        sent_to(&graph, wa).len() > before
    })
    .await;
}
both_backends!(
    stop_and_start,
    stop_and_start_are_recorded_at_once_and_confirmed_once
);

/// STOP, START, STOP in quick succession end opted out.
async fn stop_start_stop_ends_opted_out(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505556002";
    let t = now();
    for (i, text) in ["STOP", "START", "STOP"].iter().enumerate() {
        let resp = app
            .post_signed(&text_from(wa, &format!("wamid.Q{i}"), text, t))
            .await;
        assert_eq!(resp.status(), 200);
    }
    // The second STOP, in the second of the first (which wins over the
    // START of that second), changes nothing and is not recorded.
    let ledger = marketing(&app, wa).await;
    assert_eq!(ledger.len(), 2);
    let store = app.store();
    let entries = store.consent(&contact_key(&app, wa)).await.expect("ledger");
    assert!(!whatsify::privacy::consent::granted(&entries, "marketing"));
    // Each is confirmed (each changed the state), in order.
    until("three confirmations", 30, async || {
        told(&graph, wa, OPTED_OUT) + told(&graph, wa, OPTED_IN) == 3
    })
    .await;
    let order: Vec<bool> = sent_to(&graph, wa)
        .iter()
        .filter_map(|m| m["text"]["body"].as_str())
        .filter(|b| b.contains(OPTED_OUT) || b.contains(OPTED_IN))
        .map(|b| b.contains(OPTED_IN))
        .collect();
    assert_eq!(order, [false, true, false]);
}
both_backends!(stop_start_stop, stop_start_stop_ends_opted_out);

/// The "Stop promotions" quick reply of a marketing template withdraws
/// marketing consent like STOP does.
async fn the_stop_promotions_button_opts_out(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505556003";
    let mut v: Value = serde_json::from_slice(&text_from(wa, "wamid.B1", "", now())).expect("json");
    let m = &mut v["entry"][0]["changes"][0]["value"]["messages"][0];
    m["type"] = json!("button");
    m["button"] = json!({ "payload": "STOP_PROMOTIONS", "text": "Stop promotions" });
    m["context"] = json!({ "from": "15550001111", "id": "wamid.TEMPLATE" });
    let resp = app
        .post_signed(&serde_json::to_vec(&v).expect("json"))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(marketing(&app, wa).await, [(false, "button".to_owned())]);
    until("the confirmation", 30, async || {
        told(&graph, wa, OPTED_OUT) == 1
    })
    .await;
}
both_backends!(stop_button, the_stop_promotions_button_opts_out);

/// HELP names the business, says how to reach a person and lists the
/// privacy commands; it changes no consent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_names_the_business_and_the_commands() {
    let b = crate::helpers::embedded();
    let graph = FakeGraph::start().await;
    let app = app_with(
        &b.backend,
        &graph,
        &[
            ("WHATSIFY__BUSINESS__NAME", "Acme Shoes"),
            ("WHATSIFY__BUSINESS__CONTACT", "call +1 555 0100 (9am-5pm)"),
        ],
    )
    .await;
    let wa = "16505556004";
    send(&app, wa, "wamid.H1", "HELP").await;
    until("the answer", 30, async || {
        told(&graph, wa, "Acme Shoes") == 1
    })
    .await;
    let body = sent_to(&graph, wa)[0]["text"]["body"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for part in ["call +1 555 0100 (9am-5pm)", "STOP", "START", "PRIVACY"] {
        assert!(body.contains(part), "{part} missing from {body}");
    }
    assert!(marketing(&app, wa).await.is_empty());
}

/// A marketing template (a campaign's offer) for `wa`, needing consent.
fn offer(id: &str, wa: &str) -> whatsify::domain::outbound::Job {
    use whatsify::domain::outbound::{Job, Message, Origin, Recipient};
    Job {
        id: id.to_owned(),
        phone_number_id: "106540352242922".into(),
        to: Recipient::WaId(wa.into()),
        message: Message::Template {
            name: "spring_offer".into(),
            language: "en_US".into(),
            header: None,
            body: vec![],
            quick_replies: vec!["stop-promotions".into()],
            marketing: true,
        },
        created_at: now(),
        origin: Origin::Business,
        window_at: None,
        purpose: Some("marketing".into()),
    }
}

/// A STOP that arrives while 1,000 marketing messages are queued for the
/// contact: none is sent after the STOP was acknowledged; the rest are
/// recorded as not sent for want of consent.
async fn stop_stops_marketing_already_queued(backend: &Backend) {
    use whatsify::domain::outbound::Job;
    let graph = FakeGraph::start().await;
    // Meta's pair limit paces them: one a second after the first.
    let app = app_with(
        backend,
        &graph,
        &[
            ("WHATSIFY__OUTBOX__PAIR_INTERVAL", "1s"),
            ("WHATSIFY__OUTBOX__PAIR_BURST", "1"),
        ],
    )
    .await;
    let wa = "16505556005";
    send(&app, wa, "wamid.M0", "START").await;
    until("subscribed", 30, async || told(&graph, wa, OPTED_IN) == 1).await;
    let jobs: Vec<Job> = (0..1000).map(|n| offer(&format!("mkt-{n}"), wa)).collect();
    let store = app.store();
    queue(&store, &app.state.keyring, &contact_key(&app, wa), &jobs).await;
    let marketing_sent = |g: &FakeGraph| -> Vec<Instant> {
        g.requests()
            .into_iter()
            .filter(|r| r.job.as_deref().is_some_and(|j| j.starts_with("mkt-")))
            .map(|r| r.at)
            .collect()
    };
    until("two offers out", 30, async || {
        marketing_sent(&graph).len() >= 2
    })
    .await;
    // While they are queued: neither the number nor the template in clear.
    let queued = stored_bytes(backend).await;
    for needle in [wa, "spring_offer", "stop-promotions"] {
        assert!(!contains(&queued, needle), "{needle:?} stored in clear");
    }
    send(&app, wa, "wamid.M1", "STOP").await;
    let acknowledged = Instant::now();
    until("the queue drained", 60, async || {
        store
            .read(&whatsify::store::Queue::Outbox(contact_key(&app, wa)), 1)
            .await
            .is_ok_and(|e| e.is_empty())
    })
    .await;
    let all = marketing_sent(&graph);
    let after = all.iter().filter(|at| **at > acknowledged).count();
    let sent = all.len();
    println!("{sent} offers sent before the STOP, {after} after");
    assert_eq!(after, 0, "offers sent after the STOP");
    let records = store
        .deliveries(&contact_key(&app, wa))
        .await
        .expect("records");
    let withheld = records
        .iter()
        .filter(|d| {
            d.job.starts_with("mkt-") && d.state == whatsify::store::DeliveryState::NoConsent
        })
        .count();
    assert_eq!(
        withheld,
        1000 - sent,
        "every other offer recorded as withheld"
    );
    until("the confirmation", 30, async || {
        told(&graph, wa, OPTED_OUT) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
}
both_backends!(stop_during_a_campaign, stop_stops_marketing_already_queued);

/// A marketing message for a contact who never opted in is not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketing_without_consent_fails_closed() {
    let b = crate::helpers::embedded();
    let graph = FakeGraph::start().await;
    let app = app_with(&b.backend, &graph, &[]).await;
    let wa = "16505556006";
    let job = offer("mkt-cold", wa);
    let store = app.store();
    queue(&store, &app.state.keyring, &contact_key(&app, wa), &[job]).await;
    until("recorded", 30, async || {
        store
            .deliveries(&contact_key(&app, wa))
            .await
            .is_ok_and(|r| {
                r.iter()
                    .any(|d| d.state == whatsify::store::DeliveryState::NoConsent)
            })
    })
    .await;
    assert!(graph.requests().is_empty(), "nothing reached Meta");
}

fn list_pick(wa: &str, wamid: &str, id: &str, title: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&text_from(wa, wamid, "", now())).expect("json");
    let m = &mut v["entry"][0]["changes"][0]["value"]["messages"][0];
    m["type"] = json!("interactive");
    m["interactive"] = json!({ "type": "list_reply", "list_reply": { "id": id, "title": title } });
    serde_json::to_vec(&v).expect("json")
}

/// The profile outlives sessions: a name the customer chose wins over
/// their WhatsApp name; a changed privacy policy is announced once to a
/// contact who writes in, and recorded in their ledger; the admin API
/// shows the profile and the consent state, and 404 for an unknown id.
async fn profile_rectification_policy_notice_and_admin_view(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(
        backend,
        &graph,
        &[("WHATSIFY__PRIVACY__POLICY_VERSION", "1")],
    )
    .await;
    let wa = "16505556010";
    let (status, _) = app.admin_get(&format!("/admin/contacts/{wa}")).await;
    assert_eq!(status, 404, "unknown contact");

    say_hi(&app, wa, "wamid.N1").await;
    until("greeted by name", 30, async || {
        told(&graph, wa, "Hi Ana") == 1
    })
    .await;
    let (status, view) = app.admin_get(&format!("/admin/contacts/{wa}")).await;
    assert_eq!(status, 200);
    assert_eq!(view["profile"]["name"], "Ana");
    assert_eq!(view["profile"]["policy_version_shown"], "1");
    assert_eq!(view["consent"]["marketing"]["granted"], false);
    assert!(
        view.to_string().find(wa).is_none(),
        "no phone number in the view"
    );

    // Rectification through the privacy menu.
    send(&app, wa, "wamid.N2", "privacy").await;
    until("the privacy menu", 30, async || {
        sent_to(&graph, wa)
            .iter()
            .any(|m| m["type"] == "interactive")
    })
    .await;
    let resp = app
        .post_signed(&list_pick(wa, "wamid.N3", "privacy_name", "Change my name"))
        .await;
    assert_eq!(resp.status(), 200);
    until("the question", 30, async || {
        told(&graph, wa, "What name") == 1
    })
    .await;
    send(&app, wa, "wamid.N4", "Zed").await;
    until("the new name", 30, async || {
        told(&graph, wa, "Thanks, Zed") == 1
    })
    .await;
    // WhatsApp still says "Ana"; the customer's choice wins.
    say_hi(&app, wa, "wamid.N5").await;
    until("greeted by the chosen name", 30, async || {
        told(&graph, wa, "Hi Zed") == 1
    })
    .await;
    let (_, view) = app.admin_get(&format!("/admin/contacts/{wa}")).await;
    assert_eq!(view["profile"]["name"], "Zed");
    assert_eq!(view["profile"]["whatsapp_name"], "Ana");
    assert_eq!(view["profile"]["name_chosen_by_customer"], true);

    // The policy changes: the next instance runs version 2.
    app.state.shutdown.trigger();
    let app2 = crate::helpers::spawn_app_on_store(
        backend,
        &[
            ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
            ("WHATSIFY__OUTBOX__MARK_READ", "false".into()),
            ("WHATSIFY__PRIVACY__POLICY_VERSION", "2".into()),
        ],
        app.store(),
        2,
    )
    .await;
    let notice = "updated our privacy policy";
    say_hi(&app2, wa, "wamid.N6").await;
    until("the notice and the answer", 30, async || {
        told(&graph, wa, notice) == 1 && told(&graph, wa, "Hi Zed") == 2
    })
    .await;
    say_hi(&app2, wa, "wamid.N7").await;
    until("the next answer", 30, async || {
        told(&graph, wa, "Hi Zed") == 3
    })
    .await;
    assert_eq!(told(&graph, wa, notice), 1, "the notice is sent once");
    let ledger = app2
        .store()
        .consent(&contact_key(&app2, wa))
        .await
        .expect("ledger");
    // Version 1 shown on first contact, version 2 when it changed.
    let shown: Vec<(&str, &str)> = ledger
        .iter()
        .filter(|c| c.purpose == "policy_notice")
        .map(|c| (c.source.as_str(), c.policy_version.as_str()))
        .collect();
    assert_eq!(shown, [("first_contact", "1"), ("notice", "2")]);
    let (_, view) = app2.admin_get(&format!("/admin/contacts/{wa}")).await;
    assert_eq!(view["profile"]["policy_version_shown"], "2");
}
both_backends!(profile, profile_rectification_policy_notice_and_admin_view);

/// Privacy events and admin looks at a contact land in the audit log,
/// with no content; the log filters by contact, kind and time, and says
/// when its chain is broken (on Redis, an entry deleted behind its back).
async fn privacy_events_are_audited(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505556020";
    send(&app, wa, "wamid.A1", "STOP").await;
    until("the confirmation", 30, async || {
        told(&graph, wa, OPTED_OUT) == 1
    })
    .await;
    let (status, _) = app.admin_get(&format!("/admin/contacts/{wa}")).await;
    assert_eq!(status, 200);
    let (status, log) = app.admin_get(&format!("/admin/audit?contact={wa}")).await;
    assert_eq!(status, 200);
    assert_eq!(log["chain"]["intact"], true, "{log}");
    let kinds: Vec<(String, String)> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or_default().to_owned(),
                e["actor"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("admin_access".to_owned(), "admin".to_owned()),
            ("consent_withdrawn".to_owned(), "customer".to_owned())
        ],
        "newest first"
    );
    let text = log.to_string();
    assert!(
        !text.contains(wa) && !text.contains("STOP"),
        "no personal data or content: {text}"
    );
    assert_eq!(
        log["entries"][0]["contact"],
        contact_key(&app, wa).as_str(),
        "the pseudonymous id"
    );
    let (_, only_admin) = app.admin_get("/admin/audit?kind=admin_access").await;
    assert!(
        only_admin["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .all(|e| e["kind"] == "admin_access")
    );
    let (_, future) = app
        .admin_get(&format!("/admin/audit?from={}", now() + 3600))
        .await;
    assert_eq!(future["entries"].as_array().map(Vec::len), Some(0));
    let (status, _) = app.admin_get("/admin/audit?from=yesterday").await;
    assert_eq!(status, 400, "a bad filter is refused");

    if let Backend::Redis { url, prefix } = backend {
        // Remove the first entry behind the server's back.
        let client = redis::Client::open(url.as_str()).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connection");
        let removed: i64 = redis::cmd("XDEL")
            .arg(format!("{prefix}{{audit}}:log"))
            .arg("1-1")
            .query_async(&mut conn)
            .await
            .expect("xdel");
        assert_eq!(removed, 1);
        let (_, log) = app.admin_get("/admin/audit").await;
        assert_eq!(log["chain"]["intact"], false);
        assert_eq!(log["chain"]["broken_at"], 2);
    }
}
both_backends!(audit, privacy_events_are_audited);

fn export_validator() -> jsonschema::Validator {
    let path = format!("{}/docs/export-schema.json", env!("CARGO_MANIFEST_DIR"));
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("schema")).expect("json");
    jsonschema::meta::validate(&schema).expect("a valid JSON Schema");
    jsonschema::validator_for(&schema).expect("validator")
}

fn assert_valid(doc: &Value) {
    let v = export_validator();
    let errors: Vec<String> = v.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "not a valid export: {errors:#?}\n{doc:#}"
    );
}

/// MY DATA: the customer gets a copy of everything kept about them (the
/// profile, consent now and its history, the messages decrypted, the
/// conversation, their privacy requests, how the data is used), uploaded
/// as a JSON file with Meta's media endpoint and sent as a document; the
/// admin API returns the same document; both follow the published schema.
async fn my_data_sends_a_copy_of_everything(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505556030";
    say_hi(&app, wa, "wamid.E1").await;
    until("the welcome", 30, async || told(&graph, wa, "Hi Ana") == 1).await;
    send(&app, wa, "wamid.E2", "STOP").await;
    until("the confirmation", 30, async || {
        told(&graph, wa, OPTED_OUT) == 1
    })
    .await;
    send(&app, wa, "wamid.E3", "my data").await;
    until("the document", 30, async || {
        sent_to(&graph, wa).iter().any(|m| m["type"] == "document")
    })
    .await;
    assert_eq!(told(&graph, wa, "preparing a copy of your data"), 1);
    let uploads = graph.uploads();
    assert_eq!(uploads.len(), 1);
    let up = &uploads[0];
    assert_eq!(up.phone_number_id, "106540352242922");
    assert_eq!(up.fields["messaging_product"], "whatsapp");
    assert_eq!(up.fields["type"], "application/json");
    assert_eq!(up.filename.as_deref(), Some("my-data.json"));
    assert_eq!(up.content_type.as_deref(), Some("application/json"));
    let document = sent_to(&graph, wa)
        .into_iter()
        .find(|m| m["type"] == "document")
        .expect("document");
    assert_eq!(document["document"]["id"], up.id.as_str());
    assert_eq!(document["document"]["filename"], "my-data.json");

    let doc: Value = serde_json::from_slice(&up.file).expect("the file is JSON");
    assert_valid(&doc);
    assert_eq!(doc["contact"]["id"], wa);
    assert_eq!(doc["contact"]["name"], "Ana");
    assert_eq!(doc["consent"]["marketing"]["granted"], false);
    // The privacy notice shown before the first answer, then the STOP.
    let history = &doc["consent"]["history"];
    assert_eq!(history[0]["purpose"], "policy_notice");
    assert_eq!(history[0]["source"], "first_contact");
    assert_eq!(history[0]["policy_version"], "1");
    assert_eq!(history[1]["source"], "keyword");
    let texts: Vec<(String, String)> = doc["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["direction"].as_str().unwrap_or_default().to_owned(),
                m["text"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("in", "hi"),
        ("out", "Hi Ana 👋"),
        ("in", "STOP"),
        ("in", "my data"),
    ] {
        assert!(
            texts
                .iter()
                .any(|(d, t)| d == expected.0 && t.starts_with(expected.1)),
            "{expected:?} missing from {texts:?}"
        );
    }
    assert!(
        doc["privacy_requests"]
            .as_array()
            .expect("requests")
            .iter()
            .any(|r| r["kind"] == "export_request" && r["by"] == "customer")
    );

    let (status, admin_doc) = app.admin_get(&format!("/admin/contacts/{wa}/export")).await;
    assert_eq!(status, 200);
    assert_valid(&admin_doc);
    assert_eq!(
        admin_doc["contact"]["pseudonymous_id"],
        contact_key(&app, wa).as_str()
    );
    let (status, _) = app.admin_get("/admin/contacts/16505559999/export").await;
    assert_eq!(status, 404);
    until("the export in the audit log", 30, async || {
        let (_, log) = app
            .admin_get(&format!("/admin/audit?contact={wa}&kind=export_completed"))
            .await;
        log["entries"].as_array().is_some_and(|e| e.len() == 1)
    })
    .await;
}
both_backends!(export, my_data_sends_a_copy_of_everything);

/// Words a flow file adds for the privacy commands work like the built-in
/// ones (the shipped privacy flow adds Spanish ones).
async fn words_from_flow_files_work_too(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505556040";
    send(&app, wa, "wamid.S1", "Baja").await;
    assert_eq!(marketing(&app, wa).await, [(false, "keyword".to_owned())]);
    until("the confirmation", 30, async || {
        told(&graph, wa, OPTED_OUT) == 1
    })
    .await;
    send(&app, wa, "wamid.S2", "alta!").await;
    assert_eq!(granted(&marketing(&app, wa).await), Some(true));
}
both_backends!(flow_words, words_from_flow_files_work_too);

/// A marketing template a flow sends needs marketing consent when its
/// turn comes: not sent to a contact who never opted in or sent STOP, sent
/// to one who opted in.
async fn a_flow_s_marketing_template_needs_consent(backend: &Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("deals.yaml"),
        r#"
id: deals
triggers:
  - default: true
steps:
  - id: deal
    template:
      name: spring_offer
      language: en_US
      category: marketing
  - id: done
    end: true
"#,
    )
    .expect("flow");
    let graph = FakeGraph::start().await;
    let flows = dir.path().display().to_string();
    let app = app_with(backend, &graph, &[("WHATSIFY__FLOWS__DIR", flows.as_str())]).await;
    let templates = |wa: &str| {
        sent_to(&graph, wa)
            .iter()
            .filter(|m| m["type"] == "template")
            .count()
    };
    let records = async |wa: &str| {
        app.store()
            .deliveries(&contact_key(&app, wa))
            .await
            .expect("records")
            .iter()
            .map(|d| d.state)
            .collect::<Vec<_>>()
    };
    // Never opted in: withheld.
    let cold = "16505556050";
    send(&app, cold, "wamid.T1", "hello").await;
    until("recorded", 30, async || {
        records(cold)
            .await
            .contains(&whatsify::store::DeliveryState::NoConsent)
    })
    .await;
    assert_eq!(templates(cold), 0);
    // Opted in: sent; after STOP: withheld again.
    let warm = "16505556051";
    send(&app, warm, "wamid.T2", "START").await;
    until("subscribed", 30, async || told(&graph, warm, OPTED_IN) == 1).await;
    send(&app, warm, "wamid.T3", "hello").await;
    until("the offer", 30, async || templates(warm) == 1).await;
    send(&app, warm, "wamid.T4", "STOP").await;
    until("the confirmation", 30, async || {
        told(&graph, warm, OPTED_OUT) == 1
    })
    .await;
    send(&app, warm, "wamid.T5", "hello again").await;
    until("withheld", 30, async || {
        records(warm)
            .await
            .contains(&whatsify::store::DeliveryState::NoConsent)
    })
    .await;
    assert_eq!(templates(warm), 1, "nothing after the STOP");
}
both_backends!(flow_marketing, a_flow_s_marketing_template_needs_consent);

pub(crate) fn tap_button(wa: &str, wamid: &str, id: &str, title: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&text_from(wa, wamid, "", now())).expect("json");
    let m = &mut v["entry"][0]["changes"][0]["value"]["messages"][0];
    m["type"] = json!("interactive");
    m["interactive"] =
        json!({ "type": "button_reply", "button_reply": { "id": id, "title": title } });
    serde_json::to_vec(&v).expect("json")
}

/// Every value under the test's key prefix in Redis, as text (strings,
/// hashes, streams, sorted sets), with its key.
async fn redis_dump(url: &str, prefix: &str) -> Vec<(String, String)> {
    let client = redis::Client::open(url).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    let mut out = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("type");
        let mut cmd = match kind.as_str() {
            "string" => redis::cmd("GET"),
            "hash" => redis::cmd("HGETALL"),
            "stream" => redis::cmd("XRANGE"),
            "zset" => redis::cmd("ZRANGE"),
            "set" => redis::cmd("SMEMBERS"),
            "list" => redis::cmd("LRANGE"),
            // Gone since KEYS listed it (a lease released meanwhile).
            _ => continue,
        };
        cmd.arg(&key);
        match kind.as_str() {
            "stream" => {
                cmd.arg("-").arg("+");
            }
            "zset" | "list" => {
                cmd.arg(0).arg(-1);
            }
            _ => {}
        }
        let value: redis::Value = cmd.query_async(&mut conn).await.expect("value");
        // The raw bytes (Debug would print binary values as numbers, where
        // a phone number could hide from a text search).
        let mut bytes = Vec::new();
        raw_bytes(&value, &mut bytes);
        out.push((key, String::from_utf8_lossy(&bytes).into_owned()));
    }
    out
}

/// Where the store keeps its data, as bytes to search: every Redis key and
/// value under the prefix, or the embedded store's files.
/// Every byte string inside a Redis reply, concatenated.
fn raw_bytes(value: &redis::Value, out: &mut Vec<u8>) {
    use redis::Value as V;
    match value {
        V::BulkString(b) => {
            out.extend_from_slice(b);
            out.push(b'\n');
        }
        V::SimpleString(t) => {
            out.extend_from_slice(t.as_bytes());
            out.push(b'\n');
        }
        V::Int(n) => out.extend_from_slice(format!("{n}\n").as_bytes()),
        V::Array(items) | V::Set(items) => items.iter().for_each(|v| raw_bytes(v, out)),
        V::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            raw_bytes(k, out);
            raw_bytes(v, out);
        }),
        other => out.extend_from_slice(format!("{other:?}\n").as_bytes()),
    }
}

/// Every key under `prefix` on every node of a cluster.
async fn cluster_dump(urls: &str, prefix: &str) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for url in urls.split(',') {
        all.extend(redis_dump(url, prefix).await);
    }
    all
}

async fn stored_bytes(backend: &Backend) -> Vec<u8> {
    match backend {
        Backend::Redis { url, prefix } => redis_dump(url, prefix)
            .await
            .into_iter()
            .flat_map(|(k, v)| format!("{k}\n{v}\n").into_bytes())
            .collect(),
        Backend::Cluster { urls, prefix } => cluster_dump(urls, prefix)
            .await
            .into_iter()
            .flat_map(|(k, v)| format!("{k}\n{v}\n").into_bytes())
            .collect(),
        Backend::Embedded(path) => {
            let mut all = Vec::new();
            for entry in std::fs::read_dir(path).expect("store folder") {
                let p = entry.expect("entry").path();
                all.extend(std::fs::read(&p).expect("file"));
            }
            all
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// DELETE MY DATA: asked to confirm with two buttons; "Yes" sends one final
/// confirmation, then erases everything about the contact (profile,
/// consent, history, records), keeping only the pseudonymous key on the
/// suppression list and in the audit log; no phone number, name or
/// message text is stored in clear, before or after; a later message
/// starts a fresh contact. "No" keeps everything.
async fn delete_my_data_erases_everything(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505556060";
    let secret_text = "my order number is 48213 and my address is 9 Elm Row";
    // A name long enough that ciphertext cannot contain it by chance.
    let name = "Zelda Quixote-Marlowe";
    let send = async |wamid: &str, text: &str| {
        let mut v: Value =
            serde_json::from_slice(&text_from(wa, wamid, text, now())).expect("json");
        v["entry"][0]["changes"][0]["value"]["contacts"][0]["profile"]["name"] = json!(name);
        let resp = app
            .post_signed(&serde_json::to_vec(&v).expect("json"))
            .await;
        assert_eq!(resp.status(), 200);
    };
    send("wamid.D1", "hi").await;
    until("the welcome", 30, async || {
        told(&graph, wa, "Hi Zelda") == 1
    })
    .await;
    send("wamid.D2", secret_text).await;
    send("wamid.D3", "STOP").await;
    until("the confirmation", 30, async || {
        told(&graph, wa, OPTED_OUT) == 1
    })
    .await;
    // While data is kept: nothing personal in clear in the store.
    let before = stored_bytes(backend).await;
    for needle in [wa, name, "48213", "Elm Row"] {
        assert!(!contains(&before, needle), "{needle:?} stored in clear");
    }

    // "No" keeps everything.
    send("wamid.D4", "delete my data").await;
    until("the question", 30, async || {
        sent_to(&graph, wa).iter().any(|m| {
            m["interactive"]["body"]["text"]
                .as_str()
                .is_some_and(|b| b.contains("Delete everything?"))
        })
    })
    .await;
    let resp = app
        .post_signed(&tap_button(
            wa,
            "wamid.D5",
            "whatsify_erase_no",
            "No, keep it",
        ))
        .await;
    assert_eq!(resp.status(), 200);
    until("kept", 30, async || {
        told(&graph, wa, "Nothing was deleted") == 1
    })
    .await;
    let (status, _) = app.admin_get(&format!("/admin/contacts/{wa}")).await;
    assert_eq!(status, 200);

    // The contact's data key, destroyed by the erasure below.
    let key = contact_key(&app, wa);
    let old_key = app.store().data_key(&key).await.expect("read");
    assert!(old_key.is_some(), "a contact has a data key");
    let old_sealer = app.sealer_of(&key).await;

    // "Yes" erases.
    send("wamid.D6", "Delete my data!").await;
    until("the question again", 30, async || {
        sent_to(&graph, wa)
            .iter()
            .filter(|m| m["type"] == "interactive")
            .count()
            >= 3
    })
    .await;
    let resp = app
        .post_signed(&tap_button(
            wa,
            "wamid.D7",
            "whatsify_erase_yes",
            "Yes, delete it",
        ))
        .await;
    assert_eq!(resp.status(), 200);
    until("the final confirmation", 30, async || {
        told(&graph, wa, "we've deleted your data") == 1
    })
    .await;
    let store = app.store();
    until("erased", 30, async || {
        store.suppressed(&key).await.is_ok_and(|s| s.is_some())
    })
    .await;
    assert!(store.profile(&key).await.expect("profile").is_none());
    assert!(store.consent(&key).await.expect("ledger").is_empty());
    assert!(store.history(&key, 100).await.expect("history").is_empty());
    assert!(store.deliveries(&key).await.expect("records").is_empty());
    assert!(store.windows(&key).await.expect("windows").is_empty());
    assert!(store.session(&key).await.expect("session").is_none());
    assert!(
        store.data_key(&key).await.expect("key").is_none(),
        "the data key is destroyed"
    );
    let (status, _) = app.admin_get(&format!("/admin/contacts/{wa}")).await;
    assert_eq!(status, 404);
    let after = stored_bytes(backend).await;
    for needle in [wa, name, "48213", "Elm Row"] {
        assert!(!contains(&after, needle), "{needle:?} stored in clear");
    }
    let dump = match backend {
        Backend::Redis { url, prefix } => Some(redis_dump(url, prefix).await),
        Backend::Cluster { urls, prefix } => Some(cluster_dump(urls, prefix).await),
        Backend::Embedded(_) => None,
    };
    if let Some(dump) = dump {
        // Only the de-duplication marks (keyed hashes, 8 days) still name
        // the contact's pseudonym.
        let left: Vec<String> = dump
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.contains(key.as_str()) && !k.contains(":seen:"))
            .collect();
        assert!(left.is_empty(), "keys left: {left:?}");
    }
    let (_, log) = app
        .admin_get(&format!("/admin/audit?contact={}", key.as_str()))
        .await;
    let kinds: Vec<&str> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .rev() // the log answers newest first
        .filter_map(|e| e["kind"].as_str())
        .filter(|k| k.starts_with("erasure"))
        .collect();
    assert_eq!(
        kinds,
        [
            "erasure_request",
            "erasure_declined",
            "erasure_request",
            "erasure_confirmed",
            "erasure_completed"
        ]
    );

    // A later message starts afresh: no old consent, no old history.
    send("wamid.D8", "hi").await;
    until("a fresh welcome", 30, async || {
        told(&graph, wa, "Hi Zelda") == 2
    })
    .await;
    assert!(marketing(&app, wa).await.is_empty(), "no old consent");
    let sealer = app.sealer_of(&key).await;
    let inbound: Vec<String> = store
        .history(&key, 100)
        .await
        .expect("history")
        .iter()
        .filter_map(|(_, sealed)| {
            let plain = sealer
                .open(sealed, &whatsify::privacy::export::history_context(&key))
                .ok()?;
            let item: whatsify::privacy::export::HistoryItem =
                serde_json::from_slice(&plain).ok()?;
            (item.direction == whatsify::privacy::export::Direction::In)
                .then(|| item.text.unwrap_or_default())
        })
        .collect();
    assert_eq!(inbound, ["hi"], "only the new message");
    // Under a new data key: the destroyed one opens none of it.
    assert_ne!(store.data_key(&key).await.expect("key"), old_key);
    for (_, sealed) in store.history(&key, 100).await.expect("history") {
        assert!(
            old_sealer
                .open(&sealed, &whatsify::privacy::export::history_context(&key))
                .is_err()
        );
    }
}
both_backends!(erase, delete_my_data_erases_everything);

/// DELETE /admin/contacts/{id}: the support team erases at once.
async fn the_support_team_can_erase(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505556070";
    say_hi(&app, wa, "wamid.X1").await;
    until("the welcome", 30, async || told(&graph, wa, "Hi Ana") == 1).await;
    let delete = |path: String| {
        app.client
            .delete(format!("{}{path}", app.address))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .send()
    };
    let resp = delete(format!("/admin/contacts/{wa}"))
        .await
        .expect("delete");
    assert_eq!(resp.status(), 200);
    let (status, _) = app.admin_get(&format!("/admin/contacts/{wa}")).await;
    assert_eq!(status, 404);
    let resp = delete(format!("/admin/contacts/{wa}"))
        .await
        .expect("delete");
    assert_eq!(resp.status(), 404, "nothing left to erase");
    let unauthorized = app
        .client
        .delete(format!("{}/admin/contacts/{wa}", app.address))
        .send()
        .await
        .expect("delete");
    assert_eq!(unauthorized.status(), 401);
}
both_backends!(admin_erase, the_support_team_can_erase);

/// Today's anonymous counters, as `GET /admin/stats` gives them, and the
/// raw answer.
async fn today_stats(app: &TestApp) -> (Value, String) {
    let resp = app
        .client
        .get(format!("{}/admin/stats", app.address))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .expect("stats");
    assert_eq!(resp.status(), 200);
    let raw = resp.text().await.expect("body");
    let v: Value = serde_json::from_str(&raw).expect("json");
    let today = whatsify::store::stats::today();
    (v["days"][today].clone(), raw)
}

/// Anonymous daily statistics: messages in and out, opt-outs and opt-ins,
/// exports, erasures and flow steps are counted as they happen, outlive the
/// contacts they came from, and name none of them.
async fn anonymous_daily_statistics(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let (ana, bob) = ("16505556081", "16505556082");
    say_hi(&app, ana, "wamid.S1").await;
    until("the welcome", 30, async || !sent_to(&graph, ana).is_empty()).await;
    send(&app, ana, "wamid.S2", "STOP").await;
    until("the opt-out confirmation", 30, async || {
        told(&graph, ana, OPTED_OUT) == 1
    })
    .await;
    send(&app, ana, "wamid.S3", "START").await;
    say_hi(&app, bob, "wamid.S4").await;
    send(&app, bob, "wamid.S5", "my data").await;
    until("the export", 30, async || {
        sent_to(&graph, bob).iter().any(|m| m["type"] == "document")
    })
    .await;
    until("the opt-in confirmation", 30, async || {
        told(&graph, ana, OPTED_IN) == 1
    })
    .await;
    assert_eq!(
        app.admin_delete(&format!("/admin/contacts/{ana}")).await,
        200
    );

    // Every message Meta accepted is counted once (the counter is written
    // with the send's record).
    until("the counters", 30, async || {
        let (day, _) = today_stats(&app).await;
        day["messages_out"].as_u64() == Some(graph.sent().len() as u64)
    })
    .await;
    let (day, raw) = today_stats(&app).await;
    assert_eq!(day["messages_in"], 5, "{day}");
    assert_eq!(day["opt_outs"], 1, "{day}");
    assert_eq!(day["opt_ins"], 1, "{day}");
    assert_eq!(day["exports"], 1, "{day}");
    assert_eq!(day["erasures"], 1, "{day}");
    let welcome_steps = day
        .as_object()
        .expect("counters")
        .iter()
        .filter(|(k, _)| k.starts_with("step:welcome/"))
        .map(|(_, v)| v.as_u64().unwrap_or(0))
        .sum::<u64>();
    assert!(welcome_steps >= 2, "{day}");
    for secret in [
        ana,
        bob,
        "Ana",
        contact_key(&app, ana).as_str(),
        contact_key(&app, bob).as_str(),
    ] {
        assert!(!raw.contains(secret), "{secret:?} in {raw}");
    }

    let (status, _) = app.admin_get("/admin/stats?from=2026-02-30").await;
    assert_eq!(status, 400);
    let (status, _) = app
        .admin_get("/admin/stats?from=2020-01-01&to=2026-01-01")
        .await;
    assert_eq!(status, 400, "too many days");
    let (status, body) = app
        .admin_get("/admin/stats?from=2001-01-01&to=2001-01-31")
        .await;
    assert_eq!((status, body["days"].clone()), (200, json!({})));
}
both_backends!(statistics, anonymous_daily_statistics);

/// The class of a stored key, as the key table at the top of
/// src/store/redis/mod.rs names it (`P{s:N}:c:<contact>:inbox`, …).
fn key_class(key: &str, prefix: &str) -> String {
    let rest = key.strip_prefix(prefix).unwrap_or(key);
    let rules = [
        (r"\{s:\d+\}", "{s:N}"),
        (r"cmp:[0-9a-f]{32}", "cmp:<id>"),
        (r"c:[0-9a-f]{32}", "c:<contact>"),
        (r"seen:[0-9a-zA-Z_-]+$", "seen:<dedup>"),
        (r"stats:\d{4}-\d\d-\d\d$", "stats:<day>"),
        (r"^rate:.*$", "rate:<name>"),
        (r"pin:[a-z_]+$", "pin:<name>"),
    ];
    let mut class = rest.to_owned();
    for (pattern, with) in rules {
        class = regex::Regex::new(pattern)
            .expect("regex")
            .replace_all(&class, with)
            .into_owned();
    }
    format!("P{class}")
}

/// A store seeded with every kind of state (conversations, consent
/// changes, an export, an erasure, a dead letter, statistics, the audit
/// log): every key's class is in the documented key table, and every key
/// expires except the records kept on purpose (consent ledgers, the
/// suppression list, the audit trail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stored_key_has_a_documented_purpose_and_a_time_to_live() {
    let b = crate::helpers::redis();
    let Backend::Redis { url, prefix } = &b.backend else {
        unreachable!()
    };
    let graph = FakeGraph::start().await;
    let app = app_with(
        &b.backend,
        &graph,
        &[("WHATSIFY__OUTBOX__MAX_ATTEMPTS", "2")],
    )
    .await;
    let (ana, bob, cy, dee) = ("16505556091", "16505556092", "16505556093", "16505556094");
    say_hi(&app, ana, "wamid.T1").await;
    send(&app, ana, "wamid.T2", "STOP").await;
    send(&app, ana, "wamid.T3", "START").await;
    say_hi(&app, bob, "wamid.T4").await;
    send(&app, bob, "wamid.T5", "my data").await;
    say_hi(&app, cy, "wamid.T6").await;
    // A customer Meta names by number and business-scoped user id: a link.
    let mut both: Value =
        serde_json::from_slice(&crate::helpers::fixture("messages_bsuid_with_wa_id.json"))
            .expect("json");
    both["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = json!(now().to_string());
    assert_eq!(
        app.post_signed(&serde_json::to_vec(&both).expect("json"))
            .await
            .status(),
        200
    );
    until("the answers", 30, async || {
        told(&graph, ana, OPTED_IN) == 1
            && sent_to(&graph, bob).iter().any(|m| m["type"] == "document")
            && !sent_to(&graph, cy).is_empty()
    })
    .await;
    assert_eq!(
        app.admin_delete(&format!("/admin/contacts/{cy}")).await,
        200
    );
    // A campaign that reached bob (consent recorded by the support team)
    // and skipped a stranger, and one that waits for its time. (Ana's
    // STOP and START came in the same second: the STOP wins.)
    let (status, _) = app
        .admin_post(
            &format!("/admin/contacts/{bob}/consent"),
            &json!({"purpose": "marketing", "granted": true, "reference": "T-1"}),
        )
        .await;
    assert_eq!(status, 200);
    let campaign = |send_at: Option<String>| {
        let mut c = json!({
            "name": "TTL", "phone_number_id": "106540352242922",
            "template": {"name": "ttl_promo", "language": {"code": "en"}},
            "audience": {"wa_ids": [bob, "16505556099"]},
            "opt_out": {"text": true},
        });
        if let Some(at) = send_at {
            c["send_at"] = json!(at);
        }
        c
    };
    let (status, created) = app.admin_post("/admin/campaigns", &campaign(None)).await;
    assert_eq!(status, 202);
    let first = created["id"].as_str().unwrap_or_default().to_owned();
    let (status, _) = app
        .admin_post(
            "/admin/campaigns",
            &campaign(Some("2099-01-01T00:00:00Z".into())),
        )
        .await;
    assert_eq!(status, 400, "more than a year ahead");
    let later = whatsify::clock::now_secs() + 86_400;
    let day = whatsify::store::stats::day(later);
    let (status, _) = app
        .admin_post(
            "/admin/campaigns",
            &campaign(Some(format!("{day}T12:00:00Z"))),
        )
        .await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sent_to(&graph, bob).iter().any(|m| m["type"] == "template") {
        let (_, r) = app.admin_get(&format!("/admin/campaigns/{first}")).await;
        assert!(Instant::now() < deadline, "the campaign message: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A reply Meta keeps refusing until the attempts run out: a dead letter.
    graph.fail_next(&[(500, 131000), (500, 131000)]);
    say_hi(&app, dee, "wamid.T7").await;
    let store = app.store();
    until("the dead letter", 30, async || {
        store.dead_letters(10).await.is_ok_and(|d| !d.is_empty())
    })
    .await;
    // Something still waiting: an entry no worker takes (they stopped).
    app.state.shutdown.trigger();
    tokio::time::sleep(Duration::from_millis(300)).await;
    store
        .append(vec![whatsify::store::InboxEntry {
            queue: whatsify::store::Queue::Contact(contact_key(&app, ana)),
            dedup: "waiting".into(),
            sealed: b"sealed".to_vec(),
            consent: None,
            refused: None,
            key: None,
        }])
        .await
        .expect("append");

    let documented = include_str!("../../src/store/redis/mod.rs");
    let kept = [
        "P{s:N}:c:<contact>:consent",
        "P{s:N}:c:<contact>:link",
        "P{s:N}:c:<contact>:aliases",
        "P{suppressed}",
        "P{audit}:log",
        "P{audit}:head",
        "P{audit}:requests",
        "P{audit}:requests:closed",
        "P{meta}:pin:<name>",
        "P{s:N}:owners",
        "P{s:N}:owned",
    ];
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    let mut classes = std::collections::BTreeMap::<String, (usize, i64)>::new();
    for key in &keys {
        // Milliseconds: a rate limit's mark lives about a second.
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("ttl");
        if ttl == -2 {
            // Expired since KEYS listed it (a rate limit's mark).
            continue;
        }
        let class = key_class(key, prefix);
        let e = classes.entry(class).or_insert((0, ttl));
        e.0 += 1;
        e.1 = e.1.min(ttl);
    }
    println!("key class: count, smallest TTL (ms)");
    for (class, (n, ttl)) in &classes {
        println!("  {class}: {n}, {ttl}");
        assert!(
            documented.contains(&format!("`{class}`")),
            "{class} is not in the key table of src/store/redis/mod.rs"
        );
        if kept.contains(&class.as_str()) {
            assert_eq!(*ttl, -1, "{class} is kept");
        } else {
            assert!(*ttl > 0, "{class} has no time to live");
        }
    }
    for class in [
        "P{s:N}:c:<contact>:inbox",
        "P{s:N}:c:<contact>:key",
        "P{s:N}:c:<contact>:history",
        "P{s:N}:c:<contact>:profile",
        "P{s:N}:c:<contact>:deliveries",
        "P{s:N}:c:<contact>:dead",
        "P{s:N}:stats:<day>",
        "P{s:N}:ready:inbox",
        "P{s:N}:history",
        "P{s:N}:dead",
        "P{suppressed}",
        "P{audit}:log",
        "P{s:N}:c:<contact>:cmp",
        "P{s:N}:c:<contact>:lastcmp",
        "P{s:N}:cmp:<id>",
        "P{cmp:<id>}",
        "P{cmp:<id>}:queue",
        "P{cmp:<id>}:members",
        "P{cmp}:index",
        "P{s:N}:c:<contact>:link",
        "P{s:N}:c:<contact>:aliases",
    ] {
        assert!(classes.contains_key(class), "seeding made no {class}");
    }
}

/// The support team records a consent the customer gave them (source
/// `admin`): on the ledger with its reference, audited as the admin's act,
/// counted; a bad body is refused with what is wrong, and an erased
/// contact cannot be subscribed again.
async fn the_support_team_records_consent(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505556101";
    say_hi(&app, wa, "wamid.A1").await;
    until("the welcome", 30, async || !sent_to(&graph, wa).is_empty()).await;
    let post = async |path: String, body: Value, token: Option<&str>| match token {
        Some(_) => app.admin_post(&path, &body).await,
        None => {
            let resp = app
                .client
                .post(format!("{}{path}", app.address))
                .json(&body)
                .send()
                .await
                .expect("post");
            (resp.status().as_u16(), Value::Null)
        }
    };
    let token = Some(crate::helpers::ADMIN_TOKEN);
    let path = format!("/admin/contacts/{wa}/consent");
    let grant = json!({"purpose": "marketing", "granted": true, "reference": "call #4411"});
    assert_eq!(post(path.clone(), grant.clone(), None).await.0, 401);
    let (status, body) = post(path.clone(), grant, token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"], "admin");
    assert_eq!(
        marketing(&app, wa).await,
        [(true, "admin".to_owned())],
        "on the ledger"
    );
    let ledger = app
        .store()
        .consent(&contact_key(&app, wa))
        .await
        .expect("ledger");
    let by_admin = ledger
        .iter()
        .find(|c| c.purpose == "marketing")
        .expect("the admin's entry");
    assert_eq!(by_admin.evidence.as_deref(), Some("admin:call #4411"));
    let (_, shown) = app.admin_get(&format!("/admin/contacts/{wa}")).await;
    assert_eq!(shown["consent"]["marketing"]["granted"], true, "{shown}");
    let (status, _) = post(
        path.clone(),
        json!({"purpose": "marketing", "granted": false}),
        token,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(granted(&marketing(&app, wa).await), Some(false));

    let (_, log) = app
        .admin_get(&format!(
            "/admin/audit?contact={}",
            contact_key(&app, wa).as_str()
        ))
        .await;
    let by_admin: Vec<&str> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .rev() // the log answers newest first
        .filter(|e| {
            e["actor"] == "admin"
                && e["kind"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("consent_"))
        })
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(by_admin, ["consent_given", "consent_withdrawn"]);
    let (day, _) = today_stats(&app).await;
    assert_eq!(
        (day["opt_ins"].clone(), day["opt_outs"].clone()),
        (json!(1), json!(1))
    );

    for (bad, needle) in [
        (json!({"purpose": "service", "granted": true}), "purpose"),
        (json!({"purpose": "marketing"}), "granted"),
        (json!({"purpose": "marketing", "granted": "yes"}), "granted"),
        (
            json!({"purpose": "marketing", "granted": true, "reference": "x".repeat(101)}),
            "reference",
        ),
        (
            json!({"purpose": "marketing", "granted": true, "email": "a@b.c"}),
            "email",
        ),
    ] {
        let (status, body) = post(path.clone(), bad.clone(), token).await;
        assert_eq!(status, 400, "{bad}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{bad}: {message}");
        assert!(!message.contains("a@b.c"), "no value echoed: {message}");
    }
    assert_eq!(marketing(&app, wa).await.len(), 2, "nothing recorded");

    assert_eq!(
        app.admin_delete(&format!("/admin/contacts/{wa}")).await,
        200
    );
    let (status, body) = post(
        path,
        json!({"purpose": "marketing", "granted": true}),
        token,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(marketing(&app, wa).await.is_empty());
}
both_backends!(admin_consent, the_support_team_records_consent);

/// Meta delivers to whichever instance: a customer's STOP, MY DATA and
/// DELETE MY DATA go through two instances sharing one store, and each is
/// honoured once, whichever instance took it.
async fn privacy_through_two_instances(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let one = app_with(backend, &graph, &[]).await;
    let two = app_with(backend, &graph, &[]).await;
    let wa = "16505556090";
    say_hi(&one, wa, "wamid.T1").await;
    until("the welcome", 30, async || told(&graph, wa, "Hi Ana") == 1).await;
    // Meta retries the STOP to the other instance: one opt-out, confirmed once.
    send(&two, wa, "wamid.T2", "STOP").await;
    send(&one, wa, "wamid.T2", "STOP").await;
    until("the confirmation", 30, async || {
        told(&graph, wa, OPTED_OUT) == 1
    })
    .await;
    assert_eq!(granted(&marketing(&one, wa).await), Some(false));
    assert_eq!(marketing(&two, wa).await.len(), 1, "recorded once");
    send(&one, wa, "wamid.T3", "my data").await;
    until("the document", 30, async || {
        sent_to(&graph, wa).iter().any(|m| m["type"] == "document")
    })
    .await;
    let (status, view) = two.admin_get(&format!("/admin/contacts/{wa}")).await;
    assert_eq!(status, 200, "{view}");

    send(&two, wa, "wamid.T4", "delete my data").await;
    until("the question", 30, async || {
        sent_to(&graph, wa).iter().any(|m| {
            m["interactive"]["body"]["text"]
                .as_str()
                .is_some_and(|b| b.contains("Delete everything?"))
        })
    })
    .await;
    let yes = tap_button(wa, "wamid.T5", "whatsify_erase_yes", "Yes, delete it");
    assert_eq!(one.post_signed(&yes).await.status(), 200);
    assert_eq!(two.post_signed(&yes).await.status(), 200);
    until("the final confirmation", 30, async || {
        told(&graph, wa, "we've deleted your data") == 1
    })
    .await;
    let key = contact_key(&one, wa);
    until("erased", 30, async || {
        one.store()
            .suppressed(&key)
            .await
            .is_ok_and(|s| s.is_some())
    })
    .await;
    for app in [&one, &two] {
        let (status, _) = app.admin_get(&format!("/admin/contacts/{wa}")).await;
        assert_eq!(status, 404);
    }
    assert!(two.store().data_key(&key).await.expect("key").is_none());
    assert_eq!(told(&graph, wa, "we've deleted your data"), 1, "once");
    graph.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_through_two_instances_on_one_redis() {
    let b = crate::helpers::redis();
    privacy_through_two_instances(&b.backend).await;
}

/// The privacy scenarios on a real 3-master Redis Cluster (issue 7, point
/// 4), one of them through two instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_on_a_redis_cluster() {
    let cluster = crate::helpers::RedisCluster::start();
    crate::on_cluster!(
        cluster,
        privacy_through_two_instances,
        stop_and_start_are_recorded_at_once_and_confirmed_once,
        my_data_sends_a_copy_of_everything,
        delete_my_data_erases_everything,
        the_support_team_can_erase,
        privacy_events_are_audited,
        the_support_team_records_consent,
        anonymous_daily_statistics,
    );
}
