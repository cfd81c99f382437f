//! The operator console (issue 9): sign-in, the session cookie, CSRF, the
//! refusal of signed-out requests, and the overview in a real headless
//! Chromium (Debian's `chromium` and `chromedriver`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::graph::{FakeGraph, Sent};
use crate::helpers::{ADMIN_TOKEN, TestApp, embedded, free_port};
use crate::outbox::{app_with, say_hi, sent_to, until};

/// A client that keeps no cookies and follows no redirects: each request
/// says exactly what it carries.
fn bare() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Signs in; answers the session cookie (`name=value`) and the page's CSRF
/// token.
async fn sign_in(app: &TestApp) -> (String, String) {
    sign_in_at(&app.address).await
}

/// [`sign_in`] on the server at `base` (`http://host:port`).
pub async fn sign_in_at(base: &str) -> (String, String) {
    let r = bare()
        .post(format!("{base}/console/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console");
    let set = r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    assert!(!set.contains("Secure"), "plain http here: {set}");
    let cookie = set.split(';').next().expect("pair").to_owned();
    let value = cookie.split_once('=').expect("=").1;
    assert!(
        value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()),
        "an opaque random id: {cookie}"
    );
    let page = bare()
        .get(format!("{base}/console"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    let csrf = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries the CSRF token")
        .to_owned();
    (cookie, csrf)
}

/// Every console route refuses a signed-out request (pages show only the
/// sign-in form), sign-in sets a strict cookie, a forged form or a request
/// without the CSRF token is refused, and signing out ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_out_requests_are_refused_and_sessions_are_strict() {
    let b = embedded();
    let graph = FakeGraph::start().await;
    let app = app_with(&b.backend, &graph, &[]).await;
    let base = &app.address;
    let c = bare();

    // Signed out: pages show the sign-in form, the API says 401. Every
    // console route (`console::routes`) is in one of these lists.
    let pages: Vec<&str> = whatsify::console::PAGES
        .iter()
        .map(|(p, _, _)| *p)
        .chain(["/console/sign-in"])
        .collect();
    let refused = [
        ("GET", "/console/api/overview"),
        ("GET", "/console/api/requests"),
        ("GET", "/console/api/flows"),
        ("GET", "/console/flows/welcome/diagram.svg"),
        ("POST", "/console/api/simulator"),
        ("POST", "/console/sign-out"),
        ("GET", "/admin/audit"),
        ("GET", "/admin/campaigns"),
        ("POST", "/admin/campaigns"),
    ];
    // Open to anyone: the sign-in form's target and the code.
    let open = [
        "/console/sign-in",
        "/console/app.js",
        "/console/style.css",
        "/console/inbox.js",
        "/console/enrol/{token}",
    ];
    let sources = [
        include_str!("../../src/console/mod.rs"),
        include_str!("../../src/console/inbox.rs"),
        include_str!("../../src/startup.rs"),
    ];
    let routes: Vec<&str> = sources
        .iter()
        .flat_map(|s| s.split('"'))
        .filter(|s| s.starts_with("/console"))
        .collect();
    assert!(routes.len() >= 16, "the routes were found: {routes:?}");
    for route in routes {
        let route = route.replace("{id}", "welcome");
        assert!(
            pages.contains(&route.as_str())
                || open.contains(&route.as_str())
                || refused.iter().any(|(_, p)| *p == route),
            "{route} is not checked signed out"
        );
    }
    for (method, path) in refused {
        let r = c
            .request(method.parse().expect("method"), format!("{base}{path}"))
            .json(&json!({"text": "hi"}))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 401, "{method} {path}");
        let body = r.text().await.expect("text");
        assert!(!body.contains("welcome"), "{path} leaks: {body}");
    }
    for path in pages {
        let r = c.get(format!("{base}{path}")).send().await.expect("get");
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        let page = r.text().await.expect("text");
        assert!(page.contains("Admin token"), "{path}: {page}");
        assert!(
            !page.contains("Messages in"),
            "{path} shows the overview signed out"
        );
    }
    let r = c
        .get(format!("{base}/console/api/overview"))
        .header("cookie", format!("whatsify_console={}", "ab".repeat(32)))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401, "a made-up session id");

    // A wrong token, and a sign-in form posted from another site.
    let r = c
        .post(format!("{base}/console/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=not-the-admin-token-at-all-0000000")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(
        r.text()
            .await
            .expect("text")
            .contains("not the admin token")
    );
    let r = c
        .post(format!("{base}/console/sign-in"))
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());

    // Behind a TLS-terminating proxy the cookie is also Secure.
    let r = c
        .post(format!("{base}/console/sign-in"))
        .header("x-forwarded-proto", "https")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(set.contains("; Secure"), "{set}");

    // Signed in: the overview and its figures.
    let wa = "16505559001";
    say_hi(&app, wa, "wamid.C1").await;
    until("the welcome", 30, async || !sent_to(&graph, wa).is_empty()).await;
    let (cookie, csrf) = sign_in(&app).await;
    let get = |path: &str| {
        c.get(format!("{base}{path}"))
            .header("cookie", &cookie)
            .send()
    };
    let page = get("/console")
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(page.contains("Messages in"), "{page}");
    let r = get("/console/api/overview").await.expect("get");
    assert_eq!(r.status(), 200);
    let figures: Value = r.json().await.expect("json");
    assert!(figures["messages_in"].as_u64() >= Some(1), "{figures}");
    assert!(figures["last_webhook_at"].is_u64(), "{figures}");
    assert!(!figures.to_string().contains(wa));

    // The admin API with the cookie: reading needs no more; a change needs
    // the CSRF token.
    let r = get(&format!("/admin/contacts/{wa}")).await.expect("get");
    assert_eq!(r.status(), 200);
    let consent = json!({"purpose": "marketing", "granted": true, "reference": "ticket 1"});
    let wrong = "0".repeat(64);
    for (token, want, why) in [
        (None, 401, "no CSRF token"),
        (Some(wrong.as_str()), 401, "a wrong CSRF token"),
        (Some(csrf.as_str()), 200, "the session's CSRF token"),
    ] {
        let mut req = c
            .post(format!("{base}/admin/contacts/{wa}/consent"))
            .header("cookie", &cookie)
            .json(&consent);
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        let r = req.send().await.expect("post");
        assert_eq!(r.status(), want, "{why}");
    }

    // The simulator: its own conversation per session, clear errors, the
    // CSRF token like any change.
    let sim = |body: Value, token: &str| {
        c.post(format!("{base}/console/api/simulator"))
            .header("cookie", &cookie)
            .header("x-csrf-token", token)
            .json(&body)
            .send()
    };
    let r = sim(json!({"text": "hi"}), &wrong).await.expect("post");
    assert_eq!(r.status(), 401, "no CSRF token, no simulator");
    let r = sim(json!({"reset": true, "name": "Zoe"}), &csrf)
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let said: Value = sim(json!({"text": "hi"}), &csrf)
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let shown = said.to_string();
    assert!(
        shown.contains("Hi Zoe") && shown.contains("See offers"),
        "{said}"
    );
    assert_eq!(said["at"], json!({"flow": "welcome", "step": "menu"}));
    let tapped: Value = sim(
        json!({"choice": {"id": "menu_offers", "title": "See offers"}}),
        &csrf,
    )
    .await
    .expect("post")
    .json()
    .await
    .expect("json");
    assert_eq!(tapped["at"]["flow"], "promotions", "{tapped}");
    for (body, want) in [
        (json!({}), "exactly one of text, choice or reset"),
        (
            json!({"text": "hi", "choice": {"id": "a", "title": "b"}}),
            "exactly one",
        ),
        (json!({"text": " "}), "1 to 4096 characters"),
        (json!({"text": "x".repeat(4097)}), "1 to 4096 characters"),
    ] {
        let r = sim(body, &csrf).await.expect("post");
        assert_eq!(r.status(), 400);
        let answer: Value = r.json().await.expect("json");
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains(want)),
            "{answer}"
        );
    }
    let r = sim(json!({"txt": "hi"}), &csrf).await.expect("post");
    assert_eq!(r.status(), 400, "an unknown field");
    let answer: Value = r.json().await.expect("json");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown field `txt`")),
        "{answer}"
    );
    // Flows: the files, and a diagram of each flow in force only.
    let flows: Value = get("/console/api/flows")
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(flows["valid"], true, "{flows}");
    let welcome = flows["files"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["file"] == "welcome.yaml"))
        .expect("welcome.yaml listed");
    assert_eq!(welcome["flow"], "welcome");
    assert_eq!(welcome["in_force"]["default"], true);
    let r = get("/console/flows/welcome/diagram.svg")
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    assert!(r.text().await.expect("text").contains(">menu<"));
    let r = get("/console/flows/nope/diagram.svg").await.expect("get");
    assert_eq!(r.status(), 404);
    let requests: Value = get("/console/api/requests")
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(requests["deadline_days"], 30, "{requests}");
    assert_eq!(requests["requests"], json!([]), "{requests}");
    // A request made after the page was first read shows up, and so does
    // its completion (the log is read on from where it was left).
    let ask = app
        .post_signed(&crate::outbox::text_from(
            wa,
            "wamid.C2",
            "MY DATA",
            crate::outbox::now(),
        ))
        .await;
    assert_eq!(ask.status(), 200);
    until("the export, answered", 30, async || {
        let requests: Value = get("/console/api/requests")
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        let rows = requests["requests"].as_array().cloned().unwrap_or_default();
        rows.len() == 1 && rows[0]["what"] == "export" && rows[0]["state"] == "completed"
    })
    .await;

    // Signing out ends the session.
    let r = c
        .post(format!("{base}/console/sign-out"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 204);
    let r = get("/console/api/overview").await.expect("get");
    assert_eq!(r.status(), 401);
    graph.stop().await;
}

