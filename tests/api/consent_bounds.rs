//! What a customer can make us keep forever is bounded: a STOP or START
//! that changes nothing is answered as before (once in 24 hours) but adds
//! nothing to the consent ledger or the audit log (issue 18, point 3).

use serde_json::{Value, json};

use whatsify::domain::consent::GRANTS_PER_DAY;

use crate::both_backends;
use crate::graph::FakeGraph;
use crate::helpers::{Backend, TestApp};
use crate::outbox::{app_with, sent_to, text_from, until};
use crate::privacy::told;

const OPTED_OUT: &str = "won't get promotions";
const OPTED_IN: &str = "our offers again";

/// One delivery carrying the text `body` in each of `wamids`, sent at
/// `sent_at`, as Meta batches a customer's messages.
fn batch(wa: &str, wamids: &[String], body: &str, sent_at: u64) -> Vec<u8> {
    let messages: Vec<Value> = wamids
        .iter()
        .map(|id| {
            json!({ "from": wa, "id": id, "timestamp": sent_at.to_string(),
                    "type": "text", "text": { "body": body } })
        })
        .collect();
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "240017555501234", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550001111", "phone_number_id": "106540352242922" },
            "contacts": [{ "profile": { "name": "Ana" }, "wa_id": wa }],
            "messages": messages
        }}]}]
    }))
    .expect("json")
}

async fn post(app: &TestApp, body: &[u8]) {
    let resp = app.post_signed(body).await;
    assert_eq!(resp.status(), 200);
}

/// `n` copies of `text`: in three batched deliveries of a quarter each,
/// and the rest one by one; every message has its own id.
async fn repeat(app: &TestApp, wa: &str, tag: &str, text: &str, n: usize, sent_at: u64) {
    let ids: Vec<String> = (0..n).map(|i| format!("wamid.{tag}{i:04}")).collect();
    let quarter = n / 4;
    for part in ids[..3 * quarter].chunks(quarter.max(1)) {
        post(app, &batch(wa, part, text, sent_at)).await;
    }
    for id in &ids[3 * quarter..] {
        post(app, &text_from(wa, id, text, sent_at)).await;
    }
}

/// The marketing entries of the ledger `GET /admin/contacts/{wa}` shows.
async fn ledger(app: &TestApp, wa: &str) -> Vec<bool> {
    let (status, body) = app.admin_get(&format!("/admin/contacts/{wa}")).await;
    assert_eq!(status, 200, "{body}");
    body["ledger"]
        .as_array()
        .expect("ledger")
        .iter()
        .filter(|e| e["purpose"] == "marketing")
        .map(|e| e["granted"].as_bool().expect("granted"))
        .collect()
}

/// How many audit entries of `kind` `GET /admin/audit` shows for `wa`.
async fn audited(app: &TestApp, wa: &str, kind: &str) -> usize {
    let (status, log) = app
        .admin_get(&format!("/admin/audit?contact={wa}&kind={kind}"))
        .await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log["chain"]["intact"], true, "{log}");
    log["entries"].as_array().expect("entries").len()
}

/// The greetings sent to `wa` (the welcome flow's answer to "hi").
fn greeted(graph: &FakeGraph, wa: &str) -> usize {
    sent_to(graph, wa)
        .iter()
        .filter(|m| {
            [&m["text"]["body"], &m["interactive"]["body"]["text"]]
                .iter()
                .any(|b| b.as_str().is_some_and(|b| b.contains("Hi Ana")))
        })
        .count()
}

/// Waits until everything `wa` sent so far was answered: a "hi" after it
/// is answered (a contact's replies go out in order).
async fn settled(app: &TestApp, graph: &FakeGraph, wa: &str, wamid: &str, at: u64) {
    let before = greeted(graph, wa);
    post(app, &text_from(wa, wamid, "hi", at)).await;
    until("the answer to hi", 60, async || greeted(graph, wa) > before).await;
}

async fn two_hundred_stops_append_once(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505557001";
    let t = whatsify::clock::now_secs() - 60;
    repeat(&app, wa, "STOP", "STOP", 200, t).await;
    settled(&app, &graph, wa, "wamid.HI1", t + 1).await;
    assert_eq!(ledger(&app, wa).await, [false], "one ledger entry");
    assert_eq!(audited(&app, wa, "consent_withdrawn").await, 1);
    assert_eq!(told(&graph, wa, OPTED_OUT), 1, "confirmed once");

    // START changes it, once.
    post(&app, &text_from(wa, "wamid.START", "START", t + 2)).await;
    assert_eq!(ledger(&app, wa).await, [false, true]);
    assert_eq!(audited(&app, wa, "consent_given").await, 1);
    // Repeated, it changes nothing, in the same second or later.
    repeat(&app, wa, "AGAIN", "START", 20, t + 2).await;
    repeat(&app, wa, "LATER", "START", 20, t + 3).await;
    settled(&app, &graph, wa, "wamid.HI2", t + 4).await;
    assert_eq!(ledger(&app, wa).await, [false, true], "nothing appended");
    assert_eq!(audited(&app, wa, "consent_given").await, 1);
    assert_eq!(audited(&app, wa, "consent_withdrawn").await, 1);
    assert_eq!(told(&graph, wa, OPTED_IN), 1, "confirmed once");
    assert_eq!(told(&graph, wa, OPTED_OUT), 1);
    graph.stop().await;
}
both_backends!(repeated_stops, two_hundred_stops_append_once);

