//! Legal holds and disclosures (issue 21, point 7), on both stores: an
//! erasure asked while a contact is held waits (the support team gets
//! 202, the customer is told in plain words) and is carried out when the
//! hold is lifted; the retention purge keeps a held contact's history;
//! disclosures to authorities show in the export unless still secret.

use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::graph::FakeGraph;
use crate::helpers::{Backend, TestApp};
use crate::outbox::{app_with, contact_key, now, say_hi, sent_to, text_from, until};
use crate::privacy::{tap_button, told};

/// The first words of what the customer is told when their erasure waits.
const HELD: &str = "We can't delete your data yet: we must keep it for a legal reason.";

/// The kinds of the contact's audit entries, oldest first.
async fn audit_kinds(app: &TestApp, wa: &str) -> Vec<String> {
    let key = contact_key(app, wa);
    let (_, log) = app
        .admin_get(&format!("/admin/audit?contact={}", key.as_str()))
        .await;
    let mut kinds: Vec<String> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect();
    kinds.reverse();
    kinds
}

async fn welcomed(app: &TestApp, graph: &FakeGraph, wa: &str, wamid: &str) {
    say_hi(app, wa, wamid).await;
    until("the welcome", 30, async || told(graph, wa, "Hi Ana") == 1).await;
}

/// DELETE MY DATA confirmed by chat.
async fn customer_confirms_erasure(app: &TestApp, graph: &FakeGraph, wa: &str) {
    let resp = app
        .post_signed(&text_from(wa, "wamid.H3", "delete my data", now()))
        .await;
    assert_eq!(resp.status(), 200);
    until("the question", 30, async || {
        sent_to(graph, wa)
            .iter()
            .any(|m| m["type"] == "interactive")
    })
    .await;
    let yes = tap_button(wa, "wamid.H4", "whatsify_erase_yes", "Yes, delete it");
    assert_eq!(app.post_signed(&yes).await.status(), 200);
}

/// A hold is placed once (409 the second time), listed, and holds back
/// both the support team's erasure (202, nothing erased) and the
/// customer's (told in plain words, nothing erased); lifting it carries
/// out the waiting erasures, each step audited.
async fn a_held_contact_s_erasures_wait_for_the_lift(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505558101";
    welcomed(&app, &graph, wa, "wamid.H1").await;
    let path = format!("/admin/contacts/{wa}/hold");
    let (status, _) = app.admin_get(&path).await;
    assert_eq!(status, 404, "not held yet");
    let hold = json!({"reason": "tax audit of 2025", "reference": "CASE-7"});
    let (status, body) = app.admin_post(&path, &hold).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["hold"]["reference"], "CASE-7");
    let (status, body) = app.admin_post(&path, &hold).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().expect("error").contains("CASE-7"));

    // The support team's erasure waits.
    let (status, body) = app
        .admin_delete_json(&format!("/admin/contacts/{wa}"))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (body["erased"].clone(), body["held"].clone()),
        (json!(false), json!(true))
    );
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("legal hold")
    );
    assert_eq!(app.admin_get(&format!("/admin/contacts/{wa}")).await.0, 200);

    // So does the customer's, who is told why.
    customer_confirms_erasure(&app, &graph, wa).await;
    until("the plain words", 30, async || told(&graph, wa, HELD) == 1).await;
    assert_eq!(told(&graph, wa, "we've deleted your data"), 0);
    let (status, body) = app.admin_get(&path).await;
    assert_eq!(status, 200);
    assert_eq!(body["hold"]["reason"], "tax audit of 2025");
    let waiting = body["waiting_erasures"].as_array().expect("waiting");
    assert_eq!(waiting.len(), 2, "{body}");
    assert_eq!(waiting[0]["asked_by"]["by"], "support");
    assert_eq!(waiting[1]["asked_by"]["by"], "customer");
    let key = contact_key(&app, wa);
    assert!(app.store().profile(&key).await.expect("read").is_some());
    let kinds = audit_kinds(&app, wa).await;
    assert!(kinds.contains(&"hold_placed".to_owned()), "{kinds:?}");
    let held = kinds.iter().filter(|k| *k == "erasure_held").count();
    assert_eq!(held, 2, "{kinds:?}");
    assert!(!kinds.contains(&"erasure_completed".to_owned()));

    // Lifting carries them out.
    let (status, body) = app.admin_delete_json(&path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["erased"], true);
    assert_eq!(body["waiting_erasures"], 2);
    assert_eq!(app.admin_get(&format!("/admin/contacts/{wa}")).await.0, 404);
    assert_eq!(app.admin_get(&path).await.0, 404, "the hold is gone");
    assert!(app.store().profile(&key).await.expect("read").is_none());
    let kinds = audit_kinds(&app, wa).await;
    let tail: Vec<&str> = kinds
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(tail, ["erasure_completed", "hold_lifted"], "{kinds:?}");
    assert_eq!(app.admin_delete_json(&path).await.0, 404, "nothing to lift");
}
both_backends!(erasures_wait, a_held_contact_s_erasures_wait_for_the_lift);

