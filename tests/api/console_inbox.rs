//! The agents' inbox in two real browsers (headless Chromium): two
//! agents signed in with email, password and a TOTP code see a handoff
//! appear without reloading; one takes it and the other sees who has it;
//! the one who took it replies and closes it, and it leaves the other's
//! list.

use fantoccini::{Client, Locator};
use serde_json::Value;
use whatsify::domain::operator::Role;

use crate::console::{headless, texts, wait_js};
use crate::graph::FakeGraph;
use crate::helpers::{TestApp, embedded};
use crate::inbox::hand_off;
use crate::operators_helpers::{PASSWORD, TestOperator, code_now, operator};
use crate::outbox::{app_with, sent_to, until};

type Cmd = Result<(), fantoccini::error::CmdError>;

/// Signs `op` in through the console's form (email, password and the
/// current TOTP code) and waits for the signed-in page. Shared by the
/// browser tests of operators' pages.
pub(crate) async fn sign_in_as(browser: &Client, app: &TestApp, op: &TestOperator) -> Cmd {
    browser.goto(&format!("{}/console", app.address)).await?;
    browser
        .find(Locator::Id("email"))
        .await?
        .send_keys(&op.email)
        .await?;
    (browser.find(Locator::Id("password")).await?)
        .send_keys(PASSWORD)
        .await?;
    (browser.find(Locator::Id("code")).await?)
        .send_keys(&code_now(&op.secret))
        .await?;
    (browser
        .find(Locator::Css("#operator-sign-in button[type=submit]"))
        .await?)
        .click()
        .await?;
    wait_js(
        browser,
        "signed in",
        "return !!document.getElementById('who');",
        |v| v == true,
    )
    .await?;
    Ok(())
}

/// Signs `op` in through the form and opens the inbox page.
async fn sign_in(browser: &Client, app: &TestApp, op: &TestOperator) -> Cmd {
    sign_in_as(browser, app, op).await?;
    browser
        .goto(&format!("{}/console/inbox", app.address))
        .await?;
    wait_js(
        browser,
        "the inbox is live",
        "return document.getElementById('live').textContent;",
        |v| v.as_str().is_some_and(|t| t.starts_with("Live")),
    )
    .await?;
    Ok(())
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

/// The text of each conversation card.
async fn cards(browser: &Client) -> Vec<String> {
    texts(browser, "#inbox > li").await.unwrap_or_default()
}

/// Waits until the cards satisfy `ok` (a deadline, no fixed sleep).
async fn until_cards(browser: &Client, what: &str, ok: impl Fn(&[String]) -> bool) {
    let script = "return [...document.querySelectorAll('#inbox > li')].map(e => e.innerText);";
    wait_js(browser, what, script, |v: &Value| {
        let list: Vec<String> = serde_json::from_value(v.clone()).unwrap_or_default();
        ok(&list)
    })
    .await
    .expect("browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_work_the_inbox_live_in_two_browsers() {
    let b = embedded();
    let graph = FakeGraph::start().await;
    let app = app_with(&b.backend, &graph, &[]).await;
    let ana = operator(&app, "ana@shop.example", Role::Agent, &["default"]).await;
    let ben = operator(&app, "ben@shop.example", Role::Agent, &["default"]).await;
    let (_d1, one) = headless().await;
    let (_d2, two) = headless().await;
    sign_in(&one, &app, &ana).await.expect("ana signs in");
    sign_in(&two, &app, &ben).await.expect("ben signs in");
    assert!(cards(&one).await.is_empty());

    // A handoff appears in both, without reloading.
    let wa = "16505557401";
    hand_off(&app, &graph, wa).await;
    for browser in [&one, &two] {
        until_cards(browser, "the handoff appears", |c| {
            c.len() == 1 && c[0].contains("torn sleeve") && c[0].contains("Not taken")
        })
        .await;
    }

    // Ana takes it; Ben sees who has it.
    click(&one, "#inbox > li button.take").await;
    until_cards(&two, "Ben sees Ana has it", |c| {
        c.len() == 1 && c[0].contains("Taken by ana@shop.example")
    })
    .await;
    until_cards(&one, "Ana sees she has it", |c| {
        c.len() == 1 && c[0].contains("(you)")
    })
    .await;

    // Ana replies.
    (one.find(Locator::Css("#inbox > li form.reply textarea"))
        .await
        .expect("reply box"))
    .send_keys("Hi, this is Ana. A new jacket is on its way.")
    .await
    .expect("type");
    click(&one, "#inbox > li form.reply button[type=submit]").await;
    until("Ana's reply reaches the customer", 30, async || {
        sent_to(&graph, wa).iter().any(|m| {
            m["text"]["body"]
                .as_str()
                .is_some_and(|t| t.contains("this is Ana"))
        })
    })
    .await;
    until_cards(&two, "Ben sees the reply", |c| {
        c.len() == 1 && c[0].contains("this is Ana")
    })
    .await;

    // Ana closes it: it leaves both lists.
    click(&one, "#inbox > li button.close").await;
    until_cards(&two, "it leaves Ben's list", |c| c.is_empty()).await;
    until_cards(&one, "it leaves Ana's list", |c| c.is_empty()).await;
    one.close().await.ok();
    two.close().await.ok();
}
