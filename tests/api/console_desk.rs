//! The privacy desk in a real browser (headless Chromium): an admin
//! signed in with email, password and a TOTP code logs a request that
//! came by email on the requests page, sees it with its deadline,
//! rectifies the customer's name from there and closes it; an auditor
//! sees the same list without the form or a button.

use fantoccini::{Client, Locator};
use serde_json::Value;
use whatsify::domain::operator::Role;

use crate::console::{headless, wait_js};
use crate::graph::FakeGraph;
use crate::helpers::{TestApp, embedded};
use crate::operators_helpers::{TestOperator, operator};
use crate::outbox::{app_with, now, say_hi, until};

type Cmd = Result<(), fantoccini::error::CmdError>;

/// Signs `op` in through the form and opens the requests page.
async fn sign_in(browser: &Client, app: &TestApp, op: &TestOperator) -> Cmd {
    crate::console_inbox::sign_in_as(browser, app, op).await?;
    browser
        .goto(&format!("{}/console/requests", app.address))
        .await?;
    wait_js(
        browser,
        "the list is loaded",
        "return document.getElementById('updated').textContent;",
        |v| v.as_str().is_some_and(|t| t.starts_with("Updated")),
    )
    .await?;
    Ok(())
}

/// The text of each desk row.
const DESK_ROWS: &str = "return [...document.querySelectorAll('#requests tr[data-source=desk]')].map(e => e.innerText);";

async fn until_rows(browser: &Client, what: &str, ok: impl Fn(&[String]) -> bool) {
    wait_js(browser, what, DESK_ROWS, |v: &Value| {
        let list: Vec<String> = serde_json::from_value(v.clone()).unwrap_or_default();
        ok(&list)
    })
    .await
    .expect("browser");
}

/// Clicks the element (found again if the list was redrawn meanwhile).
async fn click(browser: &Client, css: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let tried = async { browser.find(Locator::Css(css)).await?.click().await };
        match tried.await {
            Ok(()) => return,
            Err(e) => assert!(std::time::Instant::now() < deadline, "{css}: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn type_into(browser: &Client, css: &str, text: &str) {
    let field = browser.find(Locator::Css(css)).await.expect(css);
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

/// Whether the element `css` exists and is shown.
async fn shown(browser: &Client, css: &str) -> bool {
    let script =
        format!("const e = document.querySelector('{css}'); return !!e && !e.closest('[hidden]');");
    browser.execute(&script, vec![]).await.expect("js") == Value::Bool(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_logs_rectifies_and_closes_a_request_and_an_auditor_only_sees_it() {
    let b = embedded();
    let graph = FakeGraph::start().await;
    let app = app_with(&b.backend, &graph, &[]).await;
    let admin = operator(&app, "admin@shop.example", Role::Admin, &["default"]).await;
    let auditor = operator(&app, "audit@shop.example", Role::Auditor, &["default"]).await;
    let wa = "16505557501";
    say_hi(&app, wa, "wamid.desk.1").await;
    let contact = format!("/admin/contacts/{wa}");
    until("the contact", 30, async || {
        app.admin_get(&contact).await.0 == 200
    })
    .await;

    // The admin logs a request that came by email.
    let (_d1, one) = headless().await;
    sign_in(&one, &app, &admin)
        .await
        .expect("the admin signs in");
    assert!(shown(&one, "#desk-log").await, "the admin has the form");
    (one.find(Locator::Css("#desk-kind option[value=rectification]"))
        .await
        .expect("kind"))
    .click()
    .await
    .expect("choose");
    type_into(&one, "#desk-contact", &format!("+{wa}")).await;
    type_into(&one, "#desk-reference", "MAIL-2041").await;
    let today = whatsify::domain::desk::format_date(whatsify::domain::desk::day_of(now()));
    let due =
        whatsify::domain::desk::format_date(whatsify::domain::desk::day_of(now() + 30 * 86_400));
    type_into(&one, "#desk-received", &today).await;
    click(&one, "#desk-submit").await;
    until_rows(&one, "the request is listed with its deadline", |r| {
        r.len() == 1
            && r[0].contains("rectification")
            && r[0].contains("email")
            && r[0].contains("MAIL-2041")
            && r[0].contains(&due)
            && r[0].contains("open")
    })
    .await;

    // It rectifies the name from the row, then closes the request.
    type_into(
        &one,
        "#requests tr[data-source=desk] input[name=name]",
        "Ana Lucía",
    )
    .await;
    click(&one, "#requests tr[data-source=desk] td:last-child button").await;
    until("the rectified name", 30, async || {
        app.admin_get(&contact).await.1["profile"]["name"] == "Ana Lucía"
    })
    .await;
    until_rows(&one, "still open after the rectification", |r| {
        r.len() == 1 && r[0].contains("open")
    })
    .await;
    type_into(
        &one,
        "#requests tr[data-source=desk] input[name=outcome]",
        "done",
    )
    .await;
    let close = "#requests tr[data-source=desk] td:last-child button:last-of-type";
    click(&one, close).await;
    until_rows(&one, "closed", |r| {
        r.len() == 1 && r[0].contains("done") && !r[0].contains("Close")
    })
    .await;

    // The auditor sees it, without the form or a button.
    let (_d2, two) = headless().await;
    sign_in(&two, &app, &auditor)
        .await
        .expect("the auditor signs in");
    until_rows(&two, "the auditor sees it", |r| {
        r.len() == 1 && r[0].contains("MAIL-2041") && !r[0].contains(wa)
    })
    .await;
    assert!(!shown(&two, "#desk-log").await, "no form for the auditor");
    assert!(
        !shown(&two, "#requests button").await,
        "no button for the auditor"
    );
    let _ = one.close().await;
    let _ = two.close().await;
    app.stop().await;
}