/// The retention purge passes a held contact's history by, and takes it
/// once the hold is lifted; another contact's goes at once.
async fn the_retention_purge_keeps_a_held_contact_s_history(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let (held, free) = ("16505558111", "16505558112");
    welcomed(&app, &graph, held, "wamid.R1").await;
    welcomed(&app, &graph, free, "wamid.R2").await;
    let store = app.store();
    let (held_key, free_key) = (contact_key(&app, held), contact_key(&app, free));
    for key in [&held_key, &free_key] {
        until("the history", 30, async || {
            !store.history(key, 10).await.expect("read").is_empty()
        })
        .await;
    }
    let path = format!("/admin/contacts/{held}/hold");
    let hold = json!({"reason": "court order", "reference": "CO-1"});
    assert_eq!(app.admin_post(&path, &hold).await.0, 201);
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Everything written before now is past a retention of nothing.
    let purge = async || {
        whatsify::privacy::retention::purge(store.as_ref(), Duration::ZERO)
            .await
            .expect("purge")
    };
    purge().await;
    assert!(store.history(&free_key, 10).await.expect("read").is_empty());
    assert!(!store.history(&held_key, 10).await.expect("read").is_empty());
    let kept = whatsify::privacy::hold::keep_held(store.as_ref()).await;
    assert_eq!(kept.expect("kept"), 1, "one contact held");
    assert!(store.profile(&held_key).await.expect("read").is_some());

    let (status, body) = app.admin_delete_json(&path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["erased"], false, "no erasure was waiting");
    purge().await;
    assert!(store.history(&held_key, 10).await.expect("read").is_empty());
    let kept = whatsify::privacy::hold::keep_held(store.as_ref()).await;
    assert_eq!(kept.expect("kept"), 0);
}
both_backends!(
    retention,
    the_retention_purge_keeps_a_held_contact_s_history
);

fn valid_export(doc: &Value) {
    let path = format!("{}/docs/export-schema.json", env!("CARGO_MANIFEST_DIR"));
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("schema")).expect("json");
    let v = jsonschema::validator_for(&schema).expect("validator");
    let errors: Vec<String> = v.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "not a valid export: {errors:#?}");
}

