//! The outbox end to end: signed webhooks in, the workers queue replies,
//! the senders post them to the fake Graph API, which answers as Meta
//! documents (success bodies and the error envelope with Meta's codes).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::both_backends;
use crate::graph::{FakeGraph, is_notice};
use crate::helpers::{Backend, TestApp, spawn_app_running};
use whatsify::store::Queue;

/// Retries fast, no read receipts (each test says what it needs).
pub(crate) async fn app_with(
    backend: &Backend,
    graph: &FakeGraph,
    extra: &[(&str, &str)],
) -> TestApp {
    let mut env: Vec<(&str, String)> = vec![
        ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
        ("WHATSIFY__OUTBOX__MARK_READ", "false".into()),
        ("WHATSIFY__OUTBOX__RETRY_BASE", "10ms".into()),
        ("WHATSIFY__OUTBOX__RETRY_CAP", "50ms".into()),
        ("WHATSIFY__OUTBOX__PROBE_INTERVAL", "1s".into()),
    ];
    for (k, v) in extra {
        env.push((k, (*v).to_owned()));
    }
    spawn_app_running(backend, &env, 2).await
}

pub(crate) fn text_from(wa_id: &str, wamid: &str, body: &str, sent_at: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "240017555501234", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550001111", "phone_number_id": "106540352242922" },
            "contacts": [{ "profile": { "name": "Ana" }, "wa_id": wa_id }],
            "messages": [{ "from": wa_id, "id": wamid, "timestamp": sent_at.to_string(),
                           "type": "text", "text": { "body": body } }]
        }}]}]
    }))
    .expect("json")
}

pub(crate) fn now() -> u64 {
    whatsify::clock::now_secs()
}

pub(crate) async fn say_hi(app: &TestApp, wa_id: &str, wamid: &str) {
    let resp = app.post_signed(&text_from(wa_id, wamid, "hi", now())).await;
    assert_eq!(resp.status(), 200);
}

pub(crate) fn sent_to(graph: &FakeGraph, wa_id: &str) -> Vec<Value> {
    graph
        .sent()
        .into_iter()
        .filter(|s| s.body["to"] == format!("+{wa_id}"))
        .map(|s| s.body)
        .collect()
}