/// MY DATA sent over and over: one copy (one upload, one request and one
/// completion in the audit log); each repeat within a day is told the copy
/// stands. DELETE MY DATA asked and let lapse over and over: the question
/// every time, one request and one decline in the audit log.
async fn repeated_requests_are_audited_once(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505557002";
    let t = whatsify::clock::now_secs() - 60;
    post(&app, &text_from(wa, "wamid.MD0", "MY DATA", t)).await;
    until("the copy", 60, async || graph.uploads().len() == 1).await;
    repeat(&app, wa, "MD", "MY DATA", 8, t + 1).await;
    settled(&app, &graph, wa, "wamid.HI3", t + 2).await;
    assert_eq!(told(&graph, wa, "ask for a new copy tomorrow"), 8);
    assert_eq!(graph.uploads().len(), 1, "one copy");
    assert_eq!(audited(&app, wa, "export_request").await, 1);
    assert_eq!(audited(&app, wa, "export_completed").await, 1);

    let asked = || {
        sent_to(&graph, wa)
            .iter()
            .filter(|m| {
                m["interactive"]["body"]["text"]
                    .as_str()
                    .is_some_and(|b| b.contains("Delete everything?"))
            })
            .count()
    };
    for i in 0..6u64 {
        let at = t + 10 + 2 * i;
        post(
            &app,
            &text_from(wa, &format!("wamid.DEL{i}"), "DELETE MY DATA", at),
        )
        .await;
        // Any other message lets the request lapse.
        settled(&app, &graph, wa, &format!("wamid.LAPSE{i}"), at + 1).await;
    }
    assert_eq!(asked(), 6, "asked every time");
    assert_eq!(audited(&app, wa, "erasure_request").await, 1);
    assert_eq!(audited(&app, wa, "erasure_declined").await, 1);
    graph.stop().await;
}
both_backends!(repeated_requests, repeated_requests_are_audited_once);

/// A repeated STOP is not on record, yet a START sent in its very second
/// still loses to it (in doubt, no marketing), as it would have when every
/// STOP was recorded.
async fn a_start_in_the_second_of_a_repeated_stop_loses(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505557003";
    let t = whatsify::clock::now_secs() - 60;
    post(&app, &text_from(wa, "wamid.W1", "STOP", t)).await;
    post(&app, &text_from(wa, "wamid.W2", "STOP", t + 5)).await;
    post(&app, &text_from(wa, "wamid.W3", "START", t + 5)).await;
    settled(&app, &graph, wa, "wamid.W4", t + 6).await;
    let key = crate::outbox::contact_key(&app, wa);
    let entries = app.store().consent(&key).await.expect("ledger");
    assert!(
        !whatsify::privacy::consent::granted(&entries, "marketing"),
        "{entries:?}"
    );
    graph.stop().await;
}
both_backends!(same_second, a_start_in_the_second_of_a_repeated_stop_loses);

/// The promotions flow's "Yes, send offers", tapped again and again: one
/// ledger entry and one `consent_given` in the audit log.
async fn a_repeated_flow_opt_in_appends_once(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505557004";
    let t = whatsify::clock::now_secs() - 60;
    for i in 0..4u64 {
        let asked = |g: &FakeGraph| {
            sent_to(g, wa)
                .iter()
                .filter(|m| m["type"] == "interactive")
                .count()
        };
        let before = asked(&graph);
        post(
            &app,
            &text_from(wa, &format!("wamid.OF{i}"), "offers", t + 2 * i),
        )
        .await;
        until("the question", 60, async || asked(&graph) > before).await;
        let tap = crate::outbox::tap(wa, &format!("wamid.OK{i}"), "promo_yes", "Yes, send offers");
        post(&app, &tap).await;
        until("the thanks", 60, async || {
            told(&graph, wa, "get our offers here") == i as usize + 1
        })
        .await;
    }
    assert_eq!(ledger(&app, wa).await, [true], "one ledger entry");
    assert_eq!(audited(&app, wa, "consent_given").await, 1);
    graph.stop().await;
}
both_backends!(flow_opt_in, a_repeated_flow_opt_in_appends_once);

const STAY_UNSUBSCRIBED: &str = "reply START tomorrow";

