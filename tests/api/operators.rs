//! Operators (issue 21): enrolment, sign-in with a TOTP code that works
//! once, the per-account lockout, disabling and resetting (sessions and
//! tokens end on every instance), API tokens, and the audit naming who
//! acted; on both stores.

use std::time::Duration;

use serde_json::{Value, json};
use whatsify::domain::operator::Role;

use crate::helpers::{
    ADMIN_TOKEN, Backend, TestApp, embedded, redis, spawn_app, spawn_app_on_store,
};
use crate::operators_helpers::{PASSWORD, code_now, operator};

/// A client that keeps no cookies and follows no redirects.
pub(crate) fn bare() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// `method path` with `bearer` and an optional JSON body: status and JSON.
pub(crate) async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    bearer: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = bare()
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(bearer);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A form body (`application/x-www-form-urlencoded`).
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |v: &str| {
        v.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Posts the sign-in form; the response.
pub(crate) async fn sign_in_form(
    base: &str,
    email: &str,
    password: &str,
    code: &str,
) -> reqwest::Response {
    sign_in_from(&bare(), base, email, password, code).await
}

/// A client whose requests come from the loopback address `127.0.0.n`.
fn from_address(n: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from([127, 0, 0, n]))
        .build()
        .expect("client")
}

/// [`sign_in_form`] with `client`.
async fn sign_in_from(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
    code: &str,
) -> reqwest::Response {
    client
        .post(format!("{base}/console/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("email", email),
            ("password", password),
            ("code", code),
        ]))
        .send()
        .await
        .expect("post")
}

/// The session cookie (`name=value`) of a successful sign-in.
fn cookie_of(r: &reqwest::Response) -> String {
    assert_eq!(r.status(), 303, "signed in");
    r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("pair")
        .to_owned()
}

async fn with_cookie(base: &str, path: &str, cookie: &str) -> u16 {
    bare()
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("get")
        .status()
        .as_u16()
}

/// Waits for the next TOTP step (a code is used once: a second sign-in in
/// the same 30 s needs the next one).
async fn next_code(secret: &str) -> String {
    let now = whatsify::clock::now_secs();
    let wait = 30 - now % 30;
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(200)).await;
    code_now(secret)
}

async fn audit_kinds(app: &TestApp) -> Vec<Value> {
    let (s, body) = app.admin_get("/admin/audit?limit=200").await;
    assert_eq!(s, 200, "{body}");
    body["entries"].as_array().cloned().unwrap_or_default()
}

