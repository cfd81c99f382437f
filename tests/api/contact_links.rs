//! One customer, one contact (issue 18, point 5): Meta names a customer by
//! their number (wa_id), their business-scoped user id (BSUID), or both
//! (`fixtures/messages_bsuid_with_wa_id.json`, `messages_bsuid_only.json`,
//! `statuses_bsuid.json`, in the shapes Meta documents). Whichever they
//! send, STOP, MY DATA, DELETE MY DATA, the admin API and campaigns act on
//! one contact.

use serde_json::{Value, json};
use whatsify::domain::{ContactId, ContactKey};
use whatsify::store::{Queue, Resolved};

use crate::both_backends;
use crate::campaigns::{body_for, campaign_app, campaign_sends, create, drained};
use crate::graph::FakeGraph;
use crate::helpers::{Backend, TestApp, fixture, spawn_app};
use crate::outbox::{now, until};

/// A message in Meta's BSUID shapes: with the number too (`contacts[]`
/// has `wa_id` and `user_id`, the message `from` and `from_user_id`), or
/// from the user id only (no `wa_id`, no `from`).
fn message(wa: Option<&str>, user: &str, wamid: &str, kind: Value) -> Vec<u8> {
    let name = match wa {
        Some(_) => "messages_bsuid_with_wa_id.json",
        None => "messages_bsuid_only.json",
    };
    let mut v: Value = serde_json::from_slice(&fixture(name)).expect("json");
    let value = &mut v["entry"][0]["changes"][0]["value"];
    value["contacts"][0]["user_id"] = json!(user);
    value["contacts"][0]["profile"]["name"] = json!("Ana");
    if let Some(wa) = wa {
        value["contacts"][0]["wa_id"] = json!(wa);
        value["messages"][0]["from"] = json!(wa);
    }
    let m = value["messages"][0].as_object_mut().expect("message");
    m.insert("from_user_id".into(), json!(user));
    m.insert("id".into(), json!(wamid));
    m.insert("timestamp".into(), json!(now().to_string()));
    m.remove("text");
    for (k, val) in kind.as_object().expect("kind") {
        m.insert(k.clone(), val.clone());
    }
    serde_json::to_vec(&v).expect("json")
}

fn text(body: &str) -> Value {
    json!({ "type": "text", "text": { "body": body } })
}

fn button(id: &str, title: &str) -> Value {
    json!({ "type": "interactive", "interactive": {
        "type": "button_reply", "button_reply": { "id": id, "title": title } } })
}

/// A `delivered` status addressed by user id only (`statuses_bsuid.json`).
fn status_to_user(user: &str, wamid: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("statuses_bsuid.json")).expect("json");
    let value = &mut v["entry"][0]["changes"][0]["value"];
    value["contacts"][0]["user_id"] = json!(user);
    value["statuses"][0]["recipient_user_id"] = json!(user);
    value["statuses"][0]["id"] = json!(wamid);
    serde_json::to_vec(&v).expect("json")
}

async fn post(app: &TestApp, body: &[u8]) {
    let resp = app.post_signed(body).await;
    assert_eq!(resp.status(), 200);
}

fn key_of(app: &TestApp, wa: Option<&str>, user: Option<&str>) -> ContactKey {
    let id = match (wa, user) {
        (Some(w), _) => ContactId::from_parts(Some(w), None),
        (None, u) => ContactId::from_parts(None, u),
    };
    app.state.pseudonymizer.contact_key(&id.expect("id"))
}

/// What was sent to the customer, by number or by user id.
fn sent_to(graph: &FakeGraph, wa: &str, user: &str) -> Vec<Value> {
    graph
        .sent()
        .into_iter()
        .map(|s| s.body)
        .filter(|b| b["to"] == format!("+{wa}") || b["recipient"] == user)
        .collect()
}