/// A customer alternating STOP and START, a second apart, ten times:
/// every STOP is honoured at once, but only `GRANTS_PER_DAY` STARTs a day
/// are recorded; the others are answered that the customer stays
/// unsubscribed until tomorrow. The ledger and the audit log grow by at
/// most `2 × GRANTS_PER_DAY + 1` entries.
async fn alternating_stop_and_start_is_bounded(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505557005";
    let t = whatsify::clock::now_secs() - 60;
    for i in 0..10u64 {
        let (stop, start) = (format!("wamid.ALT{i}S"), format!("wamid.ALT{i}G"));
        post(&app, &text_from(wa, &stop, "STOP", t + 2 * i)).await;
        post(&app, &text_from(wa, &start, "START", t + 2 * i + 1)).await;
    }
    // The last word is a STOP: honoured at once, whatever came before.
    post(&app, &text_from(wa, "wamid.ALTEND", "STOP", t + 20)).await;
    settled(&app, &graph, wa, "wamid.ALTHI", t + 21).await;

    let entries = ledger(&app, wa).await;
    let bound = 2 * GRANTS_PER_DAY + 1;
    assert!(entries.len() <= bound, "{entries:?}");
    assert_eq!(
        entries.iter().filter(|g| **g).count(),
        GRANTS_PER_DAY,
        "{entries:?}"
    );
    // Each recorded START was followed by a recorded STOP.
    let mut expected: Vec<bool> = (0..GRANTS_PER_DAY).flat_map(|_| [false, true]).collect();
    expected.push(false);
    assert_eq!(entries, expected);
    let given = audited(&app, wa, "consent_given").await;
    let withdrawn = audited(&app, wa, "consent_withdrawn").await;
    assert_eq!((given, withdrawn), (GRANTS_PER_DAY, GRANTS_PER_DAY + 1));
    assert_eq!(
        given + withdrawn,
        entries.len(),
        "the audit log matches the ledger"
    );

    let (status, contact) = app.admin_get(&format!("/admin/contacts/{wa}")).await;
    assert_eq!(status, 200, "{contact}");
    assert_eq!(
        contact["consent"]["marketing"]["granted"], false,
        "{contact}"
    );
    assert_eq!(
        told(&graph, wa, OPTED_IN),
        GRANTS_PER_DAY,
        "the STARTs recorded"
    );
    assert_eq!(
        told(&graph, wa, OPTED_OUT),
        GRANTS_PER_DAY + 1,
        "the STOPs that changed it"
    );
    assert_eq!(
        told(&graph, wa, STAY_UNSUBSCRIBED),
        10 - GRANTS_PER_DAY,
        "each START refused is answered"
    );
    graph.stop().await;
}
both_backends!(alternating, alternating_stop_and_start_is_bounded);

/// The promotions flow's "Yes, send offers" counts as a grant too: after
/// the day's grants, it is not recorded and the customer is told so.
async fn a_flow_opt_in_beyond_the_days_grants_is_refused(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505557006";
    let t = whatsify::clock::now_secs() - 60;
    for i in 0..GRANTS_PER_DAY as u64 {
        let (stop, start) = (format!("wamid.FL{i}S"), format!("wamid.FL{i}G"));
        post(&app, &text_from(wa, &stop, "STOP", t + 2 * i)).await;
        post(&app, &text_from(wa, &start, "START", t + 2 * i + 1)).await;
    }
    post(&app, &text_from(wa, "wamid.FLEND", "STOP", t + 10)).await;
    let asked = |g: &FakeGraph| {
        sent_to(g, wa)
            .iter()
            .filter(|m| m["type"] == "interactive")
            .count()
    };
    let before = asked(&graph);
    post(&app, &text_from(wa, "wamid.FLOF", "offers", t + 11)).await;
    until("the question", 60, async || asked(&graph) > before).await;
    let tap = crate::outbox::tap(wa, "wamid.FLOK", "promo_yes", "Yes, send offers");
    post(&app, &tap).await;
    until("the refusal", 60, async || {
        told(&graph, wa, STAY_UNSUBSCRIBED) == 1
    })
    .await;
    let mut expected: Vec<bool> = (0..GRANTS_PER_DAY).flat_map(|_| [false, true]).collect();
    expected.push(false);
    assert_eq!(
        ledger(&app, wa).await,
        expected,
        "the opt-in is not recorded"
    );
    assert_eq!(audited(&app, wa, "consent_given").await, GRANTS_PER_DAY);
    let (_, contact) = app.admin_get(&format!("/admin/contacts/{wa}")).await;
    assert_eq!(
        contact["consent"]["marketing"]["granted"], false,
        "{contact}"
    );
    graph.stop().await;
}
both_backends!(
    flow_refused,
    a_flow_opt_in_beyond_the_days_grants_is_refused
);
