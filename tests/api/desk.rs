//! The privacy desk through HTTP (issue 21, point 6): requests that
//! reached the support team by email, phone or letter are logged with
//! their legal deadline (the business's own), carried out by an admin
//! (the export downloaded or sent on WhatsApp, a rectification, an
//! erasure, an objection, a restriction), closed, and each act is in the
//! audit log with the request's reference. An auditor lists them without
//! a phone number and cannot act; another business's admin cannot see
//! them.

use reqwest::Method;
use serde_json::{Value, json};
use whatsify::domain::operator::Role;

use crate::both_backends;
use crate::businesses::{CAFE, WA, say, text};
use crate::graph::FakeGraph;
use crate::helpers::{Backend, TestApp};
use crate::operators::call;
use crate::operators_helpers::operator;
use crate::outbox::{now, until};

const DESK: &str = "/admin/businesses/cafe/desk";
/// A customer the café knows only through a consent given to the
/// support team: they never wrote, so no WhatsApp window is open.
const SILENT: &str = "15550004242";

/// The two businesses, the café's requests due in 45 days.
async fn app(backend: &Backend, graph: &FakeGraph) -> (TestApp, tempfile::TempDir) {
    graph.expect_token(crate::businesses::SHOP, "shop-token-0123456789abcdef");
    graph.expect_token(CAFE, "cafe-token-0123456789abcdef");
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = crate::businesses::two_businesses(dir.path()).replace(
        "policy_version = \"cafe-7\"",
        "policy_version = \"cafe-7\"\nrequest_deadline_days = 45",
    );
    let app = crate::integrations::app_with_receivers(backend, graph, &settings).await;
    (app, dir)
}

fn day(at: u64) -> String {
    whatsify::domain::desk::format_date(whatsify::domain::desk::day_of(at))
}

/// Logs a request of `kind` about `contact` with `reference`; its id.
async fn log(app: &TestApp, token: &str, kind: &str, contact: &str, reference: &str) -> String {
    let body = json!({"kind": kind, "contact": contact, "channel": "email",
                      "reference": reference, "received": day(now())});
    let (s, r) = call(app, Method::POST, DESK, token, Some(&body)).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["state"], "open");
    assert_eq!(r["kind"], kind);
    r["id"].as_str().expect("id").to_owned()
}

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> (u16, Value) {
    call(app, Method::POST, path, token, Some(&body)).await
}