pub(crate) async fn until(what: &str, secs: u64, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The `status` `/readyz` reports.
async fn readiness(app: &TestApp) -> Value {
    let body: Value = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .unwrap_or(Value::Null);
    body["status"].clone()
}

async fn records(app: &TestApp, wa_id: &str) -> Vec<Value> {
    let (status, body) = app
        .admin_get(&format!("/admin/contacts/{wa_id}/messages"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["messages"].as_array().cloned().unwrap_or_default()
}

/// "hi" from a new contact gets the privacy notice, a greeting (text)
/// and the menu (buttons), in that order.
async fn answered_in_order(graph: &FakeGraph, wa_id: &str) -> Vec<Value> {
    until("the three replies", 30, async || {
        sent_to(graph, wa_id).len() >= 3
    })
    .await;
    let got = sent_to(graph, wa_id);
    assert_eq!(got.len(), 3, "each reply once");
    assert!(is_notice(&got[0]), "the privacy notice first: {got:?}");
    assert_eq!(got[1]["type"], "text", "then the greeting");
    assert!(!is_notice(&got[1]));
    assert_eq!(got[2]["type"], "interactive");
    got
}

async fn transient_errors_are_retried_in_order(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    // Meta's transient and throttling codes, and a 5xx.
    let cases: [(u16, i64); 10] = [
        (400, 1),
        (400, 2),
        (400, 4),
        (400, 17),
        (400, 80007),
        (400, 130429),
        (400, 131000),
        (400, 131016),
        (400, 131056),
        (503, 2),
    ];
    for (n, (status, code)) in cases.into_iter().enumerate() {
        let wa_id = format!("1650555{:04}", 4000 + n);
        graph.fail_next(&[(status, code)]);
        say_hi(&app, &wa_id, &format!("wamid.T{n}")).await;
        let got = answered_in_order(&graph, &wa_id).await;
        let first = got[0]["biz_opaque_callback_data"].clone();
        let tries: Vec<_> = graph
            .requests()
            .into_iter()
            .filter(|r| Some(first.as_str().unwrap_or("")) == r.job.as_deref())
            .collect();
        assert_eq!(tries.len(), 2, "code {code}: failed once, then accepted");
        assert_eq!((tries[0].status, tries[1].status), (status, 200));
        // Replies leave from the number the message arrived on.
        assert!(tries.iter().all(|r| r.phone_number_id == "106540352242922"));
        let rec = records(&app, &wa_id).await;
        let first_rec = rec
            .iter()
            .find(|r| r["job"] == first)
            .expect("a record for the first message");
        assert_eq!(first_rec["state"], "accepted", "code {code}");
        assert_eq!(first_rec["attempts"], 1, "code {code}: one failed attempt");
        assert!(
            first_rec["wamid"]
                .as_str()
                .is_some_and(|w| !w.contains("wamid")),
            "wamid kept as a keyed hash"
        );
    }
}
both_backends!(transient, transient_errors_are_retried_in_order);

async fn permanent_errors_are_recorded_not_retried_and_do_not_block(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    for (n, code) in [131026, 131047, 131051, 100, 368, 131050]
        .into_iter()
        .enumerate()
    {
        let wa_id = format!("1650555{:04}", 4100 + n);
        let status = if code == 368 { 403 } else { 400 };
        graph.fail_next(&[(status, code)]);
        say_hi(&app, &wa_id, &format!("wamid.P{n}")).await;
        // The first message (the privacy notice) failed for good; the
        // greeting and the menu still go.
        until("the greeting and the menu", 30, async || {
            sent_to(&graph, &wa_id).len() >= 2
        })
        .await;
        let got = sent_to(&graph, &wa_id);
        assert_eq!(got.len(), 2);
        assert!(!got.iter().any(is_notice));
        assert_eq!(got[0]["type"], "text");
        assert_eq!(got[1]["type"], "interactive");
        let rec = records(&app, &wa_id).await;
        let failed: Vec<&Value> = rec.iter().filter(|r| r["state"] == "failed").collect();
        assert_eq!(failed.len(), 1, "code {code}: {rec:?}");
        assert_eq!(failed[0]["code"], code);
        let job = failed[0]["job"].as_str().expect("job id");
        let tries = graph
            .requests()
            .iter()
            .filter(|r| r.job.as_deref() == Some(job))
            .count();
        assert_eq!(tries, 1, "code {code} is not retried");
        if code == 131050 {
            assert_eq!(
                failed[0]["reason"],
                "the customer stopped marketing messages"
            );
        }
    }
}
both_backends!(
    permanent,
    permanent_errors_are_recorded_not_retried_and_do_not_block
);

async fn exhausted_retries_become_dead_letters_without_blocking(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[("WHATSIFY__OUTBOX__MAX_ATTEMPTS", "3")]).await;
    graph.fail_next(&[(500, 131000), (500, 131000), (500, 131000)]);
    say_hi(&app, "16505554200", "wamid.D1").await;
    // The first message (the privacy notice) dies; the greeting and the
    // menu go.
    until("the greeting and the menu", 30, async || {
        sent_to(&graph, "16505554200").len() >= 2
    })
    .await;
    let got = sent_to(&graph, "16505554200");
    assert!(!got.iter().any(is_notice));
    assert_eq!(got[1]["type"], "interactive");
    let (status, body) = app.admin_get("/admin/outbox/dead-letters").await;
    assert_eq!(status, 200);
    let letters = body["dead_letters"].as_array().expect("list");
    assert_eq!(letters.len(), 1, "{body}");
    assert_eq!(letters[0]["attempts"], 3);
    assert_eq!(letters[0]["code"], 131000);
    assert_eq!(letters[0]["kind"], "text");
    let rec = records(&app, "16505554200").await;
    assert!(
        rec.iter()
            .any(|r| r["state"] == "dead" && r["attempts"] == 3),
        "{rec:?}"
    );
    // Nothing personal in the operator's view.
    assert!(!body.to_string().contains("16505554200"));
}
both_backends!(
    dead_letters,
    exhausted_retries_become_dead_letters_without_blocking
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_are_retried_then_dead_lettered_in_order() {
    let b = crate::helpers::embedded();
    let graph = FakeGraph::start().await;
    let closed = "http://127.0.0.1:9/v23.0".to_owned();
    let app = spawn_app_running(
        &b.backend,
        &[
            ("WHATSIFY__META__GRAPH_API_BASE", closed),
            ("WHATSIFY__OUTBOX__MARK_READ", "false".into()),
            ("WHATSIFY__OUTBOX__RETRY_BASE", "10ms".into()),
            ("WHATSIFY__OUTBOX__RETRY_CAP", "20ms".into()),
            ("WHATSIFY__OUTBOX__MAX_ATTEMPTS", "2".into()),
        ],
        1,
    )
    .await;
    drop(graph);
    say_hi(&app, "16505554300", "wamid.C1").await;
    // The privacy notice, the greeting and the menu.
    until("three dead letters", 30, async || {
        app.admin_get("/admin/outbox/dead-letters").await.1["dead_letters"]
            .as_array()
            .is_some_and(|l| l.len() == 3)
    })
    .await;
    let body = app.admin_get("/admin/outbox/dead-letters").await.1;
    let letters = body["dead_letters"].as_array().expect("list");
    assert_eq!(letters[0]["kind"], "text", "in order");
    assert_eq!(letters[1]["kind"], "text");
    assert_eq!(letters[2]["kind"], "interactive");
    assert_eq!(letters[0]["reason"], "connection error");
}

async fn a_refused_token_pauses_the_number_until_a_probe_passes(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    graph.fail_all(Some((401, 190)));
    for n in 0..3 {
        say_hi(
            &app,
            &format!("1650555{:04}", 4400 + n),
            &format!("wamid.B{n}"),
        )
        .await;
    }
    until("the breaker", 30, async || {
        readiness(&app).await == "sending_paused"
    })
    .await;
    // Requests already under way when it opened were sent before it: they
    // are not what the pause must hold back.
    until("the requests under way", 30, async || {
        graph.in_flight() == 0
    })
    .await;
    let opened = Instant::now();
    let at_open = graph.requests().len();
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let during = graph.requests().len() - at_open;
    let probes_allowed = (opened.elapsed().as_secs() + 1) as usize;
    assert!(
        during <= probes_allowed,
        "{during} requests reached Meta in {:?} while paused (probes allowed: {probes_allowed})",
        opened.elapsed()
    );
    let resp = app
        .client
        .get(format!("{}/readyz", app.address))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .expect("readyz");
    assert_eq!(resp.status(), 200, "webhooks are still taken");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["paused"][0]["phone_number_id"], "106540352242922");
    assert_eq!(body["paused"][0]["code"], 190);
    // Meta takes the token again: everything queued is delivered.
    graph.fail_all(None);
    // Each: the privacy notice, the greeting, the menu.
    until("all nine replies", 30, async || graph.sent().len() >= 9).await;
    assert_eq!(graph.sent().len(), 9, "nothing dropped, nothing twice");
    for n in 0..3 {
        let got = sent_to(&graph, &format!("1650555{:04}", 4400 + n));
        assert_eq!(got.len(), 3);
        assert!(is_notice(&got[0]));
        assert_eq!(got[1]["type"], "text");
    }
    until("ready again", 10, async || readiness(&app).await == "ready").await;
}
both_backends!(
    breaker,
    a_refused_token_pauses_the_number_until_a_probe_passes
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_number_rate_limit_holds_across_two_instances() {
    let b = crate::helpers::redis();
    let graph = FakeGraph::start().await;
    let extra = [("WHATSIFY__OUTBOX__MESSAGES_PER_SECOND", "5")];
    let one = app_with(&b.backend, &graph, &extra).await;
    let two = app_with(&b.backend, &graph, &extra).await;
    // Four new contacts: the privacy notice, a greeting and a menu each.
    for n in 0..4 {
        let app = if n % 2 == 0 { &one } else { &two };
        say_hi(
            app,
            &format!("1650555{:04}", 4500 + n),
            &format!("wamid.R{n}"),
        )
        .await;
    }
    until("twelve replies", 60, async || graph.sent().len() >= 12).await;
    let times: Vec<Instant> = graph.requests().iter().map(|r| r.at).collect();
    assert_eq!(times.len(), 12);
    // 5 per second: in any one-second span at most 5 requests (one more
    // for scheduling jitter at the edges).
    for (i, t) in times.iter().enumerate() {
        let within = times[i..]
            .iter()
            .filter(|u| u.duration_since(*t) < Duration::from_secs(1))
            .count();
        assert!(within <= 6, "{within} requests within one second");
    }
    let span = times[11].duration_since(times[0]);
    assert!(
        span >= Duration::from_millis(1_600),
        "12 requests at 5/s took {span:?}"
    );
}

async fn status_webhooks_move_a_message_forward_only(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa_id = "16505554600";
    say_hi(&app, wa_id, "wamid.S1").await;
    let got = answered_in_order(&graph, wa_id).await;
    let job = got[0]["biz_opaque_callback_data"]
        .as_str()
        .expect("job")
        .to_owned();
    let wamid = "wamid.FAKE00000000".to_owned();
    let status = |state: &str, at: u64, with_job: bool| {
        let mut s = json!({ "id": wamid, "status": state, "timestamp": at.to_string(),
                            "recipient_id": wa_id });
        if with_job {
            s["biz_opaque_callback_data"] = json!(job);
        }
        serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{ "id": "240017555501234", "changes": [{ "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": { "display_phone_number": "15550001111", "phone_number_id": "106540352242922" },
                "statuses": [s]
            }}]}]
        }))
        .expect("json")
    };
    let t = now();
    // read arrives first; the late delivered (matched by wamid only) must
    // not take it back.
    assert_eq!(
        app.post_signed(&status("read", t + 2, true)).await.status(),
        200
    );
    assert_eq!(
        app.post_signed(&status("delivered", t + 1, false))
            .await
            .status(),
        200
    );
    until("the read state", 30, async || {
        records(&app, wa_id)
            .await
            .iter()
            .any(|r| r["job"] == job.as_str() && r["state"] == "read")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rec = records(&app, wa_id).await;
    let r = rec
        .iter()
        .find(|r| r["job"] == job.as_str())
        .expect("record");
    assert_eq!(r["state"], "read");
    assert_eq!(r["at"], t + 2);
    // A failed status with 131050 (the API accepted, then the customer's
    // marketing stop applied): the message fails and consent is withdrawn.
    let menu = got[2]["biz_opaque_callback_data"]
        .as_str()
        .expect("job")
        .to_owned();
    let failed = serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "240017555501234", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550001111", "phone_number_id": "106540352242922" },
            "statuses": [{ "id": "wamid.FAKE00000001", "status": "failed", "timestamp": (t + 3).to_string(),
                           "recipient_id": wa_id, "biz_opaque_callback_data": menu,
                           "errors": [{ "code": 131050, "title": "Unable to deliver the message" }] }]
        }}]}]
    }))
    .expect("json");
    assert_eq!(app.post_signed(&failed).await.status(), 200);
    until("the withdrawal", 30, async || {
        marketing(&app, wa_id).await == [(false, "meta:131050".to_owned())]
    })
    .await;
    let rec = records(&app, wa_id).await;
    let r = rec
        .iter()
        .find(|r| r["job"] == menu.as_str())
        .expect("record");
    assert_eq!(
        (r["state"].as_str(), r["code"].as_i64()),
        (Some("failed"), Some(131050))
    );
}
both_backends!(statuses, status_webhooks_move_a_message_forward_only);

