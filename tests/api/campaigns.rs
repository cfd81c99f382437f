//! Promotional campaigns through the real path: `POST /admin/campaigns`,
//! the dispatcher and the senders of a running server, the fake Graph API,
//! status and STOP webhooks, the report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use whatsify::domain::consent::ConsentChange;
use whatsify::domain::{ContactId, ContactKey};

use crate::conversation::delivery;
use crate::graph::{FakeGraph, Sent};
use crate::helpers::{Backend, TestApp, spawn_app_running};

pub const NUMBER: &str = "106540352242922";

pub async fn campaign_app(
    backend: &Backend,
    graph: &FakeGraph,
    extra: &[(&str, String)],
) -> TestApp {
    let mut env = vec![
        ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
        ("WHATSIFY__META__PHONE_NUMBER_ID", NUMBER.to_owned()),
        ("WHATSIFY__OUTBOX__MESSAGES_PER_SECOND", "1000".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    spawn_app_running(backend, &env, 4).await
}

pub fn key_of(app: &TestApp, wa_id: &str) -> ContactKey {
    let id = ContactId::from_parts(Some(wa_id), None).expect("wa_id");
    app.state.pseudonymizer.contact_key(&id)
}

pub fn consent(granted: bool, at: u64) -> ConsentChange {
    ConsentChange {
        purpose: "marketing".into(),
        granted,
        at,
        source: "admin".into(),
        policy_version: "1".into(),
        evidence: None,
        business: None,
    }
}

/// A campaign body to `wa_ids`, each with its `code` variable.
pub fn body_for(wa_ids: &[String], rate: u32) -> Value {
    json!({
        "name": "Winter sale",
        "template": {"name": "winter_sale", "language": {"code": "en_US"}, "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "{{vars.code}}"}]}
        ]},
        "audience": {"wa_ids": wa_ids.iter().map(|w| json!({"wa_id": w, "vars": {"code": format!("C-{w}")}})).collect::<Vec<_>>()},
        "opt_out": {"button": 1},
        "rate_per_second": rate,
    })
}

pub async fn create(app: &TestApp, body: &Value) -> String {
    let (status, answer) = app.admin_post("/admin/campaigns", body).await;
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().expect("id").to_owned()
}

pub async fn report(app: &TestApp, id: &str) -> Value {
    let (status, r) = app.admin_get(&format!("/admin/campaigns/{id}")).await;
    assert_eq!(status, 200, "{r}");
    r
}

/// Waits (bounded) until nothing of the campaign waits or is queued.
pub async fn drained(app: &TestApp, id: &str, limit: Duration) -> Value {
    drained_at(app, &format!("/admin/campaigns/{id}"), limit).await
}

/// As [`drained`], with the report read at `path`.
pub async fn drained_at(app: &TestApp, path: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, r) = app.admin_get(path).await;
        assert_eq!(status, 200, "{r}");
        if (r["status"] == "dispatched" || r["status"] == "cancelled") && r["queued"] == 0 {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "campaign not drained in {limit:?}: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn campaign_sends<'a>(sent: &'a [Sent], id: &str) -> Vec<&'a Sent> {
    let prefix = format!("cmp.{id}.");
    sent.iter()
        .filter(|s| {
            s.body["biz_opaque_callback_data"]
                .as_str()
                .is_some_and(|j| j.starts_with(&prefix))
        })
        .collect()
}

/// Accepted requests per recipient (digits).
pub fn per_recipient(sends: &[&Sent]) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for s in sends {
        let to = s.body["to"].as_str().unwrap_or("").trim_start_matches('+');
        *by.entry(to.to_owned()).or_insert(0) += 1;
    }
    by
}

fn wa(i: usize) -> String {
    format!("4479{i:08}")
}