fn said(graph: &FakeGraph, wa: &str, user: &str, needle: &str) -> bool {
    sent_to(graph, wa, user).iter().any(|m| {
        [&m["text"]["body"], &m["interactive"]["body"]["text"]]
            .iter()
            .any(|b| b.as_str().is_some_and(|b| b.contains(needle)))
    })
}

async fn marketing_granted(app: &TestApp, id: &str) -> Value {
    let (status, view) = app.admin_get(&format!("/admin/contacts/{id}")).await;
    assert_eq!(status, 200, "{view}");
    view["consent"]["marketing"]["granted"].clone()
}

/// At ingress (no workers): a status or a message naming only the user
/// id lands in the queue of the contact first seen with the number, with
/// the STOP it carries on that contact's ledger, and nothing is kept
/// under the user id's key; the other way round, a contact first seen by
/// user id keeps its key when the number arrives.
async fn every_event_of_a_customer_goes_to_one_contact(backend: &Backend) {
    let app = spawn_app(backend).await;
    let store = app.store();
    let (wa, user) = ("16505557001", "US.70017001700170017001");
    let (kw, ku) = (key_of(&app, Some(wa), None), key_of(&app, None, Some(user)));
    post(&app, &message(Some(wa), user, "wamid.L1", text("hi"))).await;
    post(&app, &message(None, user, "wamid.L2", text("STOP"))).await;
    post(&app, &status_to_user(user, "wamid.L3")).await;
    assert_eq!(app.entries(&Queue::Contact(kw.clone())).await.len(), 3);
    assert!(app.entries(&Queue::Contact(ku.clone())).await.is_empty());
    let ledger = store.consent(&kw).await.expect("ledger");
    assert_eq!(
        ledger.iter().map(|c| c.granted).collect::<Vec<_>>(),
        [false]
    );
    assert!(store.consent(&ku).await.expect("ledger").is_empty());
    assert_eq!(
        store
            .resolve_contacts(&[kw.clone(), ku.clone()])
            .await
            .expect("resolve"),
        [
            Resolved {
                link: None,
                known: true
            },
            Resolved {
                link: Some(kw.clone()),
                known: false
            }
        ]
    );
    assert_eq!(store.data_key(&ku).await.expect("key"), None, "one contact");

    // Seen first by user id: that contact stays.
    let (wa2, user2) = ("16505557002", "GB.70027002700270027002");
    let (kw2, ku2) = (
        key_of(&app, Some(wa2), None),
        key_of(&app, None, Some(user2)),
    );
    post(&app, &message(None, user2, "wamid.L4", text("hi"))).await;
    post(&app, &message(Some(wa2), user2, "wamid.L5", text("STOP"))).await;
    post(
        &app,
        &crate::outbox::text_from(wa2, "wamid.L6", "hello", now()),
    )
    .await;
    assert_eq!(app.entries(&Queue::Contact(ku2.clone())).await.len(), 3);
    assert!(app.entries(&Queue::Contact(kw2.clone())).await.is_empty());
    assert_eq!(store.consent(&ku2).await.expect("ledger").len(), 1);
    assert_eq!(
        store.aliases(&ku2).await.expect("aliases"),
        std::slice::from_ref(&kw2)
    );
    assert_eq!(
        store.data_key(&kw2).await.expect("key"),
        None,
        "one contact"
    );
    // WhatsApp's own marketing Resume, by number: the same contact's
    // ledger.
    let mut pref: Value =
        serde_json::from_slice(&fixture("user_preferences_resume.json")).expect("json");
    let value = &mut pref["entry"][0]["changes"][0]["value"];
    value["contacts"][0]["wa_id"] = json!(wa2);
    value["user_preferences"][0]["wa_id"] = json!(wa2);
    post(&app, &serde_json::to_vec(&pref).expect("json")).await;
    assert_eq!(app.entries(&Queue::Contact(ku2.clone())).await.len(), 4);
    assert_eq!(store.consent(&ku2).await.expect("ledger").len(), 2);
    // The admin API names the same contact by either id: its view, its
    // delivery records, and a consent the support team records.
    for id in [wa2, user2] {
        let (status, view) = app.admin_get(&format!("/admin/contacts/{id}")).await;
        assert_eq!(status, 200);
        assert_eq!(view["contact"], ku2.as_str());
        let (status, _) = app
            .admin_get(&format!("/admin/contacts/{id}/messages"))
            .await;
        assert_eq!(status, 200);
    }
    let (status, answer) = app
        .admin_post(
            &format!("/admin/contacts/{wa2}/consent"),
            &json!({"purpose": "marketing", "granted": false, "reference": "T-7"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(store.consent(&ku2).await.expect("ledger").len(), 3);
    assert!(store.consent(&kw2).await.expect("ledger").is_empty());
    let (_, log) = app.admin_get(&format!("/admin/audit?contact={wa2}")).await;
    let entries = log["entries"].as_array().expect("entries");
    assert!(entries.iter().any(|e| e["kind"] == "consent_withdrawn"));
    assert!(entries.iter().all(|e| e["contact"] == ku2.as_str()));
}
both_backends!(ingress, every_event_of_a_customer_goes_to_one_contact);

/// A campaign by number to the customer: nothing reaches them (they
/// opted out on the other side).
async fn campaign_sends_nothing(app: &TestApp, graph: &FakeGraph, wa: &str) {
    let id = create(app, &body_for(&[wa.to_owned()], 50)).await;
    let report = drained(app, &id, std::time::Duration::from_secs(30)).await;
    assert!(
        campaign_sends(&graph.sent(), &id).is_empty(),
        "the opted-out customer got the campaign: {report}"
    );
}

/// MY DATA from `side` (the user id only, or the number only): the copy
/// holds what both sides said and lists both ids.
async fn my_data_covers_both(
    app: &TestApp,
    graph: &FakeGraph,
    ids: (&str, &str),
    side: (Option<&str>, &str),
    said_before: &[&str],
) {
    let (wa, user) = ids;
    let (side_wa, side_user) = side;
    let body = match side_wa {
        Some(w) => crate::outbox::text_from(w, "wamid.X-data", "my data", now()),
        None => message(None, side_user, "wamid.X-data", text("my data")),
    };
    post(app, &body).await;
    until("the copy", 60, async || graph.uploads().len() == 1).await;
    let doc: Value = serde_json::from_slice(&graph.uploads()[0].file).expect("json");
    assert_eq!(
        doc["contact"]["ids"],
        json!({ "wa_id": wa, "user_id": user })
    );
    let texts: Vec<&str> = doc["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["direction"] == "in")
        .filter_map(|m| m["text"].as_str())
        .collect();
    for t in said_before.iter().chain(&["my data"]) {
        assert!(texts.contains(t), "{t:?} missing from {texts:?}");
    }
    for id in [wa, user] {
        let (status, admin_doc) = app.admin_get(&format!("/admin/contacts/{id}/export")).await;
        assert_eq!(status, 200);
        assert_eq!(admin_doc["contact"]["ids"], doc["contact"]["ids"]);
    }
}

/// DELETE MY DATA from `side`, confirmed: both ids are erased, their links
/// gone, both on the suppression list, 404 by either id, and the store
/// holds nothing keyed by either.
async fn delete_my_data_erases_both(
    app: &TestApp,
    graph: &FakeGraph,
    backend: &Backend,
    ids: (&str, &str),
    side: Option<&str>,
) {
    let (wa, user) = ids;
    let say = |wamid: &str, kind: Value| match side {
        Some(w) => {
            let mut v: Value =
                serde_json::from_slice(&crate::outbox::text_from(w, wamid, "", now()))
                    .expect("json");
            let m = v["entry"][0]["changes"][0]["value"]["messages"][0]
                .as_object_mut()
                .expect("message");
            m.remove("text");
            for (k, val) in kind.as_object().expect("kind") {
                m.insert(k.clone(), val.clone());
            }
            serde_json::to_vec(&v).expect("json")
        }
        None => message(None, user, wamid, kind),
    };
    post(app, &say("wamid.X-del", text("delete my data"))).await;
    until("the question", 60, async || {
        said(graph, wa, user, "Delete everything?")
    })
    .await;
    post(
        app,
        &say(
            "wamid.X-yes",
            button("whatsify_erase_yes", "Yes, delete it"),
        ),
    )
    .await;
    until("the goodbye", 60, async || {
        said(graph, wa, user, "we've deleted your data")
    })
    .await;
    let store = app.store();
    let (kw, ku) = (key_of(app, Some(wa), None), key_of(app, None, Some(user)));
    let both = [kw.clone(), ku.clone()];
    // The links go last.
    until("both erased", 60, async || {
        store.suppressed(&kw).await.is_ok_and(|s| s.is_some())
            && store.suppressed(&ku).await.is_ok_and(|s| s.is_some())
            && store
                .resolve_contacts(&both)
                .await
                .is_ok_and(|r| r == [Resolved::default(), Resolved::default()])
    })
    .await;
    for id in [wa, user] {
        let (status, _) = app.admin_get(&format!("/admin/contacts/{id}")).await;
        assert_eq!(status, 404, "{id} erased");
    }
    for k in &both {
        assert!(store.aliases(k).await.expect("aliases").is_empty());
        assert!(store.profile(k).await.expect("profile").is_none());
        assert!(store.consent(k).await.expect("ledger").is_empty());
        assert!(store.history(k, 10).await.expect("history").is_empty());
        assert!(store.session(k).await.expect("session").is_none());
    }
    if let Backend::Redis { url, prefix } = backend {
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
        // Only the de-duplication marks (keyed hashes, 8 days) and the
        // campaign's per-recipient pacing mark (a time, gone in seconds)
        // are left.
        let left: Vec<&String> = keys
            .iter()
            .filter(|k| both.iter().any(|c| k.contains(c.as_str())))
            .filter(|k| !k.contains(":seen:") && !k.contains("rate:pair:"))
            .collect();
        assert!(left.is_empty(), "keys left: {left:?}");
    }
    // A later campaign by number is suppressed.
    let id = create(app, &body_for(&[wa.to_owned()], 50)).await;
    drained(app, &id, std::time::Duration::from_secs(30)).await;
    assert!(campaign_sends(&graph.sent(), &id).is_empty());
}

/// First seen with number and user id; then STOP from the user id only:
/// the contact first seen has withdrawn consent, there is one contact, a
/// campaign by number sends nothing; MY DATA from the user-id side holds
/// both sides' messages; DELETE MY DATA from it erases both.
async fn seen_with_both_then_by_user_id_only(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = campaign_app(backend, &graph, &[]).await;
    let (wa, user) = ("16505557011", "US.70117011701170117011");
    post(&app, &message(Some(wa), user, "wamid.A1", text("hi"))).await;
    post(&app, &message(Some(wa), user, "wamid.A2", text("START"))).await;
    assert_eq!(marketing_granted(&app, wa).await, true);
    post(&app, &message(None, user, "wamid.A3", text("STOP"))).await;
    assert_eq!(marketing_granted(&app, wa).await, false);
    assert_eq!(marketing_granted(&app, user).await, false);
    let kw = key_of(&app, Some(wa), None);
    let (_, view) = app.admin_get(&format!("/admin/contacts/{user}")).await;
    assert_eq!(view["contact"], kw.as_str(), "one contact");
    let ku = key_of(&app, None, Some(user));
    assert_eq!(app.store().data_key(&ku).await.expect("key"), None);
    campaign_sends_nothing(&app, &graph, wa).await;
    my_data_covers_both(
        &app,
        &graph,
        (wa, user),
        (None, user),
        &["hi", "START", "STOP"],
    )
    .await;
    delete_my_data_erases_both(&app, &graph, backend, (wa, user), None).await;
}
both_backends!(number_first, seen_with_both_then_by_user_id_only);

/// The reverse order: first seen by user id only, then with both ids; the
/// contact first seen is kept; STOP from the user id, MY DATA and DELETE
/// MY DATA from the number alone act on it.
async fn seen_by_user_id_first_then_with_both(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = campaign_app(backend, &graph, &[]).await;
    let (wa, user) = ("16505557021", "FR.70217021702170217021");
    post(&app, &message(None, user, "wamid.B1", text("hi"))).await;
    post(&app, &message(Some(wa), user, "wamid.B2", text("START"))).await;
    assert_eq!(marketing_granted(&app, wa).await, true);
    // Their consent, recorded on the contact first seen, lets a campaign
    // by number reach them (once).
    let id = create(&app, &body_for(&[wa.to_owned()], 50)).await;
    drained(&app, &id, std::time::Duration::from_secs(30)).await;
    until("the campaign message", 30, async || {
        campaign_sends(&graph.sent(), &id).len() == 1
    })
    .await;
    post(&app, &message(None, user, "wamid.B3", text("STOP"))).await;
    assert_eq!(marketing_granted(&app, wa).await, false);
    let ku = key_of(&app, None, Some(user));
    let (_, view) = app.admin_get(&format!("/admin/contacts/{wa}")).await;
    assert_eq!(view["contact"], ku.as_str(), "the contact first seen");
    let kw = key_of(&app, Some(wa), None);
    assert_eq!(app.store().data_key(&kw).await.expect("key"), None);
    campaign_sends_nothing(&app, &graph, wa).await;
    my_data_covers_both(
        &app,
        &graph,
        (wa, user),
        (Some(wa), user),
        &["hi", "START", "STOP"],
    )
    .await;
    delete_my_data_erases_both(&app, &graph, backend, (wa, user), Some(wa)).await;
}
both_backends!(user_id_first, seen_by_user_id_first_then_with_both);

/// How many times the Redis server ran EXISTS (only the link lookup uses
/// it).
async fn link_lookups(url: &str) -> u64 {
    let client = redis::Client::open(url).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("info");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_exists:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Ingress stays cheap: a customer this instance resolved lately costs
/// no lookup, whichever of their ids a message or status names; a new
/// customer costs one (one pipelined read of the keys it names).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_customer_costs_no_link_lookup() {
    // A server of its own: the count is the whole server's.
    let server = crate::helpers::RedisServer::start();
    let backend = Backend::Redis {
        url: server.url(),
        prefix: "links-cost:".into(),
    };
    let app = spawn_app(&backend).await;
    let (wa, user) = ("16505557031", "US.70317031703170317031");
    post(&app, &message(Some(wa), user, "wamid.C1", text("hi"))).await;
    post(&app, &message(Some(wa), user, "wamid.C2", text("hello"))).await;
    let before = link_lookups(&server.url()).await;
    post(&app, &message(Some(wa), user, "wamid.C3", text("again"))).await;
    post(&app, &message(None, user, "wamid.C4", text("STOP"))).await;
    post(&app, &status_to_user(user, "wamid.C5")).await;
    assert_eq!(link_lookups(&server.url()).await, before, "no lookup");
    let kw = key_of(&app, Some(wa), None);
    assert_eq!(app.entries(&Queue::Contact(kw.clone())).await.len(), 5);
    assert_eq!(app.store().consent(&kw).await.expect("ledger").len(), 1);
    post(
        &app,
        &message(
            Some("16505557032"),
            "US.70327032703270327032",
            "wamid.C6",
            text("hi"),
        ),
    )
    .await;
    assert_eq!(
        link_lookups(&server.url()).await,
        before + 2,
        "one read, two keys"
    );
}