/// Two instances on one Redis, as behind a load balancer without sticky
/// sessions: a session started on one is honoured by the other (and so is
/// its CSRF token and its simulator conversation); signing out on one
/// ends it on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_session_is_shared_by_instances_on_one_redis() {
    let b = crate::helpers::redis();
    let graph = FakeGraph::start().await;
    let one = app_with(&b.backend, &graph, &[]).await;
    let two = app_with(&b.backend, &graph, &[]).await;
    let (cookie, csrf) = sign_in(&one).await;
    let c = bare();
    for app in [&one, &two] {
        let r = c
            .get(format!("{}/console/api/overview", app.address))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200, "{}", app.address);
    }
    let sim = |app: &TestApp, body: Value| {
        c.post(format!("{}/console/api/simulator", app.address))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .json(&body)
            .send()
    };
    let r = sim(&one, json!({"text": "hi"})).await.expect("post");
    assert_eq!(r.status(), 200);
    // The conversation goes on on the other instance, at the menu.
    let r = sim(
        &two,
        json!({"choice": {"id": "menu_offers", "title": "See offers"}}),
    )
    .await
    .expect("post");
    assert_eq!(r.status(), 200);
    let tapped: Value = r.json().await.expect("json");
    assert_eq!(tapped["at"]["flow"], "promotions", "{tapped}");
    let r = c
        .post(format!("{}/console/sign-out", two.address))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 204);
    let r = c
        .get(format!("{}/console/api/overview", one.address))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401, "signed out everywhere");
    graph.stop().await;
}

