//! The role matrix (issue 21): every admin and console route, called by
//! an operator of each role (by API token, or by console session for the
//! console's own routes), answers 403 exactly when the role or the
//! operator's businesses do not cover it. The expectations are written
//! out here from the words, not derived from the server's table.

use serde_json::{Value, json};
use whatsify::domain::operator::Role;

use crate::businesses::{CAFE, WA, say, text};
use crate::graph::FakeGraph;
use crate::helpers::{Backend, TestApp};
use crate::operators::{bare, call, form};
use crate::operators_helpers::{PASSWORD, TestOperator, code_now, operator};
use crate::outbox::until;

/// Who may: `o` owner, `a` admin, `g` agent, `u` auditor (of the café).
struct Route {
    method: &'static str,
    path: &'static str,
    may: &'static str,
    body: Option<Value>,
}

fn r(method: &'static str, path: &'static str, may: &'static str) -> Route {
    Route {
        method,
        path,
        may,
        body: None,
    }
}

/// A customer no one knows: destructive routes are tried on them.
const NOBODY: &str = "15550000001";

/// Every admin route, on the café (`P`), and the global ones.
fn admin_routes() -> Vec<Route> {
    let mut v = vec![
        r("GET", "P/contacts/WA", "oag"),
        r("DELETE", "P/contacts/NOBODY", "oa"),
        r("GET", "P/contacts/WA/export", "oa"),
        r("GET", "P/contacts/WA/conversation", "oag"),
        r("GET", "P/contacts/WA/messages", "oag"),
        r("POST", "P/contacts/NOBODY/messages", "og"),
        r("POST", "P/contacts/NOBODY/handoff/close", "og"),
        // The inbox (its event stream, which never ends, is checked in
        // `inbox`).
        r("GET", "P/inbox", "og"),
        r("POST", "P/inbox/NOBODY/take", "og"),
        r("GET", "P/campaigns", "oa"),
        r("GET", "P/campaigns/c0ffee", "oa"),
        r("DELETE", "P/campaigns/c0ffee", "oa"),
        r("GET", "P/audit", "oau"),
        r("GET", "P/stats", "oau"),
        r("GET", "P/outbox/dead-letters", "oa"),
        r("DELETE", "P", "o"),
        r("GET", "P/removal", "o"),
        r("GET", "/admin/businesses", "oagu"),
        r("GET", "/admin/operators", "o"),
        r("POST", "/admin/operators/op_nobody/disable", "o"),
        r("POST", "/admin/operators/op_nobody/reset", "o"),
        r("GET", "/admin/tokens", "oagu"),
        r("GET", "/metrics", "o"),
        r("GET", "P/contacts/NOBODY/hold", "oa"),
        r("DELETE", "P/contacts/NOBODY/hold", "oa"),
        r("GET", "P/contacts/NOBODY/disclosures", "oa"),
    ];
    let mut consent = r("POST", "P/contacts/NOBODY/consent", "oa");
    consent.body = Some(json!({"purpose": "marketing", "granted": false}));
    let mut campaign = r("POST", "P/campaigns", "oa");
    campaign.body = Some(json!({"name": "x"}));
    let mut operators = r("POST", "/admin/operators", "o");
    operators.body =
        Some(json!({"email": "new@example.org", "role": "agent", "businesses": ["nope"]}));
    let mut tokens = r("POST", "/admin/tokens", "oagu");
    tokens.body = Some(json!({"name": "matrix", "days": 1}));
    v.extend([consent, campaign, operators, tokens]);
    let mut hold = r("POST", "P/contacts/NOBODY/hold", "oa");
    hold.body = Some(json!({"reason": "audit", "reference": "R-1"}));
    let mut disclosure = r("POST", "P/contacts/NOBODY/disclosures", "oa");
    disclosure.body =
        Some(json!({"what": "x", "to": "Police", "legal_basis": "law", "date": "2026-01-01"}));
    v.extend([hold, disclosure]);
    v.extend(desk_routes());
    v
}

/// The privacy desk's routes: acts on a request no business has (404
/// when allowed), a request with a bad body (400 when allowed).
fn desk_routes() -> Vec<Route> {
    let mut log = r("POST", "P/desk", "oa");
    log.body = Some(json!({"kind": "nope"}));
    let mut v = vec![
        log,
        r("GET", "P/desk", "oau"),
        r("GET", "P/desk/dr_nobody", "oau"),
    ];
    for path in [
        "P/desk/dr_nobody/export",
        "P/desk/dr_nobody/rectify",
        "P/desk/dr_nobody/erase",
        "P/desk/dr_nobody/object",
        "P/desk/dr_nobody/restrict",
        "P/desk/dr_nobody/close",
    ] {
        v.push(r("POST", path, "oa"));
    }
    v
}