/// Disclosures are recorded (201), listed, and shown in the export (the
/// admin's and the customer's MY DATA copy) unless the law forbids
/// telling the customer yet; bad ones get 400 or 422 with a message.
async fn disclosures_show_in_the_export_unless_secret(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505558121";
    welcomed(&app, &graph, wa, "wamid.D1").await;
    let path = format!("/admin/contacts/{wa}/disclosures");
    let told_one = json!({"what": "order history", "to": "City Police", "legal_basis": "warrant 55/2026", "date": now() - 86_400});
    let (status, body) = app.admin_post(&path, &told_one).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["disclosure"]["to"], "City Police");
    assert!(
        body["disclosure"]["id"]
            .as_str()
            .is_some_and(|i| !i.is_empty())
    );
    let secret = json!({"what": "chat transcript", "to": "Tax Office", "legal_basis": "tax code s.9", "date": "2026-01-15", "secret_until": "2099-01-01"});
    let (status, body) = app.admin_post(&path, &secret).await;
    assert_eq!(status, 201, "{body}");
    let (status, list) = app.admin_get(&path).await;
    assert_eq!(status, 200);
    let list = list["disclosures"].as_array().expect("list").clone();
    assert_eq!(list.len(), 2);
    assert_eq!(
        (list[0]["told"].clone(), list[1]["told"].clone()),
        (json!(true), json!(false))
    );

    let (status, doc) = app.admin_get(&format!("/admin/contacts/{wa}/export")).await;
    assert_eq!(status, 200);
    valid_export(&doc);
    let shown = doc["disclosures"].as_array().expect("disclosures");
    assert_eq!(shown.len(), 1, "the secret one is left out: {shown:?}");
    assert_eq!(shown[0]["to"], "City Police");
    assert_eq!(shown[0]["legal_basis"], "warrant 55/2026");
    assert!(!doc.to_string().contains("Tax Office"));

    // The customer's own copy says the same.
    let resp = app
        .post_signed(&text_from(wa, "wamid.D2", "my data", now()))
        .await;
    assert_eq!(resp.status(), 200);
    until("the document", 30, async || {
        sent_to(&graph, wa).iter().any(|m| m["type"] == "document")
    })
    .await;
    let mine: Value = serde_json::from_slice(&graph.uploads()[0].file).expect("json");
    valid_export(&mine);
    assert_eq!(mine["disclosures"], doc["disclosures"]);

    let kinds = audit_kinds(&app, wa).await;
    let recorded = kinds.iter().filter(|k| *k == "disclosure_recorded").count();
    assert_eq!(recorded, 2, "{kinds:?}");

    // Refused, with a message, and nothing recorded.
    let mut no_to = told_one.clone();
    no_to["to"] = json!(" ");
    for (bad, status, says) in [
        (no_to, 422, "to is required"),
        (
            json!({"what": "x", "to": "y", "legal_basis": "z", "date": "2026-02-30"}),
            422,
            "YYYY-MM-DD",
        ),
        (
            json!({"what": "x", "to": "y", "legal_basis": "z", "date": now() + 86_400}),
            422,
            "future",
        ),
        (
            json!({"what": "x", "to": "y", "legal_basis": "z", "date": "2026-01-02", "secret_until": "2026-01-01"}),
            422,
            "after",
        ),
        (json!("not an object"), 400, "the body must be"),
    ] {
        let (s, body) = app.admin_post(&path, &bad).await;
        assert_eq!(s, status, "{bad}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(says)),
            "{body}"
        );
    }
    let (_, list) = app.admin_get(&path).await;
    assert_eq!(list["disclosures"].as_array().expect("list").len(), 2);
    let hold = format!("/admin/contacts/{wa}/hold");
    let (s, body) = app.admin_post(&hold, &json!({"reason": "audit"})).await;
    assert_eq!(
        (s, body["error"].clone()),
        (422, json!("reference is required"))
    );
    let (s, _) = app
        .admin_post(
            "/admin/contacts/15550000077/hold",
            &json!({"reason": "a", "reference": "b"}),
        )
        .await;
    assert_eq!(s, 404, "nothing is kept about that contact");
}
both_backends!(disclosures, disclosures_show_in_the_export_unless_secret);

