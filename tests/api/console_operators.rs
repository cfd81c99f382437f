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
        // Wrong tries are answered as such, until the account (or this
        // address) is slowed down: then refused before being checked.
        let mut refused = false;
        for _ in 0..8 {
            // Clear the last answer, so the next one read is the new page's.
            browser
                .execute("const a = document.querySelector('[role=alert]'); if (a) a.textContent = '';", vec![])
                .await?;
            type_in(&browser, "#email", EMAIL).await?;
            type_in(&browser, "#password", "not-my-password-at-all").await?;
            type_in(&browser, "#code", "123456").await?;
            click(&browser, "#operator-sign-in button[type=submit]").await?;
            let said = wait_js(
                &browser,
                "an answer to the sign-in",
                "const a = document.querySelector('[role=alert]'); return a ? a.textContent : '';",
                |v| v.as_str().is_some_and(|t| !t.is_empty()),
            )
            .await?;
            let said = said.as_str().unwrap_or_default().to_owned();
            if said.contains("Too many failed sign-ins") {
                refused = true;
                break;
            }
            assert!(said.contains("Wrong email, password or code"), "{said}");
        }
        assert!(refused, "repeated failures were never slowed down");
        shot(&browser, "locked.png").await?;
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    browser.close().await.ok();
    result.expect("the browser steps");
    app.stop().await;
}

/// An owner's Account page: adds an agent (the enrolment link shown), makes
/// an API token (shown once; it works), revokes it, and disables the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_manages_operators_and_tokens_in_a_real_browser() {
    use whatsify::domain::operator::Role;
    let b = embedded();
    let graph = FakeGraph::start().await;
    let app = app_with(&b.backend, &graph, &[]).await;
    let owner =
        crate::operators_helpers::operator(&app, "olga@example.org", Role::Owner, &[]).await;
    let base = app.address.clone();
    let (_driver, browser) = headless().await;
    let result = async {
        browser.goto(&format!("{base}/console")).await?;
        type_in(&browser, "#email", &owner.email).await?;
        type_in(&browser, "#password", PASSWORD).await?;
        type_in(
            &browser,
            "#code",
            &crate::operators_helpers::code_now(&owner.secret),
        )
        .await?;
        click(&browser, "#operator-sign-in button[type=submit]").await?;
        wait_text(&browser, "#who", "olga@example.org").await?;
        browser.goto(&format!("{base}/console/account")).await?;
        wait_js(
            &browser,
            "the operators list",
            "return !document.getElementById('operators-box').hidden;",
            |v| v == &json!(true),
        )
        .await?;
        type_in(&browser, "#o-email", "new.agent@example.org").await?;
        type_in(&browser, "#o-businesses", "default").await?;
        click(&browser, "#new-operator button[type=submit]").await?;
        wait_text(&browser, "#enrolment-link", "/console/enrol/").await?;
        wait_text(&browser, "#operators", "new.agent@example.org").await?;
        // A token, shown once, that works.
        type_in(&browser, "#t-name", "nightly").await?;
        click(&browser, "#new-token button[type=submit]").await?;
        wait_text(&browser, "#new-token-value", "wsf_").await?;
        let token = texts(&browser, "#new-token-value").await?.concat();
        let ok = reqwest::Client::new()
            .get(format!("{base}/admin/operators"))
            .bearer_auth(&token)
            .send()
            .await
            .map(|r| r.status().as_u16());
        assert_eq!(ok.ok(), Some(200));
        wait_text(&browser, "#tokens", "nightly").await?;
        shot(&browser, "account.png").await?;
        // Its own row: the test's token is listed too.
        click(&browser, "#tokens tr[data-name='nightly'] button").await?;
        wait_text(&browser, "#status", "Token nightly revoked.").await?;
        let gone = reqwest::Client::new()
            .get(format!("{base}/admin/operators"))
            .bearer_auth(&token)
            .send()
            .await
            .map(|r| r.status().as_u16());
        assert_eq!(gone.ok(), Some(401));
        // Disable the new agent.
        click(
            &browser,
            "#operators tr[data-email='new.agent@example.org'] button.disable",
        )
        .await?;
        wait_text(
            &browser,
            "#operators tr[data-email='new.agent@example.org']",
            "disabled",
        )
        .await?;
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    browser.close().await.ok();
    result.expect("the browser steps");
    app.stop().await;
}