/// The console's pages and API (by session).
fn console_routes() -> Vec<Route> {
    let mut sim = r("POST", "/console/api/simulator?business=cafe", "oa");
    sim.body = Some(json!({"reset": true}));
    vec![
        r("GET", "/console", "oagu"),
        r("GET", "/console/contacts", "oag"),
        r("GET", "/console/inbox", "og"),
        r("GET", "/console/requests", "oau"),
        r("GET", "/console/campaigns", "oa"),
        r("GET", "/console/audit", "oau"),
        r("GET", "/console/flows", "oa"),
        r("GET", "/console/account", "oagu"),
        r("GET", "/console/api/overview?business=cafe", "oagu"),
        r("GET", "/console/api/requests?business=cafe", "oau"),
        r("GET", "/console/api/flows?business=cafe", "oa"),
        r("GET", "/console/flows/cafe/diagram.svg?business=cafe", "oa"),
        sim,
    ]
}

fn concrete(path: &str) -> String {
    path.replacen("P", "/admin/businesses/cafe", 1)
        .replace("NOBODY", NOBODY)
        .replace("WA", WA)
}

/// Signs `op` in to the console: the cookie and the CSRF token.
async fn session(app: &TestApp, op: &TestOperator) -> (String, String) {
    let r = bare()
        .post(format!("{}/console/sign-in", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("email", &op.email),
            ("password", PASSWORD),
            ("code", &code_now(&op.secret)),
        ]))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 303, "{} signs in", op.email);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let page = bare()
        .get(format!("{}/console", app.address))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("get");
    let html = page.text().await.expect("html");
    let csrf = html
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf")
        .to_owned();
    (cookie, csrf)
}

async fn by_session(app: &TestApp, route: &Route, (cookie, csrf): &(String, String)) -> u16 {
    let url = format!("{}{}", app.address, concrete(route.path));
    let req = match route.method {
        "GET" => bare().get(url),
        _ => bare()
            .post(url)
            .json(route.body.as_ref().unwrap_or(&json!({}))),
    };
    req.header("cookie", cookie)
        .header("x-csrf-token", csrf)
        .send()
        .await
        .expect("sent")
        .status()
        .as_u16()
}

fn method(m: &str) -> reqwest::Method {
    reqwest::Method::from_bytes(m.as_bytes()).expect("method")
}

async fn matrix(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let (app, _flows) = crate::businesses::app(backend, &graph).await;
    // A customer of the café, so contact routes find someone.
    say(&app, CAFE, "wamid.R1", text("hello")).await;
    until("the café's contact", 30, async || {
        app.admin_get(&format!("/admin/businesses/cafe/contacts/{WA}"))
            .await
            .0
            == 200
    })
    .await;
    let ops = [
        (
            'o',
            operator(&app, "owner@example.org", Role::Owner, &[]).await,
        ),
        (
            'a',
            operator(&app, "admin@example.org", Role::Admin, &["cafe"]).await,
        ),
        (
            'g',
            operator(&app, "agent@example.org", Role::Agent, &["cafe"]).await,
        ),
        (
            'u',
            operator(&app, "auditor@example.org", Role::Auditor, &["cafe"]).await,
        ),
    ];
    // The shop's admin: the café's routes are not theirs.
    let shop_admin = operator(&app, "shop-admin@example.org", Role::Admin, &["shop"]).await;
    let mut wrong = Vec::new();
    for route in admin_routes() {
        let path = concrete(route.path);
        for (letter, op) in &ops {
            let (s, body) = call(
                &app,
                method(route.method),
                &path,
                &op.token,
                route.body.as_ref(),
            )
            .await;
            let allowed = route.may.contains(*letter);
            if (s == 403) == allowed || s == 401 {
                wrong.push(format!("{} {path} as {letter}: {s} {body}", route.method));
            }
        }
        let (s, _) = call(
            &app,
            method(route.method),
            &path,
            &shop_admin.token,
            route.body.as_ref(),
        )
        .await;
        let shop_allowed = route.may.contains('a') && !route.path.starts_with('P');
        if (s == 403) == shop_allowed {
            wrong.push(format!("{} {path} as the shop's admin: {s}", route.method));
        }
    }
    for (letter, op) in &ops {
        let signed = session(&app, op).await;
        for route in console_routes() {
            let s = by_session(&app, &route, &signed).await;
            let allowed = route.may.contains(*letter);
            if (s == 403) == allowed || s == 401 {
                wrong.push(format!(
                    "{} {} in the console as {letter}: {s}",
                    route.method, route.path
                ));
            }
        }
    }
    // The shop's admin cannot pick the café in the console either.
    let signed = session(&app, &shop_admin).await;
    let s = by_session(
        &app,
        &r("GET", "/console/api/overview?business=cafe", ""),
        &signed,
    )
    .await;
    if s != 403 {
        wrong.push(format!("the shop's admin opened the café's overview: {s}"));
    }
    assert!(
        wrong.is_empty(),
        "answers that break the role matrix:\n{}",
        wrong.join("\n")
    );
    // Each operator's list of businesses is theirs only.
    let (_, list) = call(
        &app,
        reqwest::Method::GET,
        "/admin/businesses",
        &shop_admin.token,
        None,
    )
    .await;
    let ids: Vec<&str> = list["businesses"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|b| b["id"].as_str())
        .collect();
    assert_eq!(ids, ["shop"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_role_as_the_matrix_says() {
    let (e, r) = (crate::helpers::embedded(), crate::helpers::redis());
    matrix(&e.backend).await;
    matrix(&r.backend).await;
}