async fn desk_works(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let (app, _dir) = app(backend, &graph).await;
    let admin = operator(&app, "admin@cafe.example", Role::Admin, &["cafe"]).await;
    let auditor = operator(&app, "aud@cafe.example", Role::Auditor, &["cafe"]).await;
    let shop = operator(&app, "admin@shop.example", Role::Admin, &["shop"]).await;
    let t = admin.token.as_str();
    say(&app, CAFE, "wamid.D1", text("hello")).await;
    let contact = format!("/admin/businesses/cafe/contacts/{WA}");
    until("the café's contact", 30, async || {
        app.admin_get(&contact).await.0 == 200
    })
    .await;
    let consent = format!("/admin/businesses/cafe/contacts/{SILENT}/consent");
    let grant = json!({"purpose": "marketing", "granted": true});
    assert_eq!(post(&app, t, &consent, grant).await.0, 200);

    // Validation: each mistake named, nothing logged.
    let today = day(now());
    let tomorrow = day(now() + 86_400);
    for (body, says) in [
        (
            json!({"kind": "deletion", "contact": WA, "channel": "email", "reference": "T", "received": today}),
            "kind must be one of",
        ),
        (
            json!({"kind": "access", "contact": WA, "channel": "email", "reference": " ", "received": today}),
            "reference is missing",
        ),
        (
            json!({"kind": "access", "contact": WA, "channel": "email", "reference": "T", "received": "4/12/2026"}),
            "YYYY-MM-DD",
        ),
        (
            json!({"kind": "access", "contact": WA, "channel": "email", "reference": "T", "received": tomorrow}),
            "future",
        ),
        (
            json!({"kind": "access", "contact": "", "channel": "email", "reference": "T", "received": today}),
            "contact must be",
        ),
    ] {
        let (s, r) = post(&app, t, DESK, body).await;
        assert_eq!(s, 400, "{r}");
        assert!(
            r["error"].as_str().unwrap_or_default().contains(says),
            "{says}: {r}"
        );
    }
    let (_, listed) = call(&app, Method::GET, DESK, t, None).await;
    assert_eq!(listed["requests"], json!([]), "{listed}");

    // Access: the deadline is the café's 45 days; the download is the
    // admin export; WhatsApp delivers a document inside the window.
    let access = log(&app, t, "access", WA, "T-100").await;
    let (s, shown) = call(&app, Method::GET, &format!("{DESK}/{access}"), t, None).await;
    assert_eq!(s, 200, "{shown}");
    assert_eq!(shown["deadline"], day(now() + 45 * 86_400));
    assert_eq!(shown["channel"], "email");
    let export = format!("{DESK}/{access}/export");
    let (s, mut got) = post(&app, t, &export, json!({"deliver": "download"})).await;
    assert_eq!(s, 200, "{got}");
    let (_, mut want) = app.admin_get(&format!("{contact}/export")).await;
    got["generated_at"] = Value::Null;
    want["generated_at"] = Value::Null;
    assert_eq!(got, want);
    let (s, r) = post(&app, t, &export, json!({"deliver": "whatsapp"})).await;
    assert_eq!(s, 202, "{r}");
    until("the document", 30, async || {
        graph.sent().iter().any(|m| {
            m.phone_number_id == CAFE
                && m.body["to"] == format!("+{WA}")
                && m.body["type"] == "document"
        })
    })
    .await;
    let (s, r) = post(&app, t, &export, json!({"deliver": "fax"})).await;
    assert_eq!(s, 400, "{r}");
    // Outside the window: 409, saying to download it.
    let silent = log(&app, t, "access", SILENT, "T-101").await;
    let (s, r) = post(
        &app,
        t,
        &format!("{DESK}/{silent}/export"),
        json!({"deliver": "whatsapp"}),
    )
    .await;
    assert_eq!(s, 409, "{r}");
    assert!(
        r["error"].as_str().unwrap_or_default().contains("download"),
        "{r}"
    );

    // Rectification: the profile shows it.
    let rect = log(&app, t, "rectification", WA, "T-102").await;
    let fix = json!({"name": "Ana María", "tags": ["vip"]});
    let (s, r) = post(&app, t, &format!("{DESK}/{rect}/rectify"), fix).await;
    assert_eq!(s, 202, "{r}");
    until("the rectified profile", 30, async || {
        let (_, c) = app.admin_get(&contact).await;
        c["profile"]["name"] == "Ana María" && c["profile"]["tags"] == json!(["vip"])
    })
    .await;
    // The wrong act for the kind, and an empty rectification.
    let (s, _) = post(&app, t, &format!("{DESK}/{rect}/erase"), json!({})).await;
    assert_eq!(s, 409);
    let (s, _) = post(&app, t, &format!("{DESK}/{rect}/rectify"), json!({})).await;
    assert_eq!(s, 400);
    // Closed: done; then no act is taken on it.
    let (s, r) = post(
        &app,
        t,
        &format!("{DESK}/{rect}/close"),
        json!({"outcome": "refused"}),
    )
    .await;
    assert_eq!(s, 400, "{r}");
    let (s, r) = post(
        &app,
        t,
        &format!("{DESK}/{rect}/close"),
        json!({"outcome": "done"}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["state"], "done");
    let (s, _) = post(
        &app,
        t,
        &format!("{DESK}/{rect}/rectify"),
        json!({"name": "X"}),
    )
    .await;
    assert_eq!(s, 409);

    // Objection and restriction: marketing withdrawn.
    let object = log(&app, t, "objection", SILENT, "T-103").await;
    let (s, r) = post(&app, t, &format!("{DESK}/{object}/object"), json!({})).await;
    assert_eq!(s, 200, "{r}");
    let (_, c) = app
        .admin_get(&format!("/admin/businesses/cafe/contacts/{SILENT}"))
        .await;
    assert_eq!(c["consent"]["marketing"]["granted"], false, "{c}");
    let restrict = log(&app, t, "restriction", SILENT, "T-104").await;
    let (s, r) = post(&app, t, &format!("{DESK}/{restrict}/restrict"), json!({})).await;
    assert_eq!(s, 200, "{r}");

    // The auditor lists without a phone number and cannot act; the
    // shop's admin sees nothing of the café's.
    let (s, seen) = call(&app, Method::GET, DESK, &auditor.token, None).await;
    assert_eq!(s, 200, "{seen}");
    assert_eq!(seen["requests"].as_array().map(Vec::len), Some(5), "{seen}");
    assert_eq!(seen["deadline_days"], 45);
    let seen = seen.to_string();
    assert!(!seen.contains(WA) && !seen.contains(SILENT), "{seen}");
    let (s, _) = call(
        &app,
        Method::GET,
        &format!("{DESK}/{access}"),
        &auditor.token,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let body = json!({"outcome": "done"});
    let (s, _) = post(
        &app,
        &auditor.token,
        &format!("{DESK}/{access}/close"),
        body.clone(),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = call(&app, Method::GET, DESK, &shop.token, None).await;
    assert_eq!(s, 403);
    let theirs = format!("/admin/businesses/shop/desk/{access}");
    let (s, _) = call(&app, Method::GET, &theirs, &shop.token, None).await;
    assert_eq!(s, 404);
    // The shop's requests are due in the default 30 days.
    let shop_body = json!({"kind": "access", "contact": WA, "channel": "letter", "reference": "S-1", "received": day(now())});
    let (s, r) = post(&app, &shop.token, "/admin/businesses/shop/desk", shop_body).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["deadline"], day(now() + 30 * 86_400));

    // Erasure: the contact is gone; the request stays, with no more than
    // the pseudonymous key and the reference.
    let erase = log(&app, t, "erasure", WA, "T-105").await;
    let (s, r) = post(&app, t, &format!("{DESK}/{erase}/erase"), json!({})).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["erased"], true);
    assert_eq!(app.admin_get(&contact).await.0, 404);
    let (s, kept) = call(&app, Method::GET, &format!("{DESK}/{erase}"), t, None).await;
    assert_eq!(s, 200);
    assert_eq!(kept["reference"], "T-105");
    assert!(!kept.to_string().contains(WA), "{kept}");
    let (s, r) = post(
        &app,
        t,
        &format!("{DESK}/{erase}/close"),
        json!({"outcome": "done"}),
    )
    .await;
    assert_eq!(s, 200, "{r}");

    // Each act is in the audit log with the request's reference.
    let (_, audit) = app
        .admin_get("/admin/businesses/cafe/audit?limit=200")
        .await;
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    for (kind, reference) in [
        ("desk_request_logged", "T-100"),
        ("desk_export", "T-100"),
        ("desk_rectified", "T-102"),
        ("desk_closed", "T-102"),
        ("desk_objection", "T-103"),
        ("desk_restriction", "T-104"),
        ("erasure_completed", "T-105"),
        ("desk_closed", "T-105"),
    ] {
        assert!(
            entries.iter().any(|e| e["kind"] == kind
                && e["detail"].as_str().is_some_and(|d| d.contains(reference))),
            "{kind} {reference}: {audit}"
        );
    }
    assert!(
        !audit.to_string().contains("Ana María"),
        "no personal data in the audit log"
    );
    app.stop().await;
}
both_backends!(desk, desk_works);

/// An erasure logged at the desk for a contact under a legal hold waits
/// for it; the lift erases the contact and the request is open again,
/// its history saying so, for the admin to close.
async fn a_desk_erasure_waits_on_a_legal_hold(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let (app, _dir) = app(backend, &graph).await;
    let admin = operator(&app, "admin@cafe.example", Role::Admin, &["cafe"]).await;
    let t = admin.token.as_str();
    say(&app, CAFE, "wamid.H1", text("hello")).await;
    let contact = format!("/admin/businesses/cafe/contacts/{WA}");
    until("the café's contact", 30, async || {
        app.admin_get(&contact).await.0 == 200
    })
    .await;
    let hold = json!({"reason": "tax audit", "reference": "AUDIT-9"});
    let (s, r) = post(&app, t, &format!("{contact}/hold"), hold).await;
    assert_eq!(s, 201, "{r}");
    let erase = log(&app, t, "erasure", WA, "H-1").await;
    let (s, r) = post(&app, t, &format!("{DESK}/{erase}/erase"), json!({})).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["erased"], false, "{r}");
    assert_eq!(r["request"]["state"], "waiting on a legal hold", "{r}");
    assert_eq!(app.admin_get(&contact).await.0, 200, "kept while held");

    let (s, r) = call(&app, Method::DELETE, &format!("{contact}/hold"), t, None).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["erased"], true, "{r}");
    assert_eq!(app.admin_get(&contact).await.0, 404, "erased on the lift");
    let (_, shown) = call(&app, Method::GET, &format!("{DESK}/{erase}"), t, None).await;
    assert_eq!(shown["state"], "open", "{shown}");
    assert!(
        shown
            .to_string()
            .contains("erased when the legal hold was lifted"),
        "{shown}"
    );
    let done = json!({"outcome": "done"});
    let (s, r) = post(&app, t, &format!("{DESK}/{erase}/close"), done).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["state"], "done");
    app.stop().await;
}
both_backends!(desk_and_hold, a_desk_erasure_waits_on_a_legal_hold);