/// `chromedriver` on a free port, killed on drop.
pub(crate) struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Driver {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver must be installed (scripts/test installs chromium-driver)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// A headless Chromium session (1280×900) through a fresh chromedriver.
pub(crate) async fn headless() -> (Driver, fantoccini::Client) {
    let driver = chromedriver();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"]
        }),
    );
    let browser = fantoccini::ClientBuilder::rustls()
        .expect("client")
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a headless Chromium session");
    (driver, browser)
}

/// Signs in through the form and waits for the overview.
pub(crate) async fn sign_in_browser(
    browser: &fantoccini::Client,
    app: &TestApp,
) -> Result<(), fantoccini::error::CmdError> {
    use fantoccini::Locator;
    browser.goto(&format!("{}/console", app.address)).await?;
    // The admin token is the break-glass form, folded away.
    browser
        .find(Locator::Css("details summary"))
        .await?
        .click()
        .await?;
    browser
        .find(Locator::Id("token"))
        .await?
        .send_keys(ADMIN_TOKEN)
        .await?;
    browser
        .find(Locator::Css("#token-sign-in button[type=submit]"))
        .await?
        .click()
        .await?;
    wait_text(browser, "#updated", "Updated").await
}

/// Clicks the element.
pub(crate) async fn click(
    browser: &fantoccini::Client,
    css: &str,
) -> Result<(), fantoccini::error::CmdError> {
    browser
        .find(fantoccini::Locator::Css(css))
        .await?
        .click()
        .await
}

