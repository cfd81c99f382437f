//! The console with several businesses, in headless Chromium: the header's
//! switcher lists them, and every page shows the one chosen (its figures,
//! its audit log, its contacts), never a 409 or another business's data.

use serde_json::Value;

use crate::businesses::{CAFE, SHOP, say, text};
use crate::console::{headless, sign_in_browser, wait_js, wait_text};
use crate::graph::FakeGraph;
use crate::outbox::until;

/// The figure `id` on the overview, once loaded.
/// A customer who writes to the café only.
const CAFE_ONLY: &str = "16505557171";

const FIGURE: &str = "const e = document.getElementById(arguments[0]); return e && e.textContent !== '' ? Number(e.textContent) : null;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_switches_between_businesses_in_a_real_browser() {
    use fantoccini::Locator;
    let b = crate::helpers::embedded();
    let graph = FakeGraph::start().await;
    let (app, _flows) = crate::businesses::app(&b.backend, &graph).await;
    say(&app, SHOP, "wamid.S1", text("hi")).await;
    say(&app, CAFE, "wamid.C1", text("a flat white please")).await;
    // A customer of the café only.
    let hello = crate::businesses::to(CAFE, CAFE_ONLY, "wamid.D1", text("hello"));
    assert_eq!(app.post_signed(&hello).await.status(), 200);
    until("the café's answers", 30, async || {
        let sent = graph.sent();
        let to = |wa: &str| {
            sent.iter()
                .filter(|s| s.body["to"] == format!("+{wa}"))
                .count()
        };
        to(CAFE_ONLY) >= 2 && to(crate::businesses::WA) >= 2
    })
    .await;

    // Each business's figure of the day, as its statistics route says.
    let today = whatsify::store::stats::today();
    let mut inbound = Vec::new();
    for business in ["shop", "cafe"] {
        let (_, stats) = app
            .admin_get(&format!("/admin/businesses/{business}/stats"))
            .await;
        inbound.push(stats["days"][&today]["messages_in"].as_u64().unwrap_or(0));
    }
    assert_ne!(inbound[0], inbound[1], "{inbound:?}");
    let (_driver, browser) = headless().await;
    let figure = async |id: &str, want: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let v = browser
                .execute(FIGURE, vec![Value::from(id)])
                .await
                .unwrap_or(Value::Null);
            if v.as_u64() == Some(want) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{id} is {v}, not {want}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        }
    };
    let result = async {
        sign_in_browser(&browser, &app).await?;
        // Two businesses: the switcher shows, the first one chosen.
        wait_js(
            &browser,
            "the switcher never filled",
            "const s = document.getElementById('business'); return s && !document.getElementById('business-pick').hidden ? Array.from(s.options).map(o => o.value) : null;",
            |v| v == &serde_json::json!(["shop", "cafe"]),
        )
        .await?;
        figure("messages_in", inbound[0]).await;
        browser
            .find(Locator::Css("#business"))
            .await?
            .select_by_value("cafe")
            .await?;
        figure("messages_in", inbound[1]).await;
        // The audit log is the café's (no 409), and the choice holds from
        // page to page.
        browser.goto(&format!("{}/console/audit", app.address)).await?;
        wait_js(
            &browser,
            "the café's audit log never showed",
            "const rows = document.querySelectorAll('#entries tr'); const s = document.getElementById('status'); return rows.length > 0 && !(s && s.textContent.includes('several businesses')) ? rows.length : null;",
            |v| v.as_u64().is_some_and(|n| n >= 1),
        )
        .await?;
        let chosen = browser
            .execute(
                "return document.getElementById('business').value;",
                vec![],
            )
            .await?;
        assert_eq!(chosen, "cafe");
        // A contact looked up is the café's: its customer is found (the
        // shop does not know them).
        browser
            .goto(&format!("{}/console/contacts", app.address))
            .await?;
        let field = browser.find(Locator::Id("contact-id")).await?;
        field.send_keys(CAFE_ONLY).await?;
        browser
            .find(Locator::Css("#find button"))
            .await?
            .click()
            .await?;
        wait_text(&browser, "#ledger", "first_contact").await?;
        // The flows page and its simulator are the café's flows.
        browser
            .goto(&format!("{}/console/flows", app.address))
            .await?;
        wait_text(&browser, "#flows", "cafe").await?;
        let say = browser.find(Locator::Id("sim-text")).await?;
        say.send_keys("hi").await?;
        browser
            .find(Locator::Css("#sim-send button"))
            .await?
            .click()
            .await?;
        wait_text(&browser, "#chat", "Corner Café").await?;
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    let _ = browser.close().await;
    result.expect("the browser session");
    app.stop().await;
}
