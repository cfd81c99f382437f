//! The audit log past 100,000 entries, through HTTP: the newest entries
//! come first, a cursor pages back to the oldest without repeats, the
//! chain is checked page by page and against the stored head (and as a
//! whole on request), a cut-off tail shows, and overdue requests are found
//! wherever they are in the log.

use serde_json::Value;
use whatsify::domain::audit::{Actor, AuditEvent};
use whatsify::privacy::audit::OPEN_REQUEST_FLAG_SECS;

use crate::both_backends;
use crate::graph::FakeGraph;
use crate::helpers::{Backend, TestApp};
use crate::outbox::{app_with, contact_key, now, say_hi, sent_to, until};

/// More than the 100,000 entries the audit view used to stop at.
const FILLERS: u64 = 100_500;
/// Entries appended per run while seeding.
const SEED_RUN: usize = 10_000;

pub(crate) fn event(kind: &str, contact: String, at: u64, actor: Actor) -> AuditEvent {
    AuditEvent {
        at,
        kind: kind.into(),
        contact: Some(contact),
        actor,
        detail: None,
        business: None,
        by: None,
    }
}

/// Appends `events` to the app's log as the app does (each chained after
/// the head, with the app's key, through the store's checked append), a
/// run at a time.
pub(crate) async fn seed(app: &TestApp, events: Vec<AuditEvent>) {
    let store = app.store();
    for run in events.chunks(SEED_RUN) {
        loop {
            let (mut seq, mut prev) = store.audit_head().await.expect("head");
            let entries: Vec<_> = run
                .iter()
                .map(|e| {
                    seq += 1;
                    let entry = app.state.audit.link(seq, &prev, e.clone());
                    prev.clone_from(&entry.hash);
                    entry
                })
                .collect();
            // Another writer (the app) may have appended first: again.
            if store.audit_append_run(&entries).await.expect("run") {
                break;
            }
        }
    }
}

fn seqs(page: &Value) -> Vec<u64> {
    page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect()
}

/// Follows `next` from `path` (a query without `before`) to the end: the
/// sequence numbers shown, in order, and the answers.
async fn walk(app: &TestApp, path: &str) -> (Vec<u64>, Vec<Value>) {
    let mut shown = Vec::new();
    let mut answers = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let url = match &next {
            None => path.to_owned(),
            Some(c) => format!("{path}&before={c}"),
        };
        let (status, page) = app.admin_get(&url).await;
        assert_eq!(status, 200, "{page}");
        shown.extend(seqs(&page));
        next = page["next"].as_str().map(str::to_owned);
        answers.push(page);
        if next.is_none() {
            return (shown, answers);
        }
        assert!(answers.len() < 1000, "the walk ends");
    }
}