async fn answered_messages_are_marked_read(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[("WHATSIFY__OUTBOX__MARK_READ", "true")]).await;
    say_hi(&app, "16505554700", "wamid.READ1").await;
    answered_in_order(&graph, "16505554700").await;
    // The receipt's removal rides on the reply's write: once the replies
    // are out, nothing is left queued and nothing goes out again.
    let Queue::Contact(k) = app.queue_of("16505554700") else {
        unreachable!("a contact queue")
    };
    until("the outbox drained", 10, async || {
        app.store()
            .read(&Queue::Outbox(k.clone()), 10)
            .await
            .is_ok_and(|e| e.is_empty())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(graph.reads(), ["wamid.READ1"], "marked read once");
}
both_backends!(read_receipts, answered_messages_are_marked_read);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_older_than_24_hours_gets_no_free_form_answer() {
    let b = crate::helpers::embedded();
    let graph = FakeGraph::start().await;
    let app = app_with(&b.backend, &graph, &[]).await;
    let old = now() - 25 * 3600;
    let resp = app
        .post_signed(&text_from("16505554800", "wamid.OLD", "hi", old))
        .await;
    assert_eq!(resp.status(), 200);
    // A fresh message from someone else goes through the same workers.
    say_hi(&app, "16505554801", "wamid.NEW").await;
    answered_in_order(&graph, "16505554801").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sent_to(&graph, "16505554800").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_that_waited_too_long_are_recorded_not_sent() {
    let b = crate::helpers::embedded();
    let graph = FakeGraph::start().await;
    // Meta refuses the token, so replies wait; meanwhile a day passes.
    let app = app_with(
        &b.backend,
        &graph,
        &[
            ("WHATSIFY__OUTBOX__MAX_AGE", "48h"),
            ("WHATSIFY__OUTBOX__PROBE_INTERVAL", "1s"),
        ],
    )
    .await;
    graph.fail_all(Some((401, 190)));
    say_hi(&app, "16505554900", "wamid.W1").await;
    until("the pause", 30, async || !graph.requests().is_empty()).await;
    app.clock.advance(25 * 3600);
    graph.fail_all(None);
    // The privacy notice, the greeting and the menu.
    until("all three recorded", 30, async || {
        records(&app, "16505554900")
            .await
            .iter()
            .filter(|r| r["state"] == "outside_window")
            .count()
            == 3
    })
    .await;
    assert!(
        graph.sent().is_empty(),
        "nothing free-form outside the window"
    );
    // And past outbox.max_age a reply is dropped as expired. (The
    // customer writes "now" on the moved clock.)
    graph.fail_all(Some((401, 190)));
    let later = now() + 25 * 3600;
    let resp = app
        .post_signed(&text_from("16505554901", "wamid.W2", "hi", later))
        .await;
    assert_eq!(resp.status(), 200);
    until("queued", 30, async || {
        app.store()
            .ready_contacts(whatsify::store::Lane::Inbox, 10)
            .await
            .is_ok_and(|r| r.is_empty())
    })
    .await;
    app.clock.advance(49 * 3600);
    graph.fail_all(None);
    until("expired", 30, async || {
        records(&app, "16505554901")
            .await
            .iter()
            .any(|r| r["state"] == "expired")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_wants_its_token() {
    let b = crate::helpers::embedded();
    let graph = FakeGraph::start().await;
    let app = app_with(&b.backend, &graph, &[]).await;
    let url = format!("{}/admin/outbox/dead-letters", app.address);
    let none = app.client.get(&url).send().await.expect("request");
    assert_eq!(none.status(), 401);
    let wrong = app
        .client
        .get(&url)
        .bearer_auth("nope")
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), 401);
    let other = crate::helpers::embedded();
    let off = app_with(&other.backend, &graph, &[("WHATSIFY__ADMIN__TOKEN", "")]).await;
    let resp = off
        .client
        .get(format!("{}/admin/outbox/dead-letters", off.address))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 404, "the admin API is off without a token");
}

/// Queues `jobs` for `contact` the way a worker does: sealed, in the
/// contact's outbox, in one commit.
pub(crate) async fn queue(
    store: &std::sync::Arc<dyn whatsify::store::Store>,
    keyring: &whatsify::crypto::keyring::Keyring,
    contact: &whatsify::domain::ContactKey,
    jobs: &[whatsify::domain::outbound::Job],
) {
    use whatsify::store::{Commit, InboxEntry, Lane, Queue};
    let q = Queue::Contact(contact.clone());
    store
        .append(vec![InboxEntry {
            queue: q,
            dedup: uuid::Uuid::new_v4().to_string(),
            sealed: b"x".to_vec(),
            consent: None,
            refused: None,
            key: None,
        }])
        .await
        .expect("append");
    // The app's workers may hold the contact for a moment (they take the
    // entry appended above and skip it): wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let claim = loop {
        if let Some(c) = store
            .claim(Lane::Inbox, contact, "test", Duration::from_secs(30), 10)
            .await
            .expect("claim")
        {
            break c;
        }
        assert!(Instant::now() < deadline, "the contact stays held");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // The jobs are sealed under the contact's data key, as the worker's.
    let (_, fresh) = keyring.new_data_key(contact).expect("new key");
    let wrapped = store
        .create_data_key(contact, fresh, Duration::from_secs(86_400))
        .await
        .expect("data key");
    let sealer = keyring.unwrap(contact, &wrapped).expect("unwraps");
    let context = Queue::Outbox(contact.clone()).name();
    let outbox = jobs
        .iter()
        .map(|j| {
            sealer
                .seal(&serde_json::to_vec(j).expect("json"), context.as_bytes())
                .expect("seal")
        })
        .collect();
    let commit = Commit {
        acked: claim.entries.iter().map(|e| e.id.clone()).collect(),
        session: None,
        session_ttl: Duration::from_secs(60),
        outbox,
        wake_at: None,
        window: None,
        deliveries: Vec::new(),
        consent: Vec::new(),
        profile: None,
        history: Vec::new(),
        profile_ttl: Duration::from_secs(3600),
        stats: Vec::new(),
    };
    store.commit(&claim, commit).await.expect("commit");
}

/// Business-initiated messages are paced per recipient (Meta's pair
/// limit); a reply of several messages is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_messages_are_paced_per_recipient_and_replies_are_not() {
    use whatsify::domain::outbound::{Job, Message, Origin, Recipient};
    let b = crate::helpers::embedded();
    let graph = FakeGraph::start().await;
    let app = app_with(
        &b.backend,
        &graph,
        &[
            ("WHATSIFY__OUTBOX__PAIR_INTERVAL", "1s"),
            ("WHATSIFY__OUTBOX__PAIR_BURST", "2"),
        ],
    )
    .await;
    let store = app.store();
    let sealer = app.state.keyring.clone();
    let key = |wa: &str| {
        app.state
            .pseudonymizer
            .contact_key(&whatsify::domain::ContactId::from_parts(Some(wa), None).expect("id"))
    };
    let job = |wa: &str, n: usize, origin: Origin, template: bool| Job {
        id: format!("{wa}-{n}"),
        phone_number_id: "106540352242922".into(),
        to: Recipient::WaId(wa.into()),
        message: if template {
            Message::Template {
                name: "spring_offer".into(),
                language: "en_US".into(),
                header: None,
                body: vec![],
                quick_replies: vec!["stop-promotions".into()],
                marketing: true,
            }
        } else {
            Message::Flow {
                message: whatsify::domain::outbound::Outgoing::Text {
                    body: format!("part {n}"),
                    preview_url: false,
                },
            }
        },
        created_at: now(),
        origin,
        window_at: Some(now()),
        purpose: None,
    };
    let business: Vec<Job> = (0..5)
        .map(|n| job("16505555000", n, Origin::Business, true))
        .collect();
    let replies: Vec<Job> = (0..3)
        .map(|n| job("16505555001", n, Origin::Reply, false))
        .collect();
    queue(&store, &sealer, &key("16505555000"), &business).await;
    queue(&store, &sealer, &key("16505555001"), &replies).await;
    until("all eight", 30, async || graph.sent().len() >= 8).await;
    let at = |wa: &str| -> Vec<Instant> {
        graph
            .requests()
            .into_iter()
            .filter(|r| r.job.as_deref().is_some_and(|j| j.starts_with(wa)))
            .map(|r| r.at)
            .collect()
    };
    let b_at = at("16505555000");
    let r_at = at("16505555001");
    assert_eq!((b_at.len(), r_at.len()), (5, 3));
    // A burst of two, then one per second: the fifth goes out three
    // intervals after the first.
    let span = b_at[4].duration_since(b_at[0]);
    assert!(
        span >= Duration::from_millis(2_500),
        "5 paced messages in {span:?}"
    );
    let reply_span = r_at[2].duration_since(r_at[0]);
    assert!(
        reply_span < Duration::from_secs(1),
        "a reply of three is not paced ({reply_span:?})"
    );
    let sent = graph.sent();
    let t = sent
        .iter()
        .find(|s| s.body["type"] == "template")
        .expect("a template");
    assert_eq!(
        t.body["template"]["components"][0]["sub_type"],
        "quick_reply"
    );
}

pub(crate) fn contact_key(app: &TestApp, wa_id: &str) -> whatsify::domain::ContactKey {
    app.state
        .pseudonymizer
        .contact_key(&whatsify::domain::ContactId::from_parts(Some(wa_id), None).expect("id"))
}

pub(crate) async fn marketing(app: &TestApp, wa_id: &str) -> Vec<(bool, String)> {
    app.store()
        .consent(&contact_key(app, wa_id))
        .await
        .expect("ledger")
        .into_iter()
        .filter(|c| c.purpose == "marketing")
        .map(|c| (c.granted, c.source))
        .collect()
}

pub(crate) fn tap(wa_id: &str, wamid: &str, id: &str, title: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&text_from(wa_id, wamid, "", now())).expect("json");
    v["entry"][0]["changes"][0]["value"]["messages"][0]["type"] = json!("interactive");
    v["entry"][0]["changes"][0]["value"]["messages"][0]["interactive"] = json!({
        "type": "button_reply", "button_reply": { "id": id, "title": title }
    });
    serde_json::to_vec(&v).expect("json")
}