/// A hold placed after the customer confirmed DELETE MY DATA, but before
/// the erasure's turn came in their outbox (Meta failing meanwhile), is
/// honoured: nothing is erased, the erasure waits, and the customer is
/// told in plain words after the confirmation they already got.
async fn a_hold_placed_before_the_erasure_s_turn_is_honoured(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(
        backend,
        &graph,
        &[("WHATSIFY__OUTBOX__MAX_ATTEMPTS", "1000")],
    )
    .await;
    let wa = "16505558131";
    welcomed(&app, &graph, wa, "wamid.L1").await;
    let resp = app
        .post_signed(&text_from(wa, "wamid.L2", "delete my data", now()))
        .await;
    assert_eq!(resp.status(), 200);
    until("the question", 30, async || {
        sent_to(&graph, wa)
            .iter()
            .any(|m| m["type"] == "interactive")
    })
    .await;
    // Meta fails: the confirmation stays at the head of the outbox, and
    // the erasure behind it.
    graph.fail_all(Some((500, 131000)));
    let before = graph.requests().len();
    let yes = tap_button(wa, "wamid.L3", "whatsify_erase_yes", "Yes, delete it");
    assert_eq!(app.post_signed(&yes).await.status(), 200);
    until("the confirmation tried and failed", 30, async || {
        graph
            .requests()
            .iter()
            .skip(before)
            .filter(|r| r.status == 500)
            .count()
            >= 2
    })
    .await;
    let hold = json!({"reason": "court order", "reference": "CO-9"});
    let (status, _) = app
        .admin_post(&format!("/admin/contacts/{wa}/hold"), &hold)
        .await;
    assert_eq!(status, 201);
    graph.fail_all(None);
    until("the plain words", 30, async || told(&graph, wa, HELD) == 1).await;
    assert_eq!(
        told(&graph, wa, "we've deleted your data"),
        1,
        "sent before the hold"
    );
    let key = contact_key(&app, wa);
    assert!(app.store().profile(&key).await.expect("read").is_some());
    let (_, body) = app.admin_get(&format!("/admin/contacts/{wa}/hold")).await;
    let waiting = body["waiting_erasures"].as_array().expect("waiting");
    assert_eq!(waiting.len(), 1, "{body}");
    assert_eq!(waiting[0]["asked_by"]["by"], "customer");
}
both_backends!(
    late_hold,
    a_hold_placed_before_the_erasure_s_turn_is_honoured
);

/// The routes work under `/admin/businesses/{business}` too, and removing
/// a business drops its holds and disclosures with its contacts.
async fn removing_a_business_drops_its_holds_and_disclosures(backend: &Backend) {
    use crate::businesses::{CAFE, WA, say, text};
    let graph = FakeGraph::start().await;
    let (app, _flows) = crate::businesses::app(backend, &graph).await;
    say(&app, CAFE, "wamid.O1", text("hello")).await;
    let contact = format!("/admin/businesses/cafe/contacts/{WA}");
    until("the café's contact", 30, async || {
        app.admin_get(&contact).await.0 == 200
    })
    .await;
    let hold = json!({"reason": "court order", "reference": "CO-3"});
    assert_eq!(
        app.admin_post(&format!("{contact}/hold"), &hold).await.0,
        201
    );
    let told = json!({"what": "name", "to": "Police", "legal_basis": "law", "date": "2026-01-01"});
    let disclosures = format!("{contact}/disclosures");
    assert_eq!(app.admin_post(&disclosures, &told).await.0, 201);
    assert_eq!(app.admin_get(&format!("{contact}/hold")).await.0, 200);
    let (_, list) = app.admin_get(&disclosures).await;
    assert_eq!(list["disclosures"].as_array().map(Vec::len), Some(1));
    let store = app.store();
    assert_eq!(store.held().await.expect("held").len(), 1);

    let (status, removal) = app
        .admin_delete_json("/admin/businesses/cafe?confirm=cafe")
        .await;
    assert_eq!(
        (status, removal["status"].clone()),
        (200, json!("removed")),
        "{removal}"
    );
    for kind in ["hold:cafe", "disclosure:cafe"] {
        assert!(
            store.docs(kind).await.expect("docs").is_empty(),
            "{kind} left"
        );
    }
    assert!(store.held().await.expect("held").is_empty());
}
both_backends!(
    offboarding,
    removing_a_business_drops_its_holds_and_disclosures
);