async fn enrolment_and_sign_in(backend: &Backend) {
    let app = spawn_app(backend).await;
    let base = app.address.clone();
    // The owner (root here) adds an agent; the link works once.
    let (s, added) = app
        .admin_post(
            "/admin/operators",
            &json!({"email": "Ana@Example.org", "role": "agent", "businesses": ["default"]}),
        )
        .await;
    assert_eq!(s, 201, "{added}");
    let url = added["enrolment_url"].as_str().expect("link").to_owned();
    assert!(url.starts_with("/console/enrol/"), "{url}");
    let page = bare()
        .get(format!("{base}{url}"))
        .send()
        .await
        .expect("get");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("ana@example.org") && html.contains("data:image/svg+xml;base64,"));
    let secret = html
        .split("id=\"totp-secret\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .expect("the key is shown")
        .to_owned();
    let enrol = |password: &str, code: String| {
        let (base, url) = (base.clone(), url.clone());
        let password = password.to_owned();
        async move {
            bare()
                .post(format!("{base}{url}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form(&[
                    ("password", password.as_str()),
                    ("password2", password.as_str()),
                    ("code", code.as_str()),
                ]))
                .send()
                .await
                .expect("post")
        }
    };
    // Too short, common, containing the email, or a wrong code: refused, said why.
    for (weak, why) in [
        ("short-one", "at least 12"),
        ("password1234", "common"),
        ("ana-example-2026!", "email"),
    ] {
        let r = enrol(weak, code_now(&secret)).await;
        assert_eq!(r.status(), 400, "{weak}");
        assert!(r.text().await.expect("text").contains(why), "{weak}");
    }
    let r = enrol(PASSWORD, "000000".into()).await;
    assert_eq!(r.status(), 400);
    // The code is kept: read again after the enrolment, it could be the
    // next step's.
    let used = code_now(&secret);
    let r = enrol(PASSWORD, used.clone()).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    // Used: the link is dead.
    assert_eq!(
        bare()
            .get(format!("{base}{url}"))
            .send()
            .await
            .expect("get")
            .status(),
        404
    );
    // The code the enrolment used does not sign in; the next one does, once.
    let r = sign_in_form(&base, "ana@example.org", PASSWORD, &used).await;
    assert_eq!(r.status(), 401, "a used code works once");
    let code = next_code(&secret).await;
    let cookie = cookie_of(&sign_in_form(&base, "ana@example.org", PASSWORD, &code).await);
    assert_eq!(
        with_cookie(&base, "/console/api/overview", &cookie).await,
        200
    );
    let again = sign_in_form(&base, "ana@example.org", PASSWORD, &code).await;
    assert_eq!(again.status(), 401, "the same code again");
    // An agent's session opens the inbox's pages, not the audit log.
    assert_eq!(with_cookie(&base, "/admin/audit", &cookie).await, 403);
    assert_eq!(with_cookie(&base, "/console/audit", &cookie).await, 403);
    // Audited with the operator's id; never the email, password or code.
    let entries = audit_kinds(&app).await;
    let id = added["operator"]["id"].as_str().expect("id");
    for kind in [
        "operator_added",
        "operator_enrolled",
        "operator_signed_in",
        "operator_sign_in_failed",
    ] {
        assert!(entries.iter().any(|e| e["kind"] == kind), "{kind} audited");
    }
    let text = serde_json::to_string(&entries).expect("json");
    assert!(text.contains(&format!("operator:{id}")));
    assert!(!text.contains("ana@example.org") && !text.contains(PASSWORD) && !text.contains(&code));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_enrols_and_signs_in_with_a_code_that_works_once() {
    let (e, r) = (embedded(), redis());
    enrolment_and_sign_in(&e.backend).await;
    enrolment_and_sign_in(&r.backend).await;
}

/// Wrong passwords: each answered the same; after three, tries are slowed
/// (429 with Retry-After); after six the account is locked for a while,
/// even with the right password and code; all audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_slow_down_then_lock_the_account() {
    use whatsify::operators::signin::{LOCK_AFTER, LOCK_SECS, SLOW_AFTER};
    let b = redis();
    let app = spawn_app(&b.backend).await;
    let op = operator(&app, "bo@example.org", Role::Admin, &["default"]).await;
    // From one address, the address's own count stops guessing first.
    let one = from_address(9);
    for _ in 0..whatsify::state::throttle::PER_ADDRESS_BURST as usize {
        let r = sign_in_from(
            &one,
            &app.address,
            "nobody@example.org",
            "wrong-wrong-wrong",
            "123456",
        )
        .await;
        assert_eq!(r.status(), 401);
    }
    let r = sign_in_from(
        &one,
        &app.address,
        "nobody@example.org",
        "wrong-wrong-wrong",
        "123456",
    )
    .await;
    assert_eq!(r.status(), 429);
    assert!(r.text().await.expect("text").contains("from here"));
    // From many addresses, the account's own count: each try from a new
    // address, so only the account's count can stop them.
    let mut failures = 0;
    let mut n = 10;
    while failures < LOCK_AFTER {
        n += 1;
        let client = from_address(n);
        let r = sign_in_from(
            &client,
            &app.address,
            &op.email,
            "not-the-password-at-all",
            &code_now(&op.secret),
        )
        .await;
        match r.status().as_u16() {
            401 => failures += 1,
            429 => {
                assert!(failures >= SLOW_AFTER, "slowed only after {SLOW_AFTER}");
                let wait: u64 = r.headers()["retry-after"]
                    .to_str()
                    .expect("ascii")
                    .parse()
                    .expect("secs");
                assert!(wait <= 60, "{wait}");
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            s => panic!("unexpected {s}"),
        }
    }
    // Locked: the right password and code are refused too, for a while.
    let code = next_code(&op.secret).await;
    let r = sign_in_from(&from_address(200), &app.address, &op.email, PASSWORD, &code).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("secs");
    assert!(wait > LOCK_SECS - 120 && wait <= LOCK_SECS, "{wait}");
    assert!(r.text().await.expect("text").contains("locked"));
    let entries = audit_kinds(&app).await;
    let locks = entries
        .iter()
        .filter(|e| e["kind"] == "operator_locked")
        .count();
    assert_eq!(locks, 1);
    let fails = entries
        .iter()
        .filter(|e| e["kind"] == "operator_sign_in_failed")
        .count();
    assert_eq!(fails, LOCK_AFTER as usize);
    app.stop().await;
}