/// The console's `GET /console/api/requests` rows, signed in.
async fn console_requests(app: &TestApp) -> Vec<Value> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = client
        .post(format!("{}/console/sign-in", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", crate::helpers::ADMIN_TOKEN))
        .send()
        .await
        .expect("sign in");
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let page: Value = client
        .get(format!("{}/console/api/requests", app.address))
        .header("cookie", cookie)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    page["requests"].as_array().cloned().expect("requests")
}

async fn a_log_past_100000_entries_is_shown_newest_first_paged_and_checked(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let week_ago = now() - OPEN_REQUEST_FLAG_SECS - 3600;
    let (first_asker, last_asker) = ("a1".repeat(16), "b2".repeat(16));
    // An export request first (seq 1), more than 100,000 entries after it,
    // then another export request: both are open for more than a week.
    let mut events = vec![event(
        "export_request",
        first_asker.clone(),
        week_ago - 86_400,
        Actor::Customer,
    )];
    events.extend((0..FILLERS).map(|i| {
        let who = format!("{:032x}", i % 5000);
        event("consent_given", who, week_ago - 3600, Actor::Customer)
    }));
    events.push(event(
        "export_request",
        last_asker.clone(),
        week_ago,
        Actor::Customer,
    ));
    seed(&app, events).await;

    // A real event through the app: a customer writes, an admin erases them.
    let wa = "16505557070";
    say_hi(&app, wa, "wamid.AUDIT1").await;
    until("the welcome", 30, async || !sent_to(&graph, wa).is_empty()).await;
    // Their export lists their privacy events, read back from the newest
    // page to their first trace (not from the start of the log).
    let stop = crate::outbox::text_from(wa, "wamid.AUDIT2", "STOP", now());
    assert_eq!(app.post_signed(&stop).await.status(), 200);
    let export = format!("/admin/contacts/{wa}/export");
    until("the opt-out in the export", 30, async || {
        let (_, doc) = app.admin_get(&export).await;
        doc["privacy_requests"]
            .as_array()
            .is_some_and(|r| r.iter().any(|e| e["kind"] == "consent_withdrawn"))
    })
    .await;
    assert_eq!(
        app.admin_delete(&format!("/admin/contacts/{wa}")).await,
        200
    );
    let key = contact_key(&app, wa);
    let head = app.store().audit_head().await.expect("head").0;
    assert!(head > FILLERS + 2);

    // The first page: the newest entries, the erasure among them, checked
    // down from the stored head.
    let (status, first) = app.admin_get("/admin/audit?limit=50").await;
    assert_eq!(status, 200, "{first}");
    let shown = seqs(&first);
    assert_eq!(shown, (head - 49..=head).rev().collect::<Vec<_>>());
    let erased = first["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .any(|e| {
            e["kind"] == "erasure_completed"
                && e["contact"] == key.as_str()
                && e["actor"] == "admin"
        });
    assert!(erased, "the erasure is on the first page: {first}");
    let chain = &first["chain"];
    assert_eq!(chain["intact"], true, "{chain}");
    assert_eq!(chain["head_matches"], true, "{chain}");
    assert_eq!(chain["links_to_older"], true, "{chain}");
    assert_eq!(chain["verified_entries"], 50, "{chain}");
    assert_eq!(chain["entries"], 50, "{chain}");
    assert_eq!(chain["log_entries"], head, "{chain}");
    assert_eq!(chain["complete"], false, "{chain}");
    assert!(first["next"].is_string(), "{first}");
    // Both overdue requests are found, the first one more than 100,000
    // entries back, the other in the tail.
    let overdue: Vec<u64> = first["overdue_requests"]
        .as_array()
        .expect("overdue")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert!(overdue.contains(&1), "{overdue:?}");
    assert!(overdue.contains(&(FILLERS + 2)), "{overdue:?}");
    // So does the console's requests page, both marked due.
    let rows = console_requests(&app).await;
    let due: Vec<u64> = rows
        .iter()
        .filter(|r| r["urgency"] == "due")
        .filter_map(|r| r["seq"].as_u64())
        .collect();
    assert_eq!(due, [1, FILLERS + 2], "the oldest first: {rows:?}");

    // The cursor walks back to the first entry: each entry once, in order,
    // every page intact and linked to the one below it.
    let (all, pages) = walk(&app, "/admin/audit?limit=1000").await;
    assert_eq!(all, (1..=head).rev().collect::<Vec<_>>());
    for page in &pages {
        assert_eq!(page["chain"]["intact"], true, "{}", page["chain"]);
        assert_eq!(page["chain"]["links_to_older"], true, "{}", page["chain"]);
    }
    assert!(
        pages[1..]
            .iter()
            .all(|p| p["chain"]["head_matches"].is_null())
    );

    // Filters hold across pages: the export requests, newest first.
    let (asked, _) = walk(&app, "/admin/audit?kind=export_request&limit=5").await;
    assert_eq!(asked, [FILLERS + 2, 1]);
    let (_, mine) = app
        .admin_get(&format!("/admin/audit?contact={wa}&limit=2"))
        .await;
    let kinds: Vec<&str> = mine["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["erasure_completed", "erasure_request"], "{mine}");
    let (status, _) = app.admin_get("/admin/audit?before=12").await;
    assert_eq!(status, 400, "a cursor is one the log gave");

    // The whole chain, checked in a stream of pages.
    let (_, full) = app.admin_get("/admin/audit?verify=full&limit=1").await;
    let chain = &full["chain"];
    assert_eq!(chain["intact"], true, "{chain}");
    assert_eq!(chain["verified_entries"], head, "{chain}");
    assert_eq!(chain["complete"], true, "{chain}");
    assert_eq!(chain["head_matches"], true, "{chain}");

    // The newest entry removed behind the server's back: the first page
    // no longer ends at the stored head, nor does the whole-log check.
    let app = match backend {
        Backend::Redis { url, prefix } => {
            let client = redis::Client::open(url.as_str()).expect("client");
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("connection");
            let removed: i64 = redis::cmd("XDEL")
                .arg(format!("{prefix}{{audit}}:log"))
                .arg(format!("{head}-1"))
                .query_async(&mut conn)
                .await
                .expect("xdel");
            assert_eq!(removed, 1);
            app
        }
        Backend::Embedded(path) => {
            // The file is the app's while it runs: stop it, cut, start again.
            app.state.shutdown.trigger();
            app.stop().await;
            drop(app);
            cut_embedded_tail(&path.join("whatsify.redb"), head).await;
            app_with(backend, &graph, &[]).await
        }
        Backend::Cluster { .. } => unreachable!("not run on a cluster"),
    };
    for path in ["/admin/audit?limit=10", "/admin/audit?verify=full"] {
        let (_, cut) = app.admin_get(path).await;
        let chain = &cut["chain"];
        assert_eq!(chain["intact"], false, "{path}: {chain}");
        assert_eq!(chain["head_matches"], false, "{path}: {chain}");
        assert_eq!(chain["broken_at"], head, "{path}: {chain}");
    }
}

/// Removes entry `seq` from the embedded store's file, once the app that
/// had it open let go of it.
async fn cut_embedded_tail(file: &std::path::Path, seq: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let db = loop {
        match redb::Database::create(file) {
            Ok(db) => break db,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "file still open: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("audit");
    let txn = db.begin_write().expect("write");
    let removed = txn
        .open_table(table)
        .expect("table")
        .remove(seq)
        .expect("remove")
        .is_some();
    txn.commit().expect("commit");
    assert!(removed, "entry {seq} was there");
}
both_backends!(
    audit_past_100000,
    a_log_past_100000_entries_is_shown_newest_first_paged_and_checked
);