async fn a_campaign_reaches_exactly_the_consenting_contacts(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = campaign_app(backend, &graph, &[]).await;
    let store = app.store();
    let now = whatsify::clock::now_secs();
    // 1,000 contacts: 400 granted, 200 never asked (known), 200 withdrawn,
    // 100 erased, 100 never seen.
    let ids: Vec<String> = (0..1000).map(wa).collect();
    let mut expected = HashSet::new();
    for (i, w) in ids.iter().enumerate() {
        let k = key_of(&app, w);
        match i % 10 {
            0..=3 => {
                store
                    .append_consent(&k, consent(true, now - 60))
                    .await
                    .expect("consent");
                expected.insert(w.clone());
            }
            4 | 5 => {
                store
                    .create_data_key(
                        &k,
                        app.state.keyring.new_data_key(&k).expect("key").1,
                        Duration::from_secs(3600),
                    )
                    .await
                    .expect("key");
            }
            6 | 7 => {
                store
                    .append_consent(&k, consent(true, now - 60))
                    .await
                    .expect("consent");
                store
                    .append_consent(&k, consent(false, now - 30))
                    .await
                    .expect("consent");
            }
            8 => {
                store
                    .append_consent(&k, consent(true, now - 60))
                    .await
                    .expect("consent");
                store
                    .erase(
                        &k,
                        &whatsify::domain::BusinessId::default_business(),
                        now - 10,
                    )
                    .await
                    .expect("erase");
            }
            _ => {}
        }
    }
    let started = Instant::now();
    let id = create(&app, &body_for(&ids, 500)).await;
    let accepted_in = started.elapsed();
    let r = drained(&app, &id, Duration::from_secs(60)).await;
    let sent = graph.sent();
    let sends = campaign_sends(&sent, &id);
    let by = per_recipient(&sends);
    // Exactly the consenting contacts, once each.
    assert_eq!(by.len(), 400, "{r}");
    assert!(
        by.values().all(|n| *n == 1),
        "a contact got the campaign twice"
    );
    assert_eq!(by.keys().cloned().collect::<HashSet<_>>(), expected);
    // Filled in per contact, with the opt-out quick reply's payload.
    for s in &sends {
        let to = s.body["to"].as_str().unwrap_or("").trim_start_matches('+');
        let t = &s.body["template"];
        assert_eq!(s.body["type"], "template");
        assert_eq!(t["name"], "winter_sale");
        assert_eq!(
            t["components"][0]["parameters"][0]["text"],
            format!("C-{to}")
        );
        assert_eq!(t["components"][1]["sub_type"], "quick_reply");
        assert_eq!(
            t["components"][1]["parameters"][0]["payload"],
            "stop_promotions"
        );
    }
    // The report's totals agree with what the Graph API received.
    assert_eq!(r["targeted"], 1000, "{r}");
    assert_eq!(r["sent"], sends.len(), "{r}");
    assert_eq!(r["skipped"]["no_consent"], 200, "{r}");
    assert_eq!(r["skipped"]["opted_out"], 200, "{r}");
    assert_eq!(r["skipped"]["suppressed"], 100, "{r}");
    assert_eq!(r["skipped"]["unknown"], 100, "{r}");
    assert_eq!(r["waiting"], 0, "{r}");
    assert_eq!(r["failed"], json!({}), "{r}");
    // The contacts' delivery records name the campaign job.
    let (_, msgs) = app
        .admin_get(&format!("/admin/contacts/{}/messages", ids[0]))
        .await;
    assert!(msgs.to_string().contains(&format!("cmp.{id}.")), "{msgs}");
    eprintln!("1,000-contact campaign accepted in {accepted_in:?}");
    app.stop().await;
}
crate::both_backends!(
    a_campaign_reaches_exactly_the_consenting_contacts_,
    a_campaign_reaches_exactly_the_consenting_contacts
);

/// A status webhook for one accepted message.
pub fn status(s: &Sent, wamid: &str, state: &str, code: Option<i64>) -> Vec<u8> {
    let mut st = json!({
        "id": wamid, "status": state,
        "timestamp": whatsify::clock::now_secs().to_string(),
        "recipient_id": s.body["to"].as_str().unwrap_or("").trim_start_matches('+'),
        "biz_opaque_callback_data": s.body["biz_opaque_callback_data"],
    });
    if let Some(c) = code {
        st["errors"] = json!([{ "code": c, "title": "Message failed to send because more than 24 hours have passed", "message": "x", "error_data": {"details": "x"} }]);
    }
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "240017555501234", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550001111", "phone_number_id": NUMBER },
            "statuses": [st]
        }}]}]
    }))
    .expect("json")
}

fn text(body: &str) -> Value {
    json!({ "type": "text", "text": { "body": body } })
}