/// Types into the element.
pub(crate) async fn type_in(
    browser: &fantoccini::Client,
    css: &str,
    text: &str,
) -> Result<(), fantoccini::error::CmdError> {
    browser
        .find(fantoccini::Locator::Css(css))
        .await?
        .send_keys(text)
        .await
}

/// What sticks out past the window's right edge: nothing when the page
/// fits its width (wide tables and diagrams scroll inside their own box).
async fn sticking_out(browser: &fantoccini::Client) -> Result<Value, fantoccini::error::CmdError> {
    browser
        .execute(
            "const w = document.documentElement.clientWidth; \
             if (document.documentElement.scrollWidth <= w) return []; \
             return [...document.querySelectorAll('body *')] \
               .filter(e => e.getBoundingClientRect().right > w + 1 && !e.closest('.scroll, .diagram')) \
               .map(e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 10) \
               .concat(['the page is ' + document.documentElement.scrollWidth + ' px wide in ' + w]);",
            vec![],
        )
        .await
}

/// The visible text of each element matching `css`, read in one go (a
/// page that redraws cannot leave a stale element behind).
pub(crate) async fn texts(
    browser: &fantoccini::Client,
    css: &str,
) -> Result<Vec<String>, fantoccini::error::CmdError> {
    let v = browser
        .execute(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText.replace(/\\s+/g, ' ').trim());",
            vec![json!(css)],
        )
        .await?;
    Ok(serde_json::from_value(v).unwrap_or_default())
}

/// Saves a screenshot of the page under `name`.
pub(crate) async fn shot(
    browser: &fantoccini::Client,
    name: &str,
) -> Result<(), fantoccini::error::CmdError> {
    let png = browser.screenshot().await?;
    std::fs::write(screenshots().join(name), png).ok();
    Ok(())
}

/// Where the browser tests leave their screenshots.
fn screenshots() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