/// Consent is recorded where the customer gives or withdraws it: the
/// promotions flow's explicit "Yes", WhatsApp's own Stop (user_preferences),
/// and Meta answering 131050 ("user stopped marketing messages"), whether
/// at once or in a failed status.
async fn consent_is_recorded_from_the_flow_whatsapp_and_meta(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505550101";
    say_hi(&app, wa, "wamid.C1").await;
    answered_in_order(&graph, wa).await;
    assert_eq!(
        app.post_signed(&tap(wa, "wamid.C2", "menu_offers", "See offers"))
            .await
            .status(),
        200
    );
    until("the consent question", 30, async || {
        sent_to(&graph, wa).len() >= 5
    })
    .await;
    assert_eq!(
        app.post_signed(&tap(wa, "wamid.C3", "promo_yes", "Yes, send offers"))
            .await
            .status(),
        200
    );
    until("consent", 30, async || {
        !marketing(&app, wa).await.is_empty()
    })
    .await;
    assert_eq!(marketing(&app, wa).await, [(true, "flow".to_owned())]);
    // WhatsApp's Stop for marketing (fixture for 16505550101).
    let stop = crate::helpers::fixture("user_preferences_stop.json");
    assert_eq!(app.post_signed(&stop).await.status(), 200);
    until("the stop", 30, async || {
        marketing(&app, wa).await.len() == 2
    })
    .await;
    assert_eq!(
        marketing(&app, wa).await[1],
        (false, "whatsapp:user_preferences".to_owned())
    );
    // The customer is told, once.
    until("the confirmation", 30, async || {
        sent_to(&graph, wa).iter().any(|m| {
            m["text"]["body"]
                .as_str()
                .is_some_and(|b| b.contains("won't get promotions"))
        })
    })
    .await;
    // Meta refuses a send with 131050 at once.
    let other = "16505554950";
    graph.fail_next(&[(400, 131050)]);
    say_hi(&app, other, "wamid.C4").await;
    until("the withdrawal", 30, async || {
        !marketing(&app, other).await.is_empty()
    })
    .await;
    assert_eq!(
        marketing(&app, other).await,
        [(false, "meta:131050".to_owned())]
    );
}
both_backends!(consent, consent_is_recorded_from_the_flow_whatsapp_and_meta);