/// Waits (bounded) until `cond` holds for the report.
async fn report_until(app: &TestApp, id: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = report(app, id).await;
        if cond(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "{what}: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stop_mid_campaign_statuses_and_opt_outs(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = campaign_app(backend, &graph, &[]).await;
    let store = app.store();
    let now = whatsify::clock::now_secs();
    let ids: Vec<String> = (0..40).map(|i| format!("4478{i:08}")).collect();
    for w in &ids {
        store
            .append_consent(&key_of(&app, w), consent(true, now - 60))
            .await
            .expect("consent");
    }
    // 4 a second: about 10 s to drain.
    let id = create(&app, &body_for(&ids, 4)).await;
    let first = graph.wait_for(3).await;
    let got: Vec<String> = first
        .iter()
        .map(|s| {
            s.body["to"]
                .as_str()
                .unwrap_or("")
                .trim_start_matches('+')
                .to_owned()
        })
        .collect();
    // One who has not had it yet sends STOP: they never get it.
    let stopper = ids
        .iter()
        .rev()
        .find(|w| !got.contains(w))
        .expect("one left")
        .clone();
    assert_eq!(
        app.post_signed(&delivery(&stopper, "Stopper", "wamid.STOP1", text("STOP")))
            .await
            .status(),
        200
    );
    // Two who got it opt out: a STOP reply and the "Stop promotions" tap.
    assert_eq!(
        app.post_signed(&delivery(&got[0], "A", "wamid.STOP2", text("stop")))
            .await
            .status(),
        200
    );
    let tap = json!({ "type": "button", "button": { "payload": "stop_promotions", "text": "Stop promotions" },
                      "context": { "from": "15550001111", "id": "wamid.FAKE00000001" } });
    assert_eq!(
        app.post_signed(&delivery(&got[1], "B", "wamid.STOP3", tap))
            .await
            .status(),
        200
    );
    // Status webhooks move the counters: delivered and read for the first,
    // a failure for the third.
    let wamid = |i: usize| format!("wamid.FAKE{i:08}");
    for (i, s) in first.iter().take(3).enumerate() {
        let (state, code) = match i {
            0 => ("read", None),
            1 => ("delivered", None),
            _ => ("failed", Some(131049)),
        };
        assert_eq!(
            app.post_signed(&status(s, &wamid(i), state, code))
                .await
                .status(),
            200
        );
    }
    // A duplicate of the read status changes nothing.
    assert_eq!(
        app.post_signed(&status(&first[0], &wamid(0), "read", None))
            .await
            .status(),
        200
    );
    drained(&app, &id, Duration::from_secs(60)).await;
    let sent = graph.sent();
    let sends = campaign_sends(&sent, &id);
    let by = per_recipient(&sends);
    assert!(
        !by.contains_key(&stopper),
        "the contact who sent STOP got the campaign"
    );
    assert_eq!(by.len(), 39);
    assert!(by.values().all(|n| *n == 1));
    let r = report_until(&app, &id, "statuses and opt-outs counted", |r| {
        r["opt_outs"] == 2 && r["read"] == 1 && r["failed"]["131049"] == 1
    })
    .await;
    assert_eq!(r["sent"], 39, "{r}");
    assert_eq!(r["delivered"], 2, "{r}");
    assert_eq!(r["skipped"]["opted_out"], 1, "{r}");
    assert_eq!(r["targeted"], 40);
    app.stop().await;
}
crate::both_backends!(
    stop_mid_campaign_statuses_and_opt_outs_,
    stop_mid_campaign_statuses_and_opt_outs
);

async fn bad_requests_are_refused_with_what_is_wrong(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = campaign_app(backend, &graph, &[]).await;
    let good = body_for(&["447900000001".to_owned()], 5);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": "x"}), "missing field `template`"),
        (
            {
                let mut b = good.clone();
                b["rate_per_second"] = json!(5000);
                b
            },
            "rate_per_second must be 1 to 800",
        ),
        (
            {
                let mut b = good.clone();
                b["audience"] = json!({"wa_ids": ["+44 79"]});
                b
            },
            "audience.wa_ids[0]",
        ),
        (
            {
                let mut b = good.clone();
                b["send_at"] = json!("next week");
                b
            },
            "send_at must be an RFC 3339",
        ),
        (
            {
                let mut b = good.clone();
                b.as_object_mut().map(|o| o.remove("opt_out"));
                b
            },
            "opt_out must say",
        ),
    ];
    for (body, want) in cases {
        let (status, answer) = app.admin_post("/admin/campaigns", &body).await;
        assert_eq!(status, 400, "{answer}");
        let e = answer["error"].as_str().unwrap_or("");
        assert!(e.contains(want), "{e}");
        assert!(!e.contains("+44 79") && !e.contains("next week"), "{e}");
    }
    let (status, _) = app.admin_get("/admin/campaigns/0123abcd").await;
    assert_eq!(status, 404);
    let unauth = app
        .client
        .post(format!("{}/admin/campaigns", app.address))
        .json(&good)
        .send()
        .await
        .expect("sent");
    assert_eq!(unauth.status(), 401);
    let (_, list) = app.admin_get("/admin/campaigns").await;
    assert_eq!(list["campaigns"], json!([]), "nothing was stored");
    app.stop().await;
}
crate::both_backends!(
    bad_requests_are_refused_with_what_is_wrong_,
    bad_requests_are_refused_with_what_is_wrong
);