/// Waits (bounded) until the element's text contains `want`.
pub(crate) async fn wait_text(
    browser: &fantoccini::Client,
    css: &str,
    want: &str,
) -> Result<(), fantoccini::error::CmdError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Read in one go: a page still loading has no such element yet,
        // and one redrawn in the background (the live campaign report)
        // would leave a found element stale.
        let text = texts(browser, css)
            .await
            .ok()
            .and_then(|t| t.into_iter().next())
            .unwrap_or_default();
        if text.contains(want) {
            return Ok(());
        }
        assert!(
            Instant::now() < deadline,
            "{css} never said {want:?}: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// In headless Chromium: the sign-in page, a wrong token's message,
/// signing in, the overview's live figures, and signing out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_and_sees_today_in_a_real_browser() {
    use fantoccini::Locator;
    let b = embedded();
    let graph = FakeGraph::start().await;
    let app = app_with(&b.backend, &graph, &[]).await;
    let wa = "16505559002";
    say_hi(&app, wa, "wamid.B1").await;
    until("the welcome", 30, async || !sent_to(&graph, wa).is_empty()).await;
    let stop = app
        .post_signed(&crate::outbox::text_from(
            wa,
            "wamid.B2",
            "STOP",
            crate::outbox::now(),
        ))
        .await;
    assert_eq!(stop.status(), 200);
    until("the opt-out", 30, async || sent_to(&graph, wa).len() >= 3).await;

    let (_driver, browser) = headless().await;
    let shots = screenshots();
    let result = async {
        browser.goto(&format!("{}/console", app.address)).await?;
        browser.find(Locator::Id("email")).await?;
        shot(&browser, "sign-in.png").await?;
        click(&browser, "details summary").await?;
        type_in(&browser, "#token", "wrong-token-000000000000000000000").await?;
        click(&browser, "#token-sign-in button[type=submit]").await?;
        wait_text(&browser, "body", "not the admin token").await?;
        type_in(&browser, "#token", ADMIN_TOKEN).await?;
        click(&browser, "#token-sign-in button[type=submit]").await?;
        // The overview fills in from the API.
        wait_js(
            &browser,
            "the figures never loaded",
            "const e = document.getElementById('messages_in'); return e ? Number(e.textContent) : null;",
            |v| v.as_u64().is_some_and(|n| n >= 1),
        )
        .await?;
        wait_text(&browser, "#updated", "Updated").await?;
        let status = browser.find(Locator::Id("status")).await?.text().await?;
        assert_eq!(status, "", "a routine refresh is not announced");
        let body = browser.find(Locator::Css("body")).await?.text().await?;
        assert!(!body.contains(wa), "no number on the overview");
        shot(&browser, "overview.png").await?;
        // Nothing is kept in local storage.
        let stored = browser
            .execute("return window.localStorage.length;", vec![])
            .await?;
        assert_eq!(stored, json!(0));
        // Phone-sized.
        browser.set_window_size(390, 844).await?;
        shot(&browser, "overview-phone.png").await?;
        browser.set_window_size(1280, 900).await?;

        // Contacts: find the customer, see the ledger and the
        // conversation, export, then erase with a typed confirmation.
        browser
            .goto(&format!("{}/console/contacts", app.address))
            .await?;
        type_in(&browser, "#contact-id", wa).await?;
        click(&browser, "#find button").await?;
        wait_text(&browser, "#status", "Found").await?;
        let profile = browser.find(Locator::Id("profile")).await?.text().await?;
        assert!(profile.contains("Ana"), "{profile}");
        let ledger = browser.find(Locator::Id("ledger")).await?.text().await?;
        assert!(
            ledger.contains("marketing") && ledger.contains("keyword"),
            "{ledger}"
        );
        click(&browser, "#show-conversation").await?;
        wait_text(&browser, "#conversation", "Customer: hi").await?;
        click(&browser, "#export").await?;
        wait_text(&browser, "#status", "ready to download").await?;
        let href = browser
            .find(Locator::Id("download"))
            .await?
            .attr("href")
            .await?
            .unwrap_or_default();
        assert!(href.starts_with("blob:"), "{href}");
        shot(&browser, "contacts.png").await?;
        type_in(&browser, "#erase-confirm", "16505550000").await?;
        click(&browser, "#erase button").await?;
        wait_text(&browser, "#status", "does not match").await?;
        browser.find(Locator::Id("erase-confirm")).await?.clear().await?;
        type_in(&browser, "#erase-confirm", wa).await?;
        click(&browser, "#erase button").await?;
        wait_text(&browser, "#status", "Erased").await?;
        click(&browser, "#find button").await?;
        wait_text(&browser, "#status", "Nothing is kept").await?;

        browser.find(Locator::Id("sign-out")).await?.click().await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser.find(Locator::Id("token")).await.is_err() {
            assert!(Instant::now() < deadline, "not signed out");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    let _ = browser.close().await;
    result.expect("the browser steps");
    eprintln!("console screenshots in {}", shots.display());
    graph.stop().await;
}

/// A `datetime-local` value (UTC, as the headless browser's zone is).
fn local_minute(unix: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix as i64).expect("time");
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// Waits (bounded) until the script's answer satisfies `ok`.
pub(crate) async fn wait_js(
    browser: &fantoccini::Client,
    what: &str,
    script: &str,
    ok: impl Fn(&Value) -> bool,
) -> Result<Value, fantoccini::error::CmdError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = browser.execute(script, vec![]).await.unwrap_or(Value::Null);
        if ok(&v) {
            return Ok(v);
        }
        assert!(Instant::now() < deadline, "{what}: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// In headless Chromium: the privacy requests (an unanswered one a week
/// old highlighted), a campaign created from the page whose live report
/// reaches the fake Graph API's count, another cancelled, the audit log
/// with its chain and a filter, the flow files with a broken one's
/// file:line:col, a flow's diagram, and a conversation in the simulator
/// that sends, stores and audits nothing. A screenshot of each page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_campaigns_audits_and_tries_flows_in_a_real_browser() {
    use fantoccini::Locator;
    let b = embedded();
    let graph = FakeGraph::start().await;
    // The flows, copied: a broken file is added while the server runs.
    let flows = tempfile::tempdir().expect("temp dir");
    for e in std::fs::read_dir("flows").expect("flows") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "yaml") {
            std::fs::copy(&p, flows.path().join(p.file_name().expect("name"))).expect("copy");
        }
    }
    let app = crate::campaigns::campaign_app(
        &b.backend,
        &graph,
        &[("WHATSIFY__FLOWS__DIR", flows.path().display().to_string())],
    )
    .await;
    // Three customers; two agree to promotions (recorded by support).
    let customers = ["16505559101", "16505559102", "16505559103"];
    for (i, wa) in customers.iter().enumerate() {
        say_hi(&app, wa, &format!("wamid.C{i}")).await;
    }
    until("the welcomes", 30, async || {
        customers.iter().all(|wa| !sent_to(&graph, wa).is_empty())
    })
    .await;
    for wa in &customers[..2] {
        let (status, body) = app
            .admin_post(
                &format!("/admin/contacts/{wa}/consent"),
                &json!({"purpose": "marketing", "granted": true, "reference": "call 42"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (_driver, browser) = headless().await;
    let result = async {
        sign_in_browser(&browser, &app).await?;

        // Campaigns: one to a pasted list (two of three consented).
        browser
            .goto(&format!("{}/console/campaigns", app.address))
            .await?;
        type_in(&browser, "#c-name", "Winter sale").await?;
        type_in(&browser, "#c-template", "winter_sale").await?;
        click(&browser, "input[name=audience][value=list]").await?;
        type_in(&browser, "#c-list", &customers.join("\n")).await?;
        click(&browser, "#new-campaign button[type=submit]").await?;
        wait_text(&browser, "#status", "3 contacts targeted").await?;
        // The live report reaches what the fake Graph API accepted.
        let sent = wait_js(
            &browser,
            "the report's sent count",
            "const e = document.getElementById('r-sent'); return e ? Number(e.textContent) : null;",
            |v| v.as_u64() == Some(2),
        )
        .await?;
        let templates: Vec<Sent> = graph
            .sent()
            .into_iter()
            .filter(|s| s.body["type"] == "template")
            .collect();
        assert_eq!(
            json!(templates.len()),
            sent,
            "the report matches Meta's count"
        );
        wait_text(&browser, "#report-cards", "no_consent 1").await?;
        shot(&browser, "campaigns.png").await?;
        // Another, scheduled for tomorrow, cancelled before it starts.
        let name = browser.find(Locator::Id("c-name")).await?;
        name.clear().await?;
        name.send_keys("Next week").await?;
        let tomorrow = crate::outbox::now() + 86_400;
        browser
            .execute(
                "document.getElementById('c-start').value = arguments[0];",
                vec![json!(local_minute(tomorrow))],
            )
            .await?;
        click(&browser, "#new-campaign button[type=submit]").await?;
        wait_text(&browser, "#report-title", "Next week").await?;
        wait_text(&browser, "#r-status", "scheduled").await?;
        click(&browser, "#cancel").await?;
        wait_text(&browser, "#r-status", "cancelled").await?;
        wait_text(&browser, "#status", "Cancelled").await?;
        assert_eq!(
            graph
                .sent()
                .iter()
                .filter(|s| s.body["type"] == "template")
                .count(),
            2,
            "nothing of the cancelled campaign went out"
        );

        // The third asks for their data while Meta refuses every message (from
        // here to the end): the export is never delivered, so the request
        // stays open until someone deals with it.
        graph.fail_all(Some((400, 131026)));
        // Then they ask to be erased and never confirm: that request lapses.
        for (wamid, text, kind) in [
            ("wamid.C8", "MY DATA", "export_request"),
            ("wamid.C9", "DELETE MY DATA", "erasure_request"),
        ] {
            let ask = app
                .post_signed(&crate::outbox::text_from(
                    customers[2],
                    wamid,
                    text,
                    crate::outbox::now(),
                ))
                .await;
            assert_eq!(ask.status(), 200);
            until(kind, 30, async || {
                let (_, log) = app.admin_get(&format!("/admin/audit?kind={kind}")).await;
                log["entries"].as_array().is_some_and(|e| e.len() == 1)
            })
            .await;
        }

        // Audit: the chain verifies; a filter narrows the log.
        browser
            .goto(&format!("{}/console/audit", app.address))
            .await?;
        wait_text(&browser, "#chain", "The hash chain verifies").await?;
        wait_text(&browser, "#status", "matching").await?;
        type_in(&browser, "#f-kind", "campaign_created").await?;
        click(&browser, "#filters button").await?;
        wait_text(&browser, "#status", "2 matching entries").await?;
        let rows = texts(&browser, "#entries tr").await?;
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(
            rows.iter().all(|r| r.contains("campaign_created")),
            "{rows:?}"
        );
        let page = browser.find(Locator::Css("body")).await?.text().await?;
        assert!(
            customers.iter().all(|wa| !page.contains(wa)),
            "no number in the log"
        );
        shot(&browser, "audit.png").await?;
        // Past the first page, Older adds the next one below: each entry once.
        let fillers = (0..250)
            .map(|i| {
                let who = format!("{i:032x}");
                crate::audit_paging::event(
                    "consent_given",
                    who,
                    1,
                    whatsify::domain::audit::Actor::Customer,
                )
            })
            .collect();
        crate::audit_paging::seed(&app, fillers).await;
        let total = app.store().audit_head().await.expect("head").0;
        browser
            .goto(&format!("{}/console/audit", app.address))
            .await?;
        wait_text(&browser, "#status", "Showing the newest 200").await?;
        click(&browser, "#older").await?;
        wait_text(&browser, "#status", &format!("{total} matching entries.")).await?;
        let seqs: Vec<u64> = texts(&browser, "#entries tr")
            .await?
            .iter()
            .filter_map(|r| r.split_whitespace().next()?.parse().ok())
            .collect();
        assert_eq!(seqs, (1..=total).rev().collect::<Vec<_>>());

        // Flows: a broken file shows file:line:col; the flows in force stay.
        std::fs::write(
            flows.path().join("broken.yaml"),
            "id: broken\nsteps:\n  - id: a\n    say: \"hi\"\n    goto: nowhere\n",
        )
        .expect("write");
        browser
            .goto(&format!("{}/console/flows", app.address))
            .await?;
        wait_text(&browser, "#status", "have errors").await?;
        wait_text(&browser, "#flows", "broken.yaml:").await?;
        let table = browser.find(Locator::Id("flows")).await?.text().await?;
        let line = table
            .lines()
            .find(|l| l.contains("broken.yaml:"))
            .unwrap_or_default()
            .to_owned();
        let place: Vec<&str> = line
            .split("broken.yaml:")
            .nth(1)
            .unwrap_or_default()
            .splitn(3, ':')
            .collect();
        assert!(
            place.len() == 3 && place[0].parse::<u32>().is_ok() && place[1].parse::<u32>().is_ok(),
            "file:line:col: {line}"
        );
        let welcome = browser
            .find(Locator::XPath(
                "//tbody[@id='flows']/tr[td[1]='welcome.yaml']",
            ))
            .await?
            .text()
            .await?;
        assert!(welcome.contains("valid"), "{welcome}");
        // The welcome flow's diagram, drawn by the server.
        click(&browser, "button[aria-label='Diagram of welcome']").await?;
        let width = wait_js(
            &browser,
            "the diagram loads",
            "const i = document.getElementById('diagram'); return i.complete ? i.naturalWidth : 0;",
            |v| v.as_u64().is_some_and(|w| w > 300),
        )
        .await?;
        assert!(width.as_u64().is_some_and(|w| w > 300));
        // The same steps as text, for screen readers.
        click(&browser, "#diagram-box summary").await?;
        wait_text(&browser, "#outline", "See offers → flow promotions").await?;
        let svg = browser
            .execute(
                "return await (await fetch('/console/flows/welcome/diagram.svg')).text();",
                vec![],
            )
            .await?;
        std::fs::write(
            screenshots().join("welcome.svg"),
            svg.as_str().unwrap_or_default(),
        )
        .ok();
        browser
            .execute(
                "document.getElementById('diagram-box').scrollIntoView();",
                vec![],
            )
            .await?;
        shot(&browser, "flows-diagram.png").await?;

        // The simulator: nothing it does reaches Meta, the store or the log.
        let before_sends = graph.sent().len();
        let (_, log) = app.admin_get("/admin/audit").await;
        let before_log = log["chain"]["log_entries"].clone();
        let input = browser.find(Locator::Id("sim-text")).await?;
        input.send_keys("hi").await?;
        click(&browser, "#sim-send button").await?;
        wait_text(&browser, "#chat", "Hi Test customer").await?;
        wait_text(&browser, "#chat", "What can we do for you today?").await?;
        // A button, pressed from the keyboard.
        let offers = browser
            .find(Locator::XPath(
                "//ol[@id='chat']//button[text()='See offers']",
            ))
            .await?;
        offers
            .send_keys(&fantoccini::key::Key::Enter.to_string())
            .await?;
        wait_text(&browser, "#chat", "20% off").await?;
        click(&browser, "#chat li:last-child button").await?;
        wait_text(&browser, "#chat", "opt_in (marketing)").await?;
        wait_text(&browser, "#chat", "You'll get our offers here").await?;
        browser
            .find(Locator::Id("sim-text"))
            .await?
            .send_keys("STOP")
            .await?;
        click(&browser, "#sim-send button").await?;
        wait_text(&browser, "#chat", "privacy command STOP").await?;
        shot(&browser, "flows-simulator.png").await?;
        assert_eq!(
            sticking_out(&browser).await?,
            json!([]),
            "the flows page on a laptop"
        );
        assert_eq!(
            graph.sent().len(),
            before_sends,
            "the simulator sent nothing"
        );
        let (_, log) = app.admin_get("/admin/audit").await;
        assert_eq!(
            log["chain"]["log_entries"], before_log,
            "the simulator audited nothing"
        );

        // A week later, the undelivered export is due; the unconfirmed
        // erasure has lapsed. Past 30 days the export is overdue.
        app.state.clock.advance(8 * 86_400);
        browser
            .goto(&format!("{}/console/requests", app.address))
            .await?;
        wait_text(&browser, "#updated", "Updated").await?;
        assert_eq!(browser.find(Locator::Id("open")).await?.text().await?, "1");
        assert_eq!(browser.find(Locator::Id("due")).await?.text().await?, "1");
        let rows = texts(&browser, "#requests tr").await?;
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(
            rows[0].contains("export") && rows[0].contains("open due") && rows[0].contains("8 d"),
            "the open one first: {rows:?}"
        );
        assert!(
            rows[1].contains("erasure") && rows[1].contains("lapsed"),
            "{rows:?}"
        );
        assert_eq!(texts(&browser, "#requests tr.due").await?, rows[..1]);
        app.state.clock.advance(23 * 86_400);
        browser.refresh().await?;
        wait_text(&browser, "#updated", "Updated").await?;
        assert_eq!(
            browser.find(Locator::Id("overdue")).await?.text().await?,
            "1"
        );
        let late = texts(&browser, "#requests tr.overdue").await?;
        assert!(
            late.len() == 1 && late[0].contains("export") && late[0].contains("31 d"),
            "{late:?}"
        );
        shot(&browser, "requests.png").await?;

        browser.set_window_size(390, 844).await?;
        browser
            .goto(&format!("{}/console/flows", app.address))
            .await?;
        wait_text(&browser, "#status", "have errors").await?;
        shot(&browser, "flows-phone.png").await?;
        for (page, css, loaded) in [
            ("/console/flows", "#status", "have errors"),
            ("/console/campaigns", "#campaigns", "Winter sale"),
            ("/console/requests", "#updated", "Updated"),
            ("/console/audit", "#status", "matching"),
        ] {
            browser.goto(&format!("{}{page}", app.address)).await?;
            wait_text(&browser, css, loaded).await?;
            assert_eq!(
                sticking_out(&browser).await?,
                json!([]),
                "{page} on a phone"
            );
        }
        browser.set_window_size(1280, 900).await?;
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    let _ = browser.close().await;
    result.expect("the browser steps");
    graph.stop().await;
}