/// Disabling or resetting an operator ends their console sessions and API
/// tokens at once, on every instance sharing the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_or_resetting_ends_sessions_and_tokens_on_every_instance() {
    let b = redis();
    let one = spawn_app(&b.backend).await;
    let two = spawn_app_on_store(&b.backend, &[], one.store(), 1).await;
    let carla = operator(&one, "carla@example.org", Role::Admin, &["default"]).await;
    let dan = operator(&one, "dan@example.org", Role::Agent, &["default"]).await;
    let cookie = cookie_of(
        &sign_in_form(
            &one.address,
            &carla.email,
            PASSWORD,
            &code_now(&carla.secret),
        )
        .await,
    );
    let dan_cookie =
        cookie_of(&sign_in_form(&one.address, &dan.email, PASSWORD, &code_now(&dan.secret)).await);
    for app in [&one, &two] {
        assert_eq!(
            with_cookie(&app.address, "/console/api/overview", &cookie).await,
            200
        );
        let (s, _) = call(
            app,
            reqwest::Method::GET,
            "/admin/stats",
            &carla.token,
            None,
        )
        .await;
        assert_eq!(s, 200);
    }
    // An owner (root here) disables Carla on instance one.
    let id = carla.account.id.clone();
    let (s, body) = one
        .admin_post(&format!("/admin/operators/{id}/disable"), &json!({}))
        .await;
    assert_eq!(s, 200, "{body}");
    for app in [&one, &two] {
        assert_eq!(
            with_cookie(&app.address, "/console/api/overview", &cookie).await,
            401
        );
        let (s, _) = call(
            app,
            reqwest::Method::GET,
            "/admin/stats",
            &carla.token,
            None,
        )
        .await;
        assert_eq!(s, 401);
    }
    let r = sign_in_form(
        &two.address,
        &carla.email,
        PASSWORD,
        &next_code(&carla.secret).await,
    )
    .await;
    assert_eq!(r.status(), 401, "a disabled operator cannot sign in");
    // Resetting Dan: his session ends, a new link is given.
    let (s, body) = two
        .admin_post(
            &format!("/admin/operators/{}/reset", dan.account.id),
            &json!({}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body["enrolment_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("/console/enrol/"))
    );
    assert_eq!(
        with_cookie(&one.address, "/console/api/overview", &dan_cookie).await,
        401
    );
    let (_, list) = one.admin_get("/admin/operators").await;
    let dan_row = list["operators"]
        .as_array()
        .expect("list")
        .iter()
        .find(|o| o["email"] == "dan@example.org")
        .cloned()
        .expect("dan");
    assert_eq!(dan_row["enrolled"], false);
    two.stop().await;
    one.stop().await;
}

async fn tokens_on(backend: &Backend) {
    let app = spawn_app(backend).await;
    let eve = operator(&app, "eve@example.org", Role::Admin, &["default"]).await;
    let get = reqwest::Method::GET;
    // Made by the operator, shown once, at most a year.
    let (s, _) = call(
        &app,
        reqwest::Method::POST,
        "/admin/tokens",
        &eve.token,
        Some(&json!({"name": "nightly", "days": 400})),
    )
    .await;
    assert_eq!(s, 400);
    let (s, made) = call(
        &app,
        reqwest::Method::POST,
        "/admin/tokens",
        &eve.token,
        Some(&json!({"name": "nightly", "days": 30})),
    )
    .await;
    assert_eq!(s, 201, "{made}");
    let token = made["token"].as_str().expect("shown once").to_owned();
    let (_, list) = call(&app, get.clone(), "/admin/tokens", &token, None).await;
    let listed = serde_json::to_string(&list).expect("json");
    assert!(
        listed.contains("nightly") && !listed.contains(&token),
        "never shown again"
    );
    // Limited to the operator's role: an admin's token cannot manage operators.
    let (s, _) = call(&app, get.clone(), "/admin/operators", &token, None).await;
    assert_eq!(s, 403);
    // What it does is audited as the token.
    let wa = "15550001234";
    crate::outbox::say_hi(&app, wa, "wamid.TOK1").await;
    let id = made["id"].as_str().expect("id").to_owned();
    let body = json!({"purpose": "marketing", "granted": true, "reference": "call 7"});
    let mut recorded = 0;
    for _ in 0..100 {
        recorded = call(
            &app,
            reqwest::Method::POST,
            &format!("/admin/contacts/{wa}/consent"),
            &token,
            Some(&body),
        )
        .await
        .0;
        if recorded == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(recorded, 200);
    let entries = audit_kinds(&app).await;
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "consent_given" && e["by"] == format!("token:{id}")),
        "{entries:?}"
    );
    // Revoked: refused at once.
    let (s, _) = call(
        &app,
        reqwest::Method::DELETE,
        &format!("/admin/tokens/{id}"),
        &eve.token,
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = call(&app, get.clone(), "/admin/stats", &token, None).await;
    assert_eq!(s, 401);
    // A made-up token is no token; the root token still works, as root.
    let (s, _) = call(
        &app,
        get.clone(),
        "/admin/stats",
        "wsf_tok_000000000000_abc",
        None,
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = call(&app, get, "/admin/operators", ADMIN_TOKEN, None).await;
    assert_eq!(s, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_are_shown_once_limited_audited_and_revocable() {
    let (e, r) = (embedded(), redis());
    tokens_on(&e.backend).await;
    tokens_on(&r.backend).await;
}

/// `whatsify operator add|list|disable|reset` on the settings' store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_manages_operators() {
    let b = redis();
    let app = spawn_app(&b.backend).await;
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_whatsify"))
            .arg("operator")
            .args(args)
            .envs(crate::helpers::test_env(
                &b.backend,
                &[(
                    "WHATSIFY__CONSOLE__PUBLIC_URL",
                    "https://console.example.org".to_owned(),
                )],
            ))
            .output()
            .expect("whatsify runs")
    };
    let out = run(&["add", "--email", "owner@example.org", "--role", "owner"]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = said.lines().last().expect("link").to_owned();
    assert!(
        link.starts_with("https://console.example.org/console/enrol/"),
        "{said}"
    );
    let path = link.trim_start_matches("https://console.example.org");
    assert_eq!(
        app.get(path).await.status(),
        200,
        "the running server opens the link"
    );
    let bad = run(&["add", "--email", "x@example.org", "--role", "agent"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("needs at least one --business"));
    let bad = run(&[
        "add",
        "--email",
        "x@example.org",
        "--role",
        "agent",
        "--business",
        "nope",
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no business has the id"));
    let listed = String::from_utf8_lossy(&run(&["list"]).stdout).to_string();
    assert!(
        listed.contains("owner@example.org\towner\tevery business\twaiting for enrolment"),
        "{listed}"
    );
    let reset = run(&["reset", "owner@example.org"]);
    assert!(reset.status.success());
    assert_eq!(
        app.get(path).await.status(),
        404,
        "a reset ends the old link"
    );
    let off = run(&["disable", "owner@example.org"]);
    assert!(String::from_utf8_lossy(&off.stdout).contains("disabled"));
    let none = run(&["disable", "nobody@example.org"]);
    assert!(String::from_utf8_lossy(&none.stderr).contains("no operator has the email"));
    app.stop().await;
}