/// Contacts who wrote in (a profile with their name and number): the
/// consenting ones get `{{contact.name}}`; a campaign sent later waits for
/// its time.
async fn every_consenting_contact_and_a_scheduled_start(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = campaign_app(backend, &graph, &[]).await;
    let people = [
        ("447700000001", "Ana", true),
        ("447700000002", "Bo", true),
        ("447700000003", "Cy", false),
    ];
    for (i, (w, name, yes)) in people.iter().enumerate() {
        let msg = if *yes { "START" } else { "hi" };
        assert_eq!(
            app.post_signed(&delivery(w, name, &format!("wamid.IN{i}"), text(msg)))
                .await
                .status(),
            200
        );
    }
    // Their answers are out, so their profiles are written.
    graph.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = graph.sent().len();
    let at = whatsify::clock::now_secs() + 3600;
    let send_at = time_text(at);
    let body = json!({
        "name": "Everyone",
        "template": {"name": "hello_all", "language": {"code": "en"}, "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "{{contact.name}}"}]}]},
        "audience": {"all_consenting": true},
        "opt_out": {"text": true},
        "send_at": send_at,
    });
    let id = create(&app, &body).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = report(&app, &id).await;
    assert_eq!(r["status"], "scheduled", "{r}");
    assert_eq!(r["targeted"], 2, "{r}");
    assert_eq!(graph.sent().len(), before, "nothing goes before send_at");
    app.clock.advance(3601);
    drained(&app, &id, Duration::from_secs(30)).await;
    let sent = graph.sent();
    let sends = campaign_sends(&sent, &id);
    let names: BTreeMap<String, String> = sends
        .iter()
        .map(|s| {
            (
                s.body["to"].as_str().unwrap_or("").to_owned(),
                s.body["template"]["components"][0]["parameters"][0]["text"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        names,
        BTreeMap::from([
            ("+447700000001".to_owned(), "Ana".to_owned()),
            ("+447700000002".to_owned(), "Bo".to_owned())
        ])
    );
    app.stop().await;
}
crate::both_backends!(
    every_consenting_contact_and_a_scheduled_start_,
    every_consenting_contact_and_a_scheduled_start
);

/// RFC 3339 (UTC) of a Unix time.
fn time_text(secs: u64) -> String {
    let day = whatsify::store::stats::day(secs);
    let s = secs % 86_400;
    format!("{day}T{:02}:{:02}:{:02}Z", s / 3600, s % 3600 / 60, s % 60)
}

/// While a 10,000-contact campaign drains, a customer's "hi" is answered
/// at once (not behind the campaign), and cancelling stops the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_keep_their_pace_while_a_big_campaign_drains_and_cancel_stops_it() {
    let b = crate::helpers::redis();
    let graph = FakeGraph::start().await;
    let app = campaign_app(&b.backend, &graph, &[]).await;
    let store = app.store();
    let now = whatsify::clock::now_secs();
    let ids: Vec<String> = (0..10_000).map(|i| format!("4475{i:08}")).collect();
    for w in &ids {
        store
            .append_consent(&key_of(&app, w), consent(true, now - 60))
            .await
            .expect("consent");
    }
    let started = Instant::now();
    let id = create(&app, &body_for(&ids, 200)).await;
    let accepted = started.elapsed();
    graph.wait_for(200).await;
    let mut latencies = Vec::new();
    for i in 0..5 {
        let customer = format!("4476000000{i:02}");
        let before = graph.sent().len();
        let t = Instant::now();
        assert_eq!(
            app.post_signed(&delivery(
                &customer,
                "Chatty",
                &format!("wamid.HI{i}"),
                text("hi")
            ))
            .await
            .status(),
            200
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sent = graph.sent();
            if sent[before..]
                .iter()
                .any(|s| s.body["to"] == format!("+{customer}"))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no reply while the campaign drains"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = report(&app, &id).await;
    // The replies went out while most of the campaign still waited: they
    // were not queued behind it.
    assert!(r["waiting"].as_u64().unwrap_or(0) > 5_000, "{r}");
    let resp = app
        .client
        .delete(format!("{}/admin/campaigns/{id}", app.address))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .expect("sent");
    let status = resp.status().as_u16();
    let cancelled: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let r = drained(&app, &id, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent_after = campaign_sends(&graph.sent(), &id).len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        campaign_sends(&graph.sent(), &id).len(),
        sent_after,
        "sent after cancel"
    );
    let r2 = report(&app, &id).await;
    let skipped: i64 = r2["skipped"]
        .as_object()
        .map(|o| o.values().filter_map(Value::as_i64).sum())
        .unwrap_or(0);
    assert_eq!(
        r2["sent"].as_i64().unwrap_or(0) + r2["cancelled"].as_i64().unwrap_or(0) + skipped,
        10_000,
        "every contact is sent, cancelled or skipped: {r2}"
    );
    assert_eq!(r2["sent"].as_u64(), Some(sent_after as u64), "{r} {r2}");
    eprintln!(
        "10,000-contact campaign accepted in {accepted:?}; reply latencies during the drain: {latencies:?}"
    );
    app.stop().await;
}

/// A tag audience: the contacts a flow tagged, whatever their consent
/// (the ones without it are skipped and counted); untagged contacts are
/// not in it.
async fn a_tag_audience_is_the_tagged_contacts(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = campaign_app(
        backend,
        &graph,
        &[("WHATSIFY__FLOWS__DIR", "tests/flows/tags".to_owned())],
    )
    .await;
    let (ann, ben, cat) = ("447711000001", "447711000002", "447711000003");
    let says = [(ann, "vip"), (ann, "START"), (ben, "vip"), (cat, "START")];
    for (i, (w, t)) in says.iter().enumerate() {
        assert_eq!(
            app.post_signed(&delivery(w, "Tagged", &format!("wamid.TG{i}"), text(t)))
                .await
                .status(),
            200
        );
        // In order: the tag is set before the next message is read.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while graph
        .sent()
        .iter()
        .filter(|s| s.body["type"] == "text")
        .count()
        < 4
    {
        assert!(Instant::now() < deadline, "the answers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = json!({
        "name": "VIP night",
        "template": {"name": "vip_night", "language": {"code": "en_GB"}, "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "{{vars.level}}"}]}]},
        "audience": {"tags": ["vip"]},
        "opt_out": {"button": 0},
    });
    let id = create(&app, &body).await;
    let r = drained(&app, &id, Duration::from_secs(30)).await;
    let sent = graph.sent();
    let sends = campaign_sends(&sent, &id);
    let to: Vec<&str> = sends.iter().filter_map(|s| s.body["to"].as_str()).collect();
    assert_eq!(to, vec![format!("+{ann}").as_str()], "{r}");
    // The variable of the conversation under way (the flow waits for an
    // answer).
    assert_eq!(
        sends[0].body["template"]["components"][0]["parameters"][0]["text"],
        "gold"
    );
    assert_eq!(r["targeted"], 2, "{r}");
    assert_eq!(r["skipped"]["no_consent"], 1, "{r}");
    assert_eq!(r["sent"], 1, "{r}");
    let _ = cat;
    app.stop().await;
}
crate::both_backends!(
    a_tag_audience_is_the_tagged_contacts_,
    a_tag_audience_is_the_tagged_contacts
);

/// A contact erased while a scheduled campaign waits leaves its audience
/// at once (their number goes with the rest of their data), counted as
/// skipped; the others still get it.
async fn an_erasure_removes_the_contact_from_waiting_campaigns(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = campaign_app(backend, &graph, &[]).await;
    let store = app.store();
    let now = whatsify::clock::now_secs();
    let (gone, stays) = ("447722000001".to_owned(), "447722000002".to_owned());
    for w in [&gone, &stays] {
        store
            .append_consent(&key_of(&app, w), consent(true, now - 60))
            .await
            .expect("consent");
    }
    let mut body = body_for(&[gone.clone(), stays.clone()], 5);
    body["send_at"] = json!(time_text(now + 600));
    let id = create(&app, &body).await;
    assert_eq!(report(&app, &id).await["waiting"], 2);
    assert_eq!(
        app.admin_delete(&format!("/admin/contacts/{gone}")).await,
        200
    );
    let r = report(&app, &id).await;
    assert_eq!(r["waiting"], 1, "{r}");
    assert_eq!(r["skipped"]["suppressed"], 1, "{r}");
    app.clock.advance(601);
    let r = drained(&app, &id, Duration::from_secs(30)).await;
    let sent = graph.sent();
    let by = per_recipient(&campaign_sends(&sent, &id));
    assert_eq!(by.keys().collect::<Vec<_>>(), [&stays], "{r}");
    assert_eq!(r["targeted"], 2);
    assert_eq!(r["sent"], 1);
    assert_eq!(r["skipped"]["suppressed"], 1, "{r}");
    app.stop().await;
}
crate::both_backends!(
    an_erasure_removes_the_contact_from_waiting_campaigns_,
    an_erasure_removes_the_contact_from_waiting_campaigns
);

/// A STOP that arrives after the message was queued, before it could go
/// (Meta was failing, so it waited to be retried): the sender's check
/// right before the request stops it.
async fn a_stop_after_queueing_is_honoured_right_before_the_send(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = campaign_app(
        backend,
        &graph,
        &[("WHATSIFY__OUTBOX__RETRY_BASE", "2s".to_owned())],
    )
    .await;
    let now = whatsify::clock::now_secs();
    let who = "447733000001".to_owned();
    app.store()
        .append_consent(&key_of(&app, &who), consent(true, now - 60))
        .await
        .expect("consent");
    graph.fail_all(Some((500, 131000)));
    let id = create(&app, &body_for(std::slice::from_ref(&who), 5)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while graph.requests().is_empty() {
        assert!(Instant::now() < deadline, "no attempt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = report(&app, &id).await;
    assert_eq!(r["queued"], 1, "dispatched, waiting for a retry: {r}");
    assert_eq!(
        app.post_signed(&delivery(&who, "Late", "wamid.LATE", text("STOP")))
            .await
            .status(),
        200
    );
    graph.fail_all(None);
    let r = drained(&app, &id, Duration::from_secs(60)).await;
    assert!(
        campaign_sends(&graph.sent(), &id).is_empty(),
        "sent after STOP"
    );
    assert_eq!(r["skipped"]["opted_out"], 1, "{r}");
    assert_eq!(r["sent"], 0, "{r}");
    app.stop().await;
}
crate::both_backends!(
    a_stop_after_queueing_is_honoured_right_before_the_send_,
    a_stop_after_queueing_is_honoured_right_before_the_send
);

/// The campaign scenarios on a real 3-master Redis Cluster (issue 7, point 4):
/// audiences by tag and by consent walk every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaigns_on_a_redis_cluster() {
    let cluster = crate::helpers::RedisCluster::start();
    crate::on_cluster!(
        cluster,
        a_campaign_reaches_exactly_the_consenting_contacts,
        stop_mid_campaign_statuses_and_opt_outs,
        bad_requests_are_refused_with_what_is_wrong,
        every_consenting_contact_and_a_scheduled_start,
        a_tag_audience_is_the_tagged_contacts,
        an_erasure_removes_the_contact_from_waiting_campaigns,
        a_stop_after_queueing_is_honoured_right_before_the_send,
    );
}