/// The Graph API hangs on one request: it is given up after
/// `outbox.request_timeout` and tried again (sent once: the hung request
/// never reached Meta's answer), while other contacts' replies go out
/// meanwhile; nobody is blocked behind it.
async fn a_hanging_graph_api_times_out_and_blocks_no_one(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(
        backend,
        &graph,
        &[("WHATSIFY__OUTBOX__REQUEST_TIMEOUT", "2s")],
    )
    .await;
    let (slow, others) = ("16505554701", ["16505554702", "16505554703", "16505554704"]);
    graph.hang_next(1);
    say_hi(&app, slow, "wamid.HANG1").await;
    until("the hung request", 30, async || graph.in_flight() == 1).await;
    for (i, wa) in others.iter().enumerate() {
        say_hi(&app, wa, &format!("wamid.HANG{}", i + 2)).await;
    }
    // Every other contact gets its three messages while the request
    // hangs.
    until("the others' replies", 30, async || {
        others.iter().all(|wa| sent_to(&graph, wa).len() == 3)
    })
    .await;
    assert!(
        sent_to(&graph, slow).is_empty(),
        "answered before the timeout"
    );
    assert_eq!(
        graph.in_flight(),
        1,
        "still hanging while the others were answered"
    );
    // After the timeout the reply is tried again, in order, once.
    until("the slow contact's replies", 30, async || {
        sent_to(&graph, slow).len() == 3
    })
    .await;
    let got = sent_to(&graph, slow);
    assert!(is_notice(&got[0]), "the hung one, first");
    assert_eq!(got[1]["type"], "text");
    assert_eq!(got[2]["type"], "interactive");
    let job = got[0]["biz_opaque_callback_data"].as_str().expect("job");
    let tries = graph
        .requests()
        .iter()
        .filter(|r| r.job.as_deref() == Some(job))
        .count();
    assert_eq!(tries, 1, "only the answered attempt reached the fake's log");
    let rec = records(&app, slow).await;
    assert!(
        rec.iter()
            .any(|r| r["state"] == "accepted" && r["attempts"] == 1),
        "the retry is recorded as the second attempt: {rec:?}"
    );
}
both_backends!(graph_hang, a_hanging_graph_api_times_out_and_blocks_no_one);

/// The outbox scenarios on a real 3-master Redis Cluster (issue 7, point 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_on_a_redis_cluster() {
    let cluster = crate::helpers::RedisCluster::start();
    crate::on_cluster!(
        cluster,
        transient_errors_are_retried_in_order,
        permanent_errors_are_recorded_not_retried_and_do_not_block,
        status_webhooks_move_a_message_forward_only,
        answered_messages_are_marked_read,
        consent_is_recorded_from_the_flow_whatsapp_and_meta,
    );
}
