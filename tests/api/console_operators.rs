//! Operators in a real headless Chromium (issue 21): enrolment through the
//! one-time link (the test computes the TOTP codes from the key the page
//! shows), sign-in, an agent who sees a contact's profile and recent
//! conversation but cannot open their export or the audit log, and the
//! lockout after repeated failures.

use serde_json::{Value, json};

use crate::console::{click, headless, shot, texts, type_in, wait_js, wait_text};
use crate::graph::FakeGraph;
use crate::helpers::embedded;
use crate::operators_helpers::PASSWORD;
use crate::outbox::{app_with, say_hi, sent_to, until};

const WA: &str = "16505559021";
const EMAIL: &str = "agent.ana@example.org";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_enrols_signs_in_and_cannot_open_an_export_in_a_real_browser() {
    let b = embedded();
    let graph = FakeGraph::start().await;
    let app = app_with(&b.backend, &graph, &[]).await;
    say_hi(&app, WA, "wamid.OPB1").await;
    until("the welcome", 30, async || !sent_to(&graph, WA).is_empty()).await;
    let (s, added) = app
        .admin_post(
            "/admin/operators",
            &json!({"email": EMAIL, "role": "agent", "businesses": ["default"]}),
        )
        .await;
    assert_eq!(s, 201, "{added}");
    let link = format!(
        "{}{}",
        app.address,
        added["enrolment_url"].as_str().expect("link")
    );
    let base = app.address.clone();
    let (_driver, browser) = headless().await;
    let result = async {
        // Enrolment: the key as a QR code and as text.
        browser.goto(&link).await?;
        wait_text(&browser, "#enrol-email", EMAIL).await?;
        let secret = texts(&browser, "#totp-secret").await?.concat();
        assert_eq!(secret.len(), 32, "{secret}");
        wait_js(
            &browser,
            "the QR code never drew",
            "const i = document.getElementById('totp-qr'); return i && i.complete ? i.naturalWidth : 0;",
            |v| v.as_u64().is_some_and(|w| w > 0),
        )
        .await?;
        shot(&browser, "enrol.png").await?;
        let code = |at: u64| whatsify::operators::totp::code_at(&secret, at).expect("code");
        // A common password is refused, and said why.
        type_in(&browser, "#password", "password1234").await?;
        type_in(&browser, "#password2", "password1234").await?;
        type_in(&browser, "#code", &code(whatsify::clock::now_secs())).await?;
        click(&browser, "#enrol button[type=submit]").await?;
        wait_text(&browser, "[role=alert]", "common passwords").await?;
        type_in(&browser, "#password", PASSWORD).await?;
        type_in(&browser, "#password2", PASSWORD).await?;
        type_in(&browser, "#code", &code(whatsify::clock::now_secs())).await?;
        click(&browser, "#enrol button[type=submit]").await?;
        wait_text(&browser, "[role=alert]", "You are enrolled").await?;
        // Sign in with the next code (the one just used works once).
        browser.goto(&format!("{base}/console")).await?;
        type_in(&browser, "#email", EMAIL).await?;
        type_in(&browser, "#password", PASSWORD).await?;
        type_in(&browser, "#code", &code(whatsify::clock::now_secs() + 30)).await?;
        click(&browser, "#operator-sign-in button[type=submit]").await?;
        wait_text(&browser, "#who", EMAIL).await?;
        let nav = texts(&browser, "nav a").await?;
        assert!(nav.iter().any(|t| t == "Contacts"), "{nav:?}");
        assert!(!nav.iter().any(|t| t == "Audit" || t == "Campaigns"), "{nav:?}");
        // The contact's profile and conversation; no export or erasure.
        browser.goto(&format!("{base}/console/contacts")).await?;
        type_in(&browser, "#contact-id", WA).await?;
        click(&browser, "#find button[type=submit]").await?;
        wait_text(&browser, "#status", "Found").await?;
        let hidden = browser
            .execute("return document.getElementById('their-data').hidden;", vec![])
            .await?;
        assert_eq!(hidden, json!(true), "no export or erase for an agent");
        click(&browser, "#show-conversation").await?;
        wait_text(&browser, "#conversation", "Customer: hi").await?;
        shot(&browser, "agent-contact.png").await?;
        // Asked directly, the server refuses the export.
        let status: Value = browser
            .execute(
                "return fetch('/admin/contacts/' + arguments[0] + '/export', {credentials: 'same-origin'}).then(r => r.status);",
                vec![json!(WA)],
            )
            .await?;
        assert_eq!(status, json!(403));
        browser.goto(&format!("{base}/console/audit")).await?;
        wait_text(&browser, "h1", "Not for your role").await?;
        // Signed out, wrong passwords: refused, then refused for a while.
        browser.goto(&format!("{base}/console")).await?;
        click(&browser, "#sign-out").await?;
        wait_js(&browser, "signed out", "return !!document.getElementById('email');", |v| v == &json!(true)).await?;
        for _ in 0..whatsify::state::throttle::PER_ADDRESS_BURST as usize {
            type_in(&browser, "#email", EMAIL).await?;
            type_in(&browser, "#password", "not-my-password-at-all").await?;
            type_in(&browser, "#code", "123456").await?;
            click(&browser, "#operator-sign-in button[type=submit]").await?;
            wait_text(&browser, "[role=alert]", "Wrong email, password or code").await?;
        }
        type_in(&browser, "#email", EMAIL).await?;
        type_in(&browser, "#password", PASSWORD).await?;
        type_in(&browser, "#code", &code(whatsify::clock::now_secs() + 60)).await?;
        click(&browser, "#operator-sign-in button[type=submit]").await?;
        wait_text(&browser, "[role=alert]", "Too many failed sign-ins").await?;
        shot(&browser, "locked.png").await?;
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    browser.close().await.ok();
    result.expect("the browser steps");
    app.stop().await;
}
