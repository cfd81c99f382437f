//! The operator console (issue 9): sign-in, the session cookie, CSRF, the
//! refusal of signed-out requests, and the overview in a real headless
//! Chromium (Debian's `chromium` and `chromedriver`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::graph::FakeGraph;
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
    let r = bare()
        .post(format!("{}/console/sign-in", app.address))
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
        .get(format!("{}/console", app.address))
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

    // Signed out: pages show the sign-in form, the API says 401.
    for path in ["/console", "/console/sign-in", "/console/contacts"] {
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
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
    let r = c
        .post(format!("{base}/console/sign-out"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("{base}/admin/audit"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
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

/// `chromedriver` on a free port, killed on drop.
struct Driver {
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

/// Where the browser tests leave their screenshots.
fn screenshots() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

/// Waits (bounded) until the element's text contains `want`.
async fn wait_text(
    browser: &fantoccini::Client,
    css: &str,
    want: &str,
) -> Result<(), fantoccini::error::CmdError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // A page still loading has no such element yet.
        let text = match browser.find(fantoccini::Locator::Css(css)).await {
            Ok(e) => e.text().await?,
            Err(_) => String::new(),
        };
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
    use fantoccini::{ClientBuilder, Locator};
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

    let driver = chromedriver();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"]
        }),
    );
    let browser = ClientBuilder::rustls()
        .expect("client")
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a headless Chromium session");
    let shots = screenshots();
    let result = async {
        browser.goto(&format!("{}/console", app.address)).await?;
        let token = browser.find(Locator::Id("token")).await?;
        std::fs::write(shots.join("sign-in.png"), browser.screenshot().await?).ok();
        token.send_keys("wrong-token-000000000000000000000").await?;
        browser
            .find(Locator::Css("button[type=submit]"))
            .await?
            .click()
            .await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let source = browser.source().await.unwrap_or_default();
            if source.contains("not the admin token") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no message for a wrong token: {source}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        browser
            .find(Locator::Id("token"))
            .await?
            .send_keys(ADMIN_TOKEN)
            .await?;
        browser
            .find(Locator::Css("button[type=submit]"))
            .await?
            .click()
            .await?;
        // The overview fills in from the API.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // The page may still be loading after the click.
            let shown = match browser.find(Locator::Id("messages_in")).await {
                Ok(e) => e.text().await?,
                Err(_) => String::new(),
            };
            if shown.parse::<u64>().is_ok_and(|n| n >= 1) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the figures never loaded: {shown:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let status = browser.find(Locator::Id("status")).await?.text().await?;
        assert!(status.starts_with("Updated"), "{status}");
        let body = browser.find(Locator::Css("body")).await?.text().await?;
        assert!(!body.contains(wa), "no number on the overview");
        std::fs::write(shots.join("overview.png"), browser.screenshot().await?).ok();
        // Nothing is kept in local storage.
        let stored = browser
            .execute("return window.localStorage.length;", vec![])
            .await?;
        assert_eq!(stored, json!(0));
        // Phone-sized.
        browser.set_window_size(390, 844).await?;
        std::fs::write(
            shots.join("overview-phone.png"),
            browser.screenshot().await?,
        )
        .ok();
        browser.set_window_size(1280, 900).await?;

        // Contacts: find the customer, see the ledger and the
        // conversation, export, then erase with a typed confirmation.
        browser
            .goto(&format!("{}/console/contacts", app.address))
            .await?;
        browser
            .find(Locator::Id("contact-id"))
            .await?
            .send_keys(wa)
            .await?;
        browser
            .find(Locator::Css("#find button"))
            .await?
            .click()
            .await?;
        wait_text(&browser, "#status", "Found").await?;
        let profile = browser.find(Locator::Id("profile")).await?.text().await?;
        assert!(profile.contains("Ana"), "{profile}");
        let ledger = browser.find(Locator::Id("ledger")).await?.text().await?;
        assert!(
            ledger.contains("marketing") && ledger.contains("keyword"),
            "{ledger}"
        );
        browser
            .find(Locator::Id("show-conversation"))
            .await?
            .click()
            .await?;
        wait_text(&browser, "#conversation", "Customer: hi").await?;
        browser.find(Locator::Id("export")).await?.click().await?;
        wait_text(&browser, "#status", "ready to download").await?;
        let href = browser
            .find(Locator::Id("download"))
            .await?
            .attr("href")
            .await?
            .unwrap_or_default();
        assert!(href.starts_with("blob:"), "{href}");
        std::fs::write(shots.join("contacts.png"), browser.screenshot().await?).ok();
        browser
            .find(Locator::Id("erase-confirm"))
            .await?
            .send_keys("16505550000")
            .await?;
        browser
            .find(Locator::Css("#erase button"))
            .await?
            .click()
            .await?;
        wait_text(&browser, "#status", "does not match").await?;
        let field = browser.find(Locator::Id("erase-confirm")).await?;
        field.clear().await?;
        field.send_keys(wa).await?;
        browser
            .find(Locator::Css("#erase button"))
            .await?
            .click()
            .await?;
        wait_text(&browser, "#status", "Erased").await?;
        browser
            .find(Locator::Css("#find button"))
            .await?
            .click()
            .await?;
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
